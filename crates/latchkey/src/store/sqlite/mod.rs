//! The embedded SQLite backend (WAL). Write transactions start with `BEGIN IMMEDIATE` so that
//! concurrent writers queue on the busy timeout instead of failing a lock upgrade.

use super::*;

// Statements and column lists are in `store::sql`, shared with PostgreSQL; the names the approval
// file uses are brought in here.
use super::sql::{self, approval_cols};

/// Reads a row into a struct whose fields are named, and ordered, like the selected columns.
/// By position, since looking columns up by name cost more than the read on hot paths; debug
/// builds (the tests) check every name.
macro_rules! from_row {
    ($row:expr, $T:ident { $($field:ident),* $(,)? }) => {{
        let row: &rusqlite::Row<'_> = $row;
        let mut i = 0usize;
        #[allow(unused_assignments)]
        let value = $T {
            $($field: {
                debug_assert_eq!(row.as_ref().column_name(i).ok(), Some(stringify!($field)), "column {i}");
                let v = row.get(i)?;
                i += 1;
                v
            }),*
        };
        value
    }};
}

mod accounts;
mod alerts;
mod approvals;
mod grants;
mod identities;
mod memory;
mod mfa;
mod ops;
mod passkeys;
mod readers;
mod sessions;
mod writer;
use rusqlite::{Connection, OptionalExtension, ToSql, params};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::time::Duration;

/// A read pool and exactly one writer (see `writer`), so writers queue in the process instead of
/// sleeping in SQLite's busy handler (which wakes by timer, not when the lock frees).
///
/// One SQLite file serves one server process, so what only has to be shared between the
/// requests of that process is kept in memory here instead of being written on every request:
/// the rate-limit windows and the time of each device-code poll (see `memory`).
pub struct SqliteStore {
    read: SqlitePool,
    point: readers::Readers,
    writer: writer::Writer,
    memory: memory::Memory,
}

fn insert_session_rows(c: &Connection, d: &DeviceRow, s: &SessionRow, refresh: Option<&RefreshTokenRow>) -> StoreResult<()> {
    c.prepare_cached(sql::INSERT_DEVICE.lite)?.execute(sql::device_values(d))?;
    c.prepare_cached(sql::INSERT_SESSION.lite)?.execute(sql::session_values(s))?;
    if let Some(r) = refresh {
        c.prepare_cached(sql::INSERT_REFRESH.lite)?.execute(sql::refresh_values(r))?;
    }
    Ok(())
}

/// Flows and statuses are stored as their names.
macro_rules! text_column {
    ($T:ty) => {
        impl rusqlite::ToSql for $T {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(rusqlite::types::ToSqlOutput::from(self.as_str()))
            }
        }
        impl rusqlite::types::FromSql for $T {
            fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
                <$T>::parse(v.as_str()?)
                    .ok_or_else(|| rusqlite::types::FromSqlError::Other(format!("unknown {} {v:?}", stringify!($T)).into()))
            }
        }
    };
}
text_column!(crate::domain::approval::Flow);
text_column!(crate::domain::approval::Status);

/// Removes one way in (an identity or a passkey: `delete` takes `$1` its id, `$2` the account)
/// unless it is the account's last; `owns` tells a refusal from a row that is not the account's.
/// The one writer serialises removals: the count the statement sees is the last word.
fn remove_way_in(c: &Connection, delete: sql::Sql, owns: sql::Sql, user_id: &str, id: &str) -> StoreResult<Unlinked> {
    if c.prepare_cached(delete.lite)?.execute([id, user_id])? == 1 {
        return Ok(Unlinked::Removed);
    }
    let mine: i64 = c.prepare_cached(owns.lite)?.query_row([id, user_id], |r| r.get(0))?;
    Ok(if mine > 0 { Unlinked::LastWayIn } else { Unlinked::NotFound })
}

fn insert_audit(c: &Connection, e: &AuditRow) -> StoreResult<()> {
    c.prepare_cached(sql::INSERT_AUDIT.lite)?.execute(sql::audit_values(e))?;
    Ok(())
}

fn approval_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApprovalRow> {
    Ok(from_row!(
        r,
        ApprovalRow {
            id,
            flow,
            device_code_hash,
            user_code_hmac,
            client_id,
            scope,
            status,
            created_at,
            expires_at,
            requester_ip,
            requester_ua,
            requester_name,
            requester_kind,
            user_id,
            approver_device_id,
            decided_at,
            poll_interval,
            last_poll_at,
            slow_downs,
            poll_early,
            session_id,
            match_code,
            scanned_at,
            handoff_hash,
            handoff_expires_at,
            handoff_used_at,
            passkey_verified,
        }
    ))
}

fn session_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(from_row!(
        r,
        SessionRow {
            id,
            user_id,
            device_id,
            client_id,
            scope,
            amr,
            web_token_hash,
            created_at,
            last_used_at,
            expires_at,
            revoked_at,
            revoke_reason,
            passkey_id,
            passkey_verified_at,
        }
    ))
}

fn user_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(from_row!(r, UserRow { id, email, password_hash, created_at, email_verified_at }))
}

fn client_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClientRow> {
    Ok(from_row!(
        r,
        ClientRow {
            id,
            name,
            secret_hash,
            created_at,
            redirect_uris,
            post_logout_redirect_uris,
            scopes,
            consent,
            id_token_alg,
            introspects_any
        }
    ))
}

fn pairing_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PairingCodeRow> {
    Ok(from_row!(r, PairingCodeRow { id, user_id, issuer_device_id, code_hmac, scope, created_at, expires_at, redeemed_at, approval_id }))
}

fn refresh_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RefreshTokenRow> {
    Ok(from_row!(r, RefreshTokenRow { hash, session_id, client_id, created_at, expires_at, superseded_at, successor_hash }))
}

impl SqliteStore {
    pub async fn open(url: &str, max_connections: u32) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let migrator = SqlitePoolOptions::new().max_connections(1).connect_with(opts.clone()).await?;
        sqlx::migrate!("./migrations/sqlite").run(&migrator).await?;
        migrator.close().await;
        let writer = writer::Writer::open(opts.get_filename())?;
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let point = readers::Readers::open(opts.get_filename(), workers + 2)?;
        let read = SqlitePoolOptions::new().max_connections(max_connections.max(1)).connect_with(opts.read_only(true)).await?;
        Ok(Self { read, point, writer, memory: memory::Memory::default() })
    }

    /// Runs one store operation on the writer: it commits before this returns.
    async fn write<T: Send + 'static>(&self, op: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static) -> StoreResult<T> {
        self.writer.write(op).await
    }
}

impl SqliteStore {
    /// One row by a unique key, read on the calling task (see `readers`).
    fn one<T, P: rusqlite::Params>(
        &self,
        sql: &str,
        params: P,
        row: fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> StoreResult<Option<T>> {
        self.point.read(|c| c.prepare_cached(sql)?.query_row(params, row).optional())
    }
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection, Row};
    use std::str::FromStr;

    /// Migration 0005 rebuilds `approvals` to drop the unique index on device_code_hash: a
    /// database made by 0001–0004 keeps its requests and the pairing codes pointing at them.
    #[tokio::test]
    async fn rebuilding_approvals_keeps_requests_and_pairing_codes() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("m.db").display());
        let opts = SqliteConnectOptions::from_str(&url).unwrap().create_if_missing(true).foreign_keys(true);
        let mut c = opts.connect().await.unwrap();
        let all = sqlx::migrate!("./migrations/sqlite");
        let mut before = sqlx::migrate!("./migrations/sqlite");
        before.migrations = all.migrations.iter().filter(|m| m.version < 5).cloned().collect::<Vec<_>>().into();
        before.run(&mut c).await.unwrap();
        for sql in [
            "INSERT INTO users (id, email, created_at) VALUES ('u1', 'a@example.com', 0)",
            "INSERT INTO approvals (id, flow, device_code_hash, user_code_hmac, client_id, scope, status, created_at, expires_at, \
             requester_ip, requester_ua, poll_interval, match_code) \
             VALUES ('a1', 'pairing', x'01', NULL, 'latchkey-cli', 'openid', 'pending', 1, 2, '127.0.0.1', 'ua', 5, '42')",
            "INSERT INTO pairing_codes (id, user_id, issuer_device_id, code_hmac, scope, created_at, expires_at, approval_id) \
             VALUES ('p1', 'u1', 'd1', x'02', 'openid', 1, 2, 'a1')",
        ] {
            sqlx::query(sql).execute(&mut c).await.unwrap();
        }
        all.run(&mut c).await.unwrap();

        let row = sqlx::query("SELECT a.match_code, a.device_code_hash FROM pairing_codes p JOIN approvals a ON a.id = p.approval_id")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!((row.get::<String, _>(0), row.get::<Vec<u8>, _>(1)), ("42".to_owned(), vec![1]));
        let broken = sqlx::query("PRAGMA foreign_key_check").fetch_all(&mut c).await.unwrap();
        assert!(broken.is_empty(), "{} foreign keys broken", broken.len());
        // The hash is no longer unique (requests are found by id); user codes still are, and the
        // foreign keys are enforced again.
        let insert = |id: &str, user_code: &str| {
            format!(
                "INSERT INTO approvals (id, flow, device_code_hash, user_code_hmac, client_id, scope, status, created_at, \
                 expires_at, requester_ip, requester_ua, poll_interval) \
                 VALUES ('{id}', 'device_code', x'01', {user_code}, 'latchkey-cli', 'openid', 'pending', 1, 2, 'ip', 'ua', 5)"
            )
        };
        sqlx::query(sqlx::AssertSqlSafe(insert("a2", "x'0a'"))).execute(&mut c).await.unwrap();
        assert!(sqlx::query(sqlx::AssertSqlSafe(insert("a3", "x'0a'"))).execute(&mut c).await.is_err(), "user codes stay unique");
        let orphan = "INSERT INTO pairing_codes (id, user_id, issuer_device_id, code_hmac, scope, created_at, expires_at, approval_id) \
                      VALUES ('p2', 'nobody', 'd1', x'03', 'openid', 1, 2, NULL)";
        assert!(sqlx::query(orphan).execute(&mut c).await.is_err(), "foreign keys are on again");
        c.close().await.unwrap();
    }
}
