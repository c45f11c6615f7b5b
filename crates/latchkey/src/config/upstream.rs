//! `[[upstream]]`: the identity providers people may sign in with, their defaults per kind, the
//! `LATCHKEY_UPSTREAM_<ID>__<KEY>` environment form, and their validation.

use serde::Deserialize;

/// One upstream identity provider: any OpenID Connect issuer (`kind = "oidc"`, found by
/// discovery), or GitHub over plain OAuth 2.0 (`kind = "github"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    /// In the callback path `/login/upstream/<id>/callback` and in `amr`: `[a-z0-9_-]`, at most 32.
    pub id: String,
    #[serde(default)]
    pub kind: UpstreamKind,
    /// The issuer URL exactly as its discovery document says it (OIDC); GitHub: its web URL,
    /// `https://github.com` unless GitHub Enterprise Server.
    #[serde(default)]
    pub issuer: String,
    pub client_id: String,
    #[serde(default)]
    pub client_secret: String,
    /// Scopes asked for. OIDC: `openid email profile`; GitHub: `read:user user:email`.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The name on the "Sign in with …" button.
    #[serde(default)]
    pub display_name: String,
    /// Whether a first sign-in with an unknown identity creates an account.
    #[serde(default)]
    pub auto_create: bool,
    /// GitHub only, for GitHub Enterprise Server: where its OAuth pages and API are.
    #[serde(default)]
    pub authorization_endpoint: String,
    #[serde(default)]
    pub token_endpoint: String,
    #[serde(default)]
    pub api_url: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    #[default]
    Oidc,
    Github,
}

/// `LATCHKEY_UPSTREAM_<ID>__<KEY>`: one key of the `[[upstream]]` entry with that id, made if
/// the file has none.
pub(super) fn upstream_env(root: &mut toml::Table, key: &str, id: &str, field: &str, value: &str) -> anyhow::Result<()> {
    let list = root.entry("upstream").or_insert_with(|| toml::Value::Array(Vec::new()));
    let Some(list) = list.as_array_mut() else {
        anyhow::bail!("environment variable {key}: `upstream` is not a list of tables");
    };
    let at = match list.iter().position(|t| t.get("id").and_then(|v| v.as_str()) == Some(id)) {
        Some(at) => at,
        None => {
            let mut t = toml::Table::new();
            t.insert("id".into(), toml::Value::String(id.to_owned()));
            list.push(toml::Value::Table(t));
            list.len() - 1
        }
    };
    let Some(table) = list[at].as_table_mut() else {
        anyhow::bail!("environment variable {key}: `upstream` is not a list of tables");
    };
    // A secret or an id is a string even when it looks like a number.
    let field = field.to_ascii_lowercase();
    let v =
        if matches!(field.as_str(), "auto_create" | "scopes") { super::env_value(value) } else { toml::Value::String(value.to_owned()) };
    table.insert(field, v);
    Ok(())
}

/// `amr` values that an upstream's id must not pass for (RFC 8176 and this server's own).
const RESERVED_AMR: &[&str] = &[
    "pwd",
    "otp",
    "mfa",
    "hwk",
    "swk",
    "user",
    "pin",
    "sms",
    "tel",
    "face",
    "fpt",
    "trusted_device",
    "signup",
    "device_code",
    "pairing",
    "qr",
];

impl UpstreamSettings {
    pub(super) fn fill_in_defaults(&mut self) {
        let github = self.kind == UpstreamKind::Github;
        let or = |v: &mut String, d: &str| {
            if v.is_empty() {
                *v = d.to_owned();
            }
        };
        if github {
            or(&mut self.issuer, "https://github.com");
            let web = self.issuer.trim_end_matches('/').to_owned();
            or(&mut self.authorization_endpoint, &format!("{web}/login/oauth/authorize"));
            or(&mut self.token_endpoint, &format!("{web}/login/oauth/access_token"));
            let api = if web == "https://github.com" { "https://api.github.com".to_owned() } else { format!("{web}/api/v3") };
            or(&mut self.api_url, &api);
            or(&mut self.display_name, "GitHub");
        } else {
            or(&mut self.display_name, &self.id.clone());
        }
        if self.scopes.is_empty() {
            let d: &[&str] = if github { &["read:user", "user:email"] } else { &["openid", "email", "profile"] };
            self.scopes = d.iter().map(|s| (*s).to_owned()).collect();
        }
    }

    pub(super) fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=32).contains(&self.id.len())
                && self.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'),
            "id must be 1 to 32 of a-z, 0-9, - and _"
        );
        anyhow::ensure!(!RESERVED_AMR.contains(&self.id.as_str()), "id `{}` is reserved (an amr value)", self.id);
        anyhow::ensure!(!self.client_id.is_empty(), "client_id is required");
        anyhow::ensure!(self.display_name.len() <= 64, "display_name is at most 64 characters");
        let mut urls = vec![("issuer", &self.issuer)];
        match self.kind {
            UpstreamKind::Oidc => {
                anyhow::ensure!(self.scopes.iter().any(|s| s == "openid"), "scopes must include openid");
                anyhow::ensure!(
                    self.authorization_endpoint.is_empty() && self.token_endpoint.is_empty() && self.api_url.is_empty(),
                    "an OpenID Connect upstream's endpoints come from its discovery document"
                );
            }
            UpstreamKind::Github => {
                urls.extend([
                    ("authorization_endpoint", &self.authorization_endpoint),
                    ("token_endpoint", &self.token_endpoint),
                    ("api_url", &self.api_url),
                ]);
            }
        }
        for (name, u) in urls {
            anyhow::ensure!(is_safe_url(u), "{name} must be an https URL (plain http only on a loopback address), not `{u}`");
        }
        Ok(())
    }
}

/// https, or plain http only to this machine: a sign-in's code and tokens never cross a network
/// in the clear.
pub(crate) fn is_safe_url(u: &str) -> bool {
    let Ok(url) = url::Url::parse(u) else {
        return false;
    };
    match url.scheme() {
        "https" => url.host().is_some(),
        "http" => match url.host() {
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            Some(url::Host::Domain(d)) => d == "localhost",
            None => false,
        },
        _ => false,
    }
}
