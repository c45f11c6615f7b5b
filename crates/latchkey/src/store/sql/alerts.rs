//! "A new device signed in" mail and its "This wasn't me" links (see `service::device_alerts`).

use super::*;

macro_rules! alert_cols {
    () => {
        "token_hash, user_id, device_id, created_at, expires_at, used_at"
    };
}

/// The values of [`INSERT_DEVICE_ALERT`].
pub fn device_alert_values(a: &DeviceAlertRow) -> [&dyn Param; 6] {
    [&a.token_hash, &a.user_id, &a.device_id, &a.created_at, &a.expires_at, &a.used_at]
}

pub const INSERT_DEVICE_ALERT: Sql = sql!(concat!("INSERT INTO device_alerts (", alert_cols!(), ") VALUES ($1, $2, $3, $4, $5, $6)"));
/// A live, unused link: what the confirmation page shows (it changes nothing).
pub const DEVICE_ALERT: Sql =
    sql!(concat!("SELECT ", alert_cols!(), " FROM device_alerts WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2"));
/// Uses a link: one conditional write, so it works once, whoever races for it.
pub const USE_DEVICE_ALERT: Sql = sql!(concat!(
    "UPDATE device_alerts SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING ",
    alert_cols!()
));
pub const NEW_DEVICE_MAIL: Sql = sql!("SELECT new_device_mail FROM users WHERE id = $1");
pub const SET_NEW_DEVICE_MAIL: Sql = sql!("UPDATE users SET new_device_mail = $1 WHERE id = $2");
