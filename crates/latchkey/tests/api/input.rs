//! Malformed input of every kind gets a clear 4xx, never a 500.

use crate::common::*;
use serde_json::{Value, json};

async fn raw(t: &TestApp, path: &str, content_type: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut req = t.http.post(t.url(path)).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn malformed_bodies_get_4xx_problem_details() {
    let t = spawn().await;
    let cases: Vec<(Option<&str>, Vec<u8>, u16)> = vec![
        (Some("application/json"), b"{".to_vec(), 400),
        (Some("application/json"), b"not json".to_vec(), 400),
        (Some("application/json"), b"[]".to_vec(), 422),
        (Some("application/json"), b"{}".to_vec(), 422),
        (Some("application/json"), br#"{"email":1,"password":2}"#.to_vec(), 422),
        (Some("application/json"), br#"{"email":"a@x.org","password":"12345678","admin":true}"#.to_vec(), 422),
        (Some("application/json"), br#"{"email":"\ud800@x.org","password":"12345678"}"#.to_vec(), 400),
        (Some("application/json"), vec![0xff, 0xfe, 0x00], 400),
        (Some("text/plain"), br#"{"email":"a@x.org","password":"12345678"}"#.to_vec(), 415),
        (None, br#"{"email":"a@x.org","password":"12345678"}"#.to_vec(), 415),
        (Some("application/json"), format!(r#"{{"email":"a@x.org","password":"{}"}}"#, "x".repeat(200_000)).into_bytes(), 413),
    ];
    for path in ["/api/v1/accounts", "/api/v1/sessions"] {
        for (ct, body, want) in &cases {
            let r = raw(&t, path, *ct, body.clone()).await;
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            assert_eq!(status, *want, "{path} {ct:?} {:?} -> {text}", String::from_utf8_lossy(&body[..body.len().min(60)]));
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("problem JSON expected: {text}"));
            assert_eq!(v["status"], *want);
        }
    }
}

#[tokio::test]
async fn odd_unicode_is_refused_or_handled_never_a_500() {
    let t = spawn().await;
    let emails = ["\u{202e}moc.elpmaxe@nna", "ann\u{0000}@x.org", "ａｎｎ@example.com", "ann@exa mple.com", "😀@😀", "a@b", ""];
    for e in emails {
        for path in ["/api/v1/accounts", "/api/v1/sessions"] {
            let r = t.post_json(path, json!({ "email": e, "password": "pässwörd-ünïcode-😀" })).await;
            assert!(r.status().is_client_error() || r.status().is_success(), "{path} {e:?} -> {}", r.status());
        }
    }
    let r = t.post_json("/api/v1/sessions", json!({ "email": "a@x.org", "password": PASSWORD, "device": { "name": "x\u{202e}y" } })).await;
    assert_eq!(r.status(), 422);
    let r =
        t.post_json("/api/v1/sessions", json!({ "email": "a@x.org", "password": PASSWORD, "device": { "name": "n".repeat(65) } })).await;
    assert_eq!(r.status(), 422);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let t = spawn().await;
    let r = t.http.get(t.url("/api/v1/nope")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = t.http.put(t.url("/api/v1/sessions")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = t.http.get(t.url("/api/v1/devices")).header("authorization", "Bearer \u{7f}").send().await;
    if let Ok(r) = r {
        assert!(r.status().is_client_error());
    }
    let r = t
        .http
        .post(t.url("/oauth/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![0xff, 0x00, b'='])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = t
        .http
        .post(t.url("/oauth/token"))
        .header("authorization", "Basic !!!")
        .form(&[("grant_type", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error());
}

#[tokio::test]
async fn page_forms_answer_bad_input_with_html_pages() {
    let t = spawn().await;
    let page = t.http.get(t.url("/login")).send().await.unwrap().text().await.unwrap();
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let html = |r: &reqwest::Response| r.headers()["content-type"].to_str().unwrap().starts_with("text/html");
    let forged = t.post_form("/login", &[("email", "ann@example.com"), ("password", PASSWORD), ("csrf", "forged")]).await;
    assert_eq!(forged.status(), 403);
    assert!(html(&forged));
    let missing = t.post_form("/login", &[("email", "ann@example.com"), ("csrf", &csrf)]).await;
    assert_eq!(missing.status(), 422, "a form without its password");
    assert!(html(&missing));
    let not_a_form = t.http.post(t.url("/login")).header("content-type", "text/plain").body(format!("csrf={csrf}")).send().await.unwrap();
    assert_eq!(not_a_form.status(), 415);
    assert!(html(&not_a_form));
    let twice = t.http.get(t.url("/login?next=/a&next=/b")).send().await.unwrap();
    assert_eq!(twice.status(), 400, "a query it cannot read");
    assert!(html(&twice));
}
