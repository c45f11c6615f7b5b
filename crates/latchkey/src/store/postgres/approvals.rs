//! The cross-device approval state machine: device grant, pairing codes, QR login.

use super::*;

#[async_trait]
impl ApprovalStore for PgStore {
    async fn create_approval(&self, a: &ApprovalRow, cap_per_ip: i64, now: i64, audit: Option<&AuditRow>) -> StoreResult<Created> {
        let q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{INSERT_APPROVAL} SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17 \
             WHERE ($18 = 0 OR (SELECT COUNT(*) FROM approvals WHERE requester_ip = $10 AND status = 'pending' AND expires_at > $19) < $18)"
        )));
        let mut tx = self.pool.begin().await?;
        // Under READ COMMITTED two concurrent inserts from one IP could both see its count below
        // the cap; serialising them (per IP) makes each one count the ones committed before it.
        if cap_per_ip != 0 {
            xact_lock(&mut tx, LOCK_APPROVAL_CAPS, &a.requester_ip).await?;
        }
        let r = bind_approval(q, a).bind(cap_per_ip).bind(now).execute(&mut *tx).await.map_err(conflict_or)?;
        if let (1, Some(e)) = (r.rows_affected(), audit) {
            insert_audit(&mut *tx, e).await?;
        }
        tx.commit().await?;
        Ok(if r.rows_affected() == 1 { Created::Yes } else { Created::CapReached })
    }

    async fn count_live_pending(&self, now: i64) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM approvals WHERE status = 'pending' AND expires_at > $1")
            .bind(now)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn approval(&self, id: &str) -> StoreResult<Option<ApprovalRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {APPROVAL_COLS} FROM approvals WHERE id = $1")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn approval_by_user_code(&self, hmac: &[u8]) -> StoreResult<Option<ApprovalRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {APPROVAL_COLS} FROM approvals WHERE user_code_hmac = $1")))
            .bind(hmac)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn poll_approval(&self, id: &str, device_code_hash: &[u8], client_id: &str, now: i64) -> StoreResult<Option<ApprovalRow>> {
        // Every SET expression sees the row as it was before this poll.
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE approvals SET \
               poll_early = CASE WHEN last_poll_at IS NOT NULL AND $1 - last_poll_at < poll_interval THEN 1 ELSE 0 END, \
               slow_downs = slow_downs + CASE WHEN last_poll_at IS NOT NULL AND $1 - last_poll_at < poll_interval THEN 1 ELSE 0 END, \
               poll_interval = poll_interval + CASE WHEN last_poll_at IS NOT NULL AND $1 - last_poll_at < poll_interval THEN 5 ELSE 0 END, \
               last_poll_at = $1 \
             WHERE id = $4 AND device_code_hash = $2 AND client_id = $3 RETURNING {APPROVAL_COLS}"
        )))
        .bind(now)
        .bind(device_code_hash)
        .bind(client_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn decide_approval(&self, d: &Decision<'_>, now: i64) -> StoreResult<Option<ApprovalRow>> {
        let status = if d.approve { "approved" } else { "denied" };
        let filter = match d.by {
            DecideBy::UserCode(_) => "user_code_hmac = $9 AND flow = 'device_code' AND (user_id IS NULL OR user_id = $2)",
            DecideBy::Pairing { .. } => "id = $9 AND flow = 'pairing' AND user_id = $2 AND approver_device_id = $3",
            DecideBy::Qr { .. } => "id = $9 AND flow = 'qr' AND user_id = $2 AND approver_device_id = $3",
        };
        let sql = format!(
            "UPDATE approvals SET status = $1, user_id = $2, approver_device_id = $3, decided_at = $4, \
             requester_name = COALESCE($5, requester_name), handoff_hash = $6, handoff_expires_at = $7 \
             WHERE {filter} AND status = 'pending' AND expires_at > $8 RETURNING {APPROVAL_COLS}"
        );
        let (handoff_hash, handoff_expires_at) = match &d.handoff {
            Some((h, e)) => (Some(h.clone()), Some(*e)),
            None => (None, None),
        };
        let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(status)
            .bind(d.user_id)
            .bind(d.device_id)
            .bind(now)
            .bind(d.requester_name)
            .bind(handoff_hash)
            .bind(handoff_expires_at);
        q = match d.by {
            DecideBy::UserCode(h) => q.bind(now).bind(h),
            DecideBy::Pairing { approval_id } | DecideBy::Qr { approval_id } => q.bind(now).bind(approval_id),
        };
        Ok(q.fetch_optional(&self.pool).await?)
    }

    async fn deny_for_abuse(&self, id: &str, now: i64) -> StoreResult<()> {
        sqlx::query("UPDATE approvals SET status = 'denied', decided_at = $1 WHERE id = $2 AND status = 'pending'")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
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
            CollectBy::Id(id) => sqlx::query(COLLECT_BY_ID).bind(&session.id).bind(id).bind(now).execute(&mut *tx).await?,
            CollectBy::Handoff { handoff_hash, secret_hash } => {
                sqlx::query(COLLECT_BY_HANDOFF).bind(now).bind(&session.id).bind(handoff_hash).bind(secret_hash).execute(&mut *tx).await?
            }
        };
        if r.rows_affected() == 1 {
            insert_session_rows(&mut tx, device, session, refresh).await?;
            tx.commit().await?;
            return Ok(Collected::Yes);
        }
        let CollectBy::Handoff { handoff_hash, secret_hash } = *by else { return Ok(Collected::No) };
        let used: Option<(Option<String>, Option<i64>)> =
            sqlx::query_as(HANDOFF_USED).bind(handoff_hash).bind(secret_hash).bind(now).fetch_optional(&mut *tx).await?;
        Ok(match used {
            Some((Some(session_id), Some(_))) => Collected::Replayed { session_id },
            _ => Collected::No,
        })
    }

    async fn end_approvals_of_device(&self, user_id: &str, device_id: &str, now: i64) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let ended = sqlx::query(END_APPROVALS_OF_DEVICE).bind(now).bind(user_id).bind(device_id).execute(&mut *tx).await?;
        sqlx::query(END_PAIRING_CODES_OF_DEVICE).bind(now).bind(user_id).bind(device_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(ended.rows_affected())
    }

    async fn scan_qr(&self, id: &str, user_id: &str, device_id: &str, now: i64) -> StoreResult<Option<ApprovalRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE approvals SET user_id = $1, approver_device_id = $2, scanned_at = COALESCE(scanned_at, $3) \
             WHERE id = $4 AND flow = 'qr' AND status = 'pending' AND expires_at > $5 \
               AND (approver_device_id IS NULL OR (approver_device_id = $6 AND user_id = $7)) RETURNING {APPROVAL_COLS}"
        )))
        .bind(user_id)
        .bind(device_id)
        .bind(now)
        .bind(id)
        .bind(now)
        .bind(device_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn create_pairing_code(&self, c: &PairingCodeRow, now: i64) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        // At most one live code per issuing device, even when two are made at once.
        xact_lock(&mut tx, LOCK_PAIRING_ISSUER, &c.issuer_device_id).await?;
        sqlx::query("UPDATE pairing_codes SET expires_at = $1 WHERE issuer_device_id = $2 AND redeemed_at IS NULL AND expires_at > $1")
            .bind(now)
            .bind(&c.issuer_device_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO pairing_codes (id, user_id, issuer_device_id, code_hmac, scope, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(&c.id)
            .bind(&c.user_id)
            .bind(&c.issuer_device_id)
            .bind(&c.code_hmac)
            .bind(&c.scope)
            .bind(c.created_at)
            .bind(c.expires_at)
            .execute(&mut *tx)
            .await
            .map_err(conflict_or)?;
        tx.commit().await?;
        Ok(())
    }

    async fn pairing_code(&self, id: &str) -> StoreResult<Option<PairingCodeRow>> {
        Ok(sqlx::query_as(
            "SELECT id, user_id, issuer_device_id, code_hmac, scope, created_at, expires_at, redeemed_at, approval_id FROM pairing_codes WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
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
            let live: i64 = sqlx::query_scalar(COUNT_PENDING_OF_IP).bind(&a.requester_ip).bind(now).fetch_one(&mut *tx).await?;
            if live >= cap_per_ip {
                return Ok(Redeemed::CapReached);
            }
        }
        let code: Option<(String, String, String)> =
            sqlx::query_as(REDEEM_PAIRING_CODE).bind(now).bind(&a.id).bind(code_hmac).fetch_optional(&mut *tx).await?;
        let Some((user_id, issuer, scope)) = code else { return Ok(Redeemed::NoSuchCode) };
        let approval = ApprovalRow { user_id: Some(user_id.clone()), approver_device_id: Some(issuer), scope, ..a.clone() };
        bind_approval(
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "{INSERT_APPROVAL} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
            ))),
            &approval,
        )
        .execute(&mut *tx)
        .await
        .map_err(conflict_or)?;
        insert_audit(&mut *tx, &AuditRow { user_id: Some(user_id), ..audit.clone() }).await?;
        tx.commit().await?;
        Ok(Redeemed::Opened(Box::new(approval)))
    }
}

/// A collection needs the approving device not to be revoked since.
const COLLECT_BY_ID: &str = "UPDATE approvals SET status = 'collected', session_id = $1 WHERE id = $2 AND status = 'approved' AND expires_at > $3 \
     AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = approvals.approver_device_id AND d.revoked_at IS NOT NULL)";
const COLLECT_BY_HANDOFF: &str = "UPDATE approvals SET status = 'collected', handoff_used_at = $1, session_id = $2 \
     WHERE handoff_hash = $3 AND device_code_hash = $4 AND flow = 'qr' AND status = 'approved' AND handoff_expires_at > $1 \
     AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = approvals.approver_device_id AND d.revoked_at IS NOT NULL)";
const HANDOFF_USED: &str = "SELECT session_id, handoff_used_at FROM approvals \
     WHERE handoff_hash = $1 AND device_code_hash = $2 AND status = 'collected' AND handoff_expires_at > $3";
const END_APPROVALS_OF_DEVICE: &str = "UPDATE approvals SET status = 'denied', decided_at = $1 \
     WHERE user_id = $2 AND approver_device_id = $3 AND status IN ('pending', 'approved') AND expires_at > $1";
const END_PAIRING_CODES_OF_DEVICE: &str =
    "UPDATE pairing_codes SET expires_at = $1 WHERE user_id = $2 AND issuer_device_id = $3 AND redeemed_at IS NULL AND expires_at > $1";
const COUNT_PENDING_OF_IP: &str = "SELECT COUNT(*) FROM approvals WHERE requester_ip = $1 AND status = 'pending' AND expires_at > $2";
const REDEEM_PAIRING_CODE: &str = "UPDATE pairing_codes SET redeemed_at = $1, approval_id = $2 \
     WHERE code_hmac = $3 AND redeemed_at IS NULL AND expires_at > $1 RETURNING user_id, issuer_device_id, scope";
