use super::audit::{Audit, AuditKind};
use super::sessions::Caller;
use crate::clock::rfc3339;
use crate::service::{App, AppError, AppResult, ClientMeta};

/// A device as its owner sees it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DeviceView {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub os: String,
    pub browser: String,
    pub authorized_by: String,
    pub approved_by_device: Option<String>,
    /// Its approval was given with a fresh passkey assertion (step-up).
    pub passkey_verified: bool,
    pub first_seen: String,
    pub last_seen: String,
    pub last_ip: String,
    pub trusted_until: Option<String>,
    /// The device this request comes from.
    pub current: bool,
    /// The apps signed in on this device (through the browser, authorization code grant).
    pub apps: Vec<AppOnDevice>,
}

/// An app with a live session on a device.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AppOnDevice {
    pub client_id: String,
    pub name: String,
}

pub async fn list(app: &App, caller: &Caller) -> AppResult<Vec<DeviceView>> {
    let rows = app.store.devices_for_user(&caller.user_id, app.now()).await?;
    let apps = app.store.apps_on_devices(&caller.user_id, app.now()).await?;
    Ok(rows
        .into_iter()
        .map(|d| DeviceView {
            apps: apps
                .iter()
                .filter(|(device, _, _)| *device == d.id)
                .map(|(_, client_id, name)| AppOnDevice { client_id: client_id.clone(), name: name.clone() })
                .collect(),
            current: d.id == caller.device_id,
            first_seen: rfc3339(d.first_seen_at),
            last_seen: rfc3339(d.last_seen_at),
            trusted_until: d.trusted_until.map(rfc3339),
            id: d.id,
            name: d.name,
            kind: d.kind,
            os: d.os,
            browser: d.browser,
            authorized_by: d.authorized_by,
            approved_by_device: d.approved_by_device,
            passkey_verified: d.passkey_verified,
            last_ip: d.last_ip,
        })
        .collect())
}

/// Revokes one of the caller's devices: its sessions and refresh tokens die at once.
pub async fn revoke(app: &App, caller: &Caller, device_id: &str, meta: &ClientMeta) -> AppResult<()> {
    let audit = Audit::new(AuditKind::DeviceRevoked).detail(serde_json::json!({ "by_device": caller.device_id }));
    end(app, &caller.user_id, device_id, audit, meta).await
}

/// Signs a live device of `user_id` out, recording `audit` (its kind and detail; the account,
/// device and request are filled in). `NotFound` when there is no such live device.
pub(super) async fn end<'a>(app: &App, user_id: &'a str, device_id: &'a str, audit: Audit<'a>, meta: &'a ClientMeta) -> AppResult<()> {
    if !app.store.revoke_device(user_id, device_id, app.now()).await? {
        return Err(AppError::NotFound);
    }
    // What the device approved and has not been collected yet dies with it.
    super::approvals::end_for_device(app, user_id, device_id).await?;
    audit.user(user_id).device(device_id).meta(meta).record(app).await
}
