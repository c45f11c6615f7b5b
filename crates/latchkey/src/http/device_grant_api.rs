//! `/api/v1/device-grants`: approving or denying a device-grant request (RFC 8628) from an app
//! that is signed in, by the user code the new device shows.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, AuthUser};
use crate::service::ClientMeta;
use crate::service::approvals::RequesterFacts;
use crate::service::device_grant;
use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde::Deserialize;
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/device-grants/approve", post(approve_user_code)).route("/api/v1/device-grants/deny", post(deny_user_code))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApproveUserCode {
    /// As shown on the device: case, spaces and dashes do not matter.
    pub user_code: String,
    /// A name for the new device; it keeps its own otherwise.
    pub device_name: Option<String>,
    /// "I started this on a device in front of me": required (`true`) when the device asking is
    /// on another network than this caller (the answer's `same_network` is false); 400 otherwise.
    #[serde(default)]
    pub in_front_of_me: bool,
}

/// Approve a device-grant request by its user code, as the calling account.
#[utoipa::path(post, path = "/api/v1/device-grants/approve", tag = "device authorization", security(("bearer" = [])), request_body = ApproveUserCode,
    responses((status = 200, body = RequesterFacts), (status = 400, description = "the code is not valid (one message for wrong, expired and used codes), or the device is on another network and `in_front_of_me` was not given"),
        (status = 429, description = "too many wrong codes")))]
pub async fn approve_user_code(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    ApiJson(req): ApiJson<ApproveUserCode>,
) -> Result<Json<RequesterFacts>, ApiError> {
    Ok(Json(device_grant::decide(&s.app, &caller, &req.user_code, true, req.device_name.as_deref(), req.in_front_of_me, &meta).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DenyUserCode {
    pub user_code: String,
}

/// Deny a device-grant request by its user code.
#[utoipa::path(post, path = "/api/v1/device-grants/deny", tag = "device authorization", security(("bearer" = [])), request_body = DenyUserCode,
    responses((status = 200, body = RequesterFacts), (status = 400), (status = 429)))]
pub async fn deny_user_code(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    ApiJson(req): ApiJson<DenyUserCode>,
) -> Result<Json<RequesterFacts>, ApiError> {
    Ok(Json(device_grant::decide(&s.app, &caller, &req.user_code, false, None, false, &meta).await?))
}
