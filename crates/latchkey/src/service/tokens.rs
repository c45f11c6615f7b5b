//! The refresh grant with rotation and reuse detection, revocation (RFC 7009) and
//! introspection (RFC 7662).

use super::audit::{Audit, AuditKind};
use super::sessions::{self, TokenResponse};
use super::{clients, limits};
use crate::domain::policy::{self, SupersededVerdict};
use crate::domain::{Scope, secret};
use crate::service::{App, AppError, AppResult, ClientMeta};
use crate::store::Rotation;

pub struct ClientAuth {
    pub client_id: String,
    pub client_secret: Option<String>,
}

fn invalid_grant() -> AppError {
    AppError::InvalidGrant("the refresh token is invalid, expired or revoked".into())
}

pub async fn refresh(app: &App, token: &str, client: &ClientAuth, scope: Option<&str>, meta: &ClientMeta) -> AppResult<TokenResponse> {
    let client = clients::authenticate(app, &client.client_id, client.client_secret.as_deref()).await?;
    limits::check(app, &format!("token:ip:{}", meta.ip), app.settings.limits.token_per_ip_per_minute, 60, meta).await?;
    secret::token_bytes(token, secret::REFRESH_PREFIX).ok_or_else(invalid_grant)?;
    let requested = scope.map(Scope::parse).transpose()?;
    let old_hash = secret::token_hash(token);
    if let Some(req) = &requested {
        // Scope may narrow, never widen (RFC 6749 §6). Checked before the token is used up.
        let row = app.store.refresh_token(&old_hash).await?.ok_or_else(invalid_grant)?;
        let session = app.store.session(&row.session_id).await?.ok_or_else(invalid_grant)?;
        if !req.is_subset_of(&Scope::parse(&session.scope)?) {
            return Err(AppError::InvalidScope("the requested scope exceeds the granted scope".into()));
        }
    }
    let now = app.now();
    let successor = secret::refresh_successor(&app.refresh_key, token);
    let successor_hash = secret::token_hash(&successor);
    let idle_expiry = now + app.settings.tokens.refresh_idle_secs as i64;
    let mut session = match app.store.rotate_refresh_token(&old_hash, &client.id, &successor_hash, idle_expiry, now).await? {
        Rotation::Rotated { session, .. } => session,
        Rotation::NotRotated(None) => return Err(invalid_grant()),
        Rotation::NotRotated(Some(row)) => {
            let Some(superseded_at) = row.superseded_at else {
                return Err(invalid_grant());
            };
            if row.client_id != client.id {
                return Err(invalid_grant());
            }
            let session = app.store.session(&row.session_id).await?.ok_or_else(invalid_grant)?;
            let successor_row = match &row.successor_hash {
                Some(h) => app.store.refresh_token(h).await?,
                None => None,
            };
            let successor_live = session.is_live(now)
                && row.successor_hash.as_deref().is_some_and(|h| secret::ct_eq(h, &successor_hash))
                && successor_row.is_some_and(|s| s.superseded_at.is_none() && s.expires_at > now);
            match policy::superseded_verdict(superseded_at, successor_live, now, app.settings.tokens.refresh_reuse_grace_secs) {
                SupersededVerdict::Grace => session,
                SupersededVerdict::Reuse => {
                    app.store.revoke_session(&session.id, "refresh_token_reuse", now).await?;
                    metrics::counter!("latchkey_refresh_reuse_total").increment(1);
                    Audit::new(AuditKind::RefreshTokenReuse)
                        .user(&session.user_id)
                        .device(&session.device_id)
                        .meta(meta)
                        .detail(serde_json::json!({ "session_id": session.id, "client_id": client.id }))
                        .record(app)
                        .await?;
                    return Err(invalid_grant());
                }
            }
        }
    };
    if let Some(req) = requested {
        session.scope = req.to_string();
    }
    sessions::token_response(app, &session, successor).await
}

/// RFC 7009: revokes the session behind a refresh or access token of this client. Unknown,
/// invalid and foreign tokens are answered the same (success), as the RFC asks.
pub async fn revoke(app: &App, token: &str, client: &ClientAuth, meta: &ClientMeta) -> AppResult<()> {
    let client = clients::authenticate(app, &client.client_id, client.client_secret.as_deref()).await?;
    let now = app.now();
    let session_id = if secret::token_bytes(token, secret::REFRESH_PREFIX).is_some() {
        match app.store.refresh_token(&secret::token_hash(token)).await? {
            Some(row) if row.client_id == client.id => Some(row.session_id),
            _ => None,
        }
    } else {
        match app.keys.verify(token, &app.issuer, now).await {
            Some(c) if c.client_id == client.id => Some(c.sid),
            _ => None,
        }
    };
    if let Some(sid) = session_id
        && let Some(s) = app.store.session(&sid).await?
        && app.store.revoke_session(&sid, "token_revoked", now).await?
    {
        Audit::new(AuditKind::TokenRevoked)
            .user(&s.user_id)
            .device(&s.device_id)
            .meta(meta)
            .detail(serde_json::json!({ "client_id": client.id }))
            .record(app)
            .await?;
    }
    Ok(())
}

#[derive(Debug, Default, serde::Serialize, utoipa::ToSchema)]
pub struct Introspection {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub did: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
}

/// RFC 7662, for confidential clients only: public clients cannot authenticate, and an open
/// introspection endpoint would be a token-scanning oracle. A client learns only about tokens
/// issued to itself unless its operator made it a resource server (`introspects_any`): an app
/// must not read, or test the life of, the tokens another app's users hold (section 4).
pub async fn introspect(app: &App, token: &str, client: &ClientAuth) -> AppResult<Introspection> {
    let caller = clients::authenticate(app, &client.client_id, client.client_secret.as_deref()).await?;
    if caller.secret_hash.is_none() {
        return Err(AppError::InvalidClient);
    }
    let answer = introspect_any(app, token).await?;
    let visible = caller.introspects_any || answer.client_id.as_deref() == Some(caller.id.as_str());
    // Someone else's token looks exactly like an unknown one.
    Ok(if visible { answer } else { Introspection::default() })
}

async fn introspect_any(app: &App, token: &str) -> AppResult<Introspection> {
    let now = app.now();
    if secret::token_bytes(token, secret::REFRESH_PREFIX).is_some() {
        let Some(row) = app.store.refresh_token(&secret::token_hash(token)).await? else {
            return Ok(Introspection::default());
        };
        let Some(s) = app.store.session(&row.session_id).await? else {
            return Ok(Introspection::default());
        };
        if row.superseded_at.is_some() || row.expires_at <= now || !s.is_live(now) {
            return Ok(Introspection::default());
        }
        return Ok(Introspection {
            active: true,
            token_type: Some("refresh_token"),
            client_id: Some(row.client_id),
            sub: Some(s.user_id),
            scope: Some(s.scope),
            exp: Some(row.expires_at),
            iat: Some(row.created_at),
            iss: Some(app.issuer.clone()),
            sid: Some(s.id),
            did: Some(s.device_id),
            jti: None,
        });
    }
    let Some(c) = app.keys.verify(token, &app.issuer, now).await else {
        return Ok(Introspection::default());
    };
    let live = app.store.session(&c.sid).await?.is_some_and(|s| s.is_live(now));
    if !live {
        return Ok(Introspection::default());
    }
    Ok(Introspection {
        active: true,
        token_type: Some("access_token"),
        client_id: Some(c.client_id),
        sub: Some(c.sub),
        scope: Some(c.scope),
        exp: Some(c.exp),
        iat: Some(c.iat),
        iss: Some(c.iss),
        sid: Some(c.sid),
        did: Some(c.did),
        jti: Some(c.jti),
    })
}
