//! Passkeys (WebAuthn, through webauthn-rs): registering one on a signed-in account, signing in
//! with one and nothing else (a discoverable credential: no e-mail typed), and the step-up that
//! approvals may ask for. A sign-in meets every other way in at `auth::complete_sign_in`.
//!
//! Each ceremony's state (its challenge, and for whom) stays in the store under the SHA-256 of a
//! handle the client gets, and is taken by one conditional delete: a challenge answers once, for
//! its own purpose, user and session, and never after `passkeys.challenge_ttl_secs`.

use super::audit::{Audit, AuditKind};
use super::auth::{self, LoginOutcome, SignInContext, Verified};
use super::limits;
use super::sessions::{AuthorizedBy, Caller};
use crate::config::Settings;
use crate::domain::device::{DeviceFacts, DeviceInput};
use crate::domain::{passkey, secret};
use crate::service::{App, AppError, AppResult, ClientMeta};
use crate::store::{PasskeyChallengeRow, PasskeyRow, Unlinked};
use serde::Serialize;
use webauthn_rs::prelude::{
    AuthenticationResult, CreationChallengeResponse, Credential, DiscoverableAuthentication, Passkey, PasskeyAuthentication,
    PasskeyRegistration, PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse, Uuid, WebauthnError,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

const REGISTER: &str = "register";
const SIGN_IN: &str = "sign_in";
const STEP_UP: &str = "step_up";

/// The relying party this server is, from its public URL; `None` (and a warning) when that
/// URL's host is an IP address, on which browsers refuse passkeys.
pub fn relying_party(issuer: &str, settings: &Settings) -> Option<Webauthn> {
    let Some((rp_id, origin)) = passkey::relying_party(issuer) else {
        tracing::warn!(%issuer, "passkeys are off: server.public_url's host must be a domain name (localhost will do), not an IP address");
        return None;
    };
    let built = WebauthnBuilder::new(&rp_id, &origin)
        .map(|b| b.rp_name(&settings.mfa.totp_issuer).timeout(std::time::Duration::from_secs(settings.passkeys.challenge_ttl_secs)))
        .and_then(|b| b.build());
    match built {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(%issuer, error = %e, "passkeys are off: no relying party for this public URL");
            None
        }
    }
}

fn webauthn(app: &App) -> AppResult<&Webauthn> {
    app.webauthn.as_ref().ok_or_else(|| {
        AppError::Conflict("passkeys are not available on this server: its public URL must have a domain name, not an IP address".into())
    })
}

/// A started ceremony: the handle to finish it with, and the options for
/// `navigator.credentials.create()` / `.get()` (WebAuthn's JSON form, base64url bytes).
#[derive(Debug, Serialize)]
pub struct Ceremony<T: Serialize> {
    pub challenge_id: String,
    pub options: T,
}

/// A passkey as the account sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PasskeyView {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    /// It may be copied between devices (a synced passkey): its sign-ins say `swk`, not `hwk`.
    pub backup_eligible: bool,
    pub backed_up: bool,
}

impl From<&PasskeyRow> for PasskeyView {
    fn from(p: &PasskeyRow) -> Self {
        Self {
            id: p.id.clone(),
            name: p.name.clone(),
            created_at: p.created_at,
            last_used_at: p.last_used_at,
            backup_eligible: p.backup_eligible,
            backed_up: p.backed_up,
        }
    }
}

fn refused() -> AppError {
    AppError::BadRequest("this passkey request is unknown, already answered or expired: start again".into())
}

fn internal(e: impl std::fmt::Display) -> AppError {
    AppError::Internal(anyhow::anyhow!("passkey state: {e}"))
}

/// What webauthn-rs refused, in words for the person (the details go to the audit trail).
fn verification_failed(e: &WebauthnError) -> AppError {
    let why = match e {
        WebauthnError::UserNotVerified => "the passkey did not verify you (PIN or biometric)",
        WebauthnError::InvalidRPOrigin => "the passkey answered a different site",
        WebauthnError::InvalidRPIDHash => "the passkey belongs to a different site",
        WebauthnError::MismatchedChallenge => "the passkey answered a different request",
        WebauthnError::CredentialPossibleCompromise => "the passkey's counter went backwards: it may have been copied",
        _ => "the passkey's answer could not be verified",
    };
    AppError::BadRequest(format!("{why}; nothing was changed"))
}

async fn open_ceremony(app: &App, purpose: &str, caller: Option<&Caller>, name: Option<String>, state: String) -> AppResult<String> {
    let handle = secret::b64url(&secret::random_bytes::<32>());
    let now = app.now();
    app.store
        .create_passkey_challenge(&PasskeyChallengeRow {
            handle_hash: secret::token_hash(&handle),
            purpose: purpose.into(),
            user_id: caller.map(|c| c.user_id.clone()),
            session_id: caller.map(|c| c.session_id.clone()),
            name,
            state,
            created_at: now,
            expires_at: now + app.settings.passkeys.challenge_ttl_secs as i64,
        })
        .await?;
    Ok(handle)
}

/// Takes a ceremony for `purpose`; one started by a signed-in caller only for that same session.
async fn take_ceremony(app: &App, handle: &str, purpose: &str, caller: Option<&Caller>) -> AppResult<PasskeyChallengeRow> {
    if handle.is_empty() || handle.len() > 128 {
        return Err(refused());
    }
    let row = app.store.take_passkey_challenge(&secret::token_hash(handle), purpose, app.now()).await?.ok_or_else(refused)?;
    let (user, session) = (caller.map(|c| c.user_id.as_str()), caller.map(|c| c.session_id.as_str()));
    if row.user_id.as_deref() != user || row.session_id.as_deref() != session {
        return Err(refused());
    }
    Ok(row)
}

fn user_handle(user_id: &str) -> AppResult<Uuid> {
    Uuid::parse_str(user_id).map_err(|e| internal(format!("account id is not a UUID: {e}")))
}

// --- registration ------------------------------------------------------------------------------

/// Starts adding a passkey to the caller's account (a sign-in at most `mfa.recent_auth_secs`
/// old, or a passkey proved since). The account's passkeys are excluded, so an authenticator
/// that holds one already says so instead of making a second.
pub async fn start_registration(app: &App, caller: &Caller, name: Option<&str>) -> AppResult<Ceremony<CreationChallengeResponse>> {
    let wa = webauthn(app)?;
    let recent = app.settings.mfa.recent_auth_secs as i64;
    let now = app.now();
    if now - caller.auth_time > recent && !passkey::step_up_fresh(caller.passkey_verified_at, now, recent) {
        return Err(AppError::Forbidden("sign in again first: adding a passkey needs a recent sign-in".into()));
    }
    let user = app.store.user_by_id(&caller.user_id).await?.ok_or(AppError::Unauthorized)?;
    let have = app.store.passkeys_for_user(&user.id).await?;
    let name = passkey::name(name, &format!("Passkey {}", have.len() + 1))?;
    let label = user.email.clone().unwrap_or_else(|| format!("account {}", &user.id[..8.min(user.id.len())]));
    let exclude = have.iter().map(|p| p.credential_id.clone()).collect();
    let (mut ccr, state) = wa.start_passkey_registration(user_handle(&user.id)?, &label, &label, Some(exclude)).map_err(internal)?;
    // A discoverable credential, so that signing in needs no e-mail first (webauthn-rs leaves
    // residence to the authenticator; every current platform makes one when asked).
    if let Some(sel) = ccr.public_key.authenticator_selection.as_mut() {
        sel.resident_key = Some(webauthn_rs_proto::ResidentKeyRequirement::Required);
        sel.require_resident_key = true;
    }
    let state = serde_json::to_string(&state).map_err(internal)?;
    let challenge_id = open_ceremony(app, REGISTER, Some(caller), Some(name), state).await?;
    Ok(Ceremony { challenge_id, options: ccr })
}

/// Finishes adding a passkey: webauthn-rs checks origin, RP id, challenge, user verification and
/// the attestation's form; the credential is then stored, unless any account has it already.
pub async fn finish_registration(
    app: &App,
    caller: &Caller,
    challenge_id: &str,
    credential: &RegisterPublicKeyCredential,
    meta: &ClientMeta,
) -> AppResult<PasskeyView> {
    let wa = webauthn(app)?;
    let row = take_ceremony(app, challenge_id, REGISTER, Some(caller)).await?;
    let state: PasskeyRegistration = serde_json::from_str(&row.state).map_err(internal)?;
    let key = match wa.finish_passkey_registration(credential, &state) {
        Ok(k) => k,
        Err(e) => {
            Audit::new(AuditKind::PasskeyLoginFailed)
                .user(&caller.user_id)
                .meta(meta)
                .detail(serde_json::json!({ "ceremony": REGISTER, "reason": e.to_string() }))
                .record(app)
                .await?;
            return Err(verification_failed(&e));
        }
    };
    let cred = Credential::from(key.clone());
    let now = app.now();
    let stored = PasskeyRow {
        id: Uuid::now_v7().to_string(),
        user_id: caller.user_id.clone(),
        credential_id: cred.cred_id.to_vec(),
        name: row.name.unwrap_or_else(|| "Passkey".into()),
        credential: serde_json::to_string(&key).map_err(internal)?,
        counter: i64::from(cred.counter),
        backup_eligible: cred.backup_eligible,
        backed_up: cred.backup_state,
        created_at: now,
        last_used_at: None,
    };
    match app.store.add_passkey(&stored).await {
        Ok(()) => {}
        Err(crate::store::StoreError::Conflict) => return Err(AppError::Conflict("this passkey is registered already".into())),
        Err(e) => return Err(e.into()),
    }
    Audit::new(AuditKind::PasskeyAdded)
        .user(&caller.user_id)
        .device(&caller.device_id)
        .meta(meta)
        .detail(serde_json::json!({ "passkey": stored.id, "name": stored.name, "backup_eligible": stored.backup_eligible }))
        .record(app)
        .await?;
    Ok(PasskeyView::from(&stored))
}

// --- using one -------------------------------------------------------------------------------

/// Records a verified assertion on the stored passkey: the counter and backup state move, by
/// one conditional write that refuses a counter that did not go forward. A refusal is audited.
async fn record_use(app: &App, row: &PasskeyRow, result: &AuthenticationResult, meta: &ClientMeta) -> AppResult<()> {
    let mut key: Passkey = serde_json::from_str(&row.credential).map_err(internal)?;
    key.update_credential(result);
    let counter = result.counter();
    let stored = u32::try_from(row.counter).unwrap_or(u32::MAX);
    let json = serde_json::to_string(&key).map_err(internal)?;
    let moved = passkey::counter_ok(stored, counter)
        && app.store.use_passkey(&row.id, &json, i64::from(counter), result.backup_state(), app.now()).await?;
    if !moved {
        counter_regressed(app, row, i64::from(counter), meta).await?;
        return Err(verification_failed(&WebauthnError::CredentialPossibleCompromise));
    }
    Ok(())
}

async fn counter_regressed(app: &App, row: &PasskeyRow, presented: i64, meta: &ClientMeta) -> AppResult<()> {
    Audit::new(AuditKind::PasskeyCounterRegressed)
        .user(&row.user_id)
        .meta(meta)
        .detail(serde_json::json!({ "passkey": row.id, "stored": row.counter, "presented": presented }))
        .record(app)
        .await
}

/// Checks an assertion against a stored passkey of the expected account: a credential of
/// another account, a wrong origin, RP id or challenge, no user verification, or a counter gone
/// backwards are all refused and audited.
async fn verify_assertion(
    app: &App,
    credential: &PublicKeyCredential,
    expected_user: Option<&str>,
    check: impl FnOnce(&Credential) -> Result<AuthenticationResult, WebauthnError>,
    ceremony: &str,
    meta: &ClientMeta,
) -> AppResult<PasskeyRow> {
    let fail = |user: Option<String>, reason: String| async move {
        let mut a = Audit::new(AuditKind::PasskeyLoginFailed).meta(meta);
        if let Some(u) = &user {
            a = a.user(u);
        }
        a.detail(serde_json::json!({ "ceremony": ceremony, "reason": reason })).record(app).await
    };
    let Some(row) = app.store.passkey_by_credential(credential.get_credential_id()).await? else {
        fail(expected_user.map(str::to_owned), "unknown_credential".into()).await?;
        return Err(AppError::BadRequest("this passkey is not registered here".into()));
    };
    if expected_user.is_some_and(|u| u != row.user_id) {
        fail(expected_user.map(str::to_owned), "credential_of_another_account".into()).await?;
        return Err(AppError::BadRequest("this passkey belongs to another account".into()));
    }
    let key: Passkey = serde_json::from_str(&row.credential).map_err(internal)?;
    let result = match check(&Credential::from(key)) {
        Ok(r) => r,
        Err(WebauthnError::CredentialPossibleCompromise) => {
            let presented = credential_counter(credential);
            counter_regressed(app, &row, presented, meta).await?;
            return Err(verification_failed(&WebauthnError::CredentialPossibleCompromise));
        }
        Err(e) => {
            fail(Some(row.user_id.clone()), e.to_string()).await?;
            return Err(verification_failed(&e));
        }
    };
    record_use(app, &row, &result, meta).await?;
    Ok(row)
}

/// The signature counter an assertion presents (authenticator data bytes 33..37), for the audit
/// trail of a refused one; -1 when it cannot be read.
fn credential_counter(c: &PublicKeyCredential) -> i64 {
    let data: &[u8] = c.response.authenticator_data.as_ref();
    data.get(33..37).and_then(|b| <[u8; 4]>::try_from(b).ok()).map_or(-1, |b| i64::from(u32::from_be_bytes(b)))
}

/// Starts a sign-in with a passkey: no account named (the authenticator offers its own), so the
/// options carry no credential list. Rate-limited per IP like password logins.
pub async fn start_sign_in(app: &App, meta: &ClientMeta) -> AppResult<Ceremony<RequestChallengeResponse>> {
    let wa = webauthn(app)?;
    let lim = app.settings.limits.login_per_ip_per_minute;
    limits::check(app, &format!("passkey:ip:{}", meta.ip), lim, 60, meta).await?;
    let (rcr, state) = wa.start_discoverable_authentication().map_err(internal)?;
    let state = serde_json::to_string(&state).map_err(internal)?;
    let challenge_id = open_ceremony(app, SIGN_IN, None, None, state).await?;
    Ok(Ceremony { challenge_id, options: rcr })
}

/// A passkey sign-in's answer and where it signs in.
pub struct PasskeySignIn<'a> {
    pub challenge_id: &'a str,
    pub credential: &'a PublicKeyCredential,
    pub client_id: Option<&'a str>,
    pub client_secret: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub device: Option<&'a DeviceInput>,
    pub web: bool,
}

/// Finishes a passkey sign-in. A user-verified passkey is a whole sign-in (`amr` `hwk`|`swk` and
/// `user`): no second factor is asked, and the session remembers the passkey.
pub async fn finish_sign_in(app: &App, req: PasskeySignIn<'_>, meta: &ClientMeta) -> AppResult<LoginOutcome> {
    let wa = webauthn(app)?;
    let device = DeviceFacts::from_input(req.device, &meta.user_agent)?;
    let (client_id, scope) = auth::sign_in_client(app, req.client_id, req.client_secret, req.scope, req.web).await?;
    let row = take_ceremony(app, req.challenge_id, SIGN_IN, None).await?;
    let state: DiscoverableAuthentication = serde_json::from_str(&row.state).map_err(internal)?;
    // The authenticator names the account (its user handle); the credential must be that account's.
    let user_id = match wa.identify_discoverable_authentication(req.credential) {
        Ok((uuid, _)) => uuid.to_string(),
        Err(e) => {
            Audit::new(AuditKind::PasskeyLoginFailed)
                .meta(meta)
                .detail(serde_json::json!({ "ceremony": SIGN_IN, "reason": e.to_string() }))
                .record(app)
                .await?;
            return Err(AppError::BadRequest("the passkey did not say which account it is for".into()));
        }
    };
    let cred = req.credential;
    let row =
        verify_assertion(app, cred, Some(&user_id), |c| wa.finish_discoverable_authentication_v2(cred, state, c), SIGN_IN, meta).await?;
    let user = app.store.user_by_id(&row.user_id).await?.ok_or(AppError::InvalidCredentials)?;
    metrics::counter!("latchkey_passkey_sign_ins_total").increment(1);
    let verified = Verified {
        user,
        method: "passkey".into(),
        amr: passkey::amr(row.backup_eligible).iter().map(|s| (*s).to_owned()).collect(),
        authorized_by: AuthorizedBy::Passkey,
        passkey_id: Some(row.id.clone()),
    };
    let ctx =
        SignInContext { client_id: &client_id, scope: &scope, device_input: req.device, device, web: req.web, device_trust_token: None };
    auth::complete_sign_in(app, verified, ctx, meta).await
}

// --- step-up ---------------------------------------------------------------------------------

/// Starts a step-up: the caller proves one of the account's own passkeys.
pub async fn start_step_up(app: &App, caller: &Caller) -> AppResult<Ceremony<RequestChallengeResponse>> {
    let wa = webauthn(app)?;
    let keys = app.store.passkeys_for_user(&caller.user_id).await?;
    if keys.is_empty() {
        return Err(AppError::Conflict("this account has no passkey yet: add one on /account first".into()));
    }
    let keys: Vec<Passkey> = keys.iter().map(|k| serde_json::from_str(&k.credential)).collect::<Result<_, _>>().map_err(internal)?;
    let (rcr, state) = wa.start_passkey_authentication(&keys).map_err(internal)?;
    let state = serde_json::to_string(&state).map_err(internal)?;
    let challenge_id = open_ceremony(app, STEP_UP, Some(caller), None, state).await?;
    Ok(Ceremony { challenge_id, options: rcr })
}

/// Finishes a step-up: the session is marked as having proved a passkey now.
pub async fn finish_step_up(
    app: &App,
    caller: &Caller,
    challenge_id: &str,
    credential: &PublicKeyCredential,
    meta: &ClientMeta,
) -> AppResult<()> {
    let wa = webauthn(app)?;
    let row = take_ceremony(app, challenge_id, STEP_UP, Some(caller)).await?;
    let state: PasskeyAuthentication = serde_json::from_str(&row.state).map_err(internal)?;
    let key =
        verify_assertion(app, credential, Some(&caller.user_id), |_| wa.finish_passkey_authentication(credential, &state), STEP_UP, meta)
            .await?;
    if !app.store.mark_session_passkey(&caller.session_id, app.now()).await? {
        return Err(AppError::Unauthorized);
    }
    Audit::new(AuditKind::PasskeyStepUp)
        .user(&caller.user_id)
        .device(&caller.device_id)
        .meta(meta)
        .detail(serde_json::json!({ "passkey": key.id }))
        .record(app)
        .await
}

/// Whether approving as the caller needs a fresh passkey assertion (the operator's setting or
/// the account's choice), and whether the caller has one: `Ok(true)` when the caller proved a
/// passkey within `passkeys.step_up_max_age_secs`, `Ok(false)` when none is needed or fresh.
pub async fn approval_step_up(app: &App, caller: &Caller, meta: &ClientMeta) -> AppResult<bool> {
    if fresh_step_up(app, caller) {
        return Ok(true);
    }
    if step_up_required(app, caller).await? {
        Audit::new(AuditKind::StepUpRefused).user(&caller.user_id).device(&caller.device_id).meta(meta).record(app).await?;
        return Err(AppError::Forbidden(
            "confirm with your passkey first: approving a new device needs a passkey assertion from the last few minutes".into(),
        ));
    }
    Ok(false)
}

fn fresh_step_up(app: &App, caller: &Caller) -> bool {
    passkey::step_up_fresh(caller.passkey_verified_at, app.now(), app.settings.passkeys.step_up_max_age_secs as i64)
}

async fn step_up_required(app: &App, caller: &Caller) -> AppResult<bool> {
    Ok(app.settings.passkeys.require_for_approvals || app.store.passkey_step_up(&caller.user_id).await?)
}

/// Whether an approval page must ask for a passkey before Approve: required, and not fresh.
pub async fn page_needs_step_up(app: &App, caller: &Caller) -> AppResult<bool> {
    Ok(!fresh_step_up(app, caller) && step_up_required(app, caller).await?)
}

// --- the account's passkeys ------------------------------------------------------------------

pub async fn list(app: &App, caller: &Caller) -> AppResult<Vec<PasskeyView>> {
    Ok(app.store.passkeys_for_user(&caller.user_id).await?.iter().map(PasskeyView::from).collect())
}

pub async fn rename(app: &App, caller: &Caller, id: &str, name: &str, meta: &ClientMeta) -> AppResult<()> {
    let name = passkey::name(Some(name), "")?;
    if name.is_empty() {
        return Err(AppError::BadRequest("name: must not be empty".into()));
    }
    if !app.store.rename_passkey(&caller.user_id, id, &name).await? {
        return Err(AppError::NotFound);
    }
    Audit::new(AuditKind::PasskeyRenamed)
        .user(&caller.user_id)
        .meta(meta)
        .detail(serde_json::json!({ "passkey": id, "name": name }))
        .record(app)
        .await
}

/// Removes a passkey of the caller's, never the account's last way in; with `end_sessions`
/// the sessions it opened end too. The last passkey gone, the account's step-up choice goes.
pub async fn remove(app: &App, caller: &Caller, id: &str, end_sessions: bool, meta: &ClientMeta) -> AppResult<u64> {
    match app.store.remove_passkey(&caller.user_id, id).await? {
        Unlinked::Removed => {}
        Unlinked::NotFound => return Err(AppError::NotFound),
        Unlinked::LastWayIn => {
            return Err(AppError::Conflict(
                "this is the account's last way in: add another passkey, a password or a linked sign-in first".into(),
            ));
        }
    }
    let now = app.now();
    let ended = if end_sessions { app.store.revoke_passkey_sessions(&caller.user_id, id, now).await? } else { 0 };
    Audit::new(AuditKind::PasskeyRemoved)
        .user(&caller.user_id)
        .device(&caller.device_id)
        .meta(meta)
        .detail(serde_json::json!({ "passkey": id, "sessions_ended": ended }))
        .record(app)
        .await?;
    if app.store.passkeys_for_user(&caller.user_id).await?.is_empty() && app.store.passkey_step_up(&caller.user_id).await? {
        set_step_up(app, caller, false, meta).await?;
    }
    Ok(ended)
}

/// The account's own choice that approvals need a fresh passkey assertion; turning it on needs a
/// passkey to step up with.
pub async fn set_step_up(app: &App, caller: &Caller, on: bool, meta: &ClientMeta) -> AppResult<()> {
    if on && app.store.passkeys_for_user(&caller.user_id).await?.is_empty() {
        return Err(AppError::Conflict("add a passkey first: approvals would need one".into()));
    }
    app.store.set_passkey_step_up(&caller.user_id, on).await?;
    Audit::new(AuditKind::PasskeyStepUpChoice)
        .user(&caller.user_id)
        .meta(meta)
        .detail(serde_json::json!({ "require_for_approvals": on }))
        .record(app)
        .await
}

/// What `/account` and the API show of the step-up rule for this account.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StepUpRule {
    /// The operator requires it of every account.
    pub required_by_server: bool,
    /// The account asked for it.
    pub chosen: bool,
}

pub async fn step_up_rule(app: &App, caller: &Caller) -> AppResult<StepUpRule> {
    Ok(StepUpRule {
        required_by_server: app.settings.passkeys.require_for_approvals,
        chosen: app.store.passkey_step_up(&caller.user_id).await?,
    })
}
