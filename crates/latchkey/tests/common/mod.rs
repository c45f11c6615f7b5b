//! Shared test helpers: a real server on 127.0.0.1 with an OS-picked port and a fresh database.
#![allow(dead_code)]

pub mod listen;
pub mod passkey;
pub mod smtp;
pub mod totp;
pub mod upstream;

use latchkey::clock::OffsetClock;
use latchkey::config::{Overrides, Settings};
use latchkey::server::Server;
use serde_json::{Value, json};
use std::sync::Arc;

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub app: Arc<latchkey::service::App>,
    pub clock: Arc<OffsetClock>,
    pub dir: std::path::PathBuf,
    /// The database the server runs on: SQLite in `dir`, or a fresh PostgreSQL schema.
    pub db_url: String,
    _dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    /// Dropped last: removes the PostgreSQL schema once the server is told to stop.
    _pg: Option<PgSchema>,
}

/// `TEST_DATABASE_URL` (for example postgres://postgres@127.0.0.1:5432/test) runs every test
/// server on PostgreSQL, each in a fresh schema; without it the tests use SQLite.
pub fn test_database_url() -> Option<String> {
    std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.trim().is_empty())
}

/// A schema of its own for one test: `lk_<unix seconds>_<random>`, reached through
/// `options=-c search_path=…` in the URL so that the server's pool lands in it.
pub struct PgSchema {
    admin_url: String,
    pub name: String,
    pub url: String,
}

/// Schemas older than this are left over from killed runs; the first test of a run drops them.
const STALE_SCHEMA_SECS: u64 = 3600;

impl PgSchema {
    pub async fn create(admin_url: &str) -> PgSchema {
        use sqlx::Connection;
        static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let mut conn = sqlx::PgConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("TEST_DATABASE_URL is set but PostgreSQL is unreachable at {admin_url}: {e}"));
        if !SWEPT.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let names: Vec<String> = sqlx::query_scalar("SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'lk\\_%'")
                .fetch_all(&mut conn)
                .await
                .unwrap();
            for name in names {
                let born = name.split('_').nth(1).and_then(|t| t.parse::<u64>().ok());
                if born.is_some_and(|b| b + STALE_SCHEMA_SECS < now) {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"))).execute(&mut conn).await;
                }
            }
        }
        let name = format!("lk_{now}_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}"))).execute(&mut conn).await.expect("create test schema");
        conn.close().await.ok();
        let sep = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{sep}options=-c%20search_path%3D{name}");
        PgSchema { admin_url: admin_url.to_owned(), name, url }
    }
}

impl Drop for PgSchema {
    /// Drops the schema from a thread of its own (the test's runtime may be single-threaded and
    /// busy dropping); gives up after a few seconds, leaving it to the stale-schema sweep.
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url).await {
                    let _ = sqlx::query("SET lock_timeout = '5s'").execute(&mut conn).await;
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {name} CASCADE"))).execute(&mut conn).await;
                    let _ = conn.close().await;
                }
            });
            let _ = tx.send(());
        });
        let _ = rx.recv_timeout(std::time::Duration::from_secs(8));
    }
}

/// Starts a server with the default settings, changed by `tweak`. Password hashing uses cheap
/// parameters unless a test sets its own, so suites stay fast.
pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    latchkey::install_crypto_provider();
    if std::env::var_os("TEST_LOG").is_some() {
        latchkey::telemetry::init("text", "info");
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let flags = Overrides { listen: Some("127.0.0.1:0".parse().unwrap()), data_dir: Some(dir.path().to_owned()), ..Default::default() };
    let mut settings = Settings::load(None, Vec::<(String, String)>::new(), &flags).expect("settings");
    settings.passwords.memory_kib = 8192;
    settings.passwords.iterations = 1;
    tweak(&mut settings);
    let pg = match test_database_url() {
        Some(admin) => Some(PgSchema::create(&admin).await),
        None => None,
    };
    if let Some(pg) = &pg {
        settings.database.url = pg.url.clone();
    }
    let db_url = settings.database_url();
    let clock = Arc::new(OffsetClock::default());
    let server = Server::build_with_clock(settings, clock.clone()).await.expect("server starts");
    let base = format!("http://{}", server.local_addr());
    let app = server.app();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap();
    TestApp { base, http, app, clock, dir: dir.path().to_owned(), db_url, _dir: dir, _shutdown: tx, _pg: pg }
}

/// A second instance on the same database as `first` (PostgreSQL), for cross-instance tests.
pub async fn spawn_beside(first: &TestApp, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let flags = Overrides { listen: Some("127.0.0.1:0".parse().unwrap()), data_dir: Some(dir.path().to_owned()), ..Default::default() };
    let mut settings = Settings::load(None, Vec::<(String, String)>::new(), &flags).expect("settings");
    settings.passwords.memory_kib = 8192;
    settings.passwords.iterations = 1;
    tweak(&mut settings);
    settings.database.url = first.db_url.clone();
    let clock = Arc::new(OffsetClock::default());
    let server = Server::build_with_clock(settings, clock.clone()).await.expect("second server starts");
    let base = format!("http://{}", server.local_addr());
    let app = server.app();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap();
    TestApp { base, http, app, clock, dir: dir.path().to_owned(), db_url: first.db_url.clone(), _dir: dir, _shutdown: tx, _pg: None }
}

/// A server whose public URL is `http://localhost:<port>`: passkeys need a domain name for the
/// relying party (browsers refuse an IP address). It still listens on 127.0.0.1 only; the port
/// is one the OS picked a moment before.
pub async fn spawn_localhost(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port();
    let mut t = spawn_with(|s| {
        s.server.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        s.server.public_url = Some(format!("http://localhost:{port}"));
        tweak(s);
    })
    .await;
    t.base = format!("http://localhost:{port}");
    t
}

pub async fn spawn() -> TestApp {
    spawn_with(|_| {}).await
}

pub const PASSWORD: &str = "correct horse battery";

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post_json(&self, path: &str, body: Value) -> reqwest::Response {
        self.http.post(self.url(path)).json(&body).send().await.expect("request")
    }

    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http.post(self.url(path)).form(form).send().await.expect("request")
    }

    pub async fn get_auth(&self, path: &str, token: &str) -> reqwest::Response {
        self.http.get(self.url(path)).bearer_auth(token).send().await.expect("request")
    }

    pub async fn register(&self, email: &str) {
        let r = self.post_json("/api/v1/accounts", json!({ "email": email, "password": PASSWORD })).await;
        assert_eq!(r.status(), 201, "register {email}: {}", r.text().await.unwrap_or_default());
    }

    /// Logs in as a new device; returns the token response.
    pub async fn login(&self, email: &str, device: &str) -> Value {
        let r = self.post_json("/api/v1/sessions", json!({ "email": email, "password": PASSWORD, "device": { "name": device } })).await;
        assert_eq!(r.status(), 200, "login {email}: {}", r.text().await.unwrap_or_default());
        r.json().await.unwrap()
    }

    /// Counts rows of a table straight from the database (SQLite file or PostgreSQL schema).
    pub async fn count_rows(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        if self.db_url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&self.db_url).await.unwrap();
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        } else {
            let pool = sqlx::PgPool::connect(&self.db_url).await.unwrap();
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&pool).await.unwrap();
            pool.close().await;
            n
        }
    }

    pub async fn post_json_auth(&self, path: &str, token: &str, body: Value) -> reqwest::Response {
        self.http.post(self.url(path)).bearer_auth(token).json(&body).send().await.expect("request")
    }

    /// Starts a device-grant request as a device would; returns the response body.
    pub async fn device_authorization(&self) -> Value {
        let r = self.post_form("/oauth/device_authorization", &[("client_id", "latchkey-cli")]).await;
        assert_eq!(r.status(), 200, "device_authorization: {}", r.text().await.unwrap_or_default());
        r.json().await.unwrap()
    }

    /// One poll of the token endpoint with a device code.
    pub async fn poll(&self, device_code: &str) -> reqwest::Response {
        self.post_form(
            "/oauth/token",
            &[("grant_type", "urn:ietf:params:oauth:grant-type:device_code"), ("device_code", device_code), ("client_id", "latchkey-cli")],
        )
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.post_form("/oauth/token", &[("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", "latchkey-cli")])
            .await
    }
}

pub fn s(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_else(|| panic!("no string {key} in {v}")).to_owned()
}
