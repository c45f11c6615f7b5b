//! Passkeys and their ceremonies.

use super::*;

#[async_trait]
impl PasskeyStore for PgStore {
    async fn create_passkey_challenge(&self, row: &PasskeyChallengeRow) -> StoreResult<()> {
        bind_pg(sqlx::query(sql::INSERT_PASSKEY_CHALLENGE.pg), &sql::passkey_challenge_values(row))
            .execute(&self.pool)
            .await
            .map_err(conflict_or)?;
        Ok(())
    }

    async fn take_passkey_challenge(&self, hash: &[u8], purpose: &str, now: i64) -> StoreResult<Option<PasskeyChallengeRow>> {
        Ok(sqlx::query_as(sql::TAKE_PASSKEY_CHALLENGE.pg).bind(hash).bind(purpose).bind(now).fetch_optional(&self.pool).await?)
    }

    async fn add_passkey(&self, row: &PasskeyRow) -> StoreResult<()> {
        bind_pg(sqlx::query(sql::INSERT_PASSKEY.pg), &sql::passkey_values(row)).execute(&self.pool).await.map_err(conflict_or)?;
        Ok(())
    }

    async fn passkeys_for_user(&self, user_id: &str) -> StoreResult<Vec<PasskeyRow>> {
        Ok(sqlx::query_as(sql::PASSKEYS_FOR_USER.pg).bind(user_id).fetch_all(&self.pool).await?)
    }

    async fn passkey_by_credential(&self, credential_id: &[u8]) -> StoreResult<Option<PasskeyRow>> {
        Ok(sqlx::query_as(sql::PASSKEY_BY_CREDENTIAL.pg).bind(credential_id).fetch_optional(&self.pool).await?)
    }

    async fn use_passkey(&self, id: &str, credential: &str, counter: i64, backed_up: bool, now: i64) -> StoreResult<bool> {
        let q = sqlx::query(sql::USE_PASSKEY.pg).bind(credential).bind(counter).bind(backed_up).bind(now).bind(id);
        Ok(q.execute(&self.pool).await?.rows_affected() == 1)
    }

    async fn rename_passkey(&self, user_id: &str, id: &str, name: &str) -> StoreResult<bool> {
        Ok(sqlx::query(sql::RENAME_PASSKEY.pg).bind(name).bind(id).bind(user_id).execute(&self.pool).await?.rows_affected() == 1)
    }

    async fn remove_passkey(&self, user_id: &str, id: &str) -> StoreResult<Unlinked> {
        self.remove_way_in(sql::REMOVE_PASSKEY, sql::OWNS_PASSKEY, user_id, id).await
    }

    async fn mark_session_passkey(&self, session_id: &str, now: i64) -> StoreResult<bool> {
        Ok(sqlx::query(sql::MARK_SESSION_PASSKEY.pg).bind(now).bind(session_id).execute(&self.pool).await?.rows_affected() == 1)
    }

    async fn revoke_passkey_sessions(&self, user_id: &str, passkey_id: &str, now: i64) -> StoreResult<u64> {
        let q = sqlx::query(sql::REVOKE_PASSKEY_SESSIONS.pg).bind(now).bind(user_id).bind(passkey_id);
        Ok(q.execute(&self.pool).await?.rows_affected())
    }

    async fn passkey_step_up(&self, user_id: &str) -> StoreResult<bool> {
        Ok(sqlx::query_scalar(sql::PASSKEY_STEP_UP.pg).bind(user_id).fetch_optional(&self.pool).await?.unwrap_or(false))
    }

    async fn set_passkey_step_up(&self, user_id: &str, on: bool) -> StoreResult<()> {
        sqlx::query(sql::SET_PASSKEY_STEP_UP.pg).bind(on).bind(user_id).execute(&self.pool).await?;
        Ok(())
    }
}
