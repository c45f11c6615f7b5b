use crate::common::*;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::Value;

/// Verifies a JWT against a JWKS with ed25519-dalek, independently of the server's JWT library.
pub(crate) fn verify_independently(token: &str, jwks: &Value) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let header: Value = serde_json::from_slice(&B64.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    let kid = header["kid"].as_str().expect("kid in header");
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == kid).expect("kid published in JWKS");
    assert_eq!(jwk["kty"], "OKP");
    assert_eq!(jwk["crv"], "Ed25519");
    let x: [u8; 32] = B64.decode(jwk["x"].as_str().unwrap()).unwrap().try_into().unwrap();
    let key = VerifyingKey::from_bytes(&x).unwrap();
    let sig = Signature::from_slice(&B64.decode(parts[2]).unwrap()).unwrap();
    key.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig).expect("signature verifies");
    let mut tampered = format!("{}.{}", parts[0], parts[1]).into_bytes();
    tampered[parts[0].len() + 5] ^= 1;
    assert!(key.verify(&tampered, &sig).is_err());
    serde_json::from_slice(&B64.decode(parts[1]).unwrap()).unwrap()
}

#[tokio::test]
async fn access_tokens_verify_against_the_published_jwks() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    let v = t.login("ann@example.com", "Laptop").await;
    let jwks: Value = t.http.get(t.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap();
    let claims = verify_independently(&s(&v, "access_token"), &jwks);
    assert_eq!(claims["iss"], t.base);
    assert_eq!(claims["did"], v["device_id"]);
    assert_eq!(claims["amr"], serde_json::json!(["pwd"]));
    assert_eq!(claims["scope"], "account");
    let user = t.app.store.user_by_email("ann@example.com").await.unwrap().unwrap();
    assert_eq!(claims["sub"], user.id);
    for c in ["sid", "jti", "iat", "exp"] {
        assert!(!claims[c].is_null(), "claim {c}");
    }
    let ttl = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(ttl, 600);
}

fn kid_of(token: &str) -> String {
    let header: Value = serde_json::from_slice(&B64.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

async fn jwks_of(t: &TestApp) -> Value {
    t.http.get(t.url("/.well-known/jwks.json")).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn rotated_keys_are_published_before_they_sign_and_until_their_tokens_expire() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    t.clock.advance(100);
    let old = t.login("ann@example.com", "Laptop").await;
    let old_kid = kid_of(&s(&old, "access_token"));
    let new_kid = t.app.keys.rotate(t.app.now()).await.unwrap()[0].1.clone();
    // The new key is in the JWKS at once, but signs only once caches have had time to see it.
    // An Ed25519 and an RSA key each, before and after.
    let jwks = jwks_of(&t).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 4);
    let during = t.login("ann@example.com", "Phone").await;
    assert_eq!(kid_of(&s(&during, "access_token")), old_kid);
    t.clock.advance(91);
    t.app.keys.reload(t.app.now()).await.unwrap();
    let new = t.login("ann@example.com", "Tablet").await;
    assert_eq!(kid_of(&s(&new, "access_token")), new_kid);
    let jwks = jwks_of(&t).await;
    verify_independently(&s(&old, "access_token"), &jwks);
    verify_independently(&s(&new, "access_token"), &jwks);
    assert_eq!(t.get_auth("/api/v1/devices", &s(&new, "access_token")).await.status(), 200);
    // Past the old key's last possible token (lead + 10 min + margin), it leaves the JWKS.
    t.clock.advance(600 + 61);
    t.app.keys.reload(t.app.now()).await.unwrap();
    let jwks = jwks_of(&t).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    let ed: Vec<_> = jwks["keys"].as_array().unwrap().iter().filter(|k| k["alg"] == "EdDSA").collect();
    assert_eq!(ed.len(), 1);
    assert_eq!(ed[0]["kid"], new_kid.as_str());
}

#[tokio::test]
async fn access_tokens_expire_and_forgeries_fail() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    let v = t.login("ann@example.com", "Laptop").await;
    let at = s(&v, "access_token");
    // alg=none, a flipped signature, and garbage are all refused.
    let parts: Vec<&str> = at.split('.').collect();
    let none_header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    for forged in [format!("{none_header}.{}.", parts[1]), format!("{}.{}.{}", parts[0], parts[1], B64.encode([0u8; 64])), "garbage".into()]
    {
        assert_eq!(t.get_auth("/api/v1/devices", &forged).await.status(), 401);
    }
    let r = t.http.get(t.url("/api/v1/devices")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    t.clock.advance(601);
    assert_eq!(t.get_auth("/api/v1/devices", &at).await.status(), 401);
}

#[tokio::test]
async fn revocation_follows_rfc_7009() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    let v = t.login("ann@example.com", "Laptop").await;
    let r = t.post_form("/oauth/revoke", &[("token", &s(&v, "refresh_token")), ("client_id", "latchkey-cli")]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(t.refresh(&s(&v, "refresh_token")).await.status(), 400);
    assert_eq!(t.get_auth("/api/v1/devices", &s(&v, "access_token")).await.status(), 401, "the session behind it died");
    // Unknown tokens are answered 200 too; a missing token is invalid_request.
    assert_eq!(t.post_form("/oauth/revoke", &[("token", "lk_rt_nope"), ("client_id", "latchkey-cli")]).await.status(), 200);
    let missing = t.post_form("/oauth/revoke", &[("client_id", "latchkey-cli")]).await;
    assert_eq!(missing.status(), 400);
    assert_eq!(missing.json::<Value>().await.unwrap()["error"], "invalid_request");
    // An access token can be revoked too.
    let w = t.login("ann@example.com", "Phone").await;
    assert_eq!(t.post_form("/oauth/revoke", &[("token", &s(&w, "access_token")), ("client_id", "latchkey-cli")]).await.status(), 200);
    assert_eq!(t.get_auth("/api/v1/devices", &s(&w, "access_token")).await.status(), 401);
}

#[tokio::test]
async fn introspection_is_for_authenticated_confidential_clients() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    // A resource server: it checks the tokens of other clients (the CLI's here).
    let gateway = latchkey::service::clients::NewClient {
        introspects_any: true,
        ..latchkey::service::clients::NewClient::device("api-gw", "API gateway", true)
    };
    let secret = latchkey::service::clients::create(&t.app, gateway).await.unwrap().unwrap();
    assert!(secret.starts_with("lk_cs_"));
    let v = t.login("ann@example.com", "Laptop").await;
    let basic = |id: &str, sec: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{id}:{sec}")));
    let introspect = |token: String, auth: String| {
        let (http, url) = (t.http.clone(), t.url("/oauth/introspect"));
        async move { http.post(url).header("authorization", auth).form(&[("token", token)]).send().await.unwrap() }
    };
    let r = introspect(s(&v, "access_token"), basic("api-gw", &secret)).await;
    assert_eq!(r.status(), 200);
    let j: Value = r.json().await.unwrap();
    assert_eq!(j["active"], true);
    assert_eq!(j["token_type"], "access_token");
    assert_eq!(j["client_id"], "latchkey-cli");
    let j: Value = introspect(s(&v, "refresh_token"), basic("api-gw", &secret)).await.json().await.unwrap();
    assert_eq!(j["active"], true);
    assert_eq!(j["token_type"], "refresh_token");
    let j: Value = introspect("lk_rt_unknown".into(), basic("api-gw", &secret)).await.json().await.unwrap();
    assert_eq!(j, serde_json::json!({ "active": false }));
    // Wrong secret, and a public client, are refused.
    assert_eq!(introspect(s(&v, "access_token"), basic("api-gw", "lk_cs_wrong")).await.status(), 401);
    let public = t.post_form("/oauth/introspect", &[("token", &s(&v, "access_token")), ("client_id", "latchkey-cli")]).await;
    assert_eq!(public.status(), 401);
    assert_eq!(public.json::<Value>().await.unwrap()["error"], "invalid_client");
    // Revoked sessions introspect inactive at once.
    t.http.delete(t.url("/api/v1/sessions/current")).bearer_auth(s(&v, "access_token")).send().await.unwrap();
    let j: Value = introspect(s(&v, "access_token"), basic("api-gw", &secret)).await.json().await.unwrap();
    assert_eq!(j["active"], false);
}

#[tokio::test]
async fn metadata_describes_the_endpoints() {
    let t = spawn().await;
    let m: Value = t.http.get(t.url("/.well-known/oauth-authorization-server")).send().await.unwrap().json().await.unwrap();
    assert_eq!(m["issuer"], t.base);
    assert_eq!(m["token_endpoint"], format!("{}/oauth/token", t.base));
    assert_eq!(m["revocation_endpoint"], format!("{}/oauth/revoke", t.base));
    assert_eq!(m["introspection_endpoint"], format!("{}/oauth/introspect", t.base));
    assert_eq!(m["jwks_uri"], format!("{}/.well-known/jwks.json", t.base));
    assert!(m["grant_types_supported"].as_array().unwrap().contains(&"refresh_token".into()));
}

#[tokio::test]
async fn token_endpoint_speaks_rfc_6749_errors() {
    let t = spawn().await;
    let r = t.post_form("/oauth/token", &[("grant_type", "password"), ("client_id", "latchkey-cli")]).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "unsupported_grant_type");
    let r = t.post_form("/oauth/token", &[("client_id", "latchkey-cli")]).await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let r = t.post_form("/oauth/token", &[("grant_type", "refresh_token"), ("refresh_token", "lk_rt_x"), ("client_id", "nope")]).await;
    assert_eq!(r.status(), 401);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_client");
    let r = t.http.post(t.url("/oauth/token")).json(&serde_json::json!({ "grant_type": "refresh_token" })).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_request");
    let r = t
        .post_form("/oauth/token", &[("grant_type", "refresh_token"), ("refresh_token", "lk_rt_short"), ("client_id", "latchkey-cli")])
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_grant");
}
