//! `/session/live`: the WebSocket every signed-in page opens (`static/live.js`), so that the page
//! learns at once when its device is revoked or its session ends (from another device, a "This
//! wasn't me" link, an operator), instead of failing on its next form. The socket watches the
//! device's `DeviceRevoked` event and looks at the store on every wake-up and ping.

use super::AppState;
use super::qr_api::{close, keep_alive};
use super::web::MaybeWebUser;
use crate::service::sessions::{self, Caller};
use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::time::Duration;

pub fn router() -> Router<AppState> {
    Router::new().route("/session/live", get(live)).route(
        "/static/live.js",
        get(|| async { super::web::asset("text/javascript; charset=utf-8", include_str!("../../static/live.js")) }),
    )
}

/// The page never sends anything but pongs.
const MAX_MESSAGE: usize = 1024;
const PING_EVERY: Duration = Duration::from_secs(20);
/// A browser that stopped answering pings for this long is gone.
const IDLE: Duration = Duration::from_secs(70);
/// The close code a page reads as "this device is signed out" (4000–4999: the application's).
pub const SIGNED_OUT: u16 = 4001;

/// A foreign Origin is refused before the upgrade. A browser that is not signed in (any more)
/// is upgraded and told at once: a page cannot read the status of a refused upgrade.
async fn live(ws: WebSocketUpgrade, State(s): State<AppState>, headers: HeaderMap, MaybeWebUser(caller): MaybeWebUser) -> Response {
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && origin != s.app.issuer
    {
        return super::error::problem(StatusCode::FORBIDDEN, "this origin may not open the socket");
    }
    ws.max_message_size(MAX_MESSAGE)
        .max_frame_size(MAX_MESSAGE)
        .read_buffer_size(MAX_MESSAGE)
        .write_buffer_size(0)
        .on_upgrade(move |socket| serve(socket, s, caller))
        .into_response()
}

async fn signed_out(mut socket: WebSocket) {
    let _ = socket.send(Message::Text(Utf8Bytes::from_static(r#"{"state":"signed_out"}"#))).await;
    let _ = socket.send(close(SIGNED_OUT, "signed out")).await;
}

async fn serve(mut socket: WebSocket, s: AppState, caller: Option<Caller>) {
    let Some(caller) = caller else { return signed_out(socket).await };
    // Watch before the first look at the store, so a revocation between the two is not missed.
    let watch = s.app.events.watch_device(&caller.device_id);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut last_heard = tokio::time::Instant::now();
    let mut look = true;
    loop {
        if look {
            look = false;
            match sessions::still_signed_in(&s.app, &caller.session_id).await {
                Ok(true) => {}
                Ok(false) => return signed_out(socket).await,
                Err(_) => {
                    let _ = socket.send(close(1011, "server error")).await;
                    return;
                }
            }
        }
        tokio::select! {
            () = watch.changed() => look = true,
            _ = ping.tick() => {
                // Sessions also end without an event (signed out everywhere, a password reset,
                // another instance's lost event): a look each ping catches those.
                look = true;
                if !keep_alive(&mut socket, last_heard, IDLE).await {
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
