//! The rest of OpenID Connect: userinfo (Core §5.3), RP-initiated logout (RP-Initiated Logout
//! 1.0) and the discovery document (Discovery 1.0 §3).

use super::audit::{Audit, AuditKind};
use super::clients;
use super::code_grant::IdTokenClaims;
use super::sessions::{self, Caller};
use crate::domain::Scope;
use crate::keys::SigningAlg;
use crate::service::{App, AppError, AppResult, ClientMeta};

/// Userinfo claims (Core §5.1) for what the access token's scope allows.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct UserInfo {
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

pub async fn userinfo(app: &App, access_token: &str) -> AppResult<UserInfo> {
    let caller = sessions::caller_from_bearer(app, access_token).await?;
    let scope = Scope::parse(&caller.scope)?;
    if !scope.contains("openid") {
        return Err(AppError::Forbidden("the access token has no openid scope".into()));
    }
    let user = app.store.user_by_id(&caller.user_id).await?.ok_or(AppError::Unauthorized)?;
    let email = scope.contains("email").then_some(user.email).flatten();
    let verified = user.email_verified_at.is_some();
    Ok(UserInfo { sub: caller.user_id, email_verified: email.as_ref().map(|_| verified), email })
}

/// An RP-initiated logout request (the query or form as it came).
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize)]
pub struct EndSessionRequest {
    pub id_token_hint: Option<String>,
    pub client_id: Option<String>,
    pub post_logout_redirect_uri: Option<String>,
    pub state: Option<String>,
}

/// What to do with a logout request.
#[derive(Debug)]
pub struct EndSession {
    /// Where to send the browser afterwards, if the client registered it; `None`: our page.
    pub redirect: Option<String>,
    /// Whether the request proves who asked (a valid id_token_hint for the signed-in user), so
    /// no confirmation is needed.
    pub confirmed: bool,
}

/// Checks a logout request. Never redirects anywhere the client did not register.
pub async fn check_end_session(app: &App, req: &EndSessionRequest, caller: Option<&Caller>) -> AppResult<EndSession> {
    let now = app.now();
    let hint: Option<IdTokenClaims> = match &req.id_token_hint {
        Some(t) => Some(
            app.keys
                .verify_as(t, &SigningAlg::ALL, &app.issuer, now)
                .await
                .ok_or_else(|| AppError::BadRequest("the id_token_hint is not an id_token of this server".into()))?,
        ),
        None => None,
    };
    let client_id = match (&req.client_id, &hint) {
        (Some(c), Some(h)) if *c != h.aud => return Err(AppError::BadRequest("client_id does not match the id_token_hint".into())),
        (Some(c), _) => Some(c.clone()),
        (None, Some(h)) => Some(h.aud.clone()),
        (None, None) => None,
    };
    let redirect = match &req.post_logout_redirect_uri {
        None => None,
        Some(uri) => {
            let client = match &client_id {
                Some(id) => clients::lookup(app, id).await?,
                None => None,
            }
            .ok_or_else(|| AppError::BadRequest("post_logout_redirect_uri needs client_id or id_token_hint".into()))?;
            if !client.post_logout_uri_list().any(|u| u == uri) {
                return Err(AppError::BadRequest("post_logout_redirect_uri is not registered for this application".into()));
            }
            let mut params = Vec::new();
            if let Some(s) = &req.state {
                params.push(("state", s.as_str()));
            }
            Some(crate::domain::authorize::redirect_with(uri, &params))
        }
    };
    let confirmed = match (caller, &hint) {
        (Some(c), Some(h)) => h.sub == c.user_id,
        // Nobody signed in here: nothing to end, nothing to confirm.
        (None, _) => true,
        (Some(_), None) => false,
    };
    Ok(EndSession { redirect, confirmed })
}

/// Ends this browser's Latchkey session (apps keep their own tokens until they expire or are
/// revoked; the app asked to be signed out and ends its own).
pub async fn end_session(app: &App, caller: &Caller, client_id: Option<&str>, meta: &ClientMeta) -> AppResult<()> {
    sessions::logout(app, caller, meta).await?;
    Audit::new(AuditKind::EndSession)
        .user(&caller.user_id)
        .device(&caller.device_id)
        .meta(meta)
        .detail(serde_json::json!({ "client_id": client_id }))
        .record(app)
        .await
}

/// OpenID Connect Discovery 1.0 §3, beside the RFC 8414 document (one issuer for all clients).
pub fn discovery(app: &App) -> serde_json::Value {
    let base = &app.issuer;
    serde_json::json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/oauth/authorize"),
        "token_endpoint": format!("{base}/oauth/token"),
        "userinfo_endpoint": format!("{base}/oauth/userinfo"),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "end_session_endpoint": format!("{base}/oauth/end_session"),
        "revocation_endpoint": format!("{base}/oauth/revoke"),
        "introspection_endpoint": format!("{base}/oauth/introspect"),
        "device_authorization_endpoint": format!("{base}/oauth/device_authorization"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", crate::http::oauth::DEVICE_CODE_GRANT],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "EdDSA"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "email", "profile", "offline_access"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "sid", "azp", "at_hash", "email", "email_verified"],
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "authorization_response_iss_parameter_supported": true,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "service_documentation": format!("{base}/docs"),
    })
}
