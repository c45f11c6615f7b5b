//! A client for the Latchkey server: sign in, refresh, list and revoke devices. The CLI's device
//! side, the tests and integrators use it.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

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

/// RFC 8628 §3.2: what a device shows the user.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    #[serde(default = "default_interval")]
    pub interval: u64,
}

fn default_interval() -> u64 {
    5
}

/// What a pairing-code redemption answers: a device code to poll with.
#[derive(Debug, Clone, Deserialize)]
pub struct Redeemed {
    pub device_code: String,
    pub interval: u64,
    pub expires_in: u64,
}

/// One poll of the token endpoint with a device code.
#[derive(Debug, Clone)]
pub enum Poll {
    Tokens(Tokens),
    /// Not decided yet: wait `interval` and poll again.
    Pending,
    /// Polled too soon: the interval grows by 5 seconds (RFC 8628 §3.5).
    SlowDown,
    Denied,
    Expired,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Me {
    pub user_id: String,
    pub email: String,
    pub session_id: String,
    pub device_id: String,
    pub scope: String,
}

impl Client {
    pub async fn device_authorization(&self, scope: Option<&str>) -> Result<DeviceAuthorization> {
        let mut form = vec![("client_id", self.client_id.as_str())];
        if let Some(s) = scope {
            form.push(("scope", s));
        }
        let r = self.http.post(format!("{}/oauth/device_authorization", self.base)).form(&form).send().await?;
        Self::decode(r).await
    }

    pub async fn redeem_pairing_code(&self, code: &str, device_name: Option<&str>) -> Result<Redeemed> {
        let mut body = serde_json::json!({ "code": code, "client_id": self.client_id });
        if let Some(n) = device_name {
            body["device"] = serde_json::json!({ "name": n });
        }
        let r = self.http.post(format!("{}/api/v1/pairing-codes/redeem", self.base)).json(&body).send().await?;
        Self::decode(r).await
    }

    pub async fn poll_device_code(&self, device_code: &str) -> Result<Poll> {
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
            ("client_id", self.client_id.as_str()),
        ];
        let r = self.http.post(format!("{}/oauth/token", self.base)).form(&form).send().await?;
        let status = r.status();
        if status.is_success() {
            return Ok(Poll::Tokens(r.json().await?));
        }
        let body: serde_json::Value = r.json().await.unwrap_or(serde_json::Value::Null);
        match body["error"].as_str() {
            Some("authorization_pending") => Ok(Poll::Pending),
            Some("slow_down") => Ok(Poll::SlowDown),
            Some("access_denied") => Ok(Poll::Denied),
            Some("expired_token") => Ok(Poll::Expired),
            _ => Err(ClientError::Server { status: status.as_u16(), body }),
        }
    }

    pub async fn me(&self, access_token: &str) -> Result<Me> {
        let r = self.http.get(format!("{}/api/v1/me", self.base)).bearer_auth(access_token).send().await?;
        Self::decode(r).await
    }

    /// RFC 7009: revokes the session behind a token.
    pub async fn revoke(&self, token: &str) -> Result<()> {
        let form = [("token", token), ("client_id", self.client_id.as_str())];
        let r = self.http.post(format!("{}/oauth/revoke", self.base)).form(&form).send().await?;
        Self::expect_ok(r).await
    }
}

/// Tokens saved by a device, with what is needed to use and renew them.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Credentials {
    pub server: String,
    pub client_id: String,
    pub access_token: String,
    pub refresh_token: String,
    pub device_id: String,
    /// Unix seconds at which the access token expires.
    pub expires_at: i64,
}

impl Credentials {
    pub fn from_tokens(server: &str, client_id: &str, t: &Tokens, now: i64) -> Self {
        Self {
            server: server.trim_end_matches('/').to_owned(),
            client_id: client_id.to_owned(),
            access_token: t.access_token.clone(),
            refresh_token: t.refresh_token.clone(),
            device_id: t.device_id.clone(),
            expires_at: now + t.expires_in as i64,
        }
    }

    /// Where the CLI keeps them: `$XDG_CONFIG_HOME/latchkey/credentials.json`, else
    /// `~/.config/latchkey/credentials.json`.
    pub fn default_path() -> Option<std::path::PathBuf> {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".config")))?;
        Some(base.join("latchkey").join("credentials.json"))
    }

    pub fn load(path: &std::path::Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        serde_json::from_str(&text).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// Writes the file with mode 0600 (owner only) from its creation on, atomically by rename.
    pub fn save(&self, path: &std::path::Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("json.tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp)?;
        std::io::Write::write_all(&mut f, serde_json::to_string_pretty(self).map_err(std::io::Error::other)?.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

/// What a phone sees of a browser asking to sign in by QR.
#[derive(Debug, Clone, Deserialize)]
pub struct QrView {
    pub id: String,
    pub ip: String,
    pub os: String,
    pub browser: String,
    pub seconds_ago: i64,
    pub expires_in: i64,
    pub same_network: bool,
    pub match_choices: Vec<String>,
}

impl Client {
    /// Opens (scans) a QR login as the signed-in device; the first device to do so locks it.
    pub async fn qr_scan(&self, access_token: &str, id: &str) -> Result<QrView> {
        let r = self.http.get(format!("{}/api/v1/qr-logins/{id}", self.base)).bearer_auth(access_token).send().await?;
        Self::decode(r).await
    }

    pub async fn qr_approve(&self, access_token: &str, id: &str, match_code: &str) -> Result<()> {
        let r = self
            .http
            .post(format!("{}/api/v1/qr-logins/{id}/approve", self.base))
            .bearer_auth(access_token)
            .json(&serde_json::json!({ "match_code": match_code }))
            .send()
            .await?;
        Self::expect_ok(r).await
    }

    pub async fn qr_deny(&self, access_token: &str, id: &str) -> Result<()> {
        let r = self.http.post(format!("{}/api/v1/qr-logins/{id}/deny", self.base)).bearer_auth(access_token).send().await?;
        Self::expect_ok(r).await
    }
}
