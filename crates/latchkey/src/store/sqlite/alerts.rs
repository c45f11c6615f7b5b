//! "This wasn't me" links and the per-account choice of new-device mail.

use super::*;

fn alert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceAlertRow> {
    Ok(from_row!(r, DeviceAlertRow { token_hash, user_id, device_id, created_at, expires_at, used_at }))
}

fn email_link_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EmailLinkRow> {
    Ok(from_row!(r, EmailLinkRow { token_hash, purpose, user_id, email, created_at, expires_at, used_at }))
}

#[async_trait]
impl AlertStore for SqliteStore {
    async fn create_device_alert(&self, row: &DeviceAlertRow) -> StoreResult<()> {
        let row = row.clone();
        self.write(move |c| {
            c.prepare_cached(sql::INSERT_DEVICE_ALERT.lite)?.execute(sql::device_alert_values(&row))?;
            Ok(())
        })
        .await
    }

    async fn device_alert(&self, token_hash: &[u8], now: i64) -> StoreResult<Option<DeviceAlertRow>> {
        self.one(sql::DEVICE_ALERT.lite, params![token_hash, now], alert_row)
    }

    async fn use_device_alert(&self, token_hash: &[u8], now: i64) -> StoreResult<Option<DeviceAlertRow>> {
        let hash = token_hash.to_vec();
        self.write(move |c| Ok(c.prepare_cached(sql::USE_DEVICE_ALERT.lite)?.query_row(params![now, hash], alert_row).optional()?)).await
    }

    async fn new_device_mail(&self, user_id: &str) -> StoreResult<bool> {
        Ok(self.one(sql::NEW_DEVICE_MAIL.lite, [user_id], |r| r.get(0))?.unwrap_or(false))
    }

    async fn set_new_device_mail(&self, user_id: &str, on: bool) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        self.write(move |c| {
            c.prepare_cached(sql::SET_NEW_DEVICE_MAIL.lite)?.execute(params![on, user_id])?;
            Ok(())
        })
        .await
    }

    async fn create_email_link(&self, row: &EmailLinkRow) -> StoreResult<()> {
        let row = row.clone();
        self.write(move |c| {
            c.prepare_cached(sql::INSERT_EMAIL_LINK.lite)?.execute(sql::email_link_values(&row))?;
            Ok(())
        })
        .await
    }

    async fn email_link(&self, token_hash: &[u8], purpose: &str, now: i64) -> StoreResult<Option<EmailLinkRow>> {
        self.one(sql::EMAIL_LINK.lite, params![token_hash, purpose, now], email_link_row)
    }

    async fn use_email_link(&self, token_hash: &[u8], purpose: &str, now: i64) -> StoreResult<Option<EmailLinkRow>> {
        let (hash, purpose) = (token_hash.to_vec(), purpose.to_owned());
        self.write(move |c| {
            Ok(c.prepare_cached(sql::USE_EMAIL_LINK.lite)?.query_row(params![now, hash, purpose], email_link_row).optional()?)
        })
        .await
    }

    async fn end_email_links(&self, user_id: &str, purpose: &str, now: i64) -> StoreResult<u64> {
        let (user_id, purpose) = (user_id.to_owned(), purpose.to_owned());
        self.write(move |c| Ok(c.prepare_cached(sql::END_EMAIL_LINKS.lite)?.execute(params![now, user_id, purpose])? as u64)).await
    }

    async fn verify_email(&self, user_id: &str, email: &str, now: i64) -> StoreResult<bool> {
        let (user_id, email) = (user_id.to_owned(), email.to_owned());
        self.write(move |c| Ok(c.prepare_cached(sql::VERIFY_EMAIL.lite)?.execute(params![now, user_id, email])? == 1)).await
    }
}
