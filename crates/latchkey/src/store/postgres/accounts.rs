//! Accounts and OAuth clients.

use super::*;

#[async_trait]
impl AccountStore for PgStore {
    async fn create_user(&self, u: &UserRow) -> StoreResult<()> {
        sqlx::query("INSERT INTO users (id, email, password_hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&u.id)
            .bind(&u.email)
            .bind(&u.password_hash)
            .bind(u.created_at)
            .execute(&self.pool)
            .await
            .map_err(conflict_or)?;
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRow>> {
        Ok(sqlx::query_as("SELECT id, email, password_hash, created_at FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRow>> {
        Ok(sqlx::query_as("SELECT id, email, password_hash, created_at FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn create_client(&self, c: &ClientRow) -> StoreResult<()> {
        sqlx::query("INSERT INTO clients (id, name, secret_hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&c.id)
            .bind(&c.name)
            .bind(&c.secret_hash)
            .bind(c.created_at)
            .execute(&self.pool)
            .await
            .map_err(conflict_or)?;
        Ok(())
    }

    async fn client(&self, id: &str) -> StoreResult<Option<ClientRow>> {
        Ok(sqlx::query_as("SELECT id, name, secret_hash, created_at FROM clients WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn set_password_hash(&self, user_id: &str, hash: &str) -> StoreResult<()> {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2").bind(hash).bind(user_id).execute(&self.pool).await?;
        Ok(())
    }

    async fn set_email_if_none(&self, user_id: &str, email: &str) -> StoreResult<bool> {
        let r = sqlx::query("UPDATE users SET email = $1 WHERE id = $2 AND email IS NULL")
            .bind(email)
            .bind(user_id)
            .execute(&self.pool)
            .await
            .map_err(conflict_or)?;
        Ok(r.rows_affected() == 1)
    }
}
