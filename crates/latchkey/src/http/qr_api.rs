//! QR login over HTTP and WebSocket: `/api/v1/qr-logins`, its events socket, and the handoff.

use super::AppState;
use super::api::tokens_of;
use super::error::ApiError;
use super::extract::{ApiJson, AuthUser};
use crate::service::qr::{self, BrowserState, PhoneView, QrLogin};
use crate::service::sessions::{Signed, TokenResponse};
use crate::service::{AppError, ClientMeta};
use axum::Json;
use axum::Router;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;
use std::time::Duration;
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/qr-logins", post(create))
        .route("/api/v1/qr-logins/{id}", get(scan))
        .route("/api/v1/qr-logins/{id}/status", get(status))
        .route("/api/v1/qr-logins/{id}/events", get(events))
        .route("/api/v1/qr-logins/{id}/approve", post(approve))
        .route("/api/v1/qr-logins/{id}/deny", post(deny))
        .route("/api/v1/handoff", post(handoff))
}

/// Start a QR login (no authentication). Keep `secret` private: it is not in the QR.
#[utoipa::path(post, path = "/api/v1/qr-logins", tag = "qr login", responses((status = 201, body = QrLogin), (status = 429)))]
pub async fn create(State(s): State<AppState>, meta: ClientMeta) -> Result<(StatusCode, Json<QrLogin>), ApiError> {
    Ok((StatusCode::CREATED, Json(qr::create(&s.app, &meta).await?)))
}

/// The state for clients without WebSocket; the secret goes in `X-QR-Secret`.
#[utoipa::path(get, path = "/api/v1/qr-logins/{id}/status", tag = "qr login", params(("id" = String, Path), ("X-QR-Secret" = String, Header)),
    responses((status = 200, body = BrowserState), (status = 404, description = "no such login, or not its secret")))]
pub async fn status(State(s): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Result<Json<BrowserState>, ApiError> {
    let secret = headers.get("x-qr-secret").and_then(|v| v.to_str().ok()).ok_or(AppError::NotFound)?;
    let a = qr::own(&s.app, &id, secret).await?;
    Ok(Json(qr::browser_state(&s.app, &a).await?))
}

/// The phone opens the QR: marks it scanned (the first scanner locks it) and answers what the
/// server observed of the browser, and three numbers to pick from.
#[utoipa::path(get, path = "/api/v1/qr-logins/{id}", tag = "qr login", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = PhoneView), (status = 404, description = "no such live login, or scanned by another device")))]
pub async fn scan(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<PhoneView>, ApiError> {
    Ok(Json(qr::scan(&s.app, &caller, &id, &meta).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveQr {
    /// The number the browser shows. A wrong one denies the login.
    pub match_code: String,
}

/// Approve the scanned login with the browser's number.
#[utoipa::path(post, path = "/api/v1/qr-logins/{id}/approve", tag = "qr login", security(("bearer" = [])), params(("id" = String, Path)), request_body = ApproveQr,
    responses((status = 204), (status = 400, description = "wrong number: the login is denied"), (status = 404)))]
pub async fn approve(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ApproveQr>,
) -> Result<StatusCode, ApiError> {
    qr::decide(&s.app, &caller, &id, true, Some(&req.match_code), &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deny the scanned login.
#[utoipa::path(post, path = "/api/v1/qr-logins/{id}/deny", tag = "qr login", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 204), (status = 404)))]
pub async fn deny(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    qr::decide(&s.app, &caller, &id, false, None, &meta).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffRequest {
    pub handoff_code: String,
    pub secret: String,
}

/// Exchange the handoff code (from the socket, with the browser's secret) for this browser's
/// own tokens, once. A second exchange revokes the session the first one made.
#[utoipa::path(post, path = "/api/v1/handoff", tag = "qr login", request_body = HandoffRequest,
    responses((status = 200, body = TokenResponse), (status = 400, description = "invalid, expired or used")))]
pub async fn handoff(
    State(s): State<AppState>,
    meta: ClientMeta,
    ApiJson(req): ApiJson<HandoffRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let opened = qr::handoff(&s.app, &req.handoff_code, &req.secret, false, &meta).await?;
    Ok(Json(tokens_of(Signed { opened, trust_token: None })?))
}

/// Largest message or frame a browser may send; it only ever sends its secret.
const MAX_MESSAGE: usize = 4 * 1024;
const PING_EVERY: Duration = Duration::from_secs(20);
const SECRET_WAIT: Duration = Duration::from_secs(5);

/// WebSocket: the browser waits here. The secret comes from the cookie or as the first message
/// `{"secret": "…"}` within 5 s. A foreign Origin is refused before the upgrade.
pub async fn events(
    ws: WebSocketUpgrade,
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && origin != s.app.issuer
    {
        return super::error::problem(StatusCode::FORBIDDEN, "this origin may not open the socket");
    }
    let cookie_secret = jar.get(&super::web::qr_cookie(s.app.secure_cookies, &id)).map(|c| c.value().to_owned());
    // Tens of thousands of browsers may wait at once, and tungstenite's default buffers are
    // 128 KiB each way; our messages are a few hundred bytes, so small buffers suffice, and a
    // write goes out at once.
    ws.max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .read_buffer_size(MAX_MESSAGE)
        .write_buffer_size(0)
        .on_upgrade(move |socket| serve_socket(socket, s, id, cookie_secret))
        .into_response()
}

pub(super) fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame { code, reason: Utf8Bytes::from_static(reason) }))
}

/// At a ping tick: closes a socket whose browser went quiet for longer than `idle`, else pings
/// it. False when the socket is done.
pub(super) async fn keep_alive(socket: &mut WebSocket, last_heard: tokio::time::Instant, idle: Duration) -> bool {
    if last_heard.elapsed() > idle {
        let _ = socket.send(close(1001, "idle")).await;
        return false;
    }
    socket.send(Message::Ping(Default::default())).await.is_ok()
}

async fn read_secret(socket: &mut WebSocket) -> Option<String> {
    let first = tokio::time::timeout(SECRET_WAIT, socket.recv()).await.ok()??.ok()?;
    let Message::Text(text) = first else { return None };
    let v: serde_json::Value = serde_json::from_str(text.as_str()).ok()?;
    v.get("secret")?.as_str().map(str::to_owned)
}

async fn serve_socket(mut socket: WebSocket, s: AppState, id: String, cookie_secret: Option<String>) {
    let secret = match cookie_secret {
        Some(c) => Some(c),
        None => read_secret(&mut socket).await,
    };
    // Watch before reading the state, so no change between the two is missed.
    let watch = qr::watch(&s.app, &id);
    let approval = match secret {
        Some(secret) => qr::own(&s.app, &id, &secret).await.ok(),
        None => None,
    };
    let Some(approval) = approval else {
        // Without the right secret nothing is ever delivered.
        let _ = socket.send(close(1008, "not allowed")).await;
        return;
    };
    let idle = Duration::from_secs(s.app.settings.qr.socket_idle_secs);
    let lifetime = Duration::from_secs((approval.expires_at - s.app.now()).max(0) as u64 + 2);
    let expiry = tokio::time::sleep(lifetime);
    tokio::pin!(expiry);
    let mut last_heard = tokio::time::Instant::now();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut last_sent: Option<BrowserState> = None;
    let mut check_now = true;
    loop {
        if check_now {
            check_now = false;
            let Ok(state) = qr::current(&s.app, &id, &watch).await else {
                let _ = socket.send(close(1011, "server error")).await;
                return;
            };
            if last_sent.as_ref().map(|l| l.kind) != Some(state.kind) {
                let text = serde_json::to_string(&state).unwrap_or_default();
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
                let done = state.is_final();
                last_sent = Some(state);
                if done {
                    let _ = socket.send(close(1000, "done")).await;
                    return;
                }
            }
        }
        tokio::select! {
            () = watch.changed() => check_now = true,
            () = &mut expiry => {
                let expired = BrowserState { kind: "expired", device: None, handoff_code: None, expires_in: None };
                let _ = socket.send(Message::Text(serde_json::to_string(&expired).unwrap_or_default().into())).await;
                let _ = socket.send(close(1000, "expired")).await;
                return;
            }
            _ = ping.tick() => {
                // Also look at the store: an event lost between instances costs at most one ping period.
                check_now = true;
                if !keep_alive(&mut socket, last_heard, idle).await {
                    return;
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => last_heard = tokio::time::Instant::now(),
            },
        }
    }
}
