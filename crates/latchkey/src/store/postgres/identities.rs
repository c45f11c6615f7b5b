//! Upstream identities and the sign-ins sent upstream.

use super::*;

#[async_trait]
impl IdentityStore for PgStore {
    async fn create_upstream_state(&self, row: &UpstreamStateRow) -> StoreResult<()> {
        bind_pg(sqlx::query(sql::INSERT_UPSTREAM_STATE.pg), &sql::upstream_state_values(row))
            .execute(&self.pool)
            .await
            .map_err(conflict_or)?;
        Ok(())
    }

    async fn take_upstream_state(&self, hash: &[u8], now: i64) -> StoreResult<Option<UpstreamStateRow>> {
        Ok(sqlx::query_as(sql::TAKE_UPSTREAM_STATE.pg).bind(hash).bind(now).fetch_optional(&self.pool).await?)
    }

    async fn identity(&self, upstream: &str, issuer: &str, subject: &str) -> StoreResult<Option<IdentityRow>> {
        Ok(sqlx::query_as(sql::IDENTITY.pg).bind(upstream).bind(issuer).bind(subject).fetch_optional(&self.pool).await?)
    }

    async fn identities_for_user(&self, user_id: &str) -> StoreResult<Vec<IdentityRow>> {
        Ok(sqlx::query_as(sql::IDENTITIES_FOR_USER.pg).bind(user_id).fetch_all(&self.pool).await?)
    }

    async fn link_identity(&self, row: &IdentityRow) -> StoreResult<()> {
        bind_pg(sqlx::query(sql::INSERT_IDENTITY.pg), &sql::identity_values(row)).execute(&self.pool).await.map_err(conflict_or)?;
        Ok(())
    }

    async fn create_user_with_identity(&self, user: &UserRow, identity: &IdentityRow) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        bind_pg(sqlx::query(sql::INSERT_USER.pg), &sql::user_values(user)).execute(&mut *tx).await.map_err(conflict_or)?;
        bind_pg(sqlx::query(sql::INSERT_IDENTITY.pg), &sql::identity_values(identity)).execute(&mut *tx).await.map_err(conflict_or)?;
        tx.commit().await?;
        Ok(())
    }

    async fn touch_identity(&self, id: &str, email: Option<&str>, now: i64) -> StoreResult<()> {
        sqlx::query(sql::TOUCH_IDENTITY.pg).bind(now).bind(id).bind(email).execute(&self.pool).await?;
        Ok(())
    }

    async fn unlink_identity(&self, user_id: &str, id: &str) -> StoreResult<Unlinked> {
        self.remove_way_in(sql::UNLINK_IDENTITY, sql::OWNS_IDENTITY, user_id, id).await
    }
}
