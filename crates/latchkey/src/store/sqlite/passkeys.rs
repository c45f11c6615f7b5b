//! Passkeys and their ceremonies.

use super::*;

fn passkey_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PasskeyRow> {
    Ok(from_row!(
        r,
        PasskeyRow { id, user_id, credential_id, name, credential, counter, backup_eligible, backed_up, created_at, last_used_at }
    ))
}

fn challenge_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PasskeyChallengeRow> {
    Ok(from_row!(r, PasskeyChallengeRow { handle_hash, purpose, user_id, session_id, name, state, created_at, expires_at }))
}

#[async_trait]
impl PasskeyStore for SqliteStore {
    async fn create_passkey_challenge(&self, row: &PasskeyChallengeRow) -> StoreResult<()> {
        let row = row.clone();
        self.write(move |c| {
            c.prepare_cached(sql::INSERT_PASSKEY_CHALLENGE.lite)?.execute(sql::passkey_challenge_values(&row))?;
            Ok(())
        })
        .await
    }

    async fn take_passkey_challenge(&self, hash: &[u8], purpose: &str, now: i64) -> StoreResult<Option<PasskeyChallengeRow>> {
        let (hash, purpose) = (hash.to_vec(), purpose.to_owned());
        self.write(move |c| {
            Ok(c.prepare_cached(sql::TAKE_PASSKEY_CHALLENGE.lite)?.query_row(params![hash, purpose, now], challenge_row).optional()?)
        })
        .await
    }

    async fn add_passkey(&self, row: &PasskeyRow) -> StoreResult<()> {
        let row = row.clone();
        self.write(move |c| {
            c.prepare_cached(sql::INSERT_PASSKEY.lite)?.execute(sql::passkey_values(&row))?;
            Ok(())
        })
        .await
    }

    async fn passkeys_for_user(&self, user_id: &str) -> StoreResult<Vec<PasskeyRow>> {
        Ok(sqlx::query_as(sql::PASSKEYS_FOR_USER.lite).bind(user_id).fetch_all(&self.read).await?)
    }

    async fn passkey_by_credential(&self, credential_id: &[u8]) -> StoreResult<Option<PasskeyRow>> {
        self.one(sql::PASSKEY_BY_CREDENTIAL.lite, [credential_id], passkey_row)
    }

    async fn use_passkey(&self, id: &str, credential: &str, counter: i64, backed_up: bool, now: i64) -> StoreResult<bool> {
        let (id, credential) = (id.to_owned(), credential.to_owned());
        self.write(move |c| Ok(c.prepare_cached(sql::USE_PASSKEY.lite)?.execute(params![credential, counter, backed_up, now, id])? == 1))
            .await
    }

    async fn rename_passkey(&self, user_id: &str, id: &str, name: &str) -> StoreResult<bool> {
        let (user_id, id, name) = (user_id.to_owned(), id.to_owned(), name.to_owned());
        self.write(move |c| Ok(c.prepare_cached(sql::RENAME_PASSKEY.lite)?.execute(params![name, id, user_id])? == 1)).await
    }

    async fn remove_passkey(&self, user_id: &str, id: &str) -> StoreResult<Unlinked> {
        let (user_id, id) = (user_id.to_owned(), id.to_owned());
        self.write(move |c| remove_way_in(c, sql::REMOVE_PASSKEY, sql::OWNS_PASSKEY, &user_id, &id)).await
    }

    async fn mark_session_passkey(&self, session_id: &str, now: i64) -> StoreResult<bool> {
        let id = session_id.to_owned();
        self.write(move |c| Ok(c.prepare_cached(sql::MARK_SESSION_PASSKEY.lite)?.execute(params![now, id])? == 1)).await
    }

    async fn revoke_passkey_sessions(&self, user_id: &str, passkey_id: &str, now: i64) -> StoreResult<u64> {
        let (user_id, passkey_id) = (user_id.to_owned(), passkey_id.to_owned());
        self.write(move |c| Ok(c.prepare_cached(sql::REVOKE_PASSKEY_SESSIONS.lite)?.execute(params![now, user_id, passkey_id])? as u64))
            .await
    }

    async fn passkey_step_up(&self, user_id: &str) -> StoreResult<bool> {
        Ok(self.one(sql::PASSKEY_STEP_UP.lite, [user_id], |r| r.get(0))?.unwrap_or(false))
    }

    async fn set_passkey_step_up(&self, user_id: &str, on: bool) -> StoreResult<()> {
        let user_id = user_id.to_owned();
        self.write(move |c| {
            c.prepare_cached(sql::SET_PASSKEY_STEP_UP.lite)?.execute(params![on, user_id])?;
            Ok(())
        })
        .await
    }
}
