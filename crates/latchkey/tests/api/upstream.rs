//! "Sign in with …" an upstream identity provider, through real HTTP: a REAL OpenID Connect
//! issuer (panva's oidc-provider, `e2e/upstream.mjs`) for what an honest issuer does, a rogue
//! issuer this test controls for the attacks, and GitHub's endpoints for the preset. See
//! `common::upstream`.

use crate::common::upstream::*;
use crate::common::*;
use latchkey::config::{UpstreamKind, UpstreamSettings};

const CLIENT: &str = CORP_CLIENT;
use serde_json::{Value, json};

/// Latchkey with the real issuer as upstream `corp` (and registered there).
async fn with_corp(auto_create: bool) -> Option<(TestApp, Corp)> {
    let corp = Corp::start().await?;
    let issuer = corp.issuer.clone();
    let t = spawn_with(move |s| s.upstreams = vec![corp_settings("corp", &issuer, auto_create)]).await;
    corp.register(CLIENT, &t.url("/login/upstream/corp/callback")).await;
    Some((t, corp))
}

/// A whole sign-in through Corp in `b`: returns Latchkey's answer to the callback.
async fn sign_in(t: &TestApp, b: &reqwest::Client, login: &str) -> reqwest::Response {
    let callback = corp_callback_url(b, &t.base, "/login/upstream/corp?next=/account", login).await;
    assert!(callback.starts_with(&t.url("/login/upstream/corp/callback?")), "{callback}");
    b.get(callback).send().await.unwrap()
}

async fn user_id(t: &TestApp, email: &str) -> String {
    t.app.store.user_by_email(email).await.unwrap().unwrap_or_else(|| panic!("no account {email}")).id
}

async fn audit_kinds(t: &TestApp) -> Vec<(String, Value)> {
    t.app.store.audit_all(200).await.unwrap().into_iter().map(|a| (a.kind, serde_json::from_str(&a.detail).unwrap())).collect()
}

fn has_session_cookie(r: &reqwest::Response) -> bool {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("lk_session=") && !c.to_str().unwrap().starts_with("lk_session=;"))
}

#[tokio::test]
async fn a_verified_identity_creates_an_account_and_signs_in_to_it_again() {
    let Some((t, corp)) = with_corp(true).await else { return };
    let b = browser();
    let r = sign_in(&t, &b, "alice").await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    assert_eq!(location(&r), "/account");
    assert!(has_session_cookie(&r), "signed in");
    let page = b.get(t.url("/account")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("alice@example.com") && page.contains("data-upstream=\"corp\""), "{page}");

    // The account took the verified address; the identity is keyed by issuer and sub.
    let id = user_id(&t, "alice@example.com").await;
    let identity = t.app.store.identity("corp", &corp.issuer, "alice").await.unwrap().expect("linked");
    assert_eq!(identity.user_id, id);
    let kinds = audit_kinds(&t).await;
    assert!(kinds.iter().any(|(k, d)| k == "account_created" && d["upstream"] == "corp"), "{kinds:?}");
    assert!(kinds.iter().any(|(k, d)| k == "login_succeeded" && d["method"] == "upstream:corp"), "{kinds:?}");

    // A second browser (a new upstream session too) lands on the same account; the session's
    // amr names the upstream, and the device record says how it came in.
    let b2 = browser();
    let r = sign_in(&t, &b2, "alice").await;
    assert_eq!(r.status(), 303);
    assert_eq!(t.count_rows("users").await, 1);
    let sessions = t.app.store.revoke_user_sessions(&id, None, "test", t.app.now()).await.unwrap();
    assert_eq!(sessions, 2, "two browsers signed in");
    let devices = t.app.store.devices_for_user(&id, t.app.now()).await.unwrap();
    assert!(devices.iter().all(|d| d.authorized_by == "upstream"), "{devices:?}");
}

#[tokio::test]
async fn the_session_amr_names_the_upstream() {
    let Some((t, _corp)) = with_corp(true).await else { return };
    let b = browser();
    assert_eq!(sign_in(&t, &b, "carol").await.status(), 303);
    let id = user_id(&t, "carol@example.com").await;
    let amr: Vec<String> = if t.db_url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&t.db_url).await.unwrap();
        sqlx::query_scalar("SELECT amr FROM sessions WHERE user_id = ?").bind(&id).fetch_all(&pool).await.unwrap()
    } else {
        let pool = sqlx::PgPool::connect(&t.db_url).await.unwrap();
        sqlx::query_scalar("SELECT amr FROM sessions WHERE user_id = $1").bind(&id).fetch_all(&pool).await.unwrap()
    };
    assert_eq!(amr, ["corp"]);
}

#[tokio::test]
async fn an_unverified_address_of_an_existing_account_neither_links_nor_signs_in() {
    let Some((t, corp)) = with_corp(true).await else { return };
    t.register("bob@example.com").await; // bob's address at Corp is unverified
    let b = browser();
    let r = sign_in(&t, &b, "bob").await;
    assert_eq!(r.status(), 403);
    assert!(!has_session_cookie(&r));
    let page = r.text().await.unwrap();
    assert!(page.contains("has not verified the address bob@example.com, so it cannot be used here"), "{page}");
    assert!(!page.contains("account here has"), "the page does not say an account has the address");
    assert!(t.app.store.identity("corp", &corp.issuer, "bob").await.unwrap().is_none(), "no link");
    assert_eq!(t.count_rows("identities").await, 0);
    assert_eq!(t.count_rows("sessions").await, 0);
    let kinds = audit_kinds(&t).await;
    assert!(kinds.iter().any(|(k, d)| k == "upstream_login_refused" && d["reason"] == "unverified_email"), "{kinds:?}");
}

#[tokio::test]
async fn an_unverified_address_alone_makes_an_account_without_it() {
    let Some((t, corp)) = with_corp(true).await else { return };
    let b = browser();
    assert_eq!(sign_in(&t, &b, "bob").await.status(), 303);
    let identity = t.app.store.identity("corp", &corp.issuer, "bob").await.unwrap().unwrap();
    let user = t.app.store.user_by_id(&identity.user_id).await.unwrap().unwrap();
    assert_eq!(user.email, None, "an unverified address is not the account's");
}

#[tokio::test]
async fn unknown_identities_get_no_account_unless_the_operator_allows_it() {
    let Some((t, _corp)) = with_corp(false).await else { return };
    let b = browser();
    let r = sign_in(&t, &b, "carol").await;
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("does not make one from it"));
    assert_eq!(t.count_rows("users").await, 0);
}

/// csrf from a page of this browser.
async fn csrf(b: &reqwest::Client, url: &str) -> (String, String) {
    let page = b.get(url).send().await.unwrap().text().await.unwrap();
    let csrf =
        page.split("name=\"csrf\" value=\"").nth(1).unwrap_or_else(|| panic!("no csrf in {page}")).split('"').next().unwrap().to_owned();
    (csrf, page)
}

#[tokio::test]
async fn a_verified_address_of_an_account_is_linked_only_after_signing_in_to_that_account() {
    let Some((t, corp)) = with_corp(true).await else { return };
    t.register("alice@example.com").await;
    let local = user_id(&t, "alice@example.com").await;
    let b = browser();
    let r = sign_in(&t, &b, "alice").await;
    assert_eq!(r.status(), 200, "the page that asks to prove the account");
    assert!(!has_session_cookie(&r));
    let page = r.text().await.unwrap();
    assert!(page.contains("You already have an account here") && page.contains("/login?next=%2Faccount%2Fidentities%2Fconfirm"), "{page}");
    assert_eq!(t.count_rows("identities").await, 0, "nothing linked by the address alone");

    // The confirmation needs the account's own sign-in first.
    let r = b.get(t.url("/account/identities/confirm")).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with("/login?next="));
    let (token, _) = csrf(&b, &t.url("/login?next=%2Faccount%2Fidentities%2Fconfirm")).await;
    let r = b
        .post(t.url("/login"))
        .form(&[("email", "alice@example.com"), ("password", PASSWORD), ("next", "/account/identities/confirm"), ("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/account/identities/confirm");
    let (token, page) = csrf(&b, &t.url("/account/identities/confirm")).await;
    assert!(page.contains("Link Corp to your account?"), "{page}");
    let r = b.post(t.url("/account/identities/confirm")).form(&[("decision", "approve"), ("csrf", &token)]).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let identity = t.app.store.identity("corp", &corp.issuer, "alice").await.unwrap().expect("linked now");
    assert_eq!(identity.user_id, local);
    assert!(audit_kinds(&t).await.iter().any(|(k, _)| k == "identity_linked"));

    // From now on Corp signs in to that account.
    let r = sign_in(&t, &browser(), "alice").await;
    assert_eq!(r.status(), 303);
    assert_eq!(t.count_rows("users").await, 1);
}

#[tokio::test]
async fn an_upstream_changing_the_email_of_a_linked_sub_changes_nothing_here() {
    let Some((t, corp)) = with_corp(true).await else { return };
    assert_eq!(sign_in(&t, &browser(), "alice").await.status(), 303);
    let id = user_id(&t, "alice@example.com").await;
    // Someone else's verified address now, at the upstream (nOAuth).
    t.register("mallory@example.com").await;
    corp.set_user("alice", "mallory@example.com", true).await;
    let b = browser();
    assert_eq!(sign_in(&t, &b, "alice").await.status(), 303);
    let page = b.get(t.url("/account")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Signed in as <strong>alice@example.com</strong>"), "the same account: {page}");
    assert_eq!(t.app.store.user_by_id(&id).await.unwrap().unwrap().email.as_deref(), Some("alice@example.com"), "not rewritten");
    let identity = t.app.store.identity("corp", &corp.issuer, "alice").await.unwrap().unwrap();
    assert_eq!(identity.email.as_deref(), Some("mallory@example.com"), "what the upstream says now, for the account page");
    assert_eq!(identity.user_id, id);
}

#[tokio::test]
async fn a_linked_sign_in_owes_the_second_factor_like_a_password() {
    let Some((t, corp)) = with_corp(true).await else { return };
    let (secret, _, _) = crate::mfa::with_totp(&t).await;
    let ann = user_id(&t, "ann@example.com").await;
    corp.set_user("ann", "ann@example.com", true).await;
    // Linked beforehand (how it got linked is the other tests').
    let now = t.app.now();
    let row = latchkey::store::IdentityRow {
        id: "identity-ann".into(),
        user_id: ann.clone(),
        upstream: "corp".into(),
        issuer: corp.issuer.clone(),
        subject: "ann".into(),
        email: None,
        created_at: now,
        last_used_at: now,
    };
    t.app.store.link_identity(&row).await.unwrap();
    let b = browser();
    let r = sign_in(&t, &b, "ann").await;
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "/mfa?next=/account");
    assert!(!has_session_cookie(&r), "no session before the second factor");
    let mfa = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .find_map(|c| c.to_str().unwrap().strip_prefix("lk_mfa=").map(|v| v.split(';').next().unwrap().to_owned()))
        .expect("the mfa cookie");
    // The next time step: the confirmation at enrolment spent the current one.
    let code = crate::common::totp::totp_at(&secret, t.app.now() + 30);
    // A browser's pending login finishes in the browser, not through the API.
    assert_eq!(crate::mfa::verify(&t, &mfa, "totp", &code, false).await.status(), 401);
    let (token, _) = csrf(&b, &t.url("/mfa?next=/account")).await;
    let r =
        b.post(t.url("/mfa")).form(&[("method", "totp"), ("code", &code), ("next", "/account"), ("csrf", &token)]).send().await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    assert!(has_session_cookie(&r));
    let amr: Vec<String> = t.app.store.devices_for_user(&ann, t.app.now()).await.unwrap().iter().map(|d| d.authorized_by.clone()).collect();
    assert!(amr.contains(&"upstream".to_owned()), "the browser's device came in through the upstream: {amr:?}");
    let kinds = audit_kinds(&t).await;
    assert!(kinds.iter().any(|(k, d)| k == "login_second_factor_required" && d["method"] == "upstream:corp"), "{kinds:?}");
    assert!(kinds.iter().any(|(k, d)| k == "login_succeeded" && d["method"] == "upstream:corp+mfa"), "{kinds:?}");
}

#[tokio::test]
async fn the_answer_must_come_back_to_the_browser_that_started_it_and_only_once() {
    let Some((t, _corp)) = with_corp(true).await else { return };
    let b = browser();
    let callback = corp_callback_url(&b, &t.base, "/login/upstream/corp", "carol").await;
    // Missing and forged states.
    let no_state = callback.split("&state=").next().unwrap().replace("state=", "x=");
    let r = b.get(&no_state).send().await.unwrap();
    assert_eq!(r.status(), 400, "{no_state}");
    let forged = url_with(&callback, "state", "forged-forged-forged");
    assert_eq!(b.get(&forged).send().await.unwrap().status(), 400);
    // The browser's own answer works once; a replay of the same URL does not.
    let first = b.get(&callback).send().await.unwrap();
    assert_eq!(first.status(), 303, "{}", first.text().await.unwrap_or_default());
    assert_eq!(b.get(&callback).send().await.unwrap().status(), 400, "replayed");

    // A leaked callback URL (history, a proxy's log) is worthless elsewhere, even to someone who
    // copies the state into a cookie of their own: the cookie holds another secret. And the
    // attempt spends the sign-in, so the leak cannot be tried again.
    let b = browser();
    let callback = corp_callback_url(&b, &t.base, "/login/upstream/corp", "alice").await;
    let state = url::Url::parse(&callback).unwrap().query_pairs().find(|(k, _)| k == "state").unwrap().1.to_string();
    let thief = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = thief.get(&callback).header("cookie", format!("lk_upstream={state}")).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("not started in this browser"));
    assert_eq!(b.get(&callback).send().await.unwrap().status(), 400, "spent by the attempt");
    assert_eq!(t.count_rows("users").await, 1, "only carol's account");
    let kinds = audit_kinds(&t).await;
    assert!(kinds.iter().any(|(k, d)| k == "upstream_login_failed" && d["reason"] == "browser_mismatch"), "{kinds:?}");
}

fn url_with(u: &str, key: &str, value: &str) -> String {
    let mut url = url::Url::parse(u).unwrap();
    let pairs: Vec<(String, String)> =
        url.query_pairs().map(|(k, v)| (k.to_string(), if k == key { value.to_owned() } else { v.to_string() })).collect();
    url.query_pairs_mut().clear().extend_pairs(pairs);
    url.to_string()
}

#[tokio::test]
async fn an_answer_for_one_upstream_is_refused_at_anothers_callback() {
    let Some(corp) = Corp::start().await else { return };
    let issuer = corp.issuer.clone();
    let t = spawn_with(move |s| s.upstreams = vec![corp_settings("corp", &issuer, true), corp_settings("corp2", &issuer, true)]).await;
    corp.register(CLIENT, &t.url("/login/upstream/corp/callback")).await;
    let b = browser();
    let callback = corp_callback_url(&b, &t.base, "/login/upstream/corp", "carol").await;
    let elsewhere = callback.replace("/login/upstream/corp/callback", "/login/upstream/corp2/callback");
    let r = b.get(&elsewhere).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("another provider"));
    assert_eq!(t.count_rows("users").await, 0);
    assert!(audit_kinds(&t).await.iter().any(|(k, d)| k == "upstream_login_failed" && d["reason"] == "wrong_callback"));
}

#[tokio::test]
async fn a_person_who_cancels_upstream_gets_a_page_that_says_so() {
    let Some((t, _corp)) = with_corp(true).await else { return };
    let b = browser();
    let r = b.get(t.url("/login/upstream/corp")).send().await.unwrap();
    let (page_url, _, page) = follow(&b, location(&r), &t.base).await.unwrap_err();
    let abort = page.split("action=\"").nth(2).unwrap().split('"').next().unwrap().to_owned();
    let r = b.post(resolve(&page_url, &abort)).send().await.unwrap();
    let callback = follow(&b, resolve(&page_url, &location(&r)), &t.base).await.unwrap();
    assert!(callback.contains("error=access_denied"), "{callback}");
    let r = b.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("Corp did not sign you in"));
}

#[tokio::test]
async fn an_issuer_that_is_down_gets_a_clear_page_not_a_500() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let t = spawn_with(move |s| s.upstreams = vec![corp_settings("corp", &dead, true)]).await;
    let login = t.http.get(t.url("/login")).send().await.unwrap().text().await.unwrap();
    assert!(login.contains("Sign in with Corp"), "the button is there while the issuer is down");
    let r = t.http.get(t.url("/login/upstream/corp")).send().await.unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.text().await.unwrap().contains("Corp cannot be reached right now"));
    assert_eq!(t.http.get(t.url("/login/upstream/nosuch")).send().await.unwrap().status(), 404);
    // Each start writes a row: one IP gets as many as it gets password logins, then 429.
    let mut statuses = Vec::new();
    for _ in 0..40 {
        statuses.push(t.http.get(t.url("/login/upstream/corp")).send().await.unwrap().status().as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 502 || *s == 429), "{statuses:?}");
}

#[tokio::test]
async fn linking_another_way_in_needs_a_recent_sign_in() {
    let Some((t, _corp)) = with_corp(true).await else { return };
    t.register("erin@example.com").await;
    let b = browser();
    let (token, _) = csrf(&b, &t.url("/login")).await;
    let r = b.post(t.url("/login")).form(&[("email", "erin@example.com"), ("password", PASSWORD), ("csrf", &token)]).send().await.unwrap();
    assert_eq!(r.status(), 303);
    t.clock.advance(t.app.settings.mfa.recent_auth_secs as i64 + 1);
    let (token, _) = csrf(&b, &t.url("/account")).await;
    let r = b.post(t.url("/account/identities/link/corp")).form(&[("csrf", &token)]).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("Sign in again first"));
    assert_eq!(t.count_rows("upstream_states").await, 0, "nothing sent upstream");
}

#[tokio::test]
async fn identities_are_linked_from_the_account_page_and_unlinked_but_never_the_last_way_in() {
    let Some((t, corp)) = with_corp(true).await else { return };
    // A local account with a password links Corp while signed in.
    t.register("dana@example.com").await;
    let b = browser();
    let (token, _) = csrf(&b, &t.url("/login")).await;
    let r = b.post(t.url("/login")).form(&[("email", "dana@example.com"), ("password", PASSWORD), ("csrf", &token)]).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let (token, page) = csrf(&b, &t.url("/account")).await;
    assert!(page.contains("Link Corp"), "{page}");
    let r = b.post(t.url("/account/identities/link/corp")).form(&[("csrf", &token)]).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let callback = through_corp_login(&b, &t.base, location(&r), "carol").await;
    // Delivered by another signed-in browser, the link is refused: it belongs to dana's sign-in.
    let r = b.get(&callback).send().await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    assert_eq!(location(&r), "/account");
    let dana = user_id(&t, "dana@example.com").await;
    let identity = t.app.store.identity("corp", &corp.issuer, "carol").await.unwrap().expect("linked");
    assert_eq!(identity.user_id, dana, "linked to the signed-in account, not by carol's address");
    assert!(t.app.store.user_by_email("carol@example.com").await.unwrap().is_none());

    // Through the API too: listed, and unlinked (dana has a password, so it is not the last way in).
    let at = s(&t.login("dana@example.com", "Laptop").await, "access_token");
    let list: Value = t.get_auth("/api/v1/identities", &at).await.json().await.unwrap();
    assert_eq!(list[0]["upstream"], "corp");
    assert_eq!(list[0]["email"], "carol@example.com");
    let r = t.http.delete(t.url(&format!("/api/v1/identities/{}", identity.id))).bearer_auth(&at).send().await.unwrap();
    assert_eq!(r.status(), 204);
    let r = t.http.delete(t.url(&format!("/api/v1/identities/{}", identity.id))).bearer_auth(&at).send().await.unwrap();
    assert_eq!(r.status(), 404);

    // An account made by Corp has no other way in: its identity stays.
    let b2 = browser();
    assert_eq!(sign_in(&t, &b2, "alice").await.status(), 303);
    let alice = t.app.store.identity("corp", &corp.issuer, "alice").await.unwrap().unwrap();
    let (token, _) = csrf(&b2, &t.url("/account")).await;
    let r = b2.post(t.url(&format!("/account/identities/{}/unlink", alice.id))).form(&[("csrf", &token)]).send().await.unwrap();
    assert_eq!(r.status(), 409);
    assert!(r.text().await.unwrap().contains("only way to sign in"));
    assert!(t.app.store.identity("corp", &corp.issuer, "alice").await.unwrap().is_some());
    // Someone else's identity is not found, not removed.
    let r = t.http.delete(t.url(&format!("/api/v1/identities/{}", alice.id))).bearer_auth(&at).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

// --- attacks through the rogue issuer -----------------------------------------------------

async fn with_rogue() -> (TestApp, Rogue) {
    let rogue = Rogue::start().await;
    let issuer = rogue.issuer.clone();
    let t = spawn_with(move |s| s.upstreams = vec![corp_settings("rogue", &issuer, true)]).await;
    (t, rogue)
}

async fn rogue_sign_in(t: &TestApp) -> reqwest::Response {
    let b = browser();
    let r = b.get(t.url("/login/upstream/rogue")).send().await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let callback = follow(&b, location(&r), &t.base).await.unwrap();
    b.get(callback).send().await.unwrap()
}

#[tokio::test]
async fn id_tokens_that_fail_a_check_sign_no_one_in() {
    let (t, rogue) = with_rogue().await;
    // The harness can succeed: an honest token signs in.
    let r = rogue_sign_in(&t).await;
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    assert_eq!(t.count_rows("users").await, 1);
    rogue.set(|s| s.sub = "eve2".into());
    for (mode, says) in [
        (Mode::WrongAudience, "audience"),
        (Mode::WrongIssuer, "issued by"),
        (Mode::Expired, "expired"),
        (Mode::BadSignature, "signature"),
        (Mode::AlgNone, "cannot be read"),
        (Mode::SharedSecret, "shared secret"),
        (Mode::ReplayedNonce, "nonce"),
        (Mode::WrongIssParam, "another issuer"),
    ] {
        rogue.set(|s| s.mode = mode);
        let r = rogue_sign_in(&t).await;
        assert_eq!(r.status(), 403, "{mode:?}");
        assert!(!has_session_cookie(&r), "{mode:?}");
        let page = r.text().await.unwrap();
        assert!(page.contains(says), "{mode:?}: {page}");
    }
    assert_eq!(t.count_rows("users").await, 1, "no account from any of them");
    assert_eq!(t.count_rows("identities").await, 1);
    let failures = audit_kinds(&t).await.into_iter().filter(|(k, _)| k == "upstream_login_failed").count();
    assert_eq!(failures, 8);
}

// --- the GitHub preset ----------------------------------------------------------------------

#[tokio::test]
async fn github_signs_in_by_its_numeric_id_with_the_primary_verified_address() {
    let secret = "gh-secret";
    let gh = GitHubStandIn::start(
        secret,
        4242,
        json!([{ "email": "old@example.com", "primary": false, "verified": true }, { "email": "octo@example.com", "primary": true, "verified": true }]),
    )
    .await;
    let web = gh.url.clone();
    let t = spawn_with(move |s| {
        s.upstreams = vec![UpstreamSettings {
            id: "github".into(),
            kind: UpstreamKind::Github,
            issuer: web.clone(),
            client_id: "Iv1.standin".into(),
            client_secret: secret.into(),
            scopes: vec!["read:user".into(), "user:email".into()],
            display_name: "GitHub".into(),
            auto_create: true,
            authorization_endpoint: format!("{web}/login/oauth/authorize"),
            token_endpoint: format!("{web}/login/oauth/access_token"),
            api_url: format!("{web}/api/v3"),
        }]
    })
    .await;
    let login = t.http.get(t.url("/login")).send().await.unwrap().text().await.unwrap();
    assert!(login.contains("Sign in with GitHub"));
    let b = browser();
    let r = b.get(t.url("/login/upstream/github")).send().await.unwrap();
    let callback = follow(&b, location(&r), &t.base).await.unwrap();
    let r = b.get(callback).send().await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap_or_default());
    let identity = t.app.store.identity("github", &gh.url, "4242").await.unwrap().expect("keyed by the numeric id");
    let user = t.app.store.user_by_id(&identity.user_id).await.unwrap().unwrap();
    assert_eq!(user.email.as_deref(), Some("octo@example.com"));

    // An unverified primary address is not taken; a wrong secret is a refusal, not a 500.
    gh.state.lock().unwrap().user_id = 5151;
    gh.state.lock().unwrap().emails = json!([{ "email": "octo2@example.com", "primary": true, "verified": false }]);
    let b = browser();
    let r = b.get(t.url("/login/upstream/github")).send().await.unwrap();
    let callback = follow(&b, location(&r), &t.base).await.unwrap();
    assert_eq!(b.get(callback).send().await.unwrap().status(), 303);
    let identity = t.app.store.identity("github", &gh.url, "5151").await.unwrap().unwrap();
    assert_eq!(t.app.store.user_by_id(&identity.user_id).await.unwrap().unwrap().email, None);
    gh.state.lock().unwrap().client_secret = "rotated".into();
    let b = browser();
    let r = b.get(t.url("/login/upstream/github")).send().await.unwrap();
    let callback = follow(&b, location(&r), &t.base).await.unwrap();
    let r = b.get(callback).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("GitHub refused"));
}

// --- with the rest of the server ------------------------------------------------------------

#[tokio::test]
async fn an_upstream_sign_in_approves_a_device_grant_a_qr_login_and_a_pairing_and_signs_in_to_an_app() {
    let Some(corp) = Corp::start().await else { return };
    let issuer = corp.issuer.clone();
    let t = spawn_with(move |s| {
        s.upstreams = vec![corp_settings("corp", &issuer, true)];
        s.device.interval_secs = 1;
    })
    .await;
    corp.register(CLIENT, &t.url("/login/upstream/corp/callback")).await;

    // A TV's code, opened in a browser that is not signed in: /login, "Sign in with Corp" with
    // the page to come back to, the upstream, and back to the code.
    let d = t.device_authorization().await;
    let code = s(&d, "user_code");
    let r = t.http.get(t.url(&format!("/device?user_code={code}"))).send().await.unwrap();
    let login = location(&r);
    let page = t.http.get(t.url(&login)).send().await.unwrap().text().await.unwrap();
    let button = page.split("class=\"button upstream\" href=\"").nth(1).expect("the Corp button").split('"').next().unwrap();
    let button = button.replace("&amp;", "&").replace("&#x2f;", "/").replace("&#x3d;", "=").replace("&#x3f;", "?");
    let callback = corp_callback_url(&t.http, &t.base, &button, "carol").await;
    let r = t.http.get(callback).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), format!("/device?user_code={code}"), "back to the code");
    let (token, _) = csrf(&t.http, &t.url(&location(&r))).await;
    let confirm = t.post_form("/device", &[("user_code", &code), ("csrf", &token)]).await;
    assert_eq!(confirm.status(), 200);
    let done =
        t.post_form("/device/decision", &[("user_code", &code), ("csrf", &token), ("decision", "approve"), ("device_name", "TV")]).await;
    assert_eq!(done.status(), 200);
    t.clock.advance(2);
    assert_eq!(t.poll(&s(&d, "device_code")).await.status(), 200, "the TV gets its tokens");

    // The same browser approves a QR login shown elsewhere, from the phone's page.
    let other = reqwest::Client::new();
    let qr: Value = other.post(t.url("/api/v1/qr-logins")).send().await.unwrap().json().await.unwrap();
    let (qr_id, qr_secret) = (s(&qr, "id"), s(&qr, "secret"));
    let (token, page) = csrf(&t.http, &t.url(&format!("/q/{qr_id}"))).await;
    assert!(page.contains(&s(&qr, "match_code")), "the phone page offers the number");
    let r = t.post_form(&format!("/q/{qr_id}/approve"), &[("csrf", &token), ("match_code", &s(&qr, "match_code"))]).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    let status: Value = other
        .get(t.url(&format!("/api/v1/qr-logins/{qr_id}/status")))
        .header("x-qr-secret", &qr_secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["type"], "approved", "{status}");

    // The same browser shows a pairing code on /pair, a new device types it, the browser allows it.
    let (token, _) = csrf(&t.http, &t.url("/pair")).await;
    let page = t.post_form("/pair", &[("csrf", &token)]).await.text().await.unwrap();
    let pairing_id = page.split("data-id=\"").nth(1).expect("the pairing's id").split('"').next().unwrap().to_owned();
    let code = page.split("id=\"code\">").nth(1).expect("the code").split('<').next().unwrap().to_owned();
    let r = t.post_json("/api/v1/pairing-codes/redeem", json!({ "code": code, "device": { "name": "Tablet" } })).await;
    assert!(r.status().is_success(), "{}", r.text().await.unwrap_or_default());
    let r = t.post_form(&format!("/pair/{pairing_id}/approve"), &[("csrf", &token)]).await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    assert!(r.text().await.unwrap().contains("Device allowed"));

    // The same browser signs in to an app; its id_token says how the person signed in.
    crate::apps::add_app(&t, "notes", false, latchkey::keys::SigningAlg::EdDSA).await;
    let q = crate::apps::authorize(&t, &crate::apps::authorize_url(&t, "notes", &[])).await;
    let r = crate::apps::exchange(&t, "notes", None, &q["code"], Some(crate::apps::VERIFIER)).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let payload = s(&body, "id_token").split('.').nth(1).unwrap().to_owned();
    let claims: Value =
        serde_json::from_slice(&base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload).unwrap()).unwrap();
    assert_eq!(claims["amr"], json!(["corp"]), "{claims}");
    assert_eq!(claims["email"], "carol@example.com");
}
