//! The PostgreSQL backend, for one database shared by several instances. Every single-use thing
//! is consumed by one conditional `UPDATE … WHERE … RETURNING` (or a conditional insert / upsert),
//! which PostgreSQL makes atomic under READ COMMITTED: a second writer waits on the row lock and
//! re-checks the condition against the committed row. The few multi-statement writes whose
//! correctness needs them serialised (caps on pending approvals, signing-key rotation, one live
//! pairing code per device) take a transaction-scoped advisory lock first.

use super::*;

mod accounts;
mod approvals;
mod mfa;
mod ops;
mod sessions;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// One pool; PostgreSQL handles concurrent writers itself.
pub struct PgStore {
    pool: PgPool,
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
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    d: &DeviceRow,
    s: &SessionRow,
    refresh: Option<&RefreshTokenRow>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO devices (id, user_id, name, kind, os, browser, user_agent, authorized_by, approved_by_device, \
         first_seen_at, last_seen_at, last_ip, trusted_until, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
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
         expires_at, revoked_at, revoke_reason) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, NULL)",
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
        sqlx::query("INSERT INTO refresh_tokens (hash, session_id, client_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
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
    q: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    a: &'q ApprovalRow,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    q.bind(&a.id)
        .bind(a.flow.as_str())
        .bind(&a.device_code_hash)
        .bind(&a.user_code_hmac)
        .bind(&a.client_id)
        .bind(&a.scope)
        .bind(a.status.as_str())
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

/// Advisory-lock classes (the first key of `pg_advisory_xact_lock(int, int)`).
const LOCK_APPROVAL_CAPS: i32 = 0x4c4b_0001;
const LOCK_SIGNING_KEYS: i32 = 0x4c4b_0002;
const LOCK_PAIRING_ISSUER: i32 = 0x4c4b_0003;

/// Takes a transaction-scoped advisory lock: held until the transaction ends.
async fn xact_lock(tx: &mut sqlx::Transaction<'static, sqlx::Postgres>, class: i32, key: &str) -> StoreResult<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))").bind(class).bind(key).execute(&mut **tx).await?;
    Ok(())
}

impl PgStore {
    /// Connects to `url` (`postgres://…`; `options=-c search_path=…` picks a schema) and applies
    /// the migrations.
    pub async fn open(url: &str, max_connections: u32) -> StoreResult<Self> {
        let opts = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// The pool, for tools and tests that need to look at the database directly.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

async fn insert_audit<'e>(db: impl sqlx::PgExecutor<'e>, e: &AuditRow) -> StoreResult<()> {
    sqlx::query("INSERT INTO audit_events (at, kind, user_id, device_id, ip, user_agent, detail) VALUES ($1, $2, $3, $4, $5, $6, $7)")
        .bind(e.at)
        .bind(&e.kind)
        .bind(&e.user_id)
        .bind(&e.device_id)
        .bind(&e.ip)
        .bind(&e.user_agent)
        .bind(&e.detail)
        .execute(db)
        .await?;
    Ok(())
}
