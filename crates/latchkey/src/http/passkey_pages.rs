//! The browser's passkey endpoints: JSON for `static/passkeys.js` (with the CSRF token in a
//! header and the session in its cookie), and the `/account` forms that rename and remove.

use super::AppState;
use super::error::ApiError;
use super::web::{CsrfForm, CsrfHeader, PageError, PagePath, WebUser, asset, on_off, safe_next, signed_in};
use crate::service::auth::LoginOutcome;
use crate::service::passkeys::{self, Ceremony, PasskeySignIn, PasskeyView};
use crate::service::{AppError, ClientMeta};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;
use webauthn_rs::prelude::{CreationChallengeResponse, PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login/passkey/start", post(login_start))
        .route("/login/passkey/finish", post(login_finish))
        .route("/passkeys/register/start", post(register_start))
        .route("/passkeys/register/finish", post(register_finish))
        .route("/passkeys/step-up/start", post(step_up_start))
        .route("/passkeys/step-up/finish", post(step_up_finish))
        .route("/account/passkeys/{id}/rename", post(rename))
        .route("/account/passkeys/{id}/remove", post(remove))
        .route("/account/passkeys/step-up", post(step_up_choice))
        .route("/static/passkeys.js", get(|| async { asset("text/javascript; charset=utf-8", include_str!("../../static/passkeys.js")) }))
}

async fn login_start(
    State(s): State<AppState>,
    meta: ClientMeta,
    _: CsrfHeader,
) -> Result<Json<Ceremony<RequestChallengeResponse>>, ApiError> {
    Ok(Json(passkeys::start_sign_in(&s.app, &meta).await?))
}

#[derive(Deserialize)]
struct LoginFinish {
    challenge_id: String,
    credential: PublicKeyCredential,
    next: Option<String>,
}

/// A passkey sign-in of this browser: the session cookie, and where to go next.
async fn login_finish(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    _: CsrfHeader,
    Json(b): Json<LoginFinish>,
) -> Result<Response, ApiError> {
    let req = PasskeySignIn {
        challenge_id: &b.challenge_id,
        credential: &b.credential,
        client_id: None,
        client_secret: None,
        scope: None,
        device: None,
        web: true,
    };
    let LoginOutcome::Signed(signed) = passkeys::finish_sign_in(&s.app, req, &meta).await? else {
        return Err(anyhow::anyhow!("a passkey sign-in asked for a second factor").into());
    };
    let jar = signed_in(jar, &s, &signed.opened, None);
    Ok((jar, Json(serde_json::json!({ "redirect": safe_next(b.next.as_deref()) }))).into_response())
}

#[derive(Deserialize, Default)]
struct RegisterStart {
    name: Option<String>,
}

async fn register_start(
    State(s): State<AppState>,
    WebUser(caller): WebUser,
    _: CsrfHeader,
    Json(b): Json<RegisterStart>,
) -> Result<Json<Ceremony<CreationChallengeResponse>>, ApiError> {
    Ok(Json(passkeys::start_registration(&s.app, &caller, b.name.as_deref()).await?))
}

#[derive(Deserialize)]
struct RegisterFinish {
    challenge_id: String,
    credential: RegisterPublicKeyCredential,
}

async fn register_finish(
    State(s): State<AppState>,
    meta: ClientMeta,
    WebUser(caller): WebUser,
    _: CsrfHeader,
    Json(b): Json<RegisterFinish>,
) -> Result<Json<PasskeyView>, ApiError> {
    Ok(Json(passkeys::finish_registration(&s.app, &caller, &b.challenge_id, &b.credential, &meta).await?))
}

async fn step_up_start(
    State(s): State<AppState>,
    WebUser(caller): WebUser,
    _: CsrfHeader,
) -> Result<Json<Ceremony<RequestChallengeResponse>>, ApiError> {
    Ok(Json(passkeys::start_step_up(&s.app, &caller).await?))
}

#[derive(Deserialize)]
struct StepUpFinish {
    challenge_id: String,
    credential: PublicKeyCredential,
}

async fn step_up_finish(
    State(s): State<AppState>,
    meta: ClientMeta,
    WebUser(caller): WebUser,
    _: CsrfHeader,
    Json(b): Json<StepUpFinish>,
) -> Result<Json<serde_json::Value>, ApiError> {
    passkeys::finish_step_up(&s.app, &caller, &b.challenge_id, &b.credential, &meta).await?;
    Ok(Json(serde_json::json!({ "verified": true })))
}

#[derive(Deserialize)]
struct RenameForm {
    name: String,
}

async fn rename(
    State(s): State<AppState>,
    meta: ClientMeta,
    WebUser(caller): WebUser,
    PagePath(id): PagePath<String>,
    CsrfForm(f): CsrfForm<RenameForm>,
) -> Result<Redirect, PageError> {
    passkeys::rename(&s.app, &caller, &id, &f.name, &meta).await?;
    Ok(Redirect::to("/account"))
}

#[derive(Deserialize)]
struct RemoveForm {
    /// A checkbox: present when ticked.
    end_sessions: Option<String>,
}

async fn remove(
    State(s): State<AppState>,
    meta: ClientMeta,
    WebUser(caller): WebUser,
    PagePath(id): PagePath<String>,
    CsrfForm(f): CsrfForm<RemoveForm>,
) -> Result<Redirect, PageError> {
    match passkeys::remove(&s.app, &caller, &id, f.end_sessions.is_some(), &meta).await {
        // Removed twice (two tabs): the account page shows it gone either way.
        Ok(_) | Err(AppError::NotFound) => Ok(Redirect::to("/account")),
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
struct StepUpChoice {
    /// `on` or `off`.
    require: String,
}

async fn step_up_choice(
    State(s): State<AppState>,
    meta: ClientMeta,
    WebUser(caller): WebUser,
    CsrfForm(f): CsrfForm<StepUpChoice>,
) -> Result<Redirect, PageError> {
    passkeys::set_step_up(&s.app, &caller, on_off("require", &f.require)?, &meta).await?;
    Ok(Redirect::to("/account"))
}
