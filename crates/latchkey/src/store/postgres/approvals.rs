//! The cross-device approval state machine on PostgreSQL: the statements are `store::sql`'s; what
//! is PostgreSQL's own is the advisory lock that makes the per-IP cap exact across instances, and
//! that every poll is recorded in the row (instances share it).

use super::*;
use crate::domain::approval::Status;

/// PostgreSQL only: each poll records its time in the row, and a poll sooner than the interval
/// after the previous one adds 5 s and sets `poll_early`, in one write. Every SET expression sees
/// the row as it was before this poll. (SQLite keeps poll times in memory instead.)
const POLL_APPROVAL: &str = concat!(
    "UPDATE approvals SET \
       poll_early = CASE WHEN last_poll_at IS NOT NULL AND $1 - last_poll_at < poll_interval THEN 1 ELSE 0 END, \
       slow_downs = slow_downs + CASE WHEN last_poll_at IS NOT NULL AND $1 - last_poll_at < poll_interval THEN 1 ELSE 0 END, \
       poll_interval = poll_interval + CASE WHEN last_poll_at IS NOT NULL AND $1 - last_poll_at < poll_interval THEN 5 ELSE 0 END, \
       last_poll_at = $1 \
     WHERE id = $4 AND device_code_hash = $2 AND client_id = $3 RETURNING ",
    approval_cols!()
);

#[async_trait]
impl ApprovalStore for PgStore {
    async fn create_approval(&self, a: &ApprovalRow, cap_per_ip: i64, now: i64, audit: Option<&AuditRow>) -> StoreResult<Created> {
        let mut tx = self.pool.begin().await?;
        // Under READ COMMITTED two concurrent inserts from one IP could both see its count below
        // the cap; serialising them (per IP) makes each one count the ones committed before it.
        if cap_per_ip != 0 {
            xact_lock(&mut tx, LOCK_APPROVAL_CAPS, &a.requester_ip).await?;
        }
        let q = bind_pg(sqlx::query(sql::CREATE_APPROVAL.pg), &sql::approval_values(a)).bind(cap_per_ip).bind(now);
        let r = q.execute(&mut *tx).await.map_err(conflict_or)?;
        if let (1, Some(e)) = (r.rows_affected(), audit) {
            insert_audit(&mut *tx, e).await?;
        }
        tx.commit().await?;
        Ok(if r.rows_affected() == 1 { Created::Yes } else { Created::CapReached })
    }

    async fn count_live_pending(&self, now: i64) -> StoreResult<i64> {
        Ok(sqlx::query_scalar(sql::COUNT_LIVE_PENDING.pg).bind(now).fetch_one(&self.pool).await?)
    }

    async fn approval(&self, id: &str) -> StoreResult<Option<ApprovalRow>> {
        Ok(sqlx::query_as(sql::APPROVAL.pg).bind(id).fetch_optional(&self.pool).await?)
    }

    async fn approval_by_user_code(&self, hmac: &[u8]) -> StoreResult<Option<ApprovalRow>> {
        Ok(sqlx::query_as(sql::APPROVAL_BY_USER_CODE.pg).bind(hmac).fetch_optional(&self.pool).await?)
    }

    async fn poll_approval(&self, id: &str, device_code_hash: &[u8], client_id: &str, now: i64) -> StoreResult<Option<ApprovalRow>> {
        Ok(sqlx::query_as(POLL_APPROVAL).bind(now).bind(device_code_hash).bind(client_id).bind(id).fetch_optional(&self.pool).await?)
    }

    async fn decide_approval(&self, d: &Decision<'_>, now: i64) -> StoreResult<Option<ApprovalRow>> {
        let status = if d.approve { Status::Approved } else { Status::Denied };
        let (handoff_hash, handoff_expires_at) = d.handoff.clone().unzip();
        let statement = match d.by {
            DecideBy::UserCode(_) => sql::DECIDE_BY_USER_CODE,
            DecideBy::Pairing { .. } => sql::DECIDE_PAIRING,
            DecideBy::Qr { .. } => sql::DECIDE_QR,
        };
        let q = sqlx::query_as(statement.pg)
            .bind(status.as_str())
            .bind(d.user_id)
            .bind(d.device_id)
            .bind(now)
            .bind(d.requester_name)
            .bind(handoff_hash)
            .bind(handoff_expires_at);
        let q = match d.by {
            DecideBy::UserCode(h) => q.bind(h),
            DecideBy::Pairing { approval_id } | DecideBy::Qr { approval_id } => q.bind(approval_id),
        };
        Ok(q.bind(d.passkey_verified).fetch_optional(&self.pool).await?)
    }

    async fn deny_for_abuse(&self, id: &str, now: i64) -> StoreResult<bool> {
        Ok(sqlx::query(sql::DENY_FOR_ABUSE.pg).bind(now).bind(id).execute(&self.pool).await?.rows_affected() == 1)
    }

    async fn end_approval(&self, id: &str, now: i64) -> StoreResult<bool> {
        Ok(sqlx::query(sql::END_APPROVAL.pg).bind(now).bind(id).execute(&self.pool).await?.rows_affected() == 1)
    }

    async fn collect_approval(
        &self,
        by: &CollectBy<'_>,
        device: &DeviceRow,
        session: &SessionRow,
        refresh: Option<&RefreshTokenRow>,
        now: i64,
    ) -> StoreResult<Collected> {
        let mut tx = self.pool.begin().await?;
        let r = match *by {
            CollectBy::Id(id) => sqlx::query(sql::COLLECT_BY_ID.pg).bind(&session.id).bind(id).bind(now).execute(&mut *tx).await?,
            CollectBy::Handoff { handoff_hash, secret_hash } => {
                let q = sqlx::query(sql::COLLECT_BY_HANDOFF.pg).bind(now).bind(&session.id).bind(handoff_hash).bind(secret_hash);
                q.execute(&mut *tx).await?
            }
        };
        if r.rows_affected() == 1 {
            insert_session_rows(&mut tx, device, session, refresh).await?;
            tx.commit().await?;
            return Ok(Collected::Yes);
        }
        let CollectBy::Handoff { handoff_hash, secret_hash } = *by else { return Ok(Collected::No) };
        let used: Option<(Option<String>, Option<i64>)> =
            sqlx::query_as(sql::HANDOFF_USED.pg).bind(handoff_hash).bind(secret_hash).bind(now).fetch_optional(&mut *tx).await?;
        Ok(match used {
            Some((Some(session_id), Some(_))) => Collected::Replayed { session_id },
            _ => Collected::No,
        })
    }

    async fn end_approvals_of_device(&self, user_id: &str, device_id: &str, now: i64) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let ended = sqlx::query(sql::END_APPROVALS_OF_DEVICE.pg).bind(now).bind(user_id).bind(device_id).execute(&mut *tx).await?;
        sqlx::query(sql::END_PAIRING_CODES_OF_DEVICE.pg).bind(now).bind(user_id).bind(device_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(ended.rows_affected())
    }

    async fn scan_qr(&self, id: &str, user_id: &str, device_id: &str, now: i64) -> StoreResult<Option<ApprovalRow>> {
        Ok(sqlx::query_as(sql::SCAN_QR.pg).bind(user_id).bind(device_id).bind(now).bind(id).fetch_optional(&self.pool).await?)
    }

    async fn create_pairing_code(&self, c: &PairingCodeRow, now: i64) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // At most one live code per issuing device, even when two are made at once.
        xact_lock(&mut tx, LOCK_PAIRING_ISSUER, &c.issuer_device_id).await?;
        sqlx::query(sql::END_LIVE_PAIRING_CODES.pg).bind(now).bind(&c.issuer_device_id).execute(&mut *tx).await?;
        bind_pg(sqlx::query(sql::INSERT_PAIRING_CODE.pg), &sql::pairing_code_values(c)).execute(&mut *tx).await.map_err(conflict_or)?;
        tx.commit().await?;
        Ok(())
    }

    async fn pairing_code(&self, id: &str) -> StoreResult<Option<PairingCodeRow>> {
        Ok(sqlx::query_as(sql::PAIRING_CODE.pg).bind(id).fetch_optional(&self.pool).await?)
    }

    async fn redeem_pairing_code(
        &self,
        code_hmac: &[u8],
        a: &ApprovalRow,
        cap_per_ip: i64,
        now: i64,
        audit: &AuditRow,
    ) -> StoreResult<Redeemed> {
        let mut tx = self.pool.begin().await?;
        if cap_per_ip != 0 {
            // As in create_approval: one IP's requests are counted one at a time.
            xact_lock(&mut tx, LOCK_APPROVAL_CAPS, &a.requester_ip).await?;
            let live: i64 = sqlx::query_scalar(sql::COUNT_PENDING_OF_IP.pg).bind(&a.requester_ip).bind(now).fetch_one(&mut *tx).await?;
            if live >= cap_per_ip {
                return Ok(Redeemed::CapReached);
            }
        }
        let code: Option<(String, String, String)> =
            sqlx::query_as(sql::REDEEM_PAIRING_CODE.pg).bind(now).bind(&a.id).bind(code_hmac).fetch_optional(&mut *tx).await?;
        let Some((user_id, issuer, scope)) = code else { return Ok(Redeemed::NoSuchCode) };
        let approval = ApprovalRow { user_id: Some(user_id.clone()), approver_device_id: Some(issuer), scope, ..a.clone() };
        bind_pg(sqlx::query(sql::INSERT_APPROVAL.pg), &sql::approval_values(&approval)).execute(&mut *tx).await.map_err(conflict_or)?;
        insert_audit(&mut *tx, &AuditRow { user_id: Some(user_id), ..audit.clone() }).await?;
        tx.commit().await?;
        Ok(Redeemed::Opened(Box::new(approval)))
    }
}
