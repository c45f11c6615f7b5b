//! E-mail verification and password reset by mailed link (`service::email_links`): the pages the
//! links open (inert until their form is sent), "Forgot your password?", and the API equivalents.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, AuthUser};
use super::web::{CsrfForm, Empty, PageError, PagePath, WebUser, csrf_token, done};
use crate::service::ClientMeta;
use crate::service::email_links;
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_extra::extract::cookie::CookieJar;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/verify-email/{token}", get(verify_page).post(verify))
        .route("/forgot-password", get(forgot_page).post(forgot))
        .route("/reset-password/{token}", get(reset_page).post(reset))
        .route("/account/email-verification", post(resend_page))
        .route("/api/v1/account/email-verification", post(resend))
        .route("/api/v1/email-verifications/confirm", post(confirm_verification))
        .route("/api/v1/password-resets", post(request_reset))
        .route("/api/v1/password-resets/confirm", post(confirm_reset))
}

pub enum EmailLinkForm {
    Verify(String),
    Forgot,
    Reset(String),
}

#[derive(Template, WebTemplate)]
#[template(path = "email_link.html")]
struct EmailLinkPage {
    title: &'static str,
    csrf: String,
    email: String,
    form: EmailLinkForm,
}

fn page(jar: CookieJar, s: &AppState, title: &'static str, email: String, form: EmailLinkForm) -> Response {
    let (jar, csrf) = csrf_token(jar, s);
    (jar, EmailLinkPage { title, csrf, email, form }).into_response()
}

const RESET_SENT: &str = "If an account has this address, a link to choose a new password is on its way to it. \
    It works once, for 30 minutes. Nothing arrived? Check the address and your spam folder, and ask again in a few minutes.";

async fn verify_page(State(s): State<AppState>, jar: CookieJar, PagePath(token): PagePath<String>) -> Result<Response, PageError> {
    let email = email_links::look_verification(&s.app, &token).await?;
    Ok(page(jar, &s, "Confirm your e-mail address", email, EmailLinkForm::Verify(token)))
}

async fn verify(
    State(s): State<AppState>,
    meta: ClientMeta,
    PagePath(token): PagePath<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, PageError> {
    let email = email_links::confirm_verification(&s.app, &token, &meta).await?;
    Ok(done(&format!("{email} is verified. Sign-in codes and security mail can go to it now.")))
}

async fn forgot_page(State(s): State<AppState>, jar: CookieJar) -> Response {
    page(jar, &s, "Forgot your password?", String::new(), EmailLinkForm::Forgot)
}

#[derive(Deserialize)]
struct ForgotForm {
    email: String,
}

async fn forgot(State(s): State<AppState>, meta: ClientMeta, CsrfForm(f): CsrfForm<ForgotForm>) -> Result<Response, PageError> {
    email_links::request_reset(&s.app, &f.email, &meta).await?;
    Ok(done(RESET_SENT))
}

async fn reset_page(State(s): State<AppState>, jar: CookieJar, PagePath(token): PagePath<String>) -> Result<Response, PageError> {
    let email = email_links::look_reset(&s.app, &token).await?;
    Ok(page(jar, &s, "Choose a new password", email, EmailLinkForm::Reset(token)))
}

#[derive(Deserialize)]
struct ResetForm {
    password: String,
}

async fn reset(
    State(s): State<AppState>,
    meta: ClientMeta,
    PagePath(token): PagePath<String>,
    CsrfForm(f): CsrfForm<ResetForm>,
) -> Result<Response, PageError> {
    email_links::confirm_reset(&s.app, &token, f.password, &meta).await?;
    Ok(done("Your password is changed. Every device of your account is signed out: sign in again with the new password."))
}

async fn resend_page(
    State(s): State<AppState>,
    meta: ClientMeta,
    WebUser(caller): WebUser,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Redirect, PageError> {
    email_links::request_verification(&s.app, &caller, &meta).await?;
    Ok(Redirect::to("/account"))
}

/// Mails another verification link to the account's address.
#[utoipa::path(post, path = "/api/v1/account/email-verification", tag = "accounts", security(("bearer" = [])),
    responses((status = 202, description = "a link is on its way"), (status = 409, description = "the address is verified already")))]
pub async fn resend(State(s): State<AppState>, meta: ClientMeta, AuthUser(caller): AuthUser) -> Result<StatusCode, ApiError> {
    email_links::request_verification(&s.app, &caller, &meta).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkToken {
    /// The token at the end of the mailed link.
    pub token: String,
}

#[derive(Serialize, ToSchema)]
pub struct Verified {
    pub email: String,
}

/// Follows a verification link (the token at its end).
#[utoipa::path(post, path = "/api/v1/email-verifications/confirm", tag = "accounts", request_body = LinkToken,
    responses((status = 200, body = Verified), (status = 400, description = "used, expired or unknown")))]
pub async fn confirm_verification(
    State(s): State<AppState>,
    meta: ClientMeta,
    ApiJson(b): ApiJson<LinkToken>,
) -> Result<Json<Verified>, ApiError> {
    Ok(Json(Verified { email: email_links::confirm_verification(&s.app, &b.token, &meta).await? }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    pub email: String,
}

#[derive(Serialize, ToSchema)]
pub struct ResetRequested {
    pub message: &'static str,
}

/// "Forgot password": mails a reset link if an account has the address. The answer is the same
/// either way; limited per IP and per address.
#[utoipa::path(post, path = "/api/v1/password-resets", tag = "accounts", request_body = ResetRequest,
    responses((status = 202, body = ResetRequested), (status = 429, description = "too many for this IP or address")))]
pub async fn request_reset(
    State(s): State<AppState>,
    meta: ClientMeta,
    ApiJson(b): ApiJson<ResetRequest>,
) -> Result<(StatusCode, Json<ResetRequested>), ApiError> {
    email_links::request_reset(&s.app, &b.email, &meta).await?;
    Ok((StatusCode::ACCEPTED, Json(ResetRequested { message: RESET_SENT })))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    pub token: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct ResetDone {
    /// Every session of the account ended: how many there were.
    pub sessions_ended: u64,
}

/// Sets a new password with a reset link's token: every session of the account ends and its
/// remembered devices are forgotten.
#[utoipa::path(post, path = "/api/v1/password-resets/confirm", tag = "accounts", request_body = ResetConfirm,
    responses((status = 200, body = ResetDone), (status = 400, description = "used, expired or unknown"), (status = 422, description = "the password is too short or too long")))]
pub async fn confirm_reset(
    State(s): State<AppState>,
    meta: ClientMeta,
    ApiJson(b): ApiJson<ResetConfirm>,
) -> Result<Json<ResetDone>, ApiError> {
    Ok(Json(ResetDone { sessions_ended: email_links::confirm_reset(&s.app, &b.token, b.password, &meta).await? }))
}
