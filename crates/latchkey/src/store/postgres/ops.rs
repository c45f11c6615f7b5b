//! Keys, server secrets, the audit trail, limit counters and housekeeping.

use super::*;

#[async_trait]
impl OpsStore for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn secret_or_insert(&self, name: &str, fresh: &[u8]) -> StoreResult<Vec<u8>> {
        sqlx::query("INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(fresh)
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = $1").bind(name).fetch_one(&self.pool).await?)
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>> {
        Ok(sqlx::query_as("SELECT kid, seed, created_at, retired_at FROM signing_keys ORDER BY created_at DESC, kid")
            .fetch_all(&self.pool)
            .await?)
    }

    async fn rotate_signing_key(&self, key: &SigningKeyRow, now: i64) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // Serialise rotations (from several instances or `keys rotate`), so that each one retires
        // the key the previous one added instead of tripping over the one-active-key index.
        xact_lock(&mut tx, LOCK_SIGNING_KEYS, "").await?;
        sqlx::query("UPDATE signing_keys SET retired_at = $1 WHERE retired_at IS NULL").bind(now).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO signing_keys (kid, seed, created_at, retired_at) VALUES ($1, $2, $3, NULL)")
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
            "INSERT INTO signing_keys (kid, seed, created_at, retired_at) SELECT $1, $2, $3, NULL \
             WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE retired_at IS NULL) ON CONFLICT DO NOTHING",
        )
        .bind(&key.kid)
        .bind(&key.seed)
        .bind(key.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn sweep(&self, now: i64, keep_dead: i64) -> StoreResult<u64> {
        let day = 86_400;
        let statements: [(&'static str, i64); 9] = [
            ("DELETE FROM mfa_tokens WHERE expires_at < $1", now - day),
            ("DELETE FROM email_codes WHERE expires_at < $1", now - day),
            ("DELETE FROM device_trust WHERE expires_at < $1", now),
            ("DELETE FROM rate_limits WHERE window_start < $1", now - 2 * day),
            ("DELETE FROM login_failures WHERE last_failure_at < $1", now - day),
            ("DELETE FROM pairing_codes WHERE expires_at < $1", now - day),
            (
                "DELETE FROM approvals WHERE expires_at < $1 AND id NOT IN (SELECT approval_id FROM pairing_codes WHERE approval_id IS NOT NULL)",
                now - day,
            ),
            ("DELETE FROM sessions WHERE COALESCE(revoked_at, expires_at) < $1", now - keep_dead),
            ("DELETE FROM refresh_tokens WHERE superseded_at IS NOT NULL AND expires_at < $1", now - day),
        ];
        let mut deleted = 0;
        for (sql, cutoff) in statements {
            deleted += sqlx::query(sql).bind(cutoff).execute(&self.pool).await?.rows_affected();
        }
        Ok(deleted)
    }

    async fn record_audit(&self, e: &AuditRow) -> StoreResult<()> {
        insert_audit(&self.pool, e).await
    }

    async fn audit_for_user(&self, user_id: &str, limit: i64) -> StoreResult<Vec<AuditRow>> {
        Ok(sqlx::query_as(
            "SELECT id, at, kind, user_id, device_id, ip, user_agent, detail FROM audit_events WHERE user_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn audit_all(&self, limit: i64) -> StoreResult<Vec<AuditRow>> {
        Ok(sqlx::query_as("SELECT id, at, kind, user_id, device_id, ip, user_agent, detail FROM audit_events ORDER BY id DESC LIMIT $1")
            .bind(limit)
            .fetch_all(&self.pool)
            .await?)
    }

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
        let row: Option<(i64, i64)> = sqlx::query_as("SELECT failures, last_failure_at FROM login_failures WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(f, at)| (u32::try_from(f).unwrap_or(u32::MAX), at)))
    }

    async fn record_login_failure(&self, key: &str, now: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO login_failures (key, failures, last_failure_at) VALUES ($1, 1, $2) \
             ON CONFLICT (key) DO UPDATE SET failures = login_failures.failures + 1, last_failure_at = excluded.last_failure_at",
        )
        .bind(key)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn clear_login_failures(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM login_failures WHERE key = $1").bind(key).execute(&self.pool).await?;
        Ok(())
    }
}
