//! Accounts and OAuth clients.

use super::*;

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_user(&self, u: &UserRow) -> StoreResult<()> {
        let u = u.clone();
        self.write(move |c| {
            c.prepare_cached(sql::INSERT_USER.lite)?.execute(sql::user_values(&u))?;
            Ok(())
        })
        .await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRow>> {
        self.one(sql::USER_BY_EMAIL.lite, [email], user_row)
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRow>> {
        self.one(sql::USER_BY_ID.lite, [id], user_row)
    }

    async fn create_client(&self, c: &ClientRow) -> StoreResult<()> {
        let client = c.clone();
        self.write(move |c| {
            c.prepare_cached(sql::INSERT_CLIENT.lite)?.execute(sql::client_values(&client))?;
            Ok(())
        })
        .await
    }

    async fn client(&self, id: &str) -> StoreResult<Option<ClientRow>> {
        self.one(sql::CLIENT.lite, [id], client_row)
    }

    async fn clients(&self) -> StoreResult<Vec<ClientRow>> {
        Ok(sqlx::query_as(sql::CLIENTS.lite).fetch_all(&self.read).await?)
    }

    async fn delete_client(&self, id: &str, now: i64) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write(move |c| {
            if c.prepare_cached(sql::REMOVE_CLIENT.lite)?.execute(params![now, id])? == 0 {
                return Ok(false);
            }
            c.prepare_cached(sql::REVOKE_CLIENT_SESSIONS.lite)?.execute(params![now, id])?;
            c.prepare_cached(sql::DELETE_CLIENT_CONSENTS.lite)?.execute([&id])?;
            Ok(true)
        })
        .await
    }

    async fn set_password_hash(&self, user_id: &str, hash: &str) -> StoreResult<()> {
        let (user_id, hash) = (user_id.to_owned(), hash.to_owned());
        self.write(move |c| {
            c.prepare_cached(sql::SET_PASSWORD_HASH.lite)?.execute([hash, user_id])?;
            Ok(())
        })
        .await
    }

    async fn set_email_if_none(&self, user_id: &str, email: &str) -> StoreResult<bool> {
        let (user_id, email) = (user_id.to_owned(), email.to_owned());
        self.write(move |c| Ok(c.prepare_cached(sql::SET_EMAIL_IF_NONE.lite)?.execute([email, user_id])? == 1)).await
    }
}
