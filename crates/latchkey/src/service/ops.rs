//! What operators' probes ask of the core: readiness and the gauges `/metrics` reports.

use crate::service::App;

/// Whether the database answers. A failure is logged here, where its cause is known; the probe
/// is told only that the server is not ready.
pub async fn ready(app: &App) -> bool {
    match app.store.ping().await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            false
        }
    }
}

/// Brings the gauges up to date before a scrape. A database that does not answer leaves the
/// last value; the scrape itself still works.
pub async fn refresh_gauges(app: &App) {
    if let Ok(n) = app.store.count_live_sessions(app.now()).await {
        metrics::gauge!("latchkey_sessions_live").set(n as f64);
    }
}
