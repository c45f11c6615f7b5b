use crate::common::smtp::{Sink, code_in};
use crate::common::totp::{base32_decode, totp_at};
use crate::common::*;
use serde_json::{Value, json};

async fn with_mail() -> (TestApp, Sink) {
    let (sink, port) = Sink::start().await;
    let t = spawn_with(move |s| {
        s.mail.smtp_url = format!("smtp://127.0.0.1:{port}");
        s.mail.from = "Latchkey <auth@example.com>".into();
        // These tests count the code mails; tests/api/new_device_mail.rs has the others.
        s.mail.new_device_mail = false;
        s.accounts.verify_email = false;
    })
    .await;
    (t, sink)
}

/// Registers ann, turns TOTP on; returns (secret, recovery codes, access token).
pub(crate) async fn with_totp(t: &TestApp) -> (String, Vec<String>, String) {
    t.register("ann@example.com").await;
    let at = s(&t.login("ann@example.com", "Laptop").await, "access_token");
    let r = t.http.post(t.url("/api/v1/mfa/totp")).bearer_auth(&at).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let e: Value = r.json().await.unwrap();
    let secret = s(&e, "secret");
    assert!(
        s(&e, "otpauth_uri").starts_with("otpauth://totp/Latchkey:ann%40example.com?secret=")
            || s(&e, "otpauth_uri").starts_with("otpauth://totp/Latchkey:ann@example.com?secret=")
    );
    assert!(s(&e, "qr_svg").starts_with("<?xml") || s(&e, "qr_svg").contains("<svg"));
    let wrong = t.post_json_auth("/api/v1/mfa/totp/confirm", &at, json!({ "code": "000000" })).await;
    assert_eq!(wrong.status(), 400);
    let r = t.post_json_auth("/api/v1/mfa/totp/confirm", &at, json!({ "code": totp_at(&secret, t.app.now()) })).await;
    assert_eq!(r.status(), 200);
    let codes: Vec<String> =
        r.json::<Value>().await.unwrap()["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    assert_eq!(codes.len(), 10);
    // The secret is sealed at rest: neither it nor its raw bytes are in the database.
    let row = t.app.store.totp(&t.app.store.user_by_email("ann@example.com").await.unwrap().unwrap().id).await.unwrap().unwrap();
    let raw = base32_decode(&secret);
    assert!(!row.secret_enc.windows(raw.len()).any(|w| w == raw.as_slice()));
    (secret, codes, at)
}

async fn password_step(t: &TestApp, trust: Option<&str>) -> Value {
    let mut body = json!({ "email": "ann@example.com", "password": PASSWORD });
    if let Some(tt) = trust {
        body["device_trust_token"] = json!(tt);
    }
    let r = t.post_json("/api/v1/sessions", body).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

pub(crate) async fn verify(t: &TestApp, mfa_token: &str, method: &str, code: &str, remember: bool) -> reqwest::Response {
    t.post_json("/api/v1/mfa/verify", json!({ "mfa_token": mfa_token, "method": method, "code": code, "remember_device": remember })).await
}

#[tokio::test]
async fn totp_login_in_two_steps_and_codes_are_not_replayable() {
    let t = spawn().await;
    let (secret, _, _) = with_totp(&t).await;
    t.clock.advance(30);
    let step1 = password_step(&t, None).await;
    assert_eq!(step1["mfa_required"], true);
    assert_eq!(step1["methods"], json!(["totp", "recovery"]));
    assert!(step1.get("access_token").is_none());
    let code = totp_at(&secret, t.app.now());
    let r = verify(&t, &s(&step1, "mfa_token"), "totp", &code, false).await;
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    assert!(tokens.get("device_trust_token").is_none());
    assert_eq!(t.get_auth("/api/v1/devices", &s(&tokens, "access_token")).await.status(), 200);
    // The same code again, on a fresh login: refused.
    let step2 = password_step(&t, None).await;
    assert_eq!(verify(&t, &s(&step2, "mfa_token"), "totp", &code, false).await.status(), 400);
    // The mfa_token is used up once it succeeded.
    assert_eq!(verify(&t, &s(&step1, "mfa_token"), "totp", &totp_at(&secret, t.app.now() + 30), false).await.status(), 401);
}

#[tokio::test]
async fn the_drift_window_holds_at_its_edges() {
    let t = spawn().await;
    let (secret, _, _) = with_totp(&t).await;
    t.clock.advance(120);
    // Start just after a step begins, so the real seconds this loop takes cannot cross into the next step.
    t.clock.advance(30 - t.app.now().rem_euclid(30) + 1);
    let now = t.app.now();
    for (offset, ok) in [(-60, false), (-30, true), (0, true), (30, true), (60, false)] {
        let step = password_step(&t, None).await;
        let status = verify(&t, &s(&step, "mfa_token"), "totp", &totp_at(&secret, now + offset), false).await.status();
        assert_eq!(status == 200, ok, "offset {offset}: {status}");
    }
}

#[tokio::test]
async fn wrong_codes_run_out_the_mfa_token_which_works_nowhere_else() {
    let t = spawn().await;
    let (secret, _, _) = with_totp(&t).await;
    t.clock.advance(30);
    let step = password_step(&t, None).await;
    let mt = s(&step, "mfa_token");
    assert_eq!(t.get_auth("/api/v1/devices", &mt).await.status(), 401, "an mfa_token is no bearer token");
    assert_eq!(
        t.post_form("/oauth/token", &[("grant_type", "refresh_token"), ("refresh_token", &mt), ("client_id", "latchkey-cli")])
            .await
            .status(),
        400
    );
    for _ in 0..5 {
        assert_eq!(verify(&t, &mt, "totp", "000000", false).await.status(), 400);
    }
    assert_eq!(verify(&t, &mt, "totp", &totp_at(&secret, t.app.now()), false).await.status(), 401, "dead after 5 wrong codes");
    t.clock.advance(30);
    let late = password_step(&t, None).await;
    t.clock.advance(301);
    assert_eq!(
        verify(&t, &s(&late, "mfa_token"), "totp", &totp_at(&secret, t.app.now()), false).await.status(),
        401,
        "expired after 5 minutes"
    );
}

#[tokio::test]
async fn recovery_codes_are_single_use_and_turn_totp_off() {
    let t = spawn().await;
    let (secret, codes, _) = with_totp(&t).await;
    let step = password_step(&t, None).await;
    let r = verify(&t, &s(&step, "mfa_token"), "recovery", &codes[0].to_lowercase(), false).await;
    assert_eq!(r.status(), 200);
    let at = s(&r.json::<Value>().await.unwrap(), "access_token");
    let step = password_step(&t, None).await;
    assert_eq!(verify(&t, &s(&step, "mfa_token"), "recovery", &codes[0], false).await.status(), 400, "used once");
    // Turning TOTP off needs a code.
    let r = t.http.delete(t.url("/api/v1/mfa/totp")).bearer_auth(&at).json(&json!({ "code": "123456" })).send().await.unwrap();
    assert_eq!(r.status(), 400);
    t.clock.advance(30);
    let r = t
        .http
        .delete(t.url("/api/v1/mfa/totp"))
        .bearer_auth(&at)
        .json(&json!({ "code": totp_at(&secret, t.app.now()) }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let plain = password_step(&t, None).await;
    assert!(plain.get("access_token").is_some(), "no second factor any more");
}

#[tokio::test]
async fn email_codes_over_a_real_smtp_conversation() {
    let (t, sink) = with_mail().await;
    t.register("ann@example.com").await;
    let at = s(&t.login("ann@example.com", "Laptop").await, "access_token");
    let r = t.post_json_auth("/api/v1/mfa/email", &at, json!({})).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "sent");
    let mail = sink.message(1).await;
    assert!(mail.contains("To: ann@example.com") && mail.contains("From: Latchkey <auth@example.com>"), "{mail}");
    assert!(mail.contains("text/plain") && mail.contains("text/html"), "plain text and HTML");
    assert!(mail.contains("127.0.0.1"), "names the IP that asked");
    // A resend within 30 s is throttled.
    assert_eq!(t.post_json_auth("/api/v1/mfa/email", &at, json!({})).await.status(), 429);
    assert_eq!(t.post_json_auth("/api/v1/mfa/email", &at, json!({ "code": "000000" })).await.status(), 400);
    let r = t.post_json_auth("/api/v1/mfa/email", &at, json!({ "code": code_in(&mail) })).await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "enabled");

    let step = password_step(&t, None).await;
    assert_eq!(step["methods"], json!(["email"]));
    let mt = s(&step, "mfa_token");
    assert_eq!(t.post_json("/api/v1/mfa/email/send", json!({ "mfa_token": mt })).await.status(), 202);
    let mail = sink.message(2).await;
    let r = verify(&t, &mt, "email", &code_in(&mail), false).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn email_codes_die_after_five_wrong_tries_and_a_resend_replaces_them() {
    let (t, sink) = with_mail().await;
    t.register("ann@example.com").await;
    let at = s(&t.login("ann@example.com", "Laptop").await, "access_token");
    t.post_json_auth("/api/v1/mfa/email", &at, json!({})).await;
    let first = code_in(&sink.message(1).await);
    t.clock.advance(31);
    t.post_json_auth("/api/v1/mfa/email", &at, json!({})).await;
    let second = code_in(&sink.message(2).await);
    if first != second {
        assert_eq!(t.post_json_auth("/api/v1/mfa/email", &at, json!({ "code": first })).await.status(), 400, "replaced");
    }
    for _ in 0..5 {
        t.post_json_auth("/api/v1/mfa/email", &at, json!({ "code": "999999x" })).await;
    }
    let bad = if second == "000001" { "000002" } else { "000001" };
    for _ in 0..5 {
        t.post_json_auth("/api/v1/mfa/email", &at, json!({ "code": bad })).await;
    }
    assert_eq!(t.post_json_auth("/api/v1/mfa/email", &at, json!({ "code": second })).await.status(), 400, "dead after 5 wrong tries");
}

async fn remembered(t: &TestApp, secret: &str) -> (Value, String) {
    t.clock.advance(30);
    let step = password_step(t, None).await;
    let r = verify(t, &s(&step, "mfa_token"), "totp", &totp_at(secret, t.app.now()), true).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let trust = s(&v, "device_trust_token");
    assert!(trust.starts_with("lk_dt_"));
    (v, trust)
}

#[tokio::test]
async fn a_remembered_device_skips_the_second_factor_across_logout() {
    let t = spawn().await;
    let (secret, _, _) = with_totp(&t).await;
    let (v, trust) = remembered(&t, &secret).await;
    let devices: Vec<Value> = t.get_auth("/api/v1/devices", &s(&v, "access_token")).await.json().await.unwrap();
    let me = devices.iter().find(|d| d["current"] == true).unwrap();
    assert!(me["trusted_until"].is_string(), "device lists show trusted_until");
    t.http.delete(t.url("/api/v1/sessions/current")).bearer_auth(s(&v, "access_token")).send().await.unwrap();
    let again = password_step(&t, Some(&trust)).await;
    assert!(again.get("mfa_required").is_none(), "{again}");
    assert_eq!(again["device_id"], v["device_id"], "the same device, not a new one");
    let rotated = s(&again, "device_trust_token");
    assert_ne!(rotated, trust, "rotated on use");
    assert!(password_step(&t, Some(&trust)).await["mfa_required"] == true, "the old one is spent");
    let audit = t.app.store.audit_all(100).await.unwrap();
    assert!(audit.iter().any(|e| e.kind == "mfa_skipped_trusted_device"));
    // Another user cannot use it.
    t.register("bob@example.com").await;
    let bob_at = s(&t.login("bob@example.com", "Bob").await, "access_token");
    let r = t.http.post(t.url("/api/v1/mfa/totp")).bearer_auth(&bob_at).send().await.unwrap();
    let bob_secret = s(&r.json::<Value>().await.unwrap(), "secret");
    t.post_json_auth("/api/v1/mfa/totp/confirm", &bob_at, json!({ "code": totp_at(&bob_secret, t.app.now()) })).await;
    let r =
        t.post_json("/api/v1/sessions", json!({ "email": "bob@example.com", "password": PASSWORD, "device_trust_token": rotated })).await;
    assert_eq!(r.json::<Value>().await.unwrap()["mfa_required"], true);
    assert!(password_step(&t, Some(&rotated)).await.get("access_token").is_some(), "and trying it on bob did not burn it for ann");
}

#[tokio::test]
async fn every_revocation_trigger_brings_the_second_factor_back() {
    let t = spawn().await;
    let (secret, codes, _) = with_totp(&t).await;
    let needs_mfa = |v: &Value| v["mfa_required"] == true;

    // DELETE /api/v1/devices/{id}/trust
    let (v, trust) = remembered(&t, &secret).await;
    let r = t
        .http
        .delete(t.url(&format!("/api/v1/devices/{}/trust", s(&v, "device_id"))))
        .bearer_auth(s(&v, "access_token"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(needs_mfa(&password_step(&t, Some(&trust)).await), "forget one device");

    // DELETE /api/v1/devices/trust
    let (v, trust) = remembered(&t, &secret).await;
    t.http.delete(t.url("/api/v1/devices/trust")).bearer_auth(s(&v, "access_token")).send().await.unwrap();
    assert!(needs_mfa(&password_step(&t, Some(&trust)).await), "forget all devices");

    // Device revoke (from another device).
    let (v, trust) = remembered(&t, &secret).await;
    let (other, _) = remembered(&t, &secret).await;
    t.http.delete(t.url(&format!("/api/v1/devices/{}", s(&v, "device_id")))).bearer_auth(s(&other, "access_token")).send().await.unwrap();
    assert!(needs_mfa(&password_step(&t, Some(&trust)).await), "device revoked");

    // Log out everywhere.
    let (v, trust) = remembered(&t, &secret).await;
    t.http.delete(t.url("/api/v1/sessions")).bearer_auth(s(&v, "access_token")).send().await.unwrap();
    assert!(needs_mfa(&password_step(&t, Some(&trust)).await), "log out everywhere");

    // A recovery code used anywhere.
    let (_, trust) = remembered(&t, &secret).await;
    let step = password_step(&t, None).await;
    assert_eq!(verify(&t, &s(&step, "mfa_token"), "recovery", &codes[1], false).await.status(), 200);
    assert!(needs_mfa(&password_step(&t, Some(&trust)).await), "recovery code used");

    // Password change.
    let (v, trust) = remembered(&t, &secret).await;
    let r = t
        .post_json_auth(
            "/api/v1/password",
            &s(&v, "access_token"),
            json!({ "current_password": PASSWORD, "new_password": "a brand new password" }),
        )
        .await;
    assert_eq!(r.status(), 200);
    let r = t
        .post_json(
            "/api/v1/sessions",
            json!({ "email": "ann@example.com", "password": "a brand new password", "device_trust_token": trust }),
        )
        .await;
    assert!(needs_mfa(&r.json().await.unwrap()), "password changed");
    let wrong = t
        .post_json_auth(
            "/api/v1/password",
            &s(&v, "access_token"),
            json!({ "current_password": "nope nope", "new_password": "another one!" }),
        )
        .await;
    assert_eq!(wrong.status(), 403);
}

#[tokio::test]
async fn a_change_to_the_second_factors_and_expiry_end_trust() {
    let (t, sink) = with_mail().await;
    let (secret, _, _) = with_totp(&t).await;
    let (v, trust) = remembered(&t, &secret).await;
    // Adding e-mail codes (within 10 minutes of a sign-in) is a change to the factors.
    t.post_json_auth("/api/v1/mfa/email", &s(&v, "access_token"), json!({})).await;
    let code = code_in(&sink.message(1).await);
    assert_eq!(t.post_json_auth("/api/v1/mfa/email", &s(&v, "access_token"), json!({ "code": code })).await.status(), 200);
    assert_eq!(password_step(&t, Some(&trust)).await["mfa_required"], true);
    // Expiry, with the clock moved past remember_days.
    let (_, trust) = remembered(&t, &secret).await;
    t.clock.advance(31 * 86_400);
    assert_eq!(password_step(&t, Some(&trust)).await["mfa_required"], true);
    // Changing factors needs a recent sign-in.
    let stale = t.post_json_auth("/api/v1/mfa/totp", &s(&v, "access_token"), json!({})).await;
    assert_eq!(stale.status(), 401, "the old access token has long expired");
}

#[tokio::test]
async fn without_smtp_mail_goes_to_eml_files_in_the_data_directory() {
    let t = spawn_with(|s| {
        s.mail.new_device_mail = false;
        s.accounts.verify_email = false;
    })
    .await;
    t.register("ann@example.com").await;
    let at = s(&t.login("ann@example.com", "Laptop").await, "access_token");
    assert_eq!(t.post_json_auth("/api/v1/mfa/email", &at, json!({})).await.status(), 200);
    let files: Vec<_> = std::fs::read_dir(t.dir.join("mail")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1);
    assert!(files[0].extension().is_some_and(|e| e == "eml"));
    let mail = std::fs::read_to_string(&files[0]).unwrap();
    let r = t.post_json_auth("/api/v1/mfa/email", &at, json!({ "code": code_in(&mail) })).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn email_codes_are_turned_off_with_a_mailed_code_and_a_recent_sign_in() {
    let (t, sink) = with_mail().await;
    t.register("ann@example.com").await;
    let at = s(&t.login("ann@example.com", "Laptop").await, "access_token");
    assert_eq!(t.post_json_auth("/api/v1/mfa/email/disable", &at, json!({})).await.status(), 400, "not on yet");
    t.post_json_auth("/api/v1/mfa/email", &at, json!({})).await;
    let r = t.post_json_auth("/api/v1/mfa/email", &at, json!({ "code": code_in(&sink.message(1).await) })).await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "enabled");
    assert_eq!(password_step(&t, None).await["methods"], json!(["email"]));

    // Signed in with the second factor, recently: a code is mailed, and only it turns them off.
    t.clock.advance(31);
    let step = password_step(&t, None).await;
    let mt = s(&step, "mfa_token");
    t.post_json("/api/v1/mfa/email/send", json!({ "mfa_token": mt })).await;
    let signed: Value = verify(&t, &mt, "email", &code_in(&sink.message(2).await), false).await.json().await.unwrap();
    let at = s(&signed, "access_token");
    t.clock.advance(31);
    let r = t.post_json_auth("/api/v1/mfa/email/disable", &at, json!({})).await;
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "sent");
    let mail = sink.message(3).await;
    assert!(mail.contains("turn off sign-in codes by e-mail"), "{mail}");
    assert_eq!(t.post_json_auth("/api/v1/mfa/email/disable", &at, json!({ "code": "000000" })).await.status(), 400);
    let r = t.post_json_auth("/api/v1/mfa/email/disable", &at, json!({ "code": code_in(&mail) })).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "disabled");
    // A password alone signs in again, and the change is audited.
    let r = t.post_json("/api/v1/sessions", json!({ "email": "ann@example.com", "password": PASSWORD })).await;
    assert!(r.json::<Value>().await.unwrap()["access_token"].is_string(), "no second factor now");
    let audit: Vec<Value> = t.get_auth("/api/v1/audit", &at).await.json().await.unwrap();
    assert!(audit.iter().any(|e| e["kind"] == "mfa_changed" && e["detail"]["change"] == "email_disabled"), "{audit:?}");

    // A sign-in that is not recent cannot start it (a refreshed token is the same sign-in).
    t.clock.advance(t.app.settings.mfa.recent_auth_secs as i64 + 1);
    let refreshed: Value = t.refresh(&s(&signed, "refresh_token")).await.json().await.unwrap();
    assert_eq!(t.post_json_auth("/api/v1/mfa/email/disable", &s(&refreshed, "access_token"), json!({})).await.status(), 403);
}
