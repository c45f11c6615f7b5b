//! OAuth clients: public ones (the CLI, devices, single-page and native apps: they cannot keep a
//! secret) and confidential ones with a secret shown once and stored as a SHA-256 hash. Apps
//! that sign their users in through the browser also register redirect URIs.

use super::audit::{Audit, AuditKind};
use crate::domain::redirect_uri::RedirectUri;
use crate::domain::{Scope, secret};
use crate::keys::SigningAlg;
use crate::service::{App, AppError, AppResult};
use crate::store::ClientRow;

pub const CLI_CLIENT: &str = "latchkey-cli";
pub const WEB_CLIENT: &str = "latchkey-web";

/// A client's id: 1 to 64 of `A-Z a-z 0-9 - _ .`.
pub fn parse_client_id(raw: &str) -> AppResult<String> {
    let ok = !raw.is_empty() && raw.len() <= 64 && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok { Ok(raw.to_owned()) } else { Err(AppError::BadRequest("client_id must be 1 to 64 of A-Z a-z 0-9 - _ .".into())) }
}

/// The scopes an app may ask for unless registered with others.
pub const DEFAULT_APP_SCOPES: &str = "openid profile email offline_access";

/// When the consent page is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    /// The first time (and when more is asked than was granted); remembered per user.
    Auto,
    /// On every authorization.
    Always,
}

impl Consent {
    pub fn parse(s: &str) -> AppResult<Self> {
        match s {
            "auto" => Ok(Self::Auto),
            "always" => Ok(Self::Always),
            _ => Err(AppError::BadRequest("consent must be auto or always".into())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Always => "always",
        }
    }
}

/// A client to register.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub id: String,
    pub name: String,
    pub confidential: bool,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// None: [`DEFAULT_APP_SCOPES`].
    pub scopes: Option<String>,
    pub consent: Consent,
    pub id_token_alg: SigningAlg,
    /// May introspect the tokens of every client (a resource server), not only its own.
    pub introspects_any: bool,
}

impl NewClient {
    /// A device client (no browser redirects), as `client add ID --name NAME` made before apps.
    pub fn device(id: &str, name: &str, confidential: bool) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            confidential,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            scopes: None,
            consent: Consent::Auto,
            id_token_alg: SigningAlg::RS256,
            introspects_any: false,
        }
    }
}

/// Checks each URI and joins them one per line, as they are stored.
fn uri_lines(uris: &[String], public: bool) -> AppResult<String> {
    let mut out = Vec::new();
    for raw in uris {
        let uri = RedirectUri::register(raw, public)?;
        if !out.contains(&uri.as_str().to_owned()) {
            out.push(uri.as_str().to_owned());
        }
    }
    Ok(out.join("\n"))
}

/// Creates a client; for a confidential one, returns the secret (the only time it is seen).
pub async fn create(app: &App, c: NewClient) -> AppResult<Option<String>> {
    let id = parse_client_id(&c.id)?;
    let name = c.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AppError::BadRequest("name must be 1 to 100 characters".into()));
    }
    let public = !c.confidential;
    if public && c.introspects_any {
        return Err(AppError::BadRequest("only a confidential client may introspect tokens".into()));
    }
    let scopes = Scope::parse(c.scopes.as_deref().unwrap_or(DEFAULT_APP_SCOPES))?;
    let secret = c.confidential.then(|| secret::new_token(secret::CLIENT_SECRET_PREFIX));
    let row = ClientRow {
        id: id.clone(),
        name: name.into(),
        secret_hash: secret.as_deref().map(secret::token_hash),
        created_at: app.now(),
        redirect_uris: uri_lines(&c.redirect_uris, public)?,
        post_logout_redirect_uris: uri_lines(&c.post_logout_redirect_uris, public)?,
        scopes: scopes.to_string(),
        consent: c.consent.as_str().into(),
        id_token_alg: c.id_token_alg.as_str().into(),
        introspects_any: c.introspects_any,
    };
    app.store.create_client(&row).await.map_err(|e| match e {
        crate::store::StoreError::Conflict => {
            AppError::Conflict(format!("client {id} already exists (ids of removed clients are not reused)"))
        }
        e => e.into(),
    })?;
    Audit::new(AuditKind::ClientCreated)
        .detail(serde_json::json!({ "client_id": id, "confidential": c.confidential, "introspects_any": c.introspects_any, "redirect_uris": c.redirect_uris }))
        .record(app)
        .await?;
    Ok(secret)
}

/// Whether `client` may be given `scope` by a grant other than the authorization endpoint (which
/// checks the same). An app (a client with redirect URIs) gets only the scopes it was registered
/// with, so no app reaches the account API (`account`) through the device grant or a password
/// login unless its operator said so; device clients keep the server's scopes, as before.
pub fn check_scope(client: &ClientRow, scope: &Scope) -> AppResult<()> {
    if client.redirect_uri_list().next().is_none() || scope.is_subset_of(&Scope::parse(&client.scopes)?) {
        Ok(())
    } else {
        Err(AppError::InvalidScope(format!("client {} may not be given that scope", client.id)))
    }
}

pub async fn list(app: &App) -> AppResult<Vec<ClientRow>> {
    Ok(app.store.clients().await?)
}

pub async fn show(app: &App, id: &str) -> AppResult<ClientRow> {
    app.store.client(id).await?.ok_or(AppError::NotFound)
}

/// Removes a client: its sessions end at once and its consents go.
pub async fn remove(app: &App, id: &str) -> AppResult<()> {
    if [CLI_CLIENT, WEB_CLIENT].contains(&id) {
        return Err(AppError::BadRequest(format!("{id} is built in and cannot be removed")));
    }
    if !app.store.delete_client(id, app.now()).await? {
        return Err(AppError::NotFound);
    }
    app.clients.entries.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    Audit::new(AuditKind::ClientRemoved).detail(serde_json::json!({ "client_id": id })).record(app).await?;
    Ok(())
}

/// Identifies the calling client. A confidential client must prove its secret; a public client
/// must not send one it does not have. Unknown clients and wrong secrets look the same.
pub async fn authenticate(app: &App, client_id: &str, secret_given: Option<&str>) -> AppResult<ClientRow> {
    let client = lookup(app, client_id).await?.ok_or(AppError::InvalidClient)?;
    match (&client.secret_hash, secret_given) {
        (None, None) => Ok(client),
        (Some(hash), Some(given)) if secret::ct_eq(hash, &secret::token_hash(given)) => Ok(client),
        _ => Err(AppError::InvalidClient),
    }
}

/// Clients change only by operator command, so a lookup may be a few seconds stale; this takes
/// a read off every token request.
const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Default)]
pub struct ClientCache {
    entries: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Option<ClientRow>)>>,
}

pub async fn lookup(app: &App, client_id: &str) -> AppResult<Option<ClientRow>> {
    if let Some((at, row)) = app.clients.entries.lock().unwrap_or_else(|p| p.into_inner()).get(client_id)
        && at.elapsed() < CACHE_TTL
    {
        return Ok(row.clone());
    }
    let row = app.store.client(client_id).await?;
    let mut entries = app.clients.entries.lock().unwrap_or_else(|p| p.into_inner());
    // Unknown ids are cached too (attackers may send many): bound the map.
    if entries.len() > 10_000 {
        entries.clear();
    }
    entries.insert(client_id.to_owned(), (std::time::Instant::now(), row.clone()));
    Ok(row)
}
