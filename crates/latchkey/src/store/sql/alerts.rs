//! Links mailed to an account's address: "This wasn't me" in new-device mail
//! (`service::device_alerts`), e-mail verification and password reset (`service::email_links`).

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

macro_rules! email_link_cols {
    () => {
        "token_hash, purpose, user_id, email, created_at, expires_at, used_at"
    };
}

/// The values of [`INSERT_EMAIL_LINK`].
pub fn email_link_values(l: &EmailLinkRow) -> [&dyn Param; 7] {
    [&l.token_hash, &l.purpose, &l.user_id, &l.email, &l.created_at, &l.expires_at, &l.used_at]
}

pub const INSERT_EMAIL_LINK: Sql = sql!(concat!("INSERT INTO email_links (", email_link_cols!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7)"));
pub const EMAIL_LINK: Sql = sql!(concat!(
    "SELECT ",
    email_link_cols!(),
    " FROM email_links WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3"
));
/// Uses a link: one conditional write, so it works once, whoever races for it.
pub const USE_EMAIL_LINK: Sql = sql!(concat!(
    "UPDATE email_links SET used_at = $1 WHERE token_hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1 RETURNING ",
    email_link_cols!()
));
/// Ends an account's other live links of one purpose (a reset used makes the others worthless).
pub const END_EMAIL_LINKS: Sql =
    sql!("UPDATE email_links SET used_at = $1 WHERE user_id = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1");
/// Marks the address verified, if the account still has that address.
pub const VERIFY_EMAIL: Sql = sql!("UPDATE users SET email_verified_at = COALESCE(email_verified_at, $1) WHERE id = $2 AND email = $3");
