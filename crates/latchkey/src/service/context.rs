//! The application core: everything a request needs, without HTTP. Handlers call into
//! `service`, which uses this.

use crate::clock::Clock;
use crate::config::Settings;
use crate::domain::{sealed, secret};
use crate::events::EventBus;
use crate::keys::KeyRing;
use crate::passwords::PasswordHasher;
use crate::store::DynStore;
use std::sync::Arc;

pub struct App {
    pub settings: Settings,
    pub store: DynStore,
    pub keys: KeyRing,
    pub passwords: PasswordHasher,
    pub events: Arc<dyn EventBus>,
    pub clock: Arc<dyn Clock>,
    /// Key for deriving refresh-token successors (see `domain::secret::refresh_successor`).
    pub refresh_key: Vec<u8>,
    /// Key for the HMAC under which human codes (user codes, pairing codes) are stored.
    pub code_key: Vec<u8>,
    /// Key sealing TOTP secrets at rest.
    pub mfa_key: [u8; 32],
    pub mailer: crate::mail::Mailer,
    /// The public base URL and token issuer.
    pub issuer: String,
    /// Whether cookies carry `Secure` (and so may use the `__Host-` prefix).
    pub secure_cookies: bool,
    pub clients: crate::service::clients::ClientCache,
    /// The server-wide cap on pending requests (see `service::limits::admit_pending`).
    pub pending: crate::service::limits::PendingGauge,
    /// The identity providers people may sign in with (`[[upstream]]`).
    pub upstreams: crate::upstream::Upstreams,
    /// The passkey relying party; `None` when `server.public_url`'s host is no domain name.
    pub webauthn: Option<webauthn_rs::Webauthn>,
}

impl App {
    pub async fn new(
        settings: Settings,
        store: DynStore,
        events: Arc<dyn EventBus>,
        clock: Arc<dyn Clock>,
        issuer: String,
    ) -> anyhow::Result<Self> {
        let now = clock.now();
        let master = settings.master_key()?;
        let keys = KeyRing::new(store.clone(), settings.tokens.access_ttl_secs as i64, master);
        keys.init(now).await?;
        let refresh_key = server_secret(&store, master.as_ref(), "refresh_successor_key").await?;
        let code_key = server_secret(&store, master.as_ref(), "code_hmac_key").await?;
        let mfa_key: [u8; 32] = server_secret(&store, master.as_ref(), "mfa_seal_key")
            .await?
            .try_into()
            .map_err(|_| anyhow::anyhow!("stored mfa_seal_key is not 32 bytes"))?;
        let mailer = crate::mail::Mailer::new(&settings.mail, &settings.server.data_dir)?;
        let passwords = PasswordHasher::new(&settings.passwords)?;
        let secure_cookies = !is_plain_http_loopback(&issuer);
        let upstreams = crate::upstream::Upstreams::new(&settings.upstreams)?;
        let webauthn = crate::service::passkeys::relying_party(&issuer, &settings);
        Ok(Self {
            settings,
            store,
            keys,
            passwords,
            events,
            clock,
            refresh_key,
            code_key,
            mfa_key,
            mailer,
            issuer,
            secure_cookies,
            clients: Default::default(),
            pending: Default::default(),
            upstreams,
            webauthn,
        })
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }
}

/// A server secret: made on first start, sealed under the master key when there is one (and
/// sealed on the first start with a key, if it was stored before), opened for use.
async fn server_secret(store: &DynStore, master: Option<&[u8; 32]>, name: &str) -> anyhow::Result<Vec<u8>> {
    let fresh = secret::random_bytes::<32>();
    let to_store = match master {
        Some(k) => sealed::seal_marked(k, name.as_bytes(), &fresh),
        None => fresh.to_vec(),
    };
    let stored = store.secret_or_insert(name, &to_store).await?;
    let plain = sealed::open_at_rest(master, name.as_bytes(), &stored).map_err(|e| anyhow::anyhow!("server secret {name}: {e}"))?;
    if let Some(k) = master
        && !sealed::is_marked(&stored)
    {
        store.reseal(name, false, &stored, &sealed::seal_marked(k, name.as_bytes(), &plain)).await?;
    }
    Ok(plain)
}

fn is_plain_http_loopback(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    host == "localhost" || host == "[::1]" || host.starts_with("127.")
}

/// What the server itself observed of a request: the client's address and User-Agent.
#[derive(Debug, Clone)]
pub struct ClientMeta {
    pub ip: String,
    pub user_agent: String,
}

/// The service layer's one error type. HTTP maps it to problem details or OAuth errors.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Invalid(#[from] crate::domain::ParseError),
    #[error("{0}")]
    BadRequest(String),
    #[error("the e-mail or password is wrong")]
    InvalidCredentials,
    #[error("authentication required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("too many requests")]
    RateLimited { retry_after: u64 },
    #[error("the server is busy")]
    Overloaded,
    /// An upstream identity provider could not be reached or answered nonsense (HTTP 502).
    #[error("{0}")]
    UpstreamUnavailable(String),
    /// RFC 6749 `invalid_grant`: the grant (refresh token, code) is invalid, expired or used.
    #[error("{0}")]
    InvalidGrant(String),
    #[error("client authentication failed")]
    InvalidClient,
    #[error("{0}")]
    InvalidScope(String),
    /// An RFC 8628 §3.5 answer to a device polling the token endpoint.
    #[error("{0}")]
    DeviceGrant(&'static str),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::store::StoreError> for AppError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Conflict => AppError::Conflict("already exists".into()),
            other => AppError::Internal(other.into()),
        }
    }
}

impl From<crate::keys::KeyError> for AppError {
    fn from(e: crate::keys::KeyError) -> Self {
        AppError::Internal(e.into())
    }
}

impl From<crate::passwords::HashError> for AppError {
    fn from(e: crate::passwords::HashError) -> Self {
        match e {
            crate::passwords::HashError::Overloaded => AppError::Overloaded,
            other => AppError::Internal(other.into()),
        }
    }
}

/// The server draws QR codes only of its own short URLs: one that does not fit is a bug.
impl From<qrcode::types::QrError> for AppError {
    fn from(e: qrcode::types::QrError) -> Self {
        AppError::Internal(anyhow::anyhow!("QR code: {e}"))
    }
}

pub type AppResult<T> = Result<T, AppError>;

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_detection() {
        assert!(super::is_plain_http_loopback("http://127.0.0.1:8080"));
        assert!(super::is_plain_http_loopback("http://localhost:1/x"));
        assert!(!super::is_plain_http_loopback("https://127.0.0.1"));
        assert!(!super::is_plain_http_loopback("http://example.com"));
    }
}
