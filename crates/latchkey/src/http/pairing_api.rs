//! `/api/v1/pairing-codes`: a signed-in device issues a one-time code, the new device redeems
//! it, and the issuing device allows or denies who joined.

use super::AppState;
use super::error::ApiError;
use super::extract::{ApiJson, AuthUser};
use crate::domain::device::DeviceInput;
use crate::service::ClientMeta;
use crate::service::pairing::{self, PairingCode, PairingStatus, Redeemed};
use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use utoipa::ToSchema;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/pairing-codes", post(create_pairing_code))
        .route("/api/v1/pairing-codes/redeem", post(redeem_pairing_code))
        .route("/api/v1/pairing-codes/{id}", get(pairing_status))
        .route("/api/v1/pairing-codes/{id}/approve", post(approve_pairing))
        .route("/api/v1/pairing-codes/{id}/deny", post(deny_pairing))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreatePairingCode {
    /// At most the scope of the calling device.
    pub scope: Option<String>,
}

/// Issue a one-time pairing code for a new device to type. One live code per device: a new
/// one ends the previous.
#[utoipa::path(post, path = "/api/v1/pairing-codes", tag = "device authorization", security(("bearer" = [])), request_body = CreatePairingCode,
    responses((status = 201, body = PairingCode), (status = 401)))]
pub async fn create_pairing_code(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<PairingCode>), ApiError> {
    // The body is optional: no body at all means no scope asked for.
    let req: CreatePairingCode = if body.iter().all(u8::is_ascii_whitespace) {
        CreatePairingCode::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| crate::service::AppError::BadRequest(format!("invalid JSON body: {e}")))?
    };
    Ok((StatusCode::CREATED, Json(pairing::create(&s.app, &caller, req.scope.as_deref(), &meta).await?)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemPairingCode {
    pub code: String,
    pub device: Option<DeviceInput>,
    /// The client the new session will belong to; `latchkey-cli` when absent.
    pub client_id: Option<String>,
}

/// The new device types the code; it gets a device_code to poll `/oauth/token` with until the
/// issuing device allows it.
#[utoipa::path(post, path = "/api/v1/pairing-codes/redeem", tag = "device authorization", request_body = RedeemPairingCode,
    responses((status = 200, body = Redeemed), (status = 400, description = "one message for every failure"), (status = 429)))]
pub async fn redeem_pairing_code(
    State(s): State<AppState>,
    meta: ClientMeta,
    ApiJson(req): ApiJson<RedeemPairingCode>,
) -> Result<Json<Redeemed>, ApiError> {
    Ok(Json(pairing::redeem(&s.app, &req.code, req.device.as_ref(), req.client_id.as_deref(), &meta).await?))
}

/// Who, if anyone, has used this device's pairing code.
#[utoipa::path(get, path = "/api/v1/pairing-codes/{id}", tag = "device authorization", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = PairingStatus), (status = 404)))]
pub async fn pairing_status(
    State(s): State<AppState>,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<PairingStatus>, ApiError> {
    Ok(Json(pairing::status(&s.app, &caller, &id).await?))
}

/// Allow the device that typed this code: only now does it get its session.
#[utoipa::path(post, path = "/api/v1/pairing-codes/{id}/approve", tag = "device authorization", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = PairingStatus), (status = 404), (status = 409, description = "nobody joined yet, or already decided")))]
pub async fn approve_pairing(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<PairingStatus>, ApiError> {
    Ok(Json(pairing::decide(&s.app, &caller, &id, true, &meta).await?))
}

/// Deny the device that typed this code.
#[utoipa::path(post, path = "/api/v1/pairing-codes/{id}/deny", tag = "device authorization", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = PairingStatus), (status = 404), (status = 409)))]
pub async fn deny_pairing(
    State(s): State<AppState>,
    meta: ClientMeta,
    AuthUser(caller): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<PairingStatus>, ApiError> {
    Ok(Json(pairing::decide(&s.app, &caller, &id, false, &meta).await?))
}
