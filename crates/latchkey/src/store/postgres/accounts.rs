//! Accounts and OAuth clients.

use super::*;

#[async_trait]
impl AccountStore for PgStore {
    async fn create_user(&self, u: &UserRow) -> StoreResult<()> {
        bind_pg(sqlx::query(sql::INSERT_USER.pg), &sql::user_values(u)).execute(&self.pool).await.map_err(conflict_or)?;
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRow>> {
        Ok(sqlx::query_as(sql::USER_BY_EMAIL.pg).bind(email).fetch_optional(&self.pool).await?)
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRow>> {
        Ok(sqlx::query_as(sql::USER_BY_ID.pg).bind(id).fetch_optional(&self.pool).await?)
    }

    async fn create_client(&self, c: &ClientRow) -> StoreResult<()> {
        bind_pg(sqlx::query(sql::INSERT_CLIENT.pg), &sql::client_values(c)).execute(&self.pool).await.map_err(conflict_or)?;
        Ok(())
    }

    async fn client(&self, id: &str) -> StoreResult<Option<ClientRow>> {
        Ok(sqlx::query_as(sql::CLIENT.pg).bind(id).fetch_optional(&self.pool).await?)
    }

    async fn clients(&self) -> StoreResult<Vec<ClientRow>> {
        Ok(sqlx::query_as(sql::CLIENTS.pg).fetch_all(&self.pool).await?)
    }

    async fn delete_client(&self, id: &str, now: i64) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        if sqlx::query(sql::REMOVE_CLIENT.pg).bind(now).bind(id).execute(&mut *tx).await?.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(sql::REVOKE_CLIENT_SESSIONS.pg).bind(now).bind(id).execute(&mut *tx).await?;
        sqlx::query(sql::DELETE_CLIENT_CONSENTS.pg).bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn set_password_hash(&self, user_id: &str, hash: &str) -> StoreResult<()> {
        sqlx::query(sql::SET_PASSWORD_HASH.pg).bind(hash).bind(user_id).execute(&self.pool).await?;
        Ok(())
    }

    async fn set_email_if_none(&self, user_id: &str, email: &str) -> StoreResult<bool> {
        let r = sqlx::query(sql::SET_EMAIL_IF_NONE.pg).bind(email).bind(user_id).execute(&self.pool).await.map_err(conflict_or)?;
        Ok(r.rows_affected() == 1)
    }
}
