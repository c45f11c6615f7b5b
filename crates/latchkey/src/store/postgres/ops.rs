//! Keys, server secrets, the audit trail, limit counters and housekeeping.

use super::*;

#[async_trait]
impl OpsStore for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query(sql::PING.pg).execute(&self.pool).await?;
        Ok(())
    }

    async fn secret_or_insert(&self, name: &str, fresh: &[u8]) -> StoreResult<Vec<u8>> {
        sqlx::query(sql::INSERT_SECRET.pg).bind(name).bind(fresh).execute(&self.pool).await?;
        Ok(sqlx::query_scalar(sql::SECRET.pg).bind(name).fetch_one(&self.pool).await?)
    }

    async fn reseal(&self, name: &str, signing_key: bool, old: &[u8], new: &[u8]) -> StoreResult<bool> {
        let sql = if signing_key { sql::RESEAL_SIGNING_KEY } else { sql::RESEAL_SECRET };
        Ok(sqlx::query(sql.pg).bind(name).bind(new).bind(old).execute(&self.pool).await?.rows_affected() == 1)
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>> {
        Ok(sqlx::query_as(sql::SIGNING_KEYS.pg).fetch_all(&self.pool).await?)
    }

    async fn rotate_signing_key(&self, key: &SigningKeyRow, now: i64) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // Serialise rotations (from several instances or `keys rotate`), so that each one retires
        // the key the previous one added instead of tripping over the one-active-key index.
        xact_lock(&mut tx, LOCK_SIGNING_KEYS, &key.alg).await?;
        sqlx::query(sql::RETIRE_SIGNING_KEYS.pg).bind(now).bind(&key.alg).execute(&mut *tx).await?;
        sqlx::query(sql::INSERT_SIGNING_KEY.pg)
            .bind(&key.kid)
            .bind(&key.seed)
            .bind(key.created_at)
            .bind(&key.alg)
            .execute(&mut *tx)
            .await
            .map_err(conflict_or)?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_first_signing_key(&self, key: &SigningKeyRow) -> StoreResult<()> {
        sqlx::query(sql::INSERT_FIRST_SIGNING_KEY.pg)
            .bind(&key.kid)
            .bind(&key.seed)
            .bind(key.created_at)
            .bind(&key.alg)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn sweep(&self, now: i64, keep_dead: i64) -> StoreResult<u64> {
        let mut deleted = 0;
        for (sql, cutoff) in sql::sweeps(now, keep_dead) {
            deleted += sqlx::query(sql.pg).bind(cutoff).execute(&self.pool).await?.rows_affected();
        }
        Ok(deleted)
    }

    async fn record_audit(&self, e: &AuditRow) -> StoreResult<()> {
        insert_audit(&self.pool, e).await
    }

    async fn audit_for_user(&self, user_id: &str, limit: i64) -> StoreResult<Vec<AuditRow>> {
        Ok(sqlx::query_as(sql::AUDIT_FOR_USER.pg).bind(user_id).bind(limit).fetch_all(&self.pool).await?)
    }

    async fn audit_all(&self, limit: i64) -> StoreResult<Vec<AuditRow>> {
        Ok(sqlx::query_as(sql::AUDIT_ALL.pg).bind(limit).fetch_all(&self.pool).await?)
    }

    /// PostgreSQL only: the windows are rows here, shared by every instance on the database;
    /// SQLite, served by one process, keeps them in memory (`sqlite::memory`).
    async fn hit_rate_limit(&self, key: &str, window: i64, now: i64) -> StoreResult<WindowCounts> {
        let window = window.max(1);
        let start = now - now.rem_euclid(window);
        let (current, previous): (i64, i64) = sqlx::query_as(
            "INSERT INTO rate_limits (key, window_start, count, prev_count) VALUES ($1, $2, 1, 0) \
             ON CONFLICT (key) DO UPDATE SET \
               prev_count = CASE WHEN rate_limits.window_start = excluded.window_start THEN rate_limits.prev_count \
                                 WHEN rate_limits.window_start = excluded.window_start - $3 THEN rate_limits.count ELSE 0 END, \
               count = CASE WHEN rate_limits.window_start = excluded.window_start THEN rate_limits.count + 1 ELSE 1 END, \
               window_start = excluded.window_start \
             RETURNING count, prev_count",
        )
        .bind(key)
        .bind(start)
        .bind(window)
        .fetch_one(&self.pool)
        .await?;
        Ok(WindowCounts { current, previous })
    }

    /// PostgreSQL only, as `hit_rate_limit`.
    async fn peek_rate_limit(&self, key: &str, window: i64, now: i64) -> StoreResult<WindowCounts> {
        let window = window.max(1);
        let start = now - now.rem_euclid(window);
        let row: Option<(i64, i64, i64)> = sqlx::query_as("SELECT window_start, count, prev_count FROM rate_limits WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some((ws, count, prev)) if ws == start => WindowCounts { current: count, previous: prev },
            Some((ws, count, _)) if ws == start - window => WindowCounts { current: 0, previous: count },
            _ => WindowCounts::default(),
        })
    }

    async fn login_failures(&self, key: &str) -> StoreResult<Option<(u32, i64)>> {
        let row: Option<(i64, i64)> = sqlx::query_as(sql::LOGIN_FAILURES.pg).bind(key).fetch_optional(&self.pool).await?;
        Ok(row.map(|(f, at)| (u32::try_from(f).unwrap_or(u32::MAX), at)))
    }

    async fn record_login_failure(&self, key: &str, now: i64) -> StoreResult<()> {
        sqlx::query(sql::RECORD_LOGIN_FAILURE.pg).bind(key).bind(now).execute(&self.pool).await?;
        Ok(())
    }

    async fn clear_login_failures(&self, key: &str) -> StoreResult<()> {
        sqlx::query(sql::CLEAR_LOGIN_FAILURES.pg).bind(key).execute(&self.pool).await?;
        Ok(())
    }
}
