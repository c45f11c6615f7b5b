use crate::common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn login_answers_tokens_for_a_new_device() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    let v = t.login("ANN@example.com", "Laptop").await;
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 600);
    assert!(s(&v, "refresh_token").starts_with("lk_rt_"));
    assert_eq!(s(&v, "refresh_token").len(), 6 + 43);
    let devices: Value = t.get_auth("/api/v1/devices", &s(&v, "access_token")).await.json().await.unwrap();
    assert_eq!(devices[0]["id"], v["device_id"]);
    assert_eq!(devices[0]["name"], "Laptop");
    assert_eq!(devices[0]["authorized_by"], "password");
    assert_eq!(devices[0]["current"], true);
}

#[tokio::test]
async fn unknown_email_and_wrong_password_get_the_same_answer() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    let wrong = t.post_json("/api/v1/sessions", json!({ "email": "ann@example.com", "password": "wrong password" })).await;
    let unknown = t.post_json("/api/v1/sessions", json!({ "email": "nobody@example.com", "password": "wrong password" })).await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(unknown.status(), 401);
    let (a, b) = (wrong.text().await.unwrap(), unknown.text().await.unwrap());
    assert_eq!(a, b);
}

#[tokio::test]
async fn failed_logins_escalate_the_delay_without_locking_out() {
    let t = spawn_with(|s| {
        s.limits.login_free_failures = 3;
        s.limits.login_max_delay_secs = 8;
    })
    .await;
    t.register("ann@example.com").await;
    let bad = json!({ "email": "ann@example.com", "password": "wrong password" });
    for _ in 0..3 {
        assert_eq!(t.post_json("/api/v1/sessions", bad.clone()).await.status(), 401);
    }
    // The third failure earns a 2 s wait: the next attempt, even with the right password, waits.
    let r = t.post_json("/api/v1/sessions", json!({ "email": "ann@example.com", "password": PASSWORD })).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=8).contains(&retry));
    // Never a lockout: once the delay has passed the owner gets in.
    t.clock.advance(9);
    let ok = t.post_json("/api/v1/sessions", json!({ "email": "ann@example.com", "password": PASSWORD })).await;
    assert_eq!(ok.status(), 200);
    // Unknown e-mails are throttled the same way, so the limiter tells nothing about accounts.
    for _ in 0..3 {
        t.post_json("/api/v1/sessions", json!({ "email": "ghost@example.com", "password": "x" })).await;
    }
    assert_eq!(t.post_json("/api/v1/sessions", json!({ "email": "ghost@example.com", "password": "x" })).await.status(), 429);
}

#[tokio::test]
async fn logins_are_limited_per_ip() {
    let t = spawn_with(|s| s.limits.login_per_ip_per_minute = 3).await;
    t.register("ann@example.com").await;
    for _ in 0..3 {
        t.login("ann@example.com", "d").await;
    }
    let r = t.post_json("/api/v1/sessions", json!({ "email": "ann@example.com", "password": PASSWORD })).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let audit = t.app.store.audit_all(50).await.unwrap();
    assert!(audit.iter().any(|e| e.kind == "rate_limited"), "the limit hit is audited");
}

#[tokio::test]
async fn sessions_belong_to_the_named_client_and_its_refresh_tokens_are_bound_to_it() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    latchkey::service::clients::create(&t.app, latchkey::service::clients::NewClient::device("tv-app", "TV app", false)).await.unwrap();
    let r = t.post_json("/api/v1/sessions", json!({ "email": "ann@example.com", "password": PASSWORD, "client_id": "tv-app" })).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    // The CLI client cannot use the TV app's refresh token.
    let wrong = t.refresh(&s(&v, "refresh_token")).await;
    assert_eq!(wrong.status(), 400);
    let right = t
        .post_form("/oauth/token", &[("grant_type", "refresh_token"), ("refresh_token", &s(&v, "refresh_token")), ("client_id", "tv-app")])
        .await;
    assert_eq!(right.status(), 200, "the mismatch did not burn the token");
    let unknown = t.post_json("/api/v1/sessions", json!({ "email": "ann@example.com", "password": PASSWORD, "client_id": "nope" })).await;
    assert_eq!(unknown.status(), 401);
}

#[tokio::test]
async fn logout_and_logout_everywhere_end_sessions_at_once() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    let a = t.login("ann@example.com", "A").await;
    let b = t.login("ann@example.com", "B").await;
    let c = t.login("ann@example.com", "C").await;
    let r = t.http.delete(t.url("/api/v1/sessions/current")).bearer_auth(s(&a, "access_token")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(t.get_auth("/api/v1/devices", &s(&a, "access_token")).await.status(), 401);
    assert_eq!(t.refresh(&s(&a, "refresh_token")).await.status(), 400);
    assert_eq!(t.get_auth("/api/v1/devices", &s(&b, "access_token")).await.status(), 200);
    let r = t.http.delete(t.url("/api/v1/sessions")).bearer_auth(s(&b, "access_token")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    for v in [&b, &c] {
        assert_eq!(t.get_auth("/api/v1/devices", &s(v, "access_token")).await.status(), 401);
        assert_eq!(t.refresh(&s(v, "refresh_token")).await.status(), 400);
    }
}

#[tokio::test]
async fn audit_log_shows_a_user_their_own_events() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    t.register("bob@example.com").await;
    t.post_json("/api/v1/sessions", json!({ "email": "ann@example.com", "password": "nope nope" })).await;
    let bob = t.login("bob@example.com", "bob").await;
    let ann = t.login("ann@example.com", "ann").await;
    let events: Vec<Value> = t.get_auth("/api/v1/audit", &s(&ann, "access_token")).await.json().await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for k in ["account_created", "login_failed", "device_added", "login_succeeded"] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    assert!(events.iter().all(|e| e["ip"] == "127.0.0.1"));
    let bob_events: Vec<Value> = t.get_auth("/api/v1/audit", &s(&bob, "access_token")).await.json().await.unwrap();
    assert!(!bob_events.iter().any(|e| e["kind"] == "login_failed"), "bob does not see ann's events");
}
