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
        Ok(sqlx::query_as(sql::SESSION_BY_ID.pg).bind(id).fetch_optional(&self.pool).await?)
    }

    async fn session_by_web_token(&self, hash: &[u8]) -> StoreResult<Option<SessionRow>> {
        Ok(sqlx::query_as(sql::SESSION_BY_WEB_TOKEN.pg).bind(hash).fetch_optional(&self.pool).await?)
    }

    async fn touch_session(&self, s: &SessionRow, ip: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // Device before session, the order revoke_device locks them in, so the two cannot deadlock.
        sqlx::query(sql::TOUCH_DEVICE.pg).bind(now).bind(ip).bind(&s.device_id).execute(&mut *tx).await?;
        sqlx::query(sql::TOUCH_SESSION.pg).bind(now).bind(&s.id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_session(&self, id: &str, reason: &str, now: i64) -> StoreResult<bool> {
        let r = sqlx::query(sql::REVOKE_SESSION.pg).bind(now).bind(reason).bind(id).execute(&self.pool).await?;
        Ok(r.rows_affected() == 1)
    }

    async fn revoke_user_sessions(&self, user_id: &str, except: Option<&str>, reason: &str, now: i64) -> StoreResult<u64> {
        let r = sqlx::query(sql::REVOKE_USER_SESSIONS.pg).bind(now).bind(reason).bind(user_id).bind(except).execute(&self.pool).await?;
        Ok(r.rows_affected())
    }

    async fn count_live_sessions(&self, now: i64) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(sql::COUNT_LIVE_SESSIONS.pg).bind(now).fetch_one(&self.pool).await?)
    }

    async fn device(&self, user_id: &str, device_id: &str) -> StoreResult<Option<DeviceRow>> {
        Ok(sqlx::query_as(sql::DEVICE.pg).bind(device_id).bind(user_id).fetch_optional(&self.pool).await?)
    }

    async fn devices_for_user(&self, user_id: &str, now: i64) -> StoreResult<Vec<DeviceRow>> {
        Ok(sqlx::query_as(sql::DEVICES_FOR_USER.pg).bind(user_id).bind(now).bind(now).fetch_all(&self.pool).await?)
    }

    async fn revoke_device(&self, user_id: &str, device_id: &str, now: i64) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(sql::REVOKE_DEVICE.pg).bind(now).bind(device_id).bind(user_id).execute(&mut *tx).await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(sql::REVOKE_DEVICE_SESSIONS.pg).bind(now).bind(device_id).execute(&mut *tx).await?;
        sqlx::query(sql::DELETE_DEVICE_TRUST.pg).bind(device_id).execute(&mut *tx).await?;
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
        let session_id: Option<String> = sqlx::query_scalar(sql::SUPERSEDE_REFRESH.pg)
            .bind(now)
            .bind(new_hash)
            .bind(old_hash)
            .bind(client_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(session_id) = session_id else {
            drop(tx);
            return Ok(Rotation::NotRotated(self.refresh_token(old_hash).await?));
        };
        let expires_at: i64 = sqlx::query_scalar(sql::INSERT_SUCCESSOR.pg)
            .bind(new_hash)
            .bind(client_id)
            .bind(now)
            .bind(idle_expires_at)
            .bind(&session_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(conflict_or)?;
        let session: SessionRow = sqlx::query_as(sql::USE_SESSION.pg).bind(now).bind(&session_id).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok(Rotation::Rotated { session, expires_at })
    }

    async fn refresh_token(&self, hash: &[u8]) -> StoreResult<Option<RefreshTokenRow>> {
        Ok(sqlx::query_as(sql::REFRESH_BY_HASH.pg).bind(hash).fetch_optional(&self.pool).await?)
    }
}
