//! The embedded SQLite backend (WAL). Write transactions start with `BEGIN IMMEDIATE` so that
//! concurrent writers queue on the busy timeout instead of failing a lock upgrade.

use super::*;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::time::Duration;

pub struct SqliteStore {
    pool: SqlitePool,
}

const SESSION_COLS: &str = "id, user_id, device_id, client_id, scope, amr, web_token_hash, created_at, last_used_at, expires_at, revoked_at, revoke_reason";

fn conflict_or(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Backend(e),
    }
}

impl SqliteStore {
    pub async fn open(url: &str, max_connections: u32) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(opts)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }

    async fn write_tx(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn secret_or_insert(&self, name: &str, fresh: &[u8]) -> StoreResult<Vec<u8>> {
        sqlx::query(
            "INSERT INTO server_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(fresh)
        .execute(&self.pool)
        .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = ?")
                .bind(name)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>> {
        Ok(sqlx::query_as("SELECT kid, seed, created_at, retired_at FROM signing_keys ORDER BY created_at DESC, kid")
            .fetch_all(&self.pool)
            .await?)
    }

    async fn rotate_signing_key(&self, key: &SigningKeyRow, now: i64) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, seed, created_at, retired_at) VALUES (?, ?, ?, NULL)",
        )
        .bind(&key.kid)
        .bind(&key.seed)
        .bind(key.created_at)
        .execute(&mut *tx)
        .await
        .map_err(conflict_or)?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_first_signing_key(&self, key: &SigningKeyRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, seed, created_at, retired_at) SELECT ?, ?, ?, NULL \
             WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE retired_at IS NULL) ON CONFLICT DO NOTHING",
        )
        .bind(&key.kid)
        .bind(&key.seed)
        .bind(key.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn create_user(&self, u: &UserRow) -> StoreResult<()> {
        sqlx::query("INSERT INTO users (id, email, password_hash, created_at) VALUES (?, ?, ?, ?)")
            .bind(&u.id)
            .bind(&u.email)
            .bind(&u.password_hash)
            .bind(u.created_at)
            .execute(&self.pool)
            .await
            .map_err(conflict_or)?;
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRow>> {
        Ok(
            sqlx::query_as(
                "SELECT id, email, password_hash, created_at FROM users WHERE email = ?",
            )
            .bind(email)
            .fetch_optional(&self.pool)
            .await?,
        )
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRow>> {
        Ok(
            sqlx::query_as("SELECT id, email, password_hash, created_at FROM users WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn create_client(&self, c: &ClientRow) -> StoreResult<()> {
        sqlx::query("INSERT INTO clients (id, name, secret_hash, created_at) VALUES (?, ?, ?, ?)")
            .bind(&c.id)
            .bind(&c.name)
            .bind(&c.secret_hash)
            .bind(c.created_at)
            .execute(&self.pool)
            .await
            .map_err(conflict_or)?;
        Ok(())
    }

    async fn client(&self, id: &str) -> StoreResult<Option<ClientRow>> {
        Ok(
            sqlx::query_as("SELECT id, name, secret_hash, created_at FROM clients WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn create_session(
        &self,
        d: &DeviceRow,
        s: &SessionRow,
        refresh: Option<&RefreshTokenRow>,
    ) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
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
        .execute(&mut *tx)
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
        .execute(&mut *tx)
        .await
        .map_err(conflict_or)?;
        if let Some(r) = refresh {
            sqlx::query("INSERT INTO refresh_tokens (hash, session_id, client_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)")
                .bind(&r.hash)
                .bind(&r.session_id)
                .bind(&r.client_id)
                .bind(r.created_at)
                .bind(r.expires_at)
                .execute(&mut *tx)
                .await
                .map_err(conflict_or)?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn session(&self, id: &str) -> StoreResult<Option<SessionRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE id = ?"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn session_by_web_token(&self, hash: &[u8]) -> StoreResult<Option<SessionRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE web_token_hash = ?"
        )))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn touch_session(&self, s: &SessionRow, ip: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("UPDATE sessions SET last_used_at = ? WHERE id = ?")
            .bind(now)
            .bind(&s.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE devices SET last_seen_at = ?, last_ip = ? WHERE id = ?")
            .bind(now)
            .bind(ip)
            .bind(&s.device_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_session(&self, id: &str, reason: &str, now: i64) -> StoreResult<bool> {
        let r = sqlx::query("UPDATE sessions SET revoked_at = ?, revoke_reason = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(reason)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn revoke_user_sessions(
        &self,
        user_id: &str,
        except: Option<&str>,
        reason: &str,
        now: i64,
    ) -> StoreResult<u64> {
        let r = sqlx::query(
            "UPDATE sessions SET revoked_at = ?, revoke_reason = ? WHERE user_id = ? AND revoked_at IS NULL AND id IS NOT ?",
        )
        .bind(now)
        .bind(reason)
        .bind(user_id)
        .bind(except)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    async fn count_live_sessions(&self, now: i64) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(
            "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > ?",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn devices_for_user(&self, user_id: &str) -> StoreResult<Vec<DeviceRow>> {
        Ok(sqlx::query_as(
            "SELECT id, user_id, name, kind, os, browser, user_agent, authorized_by, approved_by_device, first_seen_at, \
             last_seen_at, last_ip, trusted_until, revoked_at FROM devices WHERE user_id = ? AND revoked_at IS NULL \
             ORDER BY last_seen_at DESC",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn revoke_device(&self, user_id: &str, device_id: &str, now: i64) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let r = sqlx::query("UPDATE devices SET revoked_at = ?, trusted_until = NULL WHERE id = ? AND user_id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(device_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE sessions SET revoked_at = ?, revoke_reason = 'device_revoked' WHERE device_id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn rotate_refresh_token(
        &self,
        old_hash: &[u8],
        client_id: &str,
        new_hash: &[u8],
        idle_expires_at: i64,
        now: i64,
    ) -> StoreResult<Rotation> {
        let mut tx = self.write_tx().await?;
        let session_id: Option<String> = sqlx::query_scalar(
            "UPDATE refresh_tokens SET superseded_at = ?, successor_hash = ? \
             WHERE hash = ? AND client_id = ? AND superseded_at IS NULL AND expires_at > ? \
             AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = refresh_tokens.session_id AND s.revoked_at IS NULL AND s.expires_at > ?) \
             RETURNING session_id",
        )
        .bind(now)
        .bind(new_hash)
        .bind(old_hash)
        .bind(client_id)
        .bind(now)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(session_id) = session_id else {
            drop(tx);
            return Ok(Rotation::NotRotated(self.refresh_token(old_hash).await?));
        };
        let expires_at: i64 = sqlx::query_scalar(
            "INSERT INTO refresh_tokens (hash, session_id, client_id, created_at, expires_at) \
             SELECT ?, s.id, ?, ?, MIN(?, s.expires_at) FROM sessions s WHERE s.id = ? RETURNING expires_at",
        )
        .bind(new_hash)
        .bind(client_id)
        .bind(now)
        .bind(idle_expires_at)
        .bind(&session_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict_or)?;
        let session: SessionRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE sessions SET last_used_at = ? WHERE id = ? RETURNING {SESSION_COLS}"
        )))
        .bind(now)
        .bind(&session_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Rotation::Rotated {
            session,
            expires_at,
        })
    }

    async fn refresh_token(&self, hash: &[u8]) -> StoreResult<Option<RefreshTokenRow>> {
        Ok(sqlx::query_as(
            "SELECT hash, session_id, client_id, created_at, expires_at, superseded_at, successor_hash FROM refresh_tokens WHERE hash = ?",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn record_audit(&self, e: &AuditRow) -> StoreResult<()> {
        sqlx::query("INSERT INTO audit_events (at, kind, user_id, device_id, ip, user_agent, detail) VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(e.at)
            .bind(&e.kind)
            .bind(&e.user_id)
            .bind(&e.device_id)
            .bind(&e.ip)
            .bind(&e.user_agent)
            .bind(&e.detail)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn audit_for_user(&self, user_id: &str, limit: i64) -> StoreResult<Vec<AuditRow>> {
        Ok(sqlx::query_as(
            "SELECT id, at, kind, user_id, device_id, ip, user_agent, detail FROM audit_events WHERE user_id = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn audit_all(&self, limit: i64) -> StoreResult<Vec<AuditRow>> {
        Ok(sqlx::query_as(
            "SELECT id, at, kind, user_id, device_id, ip, user_agent, detail FROM audit_events ORDER BY id DESC LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn hit_rate_limit(&self, key: &str, window: i64, now: i64) -> StoreResult<(i64, i64)> {
        let start = now - now.rem_euclid(window.max(1));
        let count: i64 = sqlx::query_scalar(
            "INSERT INTO rate_limits (key, window_start, count) VALUES (?, ?, 1) \
             ON CONFLICT (key) DO UPDATE SET \
               count = CASE WHEN rate_limits.window_start = excluded.window_start THEN rate_limits.count + 1 ELSE 1 END, \
               window_start = excluded.window_start \
             RETURNING count",
        )
        .bind(key)
        .bind(start)
        .fetch_one(&self.pool)
        .await?;
        Ok((count, start + window))
    }

    async fn login_failures(&self, key: &str) -> StoreResult<Option<(u32, i64)>> {
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT failures, last_failure_at FROM login_failures WHERE key = ?")
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(f, at)| (u32::try_from(f).unwrap_or(u32::MAX), at)))
    }

    async fn record_login_failure(&self, key: &str, now: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO login_failures (key, failures, last_failure_at) VALUES (?, 1, ?) \
             ON CONFLICT (key) DO UPDATE SET failures = login_failures.failures + 1, last_failure_at = excluded.last_failure_at",
        )
        .bind(key)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn clear_login_failures(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM login_failures WHERE key = ?")
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
