//! Every statement both backends run, written once.
//!
//! A statement is written in PostgreSQL's form, with `$1`…`$n`; [`sql!`] derives SQLite's form at
//! compile time by turning each `$` before a digit into `?` (`?NNN` is SQLite's "parameter NNN",
//! so a `$2` used twice stays one parameter, and rusqlite's and sqlx's positional binding fill
//! 1…n). Both are `&'static str`: the SQLite writer and point reads cache prepared statements by
//! their text. Column lists are macros so that `concat!` can splice them into statements.
//!
//! The values a row insert binds are listed once too, as `[&dyn Param; N]`: rusqlite binds such
//! an array as it is (no allocation), and [`bind_pg`] binds it to a sqlx query.
//!
//! What is only in one backend stays in that backend's files, with the reason beside it.

use super::*;
use sqlx::postgres::PgArguments;

/// One statement in both dialects.
#[derive(Debug, Clone, Copy)]
pub struct Sql {
    /// PostgreSQL: `$1`…`$n`.
    pub pg: &'static str,
    /// SQLite: the same text with `?1`…`?n`.
    pub lite: &'static str,
}

/// `sql!("… $1 …")`: a [`Sql`] whose SQLite form is made at compile time. A `?` in the text is a
/// compile error (it would mean a SQLite-only statement, or a PostgreSQL operator SQLite lacks).
macro_rules! sql {
    ($text:expr) => {{
        const PG: &str = $text;
        const LITE_BYTES: [u8; PG.len()] = $crate::store::sql::to_lite(PG);
        const LITE: &str = match ::core::str::from_utf8(&LITE_BYTES) {
            Ok(s) => s,
            Err(_) => panic!("SQL is not UTF-8"),
        };
        $crate::store::sql::Sql { pg: PG, lite: LITE }
    }};
}

/// The bytes of `pg` with each `$` that comes before a digit made a `?`: same length, so the
/// text stays valid UTF-8 (both are ASCII).
pub const fn to_lite<const N: usize>(pg: &str) -> [u8; N] {
    let b = pg.as_bytes();
    assert!(b.len() == N, "length");
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        assert!(b[i] != b'?', "write statements with $1..$n; SQLite's ?n are derived");
        out[i] = if b[i] == b'$' && i + 1 < N && b[i + 1].is_ascii_digit() { b'?' } else { b[i] };
        i += 1;
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Column lists, in the order of the row structs (SQLite reads rows by position: `from_row!`).

macro_rules! session_cols {
    () => {
        "id, user_id, device_id, client_id, scope, amr, web_token_hash, created_at, last_used_at, expires_at, revoked_at, revoke_reason, passkey_id, passkey_verified_at"
    };
}
macro_rules! approval_cols {
    () => {
        "id, flow, device_code_hash, user_code_hmac, client_id, scope, status, created_at, expires_at, requester_ip, \
     requester_ua, requester_name, requester_kind, user_id, approver_device_id, decided_at, poll_interval, last_poll_at, slow_downs, \
     poll_early, session_id, match_code, scanned_at, handoff_hash, handoff_expires_at, handoff_used_at, passkey_verified"
    };
}
macro_rules! device_cols {
    () => {
        "id, user_id, name, kind, os, browser, user_agent, authorized_by, approved_by_device, first_seen_at, \
         last_seen_at, last_ip, trusted_until, revoked_at, passkey_verified"
    };
}
macro_rules! refresh_cols {
    () => {
        "hash, session_id, client_id, created_at, expires_at, superseded_at, successor_hash"
    };
}
macro_rules! audit_cols {
    () => {
        "id, at, kind, user_id, device_id, ip, user_agent, detail"
    };
}
macro_rules! user_cols {
    () => {
        "id, email, password_hash, created_at, email_verified_at"
    };
}
macro_rules! client_cols {
    () => {
        "id, name, secret_hash, created_at, redirect_uris, post_logout_redirect_uris, scopes, consent, id_token_alg, introspects_any"
    };
}
macro_rules! totp_cols {
    () => {
        "user_id, secret_enc, created_at, confirmed_at, last_step"
    };
}
macro_rules! mfa_token_cols {
    () => {
        "hash, user_id, client_id, scope, device_json, web, ip, user_agent, created_at, expires_at, failures, consumed_at, first_factor"
    };
}
macro_rules! trust_cols {
    () => {
        "hash, user_id, device_id, created_at, expires_at, last_used_at, ip, user_agent"
    };
}
/// The backends' own approval statements (the device-code poll) select these too.
pub(crate) use approval_cols;

/// The columns an approval is created with; [`approval_values`] lists its values in this order.
macro_rules! insert_approval {
    () => {
        "INSERT INTO approvals (id, flow, device_code_hash, user_code_hmac, client_id, scope, status, created_at, \
         expires_at, requester_ip, requester_ua, requester_name, requester_kind, user_id, approver_device_id, poll_interval, match_code)"
    };
}

// ---------------------------------------------------------------------------------------------
// Bound values.

/// A sqlx PostgreSQL query.
pub type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, PgArguments>;

/// A value both backends can bind: rusqlite through `ToSql` (so `&[&dyn Param; N]` is rusqlite
/// params as it is), sqlx PostgreSQL through [`bind_pg`].
pub trait Param: rusqlite::ToSql + Sync {
    fn bind_pg<'q>(&'q self, q: PgQuery<'q>) -> PgQuery<'q>;
}

macro_rules! param {
    ($($T:ty),* $(,)?) => {$(
        impl Param for $T {
            fn bind_pg<'q>(&'q self, q: PgQuery<'q>) -> PgQuery<'q> {
                q.bind(self)
            }
        }
    )*};
}
param!(String, Option<String>, &str, Option<&str>, i64, Option<i64>, bool, Vec<u8>, Option<Vec<u8>>, &[u8], Option<&[u8]>);

/// Flows and statuses are stored as their names.
impl Param for crate::domain::approval::Flow {
    fn bind_pg<'q>(&'q self, q: PgQuery<'q>) -> PgQuery<'q> {
        q.bind(self.as_str())
    }
}
impl Param for crate::domain::approval::Status {
    fn bind_pg<'q>(&'q self, q: PgQuery<'q>) -> PgQuery<'q> {
        q.bind(self.as_str())
    }
}

/// Binds the values, in order, to a PostgreSQL query: `bind_pg(sqlx::query(X.pg), &values)`.
pub fn bind_pg<'q>(mut q: PgQuery<'q>, values: &[&'q dyn Param]) -> PgQuery<'q> {
    for v in values {
        q = v.bind_pg(q);
    }
    q
}

/// The values of [`INSERT_APPROVAL`], in its column order.
pub fn approval_values(a: &ApprovalRow) -> [&dyn Param; 17] {
    [
        &a.id,
        &a.flow,
        &a.device_code_hash,
        &a.user_code_hmac,
        &a.client_id,
        &a.scope,
        &a.status,
        &a.created_at,
        &a.expires_at,
        &a.requester_ip,
        &a.requester_ua,
        &a.requester_name,
        &a.requester_kind,
        &a.user_id,
        &a.approver_device_id,
        &a.poll_interval,
        &a.match_code,
    ]
}

/// The values of [`INSERT_DEVICE`].
pub fn device_values(d: &DeviceRow) -> [&dyn Param; 15] {
    [
        &d.id,
        &d.user_id,
        &d.name,
        &d.kind,
        &d.os,
        &d.browser,
        &d.user_agent,
        &d.authorized_by,
        &d.approved_by_device,
        &d.first_seen_at,
        &d.last_seen_at,
        &d.last_ip,
        &d.trusted_until,
        &d.revoked_at,
        &d.passkey_verified,
    ]
}

/// The values of [`INSERT_SESSION`].
pub fn session_values(s: &SessionRow) -> [&dyn Param; 12] {
    [
        &s.id,
        &s.user_id,
        &s.device_id,
        &s.client_id,
        &s.scope,
        &s.amr,
        &s.web_token_hash,
        &s.created_at,
        &s.last_used_at,
        &s.expires_at,
        &s.passkey_id,
        &s.passkey_verified_at,
    ]
}

/// The values of [`INSERT_REFRESH`].
pub fn refresh_values(r: &RefreshTokenRow) -> [&dyn Param; 5] {
    [&r.hash, &r.session_id, &r.client_id, &r.created_at, &r.expires_at]
}

/// The values of [`INSERT_AUDIT`].
pub fn audit_values(e: &AuditRow) -> [&dyn Param; 7] {
    [&e.at, &e.kind, &e.user_id, &e.device_id, &e.ip, &e.user_agent, &e.detail]
}

/// The values of [`INSERT_USER`].
pub fn user_values(u: &UserRow) -> [&dyn Param; 5] {
    [&u.id, &u.email, &u.password_hash, &u.created_at, &u.email_verified_at]
}

/// The values of [`INSERT_CLIENT`].
pub fn client_values(c: &ClientRow) -> [&dyn Param; 10] {
    [
        &c.id,
        &c.name,
        &c.secret_hash,
        &c.created_at,
        &c.redirect_uris,
        &c.post_logout_redirect_uris,
        &c.scopes,
        &c.consent,
        &c.id_token_alg,
        &c.introspects_any,
    ]
}

/// The values of [`INSERT_MFA_TOKEN`].
pub fn mfa_token_values(m: &MfaTokenRow) -> [&dyn Param; 11] {
    [
        &m.hash,
        &m.user_id,
        &m.client_id,
        &m.scope,
        &m.device_json,
        &m.web,
        &m.ip,
        &m.user_agent,
        &m.created_at,
        &m.expires_at,
        &m.first_factor,
    ]
}

/// The values of [`INSERT_TRUST`].
pub fn trust_values(t: &TrustRow) -> [&dyn Param; 8] {
    [&t.hash, &t.user_id, &t.device_id, &t.created_at, &t.expires_at, &t.last_used_at, &t.ip, &t.user_agent]
}

// ---------------------------------------------------------------------------------------------
// Keys, server secrets, the audit trail, limit counters and housekeeping.

pub const PING: Sql = sql!("SELECT 1");
pub const INSERT_SECRET: Sql = sql!("INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING");
pub const SECRET: Sql = sql!("SELECT value FROM server_secrets WHERE name = $1");
pub const RESEAL_SECRET: Sql = sql!("UPDATE server_secrets SET value = $2 WHERE name = $1 AND value = $3");
pub const RESEAL_SIGNING_KEY: Sql = sql!("UPDATE signing_keys SET seed = $2 WHERE kid = $1 AND seed = $3");
pub const SIGNING_KEYS: Sql = sql!("SELECT kid, seed, created_at, retired_at, alg FROM signing_keys ORDER BY created_at DESC, kid");
/// Retires the active key of one algorithm (`$2`).
pub const RETIRE_SIGNING_KEYS: Sql = sql!("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL AND alg = $2");
pub const INSERT_SIGNING_KEY: Sql = sql!("INSERT INTO signing_keys (kid, seed, created_at, retired_at, alg) VALUES ($1, $2, $3, NULL, $4)");
pub const INSERT_FIRST_SIGNING_KEY: Sql = sql!(
    "INSERT INTO signing_keys (kid, seed, created_at, retired_at, alg) SELECT $1, $2, $3, NULL, $4 \
     WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE retired_at IS NULL AND alg = $4) ON CONFLICT DO NOTHING"
);

/// The housekeeping deletes, each with its cutoff (`$1`).
pub fn sweeps(now: i64, keep_dead: i64) -> [(Sql, i64); 14] {
    let day = 86_400;
    [
        (sql!("DELETE FROM mfa_tokens WHERE expires_at < $1"), now - day),
        // A used code is kept a day past expiry so that a replay still finds (and revokes) what it issued.
        (sql!("DELETE FROM authorization_codes WHERE expires_at < $1"), now - day),
        (sql!("DELETE FROM email_codes WHERE expires_at < $1"), now - day),
        (sql!("DELETE FROM device_trust WHERE expires_at < $1"), now),
        (sql!("DELETE FROM rate_limits WHERE window_start < $1"), now - 2 * day),
        (sql!("DELETE FROM login_failures WHERE last_failure_at < $1"), now - day),
        (sql!("DELETE FROM pairing_codes WHERE expires_at < $1"), now - day),
        (sql!("DELETE FROM upstream_states WHERE expires_at < $1"), now),
        (sql!("DELETE FROM passkey_challenges WHERE expires_at < $1"), now),
        (sql!("DELETE FROM device_alerts WHERE expires_at < $1"), now),
        (sql!("DELETE FROM email_links WHERE expires_at < $1"), now),
        (
            sql!(
                "DELETE FROM approvals WHERE expires_at < $1 AND id NOT IN (SELECT approval_id FROM pairing_codes WHERE approval_id IS NOT NULL)"
            ),
            now - day,
        ),
        (sql!("DELETE FROM sessions WHERE COALESCE(revoked_at, expires_at) < $1"), now - keep_dead),
        (sql!("DELETE FROM refresh_tokens WHERE superseded_at IS NOT NULL AND expires_at < $1"), now - day),
    ]
}

pub const INSERT_AUDIT: Sql =
    sql!("INSERT INTO audit_events (at, kind, user_id, device_id, ip, user_agent, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)");
pub const AUDIT_FOR_USER: Sql = sql!(concat!("SELECT ", audit_cols!(), " FROM audit_events WHERE user_id = $1 ORDER BY id DESC LIMIT $2"));
pub const AUDIT_ALL: Sql = sql!(concat!("SELECT ", audit_cols!(), " FROM audit_events ORDER BY id DESC LIMIT $1"));
pub const LOGIN_FAILURES: Sql = sql!("SELECT failures, last_failure_at FROM login_failures WHERE key = $1");
pub const RECORD_LOGIN_FAILURE: Sql = sql!(
    "INSERT INTO login_failures (key, failures, last_failure_at) VALUES ($1, 1, $2) \
     ON CONFLICT (key) DO UPDATE SET failures = login_failures.failures + 1, last_failure_at = excluded.last_failure_at"
);
pub const CLEAR_LOGIN_FAILURES: Sql = sql!("DELETE FROM login_failures WHERE key = $1");

// ---------------------------------------------------------------------------------------------
// Accounts and OAuth clients.

pub const INSERT_USER: Sql = sql!(concat!("INSERT INTO users (", user_cols!(), ") VALUES ($1, $2, $3, $4, $5)"));
pub const USER_BY_EMAIL: Sql = sql!(concat!("SELECT ", user_cols!(), " FROM users WHERE email = $1"));
pub const USER_BY_ID: Sql = sql!(concat!("SELECT ", user_cols!(), " FROM users WHERE id = $1"));
pub const INSERT_CLIENT: Sql = sql!(concat!("INSERT INTO clients (", client_cols!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"));
pub const CLIENT: Sql = sql!(concat!("SELECT ", client_cols!(), " FROM clients WHERE id = $1 AND removed_at IS NULL"));
pub const CLIENTS: Sql = sql!(concat!("SELECT ", client_cols!(), " FROM clients WHERE removed_at IS NULL ORDER BY id"));
/// Removal keeps the row (sessions and requests refer to it) and drops what it was granted.
pub const REMOVE_CLIENT: Sql = sql!("UPDATE clients SET removed_at = $1 WHERE id = $2 AND removed_at IS NULL");
pub const DELETE_CLIENT_CONSENTS: Sql = sql!("DELETE FROM consents WHERE client_id = $1");
/// A removed client's sessions end with it (`$1` now, `$2` the client).
pub const REVOKE_CLIENT_SESSIONS: Sql =
    sql!("UPDATE sessions SET revoked_at = $1, revoke_reason = 'client_removed' WHERE client_id = $2 AND revoked_at IS NULL");
pub const SET_PASSWORD_HASH: Sql = sql!("UPDATE users SET password_hash = $1 WHERE id = $2");
pub const SET_EMAIL_IF_NONE: Sql = sql!("UPDATE users SET email = $1 WHERE id = $2 AND email IS NULL");

// ---------------------------------------------------------------------------------------------
// Devices, sessions and refresh tokens.

/// A device seen again (a login from a remembered device) keeps its row and is marked seen.
pub const INSERT_DEVICE: Sql = sql!(concat!(
    "INSERT INTO devices (",
    device_cols!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) \
     ON CONFLICT (id) DO UPDATE SET last_seen_at = excluded.last_seen_at, last_ip = excluded.last_ip"
));
pub const INSERT_SESSION: Sql =
    sql!(concat!("INSERT INTO sessions (", session_cols!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL, $11, $12)"));
pub const INSERT_REFRESH: Sql =
    sql!("INSERT INTO refresh_tokens (hash, session_id, client_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)");
pub const SESSION_BY_ID: Sql = sql!(concat!("SELECT ", session_cols!(), " FROM sessions WHERE id = $1"));
pub const SESSION_BY_WEB_TOKEN: Sql = sql!(concat!("SELECT ", session_cols!(), " FROM sessions WHERE web_token_hash = $1"));
pub const TOUCH_SESSION: Sql = sql!("UPDATE sessions SET last_used_at = $1 WHERE id = $2");
pub const TOUCH_DEVICE: Sql = sql!("UPDATE devices SET last_seen_at = $1, last_ip = $2 WHERE id = $3");
pub const REVOKE_SESSION: Sql = sql!("UPDATE sessions SET revoked_at = $1, revoke_reason = $2 WHERE id = $3 AND revoked_at IS NULL");
/// `IS DISTINCT FROM`: `$4` may be NULL (revoke them all). SQLite has it since 3.39.
pub const REVOKE_USER_SESSIONS: Sql =
    sql!("UPDATE sessions SET revoked_at = $1, revoke_reason = $2 WHERE user_id = $3 AND revoked_at IS NULL AND id IS DISTINCT FROM $4");
pub const COUNT_LIVE_SESSIONS: Sql = sql!("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > $1");
pub const DEVICE: Sql = sql!(concat!("SELECT ", device_cols!(), " FROM devices WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL"));
pub const DEVICES_FOR_USER: Sql = sql!(concat!(
    "SELECT ",
    device_cols!(),
    " FROM devices d WHERE user_id = $1 AND revoked_at IS NULL \
     AND (trusted_until > $2 OR EXISTS (SELECT 1 FROM sessions s WHERE s.device_id = d.id AND s.revoked_at IS NULL AND s.expires_at > $3)) \
     ORDER BY last_seen_at DESC"
));
pub const REVOKE_DEVICE: Sql =
    sql!("UPDATE devices SET revoked_at = $1, trusted_until = NULL WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL");
pub const REVOKE_DEVICE_SESSIONS: Sql =
    sql!("UPDATE sessions SET revoked_at = $1, revoke_reason = 'device_revoked' WHERE device_id = $2 AND revoked_at IS NULL");
pub const DELETE_DEVICE_TRUST: Sql = sql!("DELETE FROM device_trust WHERE device_id = $1");
/// The conditional write of a refresh-token rotation: `$1` now, `$2` the successor's hash,
/// `$3` the presented hash, `$4` the client. Returns the session.
pub const SUPERSEDE_REFRESH: Sql = sql!(
    "UPDATE refresh_tokens SET superseded_at = $1, successor_hash = $2 \
     WHERE hash = $3 AND client_id = $4 AND superseded_at IS NULL AND expires_at > $1 \
     AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = refresh_tokens.session_id AND s.revoked_at IS NULL AND s.expires_at > $1) \
     RETURNING session_id"
);
/// The successor: `$1` hash, `$2` client, `$3` now, `$4` its idle expiry, `$5` the session; it
/// never outlives the session (a CASE: SQLite's two-argument MIN is PostgreSQL's LEAST).
pub const INSERT_SUCCESSOR: Sql = sql!(
    "INSERT INTO refresh_tokens (hash, session_id, client_id, created_at, expires_at) \
     SELECT $1, s.id, $2, $3, CASE WHEN $4 < s.expires_at THEN $4 ELSE s.expires_at END FROM sessions s WHERE s.id = $5 \
     RETURNING expires_at"
);
pub const USE_SESSION: Sql = sql!(concat!("UPDATE sessions SET last_used_at = $1 WHERE id = $2 RETURNING ", session_cols!()));
pub const REFRESH_BY_HASH: Sql = sql!(concat!("SELECT ", refresh_cols!(), " FROM refresh_tokens WHERE hash = $1"));

// Apps signing their users in: authorization codes and consents.
mod grants;
pub use grants::*;
/// How many ways in account `$2` has: a password, linked identities, passkeys. Removing one of
/// them is allowed only while this is above 1 (`domain::linking::may_unlink`).
macro_rules! ways_in {
    () => {
        "((SELECT COUNT(*) FROM users u WHERE u.id = $2 AND u.password_hash IS NOT NULL) \
         + (SELECT COUNT(*) FROM identities i WHERE i.user_id = $2) \
         + (SELECT COUNT(*) FROM passkeys p WHERE p.user_id = $2))"
    };
}
mod identities;
pub use identities::*;
mod passkeys;
pub use passkeys::*;
mod alerts;
pub use alerts::*;

// ---------------------------------------------------------------------------------------------
// Second factors and remembered devices.

pub const PUT_PENDING_TOTP: Sql = sql!(
    "INSERT INTO totp_credentials (user_id, secret_enc, created_at, confirmed_at, last_step) VALUES ($1, $2, $3, NULL, -1) \
     ON CONFLICT (user_id) DO UPDATE SET secret_enc = excluded.secret_enc, created_at = excluded.created_at, last_step = -1 \
     WHERE totp_credentials.confirmed_at IS NULL"
);
pub const TOTP: Sql = sql!(concat!("SELECT ", totp_cols!(), " FROM totp_credentials WHERE user_id = $1"));
/// `$1` now, `$2` the step.
pub const CONFIRM_TOTP: Sql =
    sql!("UPDATE totp_credentials SET confirmed_at = $1, last_step = $2 WHERE user_id = $3 AND confirmed_at IS NULL AND last_step < $2");
pub const DELETE_RECOVERY_CODES: Sql = sql!("DELETE FROM recovery_codes WHERE user_id = $1");
pub const INSERT_RECOVERY_CODE: Sql = sql!("INSERT INTO recovery_codes (user_id, code_hmac) VALUES ($1, $2)");
/// `$1` the step.
pub const USE_TOTP_STEP: Sql =
    sql!("UPDATE totp_credentials SET last_step = $1 WHERE user_id = $2 AND confirmed_at IS NOT NULL AND last_step < $1");
pub const DELETE_TOTP: Sql = sql!("DELETE FROM totp_credentials WHERE user_id = $1");
pub const USE_RECOVERY_CODE: Sql = sql!("UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hmac = $3 AND used_at IS NULL");
pub const EMAIL_FACTOR: Sql = sql!("SELECT 1 FROM email_factors WHERE user_id = $1");
pub const DISABLE_EMAIL_FACTOR: Sql = sql!("DELETE FROM email_factors WHERE user_id = $1");
pub const ENABLE_EMAIL_FACTOR: Sql =
    sql!("INSERT INTO email_factors (user_id, enabled_at) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING");
/// `$4` now, `$5` its expiry, `$6` the latest creation time that may be replaced.
pub const PUT_EMAIL_CODE: Sql = sql!(
    "INSERT INTO email_codes (user_id, purpose, code_hmac, created_at, expires_at, attempts) VALUES ($1, $2, $3, $4, $5, 0) \
     ON CONFLICT (user_id, purpose) DO UPDATE SET code_hmac = excluded.code_hmac, created_at = excluded.created_at, \
       expires_at = excluded.expires_at, attempts = 0 \
     WHERE email_codes.created_at <= $6"
);
pub const USE_EMAIL_CODE: Sql =
    sql!("DELETE FROM email_codes WHERE user_id = $1 AND purpose = $2 AND code_hmac = $3 AND expires_at > $4 AND attempts < $5");
pub const FAIL_EMAIL_CODE: Sql = sql!("UPDATE email_codes SET attempts = attempts + 1 WHERE user_id = $1 AND purpose = $2");
pub const INSERT_MFA_TOKEN: Sql = sql!(
    "INSERT INTO mfa_tokens (hash, user_id, client_id, scope, device_json, web, ip, user_agent, created_at, expires_at, first_factor) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
);
pub const MFA_TOKEN: Sql = sql!(concat!("SELECT ", mfa_token_cols!(), " FROM mfa_tokens WHERE hash = $1"));
pub const FAIL_MFA_TOKEN: Sql = sql!("UPDATE mfa_tokens SET failures = failures + 1 WHERE hash = $1 RETURNING failures");
/// `$1` now.
pub const CONSUME_MFA_TOKEN: Sql =
    sql!("UPDATE mfa_tokens SET consumed_at = $1 WHERE hash = $2 AND consumed_at IS NULL AND expires_at > $1 AND failures < $3");
pub const INSERT_TRUST: Sql = sql!(concat!("INSERT INTO device_trust (", trust_cols!(), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"));
pub const TRUST_DEVICE: Sql = sql!("UPDATE devices SET trusted_until = $1 WHERE id = $2");
/// Takes a live trust token of a live device; returns what its successor inherits.
pub const TAKE_TRUST: Sql = sql!(
    "DELETE FROM device_trust WHERE hash = $1 AND user_id = $2 AND expires_at > $3 \
     AND device_id IN (SELECT id FROM devices WHERE revoked_at IS NULL) RETURNING device_id, expires_at"
);
/// `$2` a device, or NULL for all of the user's.
pub const REVOKE_TRUST: Sql = sql!("DELETE FROM device_trust WHERE user_id = $1 AND ($2 IS NULL OR device_id = $2)");
pub const UNTRUST_DEVICES: Sql = sql!("UPDATE devices SET trusted_until = NULL WHERE user_id = $1 AND ($2 IS NULL OR id = $2)");

// ---------------------------------------------------------------------------------------------
// The cross-device approval machine (`domain::approval`). Each transition is one conditional
// write; its WHERE is the machine's rule for it: approve and deny need `pending` and
// `expires_at > now`, collect needs `approved` and `expires_at > now`, and the approver's
// revocation ends `pending` or `approved`. tests/store drives these against the pure rule.

/// A new request, under the per-IP cap of live pending requests (`$18`, 0: none) at `$19`.
pub const CREATE_APPROVAL: Sql = sql!(concat!(
    insert_approval!(),
    " SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17 \
     WHERE ($18 = 0 OR (SELECT COUNT(*) FROM approvals WHERE requester_ip = $10 AND status = 'pending' AND expires_at > $19) < $18)"
));
/// A new request whose cap was checked in the same transaction (a redeemed pairing code).
pub const INSERT_APPROVAL: Sql =
    sql!(concat!(insert_approval!(), " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"));
pub const COUNT_PENDING_OF_IP: Sql =
    sql!("SELECT COUNT(*) FROM approvals WHERE requester_ip = $1 AND status = 'pending' AND expires_at > $2");
/// Scans every live pending request: see `service::limits::admit_pending` for how rarely.
pub const COUNT_LIVE_PENDING: Sql = sql!("SELECT COUNT(*) FROM approvals WHERE status = 'pending' AND expires_at > $1");
pub const APPROVAL: Sql = sql!(concat!("SELECT ", approval_cols!(), " FROM approvals WHERE id = $1"));
pub const APPROVAL_BY_USER_CODE: Sql = sql!(concat!("SELECT ", approval_cols!(), " FROM approvals WHERE user_code_hmac = $1"));

/// A decision: `$1` status, `$2` user, `$3` deciding device, `$4` now, `$5` a name for the new
/// device, `$6`/`$7` a QR login's handoff hash and expiry, `$8` how the request is found, `$9`
/// whether the approver has just proved a passkey.
macro_rules! decide {
    ($filter:expr) => {
        sql!(concat!(
            "UPDATE approvals SET status = $1, user_id = $2, approver_device_id = $3, decided_at = $4, \
             requester_name = COALESCE($5, requester_name), handoff_hash = $6, handoff_expires_at = $7, passkey_verified = $9 WHERE ",
            $filter,
            " AND status = 'pending' AND expires_at > $4 RETURNING ",
            approval_cols!()
        ))
    };
}
/// The device grant: by user code; the first account to decide binds it.
pub const DECIDE_BY_USER_CODE: Sql = decide!("user_code_hmac = $8 AND flow = 'device_code' AND (user_id IS NULL OR user_id = $2)");
/// Pairing: only the device that issued the code decides.
pub const DECIDE_PAIRING: Sql = decide!("id = $8 AND flow = 'pairing' AND user_id = $2 AND approver_device_id = $3");
/// QR login: only the device that scanned it decides.
pub const DECIDE_QR: Sql = decide!("id = $8 AND flow = 'qr' AND user_id = $2 AND approver_device_id = $3");
/// Abuse of the poll interval denies a pending request; an approved one is left to its collector.
pub const DENY_FOR_ABUSE: Sql = sql!("UPDATE approvals SET status = 'denied', decided_at = $1 WHERE id = $2 AND status = 'pending'");
/// The server ends a live request, approved or not (the device-grant policy refused its collection).
pub const END_APPROVAL: Sql =
    sql!("UPDATE approvals SET status = 'denied', decided_at = $1 WHERE id = $2 AND status IN ('pending', 'approved') AND expires_at > $1");
/// A collection needs the approving device not to be revoked since.
pub const COLLECT_BY_ID: Sql = sql!(
    "UPDATE approvals SET status = 'collected', session_id = $1 WHERE id = $2 AND status = 'approved' AND expires_at > $3 \
     AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = approvals.approver_device_id AND d.revoked_at IS NOT NULL)"
);
pub const COLLECT_BY_HANDOFF: Sql = sql!(
    "UPDATE approvals SET status = 'collected', handoff_used_at = $1, session_id = $2 \
     WHERE handoff_hash = $3 AND device_code_hash = $4 AND flow = 'qr' AND status = 'approved' AND handoff_expires_at > $1 \
     AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = approvals.approver_device_id AND d.revoked_at IS NOT NULL)"
);
/// After a failed handoff: was it already exchanged (a replay), and for which session?
pub const HANDOFF_USED: Sql = sql!(
    "SELECT session_id, handoff_used_at FROM approvals \
     WHERE handoff_hash = $1 AND device_code_hash = $2 AND status = 'collected' AND handoff_expires_at > $3"
);
/// The approver (`$3`) of user `$2` is revoked: what it decided, scanned or holds ends.
pub const END_APPROVALS_OF_DEVICE: Sql = sql!(
    "UPDATE approvals SET status = 'denied', decided_at = $1 \
     WHERE user_id = $2 AND approver_device_id = $3 AND status IN ('pending', 'approved') AND expires_at > $1"
);
pub const END_PAIRING_CODES_OF_DEVICE: Sql = sql!(
    "UPDATE pairing_codes SET expires_at = $1 WHERE user_id = $2 AND issuer_device_id = $3 AND redeemed_at IS NULL AND expires_at > $1"
);
/// The first signed-in device to open a live QR login locks it; the same device may look again.
pub const SCAN_QR: Sql = sql!(concat!(
    "UPDATE approvals SET user_id = $1, approver_device_id = $2, scanned_at = COALESCE(scanned_at, $3) \
     WHERE id = $4 AND flow = 'qr' AND status = 'pending' AND expires_at > $3 \
       AND (approver_device_id IS NULL OR (approver_device_id = $2 AND user_id = $1)) RETURNING ",
    approval_cols!()
));

macro_rules! pairing_cols {
    () => {
        "id, user_id, issuer_device_id, code_hmac, scope, created_at, expires_at, redeemed_at, approval_id"
    };
}
/// One live code per issuing device: a new code ends the previous one.
pub const END_LIVE_PAIRING_CODES: Sql =
    sql!("UPDATE pairing_codes SET expires_at = $1 WHERE issuer_device_id = $2 AND redeemed_at IS NULL AND expires_at > $1");
pub const INSERT_PAIRING_CODE: Sql = sql!(
    "INSERT INTO pairing_codes (id, user_id, issuer_device_id, code_hmac, scope, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
);
pub const PAIRING_CODE: Sql = sql!(concat!("SELECT ", pairing_cols!(), " FROM pairing_codes WHERE id = $1"));
pub const REDEEM_PAIRING_CODE: Sql = sql!(
    "UPDATE pairing_codes SET redeemed_at = $1, approval_id = $2 \
     WHERE code_hmac = $3 AND redeemed_at IS NULL AND expires_at > $1 RETURNING user_id, issuer_device_id, scope"
);

/// The values of a new pairing code, in [`INSERT_PAIRING_CODE`]'s order.
pub fn pairing_code_values(c: &PairingCodeRow) -> [&dyn Param; 7] {
    [&c.id, &c.user_id, &c.issuer_device_id, &c.code_hmac, &c.scope, &c.created_at, &c.expires_at]
}

#[cfg(test)]
mod tests;
