//! Authorization codes and consents on each backend: one redemption per code under a race, and
//! nothing redeemed that is expired, another client's, or whose browser session or device ended.

use super::*;
use latchkey::store::{AuthCodeRow, ConsentRow};

fn code(user_id: &str, s: &SessionRow, hash: &[u8]) -> AuthCodeRow {
    AuthCodeRow {
        code_hash: hash.to_vec(),
        client_id: "latchkey-cli".into(),
        redirect_uri: "https://app.example/cb".into(),
        user_id: user_id.into(),
        browser_session_id: s.id.clone(),
        device_id: s.device_id.clone(),
        scope: "openid".into(),
        nonce: Some("n".into()),
        code_challenge: None,
        auth_time: NOW,
        amr: "pwd".into(),
        created_at: NOW,
        expires_at: NOW + 60,
        used_at: None,
        issued_session_id: None,
    }
}

/// The user let the client in (a code is only redeemed while that holds).
async fn consented(store: &DynStore, user_id: &str) {
    let k = ConsentRow { user_id: user_id.into(), client_id: "latchkey-cli".into(), scope: "openid".into(), granted_at: NOW };
    store.put_consent(&k).await.unwrap();
}

/// The app's session a redemption opens on the browser's device.
fn app_session(d: &DeviceRow, id: &str) -> (SessionRow, RefreshTokenRow) {
    app_session_of(d, id, "latchkey-cli")
}

fn app_session_of(d: &DeviceRow, id: &str, client_id: &str) -> (SessionRow, RefreshTokenRow) {
    let s = SessionRow { web_token_hash: None, client_id: client_id.into(), ..session(&d.user_id, &d.id, id, NOW + 1000) };
    let r = RefreshTokenRow { client_id: client_id.into(), ..refresh(id, format!("rt-{id}").as_bytes(), NOW + 500) };
    (s, r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_code_redemption_wins() {
    each_backend("one_code_redemption_wins", |store| async move {
        let (d, s, _) = signed_in(&store, "u").await;
        consented(&store, "u").await;
        store.create_auth_code(&code("u", &s, b"c1")).await.unwrap();
        let answers = race(RACERS, |i| {
            let (store, d) = (store.clone(), d.clone());
            async move {
                let (s, r) = app_session(&d, &format!("app-{i}"));
                store.redeem_auth_code(b"c1", "latchkey-cli", &d, &s, &r, NOW + 1).await.unwrap().is_some()
            }
        })
        .await;
        assert_eq!(winners(&answers), 1, "{answers:?}");
        let used = store.auth_code(b"c1").await.unwrap().expect("the code");
        assert_eq!(used.used_at, Some(NOW + 1));
        let issued = used.issued_session_id.expect("names the session it opened");
        assert!(store.session(&issued).await.unwrap().is_some(), "that session exists");
    })
    .await;
}

#[tokio::test]
async fn codes_are_bound_to_client_time_session_and_device() {
    each_backend("codes_are_bound_to_client_time_session_and_device", |store| async move {
        let (d, s, _) = signed_in(&store, "u").await;
        let (app, r) = app_session(&d, "app");
        store.create_auth_code(&code("u", &s, b"c")).await.unwrap();
        assert!(store.redeem_auth_code(b"c", "latchkey-cli", &d, &app, &r, NOW + 1).await.unwrap().is_none(), "no consent (revoked)");
        consented(&store, "u").await;
        assert!(store.redeem_auth_code(b"c", "other", &d, &app, &r, NOW + 1).await.unwrap().is_none(), "another client");
        assert!(store.redeem_auth_code(b"c", "latchkey-cli", &d, &app, &r, NOW + 60).await.unwrap().is_none(), "expired");
        assert!(store.session("app").await.unwrap().is_none(), "no session without a redemption");
        store.revoke_session(&s.id, "logout", NOW + 2).await.unwrap();
        assert!(store.redeem_auth_code(b"c", "latchkey-cli", &d, &app, &r, NOW + 3).await.unwrap().is_none(), "the browser signed out");

        let (d2, s2, _) = signed_in(&store, "v").await;
        consented(&store, "v").await;
        let (app2, r2) = app_session(&d2, "app2");
        store.create_auth_code(&code("v", &s2, b"c2")).await.unwrap();
        // Revoking a device revokes its sessions too; the device check stands on its own as well.
        assert!(store.revoke_device("v", &d2.id, NOW + 2).await.unwrap());
        assert!(store.redeem_auth_code(b"c2", "latchkey-cli", &d2, &app2, &r2, NOW + 3).await.unwrap().is_none(), "a revoked device");
        assert!(store.auth_code(b"c2").await.unwrap().expect("kept").used_at.is_none(), "nothing was used up");

        // The positive case on a third user, then a removed client: nothing redeems any more.
        let (d3, s3, _) = signed_in(&store, "w").await;
        consented(&store, "w").await;
        let client = app_client("notes", "Notes");
        store.create_client(&client).await.unwrap();
        store
            .put_consent(&ConsentRow { user_id: "w".into(), client_id: "notes".into(), scope: "openid".into(), granted_at: NOW })
            .await
            .unwrap();
        let notes_code = |hash: &[u8]| AuthCodeRow { client_id: "notes".into(), ..code("w", &s3, hash) };
        store.create_auth_code(&notes_code(b"c3")).await.unwrap();
        store.create_auth_code(&notes_code(b"c4")).await.unwrap();
        let (app3, r3) = app_session_of(&d3, "app3", "notes");
        assert!(store.redeem_auth_code(b"c3", "notes", &d3, &app3, &r3, NOW + 1).await.unwrap().is_some(), "a good code redeems");
        assert!(store.delete_client("notes", NOW + 2).await.unwrap());
        let (app4, r4) = app_session_of(&d3, "app4", "notes");
        assert!(store.redeem_auth_code(b"c4", "notes", &d3, &app4, &r4, NOW + 3).await.unwrap().is_none(), "a removed client");
    })
    .await;
}

#[tokio::test]
async fn revoking_a_consent_ends_the_apps_sessions_only() {
    each_backend("revoking_a_consent_ends_the_apps_sessions_only", |store| async move {
        let (d, s, _) = signed_in(&store, "u").await;
        let client = app_client("notes", "Notes");
        store.create_client(&client).await.unwrap();
        let grant = ConsentRow { user_id: "u".into(), client_id: "notes".into(), scope: "openid".into(), granted_at: NOW };
        store.put_consent(&grant).await.unwrap();
        store.put_consent(&ConsentRow { scope: "email openid".into(), ..grant.clone() }).await.unwrap();
        assert_eq!(store.consent("u", "notes").await.unwrap().expect("granted").scope, "email openid");
        let (app, r) = app_session_of(&d, "app", "notes");
        store.create_session(&d, &app, Some(&r)).await.unwrap();
        let apps = store.apps_on_devices("u", NOW + 1).await.unwrap();
        assert_eq!(apps, [(d.id.clone(), "notes".to_owned(), "Notes".to_owned())]);
        assert_eq!(store.revoke_consent("u", "notes", NOW + 2).await.unwrap(), (true, 1));
        assert!(store.consents_for_user("u").await.unwrap().is_empty());
        assert!(store.session("app").await.unwrap().expect("kept").revoked_at.is_some(), "the app's session ended");
        assert!(store.session(&s.id).await.unwrap().expect("kept").revoked_at.is_none(), "the browser's own did not");
        assert!(store.apps_on_devices("u", NOW + 3).await.unwrap().is_empty());
    })
    .await;
}

/// What the token endpoint reads before it redeems: the code, its device and its account, the
/// same on both backends; a device is found only under the code's own account.
#[tokio::test]
async fn a_codes_context_is_the_code_its_device_and_its_account() {
    each_backend("a_codes_context_is_the_code_its_device_and_its_account", |store| async move {
        let (d, s, _) = signed_in(&store, "u").await;
        store.create_auth_code(&code("u", &s, b"ctx")).await.unwrap();
        let got = store.auth_code_context(b"ctx").await.unwrap().expect("the code");
        assert_eq!(got.code.code_hash, b"ctx");
        assert_eq!(got.code.browser_session_id, s.id);
        assert_eq!(got.device.expect("its device").id, d.id);
        assert_eq!(got.user.expect("its account").id, "u");
        assert!(store.auth_code_context(b"no such code").await.unwrap().is_none());

        // A code naming a device of another account finds no device: a device is read by its
        // owner as well as its id.
        let (_, s2, _) = signed_in(&store, "v").await;
        let stray = AuthCodeRow { device_id: s2.device_id.clone(), ..code("u", &s, b"stray") };
        store.create_auth_code(&stray).await.unwrap();
        let got = store.auth_code_context(b"stray").await.unwrap().expect("the code");
        assert!(got.device.is_none(), "{:?}", got.device);
        assert_eq!(got.user.expect("its account").id, "u");
    })
    .await;
}
