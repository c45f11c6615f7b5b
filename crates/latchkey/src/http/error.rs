//! One mapping from `AppError` to responses: RFC 9457 problem details on `/api` and the
//! router's fallbacks, RFC 6749 §5.2 errors on `/oauth` (pages use `web::PageError`, which
//! takes its status from here). 5xx log their cause and never echo it.

use crate::service::AppError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

pub(super) fn status(e: &AppError) -> StatusCode {
    match e {
        AppError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        AppError::BadRequest(_) | AppError::InvalidGrant(_) | AppError::InvalidScope(_) => StatusCode::BAD_REQUEST,
        AppError::InvalidCredentials | AppError::Unauthorized | AppError::InvalidClient => StatusCode::UNAUTHORIZED,
        AppError::Forbidden(_) => StatusCode::FORBIDDEN,
        AppError::NotFound => StatusCode::NOT_FOUND,
        AppError::Conflict(_) => StatusCode::CONFLICT,
        AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        AppError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        AppError::UpstreamUnavailable(_) => StatusCode::BAD_GATEWAY,
        AppError::DeviceGrant(_) => StatusCode::BAD_REQUEST,
        AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

pub(super) fn detail(e: &AppError) -> String {
    match e {
        AppError::Internal(err) => {
            tracing::error!(error = ?err, "internal error");
            "something went wrong on the server".into()
        }
        other => other.to_string(),
    }
}

/// When to ask again, for the errors that have an answer to that.
pub(super) fn retry_after(e: &AppError) -> Option<u64> {
    match e {
        AppError::RateLimited { retry_after } => Some(*retry_after),
        AppError::Overloaded => Some(1),
        _ => None,
    }
}

pub(super) fn set_retry_after(resp: &mut Response, secs: Option<u64>) {
    if let Some(s) = secs
        && let Ok(v) = HeaderValue::from_str(&s.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
}

/// An `/api` error: `application/problem+json`.
#[derive(Debug)]
pub struct ApiError(pub AppError);

impl<E: Into<AppError>> From<E> for ApiError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = status(&e);
        let mut body = json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("Error"),
            "status": status.as_u16(),
            "detail": detail(&e),
        });
        if let AppError::Invalid(p) = &e {
            body["errors"] = json!([{ "field": p.field, "message": p.message }]);
        }
        let mut resp = (status, [(header::CONTENT_TYPE, "application/problem+json")], body.to_string()).into_response();
        set_retry_after(&mut resp, retry_after(&e));
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// An `/oauth` error: `{"error": …, "error_description": …}`.
#[derive(Debug)]
pub struct OAuthError(pub AppError);

impl<E: Into<AppError>> From<E> for OAuthError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let e = self.0;
        let (status, code) = match &e {
            AppError::InvalidGrant(_) => (StatusCode::BAD_REQUEST, "invalid_grant"),
            AppError::InvalidClient => (StatusCode::UNAUTHORIZED, "invalid_client"),
            AppError::InvalidScope(_) => (StatusCode::BAD_REQUEST, "invalid_scope"),
            AppError::Invalid(_) | AppError::BadRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            AppError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "temporarily_unavailable"),
            AppError::Overloaded | AppError::UpstreamUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable"),
            AppError::Forbidden(_) | AppError::Unauthorized | AppError::InvalidCredentials => {
                (StatusCode::BAD_REQUEST, "unauthorized_client")
            }
            AppError::NotFound | AppError::Conflict(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            AppError::DeviceGrant(code) => (StatusCode::BAD_REQUEST, *code),
            AppError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        };
        let description = match &e {
            AppError::DeviceGrant("authorization_pending") => {
                "the user has not approved this device yet; poll again after the interval".to_owned()
            }
            AppError::DeviceGrant("slow_down") => "polled too soon: wait the interval plus 5 more seconds from now on".to_owned(),
            AppError::DeviceGrant("access_denied") => "the request was denied".to_owned(),
            AppError::DeviceGrant("expired_token") => "the device code expired; start again".to_owned(),
            other => detail(other),
        };
        let body = json!({ "error": code, "error_description": description });
        let mut resp = (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
        set_retry_after(&mut resp, retry_after(&e));
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"latchkey\""));
        }
        resp
    }
}

/// An OAuth error code the service layer has no variant for (`unsupported_grant_type`).
pub fn oauth_error(status: StatusCode, code: &str, description: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], json!({ "error": code, "error_description": description }).to_string())
        .into_response()
}

/// A problem response for the router's own fallbacks (404, 405, 413, timeouts).
pub fn problem(status: StatusCode, detail: &str) -> Response {
    let body = json!({ "type": "about:blank", "title": status.canonical_reason().unwrap_or("Error"), "status": status.as_u16(), "detail": detail });
    (status, [(header::CONTENT_TYPE, "application/problem+json")], body.to_string()).into_response()
}
