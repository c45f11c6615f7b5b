use crate::common::*;
use serde_json::Value;

#[tokio::test]
async fn revoking_a_device_kills_its_sessions_at_once() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    let laptop = t.login("ann@example.com", "Laptop").await;
    let tv = t.login("ann@example.com", "TV").await;
    let devices: Vec<Value> = t.get_auth("/api/v1/devices", &s(&laptop, "access_token")).await.json().await.unwrap();
    assert_eq!(devices.len(), 2);
    assert_eq!(devices.iter().filter(|d| d["current"] == true).count(), 1);
    let r = t
        .http
        .delete(t.url(&format!("/api/v1/devices/{}", s(&tv, "device_id"))))
        .bearer_auth(s(&laptop, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(t.get_auth("/api/v1/devices", &s(&tv, "access_token")).await.status(), 401, "access token refused before expiry");
    assert_eq!(t.refresh(&s(&tv, "refresh_token")).await.status(), 400);
    let devices: Vec<Value> = t.get_auth("/api/v1/devices", &s(&laptop, "access_token")).await.json().await.unwrap();
    assert_eq!(devices.len(), 1);
    let audit = t.app.store.audit_all(50).await.unwrap();
    assert!(audit.iter().any(|a| a.kind == "device_revoked" && a.device_id.as_deref() == Some(&s(&tv, "device_id"))));
}

#[tokio::test]
async fn nobody_revokes_another_accounts_device() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    t.register("eve@example.com").await;
    let ann = t.login("ann@example.com", "Laptop").await;
    let eve = t.login("eve@example.com", "Evil").await;
    let r = t
        .http
        .delete(t.url(&format!("/api/v1/devices/{}", s(&ann, "device_id"))))
        .bearer_auth(s(&eve, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(t.get_auth("/api/v1/devices", &s(&ann, "access_token")).await.status(), 200);
    let r = t.http.delete(t.url("/api/v1/devices/not-a-device")).bearer_auth(s(&ann, "access_token")).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn devices_record_what_the_server_observed() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    let r = t
        .http
        .post(t.url("/api/v1/sessions"))
        .header("user-agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")
        .json(&serde_json::json!({ "email": "ann@example.com", "password": PASSWORD }))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let d: Vec<Value> = t.get_auth("/api/v1/devices", &s(&v, "access_token")).await.json().await.unwrap();
    assert_eq!(d[0]["os"], "iOS");
    assert_eq!(d[0]["browser"], "Safari");
    assert_eq!(d[0]["kind"], "mobile");
    assert_eq!(d[0]["name"], "Safari on iOS");
    assert_eq!(d[0]["last_ip"], "127.0.0.1");
    assert!(d[0]["first_seen"].as_str().unwrap().ends_with('Z'));
    assert!(d[0].get("trusted_until").is_some());
}
