//! Apps signing their users in through Latchkey: authorization codes and consents (see
//! `service::authorize` and `service::code_grant`).

use super::*;

macro_rules! auth_code_cols {
    () => {
        "code_hash, client_id, redirect_uri, user_id, browser_session_id, device_id, scope, nonce, code_challenge, auth_time, amr, \
         created_at, expires_at, used_at, issued_session_id"
    };
}
macro_rules! consent_cols {
    () => {
        "user_id, client_id, scope, granted_at"
    };
}

/// The values of [`INSERT_AUTH_CODE`].
pub fn auth_code_values(a: &AuthCodeRow) -> [&dyn Param; 13] {
    [
        &a.code_hash,
        &a.client_id,
        &a.redirect_uri,
        &a.user_id,
        &a.browser_session_id,
        &a.device_id,
        &a.scope,
        &a.nonce,
        &a.code_challenge,
        &a.auth_time,
        &a.amr,
        &a.created_at,
        &a.expires_at,
    ]
}

pub const INSERT_AUTH_CODE: Sql = sql!(concat!(
    "INSERT INTO authorization_codes (",
    auth_code_cols!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, NULL)"
));
pub const AUTH_CODE: Sql = sql!(concat!("SELECT ", auth_code_cols!(), " FROM authorization_codes WHERE code_hash = $1"));
/// The one conditional write that redeems a code: `$1` now, `$2` the session it opens, `$3` the
/// code's hash, `$4` the presenting client. Only an unused, unexpired code of that client whose
/// browser session is still live, on a device not revoked, of a client not removed and still
/// consented to (access taken away, a code issued just before is worthless), is redeemed.
pub const REDEEM_AUTH_CODE: Sql = sql!(concat!(
    "UPDATE authorization_codes SET used_at = $1, issued_session_id = $2 \
     WHERE code_hash = $3 AND client_id = $4 AND used_at IS NULL AND expires_at > $1 \
     AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = authorization_codes.browser_session_id AND s.revoked_at IS NULL AND s.expires_at > $1) \
     AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = authorization_codes.device_id AND d.revoked_at IS NOT NULL) \
     AND EXISTS (SELECT 1 FROM clients c WHERE c.id = $4 AND c.removed_at IS NULL) \
     AND EXISTS (SELECT 1 FROM consents k WHERE k.user_id = authorization_codes.user_id AND k.client_id = $4) \
     RETURNING ",
    auth_code_cols!()
));
pub const CONSENT: Sql = sql!(concat!("SELECT ", consent_cols!(), " FROM consents WHERE user_id = $1 AND client_id = $2"));
pub const CONSENTS_FOR_USER: Sql = sql!(concat!("SELECT ", consent_cols!(), " FROM consents WHERE user_id = $1 ORDER BY granted_at DESC"));
/// A grant widens to the union of what was asked before and now (`$3`, computed by the caller).
pub const PUT_CONSENT: Sql = sql!(
    "INSERT INTO consents (user_id, client_id, scope, granted_at) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (user_id, client_id) DO UPDATE SET scope = excluded.scope, granted_at = excluded.granted_at"
);
pub const DELETE_CONSENT: Sql = sql!("DELETE FROM consents WHERE user_id = $1 AND client_id = $2");
/// An app's grant revoked: its sessions of that user end (`$1` now, `$2` user, `$3` client).
pub const REVOKE_APP_SESSIONS: Sql = sql!(
    "UPDATE sessions SET revoked_at = $1, revoke_reason = 'app_access_revoked' WHERE user_id = $2 AND client_id = $3 AND revoked_at IS NULL"
);
/// The apps signed in on each of a user's devices: live sessions of clients with redirect URIs.
pub const APPS_ON_DEVICES: Sql = sql!(
    "SELECT DISTINCT s.device_id, c.id, c.name FROM sessions s JOIN clients c ON c.id = s.client_id \
     WHERE s.user_id = $1 AND s.revoked_at IS NULL AND s.expires_at > $2 AND c.redirect_uris <> '' AND c.removed_at IS NULL ORDER BY c.name"
);
