//! Second factors and remembered devices.

use super::*;

#[async_trait]
impl MfaStore for PgStore {
    async fn put_pending_totp(&self, user_id: &str, secret_enc: &[u8], now: i64) -> StoreResult<bool> {
        let r = sqlx::query(sql::PUT_PENDING_TOTP.pg).bind(user_id).bind(secret_enc).bind(now).execute(&self.pool).await?;
        Ok(r.rows_affected() == 1)
    }

    async fn totp(&self, user_id: &str) -> StoreResult<Option<TotpRow>> {
        Ok(sqlx::query_as(sql::TOTP.pg).bind(user_id).fetch_optional(&self.pool).await?)
    }

    async fn confirm_totp(&self, user_id: &str, step: i64, recovery_hmacs: &[Vec<u8>], now: i64) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(sql::CONFIRM_TOTP.pg).bind(now).bind(step).bind(user_id).execute(&mut *tx).await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(sql::DELETE_RECOVERY_CODES.pg).bind(user_id).execute(&mut *tx).await?;
        for h in recovery_hmacs {
            sqlx::query(sql::INSERT_RECOVERY_CODE.pg).bind(user_id).bind(h).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn use_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool> {
        let r = sqlx::query(sql::USE_TOTP_STEP.pg).bind(step).bind(user_id).execute(&self.pool).await?;
        Ok(r.rows_affected() == 1)
    }

    async fn delete_totp(&self, user_id: &str) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(sql::DELETE_TOTP.pg).bind(user_id).execute(&mut *tx).await?;
        sqlx::query(sql::DELETE_RECOVERY_CODES.pg).bind(user_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn use_recovery_code(&self, user_id: &str, code_hmac: &[u8], now: i64) -> StoreResult<bool> {
        let r = sqlx::query(sql::USE_RECOVERY_CODE.pg).bind(now).bind(user_id).bind(code_hmac).execute(&self.pool).await?;
        Ok(r.rows_affected() == 1)
    }

    async fn email_factor(&self, user_id: &str) -> StoreResult<bool> {
        let found: Option<i32> = sqlx::query_scalar(sql::EMAIL_FACTOR.pg).bind(user_id).fetch_optional(&self.pool).await?;
        Ok(found.is_some())
    }

    async fn disable_email_factor(&self, user_id: &str) -> StoreResult<()> {
        sqlx::query(sql::DISABLE_EMAIL_FACTOR.pg).bind(user_id).execute(&self.pool).await?;
        Ok(())
    }

    async fn enable_email_factor(&self, user_id: &str, now: i64) -> StoreResult<()> {
        sqlx::query(sql::ENABLE_EMAIL_FACTOR.pg).bind(user_id).bind(now).execute(&self.pool).await?;
        Ok(())
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
        let r = sqlx::query(sql::PUT_EMAIL_CODE.pg)
            .bind(user_id)
            .bind(purpose)
            .bind(code_hmac)
            .bind(now)
            .bind(now + ttl)
            .bind(now - resend_after)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn use_email_code(&self, user_id: &str, purpose: &str, code_hmac: &[u8], now: i64, max_attempts: i64) -> StoreResult<bool> {
        let r = sqlx::query(sql::USE_EMAIL_CODE.pg)
            .bind(user_id)
            .bind(purpose)
            .bind(code_hmac)
            .bind(now)
            .bind(max_attempts)
            .execute(&self.pool)
            .await?;
        if r.rows_affected() == 1 {
            return Ok(true);
        }
        sqlx::query(sql::FAIL_EMAIL_CODE.pg).bind(user_id).bind(purpose).execute(&self.pool).await?;
        Ok(false)
    }

    async fn create_mfa_token(&self, m: &MfaTokenRow) -> StoreResult<()> {
        bind_pg(sqlx::query(sql::INSERT_MFA_TOKEN.pg), &sql::mfa_token_values(m)).execute(&self.pool).await.map_err(conflict_or)?;
        Ok(())
    }

    async fn mfa_token(&self, hash: &[u8]) -> StoreResult<Option<MfaTokenRow>> {
        Ok(sqlx::query_as(sql::MFA_TOKEN.pg).bind(hash).fetch_optional(&self.pool).await?)
    }

    async fn fail_mfa_token(&self, hash: &[u8]) -> StoreResult<i64> {
        let n: Option<i64> = sqlx::query_scalar(sql::FAIL_MFA_TOKEN.pg).bind(hash).fetch_optional(&self.pool).await?;
        Ok(n.unwrap_or(i64::MAX))
    }

    async fn consume_mfa_token(&self, hash: &[u8], now: i64, max_failures: i64) -> StoreResult<bool> {
        let r = sqlx::query(sql::CONSUME_MFA_TOKEN.pg).bind(now).bind(hash).bind(max_failures).execute(&self.pool).await?;
        Ok(r.rows_affected() == 1)
    }

    async fn create_trust(&self, t: &TrustRow) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        bind_pg(sqlx::query(sql::INSERT_TRUST.pg), &sql::trust_values(t)).execute(&mut *tx).await.map_err(conflict_or)?;
        sqlx::query(sql::TRUST_DEVICE.pg).bind(t.expires_at).bind(&t.device_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
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
        let mut tx = self.pool.begin().await?;
        let old: Option<(String, i64)> =
            sqlx::query_as(sql::TAKE_TRUST.pg).bind(old_hash).bind(user_id).bind(now).fetch_optional(&mut *tx).await?;
        let Some((device_id, expires_at)) = old else { return Ok(None) };
        // The successor's values in `sql::trust_values` order, borrowed rather than built into a row.
        let successor: [&dyn sql::Param; 8] = [&new_hash, &user_id, &device_id, &now, &expires_at, &now, &ip, &user_agent];
        bind_pg(sqlx::query(sql::INSERT_TRUST.pg), &successor).execute(&mut *tx).await.map_err(conflict_or)?;
        tx.commit().await?;
        Ok(Some(device_id))
    }

    async fn revoke_trust(&self, user_id: &str, device_id: Option<&str>) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(sql::REVOKE_TRUST.pg).bind(user_id).bind(device_id).execute(&mut *tx).await?;
        sqlx::query(sql::UNTRUST_DEVICES.pg).bind(user_id).bind(device_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }
}
