//! The device-grant policy (`[device_policy]`) at the request, the approval and the collection,
//! with requester addresses given through a trusted proxy's X-Forwarded-For.

use crate::common::*;
use latchkey::domain::device_policy::DevicePolicy;
use serde_json::{Value, json};

fn policy(text: &str) -> DevicePolicy {
    toml::from_str(text).expect("a policy")
}

/// A server behind a "proxy" at 127.0.0.1, with this policy.
async fn with_policy(text: &str) -> TestApp {
    let p = policy(text);
    spawn_with(move |s| {
        s.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        s.device.interval_secs = 1;
        s.device_policy = p;
    })
    .await
}

async fn ask(t: &TestApp, from: &str) -> reqwest::Response {
    t.http
        .post(t.url("/oauth/device_authorization"))
        .header("x-forwarded-for", from)
        .form(&[("client_id", "latchkey-cli")])
        .send()
        .await
        .unwrap()
}

async fn approve(t: &TestApp, token: &str, user_code: &str) -> reqwest::Response {
    t.http
        .post(t.url("/api/v1/device-grants/approve"))
        .bearer_auth(token)
        .header("x-forwarded-for", "203.0.113.50")
        .json(&json!({ "user_code": user_code, "in_front_of_me": true }))
        .send()
        .await
        .unwrap()
}

async fn poll_from(t: &TestApp, device_code: &str, from: &str) -> reqwest::Response {
    let form =
        [("grant_type", "urn:ietf:params:oauth:grant-type:device_code"), ("device_code", device_code), ("client_id", "latchkey-cli")];
    t.http.post(t.url("/oauth/token")).header("x-forwarded-for", from).form(&form).send().await.unwrap()
}

/// The policy entries of the audit log: (kind, stage, rule).
async fn refusals(t: &TestApp) -> Vec<(String, String, String)> {
    let audit = t.app.store.audit_all(200).await.unwrap();
    let mut v: Vec<_> = audit
        .iter()
        .filter(|e| e.kind.starts_with("device_policy"))
        .map(|e| {
            let d: Value = serde_json::from_str(&e.detail).unwrap();
            (e.kind.clone(), s(&d, "stage"), s(&d, "rule"))
        })
        .collect();
    v.reverse();
    v
}

fn refused(stage: &str, rule: &str) -> (String, String, String) {
    ("device_policy_refused".into(), stage.into(), rule.into())
}

#[tokio::test]
async fn requests_from_outside_the_allowed_networks_and_from_refused_clients_get_no_code() {
    let t = with_policy("[[client]]\nid = \"latchkey-cli\"\nnetworks = [\"203.0.113.0/24\", \"2001:db8::/32\"]\n").await;
    assert_eq!(ask(&t, "203.0.113.9").await.status(), 200);
    assert_eq!(ask(&t, "2001:db8::7").await.status(), 200);
    let r = ask(&t, "198.51.100.7").await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized_client");
    // The device is not told which networks would do.
    assert!(!s(&body, "error_description").contains("203.0.113"), "{body}");
    assert_eq!(refusals(&t).await, vec![refused("request", "network")]);

    let t = with_policy("default = \"deny\"\n[[client]]\nid = \"some-tv\"\n").await;
    let r = ask(&t, "203.0.113.9").await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unauthorized_client");
    let t = with_policy("[[client]]\nid = \"latchkey-cli\"\nallow = false\n").await;
    assert_eq!(ask(&t, "203.0.113.9").await.status(), 400);
    assert_eq!(refusals(&t).await, vec![refused("request", "client")]);
}

/// A client whose connections leave from `source` (any 127.0.0.x reaches the server on 127.0.0.1).
fn from_source(source: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(source.parse::<std::net::IpAddr>().unwrap()).build().unwrap()
}

async fn ask_as(t: &TestApp, source: &str, forwarded_for: Option<&str>) -> u16 {
    let mut req = from_source(source).post(t.url("/oauth/device_authorization")).form(&[("client_id", "latchkey-cli")]);
    if let Some(f) = forwarded_for {
        req = req.header("x-forwarded-for", f);
    }
    req.send().await.unwrap().status().as_u16()
}

/// Real sources: the peer's own address decides, and X-Forwarded-For counts only from a trusted
/// proxy, so a device cannot talk its way into an allowed network.
#[tokio::test]
async fn the_network_rule_reads_real_sources_and_trusts_only_trusted_proxies() {
    let p = policy("[[client]]\nid = \"latchkey-cli\"\nnetworks = [\"127.0.0.2/32\"]\n");
    let t = spawn_with(move |s| {
        s.server.trusted_proxies = vec!["127.0.0.10".parse().unwrap()];
        s.device_policy = p;
    })
    .await;
    assert_eq!(ask_as(&t, "127.0.0.2", None).await, 200, "inside the allowed network");
    assert_eq!(ask_as(&t, "127.0.0.3", None).await, 400, "outside it");
    assert_eq!(ask_as(&t, "127.0.0.3", Some("127.0.0.2")).await, 400, "a header from an untrusted peer is ignored");
    assert_eq!(ask_as(&t, "127.0.0.10", Some("127.0.0.2")).await, 200, "the trusted proxy's word is taken");
    assert_eq!(ask_as(&t, "127.0.0.10", Some("127.0.0.3")).await, 400);
    assert_eq!(ask_as(&t, "127.0.0.10", None).await, 400, "the proxy itself is not in the network");
    let audit = t.app.store.audit_all(50).await.unwrap();
    let ips: Vec<String> = audit
        .iter()
        .filter(|e| e.kind == "device_policy_refused")
        .map(|e| serde_json::from_str::<Value>(&e.detail).unwrap()["requester_ips"][0].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(ips.iter().filter(|ip| *ip == "127.0.0.3").count(), 3, "refusals name the real requester: {ips:?}");
}

/// An account group of `[device_policy.groups]` lets its members approve, and nobody else.
#[tokio::test]
async fn only_members_of_the_clients_groups_approve() {
    let t = with_policy("[groups]\nfamily = [\"ann@example.com\"]\n[[client]]\nid = \"latchkey-cli\"\ngroups = [\"family\"]\n").await;
    t.register("ann@example.com").await;
    t.register("bob@example.com").await;
    let code: Value = ask(&t, "203.0.113.9").await.json().await.unwrap();
    let bob = s(&t.login("bob@example.com", "Laptop").await, "access_token");
    let r = approve(&t, &bob, &s(&code, "user_code")).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("family"), "the refusal names the group");
    let ann = s(&t.login("ann@example.com", "Laptop").await, "access_token");
    assert_eq!(approve(&t, &ann, &s(&code, "user_code")).await.status(), 200, "the request stayed open for a member");
    assert_eq!(refusals(&t).await, vec![refused("approval", "account")]);
}

#[tokio::test]
async fn only_the_allowed_accounts_and_fresh_sign_ins_approve() {
    let t = with_policy("max_sign_in_age_secs = 900\n[[client]]\nid = \"latchkey-cli\"\naccounts = [\"@example.com\"]\n").await;
    t.register("ann@example.com").await;
    t.register("bob@elsewhere.test").await;
    let ann = t.login("ann@example.com", "Phone").await;
    let bob = s(&t.login("bob@elsewhere.test", "Phone").await, "access_token");
    let d: Value = ask(&t, "203.0.113.9").await.json().await.unwrap();

    let r = approve(&t, &bob, &s(&d, "user_code")).await;
    assert_eq!(r.status(), 403);
    let text = r.text().await.unwrap();
    assert!(text.contains("bob@elsewhere.test may not sign devices in"), "{text}");
    // Refused, not bound: the right account can still approve it.
    let r = approve(&t, &s(&ann, "access_token"), &s(&d, "user_code")).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    assert_eq!(poll_from(&t, &s(&d, "device_code"), "203.0.113.9").await.status(), 200);

    // Ann's sign-in grows old; a refreshed access token keeps its age.
    t.clock.advance(901);
    let fresh: Value = t.refresh(&s(&ann, "refresh_token")).await.json().await.unwrap();
    let d: Value = ask(&t, "203.0.113.9").await.json().await.unwrap();
    let r = approve(&t, &s(&fresh, "access_token"), &s(&d, "user_code")).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("sign in again"));
    // Signing in again makes it fresh.
    let again = s(&t.login("ann@example.com", "Phone again").await, "access_token");
    assert_eq!(approve(&t, &again, &s(&d, "user_code")).await.status(), 200);
    assert_eq!(refusals(&t).await, vec![refused("approval", "account"), refused("approval", "sign_in_age")]);
}

/// Approved under one policy, collected under a tighter one (the operator changed it and the
/// next instance runs with it): the tokens are refused and the request is over. The same holds
/// for a device that collects from outside the allowed networks.
#[tokio::test]
async fn a_policy_tightened_after_the_approval_refuses_the_collection() {
    let t = with_policy("").await;
    t.register("ann@example.com").await;
    let phone = s(&t.login("ann@example.com", "Phone").await, "access_token");
    let d: Value = ask(&t, "203.0.113.9").await.json().await.unwrap();
    assert_eq!(approve(&t, &phone, &s(&d, "user_code")).await.status(), 200);

    let tight = policy("[[client]]\nid = \"latchkey-cli\"\nallow = false\n");
    let strict = spawn_beside(&t, move |s| {
        s.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        s.device_policy = tight;
    })
    .await;
    t.clock.advance(2);
    strict.clock.advance(2);
    let r = poll_from(&strict, &s(&d, "device_code"), "203.0.113.9").await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "access_denied");
    assert_eq!(refusals(&strict).await, vec![refused("collection", "client")]);
    // Ended: the lenient instance does not hand the tokens out either.
    t.clock.advance(2);
    assert_eq!(poll_from(&t, &s(&d, "device_code"), "203.0.113.9").await.json::<Value>().await.unwrap()["error"], "access_denied");

    let t = with_policy("networks = [\"203.0.113.0/24\"]\n").await;
    t.register("ann@example.com").await;
    let phone = s(&t.login("ann@example.com", "Phone").await, "access_token");
    let d: Value = ask(&t, "203.0.113.9").await.json().await.unwrap();
    assert_eq!(approve(&t, &phone, &s(&d, "user_code")).await.status(), 200);
    t.clock.advance(2);
    let r = poll_from(&t, &s(&d, "device_code"), "198.51.100.7").await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "access_denied");
    t.clock.advance(2);
    assert_eq!(poll_from(&t, &s(&d, "device_code"), "203.0.113.9").await.json::<Value>().await.unwrap()["error"], "access_denied");
    assert_eq!(refusals(&t).await, vec![refused("collection", "network")]);
}

#[tokio::test]
async fn report_only_audits_what_it_would_refuse_and_refuses_nothing() {
    let t = with_policy("report_only = true\ndefault = \"deny\"\n").await;
    t.register("ann@example.com").await;
    let phone = s(&t.login("ann@example.com", "Phone").await, "access_token");
    let r = ask(&t, "198.51.100.7").await;
    assert_eq!(r.status(), 200);
    let d: Value = r.json().await.unwrap();
    assert_eq!(approve(&t, &phone, &s(&d, "user_code")).await.status(), 200);
    t.clock.advance(2);
    assert_eq!(poll_from(&t, &s(&d, "device_code"), "198.51.100.7").await.status(), 200);
    let would = |stage: &str| ("device_policy_would_refuse".to_owned(), stage.to_owned(), "client".to_owned());
    assert_eq!(refusals(&t).await, vec![would("request"), would("approval"), would("collection")]);
}
