//! "This wasn't me" links and the per-account choice of new-device mail.

use super::*;

fn alert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceAlertRow> {
    Ok(from_row!(r, DeviceAlertRow { token_hash, user_id, device_id, created_at, expires_at, used_at }))
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
}
