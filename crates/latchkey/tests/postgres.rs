//! The PostgreSQL backend on its own: migrations on a fresh schema and the basic flows. The whole
//! API suite also runs on PostgreSQL when `TEST_DATABASE_URL` is set (see tests/common).
//! Without the variable these tests say they were skipped; with it, an unreachable database fails them.

mod common;

use common::*;
use serde_json::Value;

/// The server URL, or None (with a loud note) when the tests are to be skipped.
fn pg_url(test: &str) -> Option<String> {
    let url = test_database_url();
    if url.is_none() {
        // Straight to stderr, past the test harness's capture, so that the skip is seen.
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), "SKIPPED: TEST_DATABASE_URL not set; PostgreSQL test {test} did not run");
    }
    url
}

#[tokio::test]
async fn open_migrates_a_fresh_schema_and_is_idempotent() {
    let Some(admin) = pg_url("open_migrates_a_fresh_schema_and_is_idempotent") else { return };
    let schema = PgSchema::create(&admin).await;
    let store = latchkey::store::open(&schema.url, 4).await.expect("open migrates");
    store.ping().await.unwrap();
    // Opening again (a second instance, or a restart) finds the migrations applied.
    let again = latchkey::store::open(&schema.url, 2).await.expect("second open");
    again.ping().await.unwrap();

    let pool = sqlx::PgPool::connect(&admin).await.unwrap();
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1")
            .bind(&schema.name)
            .fetch_all(&pool)
            .await
            .unwrap();
    for t in ["approvals", "audit_events", "devices", "mfa_tokens", "pairing_codes", "rate_limits", "refresh_tokens", "sessions", "users"] {
        assert!(tables.iter().any(|x| x == t), "{t} missing from {tables:?}");
    }
    let clients: i64 =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {}.clients", schema.name))).fetch_one(&pool).await.unwrap();
    assert_eq!(clients, 2, "the built-in clients are seeded");
    pool.close().await;

    // One active signing key, whatever races: the partial unique index holds.
    let key = |kid: &str| latchkey::store::SigningKeyRow {
        kid: kid.into(),
        seed: vec![1; 32],
        created_at: 1,
        retired_at: None,
        alg: "EdDSA".into(),
    };
    let (a, b) = (key("a"), key("b"));
    let (ra, rb) = tokio::join!(store.insert_first_signing_key(&a), again.insert_first_signing_key(&b));
    ra.unwrap();
    rb.unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.iter().filter(|k| k.retired_at.is_none()).count(), 1, "{keys:?}");
    let (c, d) = (key("c"), key("d"));
    let (ra, rb) = tokio::join!(store.rotate_signing_key(&c, 2), again.rotate_signing_key(&d, 2));
    ra.unwrap();
    rb.unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 3);
    assert_eq!(keys.iter().filter(|k| k.retired_at.is_none()).count(), 1, "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn register_login_refresh_and_a_refresh_race_on_postgres() {
    if pg_url("register_login_refresh_and_a_refresh_race_on_postgres").is_none() {
        return;
    }
    let t = spawn_with(|s| s.tokens.refresh_reuse_grace_secs = 0).await;
    assert!(t.db_url.starts_with("postgres"), "the server runs on PostgreSQL: {}", t.db_url);
    t.register("ann@example.com").await;
    let v = t.login("ann@example.com", "Laptop").await;
    let r = t.refresh(&s(&v, "refresh_token")).await;
    assert_eq!(r.status(), 200);
    let rt = s(&r.json::<Value>().await.unwrap(), "refresh_token");

    let mut tasks = Vec::new();
    for _ in 0..30 {
        let (http, url, rt) = (t.http.clone(), t.url("/oauth/token"), rt.clone());
        tasks.push(tokio::spawn(async move {
            let form = [("grant_type", "refresh_token"), ("refresh_token", rt.as_str()), ("client_id", "latchkey-cli")];
            http.post(url).form(&form).send().await.unwrap().status().as_u16()
        }));
    }
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            200 => ok += 1,
            400 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok, 1, "exactly one rotation wins");
    assert_eq!(t.count_rows("users").await, 1);
    assert!(t.count_rows("refresh_tokens").await >= 3);
}
