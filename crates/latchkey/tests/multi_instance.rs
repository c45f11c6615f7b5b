//! Two server instances on one PostgreSQL database: any instance serves any request, and events
//! cross between them. Needs TEST_DATABASE_URL; says SKIPPED without it.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

async fn pair() -> Option<(TestApp, TestApp)> {
    if test_database_url().is_none() {
        eprintln!("SKIPPED: TEST_DATABASE_URL not set; the two-instance tests need PostgreSQL");
        return None;
    }
    // Grace 0: concurrent uses of one refresh token must have exactly one winner.
    let tweak = |s: &mut latchkey::config::Settings| {
        s.device.interval_secs = 1;
        s.tokens.refresh_reuse_grace_secs = 0;
        // The race losers count as wrong codes from 127.0.0.1; keep that back-off out of the way.
        s.device.code_failures_per_ip = 10_000;
        // Instances behind one name share one issuer, so each accepts the other's tokens.
        s.server.public_url = Some("http://127.0.0.1".into());
    };
    let a = spawn_with(tweak).await;
    let b = spawn_beside(&a, tweak).await;
    Some((a, b))
}

async fn phone(t: &TestApp) -> Value {
    t.post_json("/api/v1/accounts", json!({ "device": { "name": "Phone" } })).await.json().await.unwrap()
}

async fn wait_for(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    kind: &str,
) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("no message").expect("closed").unwrap();
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == kind {
                return v;
            }
        }
    }
}

async fn qr_round(a: &TestApp, b: &TestApp, between: impl std::future::Future<Output = ()>) -> Duration {
    let p = phone(b).await;
    let pat = s(&p, "access_token");
    let qr: Value = a.http.post(a.url("/api/v1/qr-logins")).send().await.unwrap().json().await.unwrap();
    let id = s(&qr, "id");
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/api/v1/qr-logins/{id}/events", a.base.trim_start_matches("http://")))
            .await
            .unwrap();
    ws.send(Message::text(json!({ "secret": qr["secret"] }).to_string())).await.unwrap();
    wait_for(&mut ws, "waiting").await;
    between.await;
    b.get_auth(&format!("/api/v1/qr-logins/{id}"), &pat).await;
    wait_for(&mut ws, "scanned").await;
    let started = Instant::now();
    let r = b.post_json_auth(&format!("/api/v1/qr-logins/{id}/approve"), &pat, json!({ "match_code": qr["match_code"] })).await;
    assert_eq!(r.status(), 204);
    let approved = wait_for(&mut ws, "approved").await;
    let took = started.elapsed();
    let r = a.post_json("/api/v1/handoff", json!({ "handoff_code": approved["handoff_code"], "secret": qr["secret"] })).await;
    assert_eq!(r.status(), 200);
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qr_login_waited_on_a_and_approved_on_b_reaches_the_browser_within_a_second() {
    let Some((a, b)) = pair().await else { return };
    let took = qr_round(&a, &b, async {}).await;
    assert!(took < Duration::from_secs(1), "push took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_listen_connection_loses_no_event() {
    let Some((a, b)) = pair().await else { return };
    let admin = test_database_url().unwrap();
    let kill = async move {
        let pool = sqlx::PgPool::connect(&admin).await.unwrap();
        // End every connection that is LISTENing on this database (both instances' listeners).
        let n: Vec<i32> = sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE query ILIKE 'LISTEN%' AND pid <> pg_backend_pid()")
            .fetch_all(&pool)
            .await
            .unwrap();
        for pid in &n {
            let _ = sqlx::query("SELECT pg_terminate_backend($1)").bind(pid).execute(&pool).await;
        }
        assert!(!n.is_empty(), "found listening connections to kill");
    };
    let took = qr_round(&a, &b, kill).await;
    assert!(took < Duration::from_secs(5), "caught up after reconnecting: {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_grant_started_on_a_approved_on_b_gives_tokens_once_on_a() {
    let Some((a, b)) = pair().await else { return };
    let p = phone(&b).await;
    let d = a.device_authorization().await;
    let r = b.post_json_auth("/api/v1/device-grants/approve", &s(&p, "access_token"), json!({ "user_code": d["user_code"] })).await;
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(a.poll(&s(&d, "device_code")).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(b.poll(&s(&d, "device_code")).await.json::<Value>().await.unwrap()["error"], "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_revocations_are_shared() {
    let Some((a, b)) = pair().await else { return };
    a.register("ann@example.com").await;
    // Failed logins spread over both instances trip the per-account delay.
    for (i, t) in [&a, &b, &a, &b, &a].iter().enumerate() {
        let r = t.post_json("/api/v1/sessions", json!({ "email": "ann@example.com", "password": format!("wrong {i}") })).await;
        assert_eq!(r.status(), 401);
    }
    let r = b.post_json("/api/v1/sessions", json!({ "email": "ann@example.com", "password": PASSWORD })).await;
    assert_eq!(r.status(), 429, "the sixth attempt waits, on whichever instance");
    // A device revoked through B is refused on A at once.
    a.clock.advance(120);
    let ann_a = a.login("ann@example.com", "Laptop").await;
    let ann_b = b.login("ann@example.com", "Tablet").await;
    let r = b
        .http
        .delete(b.url(&format!("/api/v1/devices/{}", s(&ann_a, "device_id"))))
        .bearer_auth(s(&ann_b, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(a.get_auth("/api/v1/devices", &s(&ann_a, "access_token")).await.status(), 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_refreshes_spread_over_two_instances_have_one_winner() {
    let Some((a, b)) = pair().await else { return };
    a.register("ann@example.com").await;
    let v = a.login("ann@example.com", "Laptop").await;
    let rt = s(&v, "refresh_token");
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let t = if i % 2 == 0 { &a } else { &b };
            let (http, url, rt) = (t.http.clone(), t.url("/oauth/token"), rt.clone());
            tokio::spawn(async move {
                let form = [("grant_type", "refresh_token"), ("refresh_token", rt.as_str()), ("client_id", "latchkey-cli")];
                http.post(url).form(&form).send().await.unwrap().status().as_u16()
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 1);
}

/// Fires 50 requests alternately at A and B; returns how many answered 200.
async fn spread(a: &TestApp, b: &TestApp, path: &str, body: Value, form: bool) -> usize {
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let t = if i % 2 == 0 { a } else { b };
            let (http, url, body) = (t.http.clone(), t.url(path), body.clone());
            tokio::spawn(async move {
                let req = http.post(url);
                let req = if form {
                    let pairs: Vec<(String, String)> =
                        body.as_object().unwrap().iter().map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned())).collect();
                    req.form(&pairs)
                } else {
                    req.json(&body)
                };
                req.send().await.unwrap().status().as_u16()
            })
        })
        .collect();
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            400 | 429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_use_races_spread_over_two_instances_have_one_winner() {
    let Some((a, b)) = pair().await else { return };
    let p = phone(&a).await;
    let pat = s(&p, "access_token");

    // Pairing code: 50 redemptions over both instances, one winner.
    let code: Value = a.http.post(a.url("/api/v1/pairing-codes")).bearer_auth(&pat).send().await.unwrap().json().await.unwrap();
    assert_eq!(spread(&a, &b, "/api/v1/pairing-codes/redeem", json!({ "code": code["code"], "device": { "name": "x" } }), false).await, 1);

    // Device code: approved once, 50 polls over both instances, one token response.
    let d = a.device_authorization().await;
    let r = b.post_json_auth("/api/v1/device-grants/approve", &pat, json!({ "user_code": d["user_code"] })).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let poll = json!({ "grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": d["device_code"], "client_id": "latchkey-cli" });
    assert_eq!(spread(&a, &b, "/oauth/token", poll, true).await, 1);

    // QR handoff: 50 exchanges over both instances, one session.
    let qr: Value = a.http.post(a.url("/api/v1/qr-logins")).send().await.unwrap().json().await.unwrap();
    let id = s(&qr, "id");
    b.get_auth(&format!("/api/v1/qr-logins/{id}"), &pat).await;
    b.post_json_auth(&format!("/api/v1/qr-logins/{id}/approve"), &pat, json!({ "match_code": qr["match_code"] })).await;
    let st: Value = a
        .http
        .get(a.url(&format!("/api/v1/qr-logins/{id}/status")))
        .header("x-qr-secret", s(&qr, "secret"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(spread(&a, &b, "/api/v1/handoff", json!({ "handoff_code": st["handoff_code"], "secret": qr["secret"] }), false).await, 1);
}

/// A passkey added through one instance signs in through the other, each ceremony started on one
/// and finished on the other: the ceremony state is in the shared database, not in a process.
#[tokio::test]
async fn passkey_ceremonies_cross_instances() {
    if test_database_url().is_none() {
        eprintln!("SKIPPED: TEST_DATABASE_URL not set; the two-instance tests need PostgreSQL");
        return;
    }
    let tweak = |s: &mut latchkey::config::Settings| s.server.public_url = Some("http://localhost:8443".into());
    let a = spawn_with(tweak).await;
    let b = spawn_beside(&a, tweak).await;
    // Both are the relying party of the one public name, whichever of them a request reaches.
    let mut key = passkey::SoftKey::new("http://localhost:8443");
    let at = s(&phone(&a).await, "access_token");
    let started: Value = a.post_json_auth("/api/v1/passkeys/register/start", &at, json!({})).await.json().await.unwrap();
    let credential = key.register(&started["options"]).await;
    let r = b
        .post_json_auth(
            "/api/v1/passkeys/register/finish",
            &at,
            json!({ "challenge_id": started["challenge_id"], "credential": credential }),
        )
        .await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let started: Value = b.post_json("/api/v1/passkeys/login/start", json!({})).await.json().await.unwrap();
    let credential = key.sign(&started["options"]).await;
    let body = json!({ "challenge_id": started["challenge_id"], "credential": credential });
    let r = a.post_json("/api/v1/passkeys/login/finish", body.clone()).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(b.post_json("/api/v1/passkeys/login/finish", body).await.status(), 400, "taken once, whichever instance");
}
