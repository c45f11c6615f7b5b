//! Devices, sessions and refresh tokens.

use super::*;

#[async_trait]
impl SessionStore for PgStore {
    async fn create_session(&self, d: &DeviceRow, s: &SessionRow, refresh: Option<&RefreshTokenRow>) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        insert_session_rows(&mut tx, d, s, refresh).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session(&self, id: &str) -> StoreResult<Option<SessionRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {SESSION_COLS} FROM sessions WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn session_by_web_token(&self, hash: &[u8]) -> StoreResult<Option<SessionRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {SESSION_COLS} FROM sessions WHERE web_token_hash = $1")))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn touch_session(&self, s: &SessionRow, ip: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // Device before session, the order revoke_device locks them in, so the two cannot deadlock.
        sqlx::query("UPDATE devices SET last_seen_at = $1, last_ip = $2 WHERE id = $3")
            .bind(now)
            .bind(ip)
            .bind(&s.device_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE sessions SET last_used_at = $1 WHERE id = $2").bind(now).bind(&s.id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_session(&self, id: &str, reason: &str, now: i64) -> StoreResult<bool> {
        let r = sqlx::query("UPDATE sessions SET revoked_at = $1, revoke_reason = $2 WHERE id = $3 AND revoked_at IS NULL")
            .bind(now)
            .bind(reason)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn revoke_user_sessions(&self, user_id: &str, except: Option<&str>, reason: &str, now: i64) -> StoreResult<u64> {
        let r = sqlx::query(
            "UPDATE sessions SET revoked_at = $1, revoke_reason = $2 WHERE user_id = $3 AND revoked_at IS NULL AND id IS DISTINCT FROM $4",
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
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > $1")
            .bind(now)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn device(&self, user_id: &str, device_id: &str) -> StoreResult<Option<DeviceRow>> {
        Ok(sqlx::query_as(
            "SELECT id, user_id, name, kind, os, browser, user_agent, authorized_by, approved_by_device, first_seen_at, \
             last_seen_at, last_ip, trusted_until, revoked_at FROM devices WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
        )
        .bind(device_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn devices_for_user(&self, user_id: &str, now: i64) -> StoreResult<Vec<DeviceRow>> {
        Ok(sqlx::query_as(
            "SELECT id, user_id, name, kind, os, browser, user_agent, authorized_by, approved_by_device, first_seen_at, \
             last_seen_at, last_ip, trusted_until, revoked_at FROM devices d WHERE user_id = $1 AND revoked_at IS NULL \
             AND (trusted_until > $2 OR EXISTS (SELECT 1 FROM sessions s WHERE s.device_id = d.id AND s.revoked_at IS NULL AND s.expires_at > $3)) \
             ORDER BY last_seen_at DESC",
        )
        .bind(user_id)
        .bind(now)
        .bind(now)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn revoke_device(&self, user_id: &str, device_id: &str, now: i64) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let r =
            sqlx::query("UPDATE devices SET revoked_at = $1, trusted_until = NULL WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL")
                .bind(now)
                .bind(device_id)
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE sessions SET revoked_at = $1, revoke_reason = 'device_revoked' WHERE device_id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM device_trust WHERE device_id = $1").bind(device_id).execute(&mut *tx).await?;
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
        let mut tx = self.pool.begin().await?;
        let session_id: Option<String> = sqlx::query_scalar(
            "UPDATE refresh_tokens SET superseded_at = $1, successor_hash = $2 \
             WHERE hash = $3 AND client_id = $4 AND superseded_at IS NULL AND expires_at > $5 \
             AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = refresh_tokens.session_id AND s.revoked_at IS NULL AND s.expires_at > $6) \
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
             SELECT $1, s.id, $2, $3, LEAST($4, s.expires_at) FROM sessions s WHERE s.id = $5 RETURNING expires_at",
        )
        .bind(new_hash)
        .bind(client_id)
        .bind(now)
        .bind(idle_expires_at)
        .bind(&session_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict_or)?;
        let session: SessionRow =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("UPDATE sessions SET last_used_at = $1 WHERE id = $2 RETURNING {SESSION_COLS}")))
                .bind(now)
                .bind(&session_id)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Rotation::Rotated { session, expires_at })
    }

    async fn refresh_token(&self, hash: &[u8]) -> StoreResult<Option<RefreshTokenRow>> {
        Ok(sqlx::query_as(
            "SELECT hash, session_id, client_id, created_at, expires_at, superseded_at, successor_hash FROM refresh_tokens WHERE hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?)
    }
}
