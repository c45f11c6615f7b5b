//! "This wasn't me" links and the per-account choice of new-device mail.

use super::*;

#[async_trait]
impl AlertStore for PgStore {
    async fn create_device_alert(&self, row: &DeviceAlertRow) -> StoreResult<()> {
        bind_pg(sqlx::query(sql::INSERT_DEVICE_ALERT.pg), &sql::device_alert_values(row)).execute(&self.pool).await.map_err(conflict_or)?;
        Ok(())
    }

    async fn device_alert(&self, token_hash: &[u8], now: i64) -> StoreResult<Option<DeviceAlertRow>> {
        Ok(sqlx::query_as(sql::DEVICE_ALERT.pg).bind(token_hash).bind(now).fetch_optional(&self.pool).await?)
    }

    async fn use_device_alert(&self, token_hash: &[u8], now: i64) -> StoreResult<Option<DeviceAlertRow>> {
        Ok(sqlx::query_as(sql::USE_DEVICE_ALERT.pg).bind(now).bind(token_hash).fetch_optional(&self.pool).await?)
    }

    async fn new_device_mail(&self, user_id: &str) -> StoreResult<bool> {
        Ok(sqlx::query_scalar(sql::NEW_DEVICE_MAIL.pg).bind(user_id).fetch_optional(&self.pool).await?.unwrap_or(false))
    }

    async fn set_new_device_mail(&self, user_id: &str, on: bool) -> StoreResult<()> {
        sqlx::query(sql::SET_NEW_DEVICE_MAIL.pg).bind(on).bind(user_id).execute(&self.pool).await?;
        Ok(())
    }
}
