//! Rate limits kept in the store, so several instances share them.

use super::audit::{Audit, AuditKind};
use crate::domain::policy;
use crate::service::{App, AppError, AppResult, ClientMeta};

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
