//! Second factors and remembered devices.

use super::*;

#[async_trait]
impl MfaStore for SqliteStore {
    async fn put_pending_totp(&self, user_id: &str, secret_enc: &[u8], now: i64) -> StoreResult<bool> {
        let r = sqlx::query(
            "INSERT INTO totp_credentials (user_id, secret_enc, created_at, confirmed_at, last_step) VALUES (?, ?, ?, NULL, -1) \
             ON CONFLICT (user_id) DO UPDATE SET secret_enc = excluded.secret_enc, created_at = excluded.created_at, last_step = -1 \
             WHERE totp_credentials.confirmed_at IS NULL",
        )
        .bind(user_id)
        .bind(secret_enc)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn totp(&self, user_id: &str) -> StoreResult<Option<TotpRow>> {
        Ok(sqlx::query_as("SELECT user_id, secret_enc, created_at, confirmed_at, last_step FROM totp_credentials WHERE user_id = ?")
            .bind(user_id)
            .fetch_optional(&self.read)
            .await?)
    }

    async fn confirm_totp(&self, user_id: &str, step: i64, recovery_hmacs: &[Vec<u8>], now: i64) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let r = sqlx::query(
            "UPDATE totp_credentials SET confirmed_at = ?, last_step = ? WHERE user_id = ? AND confirmed_at IS NULL AND last_step < ?",
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
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = ?").bind(user_id).execute(&mut *tx).await?;
        for h in recovery_hmacs {
            sqlx::query("INSERT INTO recovery_codes (user_id, code_hmac) VALUES (?, ?)").bind(user_id).bind(h).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn use_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool> {
        let r = sqlx::query("UPDATE totp_credentials SET last_step = ? WHERE user_id = ? AND confirmed_at IS NOT NULL AND last_step < ?")
            .bind(step)
            .bind(user_id)
            .bind(step)
            .execute(&self.write)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn delete_totp(&self, user_id: &str) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM totp_credentials WHERE user_id = ?").bind(user_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = ?").bind(user_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn use_recovery_code(&self, user_id: &str, code_hmac: &[u8], now: i64) -> StoreResult<bool> {
        let r = sqlx::query("UPDATE recovery_codes SET used_at = ? WHERE user_id = ? AND code_hmac = ? AND used_at IS NULL")
            .bind(now)
            .bind(user_id)
            .bind(code_hmac)
            .execute(&self.write)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn email_factor(&self, user_id: &str) -> StoreResult<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM email_factors WHERE user_id = ?").bind(user_id).fetch_one(&self.read).await?;
        Ok(n > 0)
    }

    async fn enable_email_factor(&self, user_id: &str, now: i64) -> StoreResult<()> {
        sqlx::query("INSERT INTO email_factors (user_id, enabled_at) VALUES (?, ?) ON CONFLICT (user_id) DO NOTHING")
            .bind(user_id)
            .bind(now)
            .execute(&self.write)
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
            "INSERT INTO email_codes (user_id, purpose, code_hmac, created_at, expires_at, attempts) VALUES (?, ?, ?, ?, ?, 0) \
             ON CONFLICT (user_id, purpose) DO UPDATE SET code_hmac = excluded.code_hmac, created_at = excluded.created_at, \
               expires_at = excluded.expires_at, attempts = 0 \
             WHERE email_codes.created_at <= ?",
        )
        .bind(user_id)
        .bind(purpose)
        .bind(code_hmac)
        .bind(now)
        .bind(now + ttl)
        .bind(now - resend_after)
        .execute(&self.write)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn use_email_code(&self, user_id: &str, purpose: &str, code_hmac: &[u8], now: i64, max_attempts: i64) -> StoreResult<bool> {
        let r =
            sqlx::query("DELETE FROM email_codes WHERE user_id = ? AND purpose = ? AND code_hmac = ? AND expires_at > ? AND attempts < ?")
                .bind(user_id)
                .bind(purpose)
                .bind(code_hmac)
                .bind(now)
                .bind(max_attempts)
                .execute(&self.write)
                .await?;
        if r.rows_affected() == 1 {
            return Ok(true);
        }
        sqlx::query("UPDATE email_codes SET attempts = attempts + 1 WHERE user_id = ? AND purpose = ?")
            .bind(user_id)
            .bind(purpose)
            .execute(&self.write)
            .await?;
        Ok(false)
    }

    async fn create_mfa_token(&self, m: &MfaTokenRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO mfa_tokens (hash, user_id, client_id, scope, device_json, web, ip, user_agent, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        .execute(&self.write)
        .await
        .map_err(conflict_or)?;
        Ok(())
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
        let n: Option<i64> = sqlx::query_scalar("UPDATE mfa_tokens SET failures = failures + 1 WHERE hash = ? RETURNING failures")
            .bind(hash)
            .fetch_optional(&self.write)
            .await?;
        Ok(n.unwrap_or(i64::MAX))
    }

    async fn consume_mfa_token(&self, hash: &[u8], now: i64, max_failures: i64) -> StoreResult<bool> {
        let r =
            sqlx::query("UPDATE mfa_tokens SET consumed_at = ? WHERE hash = ? AND consumed_at IS NULL AND expires_at > ? AND failures < ?")
                .bind(now)
                .bind(hash)
                .bind(now)
                .bind(max_failures)
                .execute(&self.write)
                .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn create_trust(&self, t: &TrustRow) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO device_trust (hash, user_id, device_id, created_at, expires_at, last_used_at, ip, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
        sqlx::query("UPDATE devices SET trusted_until = ? WHERE id = ?").bind(t.expires_at).bind(&t.device_id).execute(&mut *tx).await?;
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
        let mut tx = self.write_tx().await?;
        let old: Option<(String, i64)> = sqlx::query_as(
            "DELETE FROM device_trust WHERE hash = ? AND user_id = ? AND expires_at > ? \
             AND device_id IN (SELECT id FROM devices WHERE revoked_at IS NULL) RETURNING device_id, expires_at",
        )
        .bind(old_hash)
        .bind(user_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((device_id, expires_at)) = old else { return Ok(None) };
        sqlx::query(
            "INSERT INTO device_trust (hash, user_id, device_id, created_at, expires_at, last_used_at, ip, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
        let mut tx = self.write_tx().await?;
        let r = sqlx::query("DELETE FROM device_trust WHERE user_id = ? AND (? IS NULL OR device_id = ?)")
            .bind(user_id)
            .bind(device_id)
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE devices SET trusted_until = NULL WHERE user_id = ? AND (? IS NULL OR id = ?)")
            .bind(user_id)
            .bind(device_id)
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }
}
