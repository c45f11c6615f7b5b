//! Passkeys and their ceremonies (see `service::passkeys`).

use super::*;

macro_rules! passkey_cols {
    () => {
        "id, user_id, credential_id, name, credential, counter, backup_eligible, backed_up, created_at, last_used_at"
    };
}
macro_rules! passkey_challenge_cols {
    () => {
        "handle_hash, purpose, user_id, session_id, name, state, created_at, expires_at"
    };
}

/// The values of [`INSERT_PASSKEY`].
pub fn passkey_values(p: &PasskeyRow) -> [&dyn Param; 10] {
    [
        &p.id,
        &p.user_id,
        &p.credential_id,
        &p.name,
        &p.credential,
        &p.counter,
        &p.backup_eligible,
        &p.backed_up,
        &p.created_at,
        &p.last_used_at,
    ]
}

/// The values of [`INSERT_PASSKEY_CHALLENGE`].
pub fn passkey_challenge_values(c: &PasskeyChallengeRow) -> [&dyn Param; 8] {
    [&c.handle_hash, &c.purpose, &c.user_id, &c.session_id, &c.name, &c.state, &c.created_at, &c.expires_at]
}

pub const INSERT_PASSKEY: Sql =
    sql!(concat!("INSERT INTO passkeys (", passkey_cols!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"));
pub const PASSKEYS_FOR_USER: Sql = sql!(concat!("SELECT ", passkey_cols!(), " FROM passkeys WHERE user_id = $1 ORDER BY created_at, id"));
pub const PASSKEY_BY_CREDENTIAL: Sql = sql!(concat!("SELECT ", passkey_cols!(), " FROM passkeys WHERE credential_id = $1"));
/// A verified assertion (`$2` its signature counter): taken only if the counter went forward, or
/// if the authenticator keeps none (0 then and now). Two assertions of a cloned authenticator
/// with the same counter cannot both pass: the second finds the counter already moved.
pub const USE_PASSKEY: Sql = sql!(
    "UPDATE passkeys SET credential = $1, counter = $2, backed_up = $3, last_used_at = $4 \
     WHERE id = $5 AND (counter < $2 OR (counter = 0 AND $2 = 0))"
);
pub const RENAME_PASSKEY: Sql = sql!("UPDATE passkeys SET name = $1 WHERE id = $2 AND user_id = $3");
/// Removes one passkey of `$2` unless it is the account's last way in, as [`UNLINK_IDENTITY`].
pub const REMOVE_PASSKEY: Sql = sql!(concat!("DELETE FROM passkeys WHERE id = $1 AND user_id = $2 AND ", ways_in!(), " > 1"));
pub const OWNS_PASSKEY: Sql = sql!("SELECT COUNT(*) FROM passkeys WHERE id = $1 AND user_id = $2");
pub const INSERT_PASSKEY_CHALLENGE: Sql =
    sql!(concat!("INSERT INTO passkey_challenges (", passkey_challenge_cols!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"));
/// The one conditional write that takes a ceremony's state: for its purpose, live, and gone for
/// any second answer.
pub const TAKE_PASSKEY_CHALLENGE: Sql = sql!(concat!(
    "DELETE FROM passkey_challenges WHERE handle_hash = $1 AND purpose = $2 AND expires_at > $3 RETURNING ",
    passkey_challenge_cols!()
));
/// A step-up: the live session `$2` has just proved a passkey.
pub const MARK_SESSION_PASSKEY: Sql = sql!("UPDATE sessions SET passkey_verified_at = $1 WHERE id = $2 AND revoked_at IS NULL");
/// Ends the live sessions a passkey opened (`$1` now, `$2` user, `$3` passkey).
pub const REVOKE_PASSKEY_SESSIONS: Sql = sql!(
    "UPDATE sessions SET revoked_at = $1, revoke_reason = 'passkey_removed' WHERE user_id = $2 AND passkey_id = $3 AND revoked_at IS NULL"
);
pub const PASSKEY_STEP_UP: Sql = sql!("SELECT passkey_step_up FROM users WHERE id = $1");
pub const SET_PASSKEY_STEP_UP: Sql = sql!("UPDATE users SET passkey_step_up = $1 WHERE id = $2");
