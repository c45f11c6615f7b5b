//! Extractors: every input from outside is parsed here, at the edge, with a clear 4xx.

use super::AppState;
use super::error::{ApiError, OAuthError};
use crate::service::sessions::{self, Caller};
use crate::service::{AppError, ClientMeta};
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};

impl FromRequestParts<AppState> for ClientMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let ip =
            client_ip(peer, parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()), &state.app.settings.server.trusted_proxies);
        let user_agent =
            parts.headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|s| s.chars().take(512).collect()).unwrap_or_default();
        Ok(ClientMeta { ip: ip.map(|i| i.to_string()).unwrap_or_else(|| "unknown".into()), user_agent })
    }
}

/// The client's address: the peer, unless the peer is a trusted proxy, in which case the
/// right-most address in `X-Forwarded-For` that is not itself a trusted proxy.
fn client_ip(peer: Option<IpAddr>, xff: Option<&str>, trusted: &[IpAddr]) -> Option<IpAddr> {
    // `[::]` listeners see IPv4 clients as ::ffff:a.b.c.d; compare them as plain IPv4.
    let peer = peer?.to_canonical();
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let Some(xff) = xff else { return Some(peer) };
    let mut last = peer;
    for hop in xff.rsplit(',').map(str::trim) {
        match hop.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
            Ok(ip) if trusted.contains(&ip) => last = ip,
            Ok(ip) => return Some(ip),
            Err(_) => break,
        }
    }
    Some(last)
}

/// The caller of an `/api` endpoint, from `Authorization: Bearer <access token>`.
pub struct AuthUser(pub Caller);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .ok_or(AppError::Unauthorized)?;
        Ok(Self(sessions::account_caller_from_bearer(&state.app, token.trim()).await?))
    }
}

/// JSON body whose every rejection is a problem response with the right status:
/// 415 wrong content type, 400 malformed JSON, 422 wrong shape, 413 too large.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequest<AppState> for ApiJson<T> {
    type Rejection = axum::response::Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rej) => Err(json_rejection(rej)),
        }
    }
}

fn json_rejection(rej: JsonRejection) -> axum::response::Response {
    super::error::problem(rej.status(), &rej.body_text())
}

/// A form body for `/oauth` endpoints; rejections are RFC 6749 `invalid_request`.
pub struct OAuthForm<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequest<AppState> for OAuthForm<T> {
    type Rejection = OAuthError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(Self(v)),
            Err(rej) => Err(OAuthError(AppError::BadRequest(form_message(&rej)))),
        }
    }
}

fn form_message(rej: &FormRejection) -> String {
    match rej {
        FormRejection::InvalidFormContentType(_) => "the body must be application/x-www-form-urlencoded".into(),
        other => other.body_text(),
    }
}

#[cfg(test)]
mod tests {
    use super::client_ip;

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let proxy: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        let client = "203.0.113.9".parse().unwrap();
        assert_eq!(client_ip(Some(client), Some("1.2.3.4"), &[proxy]), Some(client), "untrusted peer's header ignored");
        assert_eq!(client_ip(Some(proxy), Some("1.2.3.4, 203.0.113.9"), &[proxy]), Some(client));
        assert_eq!(client_ip(Some(proxy), None, &[proxy]), Some(proxy));
    }
}
