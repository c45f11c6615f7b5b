//! Keys, server secrets, the audit trail, limit counters and housekeeping.

use super::*;

#[async_trait]
impl OpsStore for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn secret_or_insert(&self, name: &str, fresh: &[u8]) -> StoreResult<Vec<u8>> {
        let (name, fresh) = (name.to_owned(), fresh.to_vec());
        self.write(move |c| {
            c.prepare_cached("INSERT INTO server_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING")?
                .execute(params![name, fresh])?;
            Ok(c.prepare_cached("SELECT value FROM server_secrets WHERE name = ?")?.query_row([&name], |r| r.get(0))?)
        })
        .await
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>> {
        Ok(sqlx::query_as("SELECT kid, seed, created_at, retired_at FROM signing_keys ORDER BY created_at DESC, kid")
            .fetch_all(&self.read)
            .await?)
    }

    async fn rotate_signing_key(&self, key: &SigningKeyRow, now: i64) -> StoreResult<()> {
        let key = key.clone();
        self.write(move |c| {
            c.prepare_cached("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL")?.execute([now])?;
            c.prepare_cached("INSERT INTO signing_keys (kid, seed, created_at, retired_at) VALUES (?, ?, ?, NULL)")?.execute(params![
                key.kid,
                key.seed,
                key.created_at
            ])?;
            Ok(())
        })
        .await
    }

    async fn insert_first_signing_key(&self, key: &SigningKeyRow) -> StoreResult<()> {
        let key = key.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO signing_keys (kid, seed, created_at, retired_at) SELECT ?, ?, ?, NULL \
                 WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE retired_at IS NULL) ON CONFLICT DO NOTHING",
            )?
            .execute(params![key.kid, key.seed, key.created_at])?;
            Ok(())
        })
        .await
    }

    async fn sweep(&self, now: i64, keep_dead: i64) -> StoreResult<u64> {
        let day = 86_400;
        let statements: [(&'static str, i64); 9] = [
            ("DELETE FROM mfa_tokens WHERE expires_at < ?", now - day),
            ("DELETE FROM email_codes WHERE expires_at < ?", now - day),
            ("DELETE FROM device_trust WHERE expires_at < ?", now),
            ("DELETE FROM rate_limits WHERE window_start < ?", now - 2 * day),
            ("DELETE FROM login_failures WHERE last_failure_at < ?", now - day),
            ("DELETE FROM pairing_codes WHERE expires_at < ?", now - day),
            (
                "DELETE FROM approvals WHERE expires_at < ? AND id NOT IN (SELECT approval_id FROM pairing_codes WHERE approval_id IS NOT NULL)",
                now - day,
            ),
            ("DELETE FROM sessions WHERE COALESCE(revoked_at, expires_at) < ?", now - keep_dead),
            ("DELETE FROM refresh_tokens WHERE superseded_at IS NOT NULL AND expires_at < ?", now - day),
        ];
        let mut deleted = self.memory.sweep(now);
        // One statement per operation, so a long sweep never holds up requests for long.
        for (sql, cutoff) in statements {
            deleted += self.write(move |c| Ok(c.execute(sql, [cutoff])? as u64)).await?;
        }
        Ok(deleted)
    }

    async fn record_audit(&self, e: &AuditRow) -> StoreResult<()> {
        let e = e.clone();
        self.write(move |c| insert_audit(c, &e)).await
    }

    async fn audit_for_user(&self, user_id: &str, limit: i64) -> StoreResult<Vec<AuditRow>> {
        Ok(sqlx::query_as(
            "SELECT id, at, kind, user_id, device_id, ip, user_agent, detail FROM audit_events WHERE user_id = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }

    async fn audit_all(&self, limit: i64) -> StoreResult<Vec<AuditRow>> {
        Ok(sqlx::query_as("SELECT id, at, kind, user_id, device_id, ip, user_agent, detail FROM audit_events ORDER BY id DESC LIMIT ?")
            .bind(limit)
            .fetch_all(&self.read)
            .await?)
    }

    async fn hit_rate_limit(&self, key: &str, window: i64, now: i64) -> StoreResult<WindowCounts> {
        Ok(self.memory.hit(key, window, now))
    }

    async fn peek_rate_limit(&self, key: &str, window: i64, now: i64) -> StoreResult<WindowCounts> {
        Ok(self.memory.peek(key, window, now))
    }

    async fn login_failures(&self, key: &str) -> StoreResult<Option<(u32, i64)>> {
        let row: Option<(i64, i64)> =
            self.one("SELECT failures, last_failure_at FROM login_failures WHERE key = ?", [key], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(row.map(|(f, at)| (u32::try_from(f).unwrap_or(u32::MAX), at)))
    }

    async fn record_login_failure(&self, key: &str, now: i64) -> StoreResult<()> {
        let key = key.to_owned();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO login_failures (key, failures, last_failure_at) VALUES (?, 1, ?) \
                 ON CONFLICT (key) DO UPDATE SET failures = login_failures.failures + 1, last_failure_at = excluded.last_failure_at",
            )?
            .execute(params![key, now])?;
            Ok(())
        })
        .await
    }

    async fn clear_login_failures(&self, key: &str) -> StoreResult<()> {
        let key = key.to_owned();
        self.write(move |c| {
            c.prepare_cached("DELETE FROM login_failures WHERE key = ?")?.execute([key])?;
            Ok(())
        })
        .await
    }
}
