//! Rows as the store keeps them. Plain data; the domain and service layers give them meaning.

use crate::domain::approval::{Flow, Status};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SigningKeyRow {
    pub kid: String,
    /// The Ed25519 seed, or for RS256 the RSA private key as PKCS#8 DER.
    pub seed: Vec<u8>,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    /// `EdDSA` or `RS256`: one active key of each.
    pub alg: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    /// None for a passwordless account made from a device.
    pub email: Option<String>,
    pub password_hash: Option<String>,
    pub created_at: i64,
    /// When the address proved itself; None: not verified (no e-mail codes, no new-device mail).
    pub email_verified_at: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClientRow {
    pub id: String,
    pub name: String,
    pub secret_hash: Option<Vec<u8>>,
    pub created_at: i64,
    /// Registered redirect URIs, one per line (authorization code grant); empty for device clients.
    pub redirect_uris: String,
    pub post_logout_redirect_uris: String,
    /// The scopes the client may ask for, space-separated.
    pub scopes: String,
    /// `auto` (ask once, remember) or `always` (ask each time).
    pub consent: String,
    /// `RS256` or `EdDSA`.
    pub id_token_alg: String,
    /// A resource server's right to introspect the tokens of other clients; without it a
    /// confidential client learns only about tokens issued to itself.
    pub introspects_any: bool,
}

impl ClientRow {
    pub fn redirect_uri_list(&self) -> impl Iterator<Item = &str> {
        self.redirect_uris.lines().filter(|l| !l.is_empty())
    }

    pub fn post_logout_uri_list(&self) -> impl Iterator<Item = &str> {
        self.post_logout_redirect_uris.lines().filter(|l| !l.is_empty())
    }

    pub fn is_public(&self) -> bool {
        self.secret_hash.is_none()
    }
}

/// A code with the device it was issued on and its account, as the token endpoint reads them
/// (either may be gone since the code was issued).
#[derive(Debug, Clone)]
pub struct CodeContext {
    pub code: AuthCodeRow,
    pub device: Option<DeviceRow>,
    pub user: Option<UserRow>,
}

/// An authorization code, by the SHA-256 of the code (RFC 6749 §4.1).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuthCodeRow {
    pub code_hash: Vec<u8>,
    pub client_id: String,
    pub redirect_uri: String,
    pub user_id: String,
    /// The browser session that authorized it; the code dies with it.
    pub browser_session_id: String,
    /// The browser's device: the app's session is opened on it.
    pub device_id: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: i64,
    pub amr: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub issued_session_id: Option<String>,
}

/// What a user let an app have.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConsentRow {
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub granted_at: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceRow {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub kind: String,
    pub os: String,
    pub browser: String,
    pub user_agent: String,
    pub authorized_by: String,
    pub approved_by_device: Option<String>,
    pub first_seen_at: i64,
    pub last_seen_at: i64,
    pub last_ip: String,
    pub trusted_until: Option<i64>,
    pub revoked_at: Option<i64>,
    /// Let in by an approval given with a fresh passkey assertion (step-up).
    pub passkey_verified: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub device_id: String,
    pub client_id: String,
    pub scope: String,
    pub amr: String,
    pub web_token_hash: Option<Vec<u8>>,
    pub created_at: i64,
    pub last_used_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub revoke_reason: Option<String>,
    /// The passkey this session was opened with, if it was.
    pub passkey_id: Option<String>,
    /// When this session last proved a passkey (its sign-in, or a step-up since).
    pub passkey_verified_at: Option<i64>,
}

impl SessionRow {
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshTokenRow {
    pub hash: Vec<u8>,
    pub session_id: String,
    pub client_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub superseded_at: Option<i64>,
    pub successor_hash: Option<Vec<u8>>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub kind: String,
    pub user_id: Option<String>,
    pub device_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: String,
}

#[derive(Debug, Clone, Default, sqlx::FromRow)]
pub struct ApprovalRow {
    pub id: String,
    #[sqlx(try_from = "String")]
    pub flow: Flow,
    pub device_code_hash: Vec<u8>,
    pub user_code_hmac: Option<Vec<u8>>,
    pub client_id: String,
    pub scope: String,
    #[sqlx(try_from = "String")]
    pub status: Status,
    pub created_at: i64,
    pub expires_at: i64,
    pub requester_ip: String,
    pub requester_ua: String,
    pub requester_name: Option<String>,
    pub requester_kind: Option<String>,
    pub user_id: Option<String>,
    pub approver_device_id: Option<String>,
    pub decided_at: Option<i64>,
    pub poll_interval: i64,
    pub last_poll_at: Option<i64>,
    pub slow_downs: i64,
    pub poll_early: i64,
    pub session_id: Option<String>,
    pub match_code: Option<String>,
    pub scanned_at: Option<i64>,
    pub handoff_hash: Option<Vec<u8>>,
    pub handoff_expires_at: Option<i64>,
    pub handoff_used_at: Option<i64>,
    /// Approved with a fresh passkey assertion (step-up).
    pub passkey_verified: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PairingCodeRow {
    pub id: String,
    pub user_id: String,
    pub issuer_device_id: String,
    pub code_hmac: Vec<u8>,
    pub scope: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub redeemed_at: Option<i64>,
    pub approval_id: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TotpRow {
    pub user_id: String,
    pub secret_enc: Vec<u8>,
    pub created_at: i64,
    pub confirmed_at: Option<i64>,
    pub last_step: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MfaTokenRow {
    pub hash: Vec<u8>,
    pub user_id: String,
    pub client_id: String,
    pub scope: String,
    pub device_json: String,
    pub web: bool,
    pub ip: String,
    pub user_agent: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub failures: i64,
    pub consumed_at: Option<i64>,
    /// The RFC 8176 value of the first step: `pwd`, or the upstream's id.
    pub first_factor: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TrustRow {
    pub hash: Vec<u8>,
    pub user_id: String,
    pub device_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: i64,
    pub ip: String,
    pub user_agent: String,
}

/// An upstream identity linked to an account (see `domain::linking`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IdentityRow {
    pub id: String,
    pub user_id: String,
    pub upstream: String,
    pub issuer: String,
    pub subject: String,
    /// What the upstream last said; never copied to the account.
    pub email: Option<String>,
    pub created_at: i64,
    pub last_used_at: i64,
}

/// A sign-in sent to an upstream and not yet back.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UpstreamStateRow {
    pub state_hash: Vec<u8>,
    /// SHA-256 of the secret in the browser's cookie.
    pub browser_hash: Vec<u8>,
    pub upstream: String,
    pub next: String,
    pub link_session_id: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A registered passkey (see `service::passkeys`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PasskeyRow {
    pub id: String,
    pub user_id: String,
    pub credential_id: Vec<u8>,
    pub name: String,
    /// webauthn-rs's `Passkey` as JSON: the public key and flags, nothing secret.
    pub credential: String,
    pub counter: i64,
    pub backup_eligible: bool,
    pub backed_up: bool,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// The "This wasn't me" link of one new-device mail.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceAlertRow {
    /// SHA-256 of the token in the link.
    pub token_hash: Vec<u8>,
    pub user_id: String,
    pub device_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// A link mailed to an address: e-mail verification or password reset.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct EmailLinkRow {
    /// SHA-256 of the token in the link.
    pub token_hash: Vec<u8>,
    /// `verify` or `reset`.
    pub purpose: String,
    pub user_id: String,
    /// The address it was sent to: a verification holds only while the account still has it.
    pub email: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// A passkey ceremony started and not yet finished.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PasskeyChallengeRow {
    /// SHA-256 of the handle the client holds.
    pub handle_hash: Vec<u8>,
    /// `register`, `sign_in` or `step_up`.
    pub purpose: String,
    pub user_id: Option<String>,
    pub session_id: Option<String>,
    pub name: Option<String>,
    /// webauthn-rs's ceremony state as JSON.
    pub state: String,
    pub created_at: i64,
    pub expires_at: i64,
}
