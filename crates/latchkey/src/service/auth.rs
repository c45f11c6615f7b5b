//! Password login, with brute-force limits that never lock the owner out, and the one end of
//! every sign-in (`complete_sign_in`), whichever authenticator verified the person.

use super::audit::{Audit, AuditKind};
use super::clients::{self, CLI_CLIENT, WEB_CLIENT};
use super::limits;
use super::login_mfa::{self, MfaRequired};
use super::second_factor;
use super::sessions::{self, AuthorizedBy, NewSession, PasskeyUse, Signed};
use super::trust;
use crate::domain::device::{DeviceFacts, DeviceInput};
use crate::domain::{Email, Password, Scope, policy};
use crate::service::{App, AppError, AppResult, ClientMeta};
use crate::store::UserRow;

pub struct PasswordLogin {
    pub email: String,
    pub password: String,
    pub device: Option<DeviceInput>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scope: Option<String>,
    /// A browser login through `/login` (cookie session) rather than the API (tokens).
    pub web: bool,
    /// From "remember this device": skips the second factor for its own user.
    pub device_trust_token: Option<String>,
}

pub enum LoginOutcome {
    Signed(Box<Signed>),
    MfaRequired(MfaRequired),
}

pub async fn password_login(app: &App, req: PasswordLogin, meta: &ClientMeta) -> AppResult<LoginOutcome> {
    let lim = &app.settings.limits;
    // Parse everything before spending any work; a malformed e-mail is a 4xx that reveals nothing.
    let email = Email::parse(&req.email)?;
    let password = Password::for_login(req.password)?;
    let device = DeviceFacts::from_input(req.device.as_ref(), &meta.user_agent)?;
    let (client_id, scope) =
        sign_in_client(app, req.client_id.as_deref(), req.client_secret.as_deref(), req.scope.as_deref(), req.web).await?;

    // Take a place in the hashing queue first: when it is full, refuse at once, before any
    // database work, so an overload is answered in microseconds rather than queued.
    let slot = app.passwords.reserve()?;
    limits::check(app, &format!("login:ip:{}", meta.ip), lim.login_per_ip_per_minute, 60, meta).await?;
    let now = app.now();
    let throttle_key = format!("login:{}", email.as_str());
    let failures = app.store.login_failures(&throttle_key).await?;
    if let Some((failures, last)) = failures
        && let Some(wait) = policy::login_retry_after(failures, last, now, lim.login_free_failures, lim.login_max_delay_secs)
    {
        metrics::counter!("latchkey_logins_total", "result" => "throttled").increment(1);
        let user = app.store.user_by_email(email.as_str()).await?;
        limits::audit_refusal(app, &throttle_key, 60, user.as_ref().map(|u| u.id.as_str()), meta).await?;
        return Err(AppError::RateLimited { retry_after: wait });
    }

    let user = app.store.user_by_email(email.as_str()).await?;
    let ok = app
        .passwords
        .verify(slot, user.as_ref().map(|u| u.id.as_str()), &password, user.as_ref().and_then(|u| u.password_hash.as_deref()))
        .await?;
    let user = match (ok, user) {
        (true, Some(u)) => u,
        (_, user) => {
            app.store.record_login_failure(&throttle_key, now).await?;
            metrics::counter!("latchkey_logins_total", "result" => "failed").increment(1);
            let mut a = Audit::new(AuditKind::LoginFailed).meta(meta);
            if let Some(u) = &user {
                a = a.user(&u.id);
            }
            a.detail(serde_json::json!({ "method": "password" })).record(app).await?;
            return Err(AppError::InvalidCredentials);
        }
    };
    if failures.is_some() {
        app.store.clear_login_failures(&throttle_key).await?;
    }
    let verified =
        Verified { user, method: "password".into(), amr: vec!["pwd".into()], authorized_by: AuthorizedBy::Password, passkey_id: None };
    let ctx = SignInContext {
        client_id: &client_id,
        scope: &scope,
        device_input: req.device.as_ref(),
        device,
        web: req.web,
        device_trust_token: req.device_trust_token.as_deref(),
    };
    complete_sign_in(app, verified, ctx, meta).await
}

/// The client a sign-in is for and the scope it asks: the browser's own for `/login`, else the
/// named client (the CLI's when none), authenticated if it is confidential.
pub async fn sign_in_client(
    app: &App,
    client_id: Option<&str>,
    client_secret: Option<&str>,
    scope: Option<&str>,
    web: bool,
) -> AppResult<(String, Scope)> {
    let client_id = match (client_id, web) {
        (_, true) => WEB_CLIENT.to_owned(),
        (Some(c), false) => clients::parse_client_id(c)?,
        (None, false) => CLI_CLIENT.to_owned(),
    };
    let client = if web { None } else { Some(clients::authenticate(app, &client_id, client_secret).await?) };
    let scope = Scope::parse(scope.unwrap_or(&app.settings.tokens.default_scope))?;
    if scope.is_empty() {
        return Err(AppError::InvalidScope("scope must not be empty".into()));
    }
    if let Some(client) = &client {
        clients::check_scope(client, &scope)?;
    }
    Ok((client_id, scope))
}

/// A person verified by one authenticator: the password today; an upstream identity provider,
/// a passkey or anything else that proves who someone is tomorrow. Each authenticator only
/// verifies; what follows is the same for all (`complete_sign_in`).
pub struct Verified {
    pub user: UserRow,
    /// For the audit trail: `password`, `upstream:<id>` or `passkey`.
    pub method: String,
    /// What the session's `amr` starts with: RFC 8176's `pwd`, the upstream's id, or a passkey's
    /// `hwk`/`swk` and `user`.
    pub amr: Vec<String>,
    pub authorized_by: AuthorizedBy,
    /// A passkey with user verification: a whole sign-in in itself, so no second factor is asked.
    pub passkey_id: Option<String>,
}

/// Where the sign-in happens: the client, the device, browser or API.
pub struct SignInContext<'a> {
    pub client_id: &'a str,
    pub scope: &'a Scope,
    pub device_input: Option<&'a DeviceInput>,
    pub device: DeviceFacts,
    pub web: bool,
    pub device_trust_token: Option<&'a str>,
}

/// The one end of every sign-in: the second-factor rules (a remembered device skips them once
/// per trust token), then the session on a new or the remembered device record, the metric and
/// the audit entry.
pub async fn complete_sign_in(app: &App, v: Verified, ctx: SignInContext<'_>, meta: &ClientMeta) -> AppResult<LoginOutcome> {
    let user = v.user;
    let mut existing_device = None;
    let mut trust_token = None;
    let mut amr = v.amr.clone();
    let methods = if v.passkey_id.is_some() { Vec::new() } else { second_factor::methods(app, &user.id).await? };
    if !methods.is_empty() {
        match ctx.device_trust_token {
            Some(t) if let Some((device_id, next)) = trust::use_trust(app, &user.id, t, meta).await? => {
                Audit::new(AuditKind::MfaSkippedTrustedDevice).user(&user.id).device(&device_id).meta(meta).record(app).await?;
                existing_device = Some(device_id);
                trust_token = Some(next);
                amr.push("trusted_device".into());
            }
            _ => {
                let pending = login_mfa::Pending {
                    client_id: ctx.client_id,
                    scope: &ctx.scope.to_string(),
                    device: ctx.device_input,
                    web: ctx.web,
                    first_factor: &v.amr.join(" "),
                };
                let required = login_mfa::start(app, &user, pending, meta, methods).await?;
                Audit::new(AuditKind::LoginSecondFactorRequired)
                    .user(&user.id)
                    .meta(meta)
                    .detail(serde_json::json!({ "method": v.method }))
                    .record(app)
                    .await?;
                return Ok(LoginOutcome::MfaRequired(required));
            }
        }
    }
    let opened = sessions::open(
        app,
        NewSession {
            user_id: &user.id,
            client_id: ctx.client_id,
            scope: ctx.scope.to_string(),
            amr,
            device: ctx.device,
            authorized_by: v.authorized_by,
            approved_by_device: None,
            web: ctx.web,
            existing_device,
            passkey: PasskeyUse { session_passkey: v.passkey_id, approval_verified: false },
        },
        meta,
    )
    .await?;
    metrics::counter!("latchkey_logins_total", "result" => "ok").increment(1);
    Audit::new(AuditKind::LoginSucceeded)
        .user(&user.id)
        .device(&opened.device.id)
        .meta(meta)
        .detail(serde_json::json!({ "method": v.method, "client_id": ctx.client_id }))
        .record(app)
        .await?;
    Ok(LoginOutcome::Signed(Box::new(Signed { opened, trust_token })))
}
