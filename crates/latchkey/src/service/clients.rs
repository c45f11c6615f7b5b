//! OAuth clients: public ones (the CLI, devices: they cannot keep a secret) and confidential
//! ones with a secret shown once and stored as a SHA-256 hash.

use super::audit::{Audit, AuditKind};
use crate::domain::secret;
use crate::service::{App, AppError, AppResult};
use crate::store::ClientRow;

pub const CLI_CLIENT: &str = "latchkey-cli";
pub const WEB_CLIENT: &str = "latchkey-web";

/// A client's id: 1 to 64 of `A-Z a-z 0-9 - _ .`.
pub fn parse_client_id(raw: &str) -> AppResult<String> {
    let ok = !raw.is_empty() && raw.len() <= 64 && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok { Ok(raw.to_owned()) } else { Err(AppError::BadRequest("client_id must be 1 to 64 of A-Z a-z 0-9 - _ .".into())) }
}

/// Creates a client; for a confidential one, returns the secret (the only time it is seen).
pub async fn create(app: &App, id: &str, name: &str, confidential: bool) -> AppResult<Option<String>> {
    let id = parse_client_id(id)?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(AppError::BadRequest("name must be 1 to 100 characters".into()));
    }
    let secret = confidential.then(|| secret::new_token(secret::CLIENT_SECRET_PREFIX));
    let row =
        ClientRow { id: id.clone(), name: name.into(), secret_hash: secret.as_deref().map(secret::token_hash), created_at: app.now() };
    app.store.create_client(&row).await.map_err(|e| match e {
        crate::store::StoreError::Conflict => AppError::Conflict(format!("client {id} already exists")),
        e => e.into(),
    })?;
    Audit::new(AuditKind::ClientCreated).detail(serde_json::json!({ "client_id": id, "confidential": confidential })).record(app).await?;
    Ok(secret)
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
