//! The cross-device approval state machine on SQLite: the statements are `store::sql`'s; what is
//! SQLite's own is that each operation is one closure on the writer thread (so a count and an
//! insert in it cannot interleave with another writer), and that poll times are kept in memory.

use super::*;
use crate::domain::approval::Status;

/// SQLite only: a pending poll only reads, because the time of each poll is kept in memory (see
/// `memory`); PostgreSQL, shared by instances, records every poll in the row instead.
const APPROVAL_FOR_POLL: &str =
    concat!("SELECT ", approval_cols!(), " FROM approvals WHERE id = ?1 AND device_code_hash = ?2 AND client_id = ?3");
/// SQLite only: a too-early poll writes its slow_down and the longer interval.
const SLOW_DOWN: &str = concat!(
    "UPDATE approvals SET poll_early = 1, slow_downs = slow_downs + 1, poll_interval = poll_interval + 5, last_poll_at = ?1 \
     WHERE id = ?2 RETURNING ",
    approval_cols!()
);

#[async_trait]
impl ApprovalStore for SqliteStore {
    async fn create_approval(&self, a: &ApprovalRow, cap_per_ip: i64, now: i64, audit: Option<&AuditRow>) -> StoreResult<Created> {
        let (a, audit) = (a.clone(), audit.cloned());
        self.write(move |c| {
            let values = sql::approval_values(&a).into_iter().chain([&cap_per_ip as &dyn sql::Param, &now]);
            let n = c.prepare_cached(sql::CREATE_APPROVAL.lite)?.execute(rusqlite::params_from_iter(values))?;
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
        Ok(sqlx::query_scalar(sql::COUNT_LIVE_PENDING.lite).bind(now).fetch_one(&self.read).await?)
    }

    async fn approval(&self, id: &str) -> StoreResult<Option<ApprovalRow>> {
        self.one(sql::APPROVAL.lite, [id], approval_row)
    }

    async fn approval_by_user_code(&self, hmac: &[u8]) -> StoreResult<Option<ApprovalRow>> {
        self.one(sql::APPROVAL_BY_USER_CODE.lite, [hmac], approval_row)
    }

    async fn poll_approval(&self, id: &str, device_code_hash: &[u8], client_id: &str, now: i64) -> StoreResult<Option<ApprovalRow>> {
        let found = self.one(APPROVAL_FOR_POLL, params![id, device_code_hash, client_id], approval_row)?;
        let Some(mut a) = found else { return Ok(None) };
        if !self.memory.poll(&a.id, now, a.poll_interval, a.expires_at) {
            a.poll_early = 0;
            return Ok(Some(a));
        }
        let id = a.id.clone();
        self.write(move |c| Ok(c.prepare_cached(SLOW_DOWN)?.query_row(params![now, id], approval_row).optional()?)).await
    }

    async fn decide_approval(&self, d: &Decision<'_>, now: i64) -> StoreResult<Option<ApprovalRow>> {
        let status = if d.approve { Status::Approved } else { Status::Denied };
        let (handoff_hash, handoff_expires_at) = d.handoff.clone().unzip();
        let (statement, key): (_, Box<dyn sql::Param + Send>) = match d.by {
            DecideBy::UserCode(h) => (sql::DECIDE_BY_USER_CODE, Box::new(h.to_vec())),
            DecideBy::Pairing { approval_id } => (sql::DECIDE_PAIRING, Box::new(approval_id.to_owned())),
            DecideBy::Qr { approval_id } => (sql::DECIDE_QR, Box::new(approval_id.to_owned())),
        };
        let (user_id, device_id, name) = (d.user_id.to_owned(), d.device_id.to_owned(), d.requester_name.map(str::to_owned));
        let passkey = d.passkey_verified;
        self.write(move |c| {
            let p: [&dyn ToSql; 9] = [&status, &user_id, &device_id, &now, &name, &handoff_hash, &handoff_expires_at, &*key, &passkey];
            Ok(c.prepare_cached(statement.lite)?.query_row(p, approval_row).optional()?)
        })
        .await
    }

    async fn deny_for_abuse(&self, id: &str, now: i64) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write(move |c| Ok(c.prepare_cached(sql::DENY_FOR_ABUSE.lite)?.execute(params![now, id])? == 1)).await
    }

    async fn end_approval(&self, id: &str, now: i64) -> StoreResult<bool> {
        let id = id.to_owned();
        self.write(move |c| Ok(c.prepare_cached(sql::END_APPROVAL.lite)?.execute(params![now, id])? == 1)).await
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
                (id, None) => c.prepare_cached(sql::COLLECT_BY_ID.lite)?.execute(params![session.id, id, now])?,
                (_, Some((handoff, secret))) => {
                    c.prepare_cached(sql::COLLECT_BY_HANDOFF.lite)?.execute(params![now, session.id, handoff, secret])?
                }
            };
            if collected == 1 {
                insert_session_rows(c, &device, &session, refresh.as_ref())?;
                return Ok(Collected::Yes);
            }
            let Some((handoff, secret)) = &key.1 else { return Ok(Collected::No) };
            let used: Option<(Option<String>, Option<i64>)> = c
                .prepare_cached(sql::HANDOFF_USED.lite)?
                .query_row(params![handoff, secret, now], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
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
            let ended = c.prepare_cached(sql::END_APPROVALS_OF_DEVICE.lite)?.execute(params![now, user_id, device_id])?;
            c.prepare_cached(sql::END_PAIRING_CODES_OF_DEVICE.lite)?.execute(params![now, user_id, device_id])?;
            Ok(ended as u64)
        })
        .await
    }

    async fn scan_qr(&self, id: &str, user_id: &str, device_id: &str, now: i64) -> StoreResult<Option<ApprovalRow>> {
        let (id, user_id, device_id) = (id.to_owned(), user_id.to_owned(), device_id.to_owned());
        self.write(move |c| {
            Ok(c.prepare_cached(sql::SCAN_QR.lite)?.query_row(params![user_id, device_id, now, id], approval_row).optional()?)
        })
        .await
    }

    async fn create_pairing_code(&self, c: &PairingCodeRow, now: i64) -> StoreResult<()> {
        let code = c.clone();
        self.write(move |c| {
            c.prepare_cached(sql::END_LIVE_PAIRING_CODES.lite)?.execute(params![now, code.issuer_device_id])?;
            c.prepare_cached(sql::INSERT_PAIRING_CODE.lite)?.execute(sql::pairing_code_values(&code))?;
            Ok(())
        })
        .await
    }

    async fn pairing_code(&self, id: &str) -> StoreResult<Option<PairingCodeRow>> {
        self.one(sql::PAIRING_CODE.lite, [id], pairing_row)
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
                let live: i64 = c.prepare_cached(sql::COUNT_PENDING_OF_IP.lite)?.query_row(params![a.requester_ip, now], |r| r.get(0))?;
                if live >= cap_per_ip {
                    return Ok(Redeemed::CapReached);
                }
            }
            let code: Option<(String, String, String)> = c
                .prepare_cached(sql::REDEEM_PAIRING_CODE.lite)?
                .query_row(params![now, a.id, code_hmac], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let Some((user_id, issuer, scope)) = code else { return Ok(Redeemed::NoSuchCode) };
            let approval = ApprovalRow { user_id: Some(user_id.clone()), approver_device_id: Some(issuer), scope, ..a };
            c.prepare_cached(sql::INSERT_APPROVAL.lite)?.execute(sql::approval_values(&approval))?;
            insert_audit(c, &AuditRow { user_id: Some(user_id), ..audit })?;
            Ok(Redeemed::Opened(Box::new(approval)))
        })
        .await
    }
}
