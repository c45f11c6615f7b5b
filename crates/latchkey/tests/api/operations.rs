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

/// A server on `dir`'s SQLite file, with the master key (if any) from the environment layer.
async fn serve_dir(dir: &std::path::Path, master: Option<&str>) -> anyhow::Result<(String, tokio::sync::oneshot::Sender<()>)> {
    latchkey::install_crypto_provider();
    let flags =
        latchkey::config::Overrides { listen: Some("127.0.0.1:0".parse().unwrap()), data_dir: Some(dir.to_owned()), ..Default::default() };
    let env: Vec<(String, String)> = master.map(|k| ("LATCHKEY_SERVER__MASTER_KEY".to_owned(), k.to_owned())).into_iter().collect();
    let mut settings = latchkey::config::Settings::load(None, env, &flags)?;
    settings.passwords.memory_kib = 8192;
    settings.passwords.iterations = 1;
    // One issuer across restarts on new ports, as a deployment's public URL.
    settings.server.public_url = Some("http://127.0.0.1:9".into());
    let server = latchkey::server::Server::build(settings).await?;
    let base = format!("http://{}", server.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    Ok((base, tx))
}

async fn stored_secrets(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.join("latchkey.db").display())).await.unwrap();
    let mut all: Vec<Vec<u8>> = sqlx::query_scalar("SELECT value FROM server_secrets").fetch_all(&pool).await.unwrap();
    all.extend(sqlx::query_scalar::<_, Vec<u8>>("SELECT seed FROM signing_keys").fetch_all(&pool).await.unwrap());
    pool.close().await;
    all
}

/// With a master key, the database alone holds no usable private key or server secret: a copy
/// of it does not start without the key (or with another), so it mints nothing. A database from
/// before the key is sealed on the first start with it, and what it issued keeps working.
#[tokio::test]
async fn a_master_key_seals_the_keys_so_the_database_alone_mints_nothing() {
    use base64::Engine;
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    let other = base64::engine::general_purpose::STANDARD.encode([8u8; 32]);
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let ann = |base: &str, path: &str| {
        http.post(format!("{base}{path}")).json(&serde_json::json!({ "email": "ann@example.com", "password": PASSWORD })).send()
    };

    // Before: no key, plain secrets. Ann signs in.
    let (base, stop) = serve_dir(dir.path(), None).await.unwrap();
    assert_eq!(ann(&base, "/api/v1/accounts").await.unwrap().status(), 201);
    let r = ann(&base, "/api/v1/sessions").await.unwrap();
    let tokens: Value = r.json().await.unwrap();
    drop(stop);
    assert!(stored_secrets(dir.path()).await.iter().all(|v| !v.starts_with(b"lk-sealed-v1:")));

    // With the key: everything is sealed at the first start, and ann's tokens still work.
    let (base, stop) = serve_dir(dir.path(), Some(&key)).await.unwrap();
    let me = http.get(format!("{base}/api/v1/me")).bearer_auth(s(&tokens, "access_token")).send().await.unwrap();
    assert_eq!(me.status(), 200, "an access token signed before verifies after");
    let r = http
        .post(format!("{base}/oauth/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &s(&tokens, "refresh_token")), ("client_id", "latchkey-cli")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the refresh token too");
    drop(stop);
    let stored = stored_secrets(dir.path()).await;
    assert!(stored.len() >= 5 && stored.iter().all(|v| v.starts_with(b"lk-sealed-v1:")), "every secret and seed sealed");

    // A copy of the file without the key, or with another, does not even start.
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("latchkey.db"), copy.path().join("latchkey.db")).unwrap();
    let err = serve_dir(copy.path(), None).await.expect_err("no key").to_string();
    assert!(err.contains("sealed under a master key"), "{err}");
    let err = serve_dir(copy.path(), Some(&other)).await.expect_err("another key").to_string();
    assert!(err.contains("does not open"), "{err}");
    let err = serve_dir(copy.path(), Some("not base64!")).await.expect_err("a bad key").to_string();
    assert!(err.contains("Base64"), "{err}");

    // With the key again it serves.
    let (base, _stop) = serve_dir(dir.path(), Some(&key)).await.unwrap();
    assert_eq!(ann(&base, "/api/v1/sessions").await.unwrap().status(), 200);
}
