//! The PostgreSQL backend, for one database shared by several instances. Every single-use thing
//! is consumed by one conditional `UPDATE … WHERE … RETURNING` (or a conditional insert / upsert),
//! which PostgreSQL makes atomic under READ COMMITTED: a second writer waits on the row lock and
//! re-checks the condition against the committed row. The few multi-statement writes whose
//! correctness needs them serialised (caps on pending approvals, signing-key rotation, one live
//! pairing code per device) take a transaction-scoped advisory lock first.

use super::*;

mod accounts;
mod alerts;
mod approvals;
mod grants;
mod identities;
mod mfa;
mod ops;
mod passkeys;
mod sessions;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use std::str::FromStr;
use std::time::Duration;

/// One pool; PostgreSQL handles concurrent writers itself.
pub struct PgStore {
    pool: PgPool,
}

// Statements and column lists are in `store::sql`, shared with SQLite; the names the approval file
// uses are brought in here.
use super::sql::{self, approval_cols, bind_pg};

fn conflict_or(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Backend(e),
    }
}

async fn insert_session_rows(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    d: &DeviceRow,
    s: &SessionRow,
    refresh: Option<&RefreshTokenRow>,
) -> StoreResult<()> {
    bind_pg(sqlx::query(sql::INSERT_DEVICE.pg), &sql::device_values(d)).execute(&mut **tx).await?;
    bind_pg(sqlx::query(sql::INSERT_SESSION.pg), &sql::session_values(s)).execute(&mut **tx).await.map_err(conflict_or)?;
    if let Some(r) = refresh {
        bind_pg(sqlx::query(sql::INSERT_REFRESH.pg), &sql::refresh_values(r)).execute(&mut **tx).await.map_err(conflict_or)?;
    }
    Ok(())
}

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
    /// Removes one way in (an identity or a passkey: `delete` takes `$1` its id, `$2` the
    /// account) unless it is the account's last; `owns` tells a refusal from a row that is not
    /// the account's. The account's row lock makes two removals at once take turns; the second
    /// statement (a fresh snapshot under READ COMMITTED) then counts what the first left.
    async fn remove_way_in(&self, delete: sql::Sql, owns: sql::Sql, user_id: &str, id: &str) -> StoreResult<Unlinked> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT 1 FROM users WHERE id = $1 FOR UPDATE").bind(user_id).fetch_optional(&mut *tx).await?;
        let removed = sqlx::query(delete.pg).bind(id).bind(user_id).execute(&mut *tx).await?.rows_affected() == 1;
        let outcome = if removed {
            Unlinked::Removed
        } else {
            let mine: i64 = sqlx::query_scalar(owns.pg).bind(id).bind(user_id).fetch_one(&mut *tx).await?;
            if mine > 0 { Unlinked::LastWayIn } else { Unlinked::NotFound }
        };
        tx.commit().await?;
        Ok(outcome)
    }

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
    bind_pg(sqlx::query(sql::INSERT_AUDIT.pg), &sql::audit_values(e)).execute(db).await?;
    Ok(())
}
