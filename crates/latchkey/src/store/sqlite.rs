//! The embedded SQLite backend (WAL). Write transactions start with `BEGIN IMMEDIATE` so that
//! concurrent writers queue on the busy timeout instead of failing a lock upgrade.

use super::*;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::time::Duration;

/// Two pools over one database: readers in parallel, and exactly one writer connection, so
/// writers queue fairly in the process instead of sleeping in SQLite's busy handler (which
/// wakes by timer, not when the lock frees, and wasted most of a core under load).
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
}

const SESSION_COLS: &str =
    "id, user_id, device_id, client_id, scope, amr, web_token_hash, created_at, last_used_at, expires_at, revoked_at, revoke_reason";

fn conflict_or(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict,
        _ => StoreError::Backend(e),
    }
}

const APPROVAL_COLS: &str = "id, flow, device_code_hash, user_code_hmac, client_id, scope, status, created_at, expires_at, requester_ip, \
     requester_ua, requester_name, requester_kind, user_id, approver_device_id, decided_at, poll_interval, last_poll_at, slow_downs, \
     poll_early, session_id, match_code, scanned_at, handoff_hash, handoff_expires_at, handoff_used_at";

async fn insert_session_rows(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    d: &DeviceRow,
    s: &SessionRow,
    refresh: Option<&RefreshTokenRow>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO devices (id, user_id, name, kind, os, browser, user_agent, authorized_by, approved_by_device, \
         first_seen_at, last_seen_at, last_ip, trusted_until, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
         ON CONFLICT (id) DO UPDATE SET last_seen_at = excluded.last_seen_at, last_ip = excluded.last_ip",
    )
    .bind(&d.id)
    .bind(&d.user_id)
    .bind(&d.name)
    .bind(&d.kind)
    .bind(&d.os)
    .bind(&d.browser)
    .bind(&d.user_agent)
    .bind(&d.authorized_by)
    .bind(&d.approved_by_device)
    .bind(d.first_seen_at)
    .bind(d.last_seen_at)
    .bind(&d.last_ip)
    .bind(d.trusted_until)
    .bind(d.revoked_at)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO sessions (id, user_id, device_id, client_id, scope, amr, web_token_hash, created_at, last_used_at, \
         expires_at, revoked_at, revoke_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)",
    )
    .bind(&s.id)
    .bind(&s.user_id)
    .bind(&s.device_id)
    .bind(&s.client_id)
    .bind(&s.scope)
    .bind(&s.amr)
    .bind(&s.web_token_hash)
    .bind(s.created_at)
    .bind(s.last_used_at)
    .bind(s.expires_at)
    .execute(&mut **tx)
    .await
    .map_err(conflict_or)?;
    if let Some(r) = refresh {
        sqlx::query("INSERT INTO refresh_tokens (hash, session_id, client_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)")
            .bind(&r.hash)
            .bind(&r.session_id)
            .bind(&r.client_id)
            .bind(r.created_at)
            .bind(r.expires_at)
            .execute(&mut **tx)
            .await
            .map_err(conflict_or)?;
    }
    Ok(())
}

fn bind_approval<'q>(
    q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    a: &'q ApprovalRow,
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    q.bind(&a.id)
        .bind(&a.flow)
        .bind(&a.device_code_hash)
        .bind(&a.user_code_hmac)
        .bind(&a.client_id)
        .bind(&a.scope)
        .bind(&a.status)
        .bind(a.created_at)
        .bind(a.expires_at)
        .bind(&a.requester_ip)
        .bind(&a.requester_ua)
        .bind(&a.requester_name)
        .bind(&a.requester_kind)
        .bind(&a.user_id)
        .bind(&a.approver_device_id)
        .bind(a.poll_interval)
        .bind(&a.match_code)
}

const INSERT_APPROVAL: &str = "INSERT INTO approvals (id, flow, device_code_hash, user_code_hmac, client_id, scope, status, created_at, \
     expires_at, requester_ip, requester_ua, requester_name, requester_kind, user_id, approver_device_id, poll_interval, match_code)";

impl SqliteStore {
    pub async fn open(url: &str, max_connections: u32) -> StoreResult<Self> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let write = SqlitePoolOptions::new().max_connections(1).connect_with(opts.clone()).await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new().max_connections(max_connections.max(1)).connect_with(opts.read_only(true)).await?;
        Ok(Self { read, write })
    }

    async fn write_tx(&self) -> StoreResult<sqlx::Transaction<'static, sqlx::Sqlite>> {
        Ok(self.write.begin_with("BEGIN IMMEDIATE").await?)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn secret_or_insert(&self, name: &str, fresh: &[u8]) -> StoreResult<Vec<u8>> {
        sqlx::query("INSERT INTO server_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING")
            .bind(name)
            .bind(fresh)
            .execute(&self.write)
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM server_secrets WHERE name = ?").bind(name).fetch_one(&self.write).await?)
    }

    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRow>> {
        Ok(sqlx::query_as("SELECT kid, seed, created_at, retired_at FROM signing_keys ORDER BY created_at DESC, kid")
            .fetch_all(&self.read)
            .await?)
    }

    async fn rotate_signing_key(&self, key: &SigningKeyRow, now: i64) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("UPDATE signing_keys SET retired_at = ? WHERE retired_at IS NULL").bind(now).execute(&mut *tx).await?;
        sqlx::query("INSERT INTO signing_keys (kid, seed, created_at, retired_at) VALUES (?, ?, ?, NULL)")
            .bind(&key.kid)
            .bind(&key.seed)
            .bind(key.created_at)
            .execute(&mut *tx)
            .await
            .map_err(conflict_or)?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_first_signing_key(&self, key: &SigningKeyRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO signing_keys (kid, seed, created_at, retired_at) SELECT ?, ?, ?, NULL \
             WHERE NOT EXISTS (SELECT 1 FROM signing_keys WHERE retired_at IS NULL) ON CONFLICT DO NOTHING",
        )
        .bind(&key.kid)
        .bind(&key.seed)
        .bind(key.created_at)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn create_user(&self, u: &UserRow) -> StoreResult<()> {
        sqlx::query("INSERT INTO users (id, email, password_hash, created_at) VALUES (?, ?, ?, ?)")
            .bind(&u.id)
            .bind(&u.email)
            .bind(&u.password_hash)
            .bind(u.created_at)
            .execute(&self.write)
            .await
            .map_err(conflict_or)?;
        Ok(())
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRow>> {
        Ok(sqlx::query_as("SELECT id, email, password_hash, created_at FROM users WHERE email = ?")
            .bind(email)
            .fetch_optional(&self.read)
            .await?)
    }

    async fn user_by_id(&self, id: &str) -> StoreResult<Option<UserRow>> {
        Ok(sqlx::query_as("SELECT id, email, password_hash, created_at FROM users WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.read)
            .await?)
    }

    async fn create_client(&self, c: &ClientRow) -> StoreResult<()> {
        sqlx::query("INSERT INTO clients (id, name, secret_hash, created_at) VALUES (?, ?, ?, ?)")
            .bind(&c.id)
            .bind(&c.name)
            .bind(&c.secret_hash)
            .bind(c.created_at)
            .execute(&self.write)
            .await
            .map_err(conflict_or)?;
        Ok(())
    }

    async fn client(&self, id: &str) -> StoreResult<Option<ClientRow>> {
        Ok(sqlx::query_as("SELECT id, name, secret_hash, created_at FROM clients WHERE id = ?").bind(id).fetch_optional(&self.read).await?)
    }

    async fn create_session(&self, d: &DeviceRow, s: &SessionRow, refresh: Option<&RefreshTokenRow>) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        insert_session_rows(&mut tx, d, s, refresh).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session(&self, id: &str) -> StoreResult<Option<SessionRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {SESSION_COLS} FROM sessions WHERE id = ?")))
            .bind(id)
            .fetch_optional(&self.read)
            .await?)
    }

    async fn session_by_web_token(&self, hash: &[u8]) -> StoreResult<Option<SessionRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {SESSION_COLS} FROM sessions WHERE web_token_hash = ?")))
            .bind(hash)
            .fetch_optional(&self.read)
            .await?)
    }

    async fn touch_session(&self, s: &SessionRow, ip: &str, now: i64) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("UPDATE sessions SET last_used_at = ? WHERE id = ?").bind(now).bind(&s.id).execute(&mut *tx).await?;
        sqlx::query("UPDATE devices SET last_seen_at = ?, last_ip = ? WHERE id = ?")
            .bind(now)
            .bind(ip)
            .bind(&s.device_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_session(&self, id: &str, reason: &str, now: i64) -> StoreResult<bool> {
        let r = sqlx::query("UPDATE sessions SET revoked_at = ?, revoke_reason = ? WHERE id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(reason)
            .bind(id)
            .execute(&self.write)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn revoke_user_sessions(&self, user_id: &str, except: Option<&str>, reason: &str, now: i64) -> StoreResult<u64> {
        let r =
            sqlx::query("UPDATE sessions SET revoked_at = ?, revoke_reason = ? WHERE user_id = ? AND revoked_at IS NULL AND id IS NOT ?")
                .bind(now)
                .bind(reason)
                .bind(user_id)
                .bind(except)
                .execute(&self.write)
                .await?;
        Ok(r.rows_affected())
    }

    async fn count_live_sessions(&self, now: i64) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > ?")
            .bind(now)
            .fetch_one(&self.read)
            .await?)
    }

    async fn devices_for_user(&self, user_id: &str, now: i64) -> StoreResult<Vec<DeviceRow>> {
        Ok(sqlx::query_as(
            "SELECT id, user_id, name, kind, os, browser, user_agent, authorized_by, approved_by_device, first_seen_at, \
             last_seen_at, last_ip, trusted_until, revoked_at FROM devices d WHERE user_id = ? AND revoked_at IS NULL \
             AND (trusted_until > ? OR EXISTS (SELECT 1 FROM sessions s WHERE s.device_id = d.id AND s.revoked_at IS NULL AND s.expires_at > ?)) \
             ORDER BY last_seen_at DESC",
        )
        .bind(user_id)
        .bind(now)
        .bind(now)
        .fetch_all(&self.read)
        .await?)
    }

    async fn revoke_device(&self, user_id: &str, device_id: &str, now: i64) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let r = sqlx::query("UPDATE devices SET revoked_at = ?, trusted_until = NULL WHERE id = ? AND user_id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(device_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("UPDATE sessions SET revoked_at = ?, revoke_reason = 'device_revoked' WHERE device_id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM device_trust WHERE device_id = ?").bind(device_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn rotate_refresh_token(
        &self,
        old_hash: &[u8],
        client_id: &str,
        new_hash: &[u8],
        idle_expires_at: i64,
        now: i64,
    ) -> StoreResult<Rotation> {
        let mut tx = self.write_tx().await?;
        let session_id: Option<String> = sqlx::query_scalar(
            "UPDATE refresh_tokens SET superseded_at = ?, successor_hash = ? \
             WHERE hash = ? AND client_id = ? AND superseded_at IS NULL AND expires_at > ? \
             AND EXISTS (SELECT 1 FROM sessions s WHERE s.id = refresh_tokens.session_id AND s.revoked_at IS NULL AND s.expires_at > ?) \
             RETURNING session_id",
        )
        .bind(now)
        .bind(new_hash)
        .bind(old_hash)
        .bind(client_id)
        .bind(now)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(session_id) = session_id else {
            drop(tx);
            return Ok(Rotation::NotRotated(self.refresh_token(old_hash).await?));
        };
        let expires_at: i64 = sqlx::query_scalar(
            "INSERT INTO refresh_tokens (hash, session_id, client_id, created_at, expires_at) \
             SELECT ?, s.id, ?, ?, MIN(?, s.expires_at) FROM sessions s WHERE s.id = ? RETURNING expires_at",
        )
        .bind(new_hash)
        .bind(client_id)
        .bind(now)
        .bind(idle_expires_at)
        .bind(&session_id)
        .fetch_one(&mut *tx)
        .await
        .map_err(conflict_or)?;
        let session: SessionRow =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("UPDATE sessions SET last_used_at = ? WHERE id = ? RETURNING {SESSION_COLS}")))
                .bind(now)
                .bind(&session_id)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(Rotation::Rotated { session, expires_at })
    }

    async fn refresh_token(&self, hash: &[u8]) -> StoreResult<Option<RefreshTokenRow>> {
        Ok(sqlx::query_as(
            "SELECT hash, session_id, client_id, created_at, expires_at, superseded_at, successor_hash FROM refresh_tokens WHERE hash = ?",
        )
        .bind(hash)
        .fetch_optional(&self.read)
        .await?)
    }

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

    async fn put_pending_totp(&self, user_id: &str, secret_enc: &[u8], now: i64) -> StoreResult<bool> {
        let r = sqlx::query(
            "INSERT INTO totp_credentials (user_id, secret_enc, created_at, confirmed_at, last_step) VALUES (?, ?, ?, NULL, -1) \
             ON CONFLICT (user_id) DO UPDATE SET secret_enc = excluded.secret_enc, created_at = excluded.created_at, last_step = -1 \
             WHERE totp_credentials.confirmed_at IS NULL",
        )
        .bind(user_id)
        .bind(secret_enc)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn totp(&self, user_id: &str) -> StoreResult<Option<TotpRow>> {
        Ok(sqlx::query_as("SELECT user_id, secret_enc, created_at, confirmed_at, last_step FROM totp_credentials WHERE user_id = ?")
            .bind(user_id)
            .fetch_optional(&self.read)
            .await?)
    }

    async fn confirm_totp(&self, user_id: &str, step: i64, recovery_hmacs: &[Vec<u8>], now: i64) -> StoreResult<bool> {
        let mut tx = self.write_tx().await?;
        let r = sqlx::query(
            "UPDATE totp_credentials SET confirmed_at = ?, last_step = ? WHERE user_id = ? AND confirmed_at IS NULL AND last_step < ?",
        )
        .bind(now)
        .bind(step)
        .bind(user_id)
        .bind(step)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = ?").bind(user_id).execute(&mut *tx).await?;
        for h in recovery_hmacs {
            sqlx::query("INSERT INTO recovery_codes (user_id, code_hmac) VALUES (?, ?)").bind(user_id).bind(h).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn use_totp_step(&self, user_id: &str, step: i64) -> StoreResult<bool> {
        let r = sqlx::query("UPDATE totp_credentials SET last_step = ? WHERE user_id = ? AND confirmed_at IS NOT NULL AND last_step < ?")
            .bind(step)
            .bind(user_id)
            .bind(step)
            .execute(&self.write)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn delete_totp(&self, user_id: &str) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query("DELETE FROM totp_credentials WHERE user_id = ?").bind(user_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM recovery_codes WHERE user_id = ?").bind(user_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn use_recovery_code(&self, user_id: &str, code_hmac: &[u8], now: i64) -> StoreResult<bool> {
        let r = sqlx::query("UPDATE recovery_codes SET used_at = ? WHERE user_id = ? AND code_hmac = ? AND used_at IS NULL")
            .bind(now)
            .bind(user_id)
            .bind(code_hmac)
            .execute(&self.write)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn email_factor(&self, user_id: &str) -> StoreResult<bool> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM email_factors WHERE user_id = ?").bind(user_id).fetch_one(&self.read).await?;
        Ok(n > 0)
    }

    async fn enable_email_factor(&self, user_id: &str, now: i64) -> StoreResult<()> {
        sqlx::query("INSERT INTO email_factors (user_id, enabled_at) VALUES (?, ?) ON CONFLICT (user_id) DO NOTHING")
            .bind(user_id)
            .bind(now)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn put_email_code(
        &self,
        user_id: &str,
        purpose: &str,
        code_hmac: &[u8],
        now: i64,
        ttl: i64,
        resend_after: i64,
    ) -> StoreResult<bool> {
        let r = sqlx::query(
            "INSERT INTO email_codes (user_id, purpose, code_hmac, created_at, expires_at, attempts) VALUES (?, ?, ?, ?, ?, 0) \
             ON CONFLICT (user_id, purpose) DO UPDATE SET code_hmac = excluded.code_hmac, created_at = excluded.created_at, \
               expires_at = excluded.expires_at, attempts = 0 \
             WHERE email_codes.created_at <= ?",
        )
        .bind(user_id)
        .bind(purpose)
        .bind(code_hmac)
        .bind(now)
        .bind(now + ttl)
        .bind(now - resend_after)
        .execute(&self.write)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn use_email_code(&self, user_id: &str, purpose: &str, code_hmac: &[u8], now: i64, max_attempts: i64) -> StoreResult<bool> {
        let r =
            sqlx::query("DELETE FROM email_codes WHERE user_id = ? AND purpose = ? AND code_hmac = ? AND expires_at > ? AND attempts < ?")
                .bind(user_id)
                .bind(purpose)
                .bind(code_hmac)
                .bind(now)
                .bind(max_attempts)
                .execute(&self.write)
                .await?;
        if r.rows_affected() == 1 {
            return Ok(true);
        }
        sqlx::query("UPDATE email_codes SET attempts = attempts + 1 WHERE user_id = ? AND purpose = ?")
            .bind(user_id)
            .bind(purpose)
            .execute(&self.write)
            .await?;
        Ok(false)
    }

    async fn create_mfa_token(&self, m: &MfaTokenRow) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO mfa_tokens (hash, user_id, client_id, scope, device_json, web, ip, user_agent, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&m.hash)
        .bind(&m.user_id)
        .bind(&m.client_id)
        .bind(&m.scope)
        .bind(&m.device_json)
        .bind(m.web)
        .bind(&m.ip)
        .bind(&m.user_agent)
        .bind(m.created_at)
        .bind(m.expires_at)
        .execute(&self.write)
        .await
        .map_err(conflict_or)?;
        Ok(())
    }

    async fn mfa_token(&self, hash: &[u8]) -> StoreResult<Option<MfaTokenRow>> {
        Ok(sqlx::query_as(
            "SELECT hash, user_id, client_id, scope, device_json, web, ip, user_agent, created_at, expires_at, failures, consumed_at \
             FROM mfa_tokens WHERE hash = ?",
        )
        .bind(hash)
        .fetch_optional(&self.read)
        .await?)
    }

    async fn fail_mfa_token(&self, hash: &[u8]) -> StoreResult<i64> {
        let n: Option<i64> = sqlx::query_scalar("UPDATE mfa_tokens SET failures = failures + 1 WHERE hash = ? RETURNING failures")
            .bind(hash)
            .fetch_optional(&self.write)
            .await?;
        Ok(n.unwrap_or(i64::MAX))
    }

    async fn consume_mfa_token(&self, hash: &[u8], now: i64, max_failures: i64) -> StoreResult<bool> {
        let r =
            sqlx::query("UPDATE mfa_tokens SET consumed_at = ? WHERE hash = ? AND consumed_at IS NULL AND expires_at > ? AND failures < ?")
                .bind(now)
                .bind(hash)
                .bind(now)
                .bind(max_failures)
                .execute(&self.write)
                .await?;
        Ok(r.rows_affected() == 1)
    }

    async fn create_trust(&self, t: &TrustRow) -> StoreResult<()> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO device_trust (hash, user_id, device_id, created_at, expires_at, last_used_at, ip, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&t.hash)
        .bind(&t.user_id)
        .bind(&t.device_id)
        .bind(t.created_at)
        .bind(t.expires_at)
        .bind(t.last_used_at)
        .bind(&t.ip)
        .bind(&t.user_agent)
        .execute(&mut *tx)
        .await
        .map_err(conflict_or)?;
        sqlx::query("UPDATE devices SET trusted_until = ? WHERE id = ?").bind(t.expires_at).bind(&t.device_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn rotate_trust(
        &self,
        old_hash: &[u8],
        user_id: &str,
        new_hash: &[u8],
        ip: &str,
        user_agent: &str,
        now: i64,
    ) -> StoreResult<Option<String>> {
        let mut tx = self.write_tx().await?;
        let old: Option<(String, i64)> = sqlx::query_as(
            "DELETE FROM device_trust WHERE hash = ? AND user_id = ? AND expires_at > ? \
             AND device_id IN (SELECT id FROM devices WHERE revoked_at IS NULL) RETURNING device_id, expires_at",
        )
        .bind(old_hash)
        .bind(user_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((device_id, expires_at)) = old else { return Ok(None) };
        sqlx::query(
            "INSERT INTO device_trust (hash, user_id, device_id, created_at, expires_at, last_used_at, ip, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(new_hash)
        .bind(user_id)
        .bind(&device_id)
        .bind(now)
        .bind(expires_at)
        .bind(now)
        .bind(ip)
        .bind(user_agent)
        .execute(&mut *tx)
        .await
        .map_err(conflict_or)?;
        tx.commit().await?;
        Ok(Some(device_id))
    }

    async fn revoke_trust(&self, user_id: &str, device_id: Option<&str>) -> StoreResult<u64> {
        let mut tx = self.write_tx().await?;
        let r = sqlx::query("DELETE FROM device_trust WHERE user_id = ? AND (? IS NULL OR device_id = ?)")
            .bind(user_id)
            .bind(device_id)
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE devices SET trusted_until = NULL WHERE user_id = ? AND (? IS NULL OR id = ?)")
            .bind(user_id)
            .bind(device_id)
            .bind(device_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    async fn set_password_hash(&self, user_id: &str, hash: &str) -> StoreResult<()> {
        sqlx::query("UPDATE users SET password_hash = ? WHERE id = ?").bind(hash).bind(user_id).execute(&self.write).await?;
        Ok(())
    }

    async fn sweep(&self, now: i64, keep_dead: i64) -> StoreResult<u64> {
        let day = 86_400;
        let statements: [(&'static str, i64); 9] = [
            ("DELETE FROM mfa_tokens WHERE expires_at < ?", now - day),
            ("DELETE FROM email_codes WHERE expires_at < ?", now - day),
            ("DELETE FROM device_trust WHERE expires_at < ?", now),
            ("DELETE FROM rate_limits WHERE window_start < ?", now - 2 * day),
            ("DELETE FROM login_failures WHERE last_failure_at < ?", now - day),
            ("DELETE FROM pairing_codes WHERE expires_at < ?", now - day),
            (
                "DELETE FROM approvals WHERE expires_at < ? AND id NOT IN (SELECT approval_id FROM pairing_codes WHERE approval_id IS NOT NULL)",
                now - day,
            ),
            ("DELETE FROM sessions WHERE COALESCE(revoked_at, expires_at) < ?", now - keep_dead),
            ("DELETE FROM refresh_tokens WHERE superseded_at IS NOT NULL AND expires_at < ?", now - day),
        ];
        let mut deleted = 0;
        for (sql, cutoff) in statements {
            deleted += sqlx::query(sql).bind(cutoff).execute(&self.write).await?.rows_affected();
        }
        Ok(deleted)
    }

    async fn record_audit(&self, e: &AuditRow) -> StoreResult<()> {
        sqlx::query("INSERT INTO audit_events (at, kind, user_id, device_id, ip, user_agent, detail) VALUES (?, ?, ?, ?, ?, ?, ?)")
            .bind(e.at)
            .bind(&e.kind)
            .bind(&e.user_id)
            .bind(&e.device_id)
            .bind(&e.ip)
            .bind(&e.user_agent)
            .bind(&e.detail)
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn audit_for_user(&self, user_id: &str, limit: i64) -> StoreResult<Vec<AuditRow>> {
        Ok(sqlx::query_as(
            "SELECT id, at, kind, user_id, device_id, ip, user_agent, detail FROM audit_events WHERE user_id = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?)
    }

    async fn audit_all(&self, limit: i64) -> StoreResult<Vec<AuditRow>> {
        Ok(sqlx::query_as("SELECT id, at, kind, user_id, device_id, ip, user_agent, detail FROM audit_events ORDER BY id DESC LIMIT ?")
            .bind(limit)
            .fetch_all(&self.read)
            .await?)
    }

    async fn hit_rate_limit(&self, key: &str, window: i64, now: i64) -> StoreResult<WindowCounts> {
        let window = window.max(1);
        let start = now - now.rem_euclid(window);
        let (current, previous): (i64, i64) = sqlx::query_as(
            "INSERT INTO rate_limits (key, window_start, count, prev_count) VALUES (?, ?, 1, 0) \
             ON CONFLICT (key) DO UPDATE SET \
               prev_count = CASE WHEN rate_limits.window_start = excluded.window_start THEN rate_limits.prev_count \
                                 WHEN rate_limits.window_start = excluded.window_start - ? THEN rate_limits.count ELSE 0 END, \
               count = CASE WHEN rate_limits.window_start = excluded.window_start THEN rate_limits.count + 1 ELSE 1 END, \
               window_start = excluded.window_start \
             RETURNING count, prev_count",
        )
        .bind(key)
        .bind(start)
        .bind(window)
        .fetch_one(&self.write)
        .await?;
        Ok(WindowCounts { current, previous })
    }

    async fn peek_rate_limit(&self, key: &str, window: i64, now: i64) -> StoreResult<WindowCounts> {
        let window = window.max(1);
        let start = now - now.rem_euclid(window);
        let row: Option<(i64, i64, i64)> = sqlx::query_as("SELECT window_start, count, prev_count FROM rate_limits WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.read)
            .await?;
        Ok(match row {
            Some((ws, count, prev)) if ws == start => WindowCounts { current: count, previous: prev },
            Some((ws, count, _)) if ws == start - window => WindowCounts { current: 0, previous: count },
            _ => WindowCounts::default(),
        })
    }

    async fn login_failures(&self, key: &str) -> StoreResult<Option<(u32, i64)>> {
        let row: Option<(i64, i64)> = sqlx::query_as("SELECT failures, last_failure_at FROM login_failures WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|(f, at)| (u32::try_from(f).unwrap_or(u32::MAX), at)))
    }

    async fn record_login_failure(&self, key: &str, now: i64) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO login_failures (key, failures, last_failure_at) VALUES (?, 1, ?) \
             ON CONFLICT (key) DO UPDATE SET failures = login_failures.failures + 1, last_failure_at = excluded.last_failure_at",
        )
        .bind(key)
        .bind(now)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    async fn clear_login_failures(&self, key: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM login_failures WHERE key = ?").bind(key).execute(&self.write).await?;
        Ok(())
    }
}
