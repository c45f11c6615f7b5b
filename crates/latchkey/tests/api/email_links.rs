//! E-mail verification and password reset by mailed link, over a real SMTP conversation: links
//! that are inert until their form is sent, work once, and say nothing about which addresses
//! have accounts.

use crate::common::smtp::{Sink, code_in, link_in};
use crate::common::upstream::browser;
use crate::common::*;
use serde_json::{Value, json};

async fn with_mail() -> (TestApp, Sink) {
    let (sink, port) = Sink::start().await;
    let t = spawn_with(move |s| s.mail.smtp_url = format!("smtp://127.0.0.1:{port}")).await;
    (t, sink)
}

fn token_of(link: &str) -> String {
    link.rsplit('/').next().unwrap().to_owned()
}

fn csrf_in(html: &str) -> String {
    html.split("name=\"csrf\" value=\"").nth(1).expect("a csrf field").split('"').next().unwrap().to_owned()
}

async fn me(t: &TestApp, at: &str) -> Value {
    t.get_auth("/api/v1/me", at).await.json().await.unwrap()
}

async fn mails(sink: &Sink) -> usize {
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    sink.messages.lock().unwrap().len()
}

#[tokio::test]
async fn registration_mails_a_link_that_verifies_the_address_once() {
    let (t, sink) = with_mail().await;
    t.register("ann@example.com").await;
    let mail = sink.message(1).await;
    assert!(mail.contains("Subject: Confirm your e-mail address") && mail.contains("To: ann@example.com"), "{mail}");
    let link = link_in(&mail, "/verify-email/");
    let at = s(&t.login("ann@example.com", "Laptop").await, "access_token");
    assert_eq!(me(&t, &at).await["email_verified"], false);
    // Unverified: no new-device mail for that sign-in.
    assert_eq!(mails(&sink).await, 1);

    let b = browser();
    let page = b.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("ann@example.com"));
    assert_eq!(me(&t, &at).await["email_verified"], false, "opening the link changes nothing");
    assert_eq!(b.post(&link).form(&[("csrf", "forged")]).send().await.unwrap().status(), 403);
    let r = b.post(&link).form(&[("csrf", csrf_in(&html).as_str())]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("ann@example.com is verified"));
    assert_eq!(me(&t, &at).await["email_verified"], true);
    assert_eq!(b.get(&link).send().await.unwrap().status(), 400, "used");
    let r = t.post_json("/api/v1/email-verifications/confirm", json!({ "token": token_of(&link) })).await;
    assert_eq!(r.status(), 400, "used, by the API too");

    // Verified: the next new device is mailed about.
    t.login("ann@example.com", "Phone").await;
    assert!(sink.message(2).await.contains("New sign-in to your account: Phone"));
    let audit = t.app.store.audit_all(50).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.kind == "email_verified").count(), 1);
}

#[tokio::test]
async fn the_account_asks_for_another_link_and_the_api_follows_it() {
    let (t, sink) = with_mail().await;
    t.register("ann@example.com").await;
    sink.message(1).await;
    let at = s(&t.login("ann@example.com", "Laptop").await, "access_token");
    let r = t.http.post(t.url("/api/v1/account/email-verification")).bearer_auth(&at).send().await.unwrap();
    assert_eq!(r.status(), 202);
    let link = link_in(&sink.message(2).await, "/verify-email/");
    let r = t.post_json("/api/v1/email-verifications/confirm", json!({ "token": token_of(&link) })).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["email"], "ann@example.com");
    assert_eq!(me(&t, &at).await["email_verified"], true);
    let r = t.http.post(t.url("/api/v1/account/email-verification")).bearer_auth(&at).send().await.unwrap();
    assert_eq!(r.status(), 409, "verified already");
    // The first link still works for nothing more than it did: verifying what is verified.
    let first = link_in(&sink.message(1).await, "/verify-email/");
    assert_eq!(t.post_json("/api/v1/email-verifications/confirm", json!({ "token": token_of(&first) })).await.status(), 200);
    assert_eq!(t.post_json("/api/v1/email-verifications/confirm", json!({ "token": "lk_ev_made-up" })).await.status(), 400);
}

/// A reset asked for a known and an unknown address gives the same status and body; only the
/// known one gets mail. Limited per address (the unknown one too) and per IP.
#[tokio::test]
async fn reset_requests_do_not_tell_known_from_unknown_addresses() {
    let (t, sink) = with_mail().await;
    t.register("ann@example.com").await;
    sink.message(1).await;
    let ask = |email: &'static str| t.post_json("/api/v1/password-resets", json!({ "email": email }));
    let known = ask("ann@example.com").await;
    let unknown = ask("nobody@example.com").await;
    assert_eq!((known.status(), unknown.status()), (reqwest::StatusCode::ACCEPTED, reqwest::StatusCode::ACCEPTED));
    assert_eq!(known.headers()["content-type"], unknown.headers()["content-type"]);
    assert_eq!(known.text().await.unwrap(), unknown.text().await.unwrap());
    let mail = sink.message(2).await;
    assert!(mail.contains("Subject: Reset your password") && mail.contains("To: ann@example.com"), "{mail}");
    assert_eq!(mails(&sink).await, 2, "nothing for the unknown address");
    // Three per address per hour, known or not: the fourth gets 429 either way.
    for _ in 0..2 {
        ask("ann@example.com").await;
        ask("nobody@example.com").await;
    }
    assert_eq!(ask("ann@example.com").await.status(), 429);
    assert_eq!(ask("nobody@example.com").await.status(), 429);
    assert_eq!(t.post_json("/api/v1/password-resets", json!({ "email": "not an address" })).await.status(), 422);
    // The page says the same for both.
    let b = browser();
    let html = b.get(t.url("/forgot-password")).send().await.unwrap().text().await.unwrap();
    let csrf = csrf_in(&html);
    let a = b.post(t.url("/forgot-password")).form(&[("csrf", csrf.as_str()), ("email", "carol@example.com")]).send().await.unwrap();
    assert_eq!(a.status(), 200);
    assert!(a.text().await.unwrap().contains("If an account has this address"));
}

/// Following a reset link sets the password, ends every session and remembered device of the
/// account, ends its other reset links, verifies the address, and works once. A weak password
/// does not use the link up.
#[tokio::test]
async fn a_reset_ends_every_session_and_works_once() {
    let (t, sink) = with_mail().await;
    t.register("ann@example.com").await;
    sink.message(1).await;
    let laptop = t.login("ann@example.com", "Laptop").await;
    let phone = t.login("ann@example.com", "Phone").await;
    t.post_json("/api/v1/password-resets", json!({ "email": "ann@example.com" })).await;
    t.post_json("/api/v1/password-resets", json!({ "email": "ann@example.com" })).await;
    let (first, second) = (link_in(&sink.message(2).await, "/reset-password/"), link_in(&sink.message(3).await, "/reset-password/"));

    let b = browser();
    let html = b.get(&second).send().await.unwrap().text().await.unwrap();
    assert!(html.contains("ann@example.com") && html.contains("new-password"));
    let csrf = csrf_in(&html);
    let weak = b.post(&second).form(&[("csrf", csrf.as_str()), ("password", "short")]).send().await.unwrap();
    assert_eq!(weak.status(), 422);
    assert_eq!(b.get(&second).send().await.unwrap().status(), 200, "a weak password does not use the link");
    let r = b.post(&second).form(&[("csrf", csrf.as_str()), ("password", "a brand new passphrase")]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("Every device of your account is signed out"));

    for device in [&laptop, &phone] {
        assert_eq!(t.get_auth("/api/v1/devices", &s(device, "access_token")).await.status(), 401);
        assert_eq!(t.refresh(&s(device, "refresh_token")).await.status(), 400);
    }
    let old = t.post_json("/api/v1/sessions", json!({ "email": "ann@example.com", "password": PASSWORD })).await;
    assert_eq!(old.status(), 401);
    let new = t.post_json("/api/v1/sessions", json!({ "email": "ann@example.com", "password": "a brand new passphrase" })).await;
    assert_eq!(new.status(), 200);
    let at = s(&new.json::<Value>().await.unwrap(), "access_token");
    assert_eq!(me(&t, &at).await["email_verified"], true, "the reset mail reached the address");
    // Used, and the other link died with it.
    assert_eq!(b.get(&second).send().await.unwrap().status(), 400);
    let r =
        t.post_json("/api/v1/password-resets/confirm", json!({ "token": token_of(&first), "password": "yet another passphrase" })).await;
    assert_eq!(r.status(), 400);
    let audit = t.app.store.audit_all(100).await.unwrap();
    assert_eq!(audit.iter().filter(|e| e.kind == "password_reset").count(), 1);
    assert_eq!(audit.iter().filter(|e| e.kind == "password_reset_requested").count(), 2);
}

/// Twenty uses of one reset link at once: one sets the password, the others are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_resets_with_one_link_give_one_winner() {
    let (t, sink) = with_mail().await;
    t.register("ann@example.com").await;
    sink.message(1).await;
    t.post_json("/api/v1/password-resets", json!({ "email": "ann@example.com" })).await;
    let token = token_of(&link_in(&sink.message(2).await, "/reset-password/"));
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (http, url) = (t.http.clone(), t.url("/api/v1/password-resets/confirm"));
            let body = json!({ "token": token, "password": format!("winner number {i}") });
            tokio::spawn(async move { http.post(url).json(&body).send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 400), "{statuses:?}");
    assert_eq!(t.app.store.audit_all(100).await.unwrap().iter().filter(|e| e.kind == "password_reset").count(), 1);
}

/// /mfa turns sign-in codes by e-mail on and off, each with a code mailed to the address;
/// turning them on verifies the address too. /account shows the state and links there.
#[tokio::test]
async fn the_mfa_page_turns_email_codes_on_and_off_with_mailed_codes() {
    let (t, sink) = with_mail().await;
    t.register("ann@example.com").await;
    sink.message(1).await;
    let b = browser();
    let signed_out = b.get(t.url("/mfa")).send().await.unwrap();
    assert_eq!(signed_out.status(), 303, "no login under way and nobody signed in: to /login");
    let login = b.get(t.url("/login")).send().await.unwrap().text().await.unwrap();
    let form = [("csrf", csrf_in(&login)), ("next", "/account".into()), ("email", "ann@example.com".into()), ("password", PASSWORD.into())];
    assert_eq!(b.post(t.url("/login")).form(&form).send().await.unwrap().status(), 303);
    let account = b.get(t.url("/account")).send().await.unwrap().text().await.unwrap();
    assert!(account.contains("not verified yet") && account.contains("href=\"/mfa\""), "{account}");
    let settings = b.get(t.url("/mfa")).send().await.unwrap().text().await.unwrap();
    assert!(settings.contains("Two-step sign-in") && settings.contains("Turn on e-mail codes"), "{settings}");
    let csrf = csrf_in(&settings);
    let forged = b.post(t.url("/mfa/email-codes")).form(&[("csrf", "forged"), ("action", "on")]).send().await.unwrap();
    assert_eq!(forged.status(), 403, "the switch is CSRF-checked");

    for (action, n, after) in [("on", 2, "Turn off e-mail codes"), ("off", 3, "Turn on e-mail codes")] {
        let r = b.post(t.url("/mfa/email-codes")).form(&[("csrf", csrf.as_str()), ("action", action)]).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("Code from the e-mail"));
        let code = code_in(&sink.message(n).await);
        let wrong = b.post(t.url("/mfa/email-codes")).form(&[("csrf", csrf.as_str()), ("action", action), ("code", "000000")]);
        assert_eq!(wrong.send().await.unwrap().status(), 400);
        let r = b.post(t.url("/mfa/email-codes")).form(&[("csrf", csrf.as_str()), ("action", action), ("code", code.as_str())]);
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), 303, "{action}");
        assert_eq!(r.headers()["location"], "/mfa");
        let settings = b.get(t.url("/mfa")).send().await.unwrap().text().await.unwrap();
        assert!(settings.contains(after), "after {action}: {settings}");
        let account = b.get(t.url("/account")).send().await.unwrap().text().await.unwrap();
        assert!(!account.contains("not verified yet"), "the mailed code verified the address");
    }
    let changes = t.app.store.audit_all(50).await.unwrap().into_iter().filter(|e| e.kind == "mfa_changed").count();
    assert_eq!(changes, 2);
}

fn claims_of(jwt: &str) -> Value {
    use base64::Engine;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(jwt.split('.').nth(1).unwrap()).unwrap();
    serde_json::from_slice(&payload).unwrap()
}

/// An app asking for `email` learns whether the address is proven: `email_verified` in the
/// id_token and at userinfo, false until the link is followed and true after.
#[tokio::test]
async fn id_tokens_and_userinfo_say_whether_the_address_is_verified() {
    use crate::apps::{VERIFIER, add_app, authorize, authorize_url, exchange, web_login};
    let (t, sink) = with_mail().await;
    t.register("ann@example.com").await;
    let link = link_in(&sink.message(1).await, "/verify-email/");
    add_app(&t, "notes", false, latchkey::keys::SigningAlg::RS256).await;
    web_login(&t, "ann@example.com").await;
    let sign_in_to_the_app = || async {
        let q = authorize(&t, &authorize_url(&t, "notes", &[])).await;
        let r = exchange(&t, "notes", None, &q["code"], Some(VERIFIER)).await;
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };
    let before = sign_in_to_the_app().await;
    let id = claims_of(&s(&before, "id_token"));
    assert_eq!((id["email"].as_str(), id["email_verified"].as_bool()), (Some("ann@example.com"), Some(false)));
    let info: Value = t.get_auth("/oauth/userinfo", &s(&before, "access_token")).await.json().await.unwrap();
    assert_eq!(info["email_verified"], false);

    assert_eq!(t.post_json("/api/v1/email-verifications/confirm", json!({ "token": token_of(&link) })).await.status(), 200);
    let info: Value = t.get_auth("/oauth/userinfo", &s(&before, "access_token")).await.json().await.unwrap();
    assert_eq!(info["email_verified"], true, "userinfo reads the account as it is now");
    let after = sign_in_to_the_app().await;
    assert_eq!(claims_of(&s(&after, "id_token"))["email_verified"], true);
}

/// Ten reset requests per IP an hour, whatever addresses they name: an attacker cannot mail-bomb
/// many accounts (or probe many addresses) from one place by changing the address each time.
#[tokio::test]
async fn reset_requests_are_limited_per_ip_across_addresses() {
    let (t, _sink) = with_mail().await;
    for i in 0..10 {
        let r = t.post_json("/api/v1/password-resets", json!({ "email": format!("person{i}@example.com") })).await;
        assert_eq!(r.status(), 202, "request {i}");
    }
    let r = t.post_json("/api/v1/password-resets", json!({ "email": "person10@example.com" })).await;
    assert_eq!(r.status(), 429, "the eleventh from this IP, for a fresh address");
    assert!(r.headers().contains_key("retry-after"));
    // The limit is a sliding window over fixed hours (the last hour weighs in by its overlap):
    // two hours on, it has passed whatever the clock's position in the hour.
    t.clock.advance(2 * 3600 + 1);
    assert_eq!(t.post_json("/api/v1/password-resets", json!({ "email": "person10@example.com" })).await.status(), 202);
}

/// Sign-in codes go to proven addresses only: an account whose e-mail factor is on while its
/// address is unverified (as the store allows) gets no code, until the address is verified.
#[tokio::test]
async fn no_sign_in_codes_go_to_an_unverified_address() {
    let (t, sink) = with_mail().await;
    t.register("ann@example.com").await;
    let link = link_in(&sink.message(1).await, "/verify-email/");
    let user = t.app.store.user_by_email("ann@example.com").await.unwrap().unwrap();
    assert!(user.email_verified_at.is_none());
    t.app.store.enable_email_factor(&user.id, t.app.now()).await.unwrap();
    let password_step = || async {
        let r = t.post_json("/api/v1/sessions", json!({ "email": "ann@example.com", "password": PASSWORD })).await;
        assert_eq!(r.status(), 200);
        let step: Value = r.json().await.unwrap();
        assert_eq!(step["mfa_required"], true);
        s(&step, "mfa_token")
    };
    let token = password_step().await;
    let r = t.post_json("/api/v1/mfa/email/send", json!({ "mfa_token": token })).await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("not verified"));
    assert_eq!(mails(&sink).await, 1, "no code was mailed");

    assert_eq!(t.post_json("/api/v1/email-verifications/confirm", json!({ "token": token_of(&link) })).await.status(), 200);
    let token = password_step().await;
    assert_eq!(t.post_json("/api/v1/mfa/email/send", json!({ "mfa_token": token })).await.status(), 202);
    let code = code_in(&sink.message(2).await);
    let r =
        t.post_json("/api/v1/mfa/verify", json!({ "mfa_token": token, "method": "email", "code": code, "remember_device": false })).await;
    assert_eq!(r.status(), 200, "a verified address gets its code and the code signs in");
}
