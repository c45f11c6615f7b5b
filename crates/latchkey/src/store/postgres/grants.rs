//! Authorization codes and consents.

use super::*;

#[async_trait]
impl GrantStore for PgStore {
    async fn create_auth_code(&self, code: &AuthCodeRow) -> StoreResult<()> {
        bind_pg(sqlx::query(sql::INSERT_AUTH_CODE.pg), &sql::auth_code_values(code)).execute(&self.pool).await.map_err(conflict_or)?;
        Ok(())
    }

    async fn auth_code(&self, hash: &[u8]) -> StoreResult<Option<AuthCodeRow>> {
        Ok(sqlx::query_as(sql::AUTH_CODE.pg).bind(hash).fetch_optional(&self.pool).await?)
    }

    async fn auth_code_context(&self, hash: &[u8]) -> StoreResult<Option<CodeContext>> {
        let Some(code) = self.auth_code(hash).await? else { return Ok(None) };
        let device = self.device(&code.user_id, &code.device_id).await?;
        let user = self.user_by_id(&code.user_id).await?;
        Ok(Some(CodeContext { code, device, user }))
    }

    async fn redeem_auth_code(
        &self,
        hash: &[u8],
        client_id: &str,
        d: &DeviceRow,
        s: &SessionRow,
        r: &RefreshTokenRow,
        now: i64,
    ) -> StoreResult<Option<AuthCodeRow>> {
        let mut tx = self.pool.begin().await?;
        // A concurrent redemption waits on the code's row lock, then finds it used.
        let redeemed: Option<AuthCodeRow> =
            sqlx::query_as(sql::REDEEM_AUTH_CODE.pg).bind(now).bind(&s.id).bind(hash).bind(client_id).fetch_optional(&mut *tx).await?;
        if redeemed.is_some() {
            insert_session_rows(&mut tx, d, s, Some(r)).await?;
        }
        tx.commit().await?;
        Ok(redeemed)
    }

    async fn consent(&self, user_id: &str, client_id: &str) -> StoreResult<Option<ConsentRow>> {
        Ok(sqlx::query_as(sql::CONSENT.pg).bind(user_id).bind(client_id).fetch_optional(&self.pool).await?)
    }

    async fn consents_for_user(&self, user_id: &str) -> StoreResult<Vec<ConsentRow>> {
        Ok(sqlx::query_as(sql::CONSENTS_FOR_USER.pg).bind(user_id).fetch_all(&self.pool).await?)
    }

    async fn put_consent(&self, k: &ConsentRow) -> StoreResult<()> {
        sqlx::query(sql::PUT_CONSENT.pg).bind(&k.user_id).bind(&k.client_id).bind(&k.scope).bind(k.granted_at).execute(&self.pool).await?;
        Ok(())
    }

    async fn revoke_consent(&self, user_id: &str, client_id: &str, now: i64) -> StoreResult<(bool, u64)> {
        let mut tx = self.pool.begin().await?;
        let had = sqlx::query(sql::DELETE_CONSENT.pg).bind(user_id).bind(client_id).execute(&mut *tx).await?.rows_affected() == 1;
        let ended =
            sqlx::query(sql::REVOKE_APP_SESSIONS.pg).bind(now).bind(user_id).bind(client_id).execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok((had, ended))
    }

    async fn apps_on_devices(&self, user_id: &str, now: i64) -> StoreResult<Vec<(String, String, String)>> {
        Ok(sqlx::query_as(sql::APPS_ON_DEVICES.pg).bind(user_id).bind(now).fetch_all(&self.pool).await?)
    }
}
