use crate::common::*;
use serde_json::Value;

#[tokio::test]
async fn health_readiness_and_metrics() {
    let t = spawn().await;
    assert_eq!(t.http.get(t.url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(t.http.get(t.url("/readyz")).send().await.unwrap().status(), 200);
    t.register("ann@example.com").await;
    t.login("ann@example.com", "Laptop").await;
    let m = t.http.get(t.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for series in [
        "latchkey_http_requests_total",
        "latchkey_http_request_duration_seconds",
        "latchkey_logins_total",
        "latchkey_tokens_issued_total",
        "latchkey_sessions_live",
    ] {
        assert!(m.contains(series), "{series} missing from /metrics");
    }
    assert!(m.contains(r#"route="/api/v1/sessions""#), "requests by route template");
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_keeps_the_clients() {
    let t = spawn().await;
    // A route, the fallback and a page: every response, not only the API's.
    let mut ids = Vec::new();
    for path in ["/healthz", "/api/v1/nope", "/login"] {
        let r = t.http.get(t.url(path)).send().await.unwrap();
        let id = r.headers().get("x-request-id").unwrap_or_else(|| panic!("{path} has no x-request-id")).to_str().unwrap().to_owned();
        let (prefix, n) = id.split_once('-').unwrap_or_else(|| panic!("{path}: {id} is not prefix-counter"));
        assert!(prefix.len() == 8 && u64::from_str_radix(n, 16).is_ok(), "{path}: {id}");
        ids.push(id);
    }
    assert!(ids[0] != ids[1] && ids[1] != ids[2], "one id per request: {ids:?}");
    let r = t.http.get(t.url("/healthz")).header("x-request-id", "trace-from-the-proxy-42").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-from-the-proxy-42", "a client's id is kept");
}

#[tokio::test]
async fn openapi_is_generated_and_the_docs_page_works_offline() {
    let t = spawn().await;
    let spec: Value = t.http.get(t.url("/api/openapi.json")).send().await.unwrap().json().await.unwrap();
    for p in ["/api/v1/accounts", "/api/v1/sessions", "/api/v1/devices/{id}", "/oauth/token", "/oauth/introspect", "/.well-known/jwks.json"]
    {
        assert!(spec["paths"].get(p).is_some(), "{p} missing from the OpenAPI document");
    }
    let r = t.http.get(t.url("/docs")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap();
    assert!(html.contains("/api/v1/devices/{id}"));
    assert!(!html.contains("<script"), "no scripts, no CDN");
}

#[tokio::test]
async fn pages_send_strict_security_headers() {
    let t = spawn().await;
    let r = t.http.get(t.url("/login")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"), "{cookie}");
    // A page that needs a session sends the browser to /login and back.
    let r = t.http.get(t.url("/account")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?next=/account");
}

#[tokio::test]
async fn login_form_needs_its_csrf_token_and_never_redirects_off_site() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    let page = t.http.get(t.url("/login")).send().await.unwrap().text().await.unwrap();
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let no_token = t.post_form("/login", &[("email", "ann@example.com"), ("password", PASSWORD), ("csrf", "forged")]).await;
    assert_eq!(no_token.status(), 403);
    let cross = t
        .http
        .post(t.url("/login"))
        .header("origin", "https://evil.example")
        .form(&[("email", "ann@example.com"), ("password", PASSWORD), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    let ok =
        t.post_form("/login", &[("email", "ann@example.com"), ("password", PASSWORD), ("csrf", &csrf), ("next", "//evil.example/x")]).await;
    assert_eq!(ok.status(), 303);
    assert_eq!(ok.headers()["location"], "/account");
    let account = t.http.get(t.url("/account")).send().await.unwrap();
    assert_eq!(account.status(), 200);
    let html = account.text().await.unwrap();
    assert!(html.contains("ann@example.com") && html.contains("this device"));
}

#[tokio::test]
async fn housekeeping_sweeps_what_can_no_longer_matter() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    let v = t.login("ann@example.com", "Laptop").await;
    t.device_authorization().await;
    t.post_json("/api/v1/sessions", serde_json::json!({ "email": "nobody@example.com", "password": "wrong password" })).await;
    t.http.delete(t.url("/api/v1/sessions/current")).bearer_auth(s(&v, "access_token")).send().await.unwrap();
    assert_eq!(t.app.store.sweep(t.app.now(), 30 * 86_400).await.unwrap(), 0, "nothing is stale yet");
    t.clock.advance(31 * 86_400);
    assert!(t.app.store.sweep(t.app.now(), 30 * 86_400).await.unwrap() > 0);
    for table in ["approvals", "rate_limits", "login_failures", "sessions", "refresh_tokens"] {
        assert_eq!(t.count_rows(table).await, 0, "{table} swept");
    }
    assert!(t.count_rows("audit_events").await > 0, "the audit trail stays");
}
