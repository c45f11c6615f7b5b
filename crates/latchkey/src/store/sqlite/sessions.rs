//! Devices, sessions and refresh tokens.

use super::*;

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, d: &DeviceRow, s: &SessionRow, refresh: Option<&RefreshTokenRow>) -> StoreResult<()> {
        let (d, s, refresh) = (d.clone(), s.clone(), refresh.cloned());
        self.write(move |c| insert_session_rows(c, &d, &s, refresh.as_ref())).await
    }

    async fn session(&self, id: &str) -> StoreResult<Option<SessionRow>> {
        self.one(concat!("SELECT ", session_cols!(), " FROM sessions WHERE id = ?"), [id], session_row)
    }

    async fn session_by_web_token(&self, hash: &[u8]) -> StoreResult<Option<SessionRow>> {
        self.one(concat!("SELECT ", session_cols!(), " FROM sessions WHERE web_token_hash = ?"), [hash], session_row)
    }

    async fn touch_session(&self, s: &SessionRow, ip: &str, now: i64) -> StoreResult<()> {
        let (session_id, device_id, ip) = (s.id.clone(), s.device_id.clone(), ip.to_owned());
        self.write(move |c| {
            c.prepare_cached("UPDATE sessions SET last_used_at = ? WHERE id = ?")?.execute(params![now, session_id])?;
            c.prepare_cached("UPDATE devices SET last_seen_at = ?, last_ip = ? WHERE id = ?")?.execute(params![now, ip, device_id])?;
            Ok(())
        })
        .await
    }

    async fn revoke_session(&self, id: &str, reason: &str, now: i64) -> StoreResult<bool> {
        let (id, reason) = (id.to_owned(), reason.to_owned());
        self.write(move |c| {
            Ok(c.prepare_cached("UPDATE sessions SET revoked_at = ?, revoke_reason = ? WHERE id = ? AND revoked_at IS NULL")?
                .execute(params![now, reason, id])?
                == 1)
        })
        .await
    }

    async fn revoke_user_sessions(&self, user_id: &str, except: Option<&str>, reason: &str, now: i64) -> StoreResult<u64> {
        let (user_id, except, reason) = (user_id.to_owned(), except.map(str::to_owned), reason.to_owned());
        self.write(move |c| {
            Ok(c.prepare_cached(
                "UPDATE sessions SET revoked_at = ?, revoke_reason = ? WHERE user_id = ? AND revoked_at IS NULL AND id IS NOT ?",
            )?
            .execute(params![now, reason, user_id, except])? as u64)
        })
        .await
    }

    async fn count_live_sessions(&self, now: i64) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > ?")
            .bind(now)
            .fetch_one(&self.read)
            .await?)
    }

    async fn device(&self, user_id: &str, device_id: &str) -> StoreResult<Option<DeviceRow>> {
        self.one(
            "SELECT id, user_id, name, kind, os, browser, user_agent, authorized_by, approved_by_device, first_seen_at, \
             last_seen_at, last_ip, trusted_until, revoked_at FROM devices WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
            [device_id, user_id],
            |r| {
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
                    }
                ))
            },
        )
    }

    async fn devices_for_user(&self, user_id: &str, now: i64) -> StoreResult<Vec<DeviceRow>> {
        Ok(sqlx::query_as(
            "SELECT id, user_id, name, kind, os, browser, user_agent, authorized_by, approved_by_device, first_seen_at, \
             last_seen_at, last_ip, trusted_until, revoked_at FROM devices d WHERE user_id = ? AND revoked_at IS NULL \
             AND (trusted_until > ? OR EXISTS (SELECT 1 FROM sessions s WHERE s.device_id = d.id AND s.revoked_at IS NULL AND s.expires_at > ?)) \
             ORDER BY last_seen_at DESC",
        )
        .bind(user_id)
        .bind(now)
        .bind(now)
        .fetch_all(&self.read)
        .await?)
    }

    async fn revoke_device(&self, user_id: &str, device_id: &str, now: i64) -> StoreResult<bool> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.write(move |c| {
            let revoked = c
                .prepare_cached(
                    "UPDATE devices SET revoked_at = ?, trusted_until = NULL WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
                )?
                .execute(params![now, device_id, user_id])?;
            if revoked == 0 {
                return Ok(false);
            }
            c.prepare_cached(
                "UPDATE sessions SET revoked_at = ?, revoke_reason = 'device_revoked' WHERE device_id = ? AND revoked_at IS NULL",
            )?
            .execute(params![now, device_id])?;
            c.prepare_cached("DELETE FROM device_trust WHERE device_id = ?")?.execute([&device_id])?;
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
                .prepare_cached(
                    "UPDATE refresh_tokens SET superseded_at = ?, successor_hash = ? \
                     WHERE hash = ? AND client_id = ? AND superseded_at IS NULL AND expires_at > ? \
                     AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = refresh_tokens.session_id AND s.revoked_at IS NULL AND s.expires_at > ?) \
                     RETURNING session_id",
                )?
                .query_row(params![now, new_hash, old_hash, client_id, now, now], |r| r.get(0))
                .optional()?;
            let Some(session_id) = session_id else {
                let row = c
                    .prepare_cached(
                        "SELECT hash, session_id, client_id, created_at, expires_at, superseded_at, successor_hash FROM refresh_tokens WHERE hash = ?",
                    )?
                    .query_row([&old_hash], refresh_row)
                    .optional()?;
                return Ok(Rotation::NotRotated(row));
            };
            let expires_at: i64 = c
                .prepare_cached(
                    "INSERT INTO refresh_tokens (hash, session_id, client_id, created_at, expires_at) \
                     SELECT ?, s.id, ?, ?, MIN(?, s.expires_at) FROM sessions s WHERE s.id = ? RETURNING expires_at",
                )?
                .query_row(params![new_hash, client_id, now, idle_expires_at, session_id], |r| r.get(0))?;
            let session = c
                .prepare_cached(
                    "UPDATE sessions SET last_used_at = ? WHERE id = ? RETURNING id, user_id, device_id, client_id, scope, amr, \
                     web_token_hash, created_at, last_used_at, expires_at, revoked_at, revoke_reason",
                )?
                .query_row(params![now, session_id], session_row)?;
            Ok(Rotation::Rotated { session, expires_at })
        })
        .await
    }

    async fn refresh_token(&self, hash: &[u8]) -> StoreResult<Option<RefreshTokenRow>> {
        self.one(
            "SELECT hash, session_id, client_id, created_at, expires_at, superseded_at, successor_hash FROM refresh_tokens WHERE hash = ?",
            [hash],
            refresh_row,
        )
    }
}
