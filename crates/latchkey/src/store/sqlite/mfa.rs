//! Second factors and remembered devices.

use super::*;

#[async_trait]
impl MfaStore for SqliteStore {
    async fn put_pending_totp(&self, user_id: &str, secret_enc: &[u8], now: i64) -> StoreResult<bool> {
        let (user_id, secret_enc) = (user_id.to_owned(), secret_enc.to_vec());
        self.write(move |c| Ok(c.prepare_cached(sql::PUT_PENDING_TOTP.lite)?.execute(params![user_id, secret_enc, now])? == 1)).await
    }

    async fn totp(&self, user_id: &str) -> StoreResult<Option<TotpRow>> {
        self.one(sql::TOTP.lite, [user_id], |r| Ok(from_row!(r, TotpRow { user_id, secret_enc, created_at, confirmed_at, last_step })))
    }

    async fn confirm_totp(&self, user_id: &str, step: i64, recovery_hmacs: &[Vec<u8>], now: i64) -> StoreResult<bool> {
        let (user_id, recovery_hmacs) = (user_id.to_owned(), recovery_hmacs.to_vec());
        self.write(move |c| {
            if c.prepare_cached(sql::CONFIRM_TOTP.lite)?.execute(params![now, step, user_id])? != 1 {
                return Ok(false);
            }
            c.prepare_cached(sql::DELETE_RECOVERY_CODES.lite)?.execute([&user_id])?;
            let mut insert = c.prepare_cached(sql::INSERT_RECOVERY_CODE.lite)?;
            for h in &recovery_hmacs {
                insert.execute(params![user_id, h])?;
            }
            Ok(true)
        })
        .await
    }

    async fn use_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool> {
        let user_id = user_id.to_owned();
        self.write(move |c| Ok(c.prepare_cached(sql::USE_TOTP_STEP.lite)?.execute(params![step, user_id])? == 1)).await
    }

    async fn delete_totp(&self, user_id: &str) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        self.write(move |c| {
            c.prepare_cached(sql::DELETE_TOTP.lite)?.execute([&user_id])?;
            c.prepare_cached(sql::DELETE_RECOVERY_CODES.lite)?.execute([&user_id])?;
            Ok(())
        })
        .await
    }

    async fn use_recovery_code(&self, user_id: &str, code_hmac: &[u8], now: i64) -> StoreResult<bool> {
        let (user_id, code_hmac) = (user_id.to_owned(), code_hmac.to_vec());
        self.write(move |c| Ok(c.prepare_cached(sql::USE_RECOVERY_CODE.lite)?.execute(params![now, user_id, code_hmac])? == 1)).await
    }

    async fn email_factor(&self, user_id: &str) -> StoreResult<bool> {
        Ok(self.one(sql::EMAIL_FACTOR.lite, [user_id], |_| Ok(()))?.is_some())
    }

    async fn disable_email_factor(&self, user_id: &str) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        self.write(move |c| {
            c.prepare_cached(sql::DISABLE_EMAIL_FACTOR.lite)?.execute([user_id])?;
            Ok(())
        })
        .await
    }

    async fn enable_email_factor(&self, user_id: &str, now: i64) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        self.write(move |c| {
            c.prepare_cached(sql::ENABLE_EMAIL_FACTOR.lite)?.execute(params![user_id, now])?;
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
            let p = params![user_id, purpose, code_hmac, now, now + ttl, now - resend_after];
            Ok(c.prepare_cached(sql::PUT_EMAIL_CODE.lite)?.execute(p)? == 1)
        })
        .await
    }

    async fn use_email_code(&self, user_id: &str, purpose: &str, code_hmac: &[u8], now: i64, max_attempts: i64) -> StoreResult<bool> {
        let (user_id, purpose, code_hmac) = (user_id.to_owned(), purpose.to_owned(), code_hmac.to_vec());
        self.write(move |c| {
            if c.prepare_cached(sql::USE_EMAIL_CODE.lite)?.execute(params![user_id, purpose, code_hmac, now, max_attempts])? == 1 {
                return Ok(true);
            }
            c.prepare_cached(sql::FAIL_EMAIL_CODE.lite)?.execute([user_id, purpose])?;
            Ok(false)
        })
        .await
    }

    async fn create_mfa_token(&self, m: &MfaTokenRow) -> StoreResult<()> {
        let m = m.clone();
        self.write(move |c| {
            c.prepare_cached(sql::INSERT_MFA_TOKEN.lite)?.execute(sql::mfa_token_values(&m))?;
            Ok(())
        })
        .await
    }

    async fn mfa_token(&self, hash: &[u8]) -> StoreResult<Option<MfaTokenRow>> {
        Ok(sqlx::query_as(sql::MFA_TOKEN.lite).bind(hash).fetch_optional(&self.read).await?)
    }

    async fn fail_mfa_token(&self, hash: &[u8]) -> StoreResult<i64> {
        let hash = hash.to_vec();
        self.write(move |c| {
            let n: Option<i64> = c.prepare_cached(sql::FAIL_MFA_TOKEN.lite)?.query_row([hash], |r| r.get(0)).optional()?;
            Ok(n.unwrap_or(i64::MAX))
        })
        .await
    }

    async fn consume_mfa_token(&self, hash: &[u8], now: i64, max_failures: i64) -> StoreResult<bool> {
        let hash = hash.to_vec();
        self.write(move |c| Ok(c.prepare_cached(sql::CONSUME_MFA_TOKEN.lite)?.execute(params![now, hash, max_failures])? == 1)).await
    }

    async fn create_trust(&self, t: &TrustRow) -> StoreResult<()> {
        let t = t.clone();
        self.write(move |c| {
            c.prepare_cached(sql::INSERT_TRUST.lite)?.execute(sql::trust_values(&t))?;
            c.prepare_cached(sql::TRUST_DEVICE.lite)?.execute(params![t.expires_at, t.device_id])?;
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
                .prepare_cached(sql::TAKE_TRUST.lite)?
                .query_row(params![old_hash, user_id, now], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((device_id, expires_at)) = old else { return Ok(None) };
            let successor = TrustRow { hash: new_hash, user_id, device_id, created_at: now, expires_at, last_used_at: now, ip, user_agent };
            c.prepare_cached(sql::INSERT_TRUST.lite)?.execute(sql::trust_values(&successor))?;
            Ok(Some(successor.device_id))
        })
        .await
    }

    async fn revoke_trust(&self, user_id: &str, device_id: Option<&str>) -> StoreResult<u64> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.map(str::to_owned));
        self.write(move |c| {
            let gone = c.prepare_cached(sql::REVOKE_TRUST.lite)?.execute(params![user_id, device_id])?;
            c.prepare_cached(sql::UNTRUST_DEVICES.lite)?.execute(params![user_id, device_id])?;
            Ok(gone as u64)
        })
        .await
    }
}
