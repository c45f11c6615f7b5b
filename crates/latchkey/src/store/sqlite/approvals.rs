//! The cross-device approval state machine: device grant, pairing codes, QR login.

use super::*;

/// The insert happens only under both caps of pending requests (0: no cap).
const CREATE_APPROVAL: &str = "INSERT INTO approvals (id, flow, device_code_hash, user_code_hmac, client_id, scope, status, created_at, \
     expires_at, requester_ip, requester_ua, requester_name, requester_kind, user_id, approver_device_id, poll_interval, match_code) \
     SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ? \
     WHERE (? = 0 OR (SELECT COUNT(*) FROM approvals WHERE requester_ip = ? AND status = 'pending' AND expires_at > ?) < ?)";

#[async_trait]
impl ApprovalStore for SqliteStore {
    async fn create_approval(&self, a: &ApprovalRow, cap_per_ip: i64, now: i64, audit: Option<&AuditRow>) -> StoreResult<Created> {
        let (a, audit) = (a.clone(), audit.cloned());
        self.write(move |c| {
            let mut p: Vec<&dyn ToSql> = approval_params(&a).to_vec();
            p.extend([&cap_per_ip as &dyn ToSql, &a.requester_ip, &now, &cap_per_ip]);
            let n = c.prepare_cached(CREATE_APPROVAL)?.execute(p.as_slice())?;
            if n != 1 {
                return Ok(Created::CapReached);
            }
            if let Some(e) = &audit {
                insert_audit(c, e)?;
            }
            Ok(Created::Yes)
        })
        .await
    }

    async fn count_live_pending(&self, now: i64) -> StoreResult<i64> {
        // On the read pool, not the writer: at 100,000 live requests this takes milliseconds.
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM approvals WHERE status = 'pending' AND expires_at > ?")
            .bind(now)
            .fetch_one(&self.read)
            .await?)
    }

    async fn approval(&self, id: &str) -> StoreResult<Option<ApprovalRow>> {
        self.one(concat!("SELECT ", approval_cols!(), " FROM approvals WHERE id = ?"), [id], approval_row)
    }

    async fn approval_by_user_code(&self, hmac: &[u8]) -> StoreResult<Option<ApprovalRow>> {
        self.one(concat!("SELECT ", approval_cols!(), " FROM approvals WHERE user_code_hmac = ?"), [hmac], approval_row)
    }

    async fn poll_approval(&self, id: &str, device_code_hash: &[u8], client_id: &str, now: i64) -> StoreResult<Option<ApprovalRow>> {
        // A pending poll only reads: the time of each poll is kept in memory (see `memory`), and
        // only a too-early poll writes, to count its slow_down and lengthen the interval.
        let found = self.one(
            concat!("SELECT ", approval_cols!(), " FROM approvals WHERE id = ? AND device_code_hash = ? AND client_id = ?"),
            params![id, device_code_hash, client_id],
            approval_row,
        )?;
        let Some(mut a) = found else { return Ok(None) };
        if !self.memory.poll(&a.id, now, a.poll_interval, a.expires_at) {
            a.poll_early = 0;
            return Ok(Some(a));
        }
        let id = a.id.clone();
        let slowed = self
            .write(move |c| {
                Ok(c.prepare_cached(&format!(
                    "UPDATE approvals SET poll_early = 1, slow_downs = slow_downs + 1, poll_interval = poll_interval + 5, last_poll_at = ? \
                     WHERE id = ?{}",
                    concat!(" RETURNING ", approval_cols!())
                ))?
                .query_row(params![now, id], approval_row)
                .optional()?)
            })
            .await?;
        Ok(slowed)
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
             WHERE {filter} AND status = 'pending' AND expires_at > ?{}",
            concat!(" RETURNING ", approval_cols!())
        );
        let (handoff_hash, handoff_expires_at) = match &d.handoff {
            Some((h, e)) => (Some(h.clone()), Some(*e)),
            None => (None, None),
        };
        let (user_id, device_id, name) = (d.user_id.to_owned(), d.device_id.to_owned(), d.requester_name.map(str::to_owned));
        let key: (Option<Vec<u8>>, Option<String>) = match d.by {
            DecideBy::UserCode(h) => (Some(h.to_vec()), None),
            DecideBy::Pairing { approval_id } | DecideBy::Qr { approval_id } => (None, Some(approval_id.to_owned())),
        };
        self.write(move |c| {
            let mut p: Vec<&dyn ToSql> = vec![&status, &user_id, &device_id, &now, &name, &handoff_hash, &handoff_expires_at];
            match &key {
                (Some(hmac), _) => p.extend([hmac as &dyn ToSql, &user_id]),
                (None, id) => p.extend([id as &dyn ToSql, &user_id, &device_id]),
            }
            p.push(&now);
            Ok(c.prepare_cached(&sql)?.query_row(p.as_slice(), approval_row).optional()?)
        })
        .await
    }

    async fn deny_for_abuse(&self, id: &str, now: i64) -> StoreResult<()> {
        let id = id.to_owned();
        self.write(move |c| {
            c.prepare_cached("UPDATE approvals SET status = 'denied', decided_at = ? WHERE id = ? AND status = 'pending'")?
                .execute(params![now, id])?;
            Ok(())
        })
        .await
    }

    async fn collect_approval(
        &self,
        id: &str,
        device: &DeviceRow,
        session: &SessionRow,
        refresh: &RefreshTokenRow,
        now: i64,
    ) -> StoreResult<bool> {
        let (id, device, session, refresh) = (id.to_owned(), device.clone(), session.clone(), refresh.clone());
        self.write(move |c| {
            let collected = c
                .prepare_cached(
                    "UPDATE approvals SET status = 'collected', session_id = ? WHERE id = ? AND status = 'approved' AND expires_at > ?",
                )?
                .execute(params![session.id, id, now])?;
            if collected != 1 {
                return Ok(false);
            }
            insert_session_rows(c, &device, &session, Some(&refresh))?;
            Ok(true)
        })
        .await
    }

    async fn scan_qr(&self, id: &str, user_id: &str, device_id: &str, now: i64) -> StoreResult<Option<ApprovalRow>> {
        let (id, user_id, device_id) = (id.to_owned(), user_id.to_owned(), device_id.to_owned());
        self.write(move |c| {
            Ok(c.prepare_cached(&format!(
                "UPDATE approvals SET user_id = ?, approver_device_id = ?, scanned_at = COALESCE(scanned_at, ?) \
                 WHERE id = ? AND flow = 'qr' AND status = 'pending' AND expires_at > ? \
                   AND (approver_device_id IS NULL OR (approver_device_id = ? AND user_id = ?)){}",
                concat!(" RETURNING ", approval_cols!())
            ))?
            .query_row(params![user_id, device_id, now, id, now, device_id, user_id], approval_row)
            .optional()?)
        })
        .await
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
        let (handoff_hash, secret_hash) = (handoff_hash.to_vec(), secret_hash.to_vec());
        let (device, session, refresh) = (device.clone(), session.clone(), refresh.cloned());
        self.write(move |c| {
            let collected = c
                .prepare_cached(
                    "UPDATE approvals SET status = 'collected', handoff_used_at = ?, session_id = ? \
                     WHERE handoff_hash = ? AND device_code_hash = ? AND flow = 'qr' AND status = 'approved' AND handoff_expires_at > ?",
                )?
                .execute(params![now, session.id, handoff_hash, secret_hash, now])?;
            if collected == 1 {
                insert_session_rows(c, &device, &session, refresh.as_ref())?;
                return Ok(Handoff::Collected);
            }
            let used: Option<(Option<String>, Option<i64>)> = c
                .prepare_cached(
                    "SELECT session_id, handoff_used_at FROM approvals \
                     WHERE handoff_hash = ? AND device_code_hash = ? AND status = 'collected' AND handoff_expires_at > ?",
                )?
                .query_row(params![handoff_hash, secret_hash, now], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            Ok(match used {
                Some((Some(session_id), Some(_))) => Handoff::Replayed { session_id },
                _ => Handoff::Invalid,
            })
        })
        .await
    }

    async fn create_pairing_code(&self, c: &PairingCodeRow, now: i64) -> StoreResult<()> {
        let code = c.clone();
        self.write(move |c| {
            c.prepare_cached("UPDATE pairing_codes SET expires_at = ? WHERE issuer_device_id = ? AND redeemed_at IS NULL AND expires_at > ?")?
                .execute(params![now, code.issuer_device_id, now])?;
            c.prepare_cached(
                "INSERT INTO pairing_codes (id, user_id, issuer_device_id, code_hmac, scope, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )?
            .execute(params![code.id, code.user_id, code.issuer_device_id, code.code_hmac, code.scope, code.created_at, code.expires_at])?;
            Ok(())
        })
        .await
    }

    async fn pairing_code(&self, id: &str) -> StoreResult<Option<PairingCodeRow>> {
        self.one(
            "SELECT id, user_id, issuer_device_id, code_hmac, scope, created_at, expires_at, redeemed_at, approval_id FROM pairing_codes WHERE id = ?",
            [id],
            pairing_row,
        )
    }

    async fn redeem_pairing_code(&self, code_hmac: &[u8], a: &ApprovalRow, now: i64) -> StoreResult<Option<ApprovalRow>> {
        let (code_hmac, a) = (code_hmac.to_vec(), a.clone());
        self.write(move |c| {
            let code: Option<(String, String, String)> = c
                .prepare_cached(
                    "UPDATE pairing_codes SET redeemed_at = ?, approval_id = ? WHERE code_hmac = ? AND redeemed_at IS NULL AND expires_at > ? \
                     RETURNING user_id, issuer_device_id, scope",
                )?
                .query_row(params![now, a.id, code_hmac, now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let Some((user_id, issuer, scope)) = code else { return Ok(None) };
            let approval = ApprovalRow { user_id: Some(user_id), approver_device_id: Some(issuer), scope, ..a };
            c.prepare_cached(&format!("{INSERT_APPROVAL} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"))?
                .execute(approval_params(&approval).as_slice())?;
            Ok(Some(approval))
        })
        .await
    }
}
