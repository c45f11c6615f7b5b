//! Accounts and OAuth clients.

use super::*;

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_user(&self, u: &UserRow) -> StoreResult<()> {
        let u = u.clone();
        self.write(move |c| {
            c.prepare_cached("INSERT INTO users (id, email, password_hash, created_at) VALUES (?, ?, ?, ?)")?.execute(params![
                u.id,
                u.email,
                u.password_hash,
                u.created_at
            ])?;
            Ok(())
        })
        .await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRow>> {
        self.one("SELECT id, email, password_hash, created_at FROM users WHERE email = ?", [email], user_row)
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRow>> {
        self.one("SELECT id, email, password_hash, created_at FROM users WHERE id = ?", [id], user_row)
    }

    async fn create_client(&self, c: &ClientRow) -> StoreResult<()> {
        let client = c.clone();
        self.write(move |c| {
            c.prepare_cached("INSERT INTO clients (id, name, secret_hash, created_at) VALUES (?, ?, ?, ?)")?.execute(params![
                client.id,
                client.name,
                client.secret_hash,
                client.created_at
            ])?;
            Ok(())
        })
        .await
    }

    async fn client(&self, id: &str) -> StoreResult<Option<ClientRow>> {
        self.one("SELECT id, name, secret_hash, created_at FROM clients WHERE id = ?", [id], client_row)
    }

    async fn set_password_hash(&self, user_id: &str, hash: &str) -> StoreResult<()> {
        let (user_id, hash) = (user_id.to_owned(), hash.to_owned());
        self.write(move |c| {
            c.prepare_cached("UPDATE users SET password_hash = ? WHERE id = ?")?.execute([hash, user_id])?;
            Ok(())
        })
        .await
    }

    async fn set_email_if_none(&self, user_id: &str, email: &str) -> StoreResult<bool> {
        let (user_id, email) = (user_id.to_owned(), email.to_owned());
        self.write(move |c| {
            Ok(c.prepare_cached("UPDATE users SET email = ? WHERE id = ? AND email IS NULL")?.execute([email, user_id])? == 1)
        })
        .await
    }
}
