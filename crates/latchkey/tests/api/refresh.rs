use crate::common::*;
use serde_json::Value;

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_session() {
    let t = spawn_with(|s| s.tokens.refresh_reuse_grace_secs = 0).await;
    t.register("ann@example.com").await;
    let v = t.login("ann@example.com", "Laptop").await;
    let rt1 = s(&v, "refresh_token");
    let r = t.refresh(&rt1).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let v2: Value = r.json().await.unwrap();
    let rt2 = s(&v2, "refresh_token");
    assert_ne!(rt1, rt2);
    assert_eq!(v2["device_id"], v["device_id"]);
    // The superseded token comes back: the whole session dies, the live successor with it.
    let reuse = t.refresh(&rt1).await;
    assert_eq!(reuse.status(), 400);
    let e: Value = reuse.json().await.unwrap();
    assert_eq!(e["error"], "invalid_grant");
    assert_eq!(t.refresh(&rt2).await.status(), 400);
    assert_eq!(t.get_auth("/api/v1/devices", &s(&v2, "access_token")).await.status(), 401);
    let audit = t.app.store.audit_all(50).await.unwrap();
    assert!(audit.iter().any(|a| a.kind == "refresh_token_reuse"));
}

#[tokio::test]
async fn grace_returns_the_same_successor_to_the_immediate_predecessor_only() {
    let t = spawn_with(|s| s.tokens.refresh_reuse_grace_secs = 30).await;
    t.register("ann@example.com").await;
    let v = t.login("ann@example.com", "Laptop").await;
    let rt1 = s(&v, "refresh_token");
    let v2: Value = t.refresh(&rt1).await.json().await.unwrap();
    // A retry with rt1 (the response was lost) gets the very same successor.
    let retry: Value = t.refresh(&rt1).await.json().await.unwrap();
    assert_eq!(retry["refresh_token"], v2["refresh_token"]);
    // Once rt2 has been used, rt1 is two generations old: reuse, the session dies.
    let v3: Value = t.refresh(&s(&v2, "refresh_token")).await.json().await.unwrap();
    assert_eq!(t.refresh(&rt1).await.status(), 400);
    assert_eq!(t.refresh(&s(&v3, "refresh_token")).await.status(), 400, "session revoked by the reuse");
}

#[tokio::test]
async fn grace_ends_after_its_window() {
    let t = spawn_with(|s| s.tokens.refresh_reuse_grace_secs = 5).await;
    t.register("ann@example.com").await;
    let v = t.login("ann@example.com", "Laptop").await;
    let rt1 = s(&v, "refresh_token");
    let v2: Value = t.refresh(&rt1).await.json().await.unwrap();
    t.clock.advance(6);
    assert_eq!(t.refresh(&rt1).await.status(), 400);
    assert_eq!(t.refresh(&s(&v2, "refresh_token")).await.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_uses_of_one_refresh_token_give_exactly_one_pair() {
    let t = spawn_with(|s| s.tokens.refresh_reuse_grace_secs = 0).await;
    t.register("ann@example.com").await;
    let v = t.login("ann@example.com", "Laptop").await;
    let rt = s(&v, "refresh_token");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (http, url, rt) = (t.http.clone(), t.url("/oauth/token"), rt.clone());
        tasks.push(tokio::spawn(async move {
            let form = [("grant_type", "refresh_token"), ("refresh_token", rt.as_str()), ("client_id", "latchkey-cli")];
            let r = http.post(url).form(&form).send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            200 => winners.push(body),
            400 => assert_eq!(body["error"], "invalid_grant"),
            other => panic!("unexpected status {other}: {body}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one new pair");
    // The others were reuse of a superseded token, so the session (and the one successor) is dead.
    let successor = s(&winners[0], "refresh_token");
    let row = t.app.store.refresh_token(&latchkey::domain::secret::token_hash(&successor)).await.unwrap().unwrap();
    assert!(row.superseded_at.is_none());
    let session = t.app.store.session(&row.session_id).await.unwrap().unwrap();
    assert!(session.revoked_at.is_some(), "concurrent use counts as reuse");
    assert_eq!(t.refresh(&successor).await.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_inside_the_grace_all_get_the_same_successor() {
    let t = spawn_with(|s| s.tokens.refresh_reuse_grace_secs = 30).await;
    t.register("ann@example.com").await;
    let v = t.login("ann@example.com", "Laptop").await;
    let rt = s(&v, "refresh_token");
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let (http, url, rt) = (t.http.clone(), t.url("/oauth/token"), rt.clone());
        tasks.push(tokio::spawn(async move {
            let form = [("grant_type", "refresh_token"), ("refresh_token", rt.as_str()), ("client_id", "latchkey-cli")];
            http.post(url).form(&form).send().await.unwrap().json::<Value>().await.unwrap()
        }));
    }
    let mut successors = std::collections::HashSet::new();
    for task in tasks {
        successors.insert(s(&task.await.unwrap(), "refresh_token"));
    }
    assert_eq!(successors.len(), 1, "one successor, whoever won the race");
    assert_eq!(t.refresh(successors.iter().next().unwrap()).await.status(), 200);
}

#[tokio::test]
async fn refresh_tokens_die_when_idle_and_at_the_absolute_limit() {
    let t = spawn_with(|s| {
        s.tokens.refresh_idle_secs = 100;
        s.tokens.session_absolute_secs = 250;
    })
    .await;
    t.register("ann@example.com").await;
    let v = t.login("ann@example.com", "Laptop").await;
    t.clock.advance(101);
    assert_eq!(t.refresh(&s(&v, "refresh_token")).await.status(), 400, "idle too long");

    let v = t.login("ann@example.com", "Laptop").await;
    let mut rt = s(&v, "refresh_token");
    for _ in 0..2 {
        t.clock.advance(90);
        let r: Value = t.refresh(&rt).await.json().await.unwrap();
        rt = s(&r, "refresh_token");
    }
    t.clock.advance(90);
    assert_eq!(t.refresh(&rt).await.status(), 400, "past the absolute lifetime, however active");
}

#[tokio::test]
async fn scope_can_narrow_but_never_widen() {
    let t = spawn().await;
    t.register("ann@example.com").await;
    let v = t.login("ann@example.com", "Laptop").await;
    let rt = s(&v, "refresh_token");
    let wide = t
        .post_form(
            "/oauth/token",
            &[("grant_type", "refresh_token"), ("refresh_token", &rt), ("client_id", "latchkey-cli"), ("scope", "account admin")],
        )
        .await;
    assert_eq!(wide.status(), 400);
    assert_eq!(wide.json::<Value>().await.unwrap()["error"], "invalid_scope");
    assert_eq!(t.refresh(&rt).await.status(), 200, "the refused request did not use the token up");
}
