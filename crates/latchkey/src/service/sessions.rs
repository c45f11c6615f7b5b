//! Opening sessions and issuing their tokens. Every flow that signs a device in ends here.

use super::audit::{Audit, AuditKind};
use crate::domain::device::DeviceFacts;
use crate::domain::secret;
use crate::keys::AccessClaims;
use crate::service::{App, AppError, AppResult, ClientMeta};
use crate::store::{DeviceRow, RefreshTokenRow, SessionRow};

/// How a device came to be signed in.
#[derive(Debug, Clone, Copy)]
pub enum AuthorizedBy {
    Password,
    DeviceCode,
    Pairing,
    Qr,
    Signup,
    /// An app's sign-in through the browser (authorization code grant), on the browser's device.
    App,
    /// A sign-in through an upstream identity provider (`[[upstream]]`).
    Upstream,
    /// A sign-in with a passkey.
    Passkey,
}

impl AuthorizedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::DeviceCode => "device_code",
            Self::Pairing => "pairing",
            Self::Qr => "qr",
            Self::Signup => "signup",
            Self::App => "app",
            Self::Upstream => "upstream",
            Self::Passkey => "passkey",
        }
    }
}

pub struct NewSession<'a> {
    pub user_id: &'a str,
    pub client_id: &'a str,
    pub scope: String,
    pub amr: Vec<String>,
    pub device: DeviceFacts,
    pub authorized_by: AuthorizedBy,
    pub approved_by_device: Option<String>,
    /// A browser session (cookie) rather than an API session (refresh token).
    pub web: bool,
    /// Sign in on a device already on record (a remembered one) instead of adding a new one.
    pub existing_device: Option<String>,
    pub passkey: PasskeyUse,
}

/// What passkeys had to do with a new session.
#[derive(Debug, Clone, Default)]
pub struct PasskeyUse {
    /// The passkey the session is opened with (a passkey sign-in).
    pub session_passkey: Option<String>,
    /// The device is let in by an approval given with a fresh passkey assertion.
    pub approval_verified: bool,
}

/// Tokens for an API client, in the shape of RFC 6749 §5.1.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_token: String,
    pub scope: String,
    pub device_id: String,
    /// With "remember this device": the token that skips the second factor next time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_trust_token: Option<String>,
    /// OpenID Connect: for the authorization code grant with the `openid` scope.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

pub struct Opened {
    pub session: SessionRow,
    pub device: DeviceRow,
    /// For API sessions.
    pub tokens: Option<TokenResponse>,
    /// For browser sessions: the cookie's value.
    pub web_token: Option<String>,
}

/// A session opened by signing in, with the device-trust token to hand back when the device
/// is (still) remembered.
pub struct Signed {
    pub opened: Opened,
    pub trust_token: Option<String>,
}

/// The rows of a new device session, not yet stored.
pub struct Built {
    pub device: DeviceRow,
    pub session: SessionRow,
    pub refresh: Option<(String, RefreshTokenRow)>,
    pub web_token: Option<String>,
    pub new_device: bool,
}

pub fn build(app: &App, n: NewSession<'_>, meta: &ClientMeta) -> Built {
    let now = app.now();
    let t = &app.settings.tokens;
    let new_device = n.existing_device.is_none();
    let device = DeviceRow {
        id: n.existing_device.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        user_id: n.user_id.into(),
        name: n.device.name,
        kind: n.device.kind.as_str().into(),
        os: n.device.os,
        browser: n.device.browser,
        user_agent: meta.user_agent.clone(),
        authorized_by: n.authorized_by.as_str().into(),
        approved_by_device: n.approved_by_device,
        first_seen_at: now,
        last_seen_at: now,
        last_ip: meta.ip.clone(),
        trusted_until: None,
        revoked_at: None,
        passkey_verified: n.passkey.approval_verified,
    };
    let web_token = n.web.then(|| secret::new_token(secret::WEB_SESSION_PREFIX));
    let session = SessionRow {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: n.user_id.into(),
        device_id: device.id.clone(),
        client_id: n.client_id.into(),
        scope: n.scope,
        amr: n.amr.join(" "),
        web_token_hash: web_token.as_deref().map(secret::token_hash),
        created_at: now,
        last_used_at: now,
        expires_at: now + t.session_absolute_secs as i64,
        revoked_at: None,
        revoke_reason: None,
        passkey_verified_at: n.passkey.session_passkey.is_some().then_some(now),
        passkey_id: n.passkey.session_passkey,
    };
    let refresh = (!n.web).then(|| {
        let token = secret::new_token(secret::REFRESH_PREFIX);
        let row = RefreshTokenRow {
            hash: secret::token_hash(&token),
            session_id: session.id.clone(),
            client_id: session.client_id.clone(),
            created_at: now,
            expires_at: (now + t.refresh_idle_secs as i64).min(session.expires_at),
            superseded_at: None,
            successor_hash: None,
        };
        (token, row)
    });
    Built { device, session, refresh, web_token, new_device }
}

/// After the rows of `b` are stored: the audit event, the metric, and the tokens to hand out.
pub async fn finish(app: &App, b: Built, meta: &ClientMeta) -> AppResult<Opened> {
    if b.new_device {
        Audit::new(AuditKind::DeviceAdded)
            .user(&b.session.user_id)
            .device(&b.device.id)
            .meta(meta)
            .detail(serde_json::json!({
                "name": b.device.name, "authorized_by": b.device.authorized_by,
                "approved_by_device": b.device.approved_by_device, "client_id": b.session.client_id,
            }))
            .record(app)
            .await?;
        super::device_alerts::notify(app, &b.device);
    }
    metrics::counter!("latchkey_sessions_opened_total", "authorized_by" => b.device.authorized_by.clone()).increment(1);
    let tokens = match b.refresh {
        Some((token, _)) => Some(token_response(app, &b.session, token).await?),
        None => None,
    };
    Ok(Opened { session: b.session, device: b.device, tokens, web_token: b.web_token })
}

pub async fn open(app: &App, n: NewSession<'_>, meta: &ClientMeta) -> AppResult<Opened> {
    let b = build(app, n, meta);
    app.store.create_session(&b.device, &b.session, b.refresh.as_ref().map(|(_, r)| r)).await?;
    finish(app, b, meta).await
}

pub async fn access_token(app: &App, s: &SessionRow) -> AppResult<String> {
    let now = app.now();
    let claims = AccessClaims {
        iss: app.issuer.clone(),
        sub: s.user_id.clone(),
        sid: s.id.clone(),
        did: s.device_id.clone(),
        client_id: s.client_id.clone(),
        amr: s.amr.split(' ').filter(|a| !a.is_empty()).map(Into::into).collect(),
        scope: s.scope.clone(),
        iat: now,
        exp: now + app.settings.tokens.access_ttl_secs as i64,
        jti: uuid::Uuid::new_v4().to_string(),
    };
    Ok(app.keys.sign(&claims, now).await?)
}

pub async fn token_response(app: &App, s: &SessionRow, refresh_token: String) -> AppResult<TokenResponse> {
    let access_token = access_token(app, s).await?;
    metrics::counter!("latchkey_tokens_issued_total").increment(1);
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: app.settings.tokens.access_ttl_secs,
        refresh_token,
        scope: s.scope.clone(),
        device_id: s.device_id.clone(),
        device_trust_token: None,
        id_token: None,
    })
}

/// Who is calling: a live session, found from a bearer token or a browser cookie.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub session_id: String,
    pub device_id: String,
    pub scope: String,
    /// When the session was opened: the time of the sign-in (OpenID Connect `auth_time`).
    pub auth_time: i64,
    /// How the user signed in, space-separated (RFC 8176 values).
    pub amr: String,
    /// When the session last proved a passkey (its sign-in or a step-up).
    pub passkey_verified_at: Option<i64>,
}

impl From<&SessionRow> for Caller {
    fn from(s: &SessionRow) -> Self {
        Self {
            user_id: s.user_id.clone(),
            session_id: s.id.clone(),
            device_id: s.device_id.clone(),
            scope: s.scope.clone(),
            auth_time: s.created_at,
            amr: s.amr.clone(),
            passkey_verified_at: s.passkey_verified_at,
        }
    }
}

/// Checks an access token and the session behind it, so a revoked session stops working at once.
pub async fn caller_from_bearer(app: &App, token: &str) -> AppResult<Caller> {
    let now = app.now();
    let claims = app.keys.verify(token, &app.issuer, now).await.ok_or(AppError::Unauthorized)?;
    let session = app.store.session(&claims.sid).await?.ok_or(AppError::Unauthorized)?;
    if !session.is_live(now) || session.user_id != claims.sub || session.device_id != claims.did {
        return Err(AppError::Unauthorized);
    }
    Ok(Caller::from(&session))
}

/// The scope that lets a token act on its account through `/api/v1` (devices, apps, second
/// factors, password…). Latchkey's own sign-ins get it (`tokens.default_scope`); an app signed in
/// through the authorization endpoint does not, unless its operator registered it with it.
pub const ACCOUNT_SCOPE: &str = "account";

/// A bearer caller of the account API: a live session whose scope holds [`ACCOUNT_SCOPE`].
pub async fn account_caller_from_bearer(app: &App, token: &str) -> AppResult<Caller> {
    let caller = caller_from_bearer(app, token).await?;
    if !caller.scope.split(' ').any(|s| s == ACCOUNT_SCOPE) {
        return Err(AppError::Forbidden(format!("this token's scope does not include {ACCOUNT_SCOPE}: it cannot act on the account")));
    }
    Ok(caller)
}

/// Checks a browser session cookie: live, and not idle for longer than the refresh idle time.
pub async fn caller_from_cookie(app: &App, token: &str, meta: &ClientMeta) -> AppResult<Caller> {
    secret::token_bytes(token, secret::WEB_SESSION_PREFIX).ok_or(AppError::Unauthorized)?;
    let now = app.now();
    let session = app.store.session_by_web_token(&secret::token_hash(token)).await?.ok_or(AppError::Unauthorized)?;
    if !browser_session_holds(app, &session, now) {
        return Err(AppError::Unauthorized);
    }
    if now - session.last_used_at >= 60 {
        app.store.touch_session(&session, &meta.ip, now).await?;
    }
    Ok(Caller::from(&session))
}

/// Live, and used within the idle limit: what a browser session needs to be signed in.
fn browser_session_holds(app: &App, session: &SessionRow, now: i64) -> bool {
    session.is_live(now) && now - session.last_used_at <= app.settings.tokens.refresh_idle_secs as i64
}

/// Whether a browser session still holds, as `caller_from_cookie` would find it (a signed-in
/// page's live socket asks, without counting as use).
pub async fn still_signed_in(app: &App, session_id: &str) -> AppResult<bool> {
    let now = app.now();
    Ok(app.store.session(session_id).await?.is_some_and(|s| browser_session_holds(app, &s, now)))
}

pub async fn logout(app: &App, caller: &Caller, meta: &ClientMeta) -> AppResult<()> {
    if app.store.revoke_session(&caller.session_id, "logout", app.now()).await? {
        Audit::new(AuditKind::Logout).user(&caller.user_id).device(&caller.device_id).meta(meta).record(app).await?;
    }
    Ok(())
}

pub async fn logout_everywhere(app: &App, caller: &Caller, meta: &ClientMeta) -> AppResult<u64> {
    let n = app.store.revoke_user_sessions(&caller.user_id, None, "logout_everywhere", app.now()).await?;
    // Everywhere means every remembered device too.
    app.store.revoke_trust(&caller.user_id, None).await?;
    Audit::new(AuditKind::LogoutEverywhere)
        .user(&caller.user_id)
        .device(&caller.device_id)
        .meta(meta)
        .detail(serde_json::json!({ "sessions": n }))
        .record(app)
        .await?;
    Ok(n)
}
