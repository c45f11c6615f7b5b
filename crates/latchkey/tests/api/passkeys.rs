//! Passkeys over the API, with a software authenticator (1Password's passkey-client and
//! passkey-authenticator) against a real server at http://localhost:<port>: registration,
//! sign-in with no password and no second factor, refusals that store nothing, counters,
//! removal, and the step-up approvals can ask for.

use crate::common::passkey::SoftKey;
use crate::common::{TestApp, s, spawn_localhost};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};

fn claims_of(jwt: &str) -> Value {
    serde_json::from_slice(&B64.decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

async fn audit_kinds(t: &TestApp) -> Vec<(String, Value)> {
    t.app.store.audit_all(200).await.unwrap().into_iter().map(|a| (a.kind, serde_json::from_str(&a.detail).unwrap())).collect()
}

/// Adds a passkey to the account behind `at` with `key`; answers the finish response.
async fn add_passkey(t: &TestApp, at: &str, key: &mut SoftKey, name: &str) -> reqwest::Response {
    let r = t.post_json_auth("/api/v1/passkeys/register/start", at, json!({ "name": name })).await;
    assert_eq!(r.status(), 200, "start: {}", r.text().await.unwrap());
    let started: Value = r.json().await.unwrap();
    let credential = key.register(&started["options"]).await;
    t.post_json_auth("/api/v1/passkeys/register/finish", at, json!({ "challenge_id": started["challenge_id"], "credential": credential }))
        .await
}

async fn sign_in_start(t: &TestApp) -> Value {
    let r = t.post_json("/api/v1/passkeys/login/start", json!({})).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

async fn sign_in_finish(t: &TestApp, challenge_id: &Value, credential: Value) -> reqwest::Response {
    t.post_json(
        "/api/v1/passkeys/login/finish",
        json!({ "challenge_id": challenge_id, "credential": credential, "device": { "name": "Phone" } }),
    )
    .await
}

/// A full passkey sign-in; answers the token endpoint's response.
async fn sign_in(t: &TestApp, key: &mut SoftKey) -> reqwest::Response {
    let started = sign_in_start(t).await;
    let credential = key.sign(&started["options"]).await;
    sign_in_finish(t, &started["challenge_id"], credential).await
}

async fn device_count(t: &TestApp, at: &str) -> usize {
    let list: Value = t.get_auth("/api/v1/devices", at).await.json().await.unwrap();
    list.as_array().unwrap().len()
}

async fn passkey_count(t: &TestApp, at: &str) -> usize {
    let list: Value = t.get_auth("/api/v1/passkeys", at).await.json().await.unwrap();
    list.as_array().unwrap().len()
}

#[tokio::test]
async fn a_passkey_signs_in_with_no_password_and_skips_the_second_factor() {
    let t = spawn_localhost(|_| {}).await;
    let (_, _, at) = crate::mfa::with_totp(&t).await;
    let mut key = SoftKey::new(&t.base);
    let r = add_passkey(&t, &at, &mut key, "Work laptop").await;
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let added: Value = r.json().await.unwrap();
    assert_eq!(added["name"], "Work laptop");
    assert!(added["last_used_at"].is_null());

    // No e-mail, no password, no TOTP code: the passkey is the whole sign-in.
    let r = sign_in(&t, &mut key).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let tokens: Value = r.json().await.unwrap();
    let claims = claims_of(&s(&tokens, "access_token"));
    let amr: Vec<String> = serde_json::from_value(claims["amr"].clone()).unwrap();
    assert!(amr == ["hwk", "user"] || amr == ["swk", "user"], "RFC 8176 values, got {amr:?}");
    assert_eq!(amr[0], if added["backup_eligible"] == true { "swk" } else { "hwk" });

    // It is one more device on the account, listed like every other, and the passkey's use shows.
    let pk_at = s(&tokens, "access_token");
    let devices: Value = t.get_auth("/api/v1/devices", &pk_at).await.json().await.unwrap();
    let phone = devices.as_array().unwrap().iter().find(|d| d["name"] == "Phone").expect("the new device is listed");
    assert_eq!(phone["authorized_by"], "passkey");
    let list: Value = t.get_auth("/api/v1/passkeys", &pk_at).await.json().await.unwrap();
    assert!(list[0]["last_used_at"].is_i64());
    let kinds = audit_kinds(&t).await;
    assert!(kinds.iter().any(|(k, d)| k == "passkey_added" && d["name"] == "Work laptop"));
    assert!(kinds.iter().any(|(k, d)| k == "login_succeeded" && d["method"] == "passkey"));

    // The same authenticator cannot register the same credential twice (it is excluded).
    let started: Value = t.post_json_auth("/api/v1/passkeys/register/start", &at, json!({})).await.json().await.unwrap();
    let excluded = started["options"]["publicKey"]["excludeCredentials"].as_array().unwrap();
    assert_eq!(excluded.len(), 1, "the account's passkey is excluded");
}

#[tokio::test]
async fn every_bad_ceremony_is_refused_with_a_4xx_and_stores_nothing() {
    let t = spawn_localhost(|_| {}).await;
    t.register("ann@example.com").await;
    let at = s(&t.login("ann@example.com", "Laptop").await, "access_token");

    // User verification missing at registration: the options altered on the way so that the
    // authenticator is not asked to verify; the server requires it and stores nothing.
    let mut lazy = SoftKey::new(&t.base);
    let started: Value = t.post_json_auth("/api/v1/passkeys/register/start", &at, json!({})).await.json().await.unwrap();
    let mut options = started["options"].clone();
    assert_eq!(options["publicKey"]["authenticatorSelection"]["userVerification"], "required");
    options["publicKey"]["authenticatorSelection"]["userVerification"] = json!("discouraged");
    let credential = lazy.register(&options).await;
    let r = t
        .post_json_auth(
            "/api/v1/passkeys/register/finish",
            &at,
            json!({ "challenge_id": started["challenge_id"], "credential": credential }),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(passkey_count(&t, &at).await, 0);

    // Another origin (the same host on another port) and another site: refused.
    let port = t.base.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let mut elsewhere = SoftKey::new(&format!("http://localhost:{}", port.wrapping_add(1).max(1024)));
    assert_eq!(add_passkey(&t, &at, &mut elsewhere, "elsewhere").await.status(), 400);
    let started: Value = t.post_json_auth("/api/v1/passkeys/register/start", &at, json!({})).await.json().await.unwrap();
    let mut options = started["options"].clone();
    // A phishing site relaying our challenge: its own origin and relying party.
    options["publicKey"]["rp"]["id"] = json!("latchkey-login.example");
    let mut other_rp = SoftKey::new("https://latchkey-login.example");
    let credential = other_rp.register(&options).await;
    let r = t
        .post_json_auth(
            "/api/v1/passkeys/register/finish",
            &at,
            json!({ "challenge_id": started["challenge_id"], "credential": credential }),
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(passkey_count(&t, &at).await, 0, "nothing half-registered");

    // A registration answered twice: the second finds its challenge gone.
    let mut key = SoftKey::new(&t.base);
    let started: Value = t.post_json_auth("/api/v1/passkeys/register/start", &at, json!({})).await.json().await.unwrap();
    let credential = key.register(&started["options"]).await;
    let body = json!({ "challenge_id": started["challenge_id"], "credential": credential });
    assert_eq!(t.post_json_auth("/api/v1/passkeys/register/finish", &at, body.clone()).await.status(), 201);
    assert_eq!(t.post_json_auth("/api/v1/passkeys/register/finish", &at, body).await.status(), 400);
    assert_eq!(passkey_count(&t, &at).await, 1);

    // A replayed sign-in answer: refused the second time.
    let started = sign_in_start(&t).await;
    let credential = key.sign(&started["options"]).await;
    assert_eq!(sign_in_finish(&t, &started["challenge_id"], credential.clone()).await.status(), 200);
    assert_eq!(sign_in_finish(&t, &started["challenge_id"], credential).await.status(), 400, "a challenge answers once");

    // An expired challenge: refused.
    let started = sign_in_start(&t).await;
    let credential = key.sign(&started["options"]).await;
    t.clock.advance(301);
    assert_eq!(sign_in_finish(&t, &started["challenge_id"], credential).await.status(), 400);

    // The answer to one challenge presented for another: refused.
    let (first, second) = (sign_in_start(&t).await, sign_in_start(&t).await);
    let credential = key.sign(&first["options"]).await;
    assert_eq!(sign_in_finish(&t, &second["challenge_id"], credential).await.status(), 400);

    // User verification missing at sign-in: a client that asks the authenticator not to verify
    // (the options altered on the way) gets an assertion without the UV flag, which is refused.
    let started = sign_in_start(&t).await;
    let mut options = started["options"].clone();
    options["publicKey"]["userVerification"] = json!("discouraged");
    let credential = key.sign(&options).await;
    let r = sign_in_finish(&t, &started["challenge_id"], credential).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("verif"));

    // Nonsense is a 4xx too, never a 5xx.
    let r = sign_in_finish(&t, &json!("nope"), json!({ "id": "x", "rawId": "eA", "type": "public-key", "response": {} })).await;
    assert!(r.status().is_client_error(), "{}", r.status());
    let r = t.post_json("/api/v1/passkeys/login/finish", json!({ "challenge_id": "x" })).await;
    assert!(r.status().is_client_error());
}

#[tokio::test]
async fn a_sign_in_from_another_origin_or_relying_party_and_a_late_registration_are_refused() {
    let t = spawn_localhost(|_| {}).await;
    t.register("ann@example.com").await;
    let at = s(&t.login("ann@example.com", "Laptop").await, "access_token");

    // A registration answered after its challenge expired (5 minutes): refused, nothing stored.
    let mut key = SoftKey::new(&t.base);
    let started: Value = t.post_json_auth("/api/v1/passkeys/register/start", &at, json!({})).await.json().await.unwrap();
    let credential = key.register(&started["options"]).await;
    t.clock.advance(301);
    let at = s(&t.login("ann@example.com", "Laptop").await, "access_token");
    let body = json!({ "challenge_id": started["challenge_id"], "credential": credential });
    assert_eq!(t.post_json_auth("/api/v1/passkeys/register/finish", &at, body).await.status(), 400);
    assert_eq!(passkey_count(&t, &at).await, 0, "nothing half-registered");
    assert_eq!(add_passkey(&t, &at, &mut key, "key").await.status(), 201);
    let before = device_count(&t, &at).await;

    // The registered passkey, used from another origin (the same host on another port).
    let ours = key.origin.clone();
    let port = ours.port().unwrap();
    key.origin = url::Url::parse(&format!("http://localhost:{}", port.wrapping_add(1).max(1024))).unwrap();
    let started = sign_in_start(&t).await;
    let credential = key.sign(&started["options"]).await;
    assert_eq!(sign_in_finish(&t, &started["challenge_id"], credential).await.status(), 400, "another origin");
    key.origin = ours;

    // A phishing site relaying our challenge under its own relying party id, with a copy of our
    // credential made to answer there: the assertion names the wrong RP (and origin).
    let mut stolen = key.snapshot();
    stolen.as_mut().expect("a credential").rp_id = "latchkey-login.example".into();
    let mut phisher = SoftKey::new("https://latchkey-login.example");
    phisher.restore(stolen);
    let started = sign_in_start(&t).await;
    let mut options = started["options"].clone();
    options["publicKey"]["rpId"] = json!("latchkey-login.example");
    let credential = phisher.sign(&options).await;
    assert_eq!(credential["id"], key.snapshot().map(|p| B64.encode(&*p.credential_id)).unwrap().as_str(), "our credential");
    assert_eq!(sign_in_finish(&t, &started["challenge_id"], credential).await.status(), 400, "another relying party");

    // No sign-in came of those; the passkey still works where it belongs.
    assert_eq!(device_count(&t, &at).await, before, "no device was added by a refused ceremony");
    assert_eq!(sign_in(&t, &mut key).await.status(), 200);
}

#[tokio::test]
async fn a_counter_going_backwards_is_refused_and_audited() {
    let t = spawn_localhost(|_| {}).await;
    t.register("ann@example.com").await;
    let at = s(&t.login("ann@example.com", "Laptop").await, "access_token");
    let mut key = SoftKey::new(&t.base);
    assert_eq!(add_passkey(&t, &at, &mut key, "key").await.status(), 201);
    let copy = key.snapshot();
    assert_eq!(sign_in(&t, &mut key).await.status(), 200);
    assert_eq!(sign_in(&t, &mut key).await.status(), 200);
    // A clone made before those two sign-ins: its counter is behind the server's.
    key.restore(copy);
    let r = sign_in(&t, &mut key).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("counter"));
    assert!(audit_kinds(&t).await.iter().any(|(k, _)| k == "passkey_counter_regressed"));
}

#[tokio::test]
async fn another_accounts_credential_is_refused() {
    let t = spawn_localhost(|_| {}).await;
    t.register("ann@example.com").await;
    t.register("bob@example.com").await;
    let ann = s(&t.login("ann@example.com", "Laptop").await, "access_token");
    let bob = s(&t.login("bob@example.com", "Laptop").await, "access_token");
    let mut ann_key = SoftKey::new(&t.base);
    assert_eq!(add_passkey(&t, &ann, &mut ann_key, "ann's").await.status(), 201);
    let bob_id = s(&claims_of(&bob), "sub");

    // Ann's passkey, its (unsigned) user handle rewritten to name Bob's account.
    let started = sign_in_start(&t).await;
    let mut credential = ann_key.sign(&started["options"]).await;
    credential["response"]["userHandle"] = json!(B64.encode(uuid::Uuid::parse_str(&bob_id).unwrap().as_bytes()));
    let r = sign_in_finish(&t, &started["challenge_id"], credential).await;
    assert_eq!(r.status(), 400);
    assert!(audit_kinds(&t).await.iter().any(|(k, d)| k == "passkey_login_failed" && d["reason"] == "credential_of_another_account"));

    // Bob cannot step up with Ann's passkey either.
    let r = t.post_json_auth("/api/v1/passkeys/step-up/start", &bob, json!({})).await;
    assert_eq!(r.status(), 409, "bob has no passkey");
}

#[tokio::test]
async fn removing_passkeys_keeps_a_way_in_and_can_end_their_sessions() {
    let t = spawn_localhost(|_| {}).await;
    // A passwordless account, made from a device: a passkey is its only sign-in.
    let r = t.post_json("/api/v1/accounts", json!({ "device": { "name": "Tablet" } })).await;
    assert_eq!(r.status(), 201);
    let at = s(&r.json().await.unwrap(), "access_token");
    let mut key = SoftKey::new(&t.base);
    assert_eq!(add_passkey(&t, &at, &mut key, "only").await.status(), 201);
    let list: Value = t.get_auth("/api/v1/passkeys", &at).await.json().await.unwrap();
    let only = s(&list[0], "id");
    let r = t.http.delete(t.url(&format!("/api/v1/passkeys/{only}"))).bearer_auth(&at).send().await.unwrap();
    assert_eq!(r.status(), 409, "the last way in stays");

    // A second passkey: now the first can go, and the sessions it opened with it.
    let mut second = SoftKey::new(&t.base);
    assert_eq!(add_passkey(&t, &at, &mut second, "second").await.status(), 201);
    let via_first = s(&sign_in(&t, &mut key).await.json().await.unwrap(), "access_token");
    assert_eq!(t.get_auth("/api/v1/me", &via_first).await.status(), 200);
    let r = t.http.delete(t.url(&format!("/api/v1/passkeys/{only}?end_sessions=true"))).bearer_auth(&at).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["sessions_ended"], 1);
    assert_eq!(t.get_auth("/api/v1/me", &via_first).await.status(), 401, "its session ended");
    assert_eq!(t.get_auth("/api/v1/me", &at).await.status(), 200, "the others did not");
    let r = sign_in(&t, &mut key).await;
    assert_eq!(r.status(), 400, "a removed passkey signs nobody in");

    // Renaming, and someone else's id is not found.
    let list: Value = t.get_auth("/api/v1/passkeys", &at).await.json().await.unwrap();
    let id = s(&list[0], "id");
    let r =
        t.http.patch(t.url(&format!("/api/v1/passkeys/{id}"))).bearer_auth(&at).json(&json!({ "name": "Yubikey" })).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(t.get_auth("/api/v1/passkeys", &at).await.json::<Value>().await.unwrap()[0]["name"], "Yubikey");
    let r = t.http.patch(t.url("/api/v1/passkeys/nope")).bearer_auth(&at).json(&json!({ "name": "x" })).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // Forgetting every device, and setting (then changing) a password, leave the passkeys alone;
    // both are audited as always.
    let r = t.http.delete(t.url("/api/v1/devices/trust")).bearer_auth(&at).send().await.unwrap();
    assert!(r.status().is_success());
    let r = t.post_json_auth("/api/v1/password", &at, json!({ "new_password": "a new password here", "end_other_sessions": true })).await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    assert_eq!(passkey_count(&t, &at).await, 1);
    assert_eq!(sign_in(&t, &mut second).await.status(), 200, "the passkey still signs in after the password change");
    let kinds = audit_kinds(&t).await;
    assert!(kinds.iter().any(|(k, _)| k == "trust_revoked") && kinds.iter().any(|(k, _)| k == "password_changed"));
}

#[tokio::test]
async fn approvals_can_require_a_fresh_passkey_and_record_it() {
    let t = spawn_localhost(|s| s.passkeys.require_for_approvals = true).await;
    t.register("ann@example.com").await;
    let phone = s(&t.login("ann@example.com", "Phone").await, "access_token");

    // Without a passkey (or a fresh assertion) the approval is refused, and the refusal audited.
    let d = t.device_authorization().await;
    let r = t.post_json_auth("/api/v1/device-grants/approve", &phone, json!({ "user_code": s(&d, "user_code") })).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("passkey"));
    assert!(audit_kinds(&t).await.iter().any(|(k, _)| k == "step_up_refused"));

    let mut key = SoftKey::new(&t.base);
    assert_eq!(add_passkey(&t, &phone, &mut key, "phone").await.status(), 201);
    let started: Value = t.post_json_auth("/api/v1/passkeys/step-up/start", &phone, json!({})).await.json().await.unwrap();
    assert_eq!(started["options"]["publicKey"]["allowCredentials"].as_array().unwrap().len(), 1, "only the account's own");
    let credential = key.sign(&started["options"]).await;
    let r = t
        .post_json_auth(
            "/api/v1/passkeys/step-up/finish",
            &phone,
            json!({ "challenge_id": started["challenge_id"], "credential": credential }),
        )
        .await;
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap());

    let r = t.post_json_auth("/api/v1/device-grants/approve", &phone, json!({ "user_code": s(&d, "user_code") })).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = t.poll(&s(&d, "device_code")).await;
    assert_eq!(r.status(), 200);
    let devices: Value = t.get_auth("/api/v1/devices", &phone).await.json().await.unwrap();
    let tv = devices.as_array().unwrap().iter().find(|d| d["authorized_by"] == "device_code").expect("the new device");
    assert_eq!(tv["passkey_verified"], true, "the device list shows the approval was passkey-verified");
    assert!(audit_kinds(&t).await.iter().any(|(k, d)| k.ends_with("approved") && d["passkey_verified"] == true));

    // The step-up lasts minutes, not forever.
    t.clock.advance(301);
    let d = t.device_authorization().await;
    let r = t.post_json_auth("/api/v1/device-grants/approve", &phone, json!({ "user_code": s(&d, "user_code") })).await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn an_account_can_ask_for_step_up_itself() {
    let t = spawn_localhost(|_| {}).await;
    t.register("ann@example.com").await;
    let phone = s(&t.login("ann@example.com", "Phone").await, "access_token");
    let r = t
        .http
        .put(t.url("/api/v1/passkeys/step-up-rule"))
        .bearer_auth(&phone)
        .json(&json!({ "require_for_approvals": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409, "needs a passkey to step up with");
    let mut key = SoftKey::new(&t.base);
    assert_eq!(add_passkey(&t, &phone, &mut key, "phone").await.status(), 201);
    let r = t
        .http
        .put(t.url("/api/v1/passkeys/step-up-rule"))
        .bearer_auth(&phone)
        .json(&json!({ "require_for_approvals": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({ "required_by_server": false, "chosen": true }));

    // A passkey sign-in is itself a fresh assertion; an older password session is not.
    let d = t.device_authorization().await;
    t.clock.advance(400);
    let r = t.post_json_auth("/api/v1/device-grants/approve", &phone, json!({ "user_code": s(&d, "user_code") })).await;
    assert_eq!(r.status(), 403);
    let via_passkey = s(&sign_in(&t, &mut key).await.json().await.unwrap(), "access_token");
    let r = t.post_json_auth("/api/v1/device-grants/approve", &via_passkey, json!({ "user_code": s(&d, "user_code") })).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}
