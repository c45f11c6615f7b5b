use crate::common::*;
use serde_json::{Value, json};

/// Registering a taken address answers exactly as registering a new one (nobody learns which
/// addresses have accounts), keeps the account as it was, and mails its owner instead.
#[tokio::test]
async fn register_normalises_email_and_does_not_tell_whether_it_is_taken() {
    let (sink, port) = crate::common::smtp::Sink::start().await;
    let t = spawn_with(move |s| {
        s.mail.smtp_url = format!("smtp://127.0.0.1:{port}");
        // The first registration's verification mail is tests/api/email_links.rs's.
        s.accounts.verify_email = false;
        s.mail.new_device_mail = false;
    })
    .await;
    let r = t.post_json("/api/v1/accounts", json!({ "email": "  Ann@Example.COM ", "password": PASSWORD })).await;
    assert_eq!(r.status(), 201);
    let (new_headers, new): (_, Value) = (r.headers().clone(), r.json().await.unwrap());
    assert_eq!(new["email"], "ann@example.com");
    let again = t.post_json("/api/v1/accounts", json!({ "email": "ann@example.com", "password": "someone else's password" })).await;
    assert_eq!(again.status(), 201, "the same status");
    assert_eq!(again.headers()["content-type"], new_headers["content-type"]);
    assert_eq!(again.json::<Value>().await.unwrap(), new, "the same body");
    // The account is unchanged: its own password still signs in, the other does not.
    t.login("ann@example.com", "Laptop").await;
    let r = t.post_json("/api/v1/sessions", json!({ "email": "ann@example.com", "password": "someone else's password" })).await;
    assert_eq!(r.status(), 401);
    // Its owner is told.
    let mail = sink.message(1).await;
    assert!(mail.contains("To: ann@example.com") && mail.contains("tried to create"), "{mail}");
    let owner = t.app.store.user_by_email("ann@example.com").await.unwrap().unwrap();
    let audit = t.app.store.audit_for_user(&owner.id, 10).await.unwrap();
    assert!(audit.iter().any(|a| a.kind == "registration_for_taken_email"));
    // The operator's `latchkey user add` still says plainly that the address is taken.
    let taken = latchkey::service::accounts::create_user(
        &t.app,
        &latchkey::domain::Email::parse("ann@example.com").unwrap(),
        &latchkey::domain::Password::parse(PASSWORD.into()).unwrap(),
    )
    .await;
    assert!(matches!(taken, Err(latchkey::service::AppError::Conflict(_))));
}

#[tokio::test]
async fn password_length_is_enforced() {
    let t = spawn().await;
    let short = t.post_json("/api/v1/accounts", json!({ "email": "a@x.org", "password": "1234567" })).await;
    assert_eq!(short.status(), 422);
    let v: Value = short.json().await.unwrap();
    assert_eq!(v["errors"][0]["field"], "password");
    let long = t.post_json("/api/v1/accounts", json!({ "email": "a@x.org", "password": "x".repeat(1025) })).await;
    assert_eq!(long.status(), 422);
    let max = t.post_json("/api/v1/accounts", json!({ "email": "a@x.org", "password": "é".repeat(1024) })).await;
    assert_eq!(max.status(), 201, "1024 characters is allowed, however many bytes");
}

#[tokio::test]
async fn self_registration_can_be_switched_off() {
    let t = spawn_with(|s| s.accounts.self_registration = false).await;
    let r = t.post_json("/api/v1/accounts", json!({ "email": "a@x.org", "password": PASSWORD })).await;
    assert_eq!(r.status(), 403);
}

#[tokio::test]
async fn registration_is_limited_per_ip() {
    let t = spawn_with(|s| s.limits.register_per_ip_per_hour = 2).await;
    for i in 0..2 {
        t.register(&format!("u{i}@x.org")).await;
    }
    let r = t.post_json("/api/v1/accounts", json!({ "email": "u9@x.org", "password": PASSWORD })).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn password_hash_is_bound_to_the_user_id() {
    let t = spawn().await;
    t.register("a@x.org").await;
    t.register("b@x.org").await;
    let store = &t.app.store;
    let a = store.user_by_email("a@x.org").await.unwrap().unwrap();
    let b = store.user_by_email("b@x.org").await.unwrap().unwrap();
    let hash = a.password_hash.clone().unwrap();
    assert!(hash.starts_with("$argon2id$"), "argon2id PHC string: {hash}");
    assert!(!hash.contains(PASSWORD));
    let pw = latchkey::domain::Password::for_login(PASSWORD.into()).unwrap();
    assert!(t.app.passwords.verify(t.app.passwords.reserve().unwrap(), Some(&a.id), &pw, Some(&hash)).await.unwrap());
    assert!(
        !t.app.passwords.verify(t.app.passwords.reserve().unwrap(), Some(&b.id), &pw, Some(&hash)).await.unwrap(),
        "a's hash planted on b's row must not verify"
    );
}
