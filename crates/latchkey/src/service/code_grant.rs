//! The authorization code grant at the token endpoint (RFC 6749 §4.1.3, RFC 7636 §4.6) and the
//! OpenID Connect id_token it answers with (Core §3.1.3). The code is redeemed by one
//! conditional write that also opens the app's session on the browser's device record; a code
//! presented again revokes what its first use issued (RFC 6749 §4.1.2).

use super::audit::{Audit, AuditKind};
use super::authorize::CODE_PREFIX;
use super::sessions::{self, AuthorizedBy, NewSession, TokenResponse};
use super::tokens::ClientAuth;
use super::{clients, limits};
use crate::domain::device::DeviceFacts;
use crate::domain::pkce::CodeChallenge;
use crate::domain::user_agent::DeviceKind;
use crate::domain::{Scope, secret};
use crate::keys::SigningAlg;
use crate::service::{App, AppError, AppResult, ClientMeta};
use crate::store::{AuthCodeRow, ClientRow, CodeContext, SessionRow, UserRow};
use serde::{Deserialize, Serialize};
use sha2::Digest;

fn invalid_grant() -> AppError {
    AppError::InvalidGrant("the authorization code is invalid, expired or already used".into())
}

pub struct CodeExchange<'a> {
    pub code: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
}

pub async fn exchange(app: &App, auth: &ClientAuth, x: CodeExchange<'_>, meta: &ClientMeta) -> AppResult<TokenResponse> {
    let client = clients::authenticate(app, &auth.client_id, auth.client_secret.as_deref()).await?;
    limits::check(app, &format!("token:ip:{}", meta.ip), app.settings.limits.token_per_ip_per_minute, 60, meta).await?;
    secret::token_bytes(x.code, CODE_PREFIX).ok_or_else(invalid_grant)?;
    let hash = secret::token_hash(x.code);
    let now = app.now();
    let CodeContext { code: row, device, user } = app.store.auth_code_context(&hash).await?.ok_or_else(invalid_grant)?;
    if row.used_at.is_some() {
        replayed(app, &row, &client.id, meta).await?;
        return Err(invalid_grant());
    }
    // A code of another client (a mix-up), expired, or sent back with another redirect URI.
    if row.client_id != client.id || row.expires_at <= now || x.redirect_uri != Some(row.redirect_uri.as_str()) {
        return Err(invalid_grant());
    }
    match (&row.code_challenge, x.code_verifier) {
        (Some(c), Some(v)) if CodeChallenge::stored(c.clone()).verify(v) => {}
        (None, None) => {}
        // Wrong or missing verifier, or a verifier for a code issued without a challenge (a downgrade).
        _ => return Err(AppError::InvalidGrant("the code_verifier does not match the code_challenge".into())),
    }
    let device = device.ok_or_else(invalid_grant)?;
    let facts = DeviceFacts {
        name: device.name.clone(),
        kind: DeviceKind::parse(&device.kind).unwrap_or(DeviceKind::Unknown),
        os: device.os.clone(),
        browser: device.browser.clone(),
    };
    let mut built = sessions::build(
        app,
        NewSession {
            user_id: &row.user_id,
            client_id: &client.id,
            scope: row.scope.clone(),
            amr: Vec::new(),
            device: facts,
            authorized_by: AuthorizedBy::App,
            approved_by_device: None,
            web: false,
            existing_device: Some(row.device_id.clone()),
            passkey: Default::default(),
        },
        meta,
    );
    built.session.amr = row.amr.clone();
    // The device row is upserted as seen now; its own facts stay as they were.
    built.device = device;
    built.device.last_seen_at = now;
    built.device.last_ip = meta.ip.clone();
    let (refresh_token, refresh_row) = built.refresh.clone().ok_or_else(|| anyhow::anyhow!("API session without a refresh token"))?;
    let redeemed = app.store.redeem_auth_code(&hash, &client.id, &built.device, &built.session, &refresh_row, now).await?;
    if redeemed.is_none() {
        // Lost a race with another redemption (a replay), or the browser session ended meanwhile.
        if let Some(again) = app.store.auth_code(&hash).await?
            && again.used_at.is_some()
        {
            replayed(app, &again, &client.id, meta).await?;
        }
        return Err(invalid_grant());
    }
    let session = built.session.clone();
    let opened = sessions::finish(app, built, meta).await?;
    let mut tokens = opened.tokens.ok_or_else(|| anyhow::anyhow!("API session without tokens"))?;
    debug_assert_eq!(tokens.refresh_token, refresh_token);
    if Scope::parse(&row.scope)?.contains("openid") {
        tokens.id_token = Some(id_token(app, &client, &row, user.as_ref(), &session, &tokens.access_token, now).await?);
    }
    Ok(tokens)
}

/// A used code came again: whoever holds it is not to be trusted, so what it issued ends.
async fn replayed(app: &App, row: &AuthCodeRow, presented_by: &str, meta: &ClientMeta) -> AppResult<()> {
    let mut revoked = false;
    if let Some(sid) = &row.issued_session_id {
        revoked = app.store.revoke_session(sid, "authorization_code_reuse", app.now()).await?;
    }
    metrics::counter!("latchkey_authorization_code_reuse_total").increment(1);
    Audit::new(AuditKind::AuthorizationCodeReuse)
        .user(&row.user_id)
        .device(&row.device_id)
        .meta(meta)
        .detail(serde_json::json!({ "client_id": row.client_id, "presented_by": presented_by, "session_revoked": revoked }))
        .record(app)
        .await
}

/// OpenID Connect Core §2 claims, as Latchkey signs them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdTokenClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    pub amr: Vec<String>,
    /// The browser's Latchkey session (for RP-initiated logout).
    pub sid: String,
    pub azp: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
}

/// The left half of the hash of the access token, base64url (Core §3.1.3.6): the hash is the
/// one of the signing algorithm, SHA-256 for RS256 and SHA-512 for EdDSA over Ed25519.
pub fn at_hash(alg: SigningAlg, access_token: &str) -> String {
    let digest: Vec<u8> = match alg {
        SigningAlg::RS256 => sha2::Sha256::digest(access_token.as_bytes()).to_vec(),
        SigningAlg::EdDSA => sha2::Sha512::digest(access_token.as_bytes()).to_vec(),
    };
    secret::b64url(&digest[..digest.len() / 2])
}

async fn id_token(
    app: &App,
    client: &ClientRow,
    row: &AuthCodeRow,
    user: Option<&UserRow>,
    session: &SessionRow,
    access_token: &str,
    now: i64,
) -> AppResult<String> {
    let alg = SigningAlg::parse(&client.id_token_alg).unwrap_or(SigningAlg::RS256);
    let scope = Scope::parse(&row.scope)?;
    let (email, email_verified) = if scope.contains("email") {
        let user = user.ok_or_else(invalid_grant)?;
        let verified = user.email_verified_at.is_some();
        (user.email.clone(), user.email.as_ref().map(|_| verified))
    } else {
        (None, None)
    };
    let claims = IdTokenClaims {
        iss: app.issuer.clone(),
        sub: row.user_id.clone(),
        aud: client.id.clone(),
        exp: now + app.settings.tokens.access_ttl_secs as i64,
        iat: now,
        auth_time: row.auth_time,
        nonce: row.nonce.clone(),
        amr: session.amr.split(' ').filter(|a| !a.is_empty()).map(Into::into).collect(),
        sid: row.browser_session_id.clone(),
        azp: client.id.clone(),
        at_hash: Some(at_hash(alg, access_token)),
        email,
        email_verified,
    };
    metrics::counter!("latchkey_id_tokens_issued_total", "alg" => alg.as_str()).increment(1);
    Ok(app.keys.sign_as(alg, Some("JWT"), &claims, now).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_is_the_left_half_of_the_algorithms_hash() {
        // OpenID Connect Core's example (A.3): RS256 over "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y".
        assert_eq!(at_hash(SigningAlg::RS256, "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"), "77QmUPtjPfzWtF2AnpK9RQ");
        assert_eq!(at_hash(SigningAlg::EdDSA, "x").len(), 43);
    }
}
