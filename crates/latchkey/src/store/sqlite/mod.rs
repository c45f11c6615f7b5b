//! The embedded SQLite backend (WAL). Write transactions start with `BEGIN IMMEDIATE` so that
//! concurrent writers queue on the busy timeout instead of failing a lock upgrade.

use super::*;

mod accounts;
mod approvals;
mod mfa;
mod ops;
mod sessions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::time::Duration;

/// Two pools over one database: readers in parallel, and exactly one writer connection, so
/// writers queue fairly in the process instead of sleeping in SQLite's busy handler (which
/// wakes by timer, not when the lock frees, and wasted most of a core under load).
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
}

const SESSION_COLS: &str =
    "id, user_id, device_id, client_id, scope, amr, web_token_hash, created_at, last_used_at, expires_at, revoked_at, revoke_reason";

fn conflict_or(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Backend(e),
    }
}

const APPROVAL_COLS: &str = "id, flow, device_code_hash, user_code_hmac, client_id, scope, status, created_at, expires_at, requester_ip, \
     requester_ua, requester_name, requester_kind, user_id, approver_device_id, decided_at, poll_interval, last_poll_at, slow_downs, \
     poll_early, session_id, match_code, scanned_at, handoff_hash, handoff_expires_at, handoff_used_at";

async fn insert_session_rows(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    d: &DeviceRow,
    s: &SessionRow,
    refresh: Option<&RefreshTokenRow>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO devices (id, user_id, name, kind, os, browser, user_agent, authorized_by, approved_by_device, \
         first_seen_at, last_seen_at, last_ip, trusted_until, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET last_seen_at = excluded.last_seen_at, last_ip = excluded.last_ip",
    )
    .bind(&d.id)
    .bind(&d.user_id)
    .bind(&d.name)
    .bind(&d.kind)
    .bind(&d.os)
    .bind(&d.browser)
    .bind(&d.user_agent)
    .bind(&d.authorized_by)
    .bind(&d.approved_by_device)
    .bind(d.first_seen_at)
    .bind(d.last_seen_at)
    .bind(&d.last_ip)
    .bind(d.trusted_until)
    .bind(d.revoked_at)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO sessions (id, user_id, device_id, client_id, scope, amr, web_token_hash, created_at, last_used_at, \
         expires_at, revoked_at, revoke_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
    )
    .bind(&s.id)
    .bind(&s.user_id)
    .bind(&s.device_id)
    .bind(&s.client_id)
    .bind(&s.scope)
    .bind(&s.amr)
    .bind(&s.web_token_hash)
    .bind(s.created_at)
    .bind(s.last_used_at)
    .bind(s.expires_at)
    .execute(&mut **tx)
    .await
    .map_err(conflict_or)?;
    if let Some(r) = refresh {
        sqlx::query("INSERT INTO refresh_tokens (hash, session_id, client_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&r.hash)
            .bind(&r.session_id)
            .bind(&r.client_id)
            .bind(r.created_at)
            .bind(r.expires_at)
            .execute(&mut **tx)
            .await
            .map_err(conflict_or)?;
    }
    Ok(())
}

fn bind_approval<'q>(
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    a: &'q ApprovalRow,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    q.bind(&a.id)
        .bind(&a.flow)
        .bind(&a.device_code_hash)
        .bind(&a.user_code_hmac)
        .bind(&a.client_id)
        .bind(&a.scope)
        .bind(&a.status)
        .bind(a.created_at)
        .bind(a.expires_at)
        .bind(&a.requester_ip)
        .bind(&a.requester_ua)
        .bind(&a.requester_name)
        .bind(&a.requester_kind)
        .bind(&a.user_id)
        .bind(&a.approver_device_id)
        .bind(a.poll_interval)
        .bind(&a.match_code)
}

const INSERT_APPROVAL: &str = "INSERT INTO approvals (id, flow, device_code_hash, user_code_hmac, client_id, scope, status, created_at, \
     expires_at, requester_ip, requester_ua, requester_name, requester_kind, user_id, approver_device_id, poll_interval, match_code)";

impl SqliteStore {
    pub async fn open(url: &str, max_connections: u32) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let write = SqlitePoolOptions::new().max_connections(1).connect_with(opts.clone()).await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new().max_connections(max_connections.max(1)).connect_with(opts.read_only(true)).await?;
        Ok(Self { read, write })
    }

    async fn write_tx(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.write.begin_with("BEGIN IMMEDIATE").await?)
    }
}
