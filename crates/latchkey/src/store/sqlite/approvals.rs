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
        by: &CollectBy<'_>,
        device: &DeviceRow,
        session: &SessionRow,
        refresh: Option<&RefreshTokenRow>,
        now: i64,
    ) -> StoreResult<Collected> {
        let key = match *by {
            CollectBy::Id(id) => (id.to_owned(), None),
            CollectBy::Handoff { handoff_hash, secret_hash } => (String::new(), Some((handoff_hash.to_vec(), secret_hash.to_vec()))),
        };
        let (device, session, refresh) = (device.clone(), session.clone(), refresh.cloned());
        self.write(move |c| {
            let collected = match &key {
                (id, None) => c.prepare_cached(COLLECT_BY_ID)?.execute(params![session.id, id, now])?,
                (_, Some((handoff, secret))) => c.prepare_cached(COLLECT_BY_HANDOFF)?.execute(params![now, session.id, handoff, secret])?,
            };
            if collected == 1 {
                insert_session_rows(c, &device, &session, refresh.as_ref())?;
                return Ok(Collected::Yes);
            }
            let Some((handoff, secret)) = &key.1 else { return Ok(Collected::No) };
            let used: Option<(Option<String>, Option<i64>)> =
                c.prepare_cached(HANDOFF_USED)?.query_row(params![handoff, secret, now], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
            Ok(match used {
                Some((Some(session_id), Some(_))) => Collected::Replayed { session_id },
                _ => Collected::No,
            })
        })
        .await
    }

    async fn end_approvals_of_device(&self, user_id: &str, device_id: &str, now: i64) -> StoreResult<u64> {
        let (user_id, device_id) = (user_id.to_owned(), device_id.to_owned());
        self.write(move |c| {
            let ended = c.prepare_cached(END_APPROVALS_OF_DEVICE)?.execute(params![now, user_id, device_id])?;
            c.prepare_cached(END_PAIRING_CODES_OF_DEVICE)?.execute(params![now, user_id, device_id])?;
            Ok(ended as u64)
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

    async fn redeem_pairing_code(
        &self,
        code_hmac: &[u8],
        a: &ApprovalRow,
        cap_per_ip: i64,
        now: i64,
        audit: &AuditRow,
    ) -> StoreResult<Redeemed> {
        let (code_hmac, a, audit) = (code_hmac.to_vec(), a.clone(), audit.clone());
        self.write(move |c| {
            // The one writer runs this whole closure alone: the count and the insert cannot interleave.
            if cap_per_ip != 0 {
                let live: i64 = c.prepare_cached(COUNT_PENDING_OF_IP)?.query_row(params![a.requester_ip, now], |r| r.get(0))?;
                if live >= cap_per_ip {
                    return Ok(Redeemed::CapReached);
                }
            }
            let code: Option<(String, String, String)> = c
                .prepare_cached(REDEEM_PAIRING_CODE)?
                .query_row(params![now, a.id, code_hmac], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let Some((user_id, issuer, scope)) = code else { return Ok(Redeemed::NoSuchCode) };
            let approval = ApprovalRow { user_id: Some(user_id.clone()), approver_device_id: Some(issuer), scope, ..a };
            c.prepare_cached(&format!("{INSERT_APPROVAL} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"))?
                .execute(approval_params(&approval).as_slice())?;
            insert_audit(c, &AuditRow { user_id: Some(user_id), ..audit })?;
            Ok(Redeemed::Opened(Box::new(approval)))
        })
        .await
    }
}

/// A collection needs the approving device not to be revoked since.
const COLLECT_BY_ID: &str = "UPDATE approvals SET status = 'collected', session_id = ?1 WHERE id = ?2 AND status = 'approved' AND expires_at > ?3 \
     AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = approvals.approver_device_id AND d.revoked_at IS NOT NULL)";
const COLLECT_BY_HANDOFF: &str = "UPDATE approvals SET status = 'collected', handoff_used_at = ?1, session_id = ?2 \
     WHERE handoff_hash = ?3 AND device_code_hash = ?4 AND flow = 'qr' AND status = 'approved' AND handoff_expires_at > ?1 \
     AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = approvals.approver_device_id AND d.revoked_at IS NOT NULL)";
const HANDOFF_USED: &str = "SELECT session_id, handoff_used_at FROM approvals \
     WHERE handoff_hash = ?1 AND device_code_hash = ?2 AND status = 'collected' AND handoff_expires_at > ?3";
const END_APPROVALS_OF_DEVICE: &str = "UPDATE approvals SET status = 'denied', decided_at = ?1 \
     WHERE user_id = ?2 AND approver_device_id = ?3 AND status IN ('pending', 'approved') AND expires_at > ?1";
const END_PAIRING_CODES_OF_DEVICE: &str =
    "UPDATE pairing_codes SET expires_at = ?1 WHERE user_id = ?2 AND issuer_device_id = ?3 AND redeemed_at IS NULL AND expires_at > ?1";
const COUNT_PENDING_OF_IP: &str = "SELECT COUNT(*) FROM approvals WHERE requester_ip = ?1 AND status = 'pending' AND expires_at > ?2";
const REDEEM_PAIRING_CODE: &str = "UPDATE pairing_codes SET redeemed_at = ?1, approval_id = ?2 \
     WHERE code_hmac = ?3 AND redeemed_at IS NULL AND expires_at > ?1 RETURNING user_id, issuer_device_id, scope";
