//! Apps signing their users in through Latchkey (authorization code + PKCE, OpenID Connect),
//! driven as a browser and an app would over real HTTP; and the attacks on it.

use crate::common::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use latchkey::domain::pkce::challenge_of;
use latchkey::keys::SigningAlg;
use latchkey::service::clients::{Consent, NewClient};
use serde_json::Value;
use std::collections::HashMap;

pub const REDIRECT: &str = "https://app.example/cb";
pub const VERIFIER: &str = "a-verifier-of-at-least-forty-three-characters-0123456789";

pub async fn add_app(t: &TestApp, id: &str, confidential: bool, alg: SigningAlg) -> Option<String> {
    let new = NewClient {
        id: id.into(),
        name: format!("App {id}"),
        confidential,
        redirect_uris: vec![REDIRECT.into(), "http://127.0.0.1/native".into()],
        post_logout_redirect_uris: vec!["https://app.example/bye".into()],
        scopes: None,
        consent: Consent::Auto,
        id_token_alg: alg,
        introspects_any: false,
    };
    latchkey::service::clients::create(&t.app, new).await.unwrap()
}

pub fn csrf_of(page: &str) -> String {
    page.split("name=\"csrf\" value=\"").nth(1).expect("a csrf field").split('"').next().unwrap().to_owned()
}

fn hidden(page: &str, name: &str) -> String {
    let raw = page.split(&format!("name=\"{name}\" value=\"")).nth(1).expect("the field").split('"').next().unwrap();
    raw.replace("&amp;", "&").replace("&#x27;", "'").replace("&quot;", "\"").replace("&lt;", "<").replace("&gt;", ">").replace("&#38;", "&")
}

/// Signs the browser (the test's cookie jar) in through `/login`.
pub async fn web_login(t: &TestApp, email: &str) {
    let page = t.http.get(t.url("/login")).send().await.unwrap().text().await.unwrap();
    let r = t.post_form("/login", &[("email", email), ("password", PASSWORD), ("csrf", &csrf_of(&page))]).await;
    assert_eq!(r.status(), 303, "web login");
}

pub fn authorize_url(t: &TestApp, client_id: &str, extra: &[(&str, &str)]) -> String {
    let challenge = challenge_of(VERIFIER);
    let mut q: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("scope", "openid email"),
        ("state", "st-1"),
        ("nonce", "n-1"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    for (k, v) in extra {
        q.retain(|(name, _)| name != k);
        if !v.is_empty() {
            q.push((k, v));
        }
    }
    let query = serde_urlencoded::to_string(&q).unwrap();
    t.url(&format!("/oauth/authorize?{query}"))
}

fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default()
}

fn query_of(url: &str) -> HashMap<String, String> {
    let q = url.split_once('?').map(|(_, q)| q).unwrap_or("");
    serde_urlencoded::from_str(q).unwrap()
}

/// Follows an authorization request as a signed-in browser, allowing on the consent page if it
/// comes; returns the redirect's query.
pub async fn authorize(t: &TestApp, url: &str) -> HashMap<String, String> {
    let r = t.http.get(url).send().await.unwrap();
    let r = if r.status() == 200 {
        let page = r.text().await.unwrap();
        assert!(page.contains("Let App"), "the consent page names the app: {page}");
        let form = [("csrf", csrf_of(&page)), ("request", hidden(&page, "request")), ("decision", "approve".into())];
        t.http.post(t.url("/oauth/authorize/decision")).form(&form).send().await.unwrap()
    } else {
        r
    };
    assert_eq!(r.status(), 303, "redirected");
    let loc = location(&r);
    assert!(loc.starts_with(REDIRECT), "back to the app: {loc}");
    query_of(&loc)
}

pub async fn exchange(t: &TestApp, client_id: &str, secret: Option<&str>, code: &str, verifier: Option<&str>) -> reqwest::Response {
    let mut form = vec![("grant_type", "authorization_code"), ("code", code), ("redirect_uri", REDIRECT), ("client_id", client_id)];
    if let Some(v) = verifier {
        form.push(("code_verifier", v));
    }
    let mut req = reqwest::Client::new().post(t.url("/oauth/token"));
    if let Some(s) = secret {
        req = req.basic_auth(client_id, Some(s));
        form.retain(|(k, _)| *k != "client_id");
    }
    req.form(&form).send().await.unwrap()
}

fn claims_of(jwt: &str) -> Value {
    serde_json::from_slice(&B64.decode(jwt.split('.').nth(1).unwrap()).unwrap()).unwrap()
}

#[tokio::test]
async fn an_app_signs_a_browser_in_with_code_pkce_and_an_id_token() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    add_app(&t, "notes", false, SigningAlg::RS256).await;
    // Not signed in: to /login, coming back to the same authorization request.
    let url = authorize_url(&t, "notes", &[]);
    let r = t.http.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with("/login?next=/oauth/authorize?"), "{}", location(&r));
    // A login_hint fills in the e-mail on /login.
    let hinted = t.http.get(authorize_url(&t, "notes", &[("login_hint", "ann@example.com")])).send().await.unwrap();
    let page = t.http.get(t.url(&location(&hinted))).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("value=\"ann@example.com\""), "the hint is filled in");
    web_login(&t, "ann@example.com").await;
    let q = authorize(&t, &url).await;
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], t.base, "RFC 9207");
    let r = exchange(&t, "notes", None, &q["code"], Some(VERIFIER)).await;
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    for k in ["access_token", "refresh_token", "id_token", "expires_in"] {
        assert!(!tokens[k].is_null(), "{k} in {tokens}");
    }
    let id = claims_of(&s(&tokens, "id_token"));
    let user = t.app.store.user_by_email("ann@example.com").await.unwrap().unwrap();
    assert_eq!(id["iss"], t.base);
    assert_eq!(id["sub"], user.id);
    assert_eq!(id["aud"], "notes");
    assert_eq!(id["nonce"], "n-1");
    assert_eq!(id["email"], "ann@example.com");
    assert_eq!(id["amr"], serde_json::json!(["pwd"]));
    let header: Value = serde_json::from_slice(&B64.decode(s(&tokens, "id_token").split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(id["at_hash"], latchkey::service::code_grant::at_hash(SigningAlg::RS256, &s(&tokens, "access_token")));
    for c in ["exp", "iat", "auth_time", "sid"] {
        assert!(!id[c].is_null(), "claim {c}");
    }
    // The app's token is for the app, not for acting on the account.
    for path in ["/api/v1/devices", "/api/v1/apps", "/api/v1/audit"] {
        assert_eq!(t.get_auth(path, &s(&tokens, "access_token")).await.status(), 403, "{path} with an app's token");
    }
    let r = t.http.delete(t.url("/api/v1/apps/notes")).bearer_auth(s(&tokens, "access_token")).send().await.unwrap();
    assert_eq!(r.status(), 403);
    // Userinfo with the access token; the app's session sits on the browser's device record.
    let info: Value = t.get_auth("/oauth/userinfo", &s(&tokens, "access_token")).await.json().await.unwrap();
    assert_eq!((info["sub"].as_str(), info["email"].as_str()), (Some(user.id.as_str()), Some("ann@example.com")));
    let phone = t.login("ann@example.com", "Phone").await;
    let devices: Value = t.get_auth("/api/v1/devices", &s(&phone, "access_token")).await.json().await.unwrap();
    let browser = devices.as_array().unwrap().iter().find(|d| !d["apps"].as_array().unwrap().is_empty()).expect("a device with the app");
    assert_eq!(browser["apps"][0]["client_id"], "notes");
    assert_eq!(devices.as_array().unwrap().len(), 2, "no new device for the app: the browser and the phone");
    // The refresh token rotates as any other.
    let r = t
        .post_form(
            "/oauth/token",
            &[("grant_type", "refresh_token"), ("refresh_token", &s(&tokens, "refresh_token")), ("client_id", "notes")],
        )
        .await;
    assert_eq!(r.status(), 200);
    // Consent is remembered: the second authorization goes straight back.
    let again = t.http.get(authorize_url(&t, "notes", &[("state", "st-2")])).send().await.unwrap();
    assert_eq!(again.status(), 303);
    assert_eq!(query_of(&location(&again))["state"], "st-2");
    let kinds: Vec<String> = t.app.store.audit_for_user(&user.id, 50).await.unwrap().into_iter().map(|e| e.kind).collect();
    for k in ["app_consent_granted", "app_authorized"] {
        assert!(kinds.contains(&k.to_owned()), "{k} audited: {kinds:?}");
    }
    // Apps with access, and taking it away ends the app's tokens at once.
    let apps: Value = t.get_auth("/api/v1/apps", &s(&phone, "access_token")).await.json().await.unwrap();
    assert_eq!(apps[0]["client_id"], "notes");
    let r = t.http.delete(t.url("/api/v1/apps/notes")).bearer_auth(s(&phone, "access_token")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(t.get_auth("/oauth/userinfo", &s(&tokens, "access_token")).await.status(), 401);
    let kinds: Vec<String> = t.app.store.audit_for_user(&user.id, 50).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&"app_consent_revoked".to_owned()));
    // And the consent page comes back.
    assert_eq!(t.http.get(authorize_url(&t, "notes", &[])).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn redirect_uri_variants_are_refused_on_our_page_and_never_followed() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    add_app(&t, "notes", false, SigningAlg::RS256).await;
    web_login(&t, "ann@example.com").await;
    let variants = [
        "https://app.example/cb/",
        "https://app.example:8443/cb",
        "https://app.example/cb/../cb",
        "https://app.example/cb?extra=1",
        "https://user@app.example/cb",
        "https://APP.example/cb",
        "https://app.example/CB",
        "https://app.example/cb#frag",
        "http://app.example/cb",
        "https://evil.example/cb",
    ];
    for bad in variants {
        let r = t.http.get(authorize_url(&t, "notes", &[("redirect_uri", bad)])).send().await.unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert!(r.headers().get("location").is_none(), "{bad} not redirected to");
    }
    // Unknown client: our page too.
    let r = t.http.get(authorize_url(&t, "nobody", &[])).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // A public client's loopback redirect matches on any port (RFC 8252 §7.3).
    let r = t.http.get(authorize_url(&t, "notes", &[("redirect_uri", "http://127.0.0.1:49152/native")])).send().await.unwrap();
    assert_eq!(r.status(), 200, "the consent page, for the native app's loopback URI");
}

#[tokio::test]
async fn protocol_errors_go_back_to_the_app_with_state_and_iss() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    add_app(&t, "notes", false, SigningAlg::RS256).await;
    let error_of = |r: &reqwest::Response| {
        assert_eq!(r.status(), 303);
        let q = query_of(&location(r));
        assert_eq!(q.get("state").map(String::as_str), Some("st-1"));
        assert_eq!(q.get("iss").map(String::as_str), Some(t.base.as_str()));
        q["error"].clone()
    };
    // prompt=none without a session.
    let r = t.http.get(authorize_url(&t, "notes", &[("prompt", "none")])).send().await.unwrap();
    assert_eq!(error_of(&r), "login_required");
    web_login(&t, "ann@example.com").await;
    let r = t.http.get(authorize_url(&t, "notes", &[("prompt", "none")])).send().await.unwrap();
    assert_eq!(error_of(&r), "consent_required");
    for (extra, expected) in [
        (("code_challenge_method", "plain"), "invalid_request"),
        (("code_challenge", ""), "invalid_request"),
        (("response_type", "token"), "unsupported_response_type"),
        (("scope", "openid admin"), "invalid_scope"),
    ] {
        let extras: Vec<(&str, &str)> = if extra.0 == "code_challenge" { vec![extra, ("code_challenge_method", "")] } else { vec![extra] };
        let r = t.http.get(authorize_url(&t, "notes", &extras)).send().await.unwrap();
        assert_eq!(error_of(&r), expected, "{extra:?}");
    }
    // Deny on the consent page.
    let page = t.http.get(authorize_url(&t, "notes", &[])).send().await.unwrap().text().await.unwrap();
    let form = [("csrf", csrf_of(&page)), ("request", hidden(&page, "request")), ("decision", "deny".into())];
    let r = t.http.post(t.url("/oauth/authorize/decision")).form(&form).send().await.unwrap();
    assert_eq!(error_of(&r), "access_denied");
    // A forged consent (no CSRF token) grants nothing.
    let forged = [("csrf", "forged".to_owned()), ("request", hidden(&page, "request")), ("decision", "approve".into())];
    let r = t.http.post(t.url("/oauth/authorize/decision")).form(&forged).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let user = t.app.store.user_by_email("ann@example.com").await.unwrap().unwrap();
    assert!(t.app.store.consent(&user.id, "notes").await.unwrap().is_none());
    // prompt=login with a session: sign in again, then back.
    let r = t.http.get(authorize_url(&t, "notes", &[("prompt", "login")])).send().await.unwrap();
    assert!(location(&r).starts_with("/login?next="), "{}", location(&r));
}

#[tokio::test]
async fn a_code_works_once_and_its_replay_revokes_what_it_gave() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    add_app(&t, "notes", false, SigningAlg::EdDSA).await;
    web_login(&t, "ann@example.com").await;
    let q = authorize(&t, &authorize_url(&t, "notes", &[])).await;
    let first: Value = exchange(&t, "notes", None, &q["code"], Some(VERIFIER)).await.json().await.unwrap();
    let header: Value = serde_json::from_slice(&B64.decode(s(&first, "id_token").split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA", "the client's id_token_signed_response_alg");
    assert_eq!(t.get_auth("/oauth/userinfo", &s(&first, "access_token")).await.status(), 200);
    let again = exchange(&t, "notes", None, &q["code"], Some(VERIFIER)).await;
    assert_eq!(again.status(), 400);
    assert_eq!(again.json::<Value>().await.unwrap()["error"], "invalid_grant");
    assert_eq!(t.get_auth("/oauth/userinfo", &s(&first, "access_token")).await.status(), 401, "the first use's tokens are revoked");
    let r = t
        .post_form(
            "/oauth/token",
            &[("grant_type", "refresh_token"), ("refresh_token", &s(&first, "refresh_token")), ("client_id", "notes")],
        )
        .await;
    assert_eq!(r.status(), 400);
    let user = t.app.store.user_by_email("ann@example.com").await.unwrap().unwrap();
    let kinds: Vec<String> = t.app.store.audit_for_user(&user.id, 50).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&"authorization_code_reuse".to_owned()));
}

#[tokio::test]
async fn fifty_concurrent_exchanges_of_one_code_have_one_winner() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    add_app(&t, "notes", false, SigningAlg::RS256).await;
    web_login(&t, "ann@example.com").await;
    let q = authorize(&t, &authorize_url(&t, "notes", &[])).await;
    let code = q["code"].clone();
    let tries = (0..50).map(|_| {
        let (base, code) = (t.base.clone(), code.clone());
        tokio::spawn(async move {
            let form = [
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", REDIRECT),
                ("client_id", "notes"),
                ("code_verifier", VERIFIER),
            ];
            reqwest::Client::new().post(format!("{base}/oauth/token")).form(&form).send().await.unwrap().status().as_u16()
        })
    });
    let statuses: Vec<u16> = futures_util::future::join_all(tries).await.into_iter().map(Result::unwrap).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 400), "{statuses:?}");
    assert_eq!(t.count_rows("sessions WHERE client_id = 'notes'").await, 1, "one session was ever opened");
}

#[tokio::test]
async fn pkce_the_redirect_uri_and_the_client_are_bound_to_the_code() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    add_app(&t, "notes", false, SigningAlg::RS256).await;
    let secret = add_app(&t, "other", true, SigningAlg::RS256).await.unwrap();
    web_login(&t, "ann@example.com").await;
    let q = authorize(&t, &authorize_url(&t, "notes", &[])).await;
    let code = &q["code"];
    let err =
        |r: reqwest::Response| async move { (r.status().as_u16(), r.json::<Value>().await.unwrap()["error"].as_str().unwrap().to_owned()) };
    assert_eq!(err(exchange(&t, "notes", None, code, None).await).await, (400, "invalid_grant".into()), "PKCE missing");
    let wrong = "another-verifier-of-at-least-forty-three-characters-000000";
    assert_eq!(err(exchange(&t, "notes", None, code, Some(wrong)).await).await, (400, "invalid_grant".into()), "wrong verifier");
    // A mix-up: the code of client notes with client other's credentials.
    assert_eq!(err(exchange(&t, "other", Some(&secret), code, Some(VERIFIER)).await).await, (400, "invalid_grant".into()));
    // Another client's wrong secret is a client error, not a grant one.
    assert_eq!(err(exchange(&t, "other", Some("lk_cs_wrong"), code, Some(VERIFIER)).await).await.0, 401);
    // Another registered redirect URI than the one the code was issued for.
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", "http://127.0.0.1/native"),
        ("client_id", "notes"),
        ("code_verifier", VERIFIER),
    ];
    assert_eq!(t.post_form("/oauth/token", &form).await.status(), 400);
    // After all that, the right request still works: failed checks do not burn the code.
    assert_eq!(exchange(&t, "notes", None, code, Some(VERIFIER)).await.status(), 200);
    // An expired code.
    let q = authorize(&t, &authorize_url(&t, "notes", &[])).await;
    t.clock.advance(61);
    assert_eq!(err(exchange(&t, "notes", None, &q["code"], Some(VERIFIER)).await).await, (400, "invalid_grant".into()));
}

#[tokio::test]
async fn a_confidential_client_authenticates_and_revoking_the_device_ends_its_tokens() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    let secret = add_app(&t, "wiki", true, SigningAlg::RS256).await.unwrap();
    web_login(&t, "ann@example.com").await;
    let q = authorize(&t, &authorize_url(&t, "wiki", &[])).await;
    // client_secret_post this time.
    let form = [
        ("grant_type", "authorization_code"),
        ("code", q["code"].as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", "wiki"),
        ("client_secret", secret.as_str()),
        ("code_verifier", VERIFIER),
    ];
    let r = reqwest::Client::new().post(t.url("/oauth/token")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let tokens: Value = r.json().await.unwrap();
    let browser_device = claims_of(&s(&tokens, "access_token"))["did"].as_str().unwrap().to_owned();
    let phone = t.login("ann@example.com", "Phone").await;
    let r = t.http.delete(t.url(&format!("/api/v1/devices/{browser_device}"))).bearer_auth(s(&phone, "access_token")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(t.get_auth("/oauth/userinfo", &s(&tokens, "access_token")).await.status(), 401, "revoking the device ends the app's tokens");
}

#[tokio::test]
async fn an_app_introspects_its_own_tokens_and_not_another_apps() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    let wiki = add_app(&t, "wiki", true, SigningAlg::RS256).await.unwrap();
    let chat = add_app(&t, "chat", true, SigningAlg::RS256).await.unwrap();
    web_login(&t, "ann@example.com").await;
    let q = authorize(&t, &authorize_url(&t, "wiki", &[])).await;
    let tokens: Value = exchange(&t, "wiki", Some(&wiki), &q["code"], Some(VERIFIER)).await.json().await.unwrap();
    let introspect = |token: String, id: &'static str, secret: String| {
        let (http, url) = (t.http.clone(), t.url("/oauth/introspect"));
        async move {
            let r = http.post(url).basic_auth(id, Some(secret)).form(&[("token", token)]).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    for kind in ["access_token", "refresh_token"] {
        let own = introspect(s(&tokens, kind), "wiki", wiki.clone()).await;
        assert_eq!(own["active"], true, "{kind}: {own}");
        assert_eq!(own["client_id"], "wiki");
        // Another app learns nothing, not even that the token is live.
        let other = introspect(s(&tokens, kind), "chat", chat.clone()).await;
        assert_eq!(other, serde_json::json!({ "active": false }), "{kind}");
    }
    // A resource server registered as such sees every client's tokens.
    let gateway = NewClient { introspects_any: true, ..NewClient::device("gateway", "Gateway", true) };
    let gw = latchkey::service::clients::create(&t.app, gateway).await.unwrap().unwrap();
    assert_eq!(introspect(s(&tokens, "access_token"), "gateway", gw).await["active"], true);
    // Only a confidential client may be one.
    let public = NewClient { introspects_any: true, ..NewClient::device("tv", "TV", false) };
    assert!(latchkey::service::clients::create(&t.app, public).await.is_err());
}

#[tokio::test]
async fn logout_from_an_app_ends_the_browser_session_and_redirects_only_where_registered() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    add_app(&t, "notes", false, SigningAlg::RS256).await;
    web_login(&t, "ann@example.com").await;
    let q = authorize(&t, &authorize_url(&t, "notes", &[])).await;
    let tokens: Value = exchange(&t, "notes", None, &q["code"], Some(VERIFIER)).await.json().await.unwrap();
    let hint = s(&tokens, "id_token");
    // An unregistered post-logout redirect is an open redirect: refused, not followed.
    let bad = format!("/oauth/end_session?id_token_hint={hint}&post_logout_redirect_uri=https%3A%2F%2Fevil.example%2F");
    let r = t.http.get(t.url(&bad)).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    assert_eq!(t.http.get(t.url("/account")).send().await.unwrap().status(), 200, "still signed in");
    // Without a hint, the user is asked first.
    let ask = t.http.get(t.url("/oauth/end_session?client_id=notes")).send().await.unwrap();
    assert_eq!(ask.status(), 200);
    assert!(ask.text().await.unwrap().contains("Sign out of Latchkey?"));
    assert_eq!(t.http.get(t.url("/account")).send().await.unwrap().status(), 200, "GET ended nothing");
    let good = format!("/oauth/end_session?id_token_hint={hint}&post_logout_redirect_uri=https%3A%2F%2Fapp.example%2Fbye&state=s9");
    let r = t.http.get(t.url(&good)).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "https://app.example/bye?state=s9");
    assert_eq!(t.http.get(t.url("/account")).send().await.unwrap().status(), 303, "the browser is signed out");
}

#[tokio::test]
async fn discovery_and_metadata_describe_the_provider() {
    let t = spawn().await;
    let d: Value = t.http.get(t.url("/.well-known/openid-configuration")).send().await.unwrap().json().await.unwrap();
    assert_eq!(d["issuer"], t.base);
    assert_eq!(d["authorization_endpoint"], format!("{}/oauth/authorize", t.base));
    assert_eq!(d["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(d["id_token_signing_alg_values_supported"], serde_json::json!(["RS256", "EdDSA"]));
    let jwks: Value = t.http.get(t.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let algs: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["alg"].as_str().unwrap()).collect();
    assert!(algs.contains(&"RS256") && algs.contains(&"EdDSA"), "{algs:?}");
    // Errors of the new endpoints are 4xx, never 5xx.
    assert_eq!(t.http.get(t.url("/oauth/userinfo")).send().await.unwrap().status(), 401);
    assert_eq!(t.post_form("/oauth/token", &[("grant_type", "authorization_code"), ("client_id", "latchkey-cli")]).await.status(), 400);
    assert_eq!(
        t.post_form("/oauth/token", &[("grant_type", "authorization_code"), ("code", "lk_ac_x"), ("client_id", "latchkey-cli")])
            .await
            .status(),
        400
    );
    assert_eq!(t.http.get(t.url("/oauth/authorize?client_id=a&client_id=b")).send().await.unwrap().status(), 400);
    assert_eq!(t.http.get(t.url("/oauth/end_session?id_token_hint=garbage")).send().await.unwrap().status(), 400);
}

#[tokio::test]
async fn prompt_login_cannot_be_skipped_by_a_forged_login_time_or_the_consent_form() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    add_app(&t, "notes", false, SigningAlg::RS256).await;
    web_login(&t, "ann@example.com").await;
    t.clock.advance(10);
    for forged in ["0", "0.AAAA", "9999999999"] {
        let r = t.http.get(authorize_url(&t, "notes", &[("prompt", "login"), ("lk_after", forged)])).send().await.unwrap();
        assert!(location(&r).starts_with("/login?next="), "lk_after={forged}: {}", location(&r));
    }
    // The consent form's answer is checked the same way: no code without the new sign-in.
    let raw = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", "notes"),
        ("redirect_uri", REDIRECT),
        ("scope", "openid"),
        ("prompt", "login"),
        ("code_challenge", &challenge_of(VERIFIER)),
        ("code_challenge_method", "S256"),
    ])
    .unwrap();
    let page = t.http.get(t.url("/login")).send().await.unwrap().text().await.unwrap();
    let form = [("csrf", csrf_of(&page)), ("request", raw), ("decision", "approve".into())];
    let r = t.http.post(t.url("/oauth/authorize/decision")).form(&form).send().await.unwrap();
    assert!(location(&r).starts_with("/login?next="), "{}", location(&r));
    // Signing in again, through the sealed time the server gave, then works.
    let r = t.http.get(authorize_url(&t, "notes", &[("prompt", "login")])).send().await.unwrap();
    let back = urlencoding_decode(location(&r).split("next=").nth(1).unwrap());
    t.clock.advance(1);
    web_login(&t, "ann@example.com").await;
    let q = authorize(&t, &t.url(&back)).await;
    assert!(q.contains_key("code"), "{q:?}");
}

fn urlencoding_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

#[tokio::test]
async fn a_removed_app_or_a_revoked_grant_makes_outstanding_codes_worthless() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    add_app(&t, "notes", false, SigningAlg::RS256).await;
    add_app(&t, "wiki", false, SigningAlg::RS256).await;
    web_login(&t, "ann@example.com").await;
    let notes = authorize(&t, &authorize_url(&t, "notes", &[])).await;
    let wiki = authorize(&t, &authorize_url(&t, "wiki", &[])).await;
    let phone = t.login("ann@example.com", "Phone").await;
    let r = t.http.delete(t.url("/api/v1/apps/notes")).bearer_auth(s(&phone, "access_token")).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(exchange(&t, "notes", None, &notes["code"], Some(VERIFIER)).await.status(), 400, "access was taken away");
    latchkey::service::clients::remove(&t.app, "wiki").await.unwrap();
    assert_eq!(exchange(&t, "wiki", None, &wiki["code"], Some(VERIFIER)).await.status(), 401, "the client is gone");
    assert_eq!(t.count_rows("sessions WHERE client_id IN ('notes', 'wiki')").await, 0);
}

#[tokio::test]
async fn an_app_cannot_get_the_account_scope_through_other_grants() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    add_app(&t, "notes", false, SigningAlg::RS256).await;
    for scope in [None, Some("account"), Some("openid account")] {
        let mut form = vec![("client_id", "notes")];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        let r = t.post_form("/oauth/device_authorization", &form).await;
        assert_eq!(r.status(), 400, "{scope:?}");
        assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_scope");
    }
    assert_eq!(t.post_form("/oauth/device_authorization", &[("client_id", "notes"), ("scope", "openid")]).await.status(), 200);
    let r = t
        .post_json("/api/v1/sessions", serde_json::json!({ "email": "ann@example.com", "password": PASSWORD, "client_id": "notes" }))
        .await;
    assert_eq!(r.status(), 400, "a password login for the app with the account scope");
    assert!(r.text().await.unwrap().contains("may not be given that scope"));
    // Device clients keep the server's scopes.
    assert_eq!(t.post_form("/oauth/device_authorization", &[("client_id", "latchkey-cli")]).await.status(), 200);
}
