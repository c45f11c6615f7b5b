//! Shared test helpers: a real server on 127.0.0.1 with an OS-picked port and a fresh database.
#![allow(dead_code)]

pub mod smtp;

use latchkey::clock::OffsetClock;
use latchkey::config::{Overrides, Settings};
use latchkey::server::Server;
use serde_json::{Value, json};
use std::sync::Arc;

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub app: Arc<latchkey::app::App>,
    pub clock: Arc<OffsetClock>,
    pub dir: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
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
    let clock = Arc::new(OffsetClock::default());
    let server = Server::build_with_clock(settings, clock.clone()).await.expect("server starts");
    let base = format!("http://{}", server.local_addr());
    let app = server.app();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap();
    TestApp { base, http, app, clock, dir: dir.path().to_owned(), _dir: dir, _shutdown: tx }
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

    /// Counts rows of a table straight from the database file.
    pub async fn count_rows(&self, table: &str) -> i64 {
        let url = format!("sqlite://{}", self.dir.join("latchkey.db").display());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"))).fetch_one(&pool).await.unwrap();
        pool.close().await;
        n
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
