//! Settings: embedded defaults, then an optional TOML file, then `LATCHKEY_SECTION__KEY`
//! environment variables, then command-line flags. Unknown keys are an error naming the key.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod upstream;
pub(crate) use upstream::is_safe_url;
pub use upstream::{UpstreamKind, UpstreamSettings};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub tokens: TokenSettings,
    pub passwords: PasswordSettings,
    pub accounts: AccountSettings,
    pub limits: LimitSettings,
    pub device: DeviceSettings,
    /// Which clients, networks and accounts may use the device grant (`domain::device_policy`).
    pub device_policy: crate::domain::device_policy::DevicePolicy,
    pub mfa: MfaSettings,
    pub qr: QrSettings,
    pub passkeys: PasskeySettings,
    pub mail: MailSettings,
    pub log: LogSettings,
    /// Upstream identity providers people may sign in with: `[[upstream]]` tables, or
    /// `LATCHKEY_UPSTREAM_<ID>__<KEY>` variables.
    #[serde(rename = "upstream")]
    pub upstreams: Vec<UpstreamSettings>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MfaSettings {
    /// How long "remember this device" lasts, in days (absolute; using it does not extend it).
    pub remember_days: u64,
    /// The issuer name authenticator apps show next to the account.
    pub totp_issuer: String,
    /// Lifetime of an e-mailed code, in seconds.
    pub email_code_ttl_secs: u64,
    /// The shortest time between two e-mailed codes for one account and purpose, in seconds.
    pub email_resend_secs: u64,
    /// Lifetime of the token between the password step and the second factor, in seconds (at most 300).
    pub mfa_token_ttl_secs: u64,
    /// Changing second factors needs a sign-in at most this many seconds old.
    pub recent_auth_secs: u64,
}

impl Default for MfaSettings {
    fn default() -> Self {
        Settings::default().mfa
    }
}

/// Passkeys (WebAuthn). The relying party is `server.public_url`'s host: it must be a domain
/// name (`localhost` will do on one machine), not an IP address, for browsers to use passkeys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasskeySettings {
    /// Approving a device grant, a pairing request or a QR login needs a fresh passkey assertion
    /// for every account (each account can also ask this for itself on /account). An account
    /// without a passkey then cannot approve until it adds one.
    pub require_for_approvals: bool,
    /// How old that assertion may be, in seconds.
    pub step_up_max_age_secs: u64,
    /// How long a started registration or sign-in may take, in seconds.
    pub challenge_ttl_secs: u64,
}

impl Default for PasskeySettings {
    fn default() -> Self {
        Settings::default().passkeys
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QrSettings {
    /// Lifetime of a QR login, in seconds (at most 120); the page shows a fresh QR after it.
    pub ttl_secs: u64,
    /// QR logins one IP may start per minute.
    pub create_per_ip_per_minute: i64,
    /// Lifetime of the handoff code the browser exchanges for its session, in seconds (at most 60).
    pub handoff_ttl_secs: u64,
    /// Seconds a browser's socket may stay silent (no pong) before it is closed.
    pub socket_idle_secs: u64,
}

impl Default for QrSettings {
    fn default() -> Self {
        Settings::default().qr
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailSettings {
    /// `smtp://host:port` (plain, or STARTTLS with `?tls=required`) or `smtps://user:pass@host:465`.
    /// Empty: mails are written to the log and as .eml files under `<data_dir>/mail`.
    pub smtp_url: String,
    /// The sender, e.g. `Latchkey <no-reply@example.com>`.
    pub from: String,
    /// "A new device signed in" to the account's owner for every device added, with a one-click
    /// "This wasn't me". Each account can also turn it off for itself on /account.
    pub new_device_mail: bool,
}

impl Default for MailSettings {
    fn default() -> Self {
        Settings::default().mail
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeviceSettings {
    /// Lifetime of a device-grant request (its device_code and user_code), in seconds.
    pub code_ttl_secs: u64,
    /// The polling interval handed to devices, in seconds.
    pub interval_secs: u64,
    /// `slow_down` answers one request may earn before it is ended as `access_denied`.
    pub max_slow_downs: i64,
    /// Lifetime of a pairing code, in seconds (at most 300).
    pub pairing_ttl_secs: u64,
    /// Device-grant requests one IP may start per minute.
    pub create_per_ip_per_minute: i64,
    /// Device-grant requests one client may start per minute.
    pub create_per_client_per_minute: i64,
    /// Live pending requests one IP may hold (0: no cap).
    pub pending_per_ip: i64,
    /// Live pending requests the whole server holds (0: no cap).
    pub pending_total: i64,
    /// Wrong user codes one account may enter per 15 minutes.
    pub code_failures_per_account: i64,
    /// Wrong user or pairing codes one IP may enter per 15 minutes.
    pub code_failures_per_ip: i64,
    /// Wrong user or pairing codes the whole server accepts per minute before refusing all.
    pub code_failures_global_per_minute: i64,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        Settings::default().device
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to listen on. Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Where the database and generated files live.
    pub data_dir: PathBuf,
    /// The URL people and clients reach this server at; the token issuer. Defaults to
    /// `http://<listen>`. Cookies are `Secure` unless it is plain http on a loopback host.
    pub public_url: Option<String>,
    /// Trust `X-Forwarded-For` from these peer addresses (your reverse proxy). Empty: trust none.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Seconds a request may take before it is answered 503.
    pub request_timeout_secs: u64,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// A 32-byte key, Base64, that seals the signing keys and server secrets in the database, so
    /// that a copy of the database alone cannot mint tokens. Better from the environment
    /// (`LATCHKEY_SERVER__MASTER_KEY`) or `master_key_file` than in the config file.
    pub master_key: Option<String>,
    /// A file holding the master key (Base64), e.g. a systemd credential or a mounted secret.
    pub master_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    /// `sqlite://PATH`. Empty: `latchkey.db` in the data directory.
    pub url: String,
    pub max_connections: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenSettings {
    pub access_ttl_secs: u64,
    /// A refresh token unused this long dies.
    pub refresh_idle_secs: u64,
    /// A session dies this long after sign-in, however active.
    pub session_absolute_secs: u64,
    /// Seconds in which the immediate predecessor of the live refresh token gets the same
    /// successor again instead of counting as reuse. 0 turns the grace off.
    pub refresh_reuse_grace_secs: u64,
    /// Scope of sessions opened with a password when the request names none.
    pub default_scope: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordSettings {
    /// argon2id memory in KiB (OWASP: at least 19456 with 2 iterations).
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Threads that hash at once; 0 means one per CPU.
    pub hash_workers: usize,
    /// Hash requests allowed to wait for a worker; past it logins get 503 at once.
    pub hash_queue: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountSettings {
    /// Whether anyone may create an account with `POST /api/v1/accounts`.
    pub self_registration: bool,
    /// A new address gets a verification link, and until it is followed it gets no e-mail codes
    /// and no new-device mail. false: every address counts as verified when it is given (only
    /// where you trust whoever types addresses in).
    pub verify_email: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitSettings {
    /// Password logins one IP may attempt per minute.
    pub login_per_ip_per_minute: i64,
    /// Accounts one IP may create per hour.
    pub register_per_ip_per_hour: i64,
    /// Refresh grants one IP may make per minute.
    pub token_per_ip_per_minute: i64,
    /// Failed logins an account absorbs before each further attempt must wait.
    pub login_free_failures: u32,
    /// The longest wait between attempts on one account, in seconds (never a lockout).
    pub login_max_delay_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: String,
    /// A tracing filter such as `info` or `latchkey=debug,info`.
    pub level: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            server: ServerSettings::default(),
            database: DatabaseSettings { url: String::new(), max_connections: 8 },
            tokens: TokenSettings {
                access_ttl_secs: 600,
                refresh_idle_secs: 30 * 86400,
                session_absolute_secs: 90 * 86400,
                refresh_reuse_grace_secs: 5,
                default_scope: "account".into(),
            },
            passwords: PasswordSettings { memory_kib: 19456, iterations: 2, parallelism: 1, hash_workers: 0, hash_queue: 64 },
            accounts: AccountSettings { self_registration: true, verify_email: true },
            limits: LimitSettings {
                login_per_ip_per_minute: 30,
                register_per_ip_per_hour: 20,
                token_per_ip_per_minute: 600,
                login_free_failures: 5,
                login_max_delay_secs: 60,
            },
            device: DeviceSettings {
                code_ttl_secs: 600,
                interval_secs: 5,
                max_slow_downs: 10,
                pairing_ttl_secs: 300,
                create_per_ip_per_minute: 30,
                create_per_client_per_minute: 3000,
                pending_per_ip: 50,
                pending_total: 100_000,
                code_failures_per_account: 5,
                code_failures_per_ip: 20,
                code_failures_global_per_minute: 600,
            },
            device_policy: Default::default(),
            mfa: MfaSettings {
                remember_days: 30,
                totp_issuer: "Latchkey".into(),
                email_code_ttl_secs: 600,
                email_resend_secs: 30,
                mfa_token_ttl_secs: 300,
                recent_auth_secs: 600,
            },
            passkeys: PasskeySettings { require_for_approvals: false, step_up_max_age_secs: 300, challenge_ttl_secs: 300 },
            qr: QrSettings { ttl_secs: 120, create_per_ip_per_minute: 30, handoff_ttl_secs: 60, socket_idle_secs: 60 },
            mail: MailSettings { smtp_url: String::new(), from: "Latchkey <latchkey@localhost>".into(), new_device_mail: true },
            log: LogSettings { format: "text".into(), level: "info".into() },
            upstreams: Vec::new(),
        }
    }
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("latchkey-data"),
            public_url: None,
            trusted_proxies: Vec::new(),
            request_timeout_secs: 30,
            max_body_bytes: 64 * 1024,
            master_key: None,
            master_key_file: None,
        }
    }
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Settings::default().database
    }
}
impl Default for TokenSettings {
    fn default() -> Self {
        Settings::default().tokens
    }
}
impl Default for PasswordSettings {
    fn default() -> Self {
        Settings::default().passwords
    }
}
impl Default for AccountSettings {
    fn default() -> Self {
        Settings::default().accounts
    }
}
impl Default for LimitSettings {
    fn default() -> Self {
        Settings::default().limits
    }
}
impl Default for LogSettings {
    fn default() -> Self {
        Settings::default().log
    }
}

/// Flags that override the file and the environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub database: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub log_format: Option<String>,
}

pub const ENV_PREFIX: &str = "LATCHKEY_";

impl Settings {
    /// Loads the layers. `env` is passed in (not read here) so tests can give their own.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>, flags: &Overrides) -> anyhow::Result<Self> {
        let mut root = toml::Table::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read config file {}: {e}", path.display()))?;
            root = text.parse::<toml::Table>().map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?;
        }
        for (key, value) in env {
            let Some(rest) = key.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let Some((section, field)) = rest.split_once("__") else {
                // Not a setting (no SECTION__KEY shape); say so, since it may be a typo.
                eprintln!("warning: ignoring environment variable {key}: settings are {ENV_PREFIX}SECTION__KEY");
                continue;
            };
            let section = section.to_ascii_lowercase();
            if let Some(id) = section.strip_prefix("upstream_") {
                upstream::upstream_env(&mut root, &key, id, field, &value)?;
                continue;
            }
            let entry = root.entry(section.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let Some(table) = entry.as_table_mut() else {
                anyhow::bail!("environment variable {key}: `{section}` is not a section");
            };
            table.insert(field.to_ascii_lowercase(), env_value(&value));
        }
        let mut settings: Settings = serde_path_to_error::deserialize(toml::Value::Table(root))
            .map_err(|e| anyhow::anyhow!("configuration: at `{}`: {}", e.path(), e.inner()))?;
        if let Some(l) = flags.listen {
            settings.server.listen = l;
        }
        if let Some(d) = &flags.database {
            settings.database.url = d.clone();
        }
        if let Some(d) = &flags.data_dir {
            settings.server.data_dir = d.clone();
        }
        if let Some(f) = &flags.log_format {
            settings.log.format = f.clone();
        }
        for u in &mut settings.upstreams {
            u.fill_in_defaults();
        }
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(matches!(self.log.format.as_str(), "text" | "json"), "log.format must be `text` or `json`");
        self.master_key()?;
        anyhow::ensure!((60..=3600).contains(&self.tokens.access_ttl_secs), "tokens.access_ttl_secs must be between 60 and 3600");
        anyhow::ensure!(self.tokens.refresh_reuse_grace_secs <= 60, "tokens.refresh_reuse_grace_secs must be at most 60");
        anyhow::ensure!(self.passwords.memory_kib >= 8 * 1024, "passwords.memory_kib must be at least 8192");
        anyhow::ensure!(
            self.passwords.iterations >= 1 && self.passwords.parallelism >= 1,
            "passwords.iterations and parallelism must be at least 1"
        );
        if let Some(u) = &self.server.public_url {
            anyhow::ensure!(u.starts_with("http://") || u.starts_with("https://"), "server.public_url must start with http:// or https://");
        }
        anyhow::ensure!((60..=1800).contains(&self.device.code_ttl_secs), "device.code_ttl_secs must be between 60 and 1800");
        anyhow::ensure!((1..=60).contains(&self.device.interval_secs), "device.interval_secs must be between 1 and 60");
        anyhow::ensure!((30..=300).contains(&self.device.pairing_ttl_secs), "device.pairing_ttl_secs must be between 30 and 300");
        anyhow::ensure!((1..=365).contains(&self.mfa.remember_days), "mfa.remember_days must be between 1 and 365");
        anyhow::ensure!((30..=300).contains(&self.mfa.mfa_token_ttl_secs), "mfa.mfa_token_ttl_secs must be between 30 and 300");
        anyhow::ensure!((60..=600).contains(&self.mfa.email_code_ttl_secs), "mfa.email_code_ttl_secs must be between 60 and 600");
        anyhow::ensure!((10..=120).contains(&self.qr.ttl_secs), "qr.ttl_secs must be between 10 and 120");
        anyhow::ensure!((30..=600).contains(&self.qr.socket_idle_secs), "qr.socket_idle_secs must be between 30 and 600");
        anyhow::ensure!((60..=3600).contains(&self.mfa.recent_auth_secs), "mfa.recent_auth_secs must be between 60 and 3600");
        anyhow::ensure!((5..=600).contains(&self.mfa.email_resend_secs), "mfa.email_resend_secs must be between 5 and 600");
        anyhow::ensure!(self.qr.create_per_ip_per_minute >= 1, "qr.create_per_ip_per_minute must be at least 1");
        anyhow::ensure!((5..=60).contains(&self.qr.handoff_ttl_secs), "qr.handoff_ttl_secs must be between 5 and 60");
        self.device_policy.validate().map_err(|e| anyhow::anyhow!("device_policy: {e}"))?;
        crate::domain::Scope::parse(&self.tokens.default_scope).map_err(|e| anyhow::anyhow!("tokens.default_scope: {e}"))?;
        let mut ids = std::collections::HashSet::new();
        for u in &self.upstreams {
            u.validate().map_err(|e| anyhow::anyhow!("upstream `{}`: {e}", u.id))?;
            anyhow::ensure!(ids.insert(u.id.as_str()), "upstream `{}` is configured twice", u.id);
        }
        Ok(())
    }

    /// The master key, if one is set: from `server.master_key`, or read from `server.master_key_file`.
    pub fn master_key(&self) -> anyhow::Result<Option<[u8; 32]>> {
        let text = match (&self.server.master_key, &self.server.master_key_file) {
            (Some(_), Some(_)) => anyhow::bail!("set server.master_key or server.master_key_file, not both"),
            (Some(k), None) => k.clone(),
            (None, Some(path)) => {
                std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("server.master_key_file {}: {e}", path.display()))?
            }
            (None, None) => return Ok(None),
        };
        use base64::Engine;
        let text = text.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text))
            .map_err(|_| anyhow::anyhow!("the master key is not Base64 (make one with `openssl rand -base64 32`)"))?;
        let key: [u8; 32] =
            bytes.try_into().map_err(|_| anyhow::anyhow!("the master key must be 32 bytes (make one with `openssl rand -base64 32`)"))?;
        Ok(Some(key))
    }

    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("sqlite://{}", self.server.data_dir.join("latchkey.db").display())
        } else {
            self.database.url.clone()
        }
    }

    /// The public base URL without a trailing slash.
    pub fn public_url(&self, bound: SocketAddr) -> String {
        match &self.server.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => format!("http://{bound}"),
        }
    }
}

/// Environment values are strings; read them as TOML values where they parse as one
/// (numbers, booleans, arrays), else keep them as strings.
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}").parse::<toml::Table>().ok().and_then(|mut t| t.remove("v")).unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_zero_config() {
        let s = Settings::load(None, env(&[]), &Overrides::default()).unwrap();
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert!(s.database_url().ends_with("latchkey.db"));
    }

    #[test]
    fn env_overrides_with_types() {
        let s = Settings::load(
            None,
            env(&[
                ("LATCHKEY_SERVER__LISTEN", "127.0.0.1:9999"),
                ("LATCHKEY_TOKENS__ACCESS_TTL_SECS", "300"),
                ("LATCHKEY_ACCOUNTS__SELF_REGISTRATION", "false"),
                ("OTHER", "x"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(s.server.listen.port(), 9999);
        assert_eq!(s.tokens.access_ttl_secs, 300);
        assert!(!s.accounts.self_registration);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Settings::load(None, env(&[("LATCHKEY_SERVER__LISTN", "x")]), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[tokens]\naccess_ttl = 5\n").unwrap();
        let err = Settings::load(Some(&p), env(&[]), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("access_ttl"), "{err}");
        std::fs::write(&p, "[nosuch]\nx = 1\n").unwrap();
        assert!(Settings::load(Some(&p), env(&[]), &Overrides::default()).unwrap_err().to_string().contains("nosuch"));
    }

    #[test]
    fn upstreams_from_the_file_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[[upstream]]\nid = \"corp\"\nissuer = \"https://sso.example.com\"\nclient_id = \"lk\"\n").unwrap();
        let s = Settings::load(
            Some(&p),
            env(&[
                ("LATCHKEY_UPSTREAM_CORP__CLIENT_SECRET", "12345"),
                ("LATCHKEY_UPSTREAM_GH__KIND", "github"),
                ("LATCHKEY_UPSTREAM_GH__CLIENT_ID", "Iv1.abc"),
                ("LATCHKEY_UPSTREAM_GH__AUTO_CREATE", "true"),
            ]),
            &Overrides::default(),
        )
        .unwrap();
        let corp = &s.upstreams[0];
        assert_eq!((corp.id.as_str(), corp.client_secret.as_str(), corp.display_name.as_str()), ("corp", "12345", "corp"));
        assert_eq!(corp.scopes, ["openid", "email", "profile"]);
        let gh = &s.upstreams[1];
        assert_eq!(gh.kind, UpstreamKind::Github);
        assert!(gh.auto_create);
        assert_eq!(gh.api_url, "https://api.github.com");
        assert_eq!(gh.token_endpoint, "https://github.com/login/oauth/access_token");
    }

    #[test]
    fn unsafe_upstreams_are_refused() {
        let bad = |pairs: &[(&str, &str)]| Settings::load(None, env(pairs), &Overrides::default()).unwrap_err().to_string();
        assert!(
            bad(&[("LATCHKEY_UPSTREAM_X__ISSUER", "http://sso.example.com"), ("LATCHKEY_UPSTREAM_X__CLIENT_ID", "a")]).contains("https")
        );
        assert!(
            bad(&[("LATCHKEY_UPSTREAM_PWD__ISSUER", "https://a.example"), ("LATCHKEY_UPSTREAM_PWD__CLIENT_ID", "a")]).contains("reserved")
        );
        assert!(bad(&[("LATCHKEY_UPSTREAM_X__ISSUER", "https://a.example")]).contains("client_id"));
        let ok = Settings::load(
            None,
            env(&[("LATCHKEY_UPSTREAM_X__ISSUER", "http://127.0.0.1:4000"), ("LATCHKEY_UPSTREAM_X__CLIENT_ID", "a")]),
            &Overrides::default(),
        );
        assert!(ok.is_ok(), "loopback http is for tests and local issuers");
    }

    #[test]
    fn the_device_policy_from_the_file_and_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "[[device_policy.client]]\nid = \"tv\"\naccounts = [\"@example.com\"]\n").unwrap();
        let s = Settings::load(
            Some(&p),
            env(&[("LATCHKEY_DEVICE_POLICY__DEFAULT", "deny"), ("LATCHKEY_DEVICE_POLICY__NETWORKS", "[\"10.0.0.0/8\"]")]),
            &Overrides::default(),
        )
        .unwrap();
        let policy = &s.device_policy;
        assert!(!policy.is_open());
        assert_eq!(policy.networks.len(), 1);
        assert!(policy.client("tv").is_some());
        let bad = Settings::load(None, env(&[("LATCHKEY_DEVICE_POLICY__NETWORKS", "[\"ten\"]")]), &Overrides::default()).unwrap_err();
        assert!(bad.to_string().contains("device_policy.networks"), "{bad}");
    }

    #[test]
    fn flags_win() {
        let flags = Overrides { listen: Some("127.0.0.1:0".parse().unwrap()), ..Default::default() };
        let s = Settings::load(None, env(&[("LATCHKEY_SERVER__LISTEN", "127.0.0.1:9999")]), &flags).unwrap();
        assert_eq!(s.server.listen.port(), 0);
    }
}
