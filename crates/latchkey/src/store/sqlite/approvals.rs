//! The cross-device approval state machine: device grant, pairing codes, QR login.

use super::*;

#[async_trait]
impl ApprovalStore for SqliteStore {
    async fn create_approval(&self, a: &ApprovalRow, cap_per_ip: i64, cap_total: i64, now: i64) -> StoreResult<Created> {
        let q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{INSERT_APPROVAL} SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? \
             WHERE (? = 0 OR (SELECT COUNT(*) FROM approvals WHERE requester_ip = ? AND status = 'pending' AND expires_at > ?) < ?) \
               AND (? = 0 OR (SELECT COUNT(*) FROM approvals WHERE status = 'pending' AND expires_at > ?) < ?)"
        )));
        let r = bind_approval(q, a)
            .bind(cap_per_ip)
            .bind(&a.requester_ip)
            .bind(now)
            .bind(cap_per_ip)
            .bind(cap_total)
            .bind(now)
            .bind(cap_total)
            .execute(&self.write)
            .await
            .map_err(conflict_or)?;
        Ok(if r.rows_affected() == 1 { Created::Yes } else { Created::CapReached })
    }

    async fn approval(&self, id: &str) -> StoreResult<Option<ApprovalRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {APPROVAL_COLS} FROM approvals WHERE id = ?")))
            .bind(id)
            .fetch_optional(&self.read)
            .await?)
    }

    async fn approval_by_user_code(&self, hmac: &[u8]) -> StoreResult<Option<ApprovalRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {APPROVAL_COLS} FROM approvals WHERE user_code_hmac = ?")))
            .bind(hmac)
            .fetch_optional(&self.read)
            .await?)
    }

    async fn approval_by_secret(&self, hash: &[u8]) -> StoreResult<Option<ApprovalRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {APPROVAL_COLS} FROM approvals WHERE device_code_hash = ?")))
            .bind(hash)
            .fetch_optional(&self.read)
            .await?)
    }

    async fn poll_approval(&self, device_code_hash: &[u8], client_id: &str, now: i64) -> StoreResult<Option<ApprovalRow>> {
        // Every SET expression sees the row as it was before this poll.
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE approvals SET \
               poll_early = (last_poll_at IS NOT NULL AND ? - last_poll_at < poll_interval), \
               slow_downs = slow_downs + (last_poll_at IS NOT NULL AND ? - last_poll_at < poll_interval), \
               poll_interval = poll_interval + 5 * (last_poll_at IS NOT NULL AND ? - last_poll_at < poll_interval), \
               last_poll_at = ? \
             WHERE device_code_hash = ? AND client_id = ? RETURNING {APPROVAL_COLS}"
        )))
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(now)
        .bind(device_code_hash)
        .bind(client_id)
        .fetch_optional(&self.write)
        .await?)
    }

    async fn decide_approval(&self, d: &Decision<'_>, now: i64) -> StoreResult<Option<ApprovalRow>> {
        let status = if d.approve { "approved" } else { "denied" };
        let filter = match d.by {
            DecideBy::UserCode(_) => "user_code_hmac = ? AND flow = 'device_code' AND (user_id IS NULL OR user_id = ?)",
            DecideBy::Pairing { .. } => "id = ? AND flow = 'pairing' AND user_id = ? AND approver_device_id = ?",
            DecideBy::Qr { .. } => "id = ? AND flow = 'qr' AND user_id = ? AND approver_device_id = ?",
        };
        let sql = format!(
            "UPDATE approvals SET status = ?, user_id = ?, approver_device_id = ?, decided_at = ?, \
             requester_name = COALESCE(?, requester_name), handoff_hash = ?, handoff_expires_at = ? \
             WHERE {filter} AND status = 'pending' AND expires_at > ? RETURNING {APPROVAL_COLS}"
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
            DecideBy::UserCode(h) => q.bind(h).bind(d.user_id),
            DecideBy::Pairing { approval_id } | DecideBy::Qr { approval_id } => q.bind(approval_id).bind(d.user_id).bind(d.device_id),
        };
        Ok(q.bind(now).fetch_optional(&self.write).await?)
    }

    async fn deny_for_abuse(&self, id: &str, now: i64) -> StoreResult<()> {
        sqlx::query("UPDATE approvals SET status = 'denied', decided_at = ? WHERE id = ? AND status IN ('pending', 'approved')")
            .bind(now)
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn collect_approval(
        &self,
        id: &str,
        device: &DeviceRow,
        session: &SessionRow,
        refresh: &RefreshTokenRow,
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let r = sqlx::query(
            "UPDATE approvals SET status = 'collected', session_id = ? WHERE id = ? AND status = 'approved' AND expires_at > ?",
        )
        .bind(&session.id)
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        insert_session_rows(&mut tx, device, session, Some(refresh)).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn scan_qr(&self, id: &str, user_id: &str, device_id: &str, now: i64) -> StoreResult<Option<ApprovalRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE approvals SET user_id = ?, approver_device_id = ?, scanned_at = COALESCE(scanned_at, ?) \
             WHERE id = ? AND flow = 'qr' AND status = 'pending' AND expires_at > ? \
               AND (approver_device_id IS NULL OR (approver_device_id = ? AND user_id = ?)) RETURNING {APPROVAL_COLS}"
        )))
        .bind(user_id)
        .bind(device_id)
        .bind(now)
        .bind(id)
        .bind(now)
        .bind(device_id)
        .bind(user_id)
        .fetch_optional(&self.write)
        .await?)
    }

    async fn collect_handoff(
        &self,
        handoff_hash: &[u8],
        secret_hash: &[u8],
        device: &DeviceRow,
        session: &SessionRow,
        refresh: Option<&RefreshTokenRow>,
        now: i64,
    ) -> StoreResult<Handoff> {
        let mut tx = self.write_tx().await?;
        let r = sqlx::query(
            "UPDATE approvals SET status = 'collected', handoff_used_at = ?, session_id = ? \
             WHERE handoff_hash = ? AND device_code_hash = ? AND flow = 'qr' AND status = 'approved' AND handoff_expires_at > ?",
        )
        .bind(now)
        .bind(&session.id)
        .bind(handoff_hash)
        .bind(secret_hash)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 1 {
            insert_session_rows(&mut tx, device, session, refresh).await?;
            tx.commit().await?;
            return Ok(Handoff::Collected);
        }
        let used: Option<(Option<String>, Option<i64>)> = sqlx::query_as(
            "SELECT session_id, handoff_used_at FROM approvals WHERE handoff_hash = ? AND device_code_hash = ? AND status = 'collected' AND handoff_expires_at > ?",
        )
        .bind(handoff_hash)
        .bind(secret_hash)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        Ok(match used {
            Some((Some(session_id), Some(_))) => Handoff::Replayed { session_id },
            _ => Handoff::Invalid,
        })
    }

    async fn create_pairing_code(&self, c: &PairingCodeRow, now: i64) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("UPDATE pairing_codes SET expires_at = ? WHERE issuer_device_id = ? AND redeemed_at IS NULL AND expires_at > ?")
            .bind(now)
            .bind(&c.issuer_device_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO pairing_codes (id, user_id, issuer_device_id, code_hmac, scope, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)")
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
            "SELECT id, user_id, issuer_device_id, code_hmac, scope, created_at, expires_at, redeemed_at, approval_id FROM pairing_codes WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await?)
    }

    async fn redeem_pairing_code(&self, code_hmac: &[u8], a: &ApprovalRow, now: i64) -> StoreResult<Option<ApprovalRow>> {
        let mut tx = self.write_tx().await?;
        let code: Option<(String, String, String)> = sqlx::query_as(
            "UPDATE pairing_codes SET redeemed_at = ?, approval_id = ? WHERE code_hmac = ? AND redeemed_at IS NULL AND expires_at > ? \
             RETURNING user_id, issuer_device_id, scope",
        )
        .bind(now)
        .bind(&a.id)
        .bind(code_hmac)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((user_id, issuer, scope)) = code else { return Ok(None) };
        let approval = ApprovalRow { user_id: Some(user_id), approver_device_id: Some(issuer), scope, ..a.clone() };
        bind_approval(
            sqlx::query(sqlx::AssertSqlSafe(format!("{INSERT_APPROVAL} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"))),
            &approval,
        )
        .execute(&mut *tx)
        .await
        .map_err(conflict_or)?;
        tx.commit().await?;
        Ok(Some(approval))
    }
}
