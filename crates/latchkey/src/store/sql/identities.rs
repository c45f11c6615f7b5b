//! Upstream identities and the sign-ins sent upstream (see `service::upstream_login`).

use super::*;

macro_rules! identity_cols {
    () => {
        "id, user_id, upstream, issuer, subject, email, created_at, last_used_at"
    };
}
macro_rules! upstream_state_cols {
    () => {
        "state_hash, browser_hash, upstream, next, link_session_id, created_at, expires_at"
    };
}

/// The values of [`INSERT_IDENTITY`].
pub fn identity_values(i: &IdentityRow) -> [&dyn Param; 8] {
    [&i.id, &i.user_id, &i.upstream, &i.issuer, &i.subject, &i.email, &i.created_at, &i.last_used_at]
}

/// The values of [`INSERT_UPSTREAM_STATE`].
pub fn upstream_state_values(u: &UpstreamStateRow) -> [&dyn Param; 7] {
    [&u.state_hash, &u.browser_hash, &u.upstream, &u.next, &u.link_session_id, &u.created_at, &u.expires_at]
}

pub const INSERT_IDENTITY: Sql = sql!(concat!("INSERT INTO identities (", identity_cols!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"));
pub const IDENTITY: Sql =
    sql!(concat!("SELECT ", identity_cols!(), " FROM identities WHERE upstream = $1 AND issuer = $2 AND subject = $3"));
pub const IDENTITIES_FOR_USER: Sql =
    sql!(concat!("SELECT ", identity_cols!(), " FROM identities WHERE user_id = $1 ORDER BY created_at, id"));
/// A sign-in through a linked identity: when, and what e-mail the upstream says now (`$3`).
pub const TOUCH_IDENTITY: Sql = sql!("UPDATE identities SET last_used_at = $1, email = $3 WHERE id = $2");
/// Removes one identity of `$2` unless it is the account's last way in ([`ways_in!`]). The
/// caller holds the account's lock (PostgreSQL) or the one writer (SQLite), so two removals at
/// once cannot each leave the other as the last.
pub const UNLINK_IDENTITY: Sql = sql!(concat!("DELETE FROM identities WHERE id = $1 AND user_id = $2 AND ", ways_in!(), " > 1"));
/// Whether identity `$1` is `$2`'s: a refused removal says "last way in", else "not found".
pub const OWNS_IDENTITY: Sql = sql!("SELECT COUNT(*) FROM identities WHERE id = $1 AND user_id = $2");
pub const INSERT_UPSTREAM_STATE: Sql =
    sql!(concat!("INSERT INTO upstream_states (", upstream_state_cols!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7)"));
/// The one conditional write that takes a state: live, and gone for any second callback.
pub const TAKE_UPSTREAM_STATE: Sql =
    sql!(concat!("DELETE FROM upstream_states WHERE state_hash = $1 AND expires_at > $2 RETURNING ", upstream_state_cols!()));
