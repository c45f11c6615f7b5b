//! The store on its own, below the HTTP layer: every test runs against SQLite (a temp dir) and,
//! when `TEST_DATABASE_URL` is set, against PostgreSQL too (a fresh schema per test). Without the
//! variable the PostgreSQL half says it was skipped.
//!
//! To add a test: `each_backend("name", |store| async move { … }).await` in a `#[tokio::test]`
//! (multi-threaded for races); `race(n, |i| …)` runs `n` tasks at once and returns their answers.

mod approvals;
#[path = "../common/mod.rs"]
mod common;
mod grants;
mod identities;
mod passkeys;

use common::{PgSchema, test_database_url};
use futures_util::FutureExt;
use latchkey::store::{
    AuditRow, ClientRow, DeviceRow, DynStore, MfaTokenRow, RefreshTokenRow, Rotation, SessionRow, SigningKeyRow, StoreError, TrustRow,
    UserRow,
};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

/// A moment for the tests' rows; the store takes the time as an argument.
const NOW: i64 = 1_700_000_000;
/// How many tasks race for each single-use thing.
const RACERS: usize = 16;

/// Runs `test` on a fresh SQLite store, then on a fresh PostgreSQL schema when
/// `TEST_DATABASE_URL` is set (saying loudly on stderr when it is not). A failure names the backend.
pub async fn each_backend<F, Fut>(name: &str, test: F)
where
    F: Fn(DynStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("store.db").display());
    let store = latchkey::store::open(&url, 4).await.expect("open SQLite");
    run_on("SQLite", name, test(store)).await;

    match test_database_url() {
        Some(admin) => {
            let schema = PgSchema::create(&admin).await;
            let store = latchkey::store::open(&schema.url, 8).await.expect("open PostgreSQL");
            run_on("PostgreSQL", name, test(store)).await;
        }
        None => {
            // Straight to stderr, past the test harness's capture, so that the skip is seen.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "SKIPPED: TEST_DATABASE_URL not set; store test {name} did not run on PostgreSQL");
        }
    }
}

async fn run_on(backend: &str, name: &str, test: impl Future<Output = ()>) {
    if let Err(panic) = AssertUnwindSafe(test).catch_unwind().await {
        eprintln!("store test {name} failed on {backend}");
        std::panic::resume_unwind(panic);
    }
}

/// Runs `n` tasks at once (they start together, on the runtime's threads) and returns what each
/// answered, in task order.
pub async fn race<F, Fut, T>(n: usize, task: F) -> Vec<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let start = Arc::new(tokio::sync::Barrier::new(n));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (start, run) = (start.clone(), task(i));
            tokio::spawn(async move {
                start.wait().await;
                run.await
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(n);
    for t in tasks {
        answers.push(t.await.expect("racing task panicked"));
    }
    answers
}

fn winners(answers: &[bool]) -> usize {
    answers.iter().filter(|w| **w).count()
}

async fn user(store: &DynStore, id: &str) -> UserRow {
    let u = UserRow {
        id: id.into(),
        email: Some(format!("{id}@example.com")),
        password_hash: Some("h".into()),
        created_at: NOW,
        email_verified_at: None,
    };
    store.create_user(&u).await.unwrap();
    u
}

fn device(user_id: &str, id: &str) -> DeviceRow {
    DeviceRow {
        id: id.into(),
        user_id: user_id.into(),
        name: "laptop".into(),
        kind: "cli".into(),
        os: "Linux".into(),
        browser: "".into(),
        user_agent: "ua".into(),
        authorized_by: "password".into(),
        approved_by_device: None,
        first_seen_at: NOW,
        last_seen_at: NOW,
        last_ip: "127.0.0.1".into(),
        trusted_until: None,
        revoked_at: None,
        passkey_verified: false,
    }
}

fn session(user_id: &str, device_id: &str, id: &str, expires_at: i64) -> SessionRow {
    SessionRow {
        id: id.into(),
        user_id: user_id.into(),
        device_id: device_id.into(),
        client_id: "latchkey-cli".into(),
        scope: "openid".into(),
        amr: "pwd".into(),
        web_token_hash: Some(format!("web-{id}").into_bytes()),
        created_at: NOW,
        last_used_at: NOW,
        expires_at,
        revoked_at: None,
        revoke_reason: None,
        passkey_id: None,
        passkey_verified_at: None,
    }
}

fn refresh(session_id: &str, hash: &[u8], expires_at: i64) -> RefreshTokenRow {
    RefreshTokenRow {
        hash: hash.to_vec(),
        session_id: session_id.into(),
        client_id: "latchkey-cli".into(),
        created_at: NOW,
        expires_at,
        superseded_at: None,
        successor_hash: None,
    }
}

/// A public app with one redirect URI.
fn app_client(id: &str, name: &str) -> ClientRow {
    ClientRow {
        id: id.into(),
        name: name.into(),
        secret_hash: None,
        created_at: NOW,
        redirect_uris: "https://app.example/cb".into(),
        post_logout_redirect_uris: String::new(),
        scopes: "openid".into(),
        consent: "auto".into(),
        id_token_alg: "RS256".into(),
        introspects_any: false,
    }
}

/// A user signed in on one device: the session lives 1000 s, its refresh token 500 s.
async fn signed_in(store: &DynStore, user_id: &str) -> (DeviceRow, SessionRow, RefreshTokenRow) {
    user(store, user_id).await;
    let d = device(user_id, &format!("{user_id}-d"));
    let s = session(user_id, &d.id, &format!("{user_id}-s"), NOW + 1000);
    let r = refresh(&s.id, format!("{user_id}-r0").as_bytes(), NOW + 500);
    store.create_session(&d, &s, Some(&r)).await.unwrap();
    (d, s, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_rotation_has_exactly_one_winner() {
    each_backend("refresh_rotation_has_exactly_one_winner", |store| async move {
        let (_, s, r) = signed_in(&store, "u").await;
        let answers = race(RACERS, |i| {
            let (store, old) = (store.clone(), r.hash.clone());
            async move {
                let new = format!("r1-{i}").into_bytes();
                (new.clone(), store.rotate_refresh_token(&old, "latchkey-cli", &new, NOW + 2000, NOW + 1).await.unwrap())
            }
        })
        .await;
        let rotated: Vec<_> = answers.iter().filter(|(_, a)| matches!(a, Rotation::Rotated { .. })).collect();
        assert_eq!(rotated.len(), 1, "{answers:?}");
        let (winner, Rotation::Rotated { session, expires_at }) = rotated[0] else { unreachable!() };
        assert_eq!(*expires_at, NOW + 1000, "the successor never outlives its session");
        assert_eq!((session.id.as_str(), session.last_used_at), (s.id.as_str(), NOW + 1));
        for (_, a) in &answers {
            if let Rotation::NotRotated(row) = a {
                let row = row.as_ref().expect("the presented token exists");
                assert_eq!((row.superseded_at, row.successor_hash.as_ref()), (Some(NOW + 1), Some(winner)));
            }
        }
        // The successor rotates in turn, now with its own idle expiry (sooner than the session's).
        let next = store.rotate_refresh_token(winner, "latchkey-cli", b"r2", NOW + 100, NOW + 2).await.unwrap();
        assert!(matches!(next, Rotation::Rotated { expires_at, .. } if expires_at == NOW + 100), "{next:?}");
        let stored = store.refresh_token(b"r2").await.unwrap().expect("successor stored");
        assert_eq!((stored.session_id.as_str(), stored.expires_at, stored.superseded_at), (s.id.as_str(), NOW + 100, None));
        // Wrong client, unknown token, revoked session: nothing rotates.
        let wrong = store.rotate_refresh_token(b"r2", "latchkey-web", b"r3", NOW + 100, NOW + 3).await.unwrap();
        assert!(matches!(wrong, Rotation::NotRotated(Some(_))), "{wrong:?}");
        let unknown = store.rotate_refresh_token(b"nope", "latchkey-cli", b"r3", NOW + 100, NOW + 3).await.unwrap();
        assert!(matches!(unknown, Rotation::NotRotated(None)), "{unknown:?}");
        assert!(store.revoke_session(&s.id, "logout", NOW + 3).await.unwrap());
        let dead = store.rotate_refresh_token(b"r2", "latchkey-cli", b"r3", NOW + 100, NOW + 4).await.unwrap();
        assert!(matches!(dead, Rotation::NotRotated(Some(_))), "{dead:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn totp_step_is_used_once() {
    each_backend("totp_step_is_used_once", |store| async move {
        user(&store, "u").await;
        assert!(store.put_pending_totp("u", b"secret", NOW).await.unwrap());
        assert!(!store.use_totp_step("u", 5).await.unwrap(), "not before it is confirmed");
        assert!(store.confirm_totp("u", 10, &[b"c1".to_vec()], NOW).await.unwrap());
        assert!(!store.confirm_totp("u", 11, &[], NOW).await.unwrap(), "confirmed once");
        assert!(!store.put_pending_totp("u", b"other", NOW).await.unwrap(), "a confirmed TOTP is not replaced");
        let answers = race(RACERS, |_| {
            let store = store.clone();
            async move { store.use_totp_step("u", 11).await.unwrap() }
        })
        .await;
        assert_eq!(winners(&answers), 1, "{answers:?}");
        assert!(!store.use_totp_step("u", 11).await.unwrap());
        assert!(!store.use_totp_step("u", 10).await.unwrap(), "an earlier step");
        assert!(store.use_totp_step("u", 12).await.unwrap());
        let t = store.totp("u").await.unwrap().expect("totp");
        assert_eq!((t.secret_enc.as_slice(), t.confirmed_at, t.last_step), (&b"secret"[..], Some(NOW), 12));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn recovery_code_is_used_once() {
    each_backend("recovery_code_is_used_once", |store| async move {
        user(&store, "u").await;
        assert!(store.put_pending_totp("u", b"secret", NOW).await.unwrap());
        assert!(store.confirm_totp("u", 1, &[b"a".to_vec(), b"b".to_vec()], NOW).await.unwrap());
        let answers = race(RACERS, |_| {
            let store = store.clone();
            async move { store.use_recovery_code("u", b"a", NOW).await.unwrap() }
        })
        .await;
        assert_eq!(winners(&answers), 1, "{answers:?}");
        assert!(!store.use_recovery_code("u", b"a", NOW).await.unwrap());
        assert!(!store.use_recovery_code("u", b"x", NOW).await.unwrap(), "not a code");
        assert!(store.use_recovery_code("u", b"b", NOW).await.unwrap(), "the other code is still good");
        store.delete_totp("u").await.unwrap();
        assert!(store.totp("u").await.unwrap().is_none());
        assert!(store.put_pending_totp("u", b"again", NOW).await.unwrap(), "enrolls afresh once deleted");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn email_code_is_used_once() {
    each_backend("email_code_is_used_once", |store| async move {
        user(&store, "u").await;
        assert!(!store.email_factor("u").await.unwrap());
        store.enable_email_factor("u", NOW).await.unwrap();
        store.enable_email_factor("u", NOW).await.unwrap();
        assert!(store.email_factor("u").await.unwrap());

        assert!(store.put_email_code("u", "login", b"111111", NOW, 600, 60).await.unwrap());
        assert!(!store.put_email_code("u", "login", b"222222", NOW + 10, 600, 60).await.unwrap(), "too soon to resend");
        let answers = race(RACERS, |_| {
            let store = store.clone();
            async move { store.use_email_code("u", "login", b"111111", NOW + 20, 5).await.unwrap() }
        })
        .await;
        assert_eq!(winners(&answers), 1, "{answers:?}");

        // Wrong tries count, and a code with too many of them is dead even when right.
        assert!(store.put_email_code("u", "login", b"333333", NOW + 100, 600, 60).await.unwrap());
        for _ in 0..3 {
            assert!(!store.use_email_code("u", "login", b"000000", NOW + 101, 3).await.unwrap());
        }
        assert!(!store.use_email_code("u", "login", b"333333", NOW + 102, 3).await.unwrap());
        // A resend resets the count; an expired code is dead.
        assert!(store.put_email_code("u", "login", b"444444", NOW + 200, 600, 60).await.unwrap());
        assert!(!store.use_email_code("u", "login", b"444444", NOW + 800, 3).await.unwrap(), "expired");
        assert!(store.put_email_code("u", "login", b"555555", NOW + 300, 600, 60).await.unwrap());
        assert!(!store.use_email_code("u", "enroll", b"555555", NOW + 301, 3).await.unwrap(), "another purpose");
        assert!(store.use_email_code("u", "login", b"555555", NOW + 301, 3).await.unwrap());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mfa_token_is_consumed_once() {
    each_backend("mfa_token_is_consumed_once", |store| async move {
        user(&store, "u").await;
        let token = MfaTokenRow {
            hash: b"mfa".to_vec(),
            user_id: "u".into(),
            client_id: "latchkey-cli".into(),
            scope: "openid".into(),
            device_json: "{}".into(),
            web: true,
            ip: "127.0.0.1".into(),
            user_agent: "ua".into(),
            created_at: NOW,
            expires_at: NOW + 300,
            failures: 0,
            consumed_at: None,
            first_factor: "pwd".into(),
        };
        store.create_mfa_token(&token).await.unwrap();
        assert!(matches!(store.create_mfa_token(&token).await, Err(StoreError::Conflict)));
        assert_eq!(store.fail_mfa_token(b"mfa").await.unwrap(), 1);
        assert_eq!(store.fail_mfa_token(b"nope").await.unwrap(), i64::MAX, "an unknown token counts as spent");
        let answers = race(RACERS, |_| {
            let store = store.clone();
            async move { store.consume_mfa_token(b"mfa", NOW + 1, 5).await.unwrap() }
        })
        .await;
        assert_eq!(winners(&answers), 1, "{answers:?}");
        let stored = store.mfa_token(b"mfa").await.unwrap().expect("token");
        assert_eq!((stored.web, stored.failures, stored.consumed_at), (true, 1, Some(NOW + 1)));

        let mut other = MfaTokenRow { hash: b"mfa2".to_vec(), ..token };
        store.create_mfa_token(&other).await.unwrap();
        assert!(!store.consume_mfa_token(b"mfa2", NOW + 400, 5).await.unwrap(), "expired");
        assert_eq!(store.fail_mfa_token(b"mfa2").await.unwrap(), 1);
        assert!(!store.consume_mfa_token(b"mfa2", NOW + 1, 1).await.unwrap(), "too many failures");
        other.hash = b"mfa3".to_vec();
        store.create_mfa_token(&other).await.unwrap();
        assert!(store.consume_mfa_token(b"mfa3", NOW + 1, 1).await.unwrap());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn device_trust_rotates_once() {
    each_backend("device_trust_rotates_once", |store| async move {
        let (d, _, _) = signed_in(&store, "u").await;
        let trust = TrustRow {
            hash: b"t0".to_vec(),
            user_id: "u".into(),
            device_id: d.id.clone(),
            created_at: NOW,
            expires_at: NOW + 3600,
            last_used_at: NOW,
            ip: "127.0.0.1".into(),
            user_agent: "ua".into(),
        };
        store.create_trust(&trust).await.unwrap();
        assert_eq!(store.device("u", &d.id).await.unwrap().expect("device").trusted_until, Some(NOW + 3600));
        assert_eq!(store.rotate_trust(b"t0", "someone-else", b"tx", "ip", "ua", NOW + 1).await.unwrap(), None, "another user's");
        let answers = race(RACERS, |i| {
            let store = store.clone();
            async move {
                let new = format!("t1-{i}").into_bytes();
                let got = store.rotate_trust(b"t0", "u", &new, "10.0.0.1", "ua2", NOW + 1).await.unwrap();
                (new, got)
            }
        })
        .await;
        let won: Vec<_> = answers.iter().filter(|(_, got)| got.is_some()).collect();
        assert_eq!(won.len(), 1, "{answers:?}");
        assert_eq!(won[0].1.as_deref(), Some(d.id.as_str()));
        // The successor keeps the absolute expiry: it rotates until then, not after.
        assert_eq!(store.rotate_trust(&won[0].0, "u", b"t2", "ip", "ua", NOW + 2).await.unwrap().as_deref(), Some(d.id.as_str()));
        assert_eq!(store.rotate_trust(b"t2", "u", b"t3", "ip", "ua", NOW + 3600).await.unwrap(), None, "expired");

        // Revoking one device's trust, then all of the user's.
        store.create_trust(&TrustRow { hash: b"t4".to_vec(), ..trust.clone() }).await.unwrap();
        assert_eq!(store.revoke_trust("u", Some("another-device")).await.unwrap(), 0);
        assert_eq!(store.revoke_trust("u", Some(&d.id)).await.unwrap(), 2);
        assert_eq!(store.device("u", &d.id).await.unwrap().expect("device").trusted_until, None);
        store.create_trust(&TrustRow { hash: b"t5".to_vec(), ..trust.clone() }).await.unwrap();
        assert_eq!(store.revoke_trust("u", None).await.unwrap(), 1);
        assert_eq!(store.device("u", &d.id).await.unwrap().expect("device").trusted_until, None);
        // A revoked device's trust does not rotate.
        store.create_trust(&TrustRow { hash: b"t6".to_vec(), ..trust }).await.unwrap();
        assert!(store.revoke_device("u", &d.id, NOW + 5).await.unwrap());
        assert_eq!(store.rotate_trust(b"t6", "u", b"t7", "ip", "ua", NOW + 6).await.unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn accounts_and_clients() {
    each_backend("accounts_and_clients", |store| async move {
        let u = user(&store, "u").await;
        assert!(matches!(store.create_user(&u).await, Err(StoreError::Conflict)), "same id");
        let same_email = UserRow { id: "v".into(), ..u.clone() };
        assert!(matches!(store.create_user(&same_email).await, Err(StoreError::Conflict)), "same e-mail");
        assert_eq!(store.user_by_email("u@example.com").await.unwrap().expect("by e-mail").id, "u");
        assert!(store.user_by_email("v@example.com").await.unwrap().is_none());
        store.set_password_hash("u", "h2").await.unwrap();
        assert_eq!(store.user_by_id("u").await.unwrap().expect("by id").password_hash.as_deref(), Some("h2"));

        let passwordless = UserRow { id: "p".into(), email: None, password_hash: None, created_at: NOW, email_verified_at: None };
        store.create_user(&passwordless).await.unwrap();
        assert!(matches!(store.set_email_if_none("p", "u@example.com").await, Err(StoreError::Conflict)), "a taken address");
        assert!(store.set_email_if_none("p", "p@example.com").await.unwrap());
        assert!(!store.set_email_if_none("p", "q@example.com").await.unwrap(), "it has one now");
        assert_eq!(store.user_by_id("p").await.unwrap().expect("p").email.as_deref(), Some("p@example.com"));

        let client = ClientRow { secret_hash: Some(vec![1, 2]), ..app_client("app", "App") };
        store.create_client(&client).await.unwrap();
        assert!(matches!(store.create_client(&client).await, Err(StoreError::Conflict)));
        let got = store.client("app").await.unwrap().expect("client");
        assert_eq!((got.name.as_str(), got.secret_hash), ("App", Some(vec![1, 2])));
        assert!(store.client("latchkey-cli").await.unwrap().is_some(), "seeded");
        assert!(store.client("nope").await.unwrap().is_none());
        assert!(store.clients().await.unwrap().iter().any(|c| c.id == "app"));
        assert!(store.delete_client("app", NOW).await.unwrap());
        assert!(!store.delete_client("app", NOW).await.unwrap(), "removed once");
        assert!(store.client("app").await.unwrap().is_none(), "gone");
        assert!(matches!(store.create_client(&client).await, Err(StoreError::Conflict)), "its id is never reused");
    })
    .await;
}

#[tokio::test]
async fn sessions_and_devices() {
    each_backend("sessions_and_devices", |store| async move {
        let (d, s, _) = signed_in(&store, "u").await;
        assert_eq!(store.session(&s.id).await.unwrap().expect("session").device_id, d.id);
        assert_eq!(store.session_by_web_token(b"web-u-s").await.unwrap().expect("by web token").id, s.id);
        store.touch_session(&s, "10.0.0.9", NOW + 5).await.unwrap();
        assert_eq!(store.session(&s.id).await.unwrap().expect("session").last_used_at, NOW + 5);
        let seen = store.device("u", &d.id).await.unwrap().expect("device");
        assert_eq!((seen.last_seen_at, seen.last_ip.as_str()), (NOW + 5, "10.0.0.9"));
        assert!(store.device("someone-else", &d.id).await.unwrap().is_none());

        // The same device signs in again: its row is kept and marked seen.
        let again = DeviceRow { last_seen_at: NOW + 6, last_ip: "10.0.0.10".into(), name: "renamed".into(), ..d.clone() };
        let s2 = session("u", &d.id, "u-s2", NOW + 1000);
        store.create_session(&again, &s2, None).await.unwrap();
        let seen = store.device("u", &d.id).await.unwrap().expect("device");
        assert_eq!((seen.name.as_str(), seen.last_seen_at, seen.last_ip.as_str()), ("laptop", NOW + 6, "10.0.0.10"));
        let other = device("u", "u-d3");
        store.create_session(&other, &session("u", "u-d3", "u-s3", NOW + 1000), None).await.unwrap();
        assert_eq!(store.count_live_sessions(NOW).await.unwrap(), 3);
        assert_eq!(store.count_live_sessions(NOW + 1000).await.unwrap(), 0);
        assert_eq!(store.devices_for_user("u", NOW).await.unwrap().len(), 2);
        assert!(store.devices_for_user("u", NOW + 1000).await.unwrap().is_empty(), "no live session, no trust");

        assert_eq!(store.revoke_user_sessions("u", Some("u-s2"), "password_changed", NOW + 7).await.unwrap(), 2);
        assert!(store.session("u-s2").await.unwrap().expect("kept").revoked_at.is_none());
        assert_eq!(store.session(&s.id).await.unwrap().expect("s").revoke_reason.as_deref(), Some("password_changed"));
        assert_eq!(store.revoke_user_sessions("u", None, "all", NOW + 8).await.unwrap(), 1);
        assert!(!store.revoke_session("u-s2", "logout", NOW + 9).await.unwrap(), "already revoked");

        let s4 = session("u", "u-d3", "u-s4", NOW + 1000);
        store.create_session(&other, &s4, Some(&refresh("u-s4", b"r4", NOW + 500))).await.unwrap();
        assert!(store.revoke_session("u-s4", "logout", NOW + 9).await.unwrap());
        store.create_session(&other, &session("u", "u-d3", "u-s5", NOW + 1000), None).await.unwrap();
        assert!(!store.revoke_device("someone-else", "u-d3", NOW + 10).await.unwrap());
        assert!(store.revoke_device("u", "u-d3", NOW + 10).await.unwrap());
        assert!(!store.revoke_device("u", "u-d3", NOW + 11).await.unwrap(), "already revoked");
        assert_eq!(store.session("u-s5").await.unwrap().expect("s5").revoke_reason.as_deref(), Some("device_revoked"));
        assert!(store.device("u", "u-d3").await.unwrap().is_none());
        assert!(matches!(store.create_session(&d, &s2, None).await, Err(StoreError::Conflict)), "a session id is unique");
    })
    .await;
}

#[tokio::test]
async fn keys_secrets_audit_and_housekeeping() {
    each_backend("keys_secrets_audit_and_housekeeping", |store| async move {
        assert_eq!(store.secret_or_insert("jwt", b"first").await.unwrap(), b"first");
        assert_eq!(store.secret_or_insert("jwt", b"second").await.unwrap(), b"first");

        let key = |kid: &str, at: i64| SigningKeyRow {
            kid: kid.into(),
            seed: vec![7; 32],
            created_at: at,
            retired_at: None,
            alg: "EdDSA".into(),
        };
        store.insert_first_signing_key(&key("a", 1)).await.unwrap();
        store.insert_first_signing_key(&key("b", 2)).await.unwrap();
        store.rotate_signing_key(&key("c", 3), 3).await.unwrap();
        let keys = store.signing_keys().await.unwrap();
        let listed: Vec<_> = keys.iter().map(|k| (k.kid.as_str(), k.retired_at)).collect();
        assert_eq!(listed, [("c", None), ("a", Some(3))]);
        // One active key per algorithm: an RS256 key neither retires nor is blocked by EdDSA ones.
        let rsa = SigningKeyRow { alg: "RS256".into(), ..key("r", 4) };
        store.insert_first_signing_key(&rsa).await.unwrap();
        store.rotate_signing_key(&SigningKeyRow { alg: "RS256".into(), ..key("s", 5) }, 5).await.unwrap();
        let active: Vec<_> = store.signing_keys().await.unwrap().into_iter().filter(|k| k.retired_at.is_none()).map(|k| k.kid).collect();
        assert_eq!(active, ["s", "c"]);

        user(&store, "u").await;
        for (i, kind) in ["login", "logout", "other"].into_iter().enumerate() {
            let user_id = (kind != "other").then(|| "u".to_owned());
            let e = AuditRow {
                id: 0,
                at: NOW + i as i64,
                kind: kind.into(),
                user_id,
                device_id: None,
                ip: Some("127.0.0.1".into()),
                user_agent: None,
                detail: "{}".into(),
            };
            store.record_audit(&e).await.unwrap();
        }
        let mine: Vec<_> = store.audit_for_user("u", 10).await.unwrap().into_iter().map(|e| e.kind).collect();
        assert_eq!(mine, ["logout", "login"]);
        assert_eq!(store.audit_all(2).await.unwrap().len(), 2);

        assert_eq!(store.login_failures("k").await.unwrap(), None);
        store.record_login_failure("k", NOW).await.unwrap();
        store.record_login_failure("k", NOW + 1).await.unwrap();
        assert_eq!(store.login_failures("k").await.unwrap(), Some((2, NOW + 1)));
        store.clear_login_failures("k").await.unwrap();
        assert_eq!(store.login_failures("k").await.unwrap(), None);

        // Housekeeping: a session dead for long enough goes with its refresh tokens; live ones stay.
        let (_, s, _) = signed_in(&store, "w").await;
        store.record_login_failure("old", NOW).await.unwrap();
        assert!(store.revoke_session(&s.id, "logout", NOW).await.unwrap());
        let deleted = store.sweep(NOW + 2 * 86_400, 86_400).await.unwrap();
        assert!(deleted >= 2, "deleted {deleted}");
        assert!(store.session(&s.id).await.unwrap().is_none());
        assert!(store.refresh_token(b"w-r0").await.unwrap().is_none());
        assert_eq!(store.login_failures("old").await.unwrap(), None);
        assert!(store.user_by_id("w").await.unwrap().is_some());
    })
    .await;
}
