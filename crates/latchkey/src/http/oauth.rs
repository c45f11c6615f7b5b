//! `/oauth` (RFC 6749 token endpoint, RFC 7009 revocation, RFC 7662 introspection) and the
//! `/.well-known` documents (RFC 8414 metadata, JWKS).

use super::AppState;
use super::error::{OAuthError, oauth_error};
use super::extract::OAuthForm;
use crate::service::device_grant::{self, DeviceAuthorization};
use crate::service::oidc::{self, UserInfo};
use crate::service::sessions::TokenResponse;
use crate::service::tokens::{self, ClientAuth, Introspection};
use crate::service::{AppError, ClientMeta};
use crate::service::{approvals, code_grant};
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::Deserialize;
use utoipa::IntoParams;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/oauth/device_authorization", post(device_authorization))
        .route("/oauth/token", post(token))
        .route("/oauth/revoke", post(revoke))
        .route("/oauth/introspect", post(introspect))
        .route("/oauth/userinfo", get(userinfo).post(userinfo_post))
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/openid-configuration", get(openid_configuration))
        .route("/.well-known/jwks.json", get(jwks))
}

pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

#[derive(Deserialize)]
pub struct DeviceAuthorizationForm {
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub scope: Option<String>,
}

/// RFC 8628 §3.1: a device asks for a user code to show and a device code to poll with.
#[utoipa::path(post, path = "/oauth/device_authorization", tag = "oauth",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "client_id, scope?"),
    responses((status = 200, body = DeviceAuthorization), (status = 401, description = "invalid_client"), (status = 429, description = "too many requests or pending requests")))]
pub async fn device_authorization(
    State(s): State<AppState>,
    meta: ClientMeta,
    headers: HeaderMap,
    OAuthForm(f): OAuthForm<DeviceAuthorizationForm>,
) -> Result<Json<DeviceAuthorization>, OAuthError> {
    let client = client_auth(&headers, f.client_id, f.client_secret)?;
    Ok(Json(device_grant::authorize(&s.app, &client.client_id, client.client_secret.as_deref(), f.scope.as_deref(), &meta).await?))
}

/// Client credentials from HTTP Basic (RFC 6749 §2.3.1) or the form; never both.
fn client_auth(headers: &HeaderMap, form_id: Option<String>, form_secret: Option<String>) -> Result<ClientAuth, OAuthError> {
    let basic = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic "));
    if let Some(b) = basic {
        if form_secret.is_some() {
            return Err(AppError::BadRequest("use one client authentication method".into()).into());
        }
        let raw = base64::engine::general_purpose::STANDARD.decode(b.trim()).map_err(|_| AppError::InvalidClient)?;
        let raw = String::from_utf8(raw).map_err(|_| AppError::InvalidClient)?;
        let (id, secret) = raw.split_once(':').ok_or(AppError::InvalidClient)?;
        let id = form_urlencoded_decode(id);
        if form_id.as_deref().is_some_and(|f| f != id) {
            return Err(AppError::InvalidClient.into());
        }
        return Ok(ClientAuth { client_id: id, client_secret: Some(form_urlencoded_decode(secret)) });
    }
    let client_id = form_id.ok_or_else(|| AppError::BadRequest("client_id is required".into()))?;
    Ok(ClientAuth { client_id, client_secret: form_secret })
}

/// RFC 6749 §2.3.1 form-encodes id and secret before Basic encoding.
fn form_urlencoded_decode(s: &str) -> String {
    let bytes = s.replace('+', " ");
    let mut out = Vec::with_capacity(bytes.len());
    let b = bytes.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(Ok(v)) = bytes.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16))
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Deserialize, IntoParams)]
pub struct TokenForm {
    pub grant_type: Option<String>,
    pub refresh_token: Option<String>,
    pub device_code: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub scope: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// The token endpoint. Grant `authorization_code` (with PKCE `code_verifier` and the
/// `redirect_uri` of the request): tokens and, with `openid`, an id_token, once; a second use of
/// a code revokes what the first issued. Grant `refresh_token`: rotates the refresh token;
/// presenting a superseded one revokes the whole session. Grant
/// `urn:ietf:params:oauth:grant-type:device_code`: `authorization_pending`, `slow_down`,
/// `access_denied`, `expired_token`, then tokens exactly once.
#[utoipa::path(post, path = "/oauth/token", tag = "oauth", request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "grant_type; code, redirect_uri, code_verifier or refresh_token or device_code; client_id (or HTTP Basic), scope?"),
    responses((status = 200, body = TokenResponse), (status = 400, description = "RFC 6749 error"), (status = 401, description = "invalid_client")))]
pub async fn token(
    State(s): State<AppState>,
    meta: ClientMeta,
    headers: HeaderMap,
    OAuthForm(f): OAuthForm<TokenForm>,
) -> Result<Response, OAuthError> {
    match f.grant_type.as_deref() {
        Some("authorization_code") => {
            let client = client_auth(&headers, f.client_id, f.client_secret)?;
            let code = f.code.as_deref().ok_or_else(|| AppError::BadRequest("code is required".into()))?;
            let x = code_grant::CodeExchange { code, redirect_uri: f.redirect_uri.as_deref(), code_verifier: f.code_verifier.as_deref() };
            Ok(Json(code_grant::exchange(&s.app, &client, x, &meta).await?).into_response())
        }
        Some("refresh_token") => {
            let client = client_auth(&headers, f.client_id, f.client_secret)?;
            let rt = f.refresh_token.ok_or_else(|| AppError::BadRequest("refresh_token is required".into()))?;
            let tokens = tokens::refresh(&s.app, &rt, &client, f.scope.as_deref(), &meta).await?;
            Ok(Json(tokens).into_response())
        }
        Some(DEVICE_CODE_GRANT) => {
            let client = client_auth(&headers, f.client_id, f.client_secret)?;
            let code = f.device_code.ok_or_else(|| AppError::BadRequest("device_code is required".into()))?;
            let tokens = approvals::poll(&s.app, &code, &client.client_id, client.client_secret.as_deref(), &meta).await?;
            Ok(Json(tokens).into_response())
        }
        Some(other) => {
            Ok(oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", &format!("grant_type {other:?} is not supported")))
        }
        None => Err(AppError::BadRequest("grant_type is required".into()).into()),
    }
}

#[derive(Deserialize)]
pub struct TokenOnlyForm {
    pub token: Option<String>,
    #[allow(dead_code)]
    pub token_type_hint: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// RFC 7009 revocation: ends the session behind a refresh or access token. Always 200 for a
/// well-formed request, whether or not the token was valid.
#[utoipa::path(post, path = "/oauth/revoke", tag = "oauth", request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "token, token_type_hint?, client_id"),
    responses((status = 200), (status = 400), (status = 401)))]
pub async fn revoke(
    State(s): State<AppState>,
    meta: ClientMeta,
    headers: HeaderMap,
    OAuthForm(f): OAuthForm<TokenOnlyForm>,
) -> Result<StatusCode, OAuthError> {
    let client = client_auth(&headers, f.client_id, f.client_secret)?;
    let token = f.token.ok_or_else(|| AppError::BadRequest("token is required".into()))?;
    tokens::revoke(&s.app, &token, &client, &meta).await?;
    Ok(StatusCode::OK)
}

/// RFC 7662 introspection, for confidential clients.
#[utoipa::path(post, path = "/oauth/introspect", tag = "oauth", request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "token; client authentication required"),
    responses((status = 200, body = Introspection), (status = 401, description = "invalid_client")))]
pub async fn introspect(
    State(s): State<AppState>,
    headers: HeaderMap,
    OAuthForm(f): OAuthForm<TokenOnlyForm>,
) -> Result<Json<Introspection>, OAuthError> {
    let client = client_auth(&headers, f.client_id, f.client_secret)?;
    let token = f.token.ok_or_else(|| AppError::BadRequest("token is required".into()))?;
    Ok(Json(tokens::introspect(&s.app, &token, &client).await?))
}

/// RFC 8414 authorization server metadata.
#[utoipa::path(get, path = "/.well-known/oauth-authorization-server", tag = "oauth", responses((status = 200)))]
pub async fn metadata(State(s): State<AppState>) -> Json<serde_json::Value> {
    let base = &s.app.issuer;
    Json(serde_json::json!({
        "issuer": base,
        "token_endpoint": format!("{base}/oauth/token"),
        "revocation_endpoint": format!("{base}/oauth/revoke"),
        "introspection_endpoint": format!("{base}/oauth/introspect"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "device_authorization_endpoint": format!("{base}/oauth/device_authorization"),
        "authorization_endpoint": format!("{base}/oauth/authorize"),
        "userinfo_endpoint": format!("{base}/oauth/userinfo"),
        "end_session_endpoint": format!("{base}/oauth/end_session"),
        "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_CODE_GRANT],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": true,
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": [s.app.settings.tokens.default_scope],
        "service_documentation": format!("{base}/docs"),
    }))
}

/// OpenID Connect Discovery 1.0: the same issuer as RFC 8414's document, for relying parties.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "oidc", responses((status = 200)))]
pub async fn openid_configuration(State(s): State<AppState>) -> Response {
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(oidc::discovery(&s.app))).into_response()
}

/// OpenID Connect userinfo (GET or POST, bearer access token with the `openid` scope): `sub`,
/// and with `email` the address and `email_verified`.
#[utoipa::path(get, path = "/oauth/userinfo", tag = "oidc", security(("bearer" = [])),
    responses((status = 200, body = UserInfo), (status = 401, description = "invalid_token"), (status = 403, description = "insufficient_scope")))]
pub async fn userinfo(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let challenge = |status: StatusCode, error: &str, text: &str| {
        let value = format!("Bearer error=\"{error}\", error_description=\"{text}\"");
        (status, [(header::WWW_AUTHENTICATE, value)], Json(serde_json::json!({ "error": error, "error_description": text })))
            .into_response()
    };
    let Some(token) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")) else {
        return challenge(StatusCode::UNAUTHORIZED, "invalid_token", "a bearer access token is required");
    };
    match oidc::userinfo(&s.app, token.trim()).await {
        Ok(info) => Json(info).into_response(),
        Err(AppError::Unauthorized) => challenge(StatusCode::UNAUTHORIZED, "invalid_token", "the access token is invalid or expired"),
        Err(AppError::Forbidden(_)) => challenge(StatusCode::FORBIDDEN, "insufficient_scope", "the access token has no openid scope"),
        Err(e) => OAuthError::from(e).into_response(),
    }
}

/// Userinfo as a POST (OpenID Connect Core §5.3.1 allows both): as GET.
#[utoipa::path(post, path = "/oauth/userinfo", tag = "oidc", security(("bearer" = [])),
    responses((status = 200, body = UserInfo), (status = 401, description = "invalid_token"), (status = 403, description = "insufficient_scope")))]
pub async fn userinfo_post(s: State<AppState>, headers: HeaderMap) -> Response {
    userinfo(s, headers).await
}

/// The public keys that verify access tokens (EdDSA / Ed25519) and id_tokens (RS256 or EdDSA), by `kid`.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "oauth", responses((status = 200)))]
pub async fn jwks(State(s): State<AppState>) -> Result<Response, OAuthError> {
    let set = s.app.keys.jwks(s.app.now()).await?;
    Ok(([(header::CACHE_CONTROL, "public, max-age=60")], Json(set)).into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_percent_and_plus() {
        assert_eq!(super::form_urlencoded_decode("a%3Ab+c"), "a:b c");
        assert_eq!(super::form_urlencoded_decode("%zz%4"), "%zz%4");
    }
}
