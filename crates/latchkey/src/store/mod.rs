//! The one store trait. SQLite is the embedded backend; PostgreSQL comes behind the same trait.
//! Every single-use thing is consumed by one conditional write inside the backend, so callers
//! never read-then-write. Times are unix seconds.

pub mod postgres;
mod records;
mod sql;
pub mod sqlite;

pub use records::*;

use async_trait::async_trait;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (an e-mail or id already taken).
    #[error("already exists")]
    Conflict,
    #[error("database error: {0}")]
    Backend(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The SQLite writer connection (see `sqlite::writer`).
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    #[error("database writer: {0}")]
    Writer(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ffi::{SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE};
        match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.extended_code == SQLITE_CONSTRAINT_UNIQUE || f.extended_code == SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                StoreError::Conflict
            }
            _ => StoreError::Sqlite(e),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Hits in the current fixed window and in the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowCounts {
    pub current: i64,
    pub previous: i64,
}

/// Whether a conditional insert happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Yes,
    /// A cap was reached; nothing was written.
    CapReached,
}

/// A decision on a pending approval.
#[derive(Debug, Clone)]
pub struct Decision<'a> {
    /// Find it by user code (device grant) or by id (pairing).
    pub by: DecideBy<'a>,
    pub approve: bool,
    pub user_id: &'a str,
    pub device_id: &'a str,
    /// A name for the new device chosen by the approver, if any.
    pub requester_name: Option<&'a str>,
    /// QR login: the hash and expiry of the handoff code the browser will exchange.
    pub handoff: Option<(Vec<u8>, i64)>,
    /// The approver proved a passkey moments ago (step-up).
    pub passkey_verified: bool,
}

#[derive(Debug, Clone, Copy)]
pub enum DecideBy<'a> {
    UserCode(&'a [u8]),
    /// A pairing approval: only the issuing device of the code may decide.
    Pairing {
        approval_id: &'a str,
    },
    /// A QR login: only the device that scanned it may decide.
    Qr {
        approval_id: &'a str,
    },
}

/// How a requester collects its approved request.
#[derive(Debug, Clone, Copy)]
pub enum CollectBy<'a> {
    /// By polling with its device_code: the request found by id (the device_code was checked).
    Id(&'a str),
    /// By a handoff code, presented with the browser's secret (QR login).
    Handoff { handoff_hash: &'a [u8], secret_hash: &'a [u8] },
}

/// What collecting came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Collected {
    /// Collected now; the new device's session was created with it.
    Yes,
    /// Right secret and handoff code, but already exchanged: the session it minted, to be revoked.
    Replayed { session_id: String },
    /// Not approved, expired, approved by a device revoked since, already collected, or unknown.
    No,
}

/// What redeeming a pairing code came to.
#[derive(Debug, Clone)]
pub enum Redeemed {
    /// The code is consumed and its pending request opened.
    Opened(Box<ApprovalRow>),
    /// The requester's IP has its cap of pending requests; the code is left unused.
    CapReached,
    NoSuchCode,
}

/// Result of presenting a refresh token for rotation.
#[derive(Debug, Clone)]
pub enum Rotation {
    /// The token was live and is now superseded by the successor, in one transaction.
    Rotated { session: SessionRow, expires_at: i64 },
    /// No rotation happened; here is what the presented token is, if it exists at all.
    NotRotated(Option<RefreshTokenRow>),
}

/// Keys, server secrets, the audit trail, limit counters and housekeeping.
#[async_trait]
pub trait OpsStore: Send + Sync + 'static {
    async fn ping(&self) -> StoreResult<()>;

    /// The value stored under `name`, storing `fresh` first if there was none (first start).
    async fn secret_or_insert(&self, name: &str, fresh: &[u8]) -> StoreResult<Vec<u8>>;

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>>;

    /// Replaces a stored secret or key seed with its sealed form, only if it is still `old`
    /// (two instances sealing at once: the first one's stays). `kid` None: the server secret `name`.
    async fn reseal(&self, name_or_kid: &str, signing_key: bool, old: &[u8], new: &[u8]) -> StoreResult<bool>;

    /// Adds `key` as the active key, retiring the previous one at `now`, in one transaction.
    async fn rotate_signing_key(&self, key: &SigningKeyRow, now: i64) -> StoreResult<()>;

    /// Adds `key` only if no key is active (first start; races between instances are fine).
    async fn insert_first_signing_key(&self, key: &SigningKeyRow) -> StoreResult<()>;

    /// Deletes what can no longer matter: expired codes and requests, stale limit counters, and
    /// sessions (with their refresh tokens) dead for `keep_dead` seconds. Safe to run from
    /// several instances at once: plain conditional deletes. Returns the rows deleted.
    async fn sweep(&self, now: i64, keep_dead: i64) -> StoreResult<u64>;

    async fn record_audit(&self, event: &AuditRow) -> StoreResult<()>;

    async fn audit_for_user(&self, user_id: &str, limit: i64) -> StoreResult<Vec<AuditRow>>;

    async fn audit_all(&self, limit: i64) -> StoreResult<Vec<AuditRow>>;

    /// Counts one hit in the fixed window of `window` seconds that holds `now`, in one atomic
    /// upsert; returns the counts of this window (including the hit) and of the previous one.
    async fn hit_rate_limit(&self, key: &str, window: i64, now: i64) -> StoreResult<WindowCounts>;

    /// The same counts, without counting a hit.
    async fn peek_rate_limit(&self, key: &str, window: i64, now: i64) -> StoreResult<WindowCounts>;

    async fn login_failures(&self, key: &str) -> StoreResult<Option<(u32, i64)>>;

    async fn record_login_failure(&self, key: &str, now: i64) -> StoreResult<()>;

    async fn clear_login_failures(&self, key: &str) -> StoreResult<()>;
}

/// Accounts and OAuth clients.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    async fn create_user(&self, user: &UserRow) -> StoreResult<()>;

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRow>>;

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRow>>;

    async fn create_client(&self, client: &ClientRow) -> StoreResult<()>;

    async fn client(&self, id: &str) -> StoreResult<Option<ClientRow>>;

    async fn clients(&self) -> StoreResult<Vec<ClientRow>>;

    /// Removes a client, ends its live sessions and drops its consents, in one transaction; false
    /// if there was no such client. Its id is never used again.
    async fn delete_client(&self, id: &str, now: i64) -> StoreResult<bool>;

    async fn set_password_hash(&self, user_id: &str, hash: &str) -> StoreResult<()>;
    /// Sets the e-mail of an account that has none; false if it had one. A taken address is Conflict.
    async fn set_email_if_none(&self, user_id: &str, email: &str) -> StoreResult<bool>;
}

/// Devices, sessions and refresh tokens.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Creates the device, the session and (for API sessions) its first refresh token together.
    async fn create_session(&self, device: &DeviceRow, session: &SessionRow, refresh: Option<&RefreshTokenRow>) -> StoreResult<()>;

    async fn session(&self, id: &str) -> StoreResult<Option<SessionRow>>;

    async fn session_by_web_token(&self, hash: &[u8]) -> StoreResult<Option<SessionRow>>;

    /// Marks the session and its device as used now from `ip`.
    async fn touch_session(&self, session: &SessionRow, ip: &str, now: i64) -> StoreResult<()>;

    /// Revokes one live session; false when it was already dead.
    async fn revoke_session(&self, id: &str, reason: &str, now: i64) -> StoreResult<bool>;

    /// Revokes every live session of the user but `except`; returns how many.
    async fn revoke_user_sessions(&self, user_id: &str, except: Option<&str>, reason: &str, now: i64) -> StoreResult<u64>;

    async fn count_live_sessions(&self, now: i64) -> StoreResult<i64>;

    /// One device of the user, unless revoked.
    async fn device(&self, user_id: &str, device_id: &str) -> StoreResult<Option<DeviceRow>>;

    /// The user's devices that are signed in (a live session) or remembered (trusted until
    /// after `now`), most recently seen first.
    async fn devices_for_user(&self, user_id: &str, now: i64) -> StoreResult<Vec<DeviceRow>>;

    /// Revokes the user's device and every session on it at once; false when there was no such
    /// live device of this user.
    async fn revoke_device(&self, user_id: &str, device_id: &str, now: i64) -> StoreResult<bool>;

    /// Supersedes the live token `old_hash` of `client_id` by a successor hashed `new_hash`, in one
    /// conditional write plus insert. The successor expires at `idle_expires_at`, but never after
    /// its session does.
    async fn rotate_refresh_token(
        &self,
        old_hash: &[u8],
        client_id: &str,
        new_hash: &[u8],
        idle_expires_at: i64,
        now: i64,
    ) -> StoreResult<Rotation>;

    async fn refresh_token(&self, hash: &[u8]) -> StoreResult<Option<RefreshTokenRow>>;
}

/// The cross-device approval state machine: device grant, pairing codes, QR login.
#[async_trait]
pub trait ApprovalStore: Send + Sync + 'static {
    /// Inserts a pending approval unless the requester's IP already has `cap_per_ip` live pending
    /// requests (0: no cap), in one conditional write. `audit`, if any, is written in the same
    /// transaction when the approval is, so the two commit together. (The server-wide cap is
    /// checked before, against `count_live_pending`: see `service::approvals::admit_pending`.)
    async fn create_approval(&self, a: &ApprovalRow, cap_per_ip: i64, now: i64, audit: Option<&AuditRow>) -> StoreResult<Created>;

    /// Live pending approvals of every kind, server-wide. Scans them all: call it rarely.
    async fn count_live_pending(&self, now: i64) -> StoreResult<i64>;

    async fn approval(&self, id: &str) -> StoreResult<Option<ApprovalRow>>;

    async fn approval_by_user_code(&self, hmac: &[u8]) -> StoreResult<Option<ApprovalRow>>;

    /// Records a poll of request `id`, if its device_code hashes to `device_code_hash` and
    /// `client_id` made it: a poll sooner than the interval after the previous one adds 5 s to
    /// the interval and sets `poll_early`, in one write.
    async fn poll_approval(&self, id: &str, device_code_hash: &[u8], client_id: &str, now: i64) -> StoreResult<Option<ApprovalRow>>;

    /// Moves a live pending approval to `approved` or `denied`, binding it to `user_id` (unless
    /// it is already bound to another user) and noting the deciding device; one conditional write.
    async fn decide_approval(&self, decision: &Decision<'_>, now: i64) -> StoreResult<Option<ApprovalRow>>;

    /// Ends a pending approval as denied after polling abuse. An approved one is left alone: the
    /// poll that collects it may still be on its way while concurrent polls count as abuse, and
    /// those must not take the tokens from it (it is collected once either way). False when it
    /// was not pending any more (a concurrent poll ended it first).
    async fn deny_for_abuse(&self, id: &str, now: i64) -> StoreResult<bool>;
    /// Ends a live request, pending or approved: it can no longer be collected.
    async fn end_approval(&self, id: &str, now: i64) -> StoreResult<bool>;

    /// Marks an approved, unexpired approval collected and creates the new device's session with
    /// it, in one transaction. Nothing is collected once the approving device is revoked. A
    /// handoff collects only a QR login, until its handoff code expires.
    async fn collect_approval(
        &self,
        by: &CollectBy<'_>,
        device: &DeviceRow,
        session: &SessionRow,
        refresh: Option<&RefreshTokenRow>,
        now: i64,
    ) -> StoreResult<Collected>;

    /// Denies every pending or approved, uncollected approval that the device decided, scanned
    /// or holds through its pairing code, and ends its live pairing codes (the device was
    /// revoked). Returns the approvals ended.
    async fn end_approvals_of_device(&self, user_id: &str, device_id: &str, now: i64) -> StoreResult<u64>;

    /// The first signed-in device to open a live QR login locks it to itself (and its user);
    /// the same device may look again. One conditional write.
    async fn scan_qr(&self, id: &str, user_id: &str, device_id: &str, now: i64) -> StoreResult<Option<ApprovalRow>>;

    /// Stores a new pairing code, ending any live code of the same issuing device.
    async fn create_pairing_code(&self, code: &PairingCodeRow, now: i64) -> StoreResult<()>;

    async fn pairing_code(&self, id: &str) -> StoreResult<Option<PairingCodeRow>>;

    /// Consumes a live pairing code and creates its pending approval, in one transaction, unless
    /// the requester's IP has `cap_per_ip` live pending requests (0: no cap); then nothing is
    /// written. `approval` comes without user, scope and approver: the code supplies them, and
    /// the user to `audit`, which is written in the same transaction.
    async fn redeem_pairing_code(
        &self,
        code_hmac: &[u8],
        approval: &ApprovalRow,
        cap_per_ip: i64,
        now: i64,
        audit: &AuditRow,
    ) -> StoreResult<Redeemed>;
}

/// Apps that sign their users in through Latchkey: authorization codes and consents.
#[async_trait]
pub trait GrantStore: Send + Sync + 'static {
    async fn create_auth_code(&self, code: &AuthCodeRow) -> StoreResult<()>;

    async fn auth_code(&self, hash: &[u8]) -> StoreResult<Option<AuthCodeRow>>;

    /// A code with what the token endpoint reads before redeeming it: the device it was issued
    /// on and the account (for the id_token's claims). One snapshot where the backend has one.
    async fn auth_code_context(&self, hash: &[u8]) -> StoreResult<Option<CodeContext>>;

    /// Redeems an unused, unexpired code of `client_id` whose browser session is live and whose
    /// device is not revoked, and opens the app's session on that device with it, in one
    /// transaction (the code's used mark names `session`). None: nothing was redeemed.
    async fn redeem_auth_code(
        &self,
        hash: &[u8],
        client_id: &str,
        device: &DeviceRow,
        session: &SessionRow,
        refresh: &RefreshTokenRow,
        now: i64,
    ) -> StoreResult<Option<AuthCodeRow>>;

    async fn consent(&self, user_id: &str, client_id: &str) -> StoreResult<Option<ConsentRow>>;

    async fn consents_for_user(&self, user_id: &str) -> StoreResult<Vec<ConsentRow>>;

    /// Records (or widens) a consent.
    async fn put_consent(&self, consent: &ConsentRow) -> StoreResult<()>;

    /// Deletes the consent and ends the app's sessions of the user, in one transaction; returns
    /// whether there was a consent and how many sessions ended.
    async fn revoke_consent(&self, user_id: &str, client_id: &str, now: i64) -> StoreResult<(bool, u64)>;

    /// `(device_id, client_id, client name)` for each app with a live session on a device of the user.
    async fn apps_on_devices(&self, user_id: &str, now: i64) -> StoreResult<Vec<(String, String, String)>>;
}

/// Second factors and remembered devices.
/// What removing an identity did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlinked {
    Removed,
    NotFound,
    /// Refused: it is the account's last way in.
    LastWayIn,
}

#[async_trait]
pub trait IdentityStore: Send + Sync + 'static {
    async fn create_upstream_state(&self, row: &UpstreamStateRow) -> StoreResult<()>;
    /// Takes a live state by the hash of its value, at most once.
    async fn take_upstream_state(&self, hash: &[u8], now: i64) -> StoreResult<Option<UpstreamStateRow>>;
    async fn identity(&self, upstream: &str, issuer: &str, subject: &str) -> StoreResult<Option<IdentityRow>>;
    async fn identities_for_user(&self, user_id: &str) -> StoreResult<Vec<IdentityRow>>;
    /// `Conflict` when this `(upstream, issuer, subject)` is linked already (to anyone).
    async fn link_identity(&self, row: &IdentityRow) -> StoreResult<()>;
    /// A new account and its first identity, in one transaction (`Conflict` if either exists).
    async fn create_user_with_identity(&self, user: &UserRow, identity: &IdentityRow) -> StoreResult<()>;
    async fn touch_identity(&self, id: &str, email: Option<&str>, now: i64) -> StoreResult<()>;
    async fn unlink_identity(&self, user_id: &str, id: &str) -> StoreResult<Unlinked>;
}

#[async_trait]
pub trait PasskeyStore: Send + Sync + 'static {
    async fn create_passkey_challenge(&self, row: &PasskeyChallengeRow) -> StoreResult<()>;
    /// Takes a live ceremony of `purpose` by its handle's hash: at most once.
    async fn take_passkey_challenge(&self, hash: &[u8], purpose: &str, now: i64) -> StoreResult<Option<PasskeyChallengeRow>>;
    /// `Conflict` when the credential is registered already (to this or any account).
    async fn add_passkey(&self, row: &PasskeyRow) -> StoreResult<()>;
    async fn passkeys_for_user(&self, user_id: &str) -> StoreResult<Vec<PasskeyRow>>;
    async fn passkey_by_credential(&self, credential_id: &[u8]) -> StoreResult<Option<PasskeyRow>>;
    /// Records a verified assertion; false when its counter did not go forward (see `USE_PASSKEY`).
    async fn use_passkey(&self, id: &str, credential: &str, counter: i64, backed_up: bool, now: i64) -> StoreResult<bool>;
    async fn rename_passkey(&self, user_id: &str, id: &str, name: &str) -> StoreResult<bool>;
    /// Removes a passkey unless it is the account's last way in.
    async fn remove_passkey(&self, user_id: &str, id: &str) -> StoreResult<Unlinked>;
    /// A step-up on a live session; false when the session has ended.
    async fn mark_session_passkey(&self, session_id: &str, now: i64) -> StoreResult<bool>;
    async fn revoke_passkey_sessions(&self, user_id: &str, passkey_id: &str, now: i64) -> StoreResult<u64>;
    /// The account's choice that approvals need a fresh passkey assertion.
    async fn passkey_step_up(&self, user_id: &str) -> StoreResult<bool>;
    async fn set_passkey_step_up(&self, user_id: &str, on: bool) -> StoreResult<()>;
}

#[async_trait]
pub trait MfaStore: Send + Sync + 'static {
    /// Stores a new, unconfirmed TOTP secret, replacing an unconfirmed one; false when the user
    /// already has a confirmed TOTP (turn it off first).
    async fn put_pending_totp(&self, user_id: &str, secret_enc: &[u8], now: i64) -> StoreResult<bool>;

    async fn totp(&self, user_id: &str) -> StoreResult<Option<TotpRow>>;

    /// Confirms the pending TOTP at `step` and replaces the recovery codes, in one transaction.
    async fn confirm_totp(&self, user_id: &str, step: i64, recovery_hmacs: &[Vec<u8>], now: i64) -> StoreResult<bool>;

    /// Accepts a confirmed TOTP's code for `step` once: one conditional write on the last step.
    async fn use_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool>;

    /// Removes TOTP and the recovery codes.
    async fn delete_totp(&self, user_id: &str) -> StoreResult<()>;

    /// Consumes an unused recovery code.
    async fn use_recovery_code(&self, user_id: &str, code_hmac: &[u8], now: i64) -> StoreResult<bool>;

    async fn email_factor(&self, user_id: &str) -> StoreResult<bool>;

    async fn enable_email_factor(&self, user_id: &str, now: i64) -> StoreResult<()>;
    async fn disable_email_factor(&self, user_id: &str) -> StoreResult<()>;

    /// Stores an e-mail code, replacing the live one, unless the live one is younger than
    /// `resend_after` seconds (then false: too soon to resend).
    async fn put_email_code(
        &self,
        user_id: &str,
        purpose: &str,
        code_hmac: &[u8],
        now: i64,
        ttl: i64,
        resend_after: i64,
    ) -> StoreResult<bool>;

    /// Consumes the e-mail code if it matches, is live and has had fewer than `max_attempts`
    /// wrong tries; otherwise counts a wrong try. One conditional write each.
    async fn use_email_code(&self, user_id: &str, purpose: &str, code_hmac: &[u8], now: i64, max_attempts: i64) -> StoreResult<bool>;

    async fn create_mfa_token(&self, row: &MfaTokenRow) -> StoreResult<()>;

    async fn mfa_token(&self, hash: &[u8]) -> StoreResult<Option<MfaTokenRow>>;

    /// Counts a wrong code against the token; returns the failures so far.
    async fn fail_mfa_token(&self, hash: &[u8]) -> StoreResult<i64>;

    /// Consumes a live token with fewer than `max_failures` failures; false if it was not.
    async fn consume_mfa_token(&self, hash: &[u8], now: i64, max_failures: i64) -> StoreResult<bool>;

    /// Stores a device-trust token and marks the device trusted until it expires.
    async fn create_trust(&self, row: &TrustRow) -> StoreResult<()>;

    /// Rotates a live trust token of `user_id`: the old one is deleted and `new_hash` takes its
    /// place with the same absolute expiry, in one transaction. Returns the device it trusts.
    async fn rotate_trust(
        &self,
        old_hash: &[u8],
        user_id: &str,
        new_hash: &[u8],
        ip: &str,
        user_agent: &str,
        now: i64,
    ) -> StoreResult<Option<String>>;

    /// Ends the trust of one device, or of every device of the user (`device_id` None).
    async fn revoke_trust(&self, user_id: &str, device_id: Option<&str>) -> StoreResult<u64>;
}

#[async_trait]
pub trait AlertStore: Send + Sync + 'static {
    async fn create_device_alert(&self, row: &DeviceAlertRow) -> StoreResult<()>;
    /// A live, unused "This wasn't me" link.
    async fn device_alert(&self, token_hash: &[u8], now: i64) -> StoreResult<Option<DeviceAlertRow>>;
    /// Uses a live link: at most once.
    async fn use_device_alert(&self, token_hash: &[u8], now: i64) -> StoreResult<Option<DeviceAlertRow>>;
    /// The account's choice of new-device mail.
    async fn new_device_mail(&self, user_id: &str) -> StoreResult<bool>;
    async fn set_new_device_mail(&self, user_id: &str, on: bool) -> StoreResult<()>;
    async fn create_email_link(&self, row: &EmailLinkRow) -> StoreResult<()>;
    /// A live, unused link of `purpose`.
    async fn email_link(&self, token_hash: &[u8], purpose: &str, now: i64) -> StoreResult<Option<EmailLinkRow>>;
    /// Uses a live link of `purpose`: at most once.
    async fn use_email_link(&self, token_hash: &[u8], purpose: &str, now: i64) -> StoreResult<Option<EmailLinkRow>>;
    async fn end_email_links(&self, user_id: &str, purpose: &str, now: i64) -> StoreResult<u64>;
    /// Marks `email` verified on the account, if it is still the account's address.
    async fn verify_email(&self, user_id: &str, email: &str, now: i64) -> StoreResult<bool>;
}

/// The one store: every backend implements all of it.
pub trait Store:
    OpsStore + AccountStore + SessionStore + ApprovalStore + MfaStore + GrantStore + IdentityStore + PasskeyStore + AlertStore
{
}

impl<T: OpsStore + AccountStore + SessionStore + ApprovalStore + MfaStore + GrantStore + IdentityStore + PasskeyStore + AlertStore> Store
    for T
{
}

/// Bring every store method into scope: `use crate::store::prelude::*;`.
pub mod prelude {
    pub use super::{
        AccountStore, AlertStore, ApprovalStore, GrantStore, IdentityStore, MfaStore, OpsStore, PasskeyStore, SessionStore, Store,
    };
}

pub type DynStore = Arc<dyn Store>;

/// Opens the store a database URL names, applying migrations.
pub async fn open(url: &str, max_connections: u32) -> anyhow::Result<DynStore> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url, max_connections).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::open(url, max_connections).await?))
    } else {
        anyhow::bail!("unsupported database URL {url:?}: use sqlite://PATH or postgres://USER@HOST/DB")
    }
}
