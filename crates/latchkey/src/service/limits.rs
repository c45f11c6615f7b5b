//! Rate limits and caps: windows kept in the store (so several instances share them), the
//! server-wide cap on pending approvals, and the counting of wrong codes.

use super::audit::{Audit, AuditKind};
use crate::domain::policy;
use crate::service::{App, AppError, AppResult, ClientMeta};
use std::sync::atomic::{AtomicI64, Ordering};

/// Counts one hit on `key`; when the sliding count over the last `window` seconds is over
/// `limit`, 429 with the seconds until it no longer is. Refusals are audited once per run.
pub async fn check(app: &App, key: &str, limit: i64, window: i64, meta: &ClientMeta) -> AppResult<()> {
    let now = app.now();
    let c = app.store.hit_rate_limit(key, window, now).await?;
    if policy::sliding_estimate(c.current, c.previous, now, window) <= limit as f64 {
        return Ok(());
    }
    metrics::counter!("latchkey_rate_limited_total", "limit" => key.split(':').next().unwrap_or("").to_owned()).increment(1);
    audit_refusal(app, key, window, None, meta).await?;
    Err(AppError::RateLimited { retry_after: policy::sliding_retry_after(c.current, c.previous, now, window, limit) })
}

/// Audits a refusal by the limit `key`, once per window: an attacker hammering a limit must not
/// be able to fill the audit log.
pub async fn audit_refusal(app: &App, key: &str, window: i64, user_id: Option<&str>, meta: &ClientMeta) -> AppResult<()> {
    let seen = app.store.hit_rate_limit(&format!("audited:{key}"), window, app.now()).await?;
    if seen.current == 1 {
        let mut a = Audit::new(AuditKind::RateLimited).meta(meta).detail(serde_json::json!({ "limit": key }));
        if let Some(u) = user_id {
            a = a.user(u);
        }
        a.record(app).await?;
    }
    Ok(())
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
        return Err(pending_cap_reached());
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
            audit_refusal(app, &key, window, user_id, meta).await?;
            return Err(AppError::RateLimited {
                retry_after: crate::domain::policy::sliding_retry_after(c.current, c.previous, now, window, limit - 1),
            });
        }
    }
    Ok(())
}

/// The answer when a cap on pending requests is reached.
pub fn pending_cap_reached() -> AppError {
    metrics::counter!("latchkey_rate_limited_total", "limit" => "pending_cap").increment(1);
    AppError::RateLimited { retry_after: 60 }
}
