use crate::common::*;
use serde_json::{Value, json};

async fn setup() -> (TestApp, Value) {
    let t = spawn_with(|s| s.device.interval_secs = 1).await;
    t.register("ann@example.com").await;
    let laptop = t.login("ann@example.com", "Laptop").await;
    (t, laptop)
}

async fn new_code(t: &TestApp, issuer: &Value) -> Value {
    let r = t.http.post(t.url("/api/v1/pairing-codes")).bearer_auth(s(issuer, "access_token")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    r.json().await.unwrap()
}

async fn redeem(t: &TestApp, code: &str, name: &str) -> reqwest::Response {
    t.post_json("/api/v1/pairing-codes/redeem", json!({ "code": code, "device": { "name": name } })).await
}

#[tokio::test]
async fn the_issuing_device_sees_who_joined_and_allows_it() {
    let (t, laptop) = setup().await;
    let at = s(&laptop, "access_token");
    let code = new_code(&t, &laptop).await;
    assert_eq!(s(&code, "code").len(), 11, "ten letters shown XXXXX-XXXXX");
    assert_eq!(code["expires_in"], 300);
    let id = s(&code, "id");
    let status: Value = t.get_auth(&format!("/api/v1/pairing-codes/{id}"), &at).await.json().await.unwrap();
    assert_eq!(status["state"], "waiting");
    let r = redeem(&t, &s(&code, "code").to_lowercase(), "New laptop").await;
    assert_eq!(r.status(), 200);
    let red: Value = r.json().await.unwrap();
    let dc = s(&red, "device_code");
    assert_eq!(t.poll(&dc).await.json::<Value>().await.unwrap()["error"], "authorization_pending");
    let status: Value = t.get_auth(&format!("/api/v1/pairing-codes/{id}"), &at).await.json().await.unwrap();
    assert_eq!(status["state"], "pending");
    assert_eq!(status["requester"]["claimed_name"], "New laptop");
    assert_eq!(status["requester"]["ip"], "127.0.0.1");
    let r = t.http.post(t.url(&format!("/api/v1/pairing-codes/{id}/approve"))).bearer_auth(&at).send().await.unwrap();
    assert_eq!(r.status(), 200);
    t.clock.advance(2);
    let r = t.poll(&dc).await;
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    let devices: Vec<Value> = t.get_auth("/api/v1/devices", &at).await.json().await.unwrap();
    let new = devices.iter().find(|d| d["id"] == tokens["device_id"]).expect("the new device is listed");
    assert_eq!(new["authorized_by"], "pairing");
    assert_eq!(new["approved_by_device"], laptop["device_id"]);
    assert_eq!(new["name"], "New laptop");
    let audit = t.app.store.audit_all(100).await.unwrap();
    for k in ["pairing_code_issued", "pairing_code_redeemed", "pairing_approved", "device_added"] {
        assert!(audit.iter().any(|e| e.kind == k), "{k}");
    }
}

#[tokio::test]
async fn a_denied_device_gets_nothing() {
    let (t, laptop) = setup().await;
    let code = new_code(&t, &laptop).await;
    let red: Value = redeem(&t, &s(&code, "code"), "Stranger").await.json().await.unwrap();
    let r = t
        .http
        .post(t.url(&format!("/api/v1/pairing-codes/{}/deny", s(&code, "id"))))
        .bearer_auth(s(&laptop, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(t.poll(&s(&red, "device_code")).await.json::<Value>().await.unwrap()["error"], "access_denied");
    let again = t
        .http
        .post(t.url(&format!("/api/v1/pairing-codes/{}/approve", s(&code, "id"))))
        .bearer_auth(s(&laptop, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409, "a decision is final");
}

#[tokio::test]
async fn only_the_issuing_device_decides() {
    let (t, laptop) = setup().await;
    let other = t.login("ann@example.com", "Tablet").await;
    t.register("eve@example.com").await;
    let eve = t.login("eve@example.com", "Eve").await;
    let code = new_code(&t, &laptop).await;
    redeem(&t, &s(&code, "code"), "x").await;
    for who in [&other, &eve] {
        let r = t
            .http
            .post(t.url(&format!("/api/v1/pairing-codes/{}/approve", s(&code, "id"))))
            .bearer_auth(s(who, "access_token"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(t.get_auth(&format!("/api/v1/pairing-codes/{}", s(&code, "id")), &s(who, "access_token")).await.status(), 404);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_redemptions_have_one_winner() {
    let (t, laptop) = setup().await;
    let code = s(&new_code(&t, &laptop).await, "code");
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (http, url, code) = (t.http.clone(), t.url("/api/v1/pairing-codes/redeem"), code.clone());
            tokio::spawn(async move {
                http.post(url).json(&json!({ "code": code, "device": { "name": format!("d{i}") } })).send().await.unwrap().status().as_u16()
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            200 => ok += 1,
            400 | 429 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(t.count_rows("approvals WHERE flow = 'pairing'").await, 1);
}

#[tokio::test]
async fn one_live_code_per_device_and_codes_expire() {
    let (t, laptop) = setup().await;
    let first = new_code(&t, &laptop).await;
    let second = new_code(&t, &laptop).await;
    let r = redeem(&t, &s(&first, "code"), "x").await;
    assert_eq!(r.status(), 400, "a new code ends the previous one");
    let generic = r.json::<Value>().await.unwrap()["detail"].clone();
    t.clock.advance(301);
    let r = redeem(&t, &s(&second, "code"), "x").await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["detail"], generic, "one message for every failure");
    let r = redeem(&t, "0000000000", "x").await;
    assert_eq!(r.json::<Value>().await.unwrap()["detail"], generic);
}

#[tokio::test]
async fn failed_redemptions_are_limited_per_ip() {
    let t = spawn_with(|s| s.device.code_failures_per_ip = 5).await;
    for _ in 0..5 {
        assert_eq!(redeem(&t, "BCDFGHJKLM", "x").await.status(), 400);
    }
    let r = redeem(&t, "BCDFGHJKLM", "x").await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn a_pairing_code_grants_no_more_than_its_issuer_has() {
    let (t, laptop) = setup().await;
    let r = t.post_json_auth("/api/v1/pairing-codes", &s(&laptop, "access_token"), json!({ "scope": "account admin" })).await;
    assert_eq!(r.status(), 400);
    let r = t.http.post(t.url("/api/v1/pairing-codes")).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

/// A pairing request is a pending request like any other: it counts under the per-IP cap and
/// the server-wide one. A refused redemption leaves the code unused, to be tried again.
#[tokio::test]
async fn pairing_requests_count_under_the_pending_caps() {
    let t = spawn_with(|s| {
        s.device.interval_secs = 1;
        s.device.pending_per_ip = 1;
    })
    .await;
    t.register("ann@example.com").await;
    let laptop = t.login("ann@example.com", "Laptop").await;
    let at = s(&laptop, "access_token");
    let d = t.device_authorization().await;
    let code = new_code(&t, &laptop).await;
    let r = redeem(&t, &s(&code, "code"), "New laptop").await;
    assert_eq!(r.status(), 429, "the device grant from this IP holds its one pending slot");
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(t.count_rows("approvals WHERE flow = 'pairing'").await, 0, "nothing half-written");
    // The pending device grant ends; the same code now opens its request.
    let r = t.post_json_auth("/api/v1/device-grants/deny", &at, json!({ "user_code": s(&d, "user_code") })).await;
    assert_eq!(r.status(), 200);
    assert_eq!(redeem(&t, &s(&code, "code"), "New laptop").await.status(), 200, "the refused attempt did not use up the code");

    let t = spawn_with(|s| {
        s.device.pending_per_ip = 0;
        s.device.pending_total = 1;
    })
    .await;
    t.register("ann@example.com").await;
    let laptop = t.login("ann@example.com", "Laptop").await;
    assert_eq!(t.http.post(t.url("/api/v1/qr-logins")).send().await.unwrap().status(), 201);
    let code = new_code(&t, &laptop).await;
    assert_eq!(redeem(&t, &s(&code, "code"), "New laptop").await.status(), 429, "the QR login holds the server's one slot");
}

/// Revoking the issuing device ends its live code and the request that typed it, even approved:
/// nothing the device let in can be collected after it is gone.
#[tokio::test]
async fn revoking_the_issuing_device_ends_its_code_and_its_requests() {
    let (t, laptop) = setup().await;
    let tablet = t.login("ann@example.com", "Tablet").await;
    let code = new_code(&t, &laptop).await;
    let red: Value = redeem(&t, &s(&code, "code"), "New laptop").await.json().await.unwrap();
    let id = s(&code, "id");
    let r =
        t.http.post(t.url(&format!("/api/v1/pairing-codes/{id}/approve"))).bearer_auth(s(&laptop, "access_token")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let unused = new_code(&t, &tablet).await;
    let r = t
        .http
        .delete(t.url(&format!("/api/v1/devices/{}", s(&laptop, "device_id"))))
        .bearer_auth(s(&tablet, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    t.clock.advance(2);
    assert_eq!(t.poll(&s(&red, "device_code")).await.json::<Value>().await.unwrap()["error"], "access_denied");
    // The tablet's own code is untouched; a code of the revoked laptop would no longer redeem.
    assert_eq!(redeem(&t, &s(&unused, "code"), "Other").await.status(), 200);
    let again = new_code(&t, &tablet).await;
    let r = t
        .http
        .delete(t.url(&format!("/api/v1/devices/{}", s(&tablet, "device_id"))))
        .bearer_auth(s(&tablet, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(redeem(&t, &s(&again, "code"), "Other").await.status(), 400, "a revoked device's live code is dead");
}
