//! Second factors and remembered devices.

use super::*;

#[async_trait]
impl MfaStore for SqliteStore {
    async fn put_pending_totp(&self, user_id: &str, secret_enc: &[u8], now: i64) -> StoreResult<bool> {
        let (user_id, secret_enc) = (user_id.to_owned(), secret_enc.to_vec());
        self.write(move |c| {
            Ok(c.prepare_cached(
                "INSERT INTO totp_credentials (user_id, secret_enc, created_at, confirmed_at, last_step) VALUES (?, ?, ?, NULL, -1) \
                 ON CONFLICT (user_id) DO UPDATE SET secret_enc = excluded.secret_enc, created_at = excluded.created_at, last_step = -1 \
                 WHERE totp_credentials.confirmed_at IS NULL",
            )?
            .execute(params![user_id, secret_enc, now])?
                == 1)
        })
        .await
    }

    async fn totp(&self, user_id: &str) -> StoreResult<Option<TotpRow>> {
        self.one(
            "SELECT user_id, secret_enc, created_at, confirmed_at, last_step FROM totp_credentials WHERE user_id = ?",
            [user_id],
            |r| Ok(from_row!(r, TotpRow { user_id, secret_enc, created_at, confirmed_at, last_step })),
        )
    }

    async fn confirm_totp(&self, user_id: &str, step: i64, recovery_hmacs: &[Vec<u8>], now: i64) -> StoreResult<bool> {
        let (user_id, recovery_hmacs) = (user_id.to_owned(), recovery_hmacs.to_vec());
        self.write(move |c| {
            let confirmed = c
                .prepare_cached(
                    "UPDATE totp_credentials SET confirmed_at = ?, last_step = ? WHERE user_id = ? AND confirmed_at IS NULL AND last_step < ?",
                )?
                .execute(params![now, step, user_id, step])?;
            if confirmed != 1 {
                return Ok(false);
            }
            c.prepare_cached("DELETE FROM recovery_codes WHERE user_id = ?")?.execute([&user_id])?;
            let mut insert = c.prepare_cached("INSERT INTO recovery_codes (user_id, code_hmac) VALUES (?, ?)")?;
            for h in &recovery_hmacs {
                insert.execute(params![user_id, h])?;
            }
            Ok(true)
        })
        .await
    }

    async fn use_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool> {
        let user_id = user_id.to_owned();
        self.write(move |c| {
            Ok(c.prepare_cached(
                "UPDATE totp_credentials SET last_step = ? WHERE user_id = ? AND confirmed_at IS NOT NULL AND last_step < ?",
            )?
            .execute(params![step, user_id, step])?
                == 1)
        })
        .await
    }

    async fn delete_totp(&self, user_id: &str) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        self.write(move |c| {
            c.prepare_cached("DELETE FROM totp_credentials WHERE user_id = ?")?.execute([&user_id])?;
            c.prepare_cached("DELETE FROM recovery_codes WHERE user_id = ?")?.execute([&user_id])?;
            Ok(())
        })
        .await
    }

    async fn use_recovery_code(&self, user_id: &str, code_hmac: &[u8], now: i64) -> StoreResult<bool> {
        let (user_id, code_hmac) = (user_id.to_owned(), code_hmac.to_vec());
        self.write(move |c| {
            Ok(c.prepare_cached("UPDATE recovery_codes SET used_at = ? WHERE user_id = ? AND code_hmac = ? AND used_at IS NULL")?
                .execute(params![now, user_id, code_hmac])?
                == 1)
        })
        .await
    }

    async fn email_factor(&self, user_id: &str) -> StoreResult<bool> {
        Ok(self.one("SELECT 1 FROM email_factors WHERE user_id = ?", [user_id], |_| Ok(()))?.is_some())
    }

    async fn enable_email_factor(&self, user_id: &str, now: i64) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        self.write(move |c| {
            c.prepare_cached("INSERT INTO email_factors (user_id, enabled_at) VALUES (?, ?) ON CONFLICT (user_id) DO NOTHING")?
                .execute(params![user_id, now])?;
            Ok(())
        })
        .await
    }

    async fn put_email_code(
        &self,
        user_id: &str,
        purpose: &str,
        code_hmac: &[u8],
        now: i64,
        ttl: i64,
        resend_after: i64,
    ) -> StoreResult<bool> {
        let (user_id, purpose, code_hmac) = (user_id.to_owned(), purpose.to_owned(), code_hmac.to_vec());
        self.write(move |c| {
            Ok(c.prepare_cached(
                "INSERT INTO email_codes (user_id, purpose, code_hmac, created_at, expires_at, attempts) VALUES (?, ?, ?, ?, ?, 0) \
                 ON CONFLICT (user_id, purpose) DO UPDATE SET code_hmac = excluded.code_hmac, created_at = excluded.created_at, \
                   expires_at = excluded.expires_at, attempts = 0 \
                 WHERE email_codes.created_at <= ?",
            )?
            .execute(params![user_id, purpose, code_hmac, now, now + ttl, now - resend_after])?
                == 1)
        })
        .await
    }

    async fn use_email_code(&self, user_id: &str, purpose: &str, code_hmac: &[u8], now: i64, max_attempts: i64) -> StoreResult<bool> {
        let (user_id, purpose, code_hmac) = (user_id.to_owned(), purpose.to_owned(), code_hmac.to_vec());
        self.write(move |c| {
            let used = c
                .prepare_cached(
                    "DELETE FROM email_codes WHERE user_id = ? AND purpose = ? AND code_hmac = ? AND expires_at > ? AND attempts < ?",
                )?
                .execute(params![user_id, purpose, code_hmac, now, max_attempts])?;
            if used == 1 {
                return Ok(true);
            }
            c.prepare_cached("UPDATE email_codes SET attempts = attempts + 1 WHERE user_id = ? AND purpose = ?")?
                .execute([user_id, purpose])?;
            Ok(false)
        })
        .await
    }

    async fn create_mfa_token(&self, m: &MfaTokenRow) -> StoreResult<()> {
        let m = m.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO mfa_tokens (hash, user_id, client_id, scope, device_json, web, ip, user_agent, created_at, expires_at) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![
                m.hash,
                m.user_id,
                m.client_id,
                m.scope,
                m.device_json,
                m.web,
                m.ip,
                m.user_agent,
                m.created_at,
                m.expires_at
            ])?;
            Ok(())
        })
        .await
    }

    async fn mfa_token(&self, hash: &[u8]) -> StoreResult<Option<MfaTokenRow>> {
        Ok(sqlx::query_as(
            "SELECT hash, user_id, client_id, scope, device_json, web, ip, user_agent, created_at, expires_at, failures, consumed_at \
             FROM mfa_tokens WHERE hash = ?",
        )
        .bind(hash)
        .fetch_optional(&self.read)
        .await?)
    }

    async fn fail_mfa_token(&self, hash: &[u8]) -> StoreResult<i64> {
        let hash = hash.to_vec();
        self.write(move |c| {
            let n: Option<i64> = c
                .prepare_cached("UPDATE mfa_tokens SET failures = failures + 1 WHERE hash = ? RETURNING failures")?
                .query_row([hash], |r| r.get(0))
                .optional()?;
            Ok(n.unwrap_or(i64::MAX))
        })
        .await
    }

    async fn consume_mfa_token(&self, hash: &[u8], now: i64, max_failures: i64) -> StoreResult<bool> {
        let hash = hash.to_vec();
        self.write(move |c| {
            Ok(c.prepare_cached(
                "UPDATE mfa_tokens SET consumed_at = ? WHERE hash = ? AND consumed_at IS NULL AND expires_at > ? AND failures < ?",
            )?
            .execute(params![now, hash, now, max_failures])?
                == 1)
        })
        .await
    }

    async fn create_trust(&self, t: &TrustRow) -> StoreResult<()> {
        let t = t.clone();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO device_trust (hash, user_id, device_id, created_at, expires_at, last_used_at, ip, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![t.hash, t.user_id, t.device_id, t.created_at, t.expires_at, t.last_used_at, t.ip, t.user_agent])?;
            c.prepare_cached("UPDATE devices SET trusted_until = ? WHERE id = ?")?.execute(params![t.expires_at, t.device_id])?;
            Ok(())
        })
        .await
    }

    async fn rotate_trust(
        &self,
        old_hash: &[u8],
        user_id: &str,
        new_hash: &[u8],
        ip: &str,
        user_agent: &str,
        now: i64,
    ) -> StoreResult<Option<String>> {
        let (old_hash, user_id, new_hash) = (old_hash.to_vec(), user_id.to_owned(), new_hash.to_vec());
        let (ip, user_agent) = (ip.to_owned(), user_agent.to_owned());
        self.write(move |c| {
            let old: Option<(String, i64)> = c
                .prepare_cached(
                    "DELETE FROM device_trust WHERE hash = ? AND user_id = ? AND expires_at > ? \
                     AND device_id IN (SELECT id FROM devices WHERE revoked_at IS NULL) RETURNING device_id, expires_at",
                )?
                .query_row(params![old_hash, user_id, now], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((device_id, expires_at)) = old else { return Ok(None) };
            c.prepare_cached(
                "INSERT INTO device_trust (hash, user_id, device_id, created_at, expires_at, last_used_at, ip, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![new_hash, user_id, device_id, now, expires_at, now, ip, user_agent])?;
            Ok(Some(device_id))
        })
        .await
    }

    async fn revoke_trust(&self, user_id: &str, device_id: Option<&str>) -> StoreResult<u64> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.map(str::to_owned));
        self.write(move |c| {
            let gone = c
                .prepare_cached("DELETE FROM device_trust WHERE user_id = ? AND (? IS NULL OR device_id = ?)")?
                .execute(params![user_id, device_id, device_id])?;
            c.prepare_cached("UPDATE devices SET trusted_until = NULL WHERE user_id = ? AND (? IS NULL OR id = ?)")?
                .execute(params![user_id, device_id, device_id])?;
            Ok(gone as u64)
        })
        .await
    }
}
