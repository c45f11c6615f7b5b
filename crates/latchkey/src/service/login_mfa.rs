//! The two-step login of seed 002: after a right password, a short-lived mfa_token that only
//! the second step accepts, then a code of one of the account's second factors.

use super::audit::{Audit, AuditKind};
use super::second_factor::{self, MAX_FAILURES};
use super::sessions::{self, AuthorizedBy, NewSession, Signed};
use super::trust;
use crate::domain::device::{DeviceFacts, DeviceInput};
use crate::domain::secret;
use crate::service::{App, AppError, AppResult, ClientMeta};
use crate::store::{MfaTokenRow, UserRow};

pub const MFA_TOKEN_PREFIX: &str = "lk_mt_";

/// What a client is told when the password was right and a second factor is owed.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MfaRequired {
    pub mfa_required: bool,
    pub mfa_token: String,
    /// Some of `totp`, `email`, `recovery`.
    pub methods: Vec<&'static str>,
    pub expires_in: u64,
}

/// What the session will be once the second factor is in.
pub struct Pending<'a> {
    pub client_id: &'a str,
    pub scope: &'a str,
    pub device: Option<&'a DeviceInput>,
    pub web: bool,
    /// What the first step was (`pwd`, or the upstream's id): the session's `amr` starts with it.
    pub first_factor: &'a str,
}

/// After a right password for a user with second factors: the short-lived token that only
/// `/api/v1/mfa/*` accepts.
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
            first_factor: p.first_factor.into(),
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
    second_factor::send_code(app, &user, "login", &format!("{} on {}", facts.browser, facts.os), &row.ip).await
}

/// The second step: a code for the mfa_token. Five wrong codes end the token; the right one
/// consumes it and opens the session, remembering the device if asked. `web`: the step is the
/// `/mfa` page's (a browser's token finishes only there, an API client's only through the API).
pub async fn verify(
    app: &App,
    mfa_token: &str,
    method: &str,
    code: &str,
    remember: bool,
    web: bool,
    meta: &ClientMeta,
) -> AppResult<Signed> {
    let row = live_token(app, mfa_token).await?;
    if row.web != web {
        return Err(bad_token());
    }
    if !second_factor::methods(app, &row.user_id).await?.contains(&method) {
        return Err(AppError::BadRequest(format!("{method} is not a second factor of this account")));
    }
    if !second_factor::check_code(app, &row.user_id, method, code).await? {
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
    let first = row.first_factor.clone();
    let amr = match method {
        "totp" => vec![first.clone(), "otp".into(), "mfa".into()],
        _ => vec![first.clone(), "mfa".into()],
    };
    let (authorized_by, first_method) = if first == "pwd" {
        (AuthorizedBy::Password, "password".to_owned())
    } else {
        (AuthorizedBy::Upstream, format!("upstream:{first}"))
    };
    let opened = sessions::open(
        app,
        NewSession {
            user_id: &row.user_id,
            client_id: &row.client_id,
            scope: row.scope.clone(),
            amr,
            device,
            authorized_by,
            approved_by_device: None,
            web: row.web,
            existing_device: None,
            passkey: Default::default(),
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
        .detail(serde_json::json!({ "method": format!("{first_method}+mfa") }))
        .record(app)
        .await?;
    let trust_token = if remember { Some(trust::remember_device(app, &row.user_id, &opened.device.id, meta).await?) } else { None };
    Ok(Signed { opened, trust_token })
}

/// The methods the holder of a live `mfa_token` may use (for the `/mfa` page).
pub async fn pending_methods(app: &App, mfa_token: &str) -> AppResult<Vec<&'static str>> {
    let row = live_token(app, mfa_token).await?;
    second_factor::methods(app, &row.user_id).await
}
