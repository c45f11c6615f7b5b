//! Rate limits kept in the store, so several instances share them.

use super::audit::{Audit, AuditKind};
use crate::app::{App, AppError, AppResult, ClientMeta};

/// Counts one hit on `key` in a window of `window` seconds; over `limit`, 429 with the seconds
/// until the window ends. The first refusal in a window is audited.
pub async fn check(app: &App, key: &str, limit: i64, window: i64, meta: &ClientMeta) -> AppResult<()> {
    let now = app.now();
    let (count, ends) = app.store.hit_rate_limit(key, window, now).await?;
    if count <= limit {
        return Ok(());
    }
    metrics::counter!("latchkey_rate_limited_total", "limit" => key.split(':').next().unwrap_or("").to_owned()).increment(1);
    if count == limit + 1 {
        Audit::new(AuditKind::RateLimited).meta(meta).detail(serde_json::json!({ "limit": key })).record(app).await?;
    }
    Err(AppError::RateLimited { retry_after: (ends - now).max(1) as u64 })
}
