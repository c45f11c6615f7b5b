use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A phone signs up passwordless (seed 001) and gets its tokens.
async fn phone(t: &TestApp) -> Value {
    let r = t.post_json("/api/v1/accounts", json!({ "device": { "name": "Ann's phone", "kind": "mobile" } })).await;
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

async fn start(t: &TestApp) -> Value {
    let r = t.http.post(t.url("/api/v1/qr-logins")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

async fn socket(t: &TestApp, id: &str, origin: Option<&str>) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{}/api/v1/qr-logins/{id}/events", t.base.trim_start_matches("http://")).into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut().insert("origin", o.parse().unwrap());
    }
    tokio_tungstenite::connect_async(req).await.map(|(ws, _)| ws)
}

/// The next JSON message, or None when the socket closes first.
async fn next(ws: &mut Ws) -> Option<Value> {
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next()).await.expect("socket went quiet")?;
        match msg {
            Ok(Message::Text(t)) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

#[tokio::test]
async fn the_whole_qr_login_over_a_real_websocket() {
    let t = spawn().await;
    let phone = phone(&t).await;
    let pat = s(&phone, "access_token");
    let qr = start(&t).await;
    let (id, secret, number) = (s(&qr, "id"), s(&qr, "secret"), s(&qr, "match_code"));
    assert_eq!(s(&qr, "url"), t.url(&format!("/q/{id}")));
    assert!(!s(&qr, "url").contains(&secret) && !s(&qr, "qr_svg").contains(&secret), "the secret is never in the QR");
    assert!(qr["expires_in"].as_u64().unwrap() <= 120);
    assert_eq!(number.len(), 2);

    let mut ws = socket(&t, &id, Some(&t.base)).await.unwrap();
    ws.send(Message::text(json!({ "secret": secret }).to_string())).await.unwrap();
    assert_eq!(next(&mut ws).await.unwrap()["type"], "waiting");

    let view: Value = t.get_auth(&format!("/api/v1/qr-logins/{id}"), &pat).await.json().await.unwrap();
    assert_eq!(view["same_network"], true);
    assert_eq!(view["ip"], "127.0.0.1");
    let choices: Vec<String> = view["match_choices"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    assert_eq!(choices.len(), 3);
    assert!(choices.contains(&number));
    let scanned = next(&mut ws).await.unwrap();
    assert_eq!(scanned["type"], "scanned");
    assert_eq!(scanned["device"], "Ann's phone");

    let r = t.post_json_auth(&format!("/api/v1/qr-logins/{id}/approve"), &pat, json!({ "match_code": number })).await;
    assert_eq!(r.status(), 204);
    let approved = next(&mut ws).await.unwrap();
    assert_eq!(approved["type"], "approved");
    let code = s(&approved, "handoff_code");
    assert!(next(&mut ws).await.is_none(), "the socket closes on an end state");

    let r = t.post_json("/api/v1/handoff", json!({ "handoff_code": code, "secret": secret })).await;
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    // An API client refreshes its QR tokens as the CLI client.
    let tokens: Value = t.refresh(&s(&tokens, "refresh_token")).await.json().await.unwrap();
    assert!(tokens["access_token"].is_string(), "{tokens}");
    let devices: Vec<Value> = t.get_auth("/api/v1/devices", &s(&tokens, "access_token")).await.json().await.unwrap();
    let browser = devices.iter().find(|d| d["current"] == true).unwrap();
    assert_eq!(browser["authorized_by"], "qr");
    assert_eq!(browser["approved_by_device"], phone["device_id"]);
    let audit: Vec<Value> = t.get_auth("/api/v1/audit", &pat).await.json().await.unwrap();
    assert!(audit.iter().any(|e| e["kind"] == "qr_sign_in" && e["detail"]["message"] == "new sign-in by QR"), "the phone sees it");
}

#[tokio::test]
async fn without_the_secret_or_from_a_foreign_origin_nothing_is_delivered() {
    let t = spawn().await;
    let phone = phone(&t).await;
    let qr = start(&t).await;
    let id = s(&qr, "id");
    // A foreign Origin is refused at the handshake.
    let err = socket(&t, &id, Some("https://evil.example")).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    // A wrong secret, and no secret within 5 s: closed without a word.
    let mut ws = socket(&t, &id, None).await.unwrap();
    // (well formed, and naming this login, but not its secret)
    ws.send(Message::text(json!({ "secret": format!("lk_qs_{id}.{}", "A".repeat(43)) }).to_string())).await.unwrap();
    assert!(next(&mut ws).await.is_none());
    let mut silent = socket(&t, &id, None).await.unwrap();
    let started = std::time::Instant::now();
    assert!(next(&mut silent).await.is_none());
    assert!(started.elapsed() >= std::time::Duration::from_secs(4));
    // Even after approval, the status endpoint tells nothing without the secret.
    let view: Value = t.get_auth(&format!("/api/v1/qr-logins/{id}"), &s(&phone, "access_token")).await.json().await.unwrap();
    t.post_json_auth(&format!("/api/v1/qr-logins/{id}/approve"), &s(&phone, "access_token"), json!({ "match_code": qr["match_code"] }))
        .await;
    let r = t.http.get(t.url(&format!("/api/v1/qr-logins/{id}/status"))).header("x-qr-secret", "lk_qs_nope").send().await.unwrap();
    assert_eq!(r.status(), 404);
    let r = t.http.get(t.url(&format!("/api/v1/qr-logins/{id}/status"))).header("x-qr-secret", s(&qr, "secret")).send().await.unwrap();
    let st: Value = r.json().await.unwrap();
    assert_eq!(st["type"], "approved");
    assert!(st["handoff_code"].is_string());
    assert!(view["match_choices"].is_array());
}

#[tokio::test]
async fn an_expired_login_closes_its_socket() {
    let t = spawn().await;
    let qr = start(&t).await;
    t.clock.advance(121);
    let mut ws = socket(&t, &s(&qr, "id"), None).await.unwrap();
    ws.send(Message::text(json!({ "secret": qr["secret"] }).to_string())).await.unwrap();
    assert_eq!(next(&mut ws).await.unwrap()["type"], "expired");
    assert!(next(&mut ws).await.is_none());
}

#[tokio::test]
async fn a_wrong_number_denies_and_the_first_scanner_locks_it() {
    let t = spawn().await;
    let a = phone(&t).await;
    let b = phone(&t).await;
    let qr = start(&t).await;
    let id = s(&qr, "id");
    assert_eq!(t.get_auth(&format!("/api/v1/qr-logins/{id}"), &s(&a, "access_token")).await.status(), 200);
    assert_eq!(t.get_auth(&format!("/api/v1/qr-logins/{id}"), &s(&b, "access_token")).await.status(), 404, "locked to the first scanner");
    let r = t
        .post_json_auth(&format!("/api/v1/qr-logins/{id}/approve"), &s(&b, "access_token"), json!({ "match_code": qr["match_code"] }))
        .await;
    assert_eq!(r.status(), 404);
    let wrong = if qr["match_code"] == "42" { "43" } else { "42" };
    let r = t.post_json_auth(&format!("/api/v1/qr-logins/{id}/approve"), &s(&a, "access_token"), json!({ "match_code": wrong })).await;
    assert_eq!(r.status(), 400);
    let st: Value = t
        .http
        .get(t.url(&format!("/api/v1/qr-logins/{id}/status")))
        .header("x-qr-secret", s(&qr, "secret"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(st["type"], "denied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_handoffs_give_one_session_and_a_replay_revokes_it() {
    let t = spawn().await;
    let p = phone(&t).await;
    let qr = start(&t).await;
    let id = s(&qr, "id");
    t.get_auth(&format!("/api/v1/qr-logins/{id}"), &s(&p, "access_token")).await;
    t.post_json_auth(&format!("/api/v1/qr-logins/{id}/approve"), &s(&p, "access_token"), json!({ "match_code": qr["match_code"] })).await;
    let st: Value = t
        .http
        .get(t.url(&format!("/api/v1/qr-logins/{id}/status")))
        .header("x-qr-secret", s(&qr, "secret"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let code = s(&st, "handoff_code");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (http, url, body) = (t.http.clone(), t.url("/api/v1/handoff"), json!({ "handoff_code": code, "secret": qr["secret"] }));
            tokio::spawn(async move {
                let r = http.post(url).json(&body).send().await.unwrap();
                (r.status().as_u16(), r.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            200 => winners.push(body),
            400 => {}
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(winners.len(), 1);
    // The 49 others were replays of a used code: the session it minted is revoked.
    assert_eq!(t.get_auth("/api/v1/devices", &s(&winners[0], "access_token")).await.status(), 401);
    assert_eq!(t.count_rows("sessions WHERE device_id IN (SELECT id FROM devices WHERE authorized_by = 'qr')").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approve_and_deny_together_end_in_one_state() {
    let t = spawn().await;
    let p = phone(&t).await;
    let pat = s(&p, "access_token");
    for _ in 0..10 {
        let qr = start(&t).await;
        let id = s(&qr, "id");
        t.get_auth(&format!("/api/v1/qr-logins/{id}"), &pat).await;
        let approve_path = format!("/api/v1/qr-logins/{id}/approve");
        let approve = t.post_json_auth(&approve_path, &pat, json!({ "match_code": qr["match_code"] }));
        let deny = t.http.post(t.url(&format!("/api/v1/qr-logins/{id}/deny"))).bearer_auth(&pat).send();
        let (a, d) = tokio::join!(approve, deny);
        let ok = [a.status().as_u16(), d.unwrap().status().as_u16()].iter().filter(|s| **s == 204).count();
        assert_eq!(ok, 1, "exactly one decision lands");
    }
}

#[tokio::test]
async fn a_passwordless_account_from_a_device_approves_qr_at_once() {
    let t = spawn().await;
    let r = t.post_json("/api/v1/accounts", json!({ "email": "Pat@Example.com", "device": { "name": "Pat's phone" } })).await;
    assert_eq!(r.status(), 201);
    let p: Value = r.json().await.unwrap();
    let me: Value = t.get_auth("/api/v1/me", &s(&p, "access_token")).await.json().await.unwrap();
    assert_eq!(me["email"], "pat@example.com");
    // No password: a password login for it is refused like any wrong password.
    let r = t.post_json("/api/v1/sessions", json!({ "email": "pat@example.com", "password": "anything at all" })).await;
    assert_eq!(r.status(), 401);
    // Its refresh token keeps it signed in.
    assert_eq!(t.refresh(&s(&p, "refresh_token")).await.status(), 200);
    let r = t.post_json("/api/v1/accounts", json!({})).await;
    assert_eq!(r.status(), 422, "neither a password nor a device");
}

#[tokio::test]
async fn a_passwordless_account_adds_an_email_and_a_password_later() {
    let t = spawn().await;
    let p = phone(&t).await;
    let at = s(&p, "access_token");
    assert_eq!(t.post_json_auth("/api/v1/account/email", &at, json!({ "email": "Late@Example.com" })).await.status(), 204);
    assert_eq!(t.post_json_auth("/api/v1/account/email", &at, json!({ "email": "other@example.com" })).await.status(), 409, "set once");
    let r = t.post_json_auth("/api/v1/password", &at, json!({ "new_password": "first password ever" })).await;
    assert_eq!(r.status(), 200);
    let r = t.post_json("/api/v1/sessions", json!({ "email": "late@example.com", "password": "first password ever" })).await;
    assert_eq!(r.status(), 200, "now it can sign in with a password too");
    let r = t.post_json_auth("/api/v1/password", &at, json!({ "new_password": "second password" })).await;
    assert_eq!(r.status(), 403, "once it has a password, changing it needs the current one");
}

/// A QR login audits its creation, like every request, and dies with the phone that scanned
/// it: revoking the phone tells a waiting browser `denied` at once over its socket, and an
/// approval it gave can no longer be exchanged for a session.
#[tokio::test]
async fn creation_is_audited_and_revoking_the_phone_ends_its_qr_logins() {
    let t = spawn().await;
    let phone = phone(&t).await;
    let pat = s(&phone, "access_token");

    let approved = start(&t).await;
    let (a_id, a_secret, number) = (s(&approved, "id"), s(&approved, "secret"), s(&approved, "match_code"));
    let audit = t.app.store.audit_all(50).await.unwrap();
    let created = audit.iter().find(|e| e.kind == "qr_login_created").expect("QR creation is audited");
    let detail: Value = serde_json::from_str(&created.detail).unwrap();
    assert_eq!((detail["request"].as_str(), detail["flow"].as_str()), (Some(a_id.as_str()), Some("qr")));
    assert_eq!(created.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(t.get_auth(&format!("/api/v1/qr-logins/{a_id}"), &pat).await.status(), 200);
    let r = t.post_json_auth(&format!("/api/v1/qr-logins/{a_id}/approve"), &pat, json!({ "match_code": number })).await;
    assert_eq!(r.status(), 204);
    let mut ws = socket(&t, &a_id, Some(&t.base)).await.unwrap();
    ws.send(Message::text(json!({ "secret": a_secret }).to_string())).await.unwrap();
    let handoff = s(&next(&mut ws).await.unwrap(), "handoff_code");

    let scanned = start(&t).await;
    let (b_id, b_secret) = (s(&scanned, "id"), s(&scanned, "secret"));
    let mut ws = socket(&t, &b_id, Some(&t.base)).await.unwrap();
    ws.send(Message::text(json!({ "secret": b_secret }).to_string())).await.unwrap();
    assert_eq!(next(&mut ws).await.unwrap()["type"], "waiting");
    assert_eq!(t.get_auth(&format!("/api/v1/qr-logins/{b_id}"), &pat).await.status(), 200);
    assert_eq!(next(&mut ws).await.unwrap()["type"], "scanned");

    let r = t.http.delete(t.url(&format!("/api/v1/devices/{}", s(&phone, "device_id")))).bearer_auth(&pat).send().await.unwrap();
    assert_eq!(r.status(), 204);
    // Woken by the revocation itself, long before the socket's next periodic look at the store.
    let started = std::time::Instant::now();
    assert_eq!(next(&mut ws).await.unwrap()["type"], "denied");
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    let r = t.post_json("/api/v1/handoff", json!({ "handoff_code": handoff, "secret": a_secret })).await;
    assert_eq!(r.status(), 400, "an approval of a revoked phone is not exchanged");
    assert_eq!(t.count_rows("sessions WHERE revoked_at IS NULL").await, 0);
}

/// Two `/login` tabs of one browser each show a QR; each finishes its own login, because each
/// login's secret is in a cookie of its own (one per login, not one per browser).
#[tokio::test]
async fn two_login_tabs_each_finish_their_own_qr_login() {
    let t = spawn().await;
    let phone = phone(&t).await;
    let pat = s(&phone, "access_token");
    let page = t.http.get(t.url("/login")).send().await.unwrap().text().await.unwrap();
    let csrf = page.split("data-csrf=\"").nth(1).expect("the page's CSRF token").split('"').next().unwrap().to_owned();
    let mut tabs = Vec::new();
    for _ in 0..2 {
        let r = t.http.post(t.url("/login/qr")).header("x-csrf-token", &csrf).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let cookie = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_owned())
            .find(|c| c.starts_with("lk_qr_"))
            .expect("the login's own cookie");
        let body: Value = r.json().await.unwrap();
        assert!(cookie.starts_with(&format!("lk_qr_{}=", s(&body, "id"))), "{cookie}");
        tabs.push((body, cookie));
    }
    // The first tab finishes after the second one started.
    for (qr, cookie) in &tabs {
        let id = s(qr, "id");
        let mut req = format!("ws://{}/api/v1/qr-logins/{id}/events", t.base.trim_start_matches("http://")).into_client_request().unwrap();
        req.headers_mut().insert("origin", t.base.parse().unwrap());
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
        assert_eq!(next(&mut ws).await.unwrap()["type"], "waiting", "the socket found its login's secret in its cookie");
        t.get_auth(&format!("/api/v1/qr-logins/{id}"), &pat).await;
        let r = t.post_json_auth(&format!("/api/v1/qr-logins/{id}/approve"), &pat, json!({ "match_code": qr["match_code"] })).await;
        assert_eq!(r.status(), 204);
        let code = loop {
            let m = next(&mut ws).await.unwrap();
            if m["type"] == "approved" {
                break s(&m, "handoff_code");
            }
        };
        let r = t
            .http
            .post(t.url("/login/qr/handoff"))
            .header("x-csrf-token", &csrf)
            .json(&json!({ "id": id, "handoff_code": code, "next": "/account" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "tab of {id}: {}", r.text().await.unwrap_or_default());
    }
}
