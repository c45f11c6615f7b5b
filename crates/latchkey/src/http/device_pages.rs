//! Pages for bringing in a new device: `/device` (approve a device-grant code) and `/pair`
//! (show a pairing code, then allow or deny who joined). POST only for every decision, CSRF
//! checked, and the code from `verification_uri_complete` only ever fills the form in.

use super::AppState;
use super::web::{CsrfForm, Empty, PageError, PagePath, PageQuery, WebUser, asset, csrf_token, decision, done};
use crate::service::approvals::RequesterFacts;
use crate::service::device_grant;
use crate::service::pairing::{self, PairingStatus};
use crate::service::passkeys;
use crate::service::{AppError, ClientMeta};
use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/device", get(device_form).post(device_confirm))
        .route("/device/decision", post(device_decision))
        .route("/pair", get(pair_start).post(pair_create))
        .route("/pair/{id}", get(pair_view))
        .route("/pair/{id}/status", get(pair_status_json))
        .route("/pair/{id}/{decision}", post(pair_decide))
        .route("/static/pair.js", get(|| async { asset("text/javascript; charset=utf-8", include_str!("../../static/pair.js")) }))
}

/// A code's errors in the words of these pages: wrong, expired and used codes are one 400.
fn code_error(e: AppError) -> PageError {
    match e {
        AppError::RateLimited { retry_after } => {
            PageError::new(StatusCode::TOO_MANY_REQUESTS, format!("Too many wrong codes. Wait {retry_after} seconds before trying again."))
        }
        AppError::BadRequest(text) | AppError::Conflict(text) => PageError::new(StatusCode::BAD_REQUEST, text),
        AppError::Invalid(p) => PageError::new(StatusCode::BAD_REQUEST, p.message),
        AppError::NotFound => PageError::new(StatusCode::NOT_FOUND, "There is no such pairing code on this device."),
        other => other.into(),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "device.html")]
struct DeviceForm {
    csrf: String,
    user_code: String,
}

#[derive(Deserialize)]
struct CodeQuery {
    user_code: Option<String>,
}

async fn device_form(State(s): State<AppState>, jar: CookieJar, _user: WebUser, PageQuery(q): PageQuery<CodeQuery>) -> Response {
    let (jar, csrf) = csrf_token(jar, &s);
    // Only letters, spaces and dashes are echoed back into the form.
    let user_code: String =
        q.user_code.unwrap_or_default().chars().filter(|c| c.is_ascii_alphabetic() || *c == '-' || *c == ' ').take(20).collect();
    (jar, DeviceForm { csrf, user_code }).into_response()
}

#[derive(Template, WebTemplate)]
#[template(path = "device_confirm.html")]
struct DeviceConfirm {
    csrf: String,
    user_code: String,
    facts: RequesterFacts,
    ago: String,
    /// Approve first asks for a passkey (step-up).
    step_up: bool,
}

#[derive(Deserialize)]
struct CodeForm {
    user_code: String,
    /// Checked already; carried into the confirmation form.
    csrf: String,
}

pub fn ago(secs: i64) -> String {
    let (n, unit) = match secs {
        s if s < 60 => (s, "second"),
        s if s < 3600 => (s / 60, "minute"),
        s => (s / 3600, "hour"),
    };
    if n == 1 { format!("1 {unit} ago") } else { format!("{n} {unit}s ago") }
}

async fn device_confirm(
    State(s): State<AppState>,
    meta: ClientMeta,
    WebUser(caller): WebUser,
    CsrfForm(f): CsrfForm<CodeForm>,
) -> Result<DeviceConfirm, PageError> {
    let (_, facts) = device_grant::lookup(&s.app, &caller, &f.user_code, &meta).await.map_err(code_error)?;
    let ago = ago(facts.seconds_ago);
    let step_up = passkeys::page_needs_step_up(&s.app, &caller).await?;
    Ok(DeviceConfirm { csrf: f.csrf, user_code: f.user_code, facts, ago, step_up })
}

#[derive(Deserialize)]
struct DecisionForm {
    user_code: String,
    decision: String,
    device_name: Option<String>,
    /// The "in front of me" checkbox: present when ticked.
    in_front: Option<String>,
}

async fn device_decision(
    State(s): State<AppState>,
    meta: ClientMeta,
    WebUser(caller): WebUser,
    CsrfForm(f): CsrfForm<DecisionForm>,
) -> Result<Response, PageError> {
    let approve = decision(&f.decision).ok_or_else(|| PageError::new(StatusCode::BAD_REQUEST, "Choose Approve or Deny."))?;
    let name = f.device_name.as_deref().map(str::trim).filter(|n| !n.is_empty());
    device_grant::decide(&s.app, &caller, &f.user_code, approve, name, f.in_front.is_some(), &meta).await.map_err(code_error)?;
    Ok(done(if approve {
        "Device approved. It will be signed in within a few seconds; you can close this page."
    } else {
        "Request denied. The device was not signed in."
    }))
}

#[derive(Template, WebTemplate)]
#[template(path = "pair_start.html")]
struct PairStart {
    csrf: String,
}

async fn pair_start(State(s): State<AppState>, jar: CookieJar, _user: WebUser) -> Response {
    let (jar, csrf) = csrf_token(jar, &s);
    (jar, PairStart { csrf }).into_response()
}

#[derive(Template, WebTemplate)]
#[template(path = "pair.html")]
struct PairPage {
    csrf: String,
    id: String,
    code: Option<String>,
    expires_in: i64,
    status: PairingStatus,
    ago: String,
    /// Allow first asks for a passkey (step-up).
    step_up: bool,
}

#[derive(Deserialize)]
struct CsrfOnly {
    /// Checked already; carried into the page's Allow and Deny forms.
    csrf: String,
}

async fn pair_create(
    State(s): State<AppState>,
    meta: ClientMeta,
    WebUser(caller): WebUser,
    CsrfForm(f): CsrfForm<CsrfOnly>,
) -> Result<PairPage, PageError> {
    let created = pairing::create(&s.app, &caller, None, &meta).await.map_err(code_error)?;
    let status = pairing::status(&s.app, &caller, &created.id).await.map_err(code_error)?;
    let step_up = passkeys::page_needs_step_up(&s.app, &caller).await?;
    Ok(PairPage {
        csrf: f.csrf,
        id: created.id,
        code: Some(created.code),
        expires_in: status.expires_in,
        ago: String::new(),
        status,
        step_up,
    })
}

async fn pair_view(
    State(s): State<AppState>,
    jar: CookieJar,
    WebUser(caller): WebUser,
    PagePath(id): PagePath<String>,
) -> Result<Response, PageError> {
    let (jar, csrf) = csrf_token(jar, &s);
    let status = pairing::status(&s.app, &caller, &id).await.map_err(code_error)?;
    let ago = status.requester.as_ref().map(|r| ago(r.seconds_ago)).unwrap_or_default();
    let step_up = passkeys::page_needs_step_up(&s.app, &caller).await?;
    Ok((jar, PairPage { csrf, id, code: None, expires_in: status.expires_in, status, ago, step_up }).into_response())
}

/// What `/pair` polls to show who joined, live: JSON for its script, errors as problems.
async fn pair_status_json(
    State(s): State<AppState>,
    WebUser(caller): WebUser,
    Path(id): Path<String>,
) -> Result<Json<PairingStatus>, super::error::ApiError> {
    Ok(Json(pairing::status(&s.app, &caller, &id).await?))
}

/// `POST /pair/{id}/approve` or `/pair/{id}/deny`.
async fn pair_decide(
    State(s): State<AppState>,
    meta: ClientMeta,
    WebUser(caller): WebUser,
    PagePath((id, word)): PagePath<(String, String)>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, PageError> {
    let approve = decision(&word).ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, "No such page."))?;
    pairing::decide(&s.app, &caller, &id, approve, &meta).await.map_err(code_error)?;
    Ok(done(if approve {
        "Device allowed. It is now signed in to your account and listed on your account page."
    } else {
        "Device denied. It was not signed in."
    }))
}
