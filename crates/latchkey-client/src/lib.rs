//! A client for the Latchkey server: sign in, refresh, list and revoke devices. The CLI's device
//! side, the tests and integrators use it.

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("HTTP error: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered with an error; `status` and its body (problem details or OAuth error).
    #[error("server answered {status}: {body}")]
    Server { status: u16, body: serde_json::Value },
}

pub type Result<T> = std::result::Result<T, ClientError>;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Tokens {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: u64,
    pub refresh_token: String,
    pub scope: String,
    pub device_id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Device {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub os: String,
    pub browser: String,
    pub authorized_by: String,
    pub last_ip: String,
    pub current: bool,
    pub trusted_until: Option<String>,
}

#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    client_id: String,
}

impl Client {
    pub fn new(base_url: &str) -> Self {
        let http =
            reqwest::Client::builder().user_agent(concat!("latchkey-client/", env!("CARGO_PKG_VERSION"))).build().unwrap_or_default();
        Self { base: base_url.trim_end_matches('/').to_owned(), http, client_id: "latchkey-cli".into() }
    }

    pub fn with_client_id(mut self, id: &str) -> Self {
        self.client_id = id.into();
        self
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn decode<T: for<'de> Deserialize<'de>>(resp: reqwest::Response) -> Result<T> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp.json().await?);
        }
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        Err(ClientError::Server { status: status.as_u16(), body })
    }

    async fn expect_ok(resp: reqwest::Response) -> Result<()> {
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        Err(ClientError::Server { status: status.as_u16(), body })
    }

    pub async fn register(&self, email: &str, password: &str) -> Result<serde_json::Value> {
        let r = self
            .http
            .post(format!("{}/api/v1/accounts", self.base))
            .json(&serde_json::json!({ "email": email, "password": password }))
            .send()
            .await?;
        Self::decode(r).await
    }

    pub async fn login(&self, email: &str, password: &str, device_name: Option<&str>) -> Result<Tokens> {
        let mut body = serde_json::json!({ "email": email, "password": password, "client_id": self.client_id });
        if let Some(n) = device_name {
            body["device"] = serde_json::json!({ "name": n });
        }
        let r = self.http.post(format!("{}/api/v1/sessions", self.base)).json(&body).send().await?;
        Self::decode(r).await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens> {
        let form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token), ("client_id", self.client_id.as_str())];
        let r = self.http.post(format!("{}/oauth/token", self.base)).form(&form).send().await?;
        Self::decode(r).await
    }

    pub async fn devices(&self, access_token: &str) -> Result<Vec<Device>> {
        let r = self.http.get(format!("{}/api/v1/devices", self.base)).bearer_auth(access_token).send().await?;
        Self::decode(r).await
    }

    pub async fn revoke_device(&self, access_token: &str, device_id: &str) -> Result<()> {
        let r = self.http.delete(format!("{}/api/v1/devices/{device_id}", self.base)).bearer_auth(access_token).send().await?;
        Self::expect_ok(r).await
    }

    pub async fn logout(&self, access_token: &str) -> Result<()> {
        let r = self.http.delete(format!("{}/api/v1/sessions/current", self.base)).bearer_auth(access_token).send().await?;
        Self::expect_ok(r).await
    }
}
