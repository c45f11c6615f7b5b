//! The "This wasn't me" link of a new-device mail (`service::device_alerts`), and each account's
//! choice of that mail on /account and in the API.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, AuthUser};
use super::web::{CsrfForm, Empty, PageError, PagePath, WebUser, csrf_token, on_off};
use crate::service::ClientMeta;
use crate::service::device_alerts::{self, Disowned, MailChoice};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/wasnt-me/{token}", get(confirm_page).post(disown))
        .route("/account/new-device-mail", post(choose))
        .route("/api/v1/account/new-device-mail", get(mail_choice).put(set_mail_choice))
}

#[derive(Template, WebTemplate)]
#[template(path = "wasnt_me.html")]
struct WasntMePage {
    csrf: String,
    token: String,
    d: Disowned,
    done: bool,
}

/// What the link shows: the device, and one button. Opening it changes nothing (mail scanners
/// and link previews open links too).
async fn confirm_page(State(s): State<AppState>, jar: CookieJar, PagePath(token): PagePath<String>) -> Result<Response, PageError> {
    let d = device_alerts::look(&s.app, &token).await?;
    let (jar, csrf) = csrf_token(jar, &s);
    Ok((jar, WasntMePage { csrf, token, d, done: false }).into_response())
}

/// "This wasn't me": the link is used, and its device signed out. No session needed: the link
/// is the proof, and all it can do is sign one device out.
async fn disown(
    State(s): State<AppState>,
    meta: ClientMeta,
    PagePath(token): PagePath<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, PageError> {
    let d = device_alerts::disown(&s.app, &token, &meta).await?;
    Ok(WasntMePage { csrf: String::new(), token: String::new(), d, done: true }.into_response())
}

#[derive(Deserialize)]
struct Choice {
    mail: String,
}

async fn choose(
    State(s): State<AppState>,
    meta: ClientMeta,
    WebUser(caller): WebUser,
    CsrfForm(f): CsrfForm<Choice>,
) -> Result<Redirect, PageError> {
    device_alerts::set_choice(&s.app, &caller, on_off("mail", &f.mail)?, &meta).await?;
    Ok(Redirect::to("/account"))
}

/// Whether this account is mailed when a new device signs in to it.
#[utoipa::path(get, path = "/api/v1/account/new-device-mail", tag = "accounts", security(("bearer" = [])), responses((status = 200, body = MailChoice)))]
pub async fn mail_choice(State(s): State<AppState>, AuthUser(caller): AuthUser) -> Result<Json<MailChoice>, ApiError> {
    Ok(Json(device_alerts::choice(&s.app, &caller).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetMailChoice {
    pub new_device_mail: bool,
}

/// The account's own choice of "a new device signed in" mail.
#[utoipa::path(put, path = "/api/v1/account/new-device-mail", tag = "accounts", security(("bearer" = [])), request_body = SetMailChoice,
    responses((status = 200, body = MailChoice)))]
pub async fn set_mail_choice(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    ApiJson(b): ApiJson<SetMailChoice>,
) -> Result<Json<MailChoice>, ApiError> {
    Ok(Json(device_alerts::set_choice(&s.app, &caller, b.new_device_mail, &meta).await?))
}
