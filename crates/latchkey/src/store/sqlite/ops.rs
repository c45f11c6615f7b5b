//! Keys, server secrets, the audit trail, limit counters and housekeeping.

use super::*;

#[async_trait]
impl OpsStore for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query(sql::PING.lite).execute(&self.read).await?;
        Ok(())
    }

    async fn secret_or_insert(&self, name: &str, fresh: &[u8]) -> StoreResult<Vec<u8>> {
        let (name, fresh) = (name.to_owned(), fresh.to_vec());
        self.write(move |c| {
            c.prepare_cached(sql::INSERT_SECRET.lite)?.execute(params![name, fresh])?;
            Ok(c.prepare_cached(sql::SECRET.lite)?.query_row([&name], |r| r.get(0))?)
        })
        .await
    }

    async fn reseal(&self, name: &str, signing_key: bool, old: &[u8], new: &[u8]) -> StoreResult<bool> {
        let (name, old, new) = (name.to_owned(), old.to_vec(), new.to_vec());
        let sql = if signing_key { sql::RESEAL_SIGNING_KEY } else { sql::RESEAL_SECRET };
        self.write(move |c| Ok(c.prepare_cached(sql.lite)?.execute(params![name, new, old])? == 1)).await
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>> {
        Ok(sqlx::query_as(sql::SIGNING_KEYS.lite).fetch_all(&self.read).await?)
    }

    async fn rotate_signing_key(&self, key: &SigningKeyRow, now: i64) -> StoreResult<()> {
        let key = key.clone();
        // One writer: rotations are serialised without a lock.
        self.write(move |c| {
            c.prepare_cached(sql::RETIRE_SIGNING_KEYS.lite)?.execute(params![now, key.alg])?;
            c.prepare_cached(sql::INSERT_SIGNING_KEY.lite)?.execute(params![key.kid, key.seed, key.created_at, key.alg])?;
            Ok(())
        })
        .await
    }

    async fn insert_first_signing_key(&self, key: &SigningKeyRow) -> StoreResult<()> {
        let key = key.clone();
        self.write(move |c| {
            c.prepare_cached(sql::INSERT_FIRST_SIGNING_KEY.lite)?.execute(params![key.kid, key.seed, key.created_at, key.alg])?;
            Ok(())
        })
        .await
    }

    async fn sweep(&self, now: i64, keep_dead: i64) -> StoreResult<u64> {
        let mut deleted = self.memory.sweep(now);
        // One statement per operation, so a long sweep never holds up requests for long.
        for (sql, cutoff) in sql::sweeps(now, keep_dead) {
            deleted += self.write(move |c| Ok(c.execute(sql.lite, [cutoff])? as u64)).await?;
        }
        Ok(deleted)
    }

    async fn record_audit(&self, e: &AuditRow) -> StoreResult<()> {
        let e = e.clone();
        self.write(move |c| insert_audit(c, &e)).await
    }

    async fn audit_for_user(&self, user_id: &str, limit: i64) -> StoreResult<Vec<AuditRow>> {
        Ok(sqlx::query_as(sql::AUDIT_FOR_USER.lite).bind(user_id).bind(limit).fetch_all(&self.read).await?)
    }

    async fn audit_all(&self, limit: i64) -> StoreResult<Vec<AuditRow>> {
        Ok(sqlx::query_as(sql::AUDIT_ALL.lite).bind(limit).fetch_all(&self.read).await?)
    }

    /// In memory (see `memory`): one process serves the file.
    async fn hit_rate_limit(&self, key: &str, window: i64, now: i64) -> StoreResult<WindowCounts> {
        Ok(self.memory.hit(key, window, now))
    }

    async fn peek_rate_limit(&self, key: &str, window: i64, now: i64) -> StoreResult<WindowCounts> {
        Ok(self.memory.peek(key, window, now))
    }

    async fn login_failures(&self, key: &str) -> StoreResult<Option<(u32, i64)>> {
        let row: Option<(i64, i64)> = self.one(sql::LOGIN_FAILURES.lite, [key], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(row.map(|(f, at)| (u32::try_from(f).unwrap_or(u32::MAX), at)))
    }

    async fn record_login_failure(&self, key: &str, now: i64) -> StoreResult<()> {
        let key = key.to_owned();
        self.write(move |c| {
            c.prepare_cached(sql::RECORD_LOGIN_FAILURE.lite)?.execute(params![key, now])?;
            Ok(())
        })
        .await
    }

    async fn clear_login_failures(&self, key: &str) -> StoreResult<()> {
        let key = key.to_owned();
        self.write(move |c| {
            c.prepare_cached(sql::CLEAR_LOGIN_FAILURES.lite)?.execute([key])?;
            Ok(())
        })
        .await
    }
}
