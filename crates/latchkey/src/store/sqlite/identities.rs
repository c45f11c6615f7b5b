//! Upstream identities and the sign-ins sent upstream.

use super::*;

fn identity_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<IdentityRow> {
    Ok(from_row!(r, IdentityRow { id, user_id, upstream, issuer, subject, email, created_at, last_used_at }))
}

fn upstream_state_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UpstreamStateRow> {
    Ok(from_row!(r, UpstreamStateRow { state_hash, browser_hash, upstream, next, link_session_id, created_at, expires_at }))
}

#[async_trait]
impl IdentityStore for SqliteStore {
    async fn create_upstream_state(&self, row: &UpstreamStateRow) -> StoreResult<()> {
        let row = row.clone();
        self.write(move |c| {
            c.prepare_cached(sql::INSERT_UPSTREAM_STATE.lite)?.execute(sql::upstream_state_values(&row))?;
            Ok(())
        })
        .await
    }

    async fn take_upstream_state(&self, hash: &[u8], now: i64) -> StoreResult<Option<UpstreamStateRow>> {
        let hash = hash.to_vec();
        self.write(move |c| {
            Ok(c.prepare_cached(sql::TAKE_UPSTREAM_STATE.lite)?.query_row(params![hash, now], upstream_state_row).optional()?)
        })
        .await
    }

    async fn identity(&self, upstream: &str, issuer: &str, subject: &str) -> StoreResult<Option<IdentityRow>> {
        self.one(sql::IDENTITY.lite, [upstream, issuer, subject], identity_row)
    }

    async fn identities_for_user(&self, user_id: &str) -> StoreResult<Vec<IdentityRow>> {
        Ok(sqlx::query_as(sql::IDENTITIES_FOR_USER.lite).bind(user_id).fetch_all(&self.read).await?)
    }

    async fn link_identity(&self, row: &IdentityRow) -> StoreResult<()> {
        let row = row.clone();
        self.write(move |c| {
            c.prepare_cached(sql::INSERT_IDENTITY.lite)?.execute(sql::identity_values(&row))?;
            Ok(())
        })
        .await
    }

    async fn create_user_with_identity(&self, user: &UserRow, identity: &IdentityRow) -> StoreResult<()> {
        let (user, identity) = (user.clone(), identity.clone());
        // The writer runs each operation in one transaction: both rows, or neither.
        self.write(move |c| {
            c.prepare_cached(sql::INSERT_USER.lite)?.execute(sql::user_values(&user))?;
            c.prepare_cached(sql::INSERT_IDENTITY.lite)?.execute(sql::identity_values(&identity))?;
            Ok(())
        })
        .await
    }

    async fn touch_identity(&self, id: &str, email: Option<&str>, now: i64) -> StoreResult<()> {
        let (id, email) = (id.to_owned(), email.map(str::to_owned));
        self.write(move |c| {
            c.prepare_cached(sql::TOUCH_IDENTITY.lite)?.execute(params![now, id, email])?;
            Ok(())
        })
        .await
    }

    async fn unlink_identity(&self, user_id: &str, id: &str) -> StoreResult<Unlinked> {
        let (user_id, id) = (user_id.to_owned(), id.to_owned());
        self.write(move |c| remove_way_in(c, sql::UNLINK_IDENTITY, sql::OWNS_IDENTITY, &user_id, &id)).await
    }
}
