//! Devices, sessions and refresh tokens.

use super::*;

pub(super) fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok(from_row!(
        r,
        DeviceRow {
            id,
            user_id,
            name,
            kind,
            os,
            browser,
            user_agent,
            authorized_by,
            approved_by_device,
            first_seen_at,
            last_seen_at,
            last_ip,
            trusted_until,
            revoked_at,
            passkey_verified,
        }
    ))
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, d: &DeviceRow, s: &SessionRow, refresh: Option<&RefreshTokenRow>) -> StoreResult<()> {
        let (d, s, refresh) = (d.clone(), s.clone(), refresh.cloned());
        self.write(move |c| insert_session_rows(c, &d, &s, refresh.as_ref())).await
    }

    async fn session(&self, id: &str) -> StoreResult<Option<SessionRow>> {
        self.one(sql::SESSION_BY_ID.lite, [id], session_row)
    }

    async fn session_by_web_token(&self, hash: &[u8]) -> StoreResult<Option<SessionRow>> {
        self.one(sql::SESSION_BY_WEB_TOKEN.lite, [hash], session_row)
    }

    async fn touch_session(&self, s: &SessionRow, ip: &str, now: i64) -> StoreResult<()> {
        let (session_id, device_id, ip) = (s.id.clone(), s.device_id.clone(), ip.to_owned());
        self.write(move |c| {
            c.prepare_cached(sql::TOUCH_SESSION.lite)?.execute(params![now, session_id])?;
            c.prepare_cached(sql::TOUCH_DEVICE.lite)?.execute(params![now, ip, device_id])?;
            Ok(())
        })
        .await
    }

    async fn revoke_session(&self, id: &str, reason: &str, now: i64) -> StoreResult<bool> {
        let (id, reason) = (id.to_owned(), reason.to_owned());
        self.write(move |c| Ok(c.prepare_cached(sql::REVOKE_SESSION.lite)?.execute(params![now, reason, id])? == 1)).await
    }

    async fn revoke_user_sessions(&self, user_id: &str, except: Option<&str>, reason: &str, now: i64) -> StoreResult<u64> {
        let (user_id, except, reason) = (user_id.to_owned(), except.map(str::to_owned), reason.to_owned());
        self.write(move |c| Ok(c.prepare_cached(sql::REVOKE_USER_SESSIONS.lite)?.execute(params![now, reason, user_id, except])? as u64))
            .await
    }

    async fn count_live_sessions(&self, now: i64) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(sql::COUNT_LIVE_SESSIONS.lite).bind(now).fetch_one(&self.read).await?)
    }

    async fn device(&self, user_id: &str, device_id: &str) -> StoreResult<Option<DeviceRow>> {
        self.one(sql::DEVICE.lite, [device_id, user_id], device_row)
    }

    async fn devices_for_user(&self, user_id: &str, now: i64) -> StoreResult<Vec<DeviceRow>> {
        Ok(sqlx::query_as(sql::DEVICES_FOR_USER.lite).bind(user_id).bind(now).bind(now).fetch_all(&self.read).await?)
    }

    async fn revoke_device(&self, user_id: &str, device_id: &str, now: i64) -> StoreResult<bool> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.write(move |c| {
            let revoked = c.prepare_cached(sql::REVOKE_DEVICE.lite)?.execute(params![now, device_id, user_id])?;
            if revoked == 0 {
                return Ok(false);
            }
            c.prepare_cached(sql::REVOKE_DEVICE_SESSIONS.lite)?.execute(params![now, device_id])?;
            c.prepare_cached(sql::DELETE_DEVICE_TRUST.lite)?.execute([&device_id])?;
            Ok(true)
        })
        .await
    }

    async fn rotate_refresh_token(
        &self,
        old_hash: &[u8],
        client_id: &str,
        new_hash: &[u8],
        idle_expires_at: i64,
        now: i64,
    ) -> StoreResult<Rotation> {
        let (old_hash, client_id, new_hash) = (old_hash.to_vec(), client_id.to_owned(), new_hash.to_vec());
        self.write(move |c| {
            let session_id: Option<String> = c
                .prepare_cached(sql::SUPERSEDE_REFRESH.lite)?
                .query_row(params![now, new_hash, old_hash, client_id], |r| r.get(0))
                .optional()?;
            let Some(session_id) = session_id else {
                let row = c.prepare_cached(sql::REFRESH_BY_HASH.lite)?.query_row([&old_hash], refresh_row).optional()?;
                return Ok(Rotation::NotRotated(row));
            };
            let expires_at: i64 = c
                .prepare_cached(sql::INSERT_SUCCESSOR.lite)?
                .query_row(params![new_hash, client_id, now, idle_expires_at, session_id], |r| r.get(0))?;
            let session = c.prepare_cached(sql::USE_SESSION.lite)?.query_row(params![now, session_id], session_row)?;
            Ok(Rotation::Rotated { session, expires_at })
        })
        .await
    }

    async fn refresh_token(&self, hash: &[u8]) -> StoreResult<Option<RefreshTokenRow>> {
        self.one(sql::REFRESH_BY_HASH.lite, [hash], refresh_row)
    }
}
