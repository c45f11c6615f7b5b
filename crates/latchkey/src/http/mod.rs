//! The HTTP layer: routers per area, merged here, with the cross-cutting layers.

pub mod alert_pages;
pub mod api;
pub mod authorize_pages;
pub mod device_grant_api;
pub mod device_pages;
pub mod email_link_pages;
pub mod error;
pub mod extract;
pub mod factor_pages;
pub mod live_socket;
pub mod mfa_api;
pub mod mfa_pages;
pub mod oauth;
pub mod openapi;
pub mod ops;
pub mod pages;
pub mod pairing_api;
pub mod passkey_pages;
pub mod passkeys_api;
pub mod qr_api;
pub mod qr_pages;
pub mod upstream_pages;
pub mod web;

use crate::service::App;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

#[derive(Clone)]
pub struct AppState {
    pub app: Arc<App>,
    pub metrics: PrometheusHandle,
}

/// The Prometheus recorder is process-wide; install it once however many servers a process runs.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
            let builder = metrics_exporter_prometheus::PrometheusBuilder::new();
            // Histograms (not summaries) for latency, so instances can be aggregated.
            let builder = builder
                .set_buckets_for_metric(metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()), &buckets)
                .unwrap_or_else(|_| metrics_exporter_prometheus::PrometheusBuilder::new());
            let handle = match builder.install_recorder() {
                Ok(h) => h,
                // Another recorder is installed (an embedding program's): render ours unregistered.
                Err(_) => metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder().handle(),
            };
            let upkeep = handle.clone();
            std::thread::spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            });
            handle
        })
        .clone()
}

const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// [`CSP`] for a page whose form's redirects end at `origin`: browsers check `form-action`
/// against every redirect after a form post, so a sign-in or consent form on the way back to an
/// app must name the app's origin (already checked against the app's registered redirect URIs).
pub fn csp_with_form_target(origin: &str) -> String {
    CSP.replace("form-action 'self'", &format!("form-action 'self' {origin}"))
}

/// The whole HTTP service: the routes, then the cross-cutting layers once around them.
pub type HttpService = BoxCloneSyncService<Request, Response, Infallible>;

/// The routes, each with one thin layer of its own (`route_context`: the route template for the
/// span and the metrics, and the request timeout), inside one stack of cross-cutting layers.
/// The stack is not put on the router with `Router::layer`: that wraps every route in every
/// layer separately, and each request then clones the route's chain of boxed services, one
/// allocation per layer (80 allocations a request with 13 layers, measured with callgrind).
pub fn router(state: AppState) -> HttpService {
    let s = &state.app.settings.server;
    let body_limit = s.max_body_bytes;
    let hsts = state
        .app
        .secure_cookies
        .then(|| SetResponseHeaderLayer::overriding(header::STRICT_TRANSPORT_SECURITY, HeaderValue::from_static("max-age=31536000")));
    let routes = Router::new()
        .merge(api::router())
        .merge(qr_api::router())
        .merge(qr_pages::router())
        .merge(mfa_api::router())
        .merge(mfa_pages::router())
        .merge(device_grant_api::router())
        .merge(pairing_api::router())
        .merge(device_pages::router())
        .merge(oauth::router())
        .merge(authorize_pages::router())
        .merge(ops::router())
        .merge(openapi::router())
        .merge(upstream_pages::router())
        .merge(passkeys_api::router())
        .merge(passkey_pages::router())
        .merge(alert_pages::router())
        .merge(email_link_pages::router())
        .merge(factor_pages::router())
        .merge(live_socket::router())
        .merge(pages::router())
        .fallback(|| async { error::problem(StatusCode::NOT_FOUND, "no such resource") })
        .method_not_allowed_fallback(|| async { error::problem(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this resource") })
        // Only the route knows its template (MatchedPath), so this one layer stays per route.
        .layer(middleware::from_fn_with_state(Duration::from_secs(s.request_timeout_secs), route_context))
        .with_state(state);
    // Outermost first: panics are caught around everything; the id is set (or a client's kept)
    // before the span that carries it opens, and the response carries it back; the span covers
    // every layer within.
    let stack = ServiceBuilder::new()
        // The layers change the body type; the server wants axum's own.
        .map_response(IntoResponse::into_response)
        .option_layer(hsts)
        .layer(CatchPanicLayer::custom(|_| error::problem(StatusCode::INTERNAL_SERVER_ERROR, "something went wrong on the server")))
        .layer(SetRequestIdLayer::x_request_id(CountedRequestId))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("same-origin")))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::if_not_present(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)))
        .layer(DefaultBodyLimit::max(body_limit))
        .service(routes);
    BoxCloneSyncService::new(stack)
}

/// Request ids: a random prefix (8 hex digits) chosen at start (so ids from several instances do not collide)
/// and a counter. A v4 UUID per request cost a `getrandom` call on every poll for nothing.
#[derive(Clone, Copy)]
struct CountedRequestId;

fn request_id_prefix() -> &'static str {
    static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PREFIX.get_or_init(|| crate::domain::secret::random_bytes::<4>().iter().map(|b| format!("{b:02x}")).collect())
}

impl MakeRequestId for CountedRequestId {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        HeaderValue::from_str(&format!("{}-{n:x}", request_id_prefix())).ok().map(RequestId::new)
    }
}

/// The span every log line of one request is in: method, route template (not the raw path, which
/// may hold ids and codes) and the request id, which the response carries as `x-request-id`. The
/// route is known only once the router has matched it: `route_context` records it.
fn request_span(req: &Request) -> tracing::Span {
    let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
    tracing::info_span!("request", method = %req.method(), route = tracing::field::Empty, request_id = id)
}

/// What only the matched route knows: its template goes into the request's span and labels the
/// metrics (never the raw path: ids would explode the series), and the request is timed out here
/// so that a timed-out request is counted under its route too.
async fn route_context(State(timeout): State<Duration>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "unmatched".into());
    tracing::Span::current().record("route", route.as_str());
    let method = req.method().to_string();
    let start = Instant::now();
    let resp = match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => error::problem(StatusCode::SERVICE_UNAVAILABLE, "the request took too long; try again"),
    };
    let status = resp.status().as_u16().to_string();
    metrics::counter!("latchkey_http_requests_total", "route" => route.clone(), "method" => method, "status" => status).increment(1);
    metrics::histogram!("latchkey_http_request_duration_seconds", "route" => route).record(start.elapsed().as_secs_f64());
    resp
}
