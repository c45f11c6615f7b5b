//! Turning second factors on and off: TOTP with its recovery codes, and e-mail codes. Every
//! change needs a recent sign-in and ends the trust of every remembered device.

use super::audit::{Audit, AuditKind};
use super::second_factor::{self, EMAIL_PURPOSE, MAX_FAILURES, RECOVERY_LEN, RECOVERY_PURPOSE};
use super::sessions::Caller;
use crate::domain::device::DeviceFacts;
use crate::domain::{codes, qr_image, sealed, secret, totp};
use crate::service::{App, AppError, AppResult, ClientMeta};
use crate::store::UserRow;

const RECOVERY_CODES: usize = 10;

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TotpEnrolment {
    /// Base32, for typing into an app by hand.
    pub secret: String,
    pub otpauth_uri: String,
    /// The `otpauth_uri` as an SVG QR code.
    pub qr_svg: String,
}

async fn recent(app: &App, caller: &Caller) -> AppResult<UserRow> {
    let session = app.store.session(&caller.session_id).await?.ok_or(AppError::Unauthorized)?;
    if app.now() - session.created_at > app.settings.mfa.recent_auth_secs as i64 {
        return Err(AppError::Forbidden("sign in again first: changing second factors needs a recent sign-in".into()));
    }
    app.store.user_by_id(&caller.user_id).await?.ok_or(AppError::Unauthorized)
}

pub async fn start_totp(app: &App, caller: &Caller) -> AppResult<TotpEnrolment> {
    let user = recent(app, caller).await?;
    let raw = secret::random_bytes::<20>();
    if !app.store.put_pending_totp(&user.id, &sealed::seal(&app.mfa_key, user.id.as_bytes(), &raw), app.now()).await? {
        return Err(AppError::Conflict("TOTP is already on; turn it off first".into()));
    }
    let uri = totp::otpauth_uri(&app.settings.mfa.totp_issuer, user.email.as_deref().unwrap_or(&user.id), &raw);
    Ok(TotpEnrolment { secret: totp::base32(&raw), qr_svg: qr_image::svg(&uri)?, otpauth_uri: uri })
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RecoveryCodes {
    /// Ten single-use codes, shown only now.
    pub recovery_codes: Vec<String>,
}

pub async fn confirm_totp(app: &App, caller: &Caller, code: &str, meta: &ClientMeta) -> AppResult<RecoveryCodes> {
    let user = recent(app, caller).await?;
    let pending = app
        .store
        .totp(&user.id)
        .await?
        .filter(|t| t.confirmed_at.is_none())
        .ok_or(AppError::Conflict("no TOTP set-up is in progress".into()))?;
    let secret =
        sealed::open(&app.mfa_key, user.id.as_bytes(), &pending.secret_enc).ok_or_else(|| anyhow::anyhow!("TOTP secret does not open"))?;
    let step = totp::matching_step(&secret, code, app.now())
        .ok_or_else(|| AppError::BadRequest("Wrong code: check the time on your phone and try the next one.".into()))?;
    let plain: Vec<String> = (0..RECOVERY_CODES).map(|_| codes::generate(RECOVERY_LEN)).collect();
    let hmacs: Vec<Vec<u8>> = plain.iter().map(|c| codes::code_hmac(&app.code_key, RECOVERY_PURPOSE, c)).collect();
    if !app.store.confirm_totp(&user.id, step, &hmacs, app.now()).await? {
        return Err(AppError::Conflict("no TOTP set-up is in progress".into()));
    }
    factors_changed(app, caller, "totp_enabled", meta).await?;
    Ok(RecoveryCodes { recovery_codes: plain.iter().map(|c| codes::display(c)).collect() })
}

/// Turning TOTP off needs a current code or a recovery code.
pub async fn disable_totp(app: &App, caller: &Caller, code: &str, meta: &ClientMeta) -> AppResult<()> {
    recent(app, caller).await?;
    // Guessing codes to turn the factor off is limited like any other guessing.
    super::limits::check(app, &format!("mfa-disable:user:{}", caller.user_id), 5, 900, meta).await?;
    let ok = second_factor::check_code(app, &caller.user_id, "totp", code).await?
        || second_factor::check_code(app, &caller.user_id, "recovery", code).await?;
    if !ok {
        return Err(AppError::BadRequest("Wrong code.".into()));
    }
    app.store.delete_totp(&caller.user_id).await?;
    factors_changed(app, caller, "totp_disabled", meta).await
}

/// `POST /api/v1/mfa/email`: with no code, mails one to the account's address; with the code,
/// turns e-mail codes on (so the address has proved itself first).
pub async fn enrol_email(app: &App, caller: &Caller, code: Option<&str>, meta: &ClientMeta) -> AppResult<bool> {
    let user = recent(app, caller).await?;
    if !mailed_code_step(app, &user, "enroll", code, meta).await? {
        return Ok(false);
    }
    app.store.enable_email_factor(&user.id, app.now()).await?;
    // The mailed code reached the address: it is verified now.
    super::email_links::verified_by_code(app, &user).await?;
    factors_changed(app, caller, "email_enabled", meta).await?;
    Ok(true)
}

/// Whether sign-in codes by e-mail are on for the caller's account.
pub async fn email_codes_on(app: &App, caller: &Caller) -> AppResult<bool> {
    Ok(app.store.email_factor(&caller.user_id).await?)
}

/// Whether an authenticator app is confirmed (a pending enrolment is not a factor yet).
pub async fn totp_on(app: &App, caller: &Caller) -> AppResult<bool> {
    Ok(app.store.totp(&caller.user_id).await?.is_some_and(|t| t.confirmed_at.is_some()))
}

/// `POST /api/v1/mfa/email/disable`: with no code, mails one to the account's address; with the
/// code, turns e-mail codes off. A code, not only a recent sign-in: someone holding a stolen
/// session must not be able to weaken the account.
pub async fn disable_email(app: &App, caller: &Caller, code: Option<&str>, meta: &ClientMeta) -> AppResult<bool> {
    let user = recent(app, caller).await?;
    if !app.store.email_factor(&user.id).await? {
        return Err(AppError::BadRequest("e-mail codes are not turned on for this account".into()));
    }
    if !mailed_code_step(app, &user, "disable", code, meta).await? {
        return Ok(false);
    }
    app.store.disable_email_factor(&user.id).await?;
    factors_changed(app, caller, "email_disabled", meta).await?;
    Ok(true)
}

/// One step of a change confirmed by a mailed code: without `code`, mails one for `purpose` and
/// answers false; with it, uses it up (true) or refuses it.
async fn mailed_code_step(app: &App, user: &UserRow, purpose: &str, code: Option<&str>, meta: &ClientMeta) -> AppResult<bool> {
    let Some(code) = code else {
        let facts = DeviceFacts::from_input(None, &meta.user_agent)?;
        second_factor::send_code(app, user, purpose, &format!("{} on {}", facts.browser, facts.os), &meta.ip).await?;
        return Ok(false);
    };
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let ok = code.len() == 6
        && app
            .store
            .use_email_code(&user.id, purpose, &codes::code_hmac(&app.code_key, EMAIL_PURPOSE, &code), app.now(), MAX_FAILURES)
            .await?;
    if !ok {
        return Err(AppError::BadRequest("Wrong or expired code.".into()));
    }
    Ok(true)
}

/// Any change to the second factors ends the trust of every remembered device.
async fn factors_changed(app: &App, caller: &Caller, what: &str, meta: &ClientMeta) -> AppResult<()> {
    app.store.revoke_trust(&caller.user_id, None).await?;
    Audit::new(AuditKind::MfaChanged)
        .user(&caller.user_id)
        .device(&caller.device_id)
        .meta(meta)
        .detail(serde_json::json!({ "change": what }))
        .record(app)
        .await
}
