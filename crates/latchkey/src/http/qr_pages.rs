//! QR login for people: the `/login` page's QR (driven by `static/login-qr.js`) and the phone's
//! page `/q/{id}`. The browser's secret lives only in an HttpOnly cookie.

use super::AppState;
use super::error::ApiError;
use super::web::{
    CsrfForm, CsrfHeader, PageError, PagePath, WebUser, asset, cookie, csrf_token, decision, done, forget, qr_cookie, safe_next, signed_in,
};
use crate::service::qr::{self, PhoneView};
use crate::service::{AppError, ClientMeta};
use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login/qr", post(start))
        .route("/login/qr/handoff", post(handoff))
        .route("/q/{id}", get(phone_page))
        .route("/q/{id}/{decision}", post(phone_decide))
        .route("/static/login-qr.js", get(|| async { asset("text/javascript; charset=utf-8", include_str!("../../static/login-qr.js")) }))
}

/// The page's script starts a QR login: the secret goes into an HttpOnly cookie, never to script.
/// JSON for the script; only a refused CSRF token is a page.
async fn start(State(s): State<AppState>, meta: ClientMeta, jar: CookieJar, _: CsrfHeader) -> Result<Response, ApiError> {
    let q = qr::create(&s.app, &meta).await?;
    let jar = jar.add(cookie(qr_cookie(s.app.secure_cookies, &q.id), q.secret, s.app.secure_cookies, q.expires_in as i64 + 60));
    let body = serde_json::json!({ "id": q.id, "url": q.url, "qr_svg": q.qr_svg, "match_code": q.match_code, "expires_in": q.expires_in });
    Ok((jar, Json(body)).into_response())
}

#[derive(Deserialize)]
struct HandoffBody {
    /// The QR login's id: its secret is in that login's own cookie.
    id: String,
    handoff_code: String,
    next: Option<String>,
}

/// The script hands the code from the socket back; the secret comes from the cookie.
async fn handoff(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    _: CsrfHeader,
    Json(b): Json<HandoffBody>,
) -> Result<Response, ApiError> {
    let name = qr_cookie(s.app.secure_cookies, &b.id);
    let secret = jar.get(&name).map(|c| c.value().to_owned()).unwrap_or_default();
    let opened = qr::handoff(&s.app, &b.handoff_code, &secret, true, &meta).await?;
    let jar = forget(signed_in(jar, &s, &opened, None), name);
    Ok((jar, Json(serde_json::json!({ "redirect": safe_next(b.next.as_deref()) }))).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "qr_phone.html")]
struct PhonePage {
    csrf: String,
    view: PhoneView,
    ago: String,
    /// Approve first asks for a passkey (step-up).
    step_up: bool,
}

async fn phone_page(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    WebUser(caller): WebUser,
    PagePath(id): PagePath<String>,
) -> Result<Response, PageError> {
    let view = qr::scan(&s.app, &caller, &id, &meta).await.map_err(|e| match e {
        AppError::NotFound => PageError::new(
            StatusCode::NOT_FOUND,
            "This sign-in request has expired, was already answered, or was opened on another device.",
        ),
        other => other.into(),
    })?;
    let (jar, csrf) = csrf_token(jar, &s);
    let ago = super::device_pages::ago(view.requester.seconds_ago);
    let step_up = crate::service::passkeys::page_needs_step_up(&s.app, &caller).await?;
    Ok((jar, PhonePage { csrf, view, ago, step_up }).into_response())
}

#[derive(Deserialize)]
struct DecideForm {
    match_code: Option<String>,
}

async fn phone_decide(
    State(s): State<AppState>,
    meta: ClientMeta,
    WebUser(caller): WebUser,
    PagePath((id, word)): PagePath<(String, String)>,
    CsrfForm(f): CsrfForm<DecideForm>,
) -> Result<Response, PageError> {
    let approve = decision(&word).ok_or_else(|| PageError::new(StatusCode::NOT_FOUND, "No such page."))?;
    qr::decide(&s.app, &caller, &id, approve, f.match_code.as_deref(), &meta).await.map_err(|e| match e {
        AppError::BadRequest(text) => PageError::new(StatusCode::BAD_REQUEST, text),
        AppError::NotFound => PageError::new(StatusCode::NOT_FOUND, "This sign-in request has expired or was already answered."),
        other => other.into(),
    })?;
    Ok(done(if approve { "Approved. The browser is signing in now." } else { "Denied. The browser was not signed in." }))
}
