use crate::common::*;
use oauth2::basic::BasicClient;
use oauth2::{AuthUrl, ClientId, DeviceAuthorizationUrl, StandardDeviceAuthorizationResponse, TokenResponse, TokenUrl};
use serde_json::{Value, json};

async fn fast() -> TestApp {
    spawn_with(|s| s.device.interval_secs = 1).await
}

async fn signed_in(t: &TestApp, email: &str) -> String {
    t.register(email).await;
    s(&t.login(email, "Phone").await, "access_token")
}

#[tokio::test]
async fn the_oauth2_crate_runs_the_whole_device_flow() {
    let t = fast().await;
    let phone = signed_in(&t, "ann@example.com").await;
    let client = BasicClient::new(ClientId::new("latchkey-cli".into()))
        .set_auth_uri(AuthUrl::new(t.url("/unused")).unwrap())
        .set_token_uri(TokenUrl::new(t.url("/oauth/token")).unwrap())
        .set_device_authorization_url(DeviceAuthorizationUrl::new(t.url("/oauth/device_authorization")).unwrap())
        .set_auth_type(oauth2::AuthType::RequestBody);
    let http = oauth2::reqwest::ClientBuilder::new().redirect(oauth2::reqwest::redirect::Policy::none()).build().unwrap();
    let details: StandardDeviceAuthorizationResponse = client.exchange_device_code().request_async(&http).await.unwrap();
    let user_code = details.user_code().secret().clone();
    assert_eq!(user_code.len(), 9, "XXXX-XXXX");
    assert_eq!(details.verification_uri().as_str(), t.url("/device"));
    // Approve from the signed-in phone a moment after the device starts polling.
    let (t_http, url, code) = (t.http.clone(), t.url("/api/v1/device-grants/approve"), user_code.clone());
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        let r = t_http
            .post(url)
            .bearer_auth(phone)
            .json(&json!({ "user_code": code.to_lowercase(), "device_name": "Living-room TV" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    });
    let token =
        client.exchange_device_access_token(&details).request_async(&http, tokio::time::sleep, None).await.expect("tokens after approval");
    let jwks: Value = t.http.get(t.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let claims = crate::oauth::verify_independently(token.access_token().secret(), &jwks);
    assert_eq!(claims["amr"], json!(["device_code"]));
    let devices: Vec<Value> = t.get_auth("/api/v1/devices", token.access_token().secret()).await.json().await.unwrap();
    let tv = devices.iter().find(|d| d["current"] == true).unwrap();
    assert_eq!(tv["name"], "Living-room TV");
    assert_eq!(tv["authorized_by"], "device_code");
    assert!(tv["approved_by_device"].is_string());
    assert!(token.refresh_token().is_some());
}

#[tokio::test]
async fn every_rfc_8628_answer() {
    // The default 5 s interval: every step below is whole seconds away from an edge, so real time
    // passing between requests cannot change an answer.
    let t = spawn().await;
    let phone = signed_in(&t, "ann@example.com").await;
    let d = t.device_authorization().await;
    let dc = s(&d, "device_code");
    assert!(dc.len() >= 43, "256-bit device code");
    assert_eq!(d["interval"], 5);
    assert_eq!(d["expires_in"], 600);
    assert_eq!(d["verification_uri_complete"], format!("{}/device?user_code={}", t.base, s(&d, "user_code")));
    let err = |v: Value| v["error"].as_str().unwrap().to_owned();
    let r = t.poll(&dc).await;
    assert_eq!(r.status(), 400);
    assert_eq!(err(r.json().await.unwrap()), "authorization_pending");
    // Too soon: slow_down, and the interval grows by 5 s in the store (now 10 s).
    assert_eq!(err(t.poll(&dc).await.json().await.unwrap()), "slow_down");
    t.clock.advance(7);
    assert_eq!(err(t.poll(&dc).await.json().await.unwrap()), "slow_down", "7 s is enough for 5 s, not for 10 s");
    t.clock.advance(16);
    assert_eq!(err(t.poll(&dc).await.json().await.unwrap()), "authorization_pending");
    let r = t.post_json_auth("/api/v1/device-grants/approve", &phone, json!({ "user_code": s(&d, "user_code") })).await;
    assert_eq!(r.status(), 200);
    let facts: Value = r.json().await.unwrap();
    assert_eq!(facts["client_name"], "Latchkey CLI");
    assert_eq!(facts["ip"], "127.0.0.1");
    t.clock.advance(21);
    let r = t.poll(&dc).await;
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    assert!(s(&tokens, "refresh_token").starts_with("lk_rt_"));
    t.clock.advance(21);
    assert_eq!(err(t.poll(&dc).await.json().await.unwrap()), "invalid_grant", "tokens exactly once");

    let denied = t.device_authorization().await;
    let r = t.post_json_auth("/api/v1/device-grants/deny", &phone, json!({ "user_code": s(&denied, "user_code") })).await;
    assert_eq!(r.status(), 200);
    assert_eq!(err(t.poll(&s(&denied, "device_code")).await.json().await.unwrap()), "access_denied");

    let expired = t.device_authorization().await;
    t.clock.advance(601);
    assert_eq!(err(t.poll(&s(&expired, "device_code")).await.json().await.unwrap()), "expired_token");
    assert_eq!(err(t.poll("lk_dc_nonsense").await.json().await.unwrap()), "invalid_grant");
    // A device code names its request, but only the whole code is accepted: the id of a live
    // request with another secret, or a live code's secret under another request's id, is not.
    let live = s(&t.device_authorization().await, "device_code");
    let other = s(&t.device_authorization().await, "device_code");
    let (live_id, live_secret) = live.rsplit_once('.').unwrap();
    let (other_id, _) = other.rsplit_once('.').unwrap();
    let forged_secret = format!("{live_id}.{}", "A".repeat(43));
    let swapped_id = format!("{other_id}.{live_secret}");
    for forged in [forged_secret, swapped_id] {
        assert_eq!(err(t.poll(&forged).await.json().await.unwrap()), "invalid_grant", "{forged}");
    }
    assert_eq!(err(t.poll(&live).await.json().await.unwrap()), "authorization_pending");
}

#[tokio::test]
async fn approval_never_extends_the_expiry() {
    let t = fast().await;
    let phone = signed_in(&t, "ann@example.com").await;
    let d = t.device_authorization().await;
    t.clock.advance(590);
    let r = t.post_json_auth("/api/v1/device-grants/approve", &phone, json!({ "user_code": s(&d, "user_code") })).await;
    assert_eq!(r.status(), 200);
    t.clock.advance(11);
    let v: Value = t.poll(&s(&d, "device_code")).await.json().await.unwrap();
    assert_eq!(v["error"], "expired_token");
}

#[tokio::test]
async fn polling_abuse_ends_in_access_denied() {
    let t = spawn_with(|s| {
        s.device.interval_secs = 5;
        s.device.max_slow_downs = 3;
    })
    .await;
    let d = t.device_authorization().await;
    let dc = s(&d, "device_code");
    let mut last = String::new();
    for _ in 0..6 {
        last = t.poll(&dc).await.json::<Value>().await.unwrap()["error"].as_str().unwrap().to_owned();
    }
    assert_eq!(last, "access_denied");
    t.clock.advance(100);
    assert_eq!(t.poll(&dc).await.json::<Value>().await.unwrap()["error"], "access_denied", "stays denied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_polls_after_approval_give_one_token_response() {
    let t = fast().await;
    let phone = signed_in(&t, "ann@example.com").await;
    let d = t.device_authorization().await;
    t.post_json_auth("/api/v1/device-grants/approve", &phone, json!({ "user_code": s(&d, "user_code") })).await;
    let dc = s(&d, "device_code");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (http, url, dc) = (t.http.clone(), t.url("/oauth/token"), dc.clone());
            tokio::spawn(async move {
                let form =
                    [("grant_type", "urn:ietf:params:oauth:grant-type:device_code"), ("device_code", &dc), ("client_id", "latchkey-cli")];
                http.post(url).form(&form).send().await.unwrap().status().as_u16()
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            200 => ok += 1,
            400 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(t.count_rows("sessions WHERE device_id IN (SELECT id FROM devices WHERE authorized_by = 'device_code')").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn approve_and_deny_together_end_in_one_state_and_two_accounts_bind_once() {
    // Each round's loser meets a used code, which counts as a wrong one; this test is about
    // the race, so the back-off is out of its way.
    let t = spawn_with(|s| {
        s.device.interval_secs = 1;
        s.device.code_failures_per_account = 1000;
    })
    .await;
    let ann = signed_in(&t, "ann@example.com").await;
    let eve = signed_in(&t, "eve@example.com").await;
    for round in 0..10 {
        let d = t.device_authorization().await;
        let code = s(&d, "user_code");
        let (a, b) = if round % 2 == 0 { (ann.clone(), ann.clone()) } else { (ann.clone(), eve.clone()) };
        let deny_path = if round % 2 == 0 { "/api/v1/device-grants/deny" } else { "/api/v1/device-grants/approve" };
        let r1 = t.post_json_auth("/api/v1/device-grants/approve", &a, json!({ "user_code": code }));
        let r2 = t.post_json_auth(deny_path, &b, json!({ "user_code": code }));
        let (r1, r2) = tokio::join!(r1, r2);
        let statuses = [r1.status().as_u16(), r2.status().as_u16()];
        assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "round {round}: {statuses:?}");
        t.clock.advance(2);
        let poll: Value = t.poll(&s(&d, "device_code")).await.json().await.unwrap();
        let outcome = poll.get("access_token").map(|_| "tokens").or(poll["error"].as_str()).unwrap().to_owned();
        assert!(["tokens", "access_denied"].contains(&outcome.as_str()), "{poll}");
    }
}

#[tokio::test]
async fn typed_codes_are_normalised_but_never_guessed() {
    let t = fast().await;
    let phone = signed_in(&t, "ann@example.com").await;
    let d = t.device_authorization().await;
    let code = s(&d, "user_code");
    // Look-alikes are not mapped onto letters: 0 for O (a vowel, never used), Cyrillic В for B.
    for wrong in [code.replace('-', "0"), code.replacen(|c: char| c.is_ascii_uppercase(), "В", 1)] {
        let r = t.post_json_auth("/api/v1/device-grants/approve", &phone, json!({ "user_code": wrong })).await;
        assert_eq!(r.status(), 400);
    }
    let typed = format!(" {} ", code.to_lowercase().replace('-', " - "));
    let r = t.post_json_auth("/api/v1/device-grants/approve", &phone, json!({ "user_code": typed })).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn wrong_expired_and_used_codes_get_one_message_and_an_account_backoff() {
    let t = fast().await;
    let phone = signed_in(&t, "ann@example.com").await;
    let used = t.device_authorization().await;
    t.post_json_auth("/api/v1/device-grants/approve", &phone, json!({ "user_code": s(&used, "user_code") })).await;
    let expired = t.device_authorization().await;
    let mut bodies = Vec::new();
    for code in [s(&used, "user_code"), "BCDF-GHJK".into(), "!!".into()] {
        let r = t.post_json_auth("/api/v1/device-grants/approve", &phone, json!({ "user_code": code })).await;
        assert_eq!(r.status(), 400);
        bodies.push(r.json::<Value>().await.unwrap()["detail"].clone());
    }
    t.clock.advance(601);
    let phone = s(&t.login("ann@example.com", "Phone").await, "access_token");
    let r = t.post_json_auth("/api/v1/device-grants/approve", &phone, json!({ "user_code": s(&expired, "user_code") })).await;
    bodies.push(r.json::<Value>().await.unwrap()["detail"].clone());
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");
}

#[tokio::test]
async fn five_wrong_codes_make_the_account_wait() {
    let t = fast().await;
    let phone = signed_in(&t, "ann@example.com").await;
    for _ in 0..5 {
        let r = t.post_json_auth("/api/v1/device-grants/approve", &phone, json!({ "user_code": "BCDF-GHJK" })).await;
        assert_eq!(r.status(), 400);
    }
    // Even a right code waits now: guesses stop before they can be tried.
    let fresh = t.device_authorization().await;
    let r = t.post_json_auth("/api/v1/device-grants/approve", &phone, json!({ "user_code": s(&fresh, "user_code") })).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let audit = t.app.store.audit_all(100).await.unwrap();
    assert!(audit.iter().filter(|e| e.kind == "device_code_wrong").count() >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_requests_from_one_ip_meet_the_cap() {
    let t = spawn_with(|s| {
        s.device.create_per_ip_per_minute = 1_000_000;
        s.device.create_per_client_per_minute = 1_000_000;
        s.device.pending_per_ip = 50;
    })
    .await;
    let statuses = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::<u16, u32>::new()));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (http, url, statuses) = (t.http.clone(), t.url("/oauth/device_authorization"), statuses.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..625 {
                let st = http.post(&url).form(&[("client_id", "latchkey-cli")]).send().await.unwrap().status().as_u16();
                *statuses.lock().unwrap().entry(st).or_default() += 1;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let statuses = statuses.lock().unwrap().clone();
    assert_eq!(statuses.get(&200), Some(&50), "{statuses:?}");
    assert_eq!(statuses.get(&429), Some(&9950), "{statuses:?}");
    assert_eq!(t.count_rows("approvals").await, 50, "the store does not grow past the cap");
}

/// The server-wide cap counts device grants and QR logins together, holds under concurrent
/// requests, and frees up as requests end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_server_wide_cap_holds_and_frees_up_as_requests_end() {
    let t = spawn_with(|s| {
        s.device.create_per_ip_per_minute = 1_000_000;
        s.device.create_per_client_per_minute = 1_000_000;
        s.qr.create_per_ip_per_minute = 1_000_000;
        s.device.pending_per_ip = 0;
        s.device.pending_total = 5;
    })
    .await;
    let burst = |n: usize| {
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let http = t.http.clone();
                let (device, qr) = (t.url("/oauth/device_authorization"), t.url("/api/v1/qr-logins"));
                tokio::spawn(async move {
                    let r = if i % 2 == 0 { http.post(device).form(&[("client_id", "latchkey-cli")]) } else { http.post(qr) };
                    // Device grants answer 200, QR logins 201: both count as admitted.
                    match r.send().await.unwrap().status().as_u16() {
                        201 => 200,
                        other => other,
                    }
                })
            })
            .collect();
        async move {
            let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
            for task in tasks {
                *statuses.entry(task.await.unwrap()).or_default() += 1;
            }
            statuses
        }
    };
    let statuses = burst(20).await;
    assert_eq!(statuses, [(200, 5), (429, 15)].into(), "{statuses:?}");
    assert_eq!(t.count_rows("approvals").await, 5, "the store does not grow past the cap");
    // Ended requests no longer count: once all have expired, the next ones are admitted.
    t.clock.advance(601);
    let statuses = burst(8).await;
    assert_eq!(statuses, [(200, 5), (429, 3)].into(), "{statuses:?}");
}

#[tokio::test]
async fn creation_is_limited_per_ip_and_per_client() {
    let t = spawn_with(|s| s.device.create_per_ip_per_minute = 3).await;
    for _ in 0..3 {
        t.device_authorization().await;
    }
    let r = t.post_form("/oauth/device_authorization", &[("client_id", "latchkey-cli")]).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let r = t.post_form("/oauth/device_authorization", &[("client_id", "nope")]).await;
    assert_eq!(r.status(), 401);
    let m: Value = t.http.get(t.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();
    assert_eq!(m["device_authorization_endpoint"], t.url("/oauth/device_authorization"));
    assert!(m["grant_types_supported"].as_array().unwrap().contains(&"urn:ietf:params:oauth:grant-type:device_code".into()));
}

#[tokio::test]
async fn the_device_page_approves_only_on_post_after_showing_the_facts() {
    let t = fast().await;
    t.register("ann@example.com").await;
    let d = t.device_authorization().await;
    let code = s(&d, "user_code");
    // Not signed in: sent to log in, and brought back with the code still filled in.
    let r = t.http.get(t.url(&format!("/device?user_code={code}"))).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], format!("/login?next=/device?user_code={code}"));
    let login = t.http.get(t.url("/login")).send().await.unwrap().text().await.unwrap();
    let csrf = login.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let r = t
        .post_form(
            "/login",
            &[("email", "ann@example.com"), ("password", PASSWORD), ("csrf", &csrf), ("next", &format!("/device?user_code={code}"))],
        )
        .await;
    assert_eq!(r.headers()["location"], format!("/device?user_code={code}"));
    let page = t.http.get(t.url(&format!("/device?user_code={code}"))).send().await.unwrap().text().await.unwrap();
    assert!(page.contains(&format!("value=\"{code}\"")), "the code is filled in");
    assert_eq!(
        t.poll(&s(&d, "device_code")).await.json::<Value>().await.unwrap()["error"],
        "authorization_pending",
        "GET approved nothing"
    );
    let confirm = t.post_form("/device", &[("user_code", &code), ("csrf", &csrf)]).await.text().await.unwrap();
    assert!(confirm.contains("Is this device in front of you?") && confirm.contains("Latchkey CLI") && confirm.contains("127.0.0.1"));
    assert_eq!(t.post_form("/device/decision", &[("user_code", &code), ("csrf", "forged"), ("decision", "approve")]).await.status(), 403);
    let done =
        t.post_form("/device/decision", &[("user_code", &code), ("csrf", &csrf), ("decision", "approve"), ("device_name", "TV")]).await;
    assert_eq!(done.status(), 200);
    t.clock.advance(2);
    assert_eq!(t.poll(&s(&d, "device_code")).await.status(), 200);
}

/// Every device grant audits its creation, decision and collection the same way, and an
/// approval dies with the device that gave it: revoked before the poll collects, the new device
/// gets `access_denied`, never tokens.
#[tokio::test]
async fn the_grant_is_audited_at_each_step_and_dies_with_its_approver() {
    let t = spawn_with(|s| s.device.interval_secs = 1).await;
    let phone = signed_in(&t, "ann@example.com").await;
    let d = t.device_authorization().await;
    let r = t.post_json_auth("/api/v1/device-grants/approve", &phone, json!({ "user_code": s(&d, "user_code") })).await;
    assert_eq!(r.status(), 200);
    t.clock.advance(2);
    assert_eq!(t.poll(&s(&d, "device_code")).await.status(), 200);
    let audit = t.app.store.audit_all(100).await.unwrap();
    let kinds: Vec<&str> = audit.iter().map(|e| e.kind.as_str()).collect();
    for k in ["device_code_issued", "device_code_approved", "device_code_collected"] {
        assert_eq!(kinds.iter().filter(|x| **x == k).count(), 1, "{k} once: {kinds:?}");
    }
    let collected = audit.iter().find(|e| e.kind == "device_code_collected").unwrap();
    let detail: Value = serde_json::from_str(&collected.detail).unwrap();
    assert_eq!(detail["flow"], "device_code");
    assert!(
        audit.iter().any(|e| e.kind == "device_added" && e.device_id.is_some() && e.device_id == collected.device_id),
        "the collection names the device it added"
    );

    let d = t.device_authorization().await;
    let r = t.post_json_auth("/api/v1/device-grants/approve", &phone, json!({ "user_code": s(&d, "user_code") })).await;
    assert_eq!(r.status(), 200);
    let me: Vec<Value> = t.get_auth("/api/v1/devices", &phone).await.json().await.unwrap();
    let own = me.iter().find(|x| x["current"] == true).unwrap();
    let r = t.http.delete(t.url(&format!("/api/v1/devices/{}", s(own, "id")))).bearer_auth(&phone).send().await.unwrap();
    assert_eq!(r.status(), 204);
    t.clock.advance(2);
    assert_eq!(t.poll(&s(&d, "device_code")).await.json::<Value>().await.unwrap()["error"], "access_denied");
}

/// The approval says whether the device asking is on the approver's network; when it is not,
/// approving needs the approver to say the device is in front of them (a phished code is
/// typed far away), and denying never does.
#[tokio::test]
async fn approving_a_device_on_another_network_needs_in_front_of_me() {
    let t = spawn_with(|s| s.server.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]).await;
    t.register("ann@example.com").await;
    let phone = s(&t.login("ann@example.com", "Phone").await, "access_token");
    let approve = |code: String, xff: &'static str, body: Value| {
        let mut body = body;
        body["user_code"] = json!(code);
        t.http.post(t.url("/api/v1/device-grants/approve")).bearer_auth(&phone).header("x-forwarded-for", xff).json(&body).send()
    };
    // Asked from 203.0.113.9, approved from 203.0.113.77: one /24, no tick needed.
    let near =
        t.http.post(t.url("/oauth/device_authorization")).header("x-forwarded-for", "203.0.113.9").form(&[("client_id", "latchkey-cli")]);
    let near: Value = near.send().await.unwrap().json().await.unwrap();
    let r = approve(s(&near, "user_code"), "203.0.113.77", json!({})).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["same_network"], true);

    // Asked from 198.51.100.7: refused without the tick, saying why; approved with it.
    let far =
        t.http.post(t.url("/oauth/device_authorization")).header("x-forwarded-for", "198.51.100.7").form(&[("client_id", "latchkey-cli")]);
    let far: Value = far.send().await.unwrap().json().await.unwrap();
    let r = approve(s(&far, "user_code"), "203.0.113.77", json!({})).await.unwrap();
    assert_eq!(r.status(), 400);
    let text = r.text().await.unwrap();
    assert!(text.contains("in_front_of_me") && text.contains("198.51.100.7"), "{text}");
    let r = approve(s(&far, "user_code"), "203.0.113.77", json!({ "in_front_of_me": true })).await.unwrap();
    assert_eq!(r.status(), 200);
    let facts: Value = r.json().await.unwrap();
    assert_eq!((facts["same_network"].clone(), facts["ip"].clone()), (json!(false), json!("198.51.100.7")));

    // Denying a far request needs no tick.
    let far2 =
        t.http.post(t.url("/oauth/device_authorization")).header("x-forwarded-for", "198.51.100.8").form(&[("client_id", "latchkey-cli")]);
    let far2: Value = far2.send().await.unwrap().json().await.unwrap();
    let r = t
        .http
        .post(t.url("/api/v1/device-grants/deny"))
        .bearer_auth(&phone)
        .header("x-forwarded-for", "203.0.113.77")
        .json(&json!({ "user_code": s(&far2, "user_code") }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
