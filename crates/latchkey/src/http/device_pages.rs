//! Pages for bringing in a new device: `/device` (approve a device-grant code) and `/pair`
//! (show a pairing code, then allow or deny who joined). POST only for every decision, CSRF
//! checked, and the code from `verification_uri_complete` only ever fills the form in.

use super::AppState;
use super::pages::{WebUser, csrf_ok, csrf_refused, csrf_token, message};
use crate::service::approvals::RequesterFacts;
use crate::service::device_grant;
use crate::service::pairing::{self, PairingStatus};
use crate::service::{AppError, ClientMeta};
use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
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
        .route("/static/pair.js", get(pair_js))
}

/// Maps a service error to a page: the user sees words, never JSON.
fn error_page(e: AppError) -> Response {
    match e {
        AppError::RateLimited { retry_after } => {
            message(StatusCode::TOO_MANY_REQUESTS, &format!("Too many wrong codes. Wait {retry_after} seconds before trying again."))
        }
        AppError::BadRequest(text) | AppError::Conflict(text) => message(StatusCode::BAD_REQUEST, &text),
        AppError::Invalid(p) => message(StatusCode::BAD_REQUEST, &p.message),
        AppError::NotFound => message(StatusCode::NOT_FOUND, "There is no such pairing code on this device."),
        other => super::error::ApiError(other).into_response(),
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

async fn device_form(State(s): State<AppState>, jar: CookieJar, _user: WebUser, Query(q): Query<CodeQuery>) -> Response {
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
}

#[derive(Deserialize)]
struct CodeForm {
    user_code: String,
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
    jar: CookieJar,
    headers: HeaderMap,
    WebUser(caller): WebUser,
    axum::Form(f): axum::Form<CodeForm>,
) -> Response {
    if !csrf_ok(&jar, &headers, &s, &f.csrf) {
        return csrf_refused();
    }
    match device_grant::lookup(&s.app, &caller, &f.user_code, &meta).await {
        Ok((_, facts)) => {
            let ago = ago(facts.seconds_ago);
            DeviceConfirm { csrf: f.csrf, user_code: f.user_code, facts, ago }.into_response()
        }
        Err(e) => error_page(e),
    }
}

#[derive(Deserialize)]
struct DecisionForm {
    user_code: String,
    csrf: String,
    decision: String,
    device_name: Option<String>,
}

async fn device_decision(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    headers: HeaderMap,
    WebUser(caller): WebUser,
    axum::Form(f): axum::Form<DecisionForm>,
) -> Response {
    if !csrf_ok(&jar, &headers, &s, &f.csrf) {
        return csrf_refused();
    }
    let approve = match f.decision.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return message(StatusCode::BAD_REQUEST, "Choose Approve or Deny."),
    };
    let name = f.device_name.as_deref().map(str::trim).filter(|n| !n.is_empty());
    match device_grant::decide(&s.app, &caller, &f.user_code, approve, name, &meta).await {
        Ok(_) if approve => message(StatusCode::OK, "Device approved. It will be signed in within a few seconds; you can close this page."),
        Ok(_) => message(StatusCode::OK, "Request denied. The device was not signed in."),
        Err(e) => error_page(e),
    }
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
}

#[derive(Deserialize)]
struct CsrfOnly {
    csrf: String,
}

async fn pair_create(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    headers: HeaderMap,
    WebUser(caller): WebUser,
    axum::Form(f): axum::Form<CsrfOnly>,
) -> Response {
    if !csrf_ok(&jar, &headers, &s, &f.csrf) {
        return csrf_refused();
    }
    let created = match pairing::create(&s.app, &caller, None, &meta).await {
        Ok(c) => c,
        Err(e) => return error_page(e),
    };
    match pairing::status(&s.app, &caller, &created.id).await {
        Ok(status) => {
            PairPage { csrf: f.csrf, id: created.id, code: Some(created.code), expires_in: status.expires_in, ago: String::new(), status }
                .into_response()
        }
        Err(e) => error_page(e),
    }
}

async fn pair_view(State(s): State<AppState>, jar: CookieJar, WebUser(caller): WebUser, Path(id): Path<String>) -> Response {
    let (jar, csrf) = csrf_token(jar, &s);
    match pairing::status(&s.app, &caller, &id).await {
        Ok(status) => {
            let ago = status.requester.as_ref().map(|r| ago(r.seconds_ago)).unwrap_or_default();
            (jar, PairPage { csrf, id, code: None, expires_in: status.expires_in, status, ago }).into_response()
        }
        Err(e) => error_page(e),
    }
}

/// What `/pair` polls to show who joined, live.
async fn pair_status_json(State(s): State<AppState>, WebUser(caller): WebUser, Path(id): Path<String>) -> Response {
    match pairing::status(&s.app, &caller, &id).await {
        Ok(status) => Json(status).into_response(),
        Err(e) => super::error::ApiError(e).into_response(),
    }
}

/// `POST /pair/{id}/approve` or `/pair/{id}/deny`.
async fn pair_decide(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    headers: HeaderMap,
    WebUser(caller): WebUser,
    Path((id, decision)): Path<(String, String)>,
    axum::Form(f): axum::Form<CsrfOnly>,
) -> Response {
    if !csrf_ok(&jar, &headers, &s, &f.csrf) {
        return csrf_refused();
    }
    let approve = match decision.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return message(StatusCode::NOT_FOUND, "No such page."),
    };
    match pairing::decide(&s.app, &caller, &id, approve, &meta).await {
        Ok(_) if approve => message(StatusCode::OK, "Device allowed. It is now signed in to your account and listed on your account page."),
        Ok(_) => message(StatusCode::OK, "Device denied. It was not signed in."),
        Err(e) => error_page(e),
    }
}

async fn pair_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../static/pair.js"),
    )
        .into_response()
}
