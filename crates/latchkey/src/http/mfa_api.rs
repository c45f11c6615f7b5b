//! `/api/v1/mfa/*`, device trust and password change.

use super::AppState;
use super::api::tokens_of;
use super::error::ApiError;
use super::extract::{ApiJson, AuthUser};
use crate::service::ClientMeta;
use crate::service::enrolment::{self, RecoveryCodes, TotpEnrolment};
use crate::service::password;
use crate::service::sessions::TokenResponse;
use crate::service::{login_mfa, trust};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/mfa/totp", post(start_totp).delete(disable_totp))
        .route("/api/v1/mfa/totp/confirm", post(confirm_totp))
        .route("/api/v1/mfa/email", post(enrol_email))
        .route("/api/v1/mfa/email/send", post(send_email_code))
        .route("/api/v1/mfa/email/disable", post(disable_email))
        .route("/api/v1/mfa/verify", post(verify))
        .route("/api/v1/devices/trust", delete(forget_all_devices))
        .route("/api/v1/devices/{id}/trust", delete(forget_device))
        .route("/api/v1/password", post(change_password))
        .route("/api/v1/account/email", post(add_email))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    pub mfa_token: String,
    /// `totp`, `email` or `recovery`.
    pub method: String,
    pub code: String,
    /// Remember this device: the next login from it skips the second factor.
    #[serde(default)]
    pub remember_device: bool,
}

/// The second step of a login: a code for the `mfa_token`. Answers tokens, and with
/// `remember_device` a `device_trust_token`. Five wrong codes end the `mfa_token`.
#[utoipa::path(post, path = "/api/v1/mfa/verify", tag = "second factors", request_body = VerifyRequest,
    responses((status = 200, body = TokenResponse), (status = 400, description = "wrong code"), (status = 401, description = "the mfa_token is invalid, expired, used or exhausted")))]
pub async fn verify(
    State(s): State<AppState>,
    meta: ClientMeta,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let signed = login_mfa::verify(&s.app, &req.mfa_token, &req.method, &req.code, req.remember_device, false, &meta).await?;
    Ok(Json(tokens_of(signed)?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaTokenOnly {
    pub mfa_token: String,
}

/// Mail a sign-in code for the `mfa_token` to the account's address.
#[utoipa::path(post, path = "/api/v1/mfa/email/send", tag = "second factors", request_body = MfaTokenOnly,
    responses((status = 202), (status = 401), (status = 403, description = "the address is not verified: no codes are sent to it"), (status = 429, description = "a code was sent moments ago")))]
pub async fn send_email_code(State(s): State<AppState>, ApiJson(req): ApiJson<MfaTokenOnly>) -> Result<StatusCode, ApiError> {
    login_mfa::send_login_code(&s.app, &req.mfa_token).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Start TOTP set-up (needs a sign-in within the last 10 minutes).
#[utoipa::path(post, path = "/api/v1/mfa/totp", tag = "second factors", security(("bearer" = [])),
    responses((status = 200, body = TotpEnrolment), (status = 403, description = "sign in again first"), (status = 409, description = "TOTP is already on")))]
pub async fn start_totp(State(s): State<AppState>, AuthUser(caller): AuthUser) -> Result<Json<TotpEnrolment>, ApiError> {
    Ok(Json(enrolment::start_totp(&s.app, &caller).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeOnly {
    pub code: String,
}

/// Turn TOTP on with a first code; answers ten single-use recovery codes, shown only now.
#[utoipa::path(post, path = "/api/v1/mfa/totp/confirm", tag = "second factors", security(("bearer" = [])), request_body = CodeOnly,
    responses((status = 200, body = RecoveryCodes), (status = 400, description = "wrong code")))]
pub async fn confirm_totp(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    ApiJson(req): ApiJson<CodeOnly>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    Ok(Json(enrolment::confirm_totp(&s.app, &caller, &req.code, &meta).await?))
}

/// Turn TOTP off, with a current code or a recovery code.
#[utoipa::path(delete, path = "/api/v1/mfa/totp", tag = "second factors", security(("bearer" = [])), request_body = CodeOnly,
    responses((status = 204), (status = 400, description = "wrong code")))]
pub async fn disable_totp(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    ApiJson(req): ApiJson<CodeOnly>,
) -> Result<StatusCode, ApiError> {
    enrolment::disable_totp(&s.app, &caller, &req.code, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct EmailEnrol {
    /// Absent: mail a code. Present: the code from that mail, which turns e-mail codes on.
    pub code: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct EmailEnrolled {
    /// `sent` after a request without code, `enabled` after the right code.
    pub status: &'static str,
}

/// Turn on sign-in codes by e-mail: first `{}` mails a code, then `{code}` confirms it.
#[utoipa::path(post, path = "/api/v1/mfa/email", tag = "second factors", security(("bearer" = [])), request_body = EmailEnrol,
    responses((status = 200, body = EmailEnrolled), (status = 400), (status = 429)))]
pub async fn enrol_email(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    ApiJson(req): ApiJson<EmailEnrol>,
) -> Result<Json<EmailEnrolled>, ApiError> {
    let enabled = enrolment::enrol_email(&s.app, &caller, req.code.as_deref(), &meta).await?;
    Ok(Json(EmailEnrolled { status: if enabled { "enabled" } else { "sent" } }))
}

#[derive(Serialize, ToSchema)]
pub struct EmailDisabled {
    /// `sent` after a request without code, `disabled` after the right code.
    pub status: &'static str,
}

/// Turn off sign-in codes by e-mail: first `{}` mails a code, then `{code}` confirms it. Needs a
/// recent sign-in; remembered devices are forgotten, as after any change of second factors.
#[utoipa::path(post, path = "/api/v1/mfa/email/disable", tag = "second factors", security(("bearer" = [])), request_body = EmailEnrol,
    responses((status = 200, body = EmailDisabled), (status = 400), (status = 403, description = "the sign-in is not recent"), (status = 429)))]
pub async fn disable_email(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    ApiJson(req): ApiJson<EmailEnrol>,
) -> Result<Json<EmailDisabled>, ApiError> {
    let disabled = enrolment::disable_email(&s.app, &caller, req.code.as_deref(), &meta).await?;
    Ok(Json(EmailDisabled { status: if disabled { "disabled" } else { "sent" } }))
}

#[derive(Serialize, ToSchema)]
pub struct Forgotten {
    pub devices_forgotten: u64,
}

/// Forget every remembered device: each will ask for the second factor again.
#[utoipa::path(delete, path = "/api/v1/devices/trust", tag = "devices", security(("bearer" = [])), responses((status = 200, body = Forgotten)))]
pub async fn forget_all_devices(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
) -> Result<Json<Forgotten>, ApiError> {
    Ok(Json(Forgotten { devices_forgotten: trust::forget_device(&s.app, &caller, None, &meta).await? }))
}

/// Forget one remembered device.
#[utoipa::path(delete, path = "/api/v1/devices/{id}/trust", tag = "devices", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = Forgotten)))]
pub async fn forget_device(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<Forgotten>, ApiError> {
    Ok(Json(Forgotten { devices_forgotten: trust::forget_device(&s.app, &caller, Some(&id), &meta).await? }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    /// Required unless the account has no password yet (made from a device).
    pub current_password: Option<String>,
    pub new_password: String,
    /// End every other session too.
    #[serde(default)]
    pub end_other_sessions: bool,
}

#[derive(Serialize, ToSchema)]
pub struct PasswordChanged {
    pub other_sessions_ended: u64,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddEmail {
    pub email: String,
}

/// Give an account made without an e-mail (from a device) its address. An address, once set,
/// is not changed here.
#[utoipa::path(post, path = "/api/v1/account/email", tag = "accounts", security(("bearer" = [])), request_body = AddEmail,
    responses((status = 204), (status = 409, description = "the account has an e-mail, or the address is taken"), (status = 422)))]
pub async fn add_email(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    ApiJson(req): ApiJson<AddEmail>,
) -> Result<StatusCode, ApiError> {
    crate::service::accounts::add_email(&s.app, &caller, &req.email, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Change the password. Every remembered device is forgotten; other sessions end on request.
#[utoipa::path(post, path = "/api/v1/password", tag = "accounts", security(("bearer" = [])), request_body = ChangePassword,
    responses((status = 200, body = PasswordChanged), (status = 403, description = "the current password is wrong"), (status = 422)))]
pub async fn change_password(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    ApiJson(req): ApiJson<ChangePassword>,
) -> Result<Json<PasswordChanged>, ApiError> {
    let n = password::change(&s.app, &caller, req.current_password, req.new_password, req.end_other_sessions, &meta).await?;
    Ok(Json(PasswordChanged { other_sessions_ended: n }))
}
