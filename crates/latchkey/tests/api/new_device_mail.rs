//! "A new device signed in" mail over a real SMTP conversation, for each of the six ways in
//! (password, device grant, pairing, QR, passkey, upstream), and its "This wasn't me" link:
//! inert on GET, signs out exactly that device on POST, works once.

use crate::common::passkey::SoftKey;
use crate::common::smtp::Sink;
use crate::common::upstream::{GitHubStandIn, browser, follow, location};
use crate::common::*;
use latchkey::config::{UpstreamKind, UpstreamSettings};
use serde_json::{Value, json};

async fn with_mail(tweak: impl FnOnce(&mut latchkey::config::Settings) + Send + 'static) -> (TestApp, Sink) {
    let (sink, port) = Sink::start().await;
    let t = spawn_localhost(move |s| {
        s.mail.smtp_url = format!("smtp://127.0.0.1:{port}");
        s.device.interval_secs = 1;
        // Addresses count as verified at once here; tests/api/email_links.rs has verification.
        s.accounts.verify_email = false;
        tweak(s);
    })
    .await;
    (t, sink)
}

/// The "This wasn't me" link in a mail.
fn link_in(mail: &str) -> String {
    crate::common::smtp::link_in(mail, "/wasnt-me/")
}

fn subject(mail: &str) -> &str {
    mail.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap_or("")
}

async fn wait_for(sink: &Sink, n: usize) -> String {
    let m = sink.message(n).await;
    // No further mail is on its way (each step below sends exactly one).
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!(sink.messages.lock().unwrap().len(), n, "exactly {n} mails so far");
    m
}

/// Each way in sends one mail to the account's address, naming the device and how it came in.
#[tokio::test]
async fn every_way_in_mails_the_owner() {
    let gh = GitHubStandIn::start("gh-secret", 4242, json!([{ "email": "octo@example.com", "primary": true, "verified": true }])).await;
    let web = gh.url.clone();
    let (t, sink) = with_mail(move |s| {
        s.upstreams = vec![UpstreamSettings {
            id: "github".into(),
            kind: UpstreamKind::Github,
            issuer: web.clone(),
            client_id: "Iv1.standin".into(),
            client_secret: "gh-secret".into(),
            scopes: vec!["read:user".into(), "user:email".into()],
            display_name: "GitHub".into(),
            auto_create: true,
            authorization_endpoint: format!("{web}/login/oauth/authorize"),
            token_endpoint: format!("{web}/login/oauth/access_token"),
            api_url: format!("{web}/api/v3"),
        }]
    })
    .await;
    t.register("ann@example.com").await;
    assert!(sink.messages.lock().unwrap().is_empty(), "registering adds no device");

    // 1. Password.
    let laptop = t.login("ann@example.com", "Laptop").await;
    let at = s(&laptop, "access_token");
    let m = wait_for(&sink, 1).await;
    assert!(m.contains("To: ann@example.com"), "{m}");
    assert_eq!(subject(&m), "New sign-in to your account: Laptop");
    assert!(m.contains("with your password") && m.contains("127.0.0.1"), "{m}");

    // 2. Device grant.
    let d = t.device_authorization().await;
    let r = t.post_json_auth("/api/v1/device-grants/approve", &at, json!({ "user_code": s(&d, "user_code"), "device_name": "TV" })).await;
    assert_eq!(r.status(), 200);
    t.clock.advance(2);
    assert_eq!(t.poll(&s(&d, "device_code")).await.status(), 200);
    let m = wait_for(&sink, 2).await;
    assert!(m.contains("with a device code approved on your device \"Laptop\""), "{m}");

    // 3. Pairing.
    let code: Value = t.http.post(t.url("/api/v1/pairing-codes")).bearer_auth(&at).send().await.unwrap().json().await.unwrap();
    let red: Value = t
        .post_json("/api/v1/pairing-codes/redeem", json!({ "code": code["code"], "device": { "name": "Tablet" } }))
        .await
        .json()
        .await
        .unwrap();
    let approve = t.http.post(t.url(&format!("/api/v1/pairing-codes/{}/approve", s(&code, "id")))).bearer_auth(&at).send().await.unwrap();
    assert_eq!(approve.status(), 200);
    t.clock.advance(2);
    assert_eq!(t.poll(&s(&red, "device_code")).await.status(), 200);
    let m = wait_for(&sink, 3).await;
    assert!(m.contains("with a pairing code approved on your device \"Laptop\"") && m.contains("Tablet"), "{m}");

    // 4. QR login.
    let qr: Value = t.http.post(t.url("/api/v1/qr-logins")).send().await.unwrap().json().await.unwrap();
    let id = s(&qr, "id");
    t.get_auth(&format!("/api/v1/qr-logins/{id}"), &at).await;
    let r = t.post_json_auth(&format!("/api/v1/qr-logins/{id}/approve"), &at, json!({ "match_code": qr["match_code"] })).await;
    assert!(r.status().is_success());
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
    let r = t.post_json("/api/v1/handoff", json!({ "handoff_code": st["handoff_code"], "secret": qr["secret"] })).await;
    assert_eq!(r.status(), 200);
    let m = wait_for(&sink, 4).await;
    assert!(m.contains("by a QR code approved on your device \"Laptop\""), "{m}");

    // 5. Passkey.
    let mut key = SoftKey::new(&t.base);
    let started: Value = t.post_json_auth("/api/v1/passkeys/register/start", &at, json!({ "name": "Key" })).await.json().await.unwrap();
    let credential = key.register(&started["options"]).await;
    let r = t
        .post_json_auth(
            "/api/v1/passkeys/register/finish",
            &at,
            json!({ "challenge_id": started["challenge_id"], "credential": credential }),
        )
        .await;
    assert!(r.status().is_success());
    let started: Value = t.post_json("/api/v1/passkeys/login/start", json!({})).await.json().await.unwrap();
    let credential = key.sign(&started["options"]).await;
    let r = t
        .post_json(
            "/api/v1/passkeys/login/finish",
            json!({ "challenge_id": started["challenge_id"], "credential": credential, "device": { "name": "Desk" } }),
        )
        .await;
    assert_eq!(r.status(), 200);
    let m = wait_for(&sink, 5).await;
    assert!(m.contains("with a passkey") && m.contains("Desk"), "{m}");

    // 6. Upstream: a new account made by signing in with GitHub, its browser the new device.
    let b = browser();
    let r = b.get(t.url("/login/upstream/github")).send().await.unwrap();
    let callback = follow(&b, location(&r), &t.base).await.unwrap();
    assert_eq!(b.get(callback).send().await.unwrap().status(), 303);
    let m = wait_for(&sink, 6).await;
    assert!(m.contains("To: octo@example.com") && m.contains("through a linked identity provider"), "{m}");
}

/// The link: GET shows the device and changes nothing; POST signs out exactly that device (its
/// tokens die, the others' live on); a second POST is refused; the audit log says what happened.
#[tokio::test]
async fn this_wasnt_me_signs_out_exactly_that_device_once() {
    let (t, sink) = with_mail(|_| {}).await;
    t.register("ann@example.com").await;
    let laptop = t.login("ann@example.com", "Laptop").await;
    wait_for(&sink, 1).await;
    let intruder = t.login("ann@example.com", "Intruder").await;
    let link = link_in(&wait_for(&sink, 2).await);
    assert!(link.starts_with(&t.base), "{link}");

    let page = browser();
    for _ in 0..2 {
        let r = page.get(&link).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let html = r.text().await.unwrap();
        assert!(html.contains("Intruder") && html.contains("This wasn't me"), "{html}");
    }
    assert_eq!(t.get_auth("/api/v1/devices", &s(&intruder, "access_token")).await.status(), 200, "GET is inert");

    // The form needs its CSRF field (a cross-site POST cannot sign devices out).
    assert_eq!(page.post(&link).form(&[("csrf", "forged")]).send().await.unwrap().status(), 403);
    let html = page.get(&link).send().await.unwrap().text().await.unwrap();
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let r = page.post(&link).form(&[("csrf", csrf.as_str())]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let done = r.text().await.unwrap();
    assert!(done.contains("That device is signed out") && done.contains("Change your password"), "{done}");

    assert_eq!(t.get_auth("/api/v1/devices", &s(&intruder, "access_token")).await.status(), 401);
    assert_eq!(t.refresh(&s(&intruder, "refresh_token")).await.status(), 400);
    let mine: Vec<Value> = t.get_auth("/api/v1/devices", &s(&laptop, "access_token")).await.json().await.unwrap();
    assert_eq!(mine.iter().map(|d| s(d, "name")).collect::<Vec<_>>(), ["Laptop"], "only the intruder went");

    // Used: neither the page nor the button works again.
    assert_eq!(page.get(&link).send().await.unwrap().status(), 400);
    assert_eq!(page.post(&link).form(&[("csrf", csrf.as_str())]).send().await.unwrap().status(), 400);
    assert_eq!(page.get(t.url("/wasnt-me/lk_nd_made-up")).send().await.unwrap().status(), 400);
    let audit = t.app.store.audit_all(50).await.unwrap();
    let disowned: Vec<_> = audit.iter().filter(|e| e.kind == "device_disowned").collect();
    assert_eq!(disowned.len(), 1);
    assert_eq!(disowned[0].device_id.as_deref(), Some(s(&intruder, "device_id").as_str()));
    assert_eq!(t.count_rows("device_alerts WHERE used_at IS NOT NULL").await, 1);
}

/// Twenty clicks on one link at once: one signs the device out, the rest are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_clicks_use_the_link_once() {
    let (t, sink) = with_mail(|_| {}).await;
    t.register("ann@example.com").await;
    t.login("ann@example.com", "Intruder").await;
    let link = link_in(&wait_for(&sink, 1).await);
    let page = browser();
    let html = page.get(&link).send().await.unwrap().text().await.unwrap();
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (page, link, csrf) = (page.clone(), link.clone(), csrf.clone());
            tokio::spawn(async move { page.post(&link).form(&[("csrf", csrf.as_str())]).send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 400).count(), 19, "{statuses:?}");
    let disowned = t.app.store.audit_all(50).await.unwrap().into_iter().filter(|e| e.kind == "device_disowned").count();
    assert_eq!(disowned, 1);
}

/// The account's own choice, on the API (and /account), and the operator's switch.
#[tokio::test]
async fn the_account_and_the_operator_can_turn_it_off() {
    let (t, sink) = with_mail(|_| {}).await;
    t.register("ann@example.com").await;
    let at = s(&t.login("ann@example.com", "Laptop").await, "access_token");
    wait_for(&sink, 1).await;
    let choice: Value = t.get_auth("/api/v1/account/new-device-mail", &at).await.json().await.unwrap();
    assert_eq!(choice, json!({ "new_device_mail": true, "sent_by_server": true }));
    let r = t
        .http
        .put(t.url("/api/v1/account/new-device-mail"))
        .bearer_auth(&at)
        .json(&json!({ "new_device_mail": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["new_device_mail"], false);
    t.login("ann@example.com", "Phone").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(sink.messages.lock().unwrap().len(), 1, "no mail after turning it off");
    let r = t
        .http
        .put(t.url("/api/v1/account/new-device-mail"))
        .bearer_auth(&at)
        .json(&json!({ "new_device_mail": "no" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);

    let (t, sink) = with_mail(|s| s.mail.new_device_mail = false).await;
    t.register("ann@example.com").await;
    let at = s(&t.login("ann@example.com", "Laptop").await, "access_token");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(sink.messages.lock().unwrap().is_empty());
    let choice: Value = t.get_auth("/api/v1/account/new-device-mail", &at).await.json().await.unwrap();
    assert_eq!(choice["sent_by_server"], false);
}
