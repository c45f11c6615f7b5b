//! Upstream identity providers: the client side of "Sign in with …". Each kind only turns an
//! authorization response into a verified [`Identity`]; what is done with it (linking, the
//! second factor, the session, the audit trail) is `service::upstream_login`'s, the same for all.
//! Each kind is a [`Provider`]; a new one (SAML's redirect binding, an OAuth 2.0 site) is one
//! module implementing it, one `kind` in `[[upstream]]` and one line in [`provider_for`].

pub mod github;
pub mod oidc;

use crate::config::{UpstreamKind, UpstreamSettings};
use std::sync::Arc;
use std::time::Duration;

/// Who the upstream says signed in, after every check passed.
#[derive(Debug, Clone)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The provider could not be reached, or answered something that is not its protocol.
    #[error("{0}")]
    Unavailable(String),
    /// The provider's answer failed a check: nothing in it is trusted.
    #[error("{0}")]
    Rejected(String),
}

pub type UpstreamResult<T> = Result<T, UpstreamError>;

/// What the authorization request carries (all made by the service for this one sign-in).
pub struct Begin<'a> {
    pub redirect_uri: &'a str,
    pub state: &'a str,
    pub nonce: &'a str,
    pub code_challenge: &'a str,
}

/// What finishing a sign-in needs: the callback's `code` and `iss`, and what the sign-in began with.
pub struct Finish<'a> {
    pub code: &'a str,
    pub iss: Option<&'a str>,
    pub redirect_uri: &'a str,
    pub code_verifier: &'a str,
    pub nonce: &'a str,
    pub now: i64,
}

/// What one kind of upstream does: send the browser there, and turn its answer into a verified
/// [`Identity`]. Nothing else: linking, second factors and sessions are the service's, for all.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    async fn authorization_url(&self, up: &Upstream, b: &Begin<'_>, now: i64) -> UpstreamResult<String>;
    /// The callback's code exchanged and everything the upstream says verified (`iss` is
    /// checked before, for every kind).
    async fn finish(&self, up: &Upstream, f: &Finish<'_>) -> UpstreamResult<Identity>;
    /// The authorization endpoint, if known without asking the network.
    fn authorization_endpoint(&self, up: &Upstream) -> Option<String>;
    /// Fetches ahead what the first sign-in would need (an issuer's discovery document).
    async fn warm_up(&self, _up: &Upstream, _now: i64) -> UpstreamResult<()> {
        Ok(())
    }
}

/// The one place a kind of upstream is chosen.
fn provider_for(kind: UpstreamKind) -> Box<dyn Provider> {
    match kind {
        UpstreamKind::Oidc => Box::new(oidc::Oidc::default()),
        UpstreamKind::Github => Box::new(github::GitHub),
    }
}

pub struct Upstream {
    pub settings: UpstreamSettings,
    http: reqwest::Client,
    provider: Box<dyn Provider>,
}

impl Upstream {
    pub fn id(&self) -> &str {
        &self.settings.id
    }

    pub fn display_name(&self) -> &str {
        &self.settings.display_name
    }

    /// Where to send the browser.
    pub async fn authorization_url(&self, b: &Begin<'_>, now: i64) -> UpstreamResult<String> {
        self.provider.authorization_url(self, b, now).await
    }

    /// The callback's code exchanged and everything the upstream says verified.
    pub async fn finish(&self, f: &Finish<'_>) -> UpstreamResult<Identity> {
        // RFC 9207: an `iss` on the callback must be this provider's, whatever the kind.
        if let Some(iss) = f.iss
            && iss != self.settings.issuer
        {
            return Err(UpstreamError::Rejected("the answer names another issuer (iss) than the provider it came back to".into()));
        }
        self.provider.finish(self, f).await
    }

    /// The origin the authorization endpoint is on, if known without asking the network: a
    /// form that redirects there must name it in the page's CSP `form-action`.
    pub fn form_origin(&self) -> Option<String> {
        let endpoint = self.provider.authorization_endpoint(self).unwrap_or_else(|| self.settings.issuer.clone());
        let u = url::Url::parse(&endpoint).ok()?;
        Some(u.origin().ascii_serialization())
    }

    async fn send(&self, req: reqwest::RequestBuilder, what: &str) -> UpstreamResult<reqwest::Response> {
        req.send().await.map_err(|e| {
            tracing::warn!(upstream = %self.settings.id, error = %e, "{what}: cannot reach the upstream");
            UpstreamError::Unavailable(format!("{} cannot be reached right now", self.settings.display_name))
        })
    }
}

/// The authorization request: `endpoint` (which may have a query of its own) with the common
/// parameters of a code grant with PKCE, and `extra`.
fn authorization_request(up: &Upstream, endpoint: &str, b: &Begin<'_>, extra: &[(&str, &str)]) -> UpstreamResult<String> {
    let s = &up.settings;
    let mut url = url::Url::parse(endpoint).map_err(|_| UpstreamError::Rejected("the authorization endpoint is not a URL".into()))?;
    url.query_pairs_mut()
        .append_pair("client_id", &s.client_id)
        .append_pair("redirect_uri", b.redirect_uri)
        .append_pair("scope", &s.scopes.join(" "))
        .append_pair("state", b.state)
        .append_pair("code_challenge", b.code_challenge)
        .append_pair("code_challenge_method", "S256")
        .extend_pairs(extra);
    Ok(url.into())
}

/// A JSON answer of at most 1 MiB, or `Unavailable`.
async fn json<T: serde::de::DeserializeOwned>(mut resp: reqwest::Response, what: &str) -> UpstreamResult<T> {
    const MAX: usize = 1 << 20;
    let too_large = || UpstreamError::Unavailable(format!("{what}: the answer is too large"));
    if resp.content_length().is_some_and(|n| n > MAX as u64) {
        return Err(too_large());
    }
    // Read chunk by chunk, so an endless answer is cut off at the limit, not buffered.
    let mut bytes = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| UpstreamError::Unavailable(format!("{what}: the answer broke off ({e})")))? {
        if bytes.len() + chunk.len() > MAX {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| UpstreamError::Unavailable(format!("{what}: the answer is not what the protocol says ({e})")))
}

/// The configured upstreams, by id.
#[derive(Default)]
pub struct Upstreams(Vec<Arc<Upstream>>);

impl Upstreams {
    pub fn new(settings: &[UpstreamSettings]) -> anyhow::Result<Self> {
        // No redirects: a token endpoint that redirects is not followed with a code and secret.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("latchkey/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self(
            settings
                .iter()
                .map(|s| Arc::new(Upstream { settings: s.clone(), http: http.clone(), provider: provider_for(s.kind) }))
                .collect(),
        ))
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Upstream>> {
        self.0.iter().find(|u| u.settings.id == id)
    }

    pub fn all(&self) -> &[Arc<Upstream>] {
        &self.0
    }

    /// Fetches every OpenID Connect issuer's discovery document once, so that the first sign-in
    /// does not wait for it and pages know the authorization endpoints. Failures are logged and
    /// tried again on first use.
    pub async fn warm_up(&self, now: i64) {
        for u in &self.0 {
            if let Err(e) = u.provider.warm_up(u, now).await {
                tracing::warn!(upstream = %u.settings.id, error = %e, "upstream discovery failed; will retry on first sign-in");
            }
        }
    }
}
