//! `/api/v1/passkeys…`: passkeys for API clients (a native app holding an access token, or one
//! signing in with a passkey). The browser's own endpoints, with cookies, are `passkey_pages.rs`.

use super::AppState;
use super::api::tokens_of;
use super::error::ApiError;
use super::extract::{ApiJson, AuthUser};
use crate::domain::device::DeviceInput;
use crate::service::ClientMeta;
use crate::service::auth::LoginOutcome;
use crate::service::passkeys::{self, Ceremony, PasskeySignIn, PasskeyView, StepUpRule};
use crate::service::sessions::TokenResponse;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use webauthn_rs::prelude::{CreationChallengeResponse, PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/passkeys", get(list))
        .route("/api/v1/passkeys/{id}", patch(rename).delete(remove))
        .route("/api/v1/passkeys/register/start", post(register_start))
        .route("/api/v1/passkeys/register/finish", post(register_finish))
        .route("/api/v1/passkeys/login/start", post(login_start))
        .route("/api/v1/passkeys/login/finish", post(login_finish))
        .route("/api/v1/passkeys/step-up/start", post(step_up_start))
        .route("/api/v1/passkeys/step-up/finish", post(step_up_finish))
        .route("/api/v1/passkeys/step-up-rule", get(step_up_rule).put(set_step_up_rule))
}

/// A started ceremony (`service::passkeys::Ceremony`), as the OpenAPI document shows it.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CeremonyDoc {
    /// Give it back with the answer.
    challenge_id: String,
    /// `{"publicKey": …}` for `navigator.credentials.create()` or `.get()`, bytes in base64url.
    #[schema(value_type = Object)]
    options: serde_json::Value,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct RegisterStart {
    /// What the account page will call it; "Passkey N" when absent.
    pub name: Option<String>,
}

/// Start adding a passkey (needs a sign-in within the last 10 minutes; send `{}` for the default name). Hand `options` to
/// `navigator.credentials.create()` (or a platform API) and its answer to `…/register/finish`.
#[utoipa::path(post, path = "/api/v1/passkeys/register/start", tag = "passkeys", security(("bearer" = [])), request_body = RegisterStart,
    responses((status = 200, body = CeremonyDoc), (status = 403, description = "sign in again first"), (status = 409, description = "passkeys are not available on this server")))]
pub async fn register_start(
    State(s): State<AppState>,
    AuthUser(caller): AuthUser,
    ApiJson(b): ApiJson<RegisterStart>,
) -> Result<Json<Ceremony<CreationChallengeResponse>>, ApiError> {
    Ok(Json(passkeys::start_registration(&s.app, &caller, b.name.as_deref()).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterFinish {
    pub challenge_id: String,
    /// The `PublicKeyCredential` from `navigator.credentials.create()`, in WebAuthn's JSON form.
    #[schema(value_type = Object)]
    pub credential: RegisterPublicKeyCredential,
}

/// Finish adding a passkey. A replayed, expired or foreign challenge, a wrong origin or RP id,
/// or no user verification: 400, and nothing is stored.
#[utoipa::path(post, path = "/api/v1/passkeys/register/finish", tag = "passkeys", security(("bearer" = [])), request_body = RegisterFinish,
    responses((status = 201, body = PasskeyView), (status = 400, description = "refused; nothing was stored"), (status = 409, description = "registered already")))]
pub async fn register_finish(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    ApiJson(b): ApiJson<RegisterFinish>,
) -> Result<(StatusCode, Json<PasskeyView>), ApiError> {
    let view = passkeys::finish_registration(&s.app, &caller, &b.challenge_id, &b.credential, &meta).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// The account's passkeys, with when each was last used.
#[utoipa::path(get, path = "/api/v1/passkeys", tag = "passkeys", security(("bearer" = [])), responses((status = 200, body = Vec<PasskeyView>)))]
pub async fn list(State(s): State<AppState>, AuthUser(caller): AuthUser) -> Result<Json<Vec<PasskeyView>>, ApiError> {
    Ok(Json(passkeys::list(&s.app, &caller).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    pub name: String,
}

/// Rename a passkey.
#[utoipa::path(patch, path = "/api/v1/passkeys/{id}", tag = "passkeys", security(("bearer" = [])), request_body = Rename,
    params(("id" = String, Path)), responses((status = 204), (status = 404)))]
pub async fn rename(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<Rename>,
) -> Result<StatusCode, ApiError> {
    passkeys::rename(&s.app, &caller, &id, &b.name, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct RemoveQuery {
    /// Also end the sessions this passkey opened.
    #[serde(default)]
    pub end_sessions: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Removed {
    pub sessions_ended: u64,
}

/// Remove a passkey, optionally ending the sessions it opened. The account's last way in (no
/// password, no linked sign-in, no other passkey) is never removed: 409.
#[utoipa::path(delete, path = "/api/v1/passkeys/{id}", tag = "passkeys", security(("bearer" = [])),
    params(("id" = String, Path), RemoveQuery), responses((status = 200, body = Removed), (status = 404), (status = 409, description = "the account's last way in")))]
pub async fn remove(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
    Query(q): Query<RemoveQuery>,
) -> Result<Json<Removed>, ApiError> {
    let sessions_ended = passkeys::remove(&s.app, &caller, &id, q.end_sessions, &meta).await?;
    Ok(Json(Removed { sessions_ended }))
}

/// Start signing in with a passkey: no account named, the authenticator offers its own
/// (discoverable credentials). Rate-limited per IP.
#[utoipa::path(post, path = "/api/v1/passkeys/login/start", tag = "passkeys",
    responses((status = 200, body = CeremonyDoc), (status = 429)))]
pub async fn login_start(State(s): State<AppState>, meta: ClientMeta) -> Result<Json<Ceremony<RequestChallengeResponse>>, ApiError> {
    Ok(Json(passkeys::start_sign_in(&s.app, &meta).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginFinish {
    pub challenge_id: String,
    /// The `PublicKeyCredential` from `navigator.credentials.get()`, in WebAuthn's JSON form.
    #[schema(value_type = Object)]
    pub credential: PublicKeyCredential,
    /// What this device calls itself; OS and browser come from the User-Agent.
    pub device: Option<DeviceInput>,
    /// The client the session belongs to; `latchkey-cli` when absent.
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scope: Option<String>,
}

/// Finish signing in with a passkey. With user verification it is a whole sign-in
/// (`amr: ["hwk"|"swk", "user"]`): no second factor is asked.
#[utoipa::path(post, path = "/api/v1/passkeys/login/finish", tag = "passkeys", request_body = LoginFinish,
    responses((status = 200, body = TokenResponse), (status = 400, description = "refused (unknown, replayed or expired challenge, wrong site, no user verification, counter gone backwards, another account's passkey)")))]
pub async fn login_finish(State(s): State<AppState>, meta: ClientMeta, ApiJson(b): ApiJson<LoginFinish>) -> Result<Response, ApiError> {
    let req = PasskeySignIn {
        challenge_id: &b.challenge_id,
        credential: &b.credential,
        client_id: b.client_id.as_deref(),
        client_secret: b.client_secret.as_deref(),
        scope: b.scope.as_deref(),
        device: b.device.as_ref(),
        web: false,
    };
    match passkeys::finish_sign_in(&s.app, req, &meta).await? {
        LoginOutcome::Signed(signed) => Ok(Json(tokens_of(*signed)?).into_response()),
        // A passkey skips second factors (`complete_sign_in`), so this is a bug, not an answer.
        LoginOutcome::MfaRequired(_) => Err(anyhow::anyhow!("a passkey sign-in asked for a second factor").into()),
    }
}

/// Start a step-up: prove one of the account's passkeys before approving a new device.
#[utoipa::path(post, path = "/api/v1/passkeys/step-up/start", tag = "passkeys", security(("bearer" = [])),
    responses((status = 200, body = CeremonyDoc), (status = 409, description = "the account has no passkey")))]
pub async fn step_up_start(
    State(s): State<AppState>,
    AuthUser(caller): AuthUser,
) -> Result<Json<Ceremony<RequestChallengeResponse>>, ApiError> {
    Ok(Json(passkeys::start_step_up(&s.app, &caller).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUpFinish {
    pub challenge_id: String,
    #[schema(value_type = Object)]
    pub credential: PublicKeyCredential,
}

/// Finish a step-up: approvals by this session in the next `passkeys.step_up_max_age_secs`
/// are passkey-verified.
#[utoipa::path(post, path = "/api/v1/passkeys/step-up/finish", tag = "passkeys", security(("bearer" = [])), request_body = StepUpFinish,
    responses((status = 204), (status = 400, description = "refused")))]
pub async fn step_up_finish(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    ApiJson(b): ApiJson<StepUpFinish>,
) -> Result<StatusCode, ApiError> {
    passkeys::finish_step_up(&s.app, &caller, &b.challenge_id, &b.credential, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether approvals by this account need a fresh passkey assertion.
#[utoipa::path(get, path = "/api/v1/passkeys/step-up-rule", tag = "passkeys", security(("bearer" = [])), responses((status = 200, body = StepUpRule)))]
pub async fn step_up_rule(State(s): State<AppState>, AuthUser(caller): AuthUser) -> Result<Json<StepUpRule>, ApiError> {
    Ok(Json(passkeys::step_up_rule(&s.app, &caller).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStepUpRule {
    pub require_for_approvals: bool,
}

/// The account's own choice: approvals need a fresh passkey assertion (needs a passkey).
#[utoipa::path(put, path = "/api/v1/passkeys/step-up-rule", tag = "passkeys", security(("bearer" = [])), request_body = SetStepUpRule,
    responses((status = 200, body = StepUpRule), (status = 409, description = "the account has no passkey")))]
pub async fn set_step_up_rule(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    ApiJson(b): ApiJson<SetStepUpRule>,
) -> Result<Json<StepUpRule>, ApiError> {
    passkeys::set_step_up(&s.app, &caller, b.require_for_approvals, &meta).await?;
    Ok(Json(passkeys::step_up_rule(&s.app, &caller).await?))
}
