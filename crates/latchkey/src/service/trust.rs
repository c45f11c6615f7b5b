//! "Remember this device" (SECURITY.md R-15): a device-trust token that lets its own user skip
//! the second factor on that device, rotated on every use, and forgetting it.

use super::audit::{Audit, AuditKind};
use super::sessions::Caller;
use crate::domain::secret;
use crate::service::{App, AppResult, ClientMeta};
use crate::store::TrustRow;

pub const TRUST_PREFIX: &str = "lk_dt_";

/// Trusts `device_id` for `remember_days`; the token goes to the browser or app only.
pub(super) async fn remember_device(app: &App, user_id: &str, device_id: &str, meta: &ClientMeta) -> AppResult<String> {
    let token = secret::new_token(TRUST_PREFIX);
    let now = app.now();
    app.store
        .create_trust(&TrustRow {
            hash: secret::token_hash(&token),
            user_id: user_id.into(),
            device_id: device_id.into(),
            created_at: now,
            expires_at: now + app.settings.mfa.remember_days as i64 * 86_400,
            last_used_at: now,
            ip: meta.ip.clone(),
            user_agent: meta.user_agent.clone(),
        })
        .await?;
    Audit::new(AuditKind::DeviceRemembered).user(user_id).device(device_id).meta(meta).record(app).await?;
    Ok(token)
}

/// Uses a device-trust token at login: only for its own user, rotated on use, same absolute
/// expiry. Returns the trusted device and the token's successor.
pub async fn use_trust(app: &App, user_id: &str, token: &str, meta: &ClientMeta) -> AppResult<Option<(String, String)>> {
    if secret::token_bytes(token, TRUST_PREFIX).is_none() {
        return Ok(None);
    }
    let next = secret::new_token(TRUST_PREFIX);
    let device = app
        .store
        .rotate_trust(&secret::token_hash(token), user_id, &secret::token_hash(&next), &meta.ip, &meta.user_agent, app.now())
        .await?;
    Ok(device.map(|d| (d, next)))
}

/// Forgets one remembered device, or all of them (`None`): they owe a second factor again.
pub async fn forget_device(app: &App, caller: &Caller, device_id: Option<&str>, meta: &ClientMeta) -> AppResult<u64> {
    let n = app.store.revoke_trust(&caller.user_id, device_id).await?;
    Audit::new(AuditKind::TrustRevoked)
        .user(&caller.user_id)
        .device(&caller.device_id)
        .meta(meta)
        .detail(serde_json::json!({ "device": device_id, "all": device_id.is_none() }))
        .record(app)
        .await?;
    Ok(n)
}
