//! Authorization codes and consents.

use super::*;

fn auth_code_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuthCodeRow> {
    Ok(from_row!(
        r,
        AuthCodeRow {
            code_hash,
            client_id,
            redirect_uri,
            user_id,
            browser_session_id,
            device_id,
            scope,
            nonce,
            code_challenge,
            auth_time,
            amr,
            created_at,
            expires_at,
            used_at,
            issued_session_id,
        }
    ))
}

#[async_trait]
impl GrantStore for SqliteStore {
    async fn create_auth_code(&self, code: &AuthCodeRow) -> StoreResult<()> {
        let code = code.clone();
        self.write(move |c| {
            c.prepare_cached(sql::INSERT_AUTH_CODE.lite)?.execute(sql::auth_code_values(&code))?;
            Ok(())
        })
        .await
    }

    async fn auth_code(&self, hash: &[u8]) -> StoreResult<Option<AuthCodeRow>> {
        self.one(sql::AUTH_CODE.lite, [hash], auth_code_row)
    }

    async fn auth_code_context(&self, hash: &[u8]) -> StoreResult<Option<CodeContext>> {
        self.point.read(|c| {
            // One snapshot for the three reads: under load every commit empties a connection's
            // page cache, and three separate reads would each start over.
            let tx = c.unchecked_transaction()?;
            let Some(code) = tx.prepare_cached(sql::AUTH_CODE.lite)?.query_row([hash], auth_code_row).optional()? else {
                return Ok(None);
            };
            let device =
                tx.prepare_cached(sql::DEVICE.lite)?.query_row([&code.device_id, &code.user_id], super::sessions::device_row).optional()?;
            let user = tx.prepare_cached(sql::USER_BY_ID.lite)?.query_row([&code.user_id], user_row).optional()?;
            Ok(Some(CodeContext { code, device, user }))
        })
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
        let (hash, client_id, d, s, r) = (hash.to_vec(), client_id.to_owned(), d.clone(), s.clone(), r.clone());
        self.write(move |c| {
            // The writer runs each operation in one transaction.
            let redeemed =
                c.prepare_cached(sql::REDEEM_AUTH_CODE.lite)?.query_row(params![now, s.id, hash, client_id], auth_code_row).optional()?;
            if redeemed.is_some() {
                insert_session_rows(c, &d, &s, Some(&r))?;
            }
            Ok(redeemed)
        })
        .await
    }

    async fn consent(&self, user_id: &str, client_id: &str) -> StoreResult<Option<ConsentRow>> {
        self.one(sql::CONSENT.lite, [user_id, client_id], |r| Ok(from_row!(r, ConsentRow { user_id, client_id, scope, granted_at })))
    }

    async fn consents_for_user(&self, user_id: &str) -> StoreResult<Vec<ConsentRow>> {
        Ok(sqlx::query_as(sql::CONSENTS_FOR_USER.lite).bind(user_id).fetch_all(&self.read).await?)
    }

    async fn put_consent(&self, consent: &ConsentRow) -> StoreResult<()> {
        let k = consent.clone();
        self.write(move |c| {
            c.prepare_cached(sql::PUT_CONSENT.lite)?.execute(params![k.user_id, k.client_id, k.scope, k.granted_at])?;
            Ok(())
        })
        .await
    }

    async fn revoke_consent(&self, user_id: &str, client_id: &str, now: i64) -> StoreResult<(bool, u64)> {
        let (user_id, client_id) = (user_id.to_owned(), client_id.to_owned());
        self.write(move |c| {
            let had = c.prepare_cached(sql::DELETE_CONSENT.lite)?.execute([&user_id, &client_id])? == 1;
            let ended = c.prepare_cached(sql::REVOKE_APP_SESSIONS.lite)?.execute(params![now, user_id, client_id])? as u64;
            Ok((had, ended))
        })
        .await
    }

    async fn apps_on_devices(&self, user_id: &str, now: i64) -> StoreResult<Vec<(String, String, String)>> {
        Ok(sqlx::query_as(sql::APPS_ON_DEVICES.lite).bind(user_id).bind(now).fetch_all(&self.read).await?)
    }
}
