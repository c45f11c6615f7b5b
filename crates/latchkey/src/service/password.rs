//! Changing the password: always ends every remembered device; ends the other sessions on request.

use super::audit::{Audit, AuditKind};
use super::sessions::Caller;
use crate::domain::Password;
use crate::service::{App, AppError, AppResult, ClientMeta};

/// Sets a new password. An account that has one must give it; a passwordless account (made
/// from a device) sets its first one without.
pub async fn change(
    app: &App,
    caller: &Caller,
    current: Option<String>,
    new: String,
    end_other_sessions: bool,
    meta: &ClientMeta,
) -> AppResult<u64> {
    let new = Password::parse(new)?;
    let user = app.store.user_by_id(&caller.user_id).await?.ok_or(AppError::Unauthorized)?;
    if user.password_hash.is_some() {
        let current = Password::for_login(current.ok_or_else(|| AppError::Forbidden("the current password is required".into()))?)?;
        let slot = app.passwords.reserve()?;
        if !app.passwords.verify(slot, Some(&user.id), &current, user.password_hash.as_deref()).await? {
            return Err(AppError::Forbidden("the current password is wrong".into()));
        }
    }
    let hash = app.passwords.hash(&user.id, &new).await?;
    app.store.set_password_hash(&user.id, &hash).await?;
    app.store.revoke_trust(&user.id, None).await?;
    let ended = if end_other_sessions {
        app.store.revoke_user_sessions(&user.id, Some(&caller.session_id), "password_changed", app.now()).await?
    } else {
        0
    };
    Audit::new(AuditKind::PasswordChanged)
        .user(&user.id)
        .device(&caller.device_id)
        .meta(meta)
        .detail(serde_json::json!({ "other_sessions_ended": ended }))
        .record(app)
        .await?;
    Ok(ended)
}
