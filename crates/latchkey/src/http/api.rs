//! `/api/v1`: accounts, sessions, devices and the audit log, as JSON.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, AuthUser};
use crate::clock::rfc3339;
use crate::domain::device::DeviceInput;
use crate::service::ClientMeta;
use crate::service::accounts;
use crate::service::audit;
use crate::service::auth::{self, LoginOutcome, PasswordLogin};
use crate::service::authorize::{self, AppAccess};
use crate::service::devices::{self, DeviceView};
use crate::service::login_mfa::MfaRequired;
use crate::service::sessions::{self, Signed, TokenResponse};
use crate::service::upstream_login::{self, IdentityView};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/accounts", post(register))
        .route("/api/v1/sessions", post(login).delete(logout_everywhere))
        .route("/api/v1/sessions/current", delete(logout))
        .route("/api/v1/devices", get(list_devices))
        .route("/api/v1/devices/{id}", delete(revoke_device))
        .route("/api/v1/apps", get(list_apps))
        .route("/api/v1/apps/{client_id}", delete(revoke_app))
        .route("/api/v1/identities", get(list_identities))
        .route("/api/v1/identities/{id}", delete(unlink_identity))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/me", get(me))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Required with a password; optional for a passwordless account.
    pub email: Option<String>,
    /// 8 to 1024 characters. Leave it out to create a passwordless account from a device.
    pub password: Option<String>,
    /// For a passwordless account: the device that creates it, which is signed in at once.
    pub device: Option<DeviceInput>,
}

/// The answer to a registration with a password: the same whether or not the address already
/// had an account (its owner is mailed instead), so that it tells nobody which addresses do.
#[derive(Serialize, ToSchema)]
pub struct AccountView {
    /// The address as it is stored (trimmed, the domain in lower case).
    pub email: String,
    pub message: &'static str,
}

const REGISTERED: &str =
    "If this address had no account here, it has one now and you can sign in. If it had one, its owner has been told by e-mail.";

#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum Registered {
    Account(AccountView),
    /// A passwordless account: its first device's tokens.
    Device(TokenResponse),
}

/// Create an account (self-registration; operators can switch it off): with e-mail and
/// password, or without a password from a device (`{device}`), which then gets its tokens. With a
/// password, an address that already has an account gets the same answer, and its owner a mail.
#[utoipa::path(post, path = "/api/v1/accounts", tag = "accounts", request_body = RegisterRequest,
    responses((status = 201, body = Registered, description = "the same answer whether or not the address had an account"), (status = 422, description = "invalid e-mail or password"), (status = 429, description = "too many accounts from this IP")))]
pub async fn register(
    State(s): State<AppState>,
    meta: ClientMeta,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    match req.password {
        Some(password) => {
            let email = req.email.ok_or(crate::domain::ParseError::new("email", "is required with a password"))?;
            let email = accounts::register(&s.app, &email, password, &meta).await?;
            Ok((StatusCode::CREATED, Json(Registered::Account(AccountView { email, message: REGISTERED }))))
        }
        None => {
            if req.device.is_none() {
                return Err(
                    crate::domain::ParseError::new("password", "is required, unless a device signs up with {\"device\": {…}}").into()
                );
            }
            let opened = accounts::register_device(&s.app, req.email.as_deref(), req.device.as_ref(), &meta).await?;
            Ok((StatusCode::CREATED, Json(Registered::Device(tokens_of(Signed { opened, trust_token: None })?))))
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
    /// What this device calls itself; OS and browser come from the User-Agent.
    pub device: Option<DeviceInput>,
    /// The client the session belongs to; `latchkey-cli` when absent.
    pub client_id: Option<String>,
    /// Only for confidential clients.
    pub client_secret: Option<String>,
    pub scope: Option<String>,
    /// From an earlier "remember this device": skips the second factor for its own user.
    pub device_trust_token: Option<String>,
}

/// Tokens, or (when the account has a second factor) the token for the second step.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginResponse {
    Tokens(TokenResponse),
    Mfa(MfaRequired),
}

pub fn tokens_of(signed: Signed) -> Result<TokenResponse, ApiError> {
    let mut tokens = signed.opened.tokens.ok_or_else(|| anyhow::anyhow!("API session without tokens"))?;
    tokens.device_trust_token = signed.trust_token;
    Ok(tokens)
}

/// Sign in with e-mail and password; answers tokens for a new device session, or
/// `{mfa_required, mfa_token, methods}` when a second factor is owed.
#[utoipa::path(post, path = "/api/v1/sessions", tag = "sessions", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, description = "wrong e-mail or password (the same answer for both)"),
        (status = 429, description = "too many attempts; see Retry-After"), (status = 503, description = "overloaded; see Retry-After")))]
pub async fn login(
    State(s): State<AppState>,
    meta: ClientMeta,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Json<LoginResponse>, ApiError> {
    let opened = auth::password_login(
        &s.app,
        PasswordLogin {
            email: req.email,
            password: req.password,
            device: req.device,
            client_id: req.client_id,
            client_secret: req.client_secret,
            scope: req.scope,
            web: false,
            device_trust_token: req.device_trust_token,
        },
        &meta,
    )
    .await?;
    Ok(Json(match opened {
        LoginOutcome::Signed(signed) => LoginResponse::Tokens(tokens_of(*signed)?),
        LoginOutcome::MfaRequired(m) => LoginResponse::Mfa(m),
    }))
}

/// Log out: ends the session of this access token.
#[utoipa::path(delete, path = "/api/v1/sessions/current", tag = "sessions", security(("bearer" = [])), responses((status = 204), (status = 401)))]
pub async fn logout(State(s): State<AppState>, meta: ClientMeta, AuthUser(caller): AuthUser) -> Result<StatusCode, ApiError> {
    sessions::logout(&s.app, &caller, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct LogoutEverywhere {
    pub sessions_ended: u64,
}

/// Log out everywhere: ends every session of the account, this one included.
#[utoipa::path(delete, path = "/api/v1/sessions", tag = "sessions", security(("bearer" = [])), responses((status = 200, body = LogoutEverywhere), (status = 401)))]
pub async fn logout_everywhere(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
) -> Result<Json<LogoutEverywhere>, ApiError> {
    let n = sessions::logout_everywhere(&s.app, &caller, &meta).await?;
    Ok(Json(LogoutEverywhere { sessions_ended: n }))
}

#[derive(Serialize, ToSchema)]
pub struct Me {
    pub user_id: String,
    pub email: String,
    /// Whether the address proved itself (a verification link, a reset, an e-mailed enrolment code).
    pub email_verified: bool,
    pub session_id: String,
    pub device_id: String,
    pub scope: String,
}

/// Who the bearer token belongs to.
#[utoipa::path(get, path = "/api/v1/me", tag = "sessions", security(("bearer" = [])), responses((status = 200, body = Me), (status = 401)))]
pub async fn me(State(s): State<AppState>, AuthUser(caller): AuthUser) -> Result<Json<Me>, ApiError> {
    let user = accounts::profile(&s.app, &caller).await?;
    Ok(Json(Me {
        user_id: user.id,
        email_verified: user.email.is_some() && user.email_verified_at.is_some(),
        email: user.email.unwrap_or_default(),
        session_id: caller.session_id,
        device_id: caller.device_id,
        scope: caller.scope,
    }))
}

/// The account's devices, the calling one marked `current`.
#[utoipa::path(get, path = "/api/v1/devices", tag = "devices", security(("bearer" = [])), responses((status = 200, body = Vec<DeviceView>), (status = 401)))]
pub async fn list_devices(State(s): State<AppState>, AuthUser(caller): AuthUser) -> Result<Json<Vec<DeviceView>>, ApiError> {
    Ok(Json(devices::list(&s.app, &caller).await?))
}

/// Revoke a device: its sessions and refresh tokens stop working at once.
#[utoipa::path(delete, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204), (status = 401), (status = 404, description = "no such live device on this account")))]
pub async fn revoke_device(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    devices::revoke(&s.app, &caller, &id, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The apps the account has let in (consents), newest first.
#[utoipa::path(get, path = "/api/v1/apps", tag = "apps", security(("bearer" = [])), responses((status = 200, body = Vec<AppAccess>), (status = 401)))]
pub async fn list_apps(State(s): State<AppState>, AuthUser(caller): AuthUser) -> Result<Json<Vec<AppAccess>>, ApiError> {
    Ok(Json(authorize::apps_with_access(&s.app, &caller).await?))
}

/// Take an app's access away: its consent goes and its sessions of this account end at once.
#[utoipa::path(delete, path = "/api/v1/apps/{client_id}", tag = "apps", security(("bearer" = [])), params(("client_id" = String, Path)),
    responses((status = 204), (status = 401), (status = 404, description = "the app has no access")))]
pub async fn revoke_app(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    Path(client_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    authorize::revoke_app(&s.app, &caller, &client_id, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The upstream sign-ins ("Sign in with …") linked to the account.
#[utoipa::path(get, path = "/api/v1/identities", tag = "identities", security(("bearer" = [])),
    responses((status = 200, body = Vec<IdentityView>), (status = 401)))]
pub async fn list_identities(State(s): State<AppState>, AuthUser(caller): AuthUser) -> Result<Json<Vec<IdentityView>>, ApiError> {
    Ok(Json(upstream_login::identities(&s.app, &caller).await?))
}

/// Unlink an upstream sign-in. Never the account's last way in: that answers 409.
#[utoipa::path(delete, path = "/api/v1/identities/{id}", tag = "identities", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204), (status = 401), (status = 404, description = "no such identity on this account"),
        (status = 409, description = "it is the account's last way to sign in")))]
pub async fn unlink_identity(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    upstream_login::unlink(&s.app, &caller, &id, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct AuditEntry {
    pub at: String,
    pub kind: String,
    pub device_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: serde_json::Value,
}

impl From<crate::store::AuditRow> for AuditEntry {
    fn from(r: crate::store::AuditRow) -> Self {
        Self {
            at: rfc3339(r.at),
            kind: r.kind,
            device_id: r.device_id,
            ip: r.ip,
            user_agent: r.user_agent,
            detail: serde_json::from_str(&r.detail).unwrap_or_default(),
        }
    }
}

/// The account's own security events, newest first (at most 100).
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])), responses((status = 200, body = Vec<AuditEntry>), (status = 401)))]
pub async fn audit(State(s): State<AppState>, AuthUser(caller): AuthUser) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let rows = audit::for_user(&s.app, &caller, 100).await?;
    Ok(Json(rows.into_iter().map(Into::into).collect()))
}
