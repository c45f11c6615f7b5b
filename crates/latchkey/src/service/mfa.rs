//! Second factors (TOTP, e-mail codes, recovery codes), the two-step login of seed 002, and
//! "remember this device" (SECURITY.md R-15).

use super::audit::{Audit, AuditKind};
use super::sessions::{self, AuthorizedBy, Caller, NewSession, Opened};
use crate::domain::codes;
use crate::domain::device::{DeviceFacts, DeviceInput};
use crate::domain::{sealed, secret, totp};
use crate::mail::Mail;
use crate::service::{App, AppError, AppResult, ClientMeta};
use crate::store::{MfaTokenRow, TrustRow, UserRow};

pub const MFA_TOKEN_PREFIX: &str = "lk_mt_";
pub const TRUST_PREFIX: &str = "lk_dt_";
const MAX_FAILURES: i64 = 5;
const RECOVERY_PURPOSE: &str = "recovery_code";
const EMAIL_PURPOSE: &str = "email_code";
const RECOVERY_CODES: usize = 10;
const RECOVERY_LEN: usize = 10;

/// What a client is told when the password was right and a second factor is owed.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MfaRequired {
    pub mfa_required: bool,
    pub mfa_token: String,
    /// Some of `totp`, `email`, `recovery`.
    pub methods: Vec<&'static str>,
    pub expires_in: u64,
}

/// The second factors a user has.
pub async fn methods(app: &App, user_id: &str) -> AppResult<Vec<&'static str>> {
    let mut m = Vec::new();
    let totp = app.store.totp(user_id).await?.is_some_and(|t| t.confirmed_at.is_some());
    if totp {
        m.push("totp");
    }
    if app.store.email_factor(user_id).await? {
        m.push("email");
    }
    if totp {
        m.push("recovery");
    }
    Ok(m)
}

/// After a right password for a user with second factors: the short-lived token that only
/// `/api/v1/mfa/*` accepts.
/// What the session will be once the second factor is in.
pub struct Pending<'a> {
    pub client_id: &'a str,
    pub scope: &'a str,
    pub device: Option<&'a DeviceInput>,
    pub web: bool,
}

pub async fn start(app: &App, user: &UserRow, p: Pending<'_>, meta: &ClientMeta, methods: Vec<&'static str>) -> AppResult<MfaRequired> {
    let (client_id, scope, device, web) = (p.client_id, p.scope, p.device, p.web);
    let token = secret::new_token(MFA_TOKEN_PREFIX);
    let now = app.now();
    let ttl = app.settings.mfa.mfa_token_ttl_secs;
    let device_json =
        serde_json::json!({ "name": device.and_then(|d| d.name.clone()), "kind": device.and_then(|d| d.kind.clone()) }).to_string();
    app.store
        .create_mfa_token(&MfaTokenRow {
            hash: secret::token_hash(&token),
            user_id: user.id.clone(),
            client_id: client_id.into(),
            scope: scope.into(),
            device_json,
            web,
            ip: meta.ip.clone(),
            user_agent: meta.user_agent.clone(),
            created_at: now,
            expires_at: now + ttl as i64,
            failures: 0,
            consumed_at: None,
        })
        .await?;
    Ok(MfaRequired { mfa_required: true, mfa_token: token, methods, expires_in: ttl })
}

fn bad_token() -> AppError {
    AppError::Unauthorized
}

async fn live_token(app: &App, token: &str) -> AppResult<MfaTokenRow> {
    secret::token_bytes(token, MFA_TOKEN_PREFIX).ok_or_else(bad_token)?;
    let row = app.store.mfa_token(&secret::token_hash(token)).await?.ok_or_else(bad_token)?;
    if row.consumed_at.is_some() || row.expires_at <= app.now() || row.failures >= MAX_FAILURES {
        return Err(bad_token());
    }
    Ok(row)
}

/// Mails a login code to the account's address (the `email` method).
pub async fn send_login_code(app: &App, mfa_token: &str) -> AppResult<()> {
    let row = live_token(app, mfa_token).await?;
    if !app.store.email_factor(&row.user_id).await? {
        return Err(AppError::BadRequest("e-mail codes are not turned on for this account".into()));
    }
    let user = app.store.user_by_id(&row.user_id).await?.ok_or_else(bad_token)?;
    let facts = DeviceFacts::from_input(None, &row.user_agent)?;
    send_code(app, &user, "login", &format!("{} on {}", facts.browser, facts.os), &row.ip).await
}

async fn send_code(app: &App, user: &UserRow, purpose: &str, device: &str, ip: &str) -> AppResult<()> {
    let code = loop {
        // Rejection sampling: 4_294_000_000 is the largest multiple of 10^6 below 2^32.
        let n = u32::from_be_bytes(secret::random_bytes::<4>());
        if n < 4_294_000_000 {
            break format!("{:06}", n % 1_000_000);
        }
    };
    let m = &app.settings.mfa;
    let fresh = app
        .store
        .put_email_code(
            &user.id,
            purpose,
            &codes::code_hmac(&app.code_key, EMAIL_PURPOSE, &code),
            app.now(),
            m.email_code_ttl_secs as i64,
            m.email_resend_secs as i64,
        )
        .await?;
    if !fresh {
        return Err(AppError::RateLimited { retry_after: m.email_resend_secs });
    }
    let minutes = match m.email_code_ttl_secs.div_ceil(60) {
        1 => "1 minute".to_owned(),
        n => format!("{n} minutes"),
    };
    let (what, subject) = match purpose {
        "enroll" => ("turn on sign-in codes by e-mail", "Confirm your e-mail for sign-in codes"),
        _ => ("finish signing in", "Your sign-in code"),
    };
    let text = format!(
        "Your code to {what} is:\n\n    {code}\n\nIt works once, for {minutes}.\n\nAsked for by: {device}, from {ip}.\nIf this was not you, do not share the code, and change your password.\n"
    );
    let html = format!(
        "<p>Your code to {what} is:</p><p style=\"font-size:28px;font-family:monospace;letter-spacing:4px\"><strong>{code}</strong></p>\
         <p>It works once, for {minutes}.</p><p>Asked for by: {}, from {}.<br>If this was not you, do not share the code, and change your password.</p>",
        html_escape(device),
        html_escape(ip)
    );
    app.mailer
        .send(Mail {
            to: user.email.clone().ok_or_else(|| AppError::BadRequest("this account has no e-mail address".into()))?,
            subject: subject.into(),
            text,
            html,
        })
        .await
        .map_err(|e| AppError::Internal(e.context("sending mail")))?;
    Ok(())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Checks a code of `method` for `user_id`. Replays and wrong codes are false.
async fn check_code(app: &App, user_id: &str, method: &str, code: &str) -> AppResult<bool> {
    let now = app.now();
    match method {
        "totp" => {
            let Some(t) = app.store.totp(user_id).await?.filter(|t| t.confirmed_at.is_some()) else { return Ok(false) };
            let secret = sealed::open(&app.mfa_key, user_id.as_bytes(), &t.secret_enc)
                .ok_or_else(|| anyhow::anyhow!("TOTP secret does not open"))?;
            match totp::matching_step(&secret, code, now) {
                Some(step) => Ok(app.store.use_totp_step(user_id, step).await?),
                None => Ok(false),
            }
        }
        "email" => {
            let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
            if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Ok(false);
            }
            Ok(app
                .store
                .use_email_code(user_id, "login", &codes::code_hmac(&app.code_key, EMAIL_PURPOSE, &code), now, MAX_FAILURES)
                .await?)
        }
        "recovery" => {
            let Ok(code) = codes::normalize(code, RECOVERY_LEN) else { return Ok(false) };
            let used = app.store.use_recovery_code(user_id, &codes::code_hmac(&app.code_key, RECOVERY_PURPOSE, &code), now).await?;
            if used {
                // A recovery code means a lost factor: every remembered device must prove itself again.
                app.store.revoke_trust(user_id, None).await?;
            }
            Ok(used)
        }
        _ => Err(AppError::BadRequest("method must be totp, email or recovery".into())),
    }
}

pub struct Signed {
    pub opened: Opened,
    pub trust_token: Option<String>,
}

/// The second step: a code for the mfa_token. Five wrong codes end the token; the right one
/// consumes it and opens the session, remembering the device if asked.
pub async fn verify(app: &App, mfa_token: &str, method: &str, code: &str, remember: bool, meta: &ClientMeta) -> AppResult<Signed> {
    let row = live_token(app, mfa_token).await?;
    if !methods(app, &row.user_id).await?.contains(&method) {
        return Err(AppError::BadRequest(format!("{method} is not a second factor of this account")));
    }
    if !check_code(app, &row.user_id, method, code).await? {
        let failures = app.store.fail_mfa_token(&row.hash).await?;
        metrics::counter!("latchkey_mfa_failures_total", "method" => method.to_owned()).increment(1);
        Audit::new(AuditKind::MfaFailed)
            .user(&row.user_id)
            .meta(meta)
            .detail(serde_json::json!({ "method": method, "failures": failures }))
            .record(app)
            .await?;
        return Err(AppError::BadRequest(if failures >= MAX_FAILURES {
            "Wrong code. Too many wrong codes: sign in again.".into()
        } else {
            "Wrong code.".into()
        }));
    }
    if !app.store.consume_mfa_token(&row.hash, app.now(), MAX_FAILURES).await? {
        return Err(bad_token());
    }
    let input: DeviceInput = serde_json::from_str(&row.device_json).unwrap_or_default();
    let device = DeviceFacts::from_input(Some(&input), &row.user_agent)?;
    let amr = match method {
        "totp" => vec!["pwd", "otp", "mfa"],
        "email" => vec!["pwd", "mfa"],
        _ => vec!["pwd", "mfa"],
    };
    let opened = sessions::open(
        app,
        NewSession {
            user_id: &row.user_id,
            client_id: &row.client_id,
            scope: row.scope.clone(),
            amr,
            device,
            authorized_by: AuthorizedBy::Password,
            approved_by_device: None,
            web: row.web,
            existing_device: None,
        },
        meta,
    )
    .await?;
    metrics::counter!("latchkey_logins_total", "result" => "ok").increment(1);
    Audit::new(AuditKind::MfaSucceeded)
        .user(&row.user_id)
        .device(&opened.device.id)
        .meta(meta)
        .detail(serde_json::json!({ "method": method, "remember": remember }))
        .record(app)
        .await?;
    Audit::new(AuditKind::LoginSucceeded)
        .user(&row.user_id)
        .device(&opened.device.id)
        .meta(meta)
        .detail(serde_json::json!({ "method": "password+mfa" }))
        .record(app)
        .await?;
    let trust_token = if remember { Some(remember_device(app, &row.user_id, &opened.device.id, meta).await?) } else { None };
    Ok(Signed { opened, trust_token })
}

async fn remember_device(app: &App, user_id: &str, device_id: &str, meta: &ClientMeta) -> AppResult<String> {
    let token = secret::new_token(TRUST_PREFIX);
    let now = app.now();
    app.store
        .create_trust(&TrustRow {
            hash: secret::token_hash(&token),
            user_id: user_id.into(),
            device_id: device_id.into(),
            created_at: now,
            expires_at: now + app.settings.mfa.remember_days as i64 * 86_400,
            last_used_at: now,
            ip: meta.ip.clone(),
            user_agent: meta.user_agent.clone(),
        })
        .await?;
    Audit::new(AuditKind::DeviceRemembered).user(user_id).device(device_id).meta(meta).record(app).await?;
    Ok(token)
}

/// Uses a device-trust token at login: only for its own user, rotated on use, same absolute
/// expiry. Returns the trusted device and the token's successor.
pub async fn use_trust(app: &App, user_id: &str, token: &str, meta: &ClientMeta) -> AppResult<Option<(String, String)>> {
    if secret::token_bytes(token, TRUST_PREFIX).is_none() {
        return Ok(None);
    }
    let next = secret::new_token(TRUST_PREFIX);
    let device = app
        .store
        .rotate_trust(&secret::token_hash(token), user_id, &secret::token_hash(&next), &meta.ip, &meta.user_agent, app.now())
        .await?;
    Ok(device.map(|d| (d, next)))
}

// --- enrolment ------------------------------------------------------------------------------

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

pub fn qr_svg(data: &str) -> AppResult<String> {
    let qr = qrcode::QrCode::new(data.as_bytes()).map_err(|e| anyhow::anyhow!("QR code: {e}"))?;
    Ok(qr.render::<qrcode::render::svg::Color>().min_dimensions(200, 200).quiet_zone(true).build())
}

pub async fn start_totp(app: &App, caller: &Caller) -> AppResult<TotpEnrolment> {
    let user = recent(app, caller).await?;
    let raw = secret::random_bytes::<20>();
    if !app.store.put_pending_totp(&user.id, &sealed::seal(&app.mfa_key, user.id.as_bytes(), &raw), app.now()).await? {
        return Err(AppError::Conflict("TOTP is already on; turn it off first".into()));
    }
    let uri = totp::otpauth_uri(&app.settings.mfa.totp_issuer, user.email.as_deref().unwrap_or(&user.id), &raw);
    Ok(TotpEnrolment { secret: totp::base32(&raw), qr_svg: qr_svg(&uri)?, otpauth_uri: uri })
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
    let ok = check_code(app, &caller.user_id, "totp", code).await? || check_code(app, &caller.user_id, "recovery", code).await?;
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
    match code {
        None => {
            let facts = DeviceFacts::from_input(None, &meta.user_agent)?;
            send_code(app, &user, "enroll", &format!("{} on {}", facts.browser, facts.os), &meta.ip).await?;
            Ok(false)
        }
        Some(code) => {
            let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
            let ok = code.len() == 6
                && app
                    .store
                    .use_email_code(&user.id, "enroll", &codes::code_hmac(&app.code_key, EMAIL_PURPOSE, &code), app.now(), MAX_FAILURES)
                    .await?;
            if !ok {
                return Err(AppError::BadRequest("Wrong or expired code.".into()));
            }
            app.store.enable_email_factor(&user.id, app.now()).await?;
            factors_changed(app, caller, "email_enabled", meta).await?;
            Ok(true)
        }
    }
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

pub async fn forget_device(app: &App, caller: &Caller, device_id: Option<&str>, meta: &ClientMeta) -> AppResult<u64> {
    let n = app.store.revoke_trust(&caller.user_id, device_id).await?;
    Audit::new(AuditKind::TrustRevoked)
        .user(&caller.user_id)
        .device(&caller.device_id)
        .meta(meta)
        .detail(serde_json::json!({ "device": device_id, "all": device_id.is_none() }))
        .record(app)
        .await?;
    Ok(n)
}

/// The methods the holder of a live `mfa_token` may use (for the `/mfa` page).
pub async fn pending_methods(app: &App, mfa_token: &str) -> AppResult<Vec<&'static str>> {
    let row = live_token(app, mfa_token).await?;
    methods(app, &row.user_id).await
}
