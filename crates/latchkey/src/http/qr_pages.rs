//! QR login for people: the `/login` page's QR (driven by `static/login-qr.js`) and the phone's
//! page `/q/{id}`. The browser's secret lives only in an HttpOnly cookie.

use super::AppState;
use super::pages::{WebUser, cookie, cookie_names, csrf_ok, csrf_refused, csrf_token, message, safe_next};
use crate::service::qr::{self, PhoneView};
use crate::service::{AppError, ClientMeta};
use askama::Template;
use askama_web::WebTemplate;
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::{Cookie, CookieJar};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login/qr", post(start))
        .route("/login/qr/handoff", post(handoff))
        .route("/q/{id}", get(phone_page))
        .route("/q/{id}/{decision}", post(phone_decide))
        .route("/static/login-qr.js", get(script))
}

fn header_csrf(headers: &HeaderMap) -> &str {
    headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The page's script starts a QR login: the secret goes into an HttpOnly cookie, never to script.
async fn start(State(s): State<AppState>, meta: ClientMeta, jar: CookieJar, headers: HeaderMap) -> Response {
    if !csrf_ok(&jar, &headers, &s, header_csrf(&headers)) {
        return csrf_refused();
    }
    match qr::create(&s.app, &meta).await {
        Ok(q) => {
            let jar = jar.add(cookie(cookie_names(s.app.secure_cookies).qr, q.secret, s.app.secure_cookies, q.expires_in as i64 + 60));
            let body =
                serde_json::json!({ "id": q.id, "url": q.url, "qr_svg": q.qr_svg, "match_code": q.match_code, "expires_in": q.expires_in });
            (jar, Json(body)).into_response()
        }
        Err(e) => super::error::ApiError(e).into_response(),
    }
}

#[derive(Deserialize)]
struct HandoffBody {
    handoff_code: String,
    next: Option<String>,
}

/// The script hands the code from the socket back; the secret comes from the cookie.
async fn handoff(State(s): State<AppState>, meta: ClientMeta, jar: CookieJar, headers: HeaderMap, Json(b): Json<HandoffBody>) -> Response {
    if !csrf_ok(&jar, &headers, &s, header_csrf(&headers)) {
        return csrf_refused();
    }
    let names = cookie_names(s.app.secure_cookies);
    let secret = jar.get(names.qr).map(|c| c.value().to_owned()).unwrap_or_default();
    match qr::handoff(&s.app, &b.handoff_code, &secret, true, &meta).await {
        Ok(opened) => {
            let max_age = opened.session.expires_at - opened.session.created_at;
            let jar = jar
                .add(cookie(names.session, opened.web_token.unwrap_or_default(), s.app.secure_cookies, max_age))
                .remove(Cookie::build(names.qr).path("/"));
            (jar, Json(serde_json::json!({ "redirect": safe_next(b.next.as_deref()) }))).into_response()
        }
        Err(e) => super::error::ApiError(e).into_response(),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "qr_phone.html")]
struct PhonePage {
    csrf: String,
    view: PhoneView,
    ago: String,
}

async fn phone_page(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    WebUser(caller): WebUser,
    Path(id): Path<String>,
) -> Response {
    match qr::scan(&s.app, &caller, &id, &meta).await {
        Ok(view) => {
            let (jar, csrf) = csrf_token(jar, &s);
            let ago = super::device_pages::ago(view.requester.seconds_ago);
            (jar, PhonePage { csrf, view, ago }).into_response()
        }
        Err(AppError::NotFound) => {
            message(StatusCode::NOT_FOUND, "This sign-in request has expired, was already answered, or was opened on another device.")
        }
        Err(e) => super::error::ApiError(e).into_response(),
    }
}

#[derive(Deserialize)]
struct DecideForm {
    csrf: String,
    match_code: Option<String>,
}

async fn phone_decide(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    headers: HeaderMap,
    WebUser(caller): WebUser,
    Path((id, decision)): Path<(String, String)>,
    axum::Form(f): axum::Form<DecideForm>,
) -> Response {
    if !csrf_ok(&jar, &headers, &s, &f.csrf) {
        return csrf_refused();
    }
    let approve = match decision.as_str() {
        "approve" => true,
        "deny" => false,
        _ => return message(StatusCode::NOT_FOUND, "No such page."),
    };
    match qr::decide(&s.app, &caller, &id, approve, f.match_code.as_deref(), &meta).await {
        Ok(()) if approve => message(StatusCode::OK, "Approved. The browser is signing in now."),
        Ok(()) => message(StatusCode::OK, "Denied. The browser was not signed in."),
        Err(AppError::BadRequest(text)) => message(StatusCode::BAD_REQUEST, &text),
        Err(AppError::NotFound) => message(StatusCode::NOT_FOUND, "This sign-in request has expired or was already answered."),
        Err(e) => super::error::ApiError(e).into_response(),
    }
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../static/login-qr.js"),
    )
        .into_response()
}
