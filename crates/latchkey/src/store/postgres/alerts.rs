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

    async fn create_email_link(&self, row: &EmailLinkRow) -> StoreResult<()> {
        bind_pg(sqlx::query(sql::INSERT_EMAIL_LINK.pg), &sql::email_link_values(row)).execute(&self.pool).await.map_err(conflict_or)?;
        Ok(())
    }

    async fn email_link(&self, token_hash: &[u8], purpose: &str, now: i64) -> StoreResult<Option<EmailLinkRow>> {
        Ok(sqlx::query_as(sql::EMAIL_LINK.pg).bind(token_hash).bind(purpose).bind(now).fetch_optional(&self.pool).await?)
    }

    async fn use_email_link(&self, token_hash: &[u8], purpose: &str, now: i64) -> StoreResult<Option<EmailLinkRow>> {
        Ok(sqlx::query_as(sql::USE_EMAIL_LINK.pg).bind(now).bind(token_hash).bind(purpose).fetch_optional(&self.pool).await?)
    }

    async fn end_email_links(&self, user_id: &str, purpose: &str, now: i64) -> StoreResult<u64> {
        Ok(sqlx::query(sql::END_EMAIL_LINKS.pg).bind(now).bind(user_id).bind(purpose).execute(&self.pool).await?.rows_affected())
    }

    async fn verify_email(&self, user_id: &str, email: &str, now: i64) -> StoreResult<bool> {
        Ok(sqlx::query(sql::VERIFY_EMAIL.pg).bind(now).bind(user_id).bind(email).execute(&self.pool).await?.rows_affected() == 1)
    }
}
