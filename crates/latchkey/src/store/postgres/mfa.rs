//! Second factors and remembered devices.

use super::*;

#[async_trait]
impl MfaStore for PgStore {
    async fn put_pending_totp(&self, user_id: &str, secret_enc: &[u8], now: i64) -> StoreResult<bool> {
        let r = sqlx::query(
            "INSERT INTO totp_credentials (user_id, secret_enc, created_at, confirmed_at, last_step) VALUES ($1, $2, $3, NULL, -1) \
             ON CONFLICT (user_id) DO UPDATE SET secret_enc = excluded.secret_enc, created_at = excluded.created_at, last_step = -1 \
             WHERE totp_credentials.confirmed_at IS NULL",
        )
        .bind(user_id)
        .bind(secret_enc)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn totp(&self, user_id: &str) -> StoreResult<Option<TotpRow>> {
        Ok(sqlx::query_as("SELECT user_id, secret_enc, created_at, confirmed_at, last_step FROM totp_credentials WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn confirm_totp(&self, user_id: &str, step: i64, recovery_hmacs: &[Vec<u8>], now: i64) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query(
            "UPDATE totp_credentials SET confirmed_at = $1, last_step = $2 WHERE user_id = $3 AND confirmed_at IS NULL AND last_step < $4",
        )
        .bind(now)
        .bind(step)
        .bind(user_id)
        .bind(step)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
        for h in recovery_hmacs {
            sqlx::query("INSERT INTO recovery_codes (user_id, code_hmac) VALUES ($1, $2)").bind(user_id).bind(h).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn use_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool> {
        let r =
            sqlx::query("UPDATE totp_credentials SET last_step = $1 WHERE user_id = $2 AND confirmed_at IS NOT NULL AND last_step < $3")
                .bind(step)
                .bind(user_id)
                .bind(step)
                .execute(&self.pool)
                .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn delete_totp(&self, user_id: &str) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM totp_credentials WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1").bind(user_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn use_recovery_code(&self, user_id: &str, code_hmac: &[u8], now: i64) -> StoreResult<bool> {
        let r = sqlx::query("UPDATE recovery_codes SET used_at = $1 WHERE user_id = $2 AND code_hmac = $3 AND used_at IS NULL")
            .bind(now)
            .bind(user_id)
            .bind(code_hmac)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn email_factor(&self, user_id: &str) -> StoreResult<bool> {
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM email_factors WHERE user_id = $1").bind(user_id).fetch_one(&self.pool).await?;
        Ok(n > 0)
    }

    async fn enable_email_factor(&self, user_id: &str, now: i64) -> StoreResult<()> {
        sqlx::query("INSERT INTO email_factors (user_id, enabled_at) VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING")
            .bind(user_id)
            .bind(now)
            .execute(&self.pool)
            .await?;
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
        let r = sqlx::query(
            "INSERT INTO email_codes (user_id, purpose, code_hmac, created_at, expires_at, attempts) VALUES ($1, $2, $3, $4, $5, 0) \
             ON CONFLICT (user_id, purpose) DO UPDATE SET code_hmac = excluded.code_hmac, created_at = excluded.created_at, \
               expires_at = excluded.expires_at, attempts = 0 \
             WHERE email_codes.created_at <= $6",
        )
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
        let r = sqlx::query(
            "DELETE FROM email_codes WHERE user_id = $1 AND purpose = $2 AND code_hmac = $3 AND expires_at > $4 AND attempts < $5",
        )
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
        sqlx::query("UPDATE email_codes SET attempts = attempts + 1 WHERE user_id = $1 AND purpose = $2")
            .bind(user_id)
            .bind(purpose)
            .execute(&self.pool)
            .await?;
        Ok(false)
    }

    async fn create_mfa_token(&self, m: &MfaTokenRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO mfa_tokens (hash, user_id, client_id, scope, device_json, web, ip, user_agent, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&m.hash)
        .bind(&m.user_id)
        .bind(&m.client_id)
        .bind(&m.scope)
        .bind(&m.device_json)
        .bind(m.web)
        .bind(&m.ip)
        .bind(&m.user_agent)
        .bind(m.created_at)
        .bind(m.expires_at)
        .execute(&self.pool)
        .await
        .map_err(conflict_or)?;
        Ok(())
    }

    async fn mfa_token(&self, hash: &[u8]) -> StoreResult<Option<MfaTokenRow>> {
        Ok(sqlx::query_as(
            "SELECT hash, user_id, client_id, scope, device_json, web, ip, user_agent, created_at, expires_at, failures, consumed_at \
             FROM mfa_tokens WHERE hash = $1",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn fail_mfa_token(&self, hash: &[u8]) -> StoreResult<i64> {
        let n: Option<i64> = sqlx::query_scalar("UPDATE mfa_tokens SET failures = failures + 1 WHERE hash = $1 RETURNING failures")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        Ok(n.unwrap_or(i64::MAX))
    }

    async fn consume_mfa_token(&self, hash: &[u8], now: i64, max_failures: i64) -> StoreResult<bool> {
        let r = sqlx::query(
            "UPDATE mfa_tokens SET consumed_at = $1 WHERE hash = $2 AND consumed_at IS NULL AND expires_at > $3 AND failures < $4",
        )
        .bind(now)
        .bind(hash)
        .bind(now)
        .bind(max_failures)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn create_trust(&self, t: &TrustRow) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO device_trust (hash, user_id, device_id, created_at, expires_at, last_used_at, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&t.hash)
        .bind(&t.user_id)
        .bind(&t.device_id)
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(t.last_used_at)
        .bind(&t.ip)
        .bind(&t.user_agent)
        .execute(&mut *tx)
        .await
        .map_err(conflict_or)?;
        sqlx::query("UPDATE devices SET trusted_until = $1 WHERE id = $2").bind(t.expires_at).bind(&t.device_id).execute(&mut *tx).await?;
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
        let old: Option<(String, i64)> = sqlx::query_as(
            "DELETE FROM device_trust WHERE hash = $1 AND user_id = $2 AND expires_at > $3 \
             AND device_id IN (SELECT id FROM devices WHERE revoked_at IS NULL) RETURNING device_id, expires_at",
        )
        .bind(old_hash)
        .bind(user_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((device_id, expires_at)) = old else { return Ok(None) };
        sqlx::query(
            "INSERT INTO device_trust (hash, user_id, device_id, created_at, expires_at, last_used_at, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(new_hash)
        .bind(user_id)
        .bind(&device_id)
        .bind(now)
        .bind(expires_at)
        .bind(now)
        .bind(ip)
        .bind(user_agent)
        .execute(&mut *tx)
        .await
        .map_err(conflict_or)?;
        tx.commit().await?;
        Ok(Some(device_id))
    }

    async fn revoke_trust(&self, user_id: &str, device_id: Option<&str>) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let r = sqlx::query("DELETE FROM device_trust WHERE user_id = $1 AND ($2 IS NULL OR device_id = $3)")
            .bind(user_id)
            .bind(device_id)
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE devices SET trusted_until = NULL WHERE user_id = $1 AND ($2 IS NULL OR id = $3)")
            .bind(user_id)
            .bind(device_id)
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }
}
