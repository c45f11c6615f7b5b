//! Health, readiness, Prometheus metrics, the OpenAPI document and its offline docs page.

use super::AppState;
use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/openapi.json", get(openapi))
        .route("/docs", get(docs))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: the database answers.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses((status = 200), (status = 503)))]
pub async fn readyz(State(s): State<AppState>) -> Response {
    match s.app.store.ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    if let Ok(n) = s.app.store.count_live_sessions(s.app.now()).await {
        metrics::gauge!("latchkey_sessions_live").set(n as f64);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render()).into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], super::openapi::spec().to_pretty_json().unwrap_or_default()).into_response()
}

struct DocOp {
    method: String,
    path: String,
    summary: String,
    auth: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "docs.html")]
struct DocsPage {
    ops: Vec<DocOp>,
}

/// A docs page rendered on the server from the OpenAPI document: no CDN, works offline.
async fn docs() -> DocsPage {
    let spec = super::openapi::spec();
    let mut ops = Vec::new();
    for (path, item) in &spec.paths.paths {
        let methods = [("GET", &item.get), ("POST", &item.post), ("DELETE", &item.delete), ("PUT", &item.put), ("PATCH", &item.patch)];
        for (m, op) in methods {
            if let Some(op) = op {
                let summary = op.summary.clone().or_else(|| op.description.clone()).unwrap_or_default();
                ops.push(DocOp {
                    method: m.into(),
                    path: path.clone(),
                    summary,
                    auth: op.security.as_ref().is_some_and(|s| !s.is_empty()),
                });
            }
        }
    }
    DocsPage { ops }
}
