//! The one cross-device approval state machine, shared by the device grant and pairing (and,
//! later, QR login): a requester asks; the server records what it observed of it; a signed-in
//! device approves or denies after seeing those facts; the requester collects its session
//! exactly once. Every transition is one conditional write in the store, one event, one audit
//! entry.

use super::sessions::{self, AuthorizedBy, NewSession, TokenResponse};
use super::{clients, limits};
use crate::clock::rfc3339;
use crate::domain::device::DeviceFacts;
use crate::domain::secret;
use crate::domain::user_agent;
use crate::events::Event;
use crate::service::{App, AppError, AppResult, ClientMeta};
use crate::store::ApprovalRow;
use std::sync::atomic::{AtomicI64, Ordering};

pub const DEVICE_CODE_PREFIX: &str = "lk_dc_";

pub use crate::domain::approval::State;
use crate::domain::approval::{self, Flow};

pub fn state(a: &ApprovalRow, now: i64) -> State {
    approval::state(a.status, a.expires_at, now)
}

/// What the server itself observed of the requester, for the approver to judge by.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RequesterFacts {
    pub client_id: String,
    pub client_name: String,
    pub scope: String,
    pub ip: String,
    pub os: String,
    pub browser: String,
    pub requested_at: String,
    pub seconds_ago: i64,
    pub expires_in: i64,
    /// What the new device calls itself: its own claim, not an observation.
    pub claimed_name: Option<String>,
    pub state: State,
}

pub async fn facts(app: &App, a: &ApprovalRow) -> AppResult<RequesterFacts> {
    let now = app.now();
    let client_name = clients::lookup(app, &a.client_id).await?.map(|c| c.name).unwrap_or_else(|| a.client_id.clone());
    let ua = user_agent::parse(&a.requester_ua);
    Ok(RequesterFacts {
        client_id: a.client_id.clone(),
        client_name,
        scope: a.scope.clone(),
        ip: a.requester_ip.clone(),
        os: ua.os,
        browser: ua.browser,
        requested_at: rfc3339(a.created_at),
        seconds_ago: (now - a.created_at).max(0),
        expires_in: (a.expires_at - now).max(0),
        claimed_name: a.requester_name.clone(),
        state: state(a, now),
    })
}

/// A new device_code for the request `id`: the id and 256 random bits; only its SHA-256 is
/// stored, and the store finds the request by the id (see `secret::new_located_token`).
pub fn new_device_code(id: &str) -> (String, Vec<u8>) {
    let code = secret::new_located_token(DEVICE_CODE_PREFIX, id);
    let hash = secret::token_hash(&code);
    (code, hash)
}

/// The estimate behind the server-wide cap on live pending requests (`device.pending_total`).
#[derive(Default)]
pub struct PendingGauge {
    /// The clock's second of the latest count, and that count plus what was admitted since.
    estimate: tokio::sync::Mutex<Option<(i64, i64)>>,
    /// Requests admitted whose insert has not returned yet: a count does not see them.
    in_flight: AtomicI64,
}

/// A request admitted under the server-wide cap; hold it until its insert has returned.
pub struct Admitted<'a>(Option<&'a AtomicI64>);

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        if let Some(in_flight) = self.0 {
            in_flight.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Admits one more pending request under the server-wide cap, or refuses it (429). The live
/// requests are counted at most once per second of the clock, on a read connection: counting
/// 100,000 of them takes about 7 ms, and done inside every insert, on the single SQLite writer,
/// a flood at the cap stalled every other write. Between counts each admitted request counts
/// as one more, and a count adds the admitted ones not yet inserted, so the estimate errs only
/// high and one process never passes the cap. Instances sharing PostgreSQL may pass it
/// together by what the others admitted within that second.
pub async fn admit_pending(app: &App, now: i64) -> AppResult<Admitted<'_>> {
    let cap = app.settings.device.pending_total;
    if cap == 0 {
        return Ok(Admitted(None));
    }
    let gauge = &app.pending;
    let mut estimate = gauge.estimate.lock().await;
    let live = match *estimate {
        Some((counted_at, live)) if counted_at == now => live,
        _ => {
            let in_flight = gauge.in_flight.load(Ordering::SeqCst);
            app.store.count_live_pending(now).await? + in_flight
        }
    };
    if live >= cap {
        *estimate = Some((now, live));
        metrics::counter!("latchkey_rate_limited_total", "limit" => "pending_cap").increment(1);
        return Err(AppError::RateLimited { retry_after: 60 });
    }
    *estimate = Some((now, live + 1));
    gauge.in_flight.fetch_add(1, Ordering::SeqCst);
    Ok(Admitted(Some(&gauge.in_flight)))
}

/// Counts a wrong code against the account (if any), the IP and the whole server.
pub async fn count_code_failure(app: &App, user_id: Option<&str>, meta: &ClientMeta) -> AppResult<()> {
    let now = app.now();
    if let Some(u) = user_id {
        app.store.hit_rate_limit(&format!("codefail:user:{u}"), 900, now).await?;
    }
    app.store.hit_rate_limit(&format!("codefail:ip:{}", meta.ip), 900, now).await?;
    app.store.hit_rate_limit("codefail:global", 60, now).await?;
    metrics::counter!("latchkey_code_failures_total").increment(1);
    Ok(())
}

/// Refuses a code attempt up front when the account, the IP or the server has had too many
/// wrong codes lately: guesses stop before they can be tried.
pub async fn check_code_failures(app: &App, user_id: Option<&str>, meta: &ClientMeta) -> AppResult<()> {
    let d = &app.settings.device;
    let now = app.now();
    let mut checks = vec![
        (format!("codefail:ip:{}", meta.ip), 900, d.code_failures_per_ip),
        ("codefail:global".to_owned(), 60, d.code_failures_global_per_minute),
    ];
    if let Some(u) = user_id {
        checks.push((format!("codefail:user:{u}"), 900, d.code_failures_per_account));
    }
    for (key, window, limit) in checks {
        let c = app.store.peek_rate_limit(&key, window, now).await?;
        if crate::domain::policy::sliding_estimate(c.current, c.previous, now, window) >= limit as f64 {
            metrics::counter!("latchkey_rate_limited_total", "limit" => "code_failures").increment(1);
            limits::audit_refusal(app, &key, window, user_id, meta).await?;
            return Err(AppError::RateLimited {
                retry_after: crate::domain::policy::sliding_retry_after(c.current, c.previous, now, window, limit - 1),
            });
        }
    }
    Ok(())
}

/// The token endpoint's device-code grant: one poll by the requester.
pub async fn poll(
    app: &App,
    device_code: &str,
    client_id: &str,
    client_secret: Option<&str>,
    meta: &ClientMeta,
) -> AppResult<TokenResponse> {
    let client = clients::authenticate(app, client_id, client_secret).await?;
    limits::check(app, &format!("token:ip:{}", meta.ip), app.settings.limits.token_per_ip_per_minute, 60, meta).await?;
    let invalid = || AppError::InvalidGrant("the device code is invalid, expired or already used".into());
    let id = secret::located_token_id(device_code, DEVICE_CODE_PREFIX).ok_or_else(invalid)?;
    let now = app.now();
    let a = app.store.poll_approval(id, &secret::token_hash(device_code), &client.id, now).await?.ok_or_else(invalid)?;
    match state(&a, now) {
        State::Collected => return Err(invalid()),
        State::Expired => return Err(AppError::DeviceGrant("expired_token")),
        State::Denied => return Err(AppError::DeviceGrant("access_denied")),
        State::Pending | State::Approved => {}
    }
    if a.poll_early != 0 {
        if a.slow_downs > app.settings.device.max_slow_downs {
            app.store.deny_for_abuse(&a.id, now).await?;
            app.events.publish(Event::ApprovalChanged { approval_id: a.id.clone() });
            super::audit::Audit::new(super::audit::AuditKind::DeviceCodeDenied)
                .meta(meta)
                .detail(serde_json::json!({ "request": a.id, "reason": "polling too fast", "slow_downs": a.slow_downs }))
                .record(app)
                .await?;
            return Err(AppError::DeviceGrant("access_denied"));
        }
        return Err(AppError::DeviceGrant("slow_down"));
    }
    if state(&a, now) == State::Pending {
        return Err(AppError::DeviceGrant("authorization_pending"));
    }
    collect(app, &a, meta).await
}

async fn collect(app: &App, a: &ApprovalRow, meta: &ClientMeta) -> AppResult<TokenResponse> {
    let (Some(user_id), Some(approver)) = (&a.user_id, &a.approver_device_id) else {
        return Err(anyhow::anyhow!("approved request {} without user or approver", a.id).into());
    };
    let mut device = DeviceFacts::from_input(None, &a.requester_ua)?;
    if let Some(name) = &a.requester_name {
        device.name = name.clone();
    }
    if let Some(kind) = a.requester_kind.as_deref().and_then(user_agent::DeviceKind::parse) {
        device.kind = kind;
    }
    let (authorized_by, amr) = match a.flow {
        Flow::Pairing => (AuthorizedBy::Pairing, "pairing"),
        Flow::DeviceCode | Flow::Qr => (AuthorizedBy::DeviceCode, "device_code"),
    };
    let built = sessions::build(
        app,
        NewSession {
            user_id,
            client_id: &a.client_id,
            scope: a.scope.clone(),
            amr: vec![amr],
            device,
            authorized_by,
            approved_by_device: Some(approver.clone()),
            web: false,
            existing_device: None,
        },
        meta,
    );
    let refresh = built.refresh.as_ref().map(|(_, r)| r).ok_or_else(|| anyhow::anyhow!("API session without refresh token"))?;
    if !app.store.collect_approval(&a.id, &built.device, &built.session, refresh, app.now()).await? {
        return Err(AppError::InvalidGrant("the device code is invalid, expired or already used".into()));
    }
    app.events.publish(Event::ApprovalChanged { approval_id: a.id.clone() });
    let opened = sessions::finish(app, built, meta).await?;
    opened.tokens.ok_or_else(|| anyhow::anyhow!("API session without tokens").into())
}
