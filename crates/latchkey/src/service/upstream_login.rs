//! "Sign in with …" an upstream identity provider, and the identities linked to an account.
//!
//! The upstream only verifies (`crate::upstream`); the rest is the same as for a password:
//! `domain::linking` decides what the identity may do to accounts, and `auth::complete_sign_in`
//! applies the second factor, the remembered device, the device record and the audit trail.
//!
//! The `state` sent upstream is random, kept only as its SHA-256 and taken once by a conditional
//! delete, by whichever callback presents it first. It travels in URLs, so it is not what binds
//! the sign-in to the browser: a second random secret does, held only in this browser's cookie
//! (its SHA-256 in the row), and the PKCE verifier and the nonce are HMACs of that secret under a
//! server key. A leaked callback URL (history, a proxy's log) finishes nothing, and nothing
//! stored can either.

use super::audit::{Audit, AuditKind};
use super::auth::{self, LoginOutcome, SignInContext, Verified};
use super::clients::WEB_CLIENT;
use super::sessions::{AuthorizedBy, Caller};
use crate::domain::device::DeviceFacts;
use crate::domain::linking::{self, Decision, Facts, Refusal};
use crate::domain::{Email, Scope, pkce, sealed, secret};
use crate::service::{App, AppError, AppResult, ClientMeta};
use crate::store::{IdentityRow, Unlinked, UpstreamStateRow, UserRow};
use crate::upstream::{Begin, Finish, Upstream, UpstreamError};
use std::sync::Arc;

/// A sign-in may spend this long at the upstream.
pub const STATE_TTL_SECS: i64 = 600;
/// A pending link (an identity waiting for its account to be proved) lasts this long.
pub const LINK_TTL_SECS: i64 = 900;

pub fn callback_uri(app: &App, id: &str) -> String {
    format!("{}/login/upstream/{id}/callback", app.issuer)
}

fn upstream<'a>(app: &'a App, id: &str) -> AppResult<&'a Arc<Upstream>> {
    app.upstreams.get(id).ok_or(AppError::NotFound)
}

/// The PKCE verifier and the nonce of a sign-in, from its browser secret.
fn derived(app: &App, browser_secret: &str) -> (String, String) {
    let verifier = secret::b64url(&secret::hmac(&app.code_key, &[b"upstream_pkce", browser_secret.as_bytes()]));
    let nonce = secret::b64url(&secret::hmac(&app.code_key, &[b"upstream_nonce", browser_secret.as_bytes()]));
    (verifier, nonce)
}

/// Where to send the browser, and the secret to keep in its cookie.
pub struct Started {
    pub location: String,
    pub browser_secret: String,
}

/// Begins a sign-in (`link` None) or, for a signed-in browser, the linking of a new identity:
/// a new way into the account, so it needs a recent sign-in, as changing second factors does.
pub async fn start(app: &App, id: &str, next: &str, link: Option<&Caller>, meta: &ClientMeta) -> AppResult<Started> {
    let up = upstream(app, id)?;
    if let Some(caller) = link
        && app.now() - caller.auth_time > app.settings.mfa.recent_auth_secs as i64
    {
        return Err(AppError::Forbidden(format!(
            "Sign in again first: linking another way to sign in needs a sign-in less than {} minutes old",
            app.settings.mfa.recent_auth_secs / 60
        )));
    }
    // Each start writes a row: as many per IP as password logins may try.
    let per_minute = app.settings.limits.login_per_ip_per_minute;
    super::limits::check(app, &format!("upstream:ip:{}", meta.ip), per_minute, 60, meta).await?;
    let state = secret::new_token("");
    let browser_secret = secret::new_token("");
    let (verifier, nonce) = derived(app, &browser_secret);
    let now = app.now();
    let redirect_uri = callback_uri(app, id);
    let begin = Begin { redirect_uri: &redirect_uri, state: &state, nonce: &nonce, code_challenge: &pkce::challenge_of(&verifier) };
    let location = up.authorization_url(&begin, now).await.map_err(|e| upstream_error(up, e))?;
    app.store
        .create_upstream_state(&UpstreamStateRow {
            state_hash: secret::token_hash(&state),
            browser_hash: secret::token_hash(&browser_secret),
            upstream: id.to_owned(),
            next: next.to_owned(),
            link_session_id: link.map(|c| c.session_id.clone()),
            created_at: now,
            expires_at: now + STATE_TTL_SECS,
        })
        .await?;
    Ok(Started { location, browser_secret })
}

fn upstream_error(up: &Upstream, e: UpstreamError) -> AppError {
    match e {
        UpstreamError::Unavailable(why) => {
            tracing::warn!(upstream = %up.id(), why, "upstream unavailable");
            AppError::UpstreamUnavailable(format!("{} cannot be reached right now. Try again in a while", up.display_name()))
        }
        UpstreamError::Rejected(why) => AppError::Forbidden(format!("The answer from {} was refused: {why}", up.display_name())),
    }
}

/// The query of the callback (RFC 6749 §4.1.2, RFC 9207).
#[derive(Debug, Default, serde::Deserialize)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

/// The browser coming back: its sign-in secret cookie, its session if any, its "remember this device".
pub struct Browser<'a> {
    pub secret_cookie: Option<&'a str>,
    pub caller: Option<&'a Caller>,
    pub device_trust_token: Option<&'a str>,
}

pub enum Finished {
    /// Signed in (or a second factor is owed); go on to `next`.
    SignIn { outcome: LoginOutcome, next: String },
    /// A new identity linked to the signed-in account.
    Linked,
    /// An account has this verified address: the person must sign in to it to link. `sealed`
    /// goes in a cookie; `email` is shown.
    ProveAccount { sealed: String, email: String, upstream: String },
}

pub async fn callback(app: &App, id: &str, q: &CallbackQuery, b: Browser<'_>, meta: &ClientMeta) -> AppResult<Finished> {
    let up = upstream(app, id)?;
    let name = up.display_name();
    let refused = |why: &str| AppError::BadRequest(why.to_owned());
    let state = q
        .state
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| refused("This answer has no state. Start again from the sign-in page"))?;
    let now = app.now();
    // Taken by the first callback that presents it, whoever that is: a state is never tried twice.
    let Some(row) = app.store.take_upstream_state(&secret::token_hash(state), now).await? else {
        audit_failed(app, id, "state_unknown", meta).await?;
        return Err(refused("This sign-in has expired or was finished already. Start again from the sign-in page"));
    };
    // The answer came back to the browser that started the sign-in, or it is someone else's.
    let browser_secret = b.secret_cookie.unwrap_or("");
    if !secret::ct_eq(&secret::token_hash(browser_secret), &row.browser_hash) {
        audit_failed(app, id, "browser_mismatch", meta).await?;
        return Err(refused("This sign-in was not started in this browser. Start again from the sign-in page"));
    }
    // Each provider has its own callback: an answer of one delivered to another's is refused.
    if row.upstream != id {
        audit_failed(app, id, "wrong_callback", meta).await?;
        return Err(refused("This answer came back to another provider's address. Start again from the sign-in page"));
    }
    if let Some(error) = &q.error {
        audit_failed(app, id, error, meta).await?;
        let why = if error == "access_denied" {
            "the sign-in was cancelled or refused there".to_owned()
        } else {
            format!("it answered `{error}`")
        };
        return Err(AppError::Forbidden(format!("{name} did not sign you in: {why}")));
    }
    let Some(code) = q.code.as_deref().filter(|c| !c.is_empty()) else {
        audit_failed(app, id, "no_code", meta).await?;
        return Err(refused("This answer has no code"));
    };
    let (verifier, nonce) = derived(app, browser_secret);
    let redirect_uri = callback_uri(app, id);
    let finish = Finish { code, iss: q.iss.as_deref(), redirect_uri: &redirect_uri, code_verifier: &verifier, nonce: &nonce, now };
    let identity = match up.finish(&finish).await {
        Ok(i) => i,
        Err(e) => {
            audit_failed(app, id, &e.to_string(), meta).await?;
            return Err(upstream_error(up, e));
        }
    };
    // An address that does not even parse is no address.
    let email = identity.email.as_deref().and_then(|e| Email::parse(e).ok()).map(|e| e.as_str().to_owned());
    let linked = app.store.identity(id, &identity.issuer, &identity.subject).await?;

    if let Some(session_id) = &row.link_session_id {
        let Some(caller) = b.caller.filter(|c| &c.session_id == session_id) else {
            audit_failed(app, id, "link_of_another_session", meta).await?;
            return Err(AppError::Forbidden(
                "This link was started by another sign-in. Sign in and start it again from your account page".into(),
            ));
        };
        link(app, up, caller, linked.as_ref(), &identity.issuer, &identity.subject, email.as_deref(), meta).await?;
        return Ok(Finished::Linked);
    }

    let account_with_email = match &email {
        Some(e) if linked.is_none() => app.store.user_by_email(e).await?,
        _ => None,
    };
    let facts = Facts {
        linked_to: linked.as_ref().map(|l| l.user_id.as_str()),
        email: email.as_deref(),
        email_verified: identity.email_verified,
        account_with_email: account_with_email.as_ref().map(|u| u.id.as_str()),
        auto_create: up.settings.auto_create,
    };
    let user = match linking::decide(&facts) {
        Decision::SignIn { user_id } => {
            let l = linked.as_ref().ok_or(AppError::NotFound)?;
            // What the upstream says now is kept for the account page; the account's own
            // address is not touched (an upstream's e-mail can change hands).
            app.store.touch_identity(&l.id, email.as_deref(), now).await?;
            app.store.user_by_id(user_id).await?.ok_or(AppError::NotFound)?
        }
        Decision::Create { email: taken } => {
            let user = UserRow {
                id: uuid::Uuid::now_v7().to_string(),
                email: taken.map(str::to_owned),
                password_hash: None,
                created_at: now,
                email_verified_at: taken.map(|_| now),
            };
            let identity_row = new_identity(&user.id, id, &identity.issuer, &identity.subject, email.as_deref(), now);
            app.store.create_user_with_identity(&user, &identity_row).await.map_err(|e| match e {
                crate::store::StoreError::Conflict => AppError::Conflict("This account was just created. Sign in again".into()),
                e => e.into(),
            })?;
            Audit::new(AuditKind::AccountCreated)
                .user(&user.id)
                .meta(meta)
                .detail(serde_json::json!({ "upstream": id, "email_verified": identity.email_verified }))
                .record(app)
                .await?;
            user
        }
        Decision::ProveAccount { user_id } => {
            let pending = PendingLink {
                upstream: id.to_owned(),
                issuer: identity.issuer.clone(),
                subject: identity.subject.clone(),
                email: email.clone(),
                user_id: user_id.to_owned(),
                created_at: now,
            };
            Audit::new(AuditKind::UpstreamLoginRefused)
                .user(user_id)
                .meta(meta)
                .detail(serde_json::json!({ "upstream": id, "reason": "prove_account" }))
                .record(app)
                .await?;
            return Ok(Finished::ProveAccount { sealed: pending.seal(app), email: email.unwrap_or_default(), upstream: name.to_owned() });
        }
        Decision::Refuse(r) => {
            let (reason, text) = match r {
                Refusal::NoAccount => (
                    "no_account",
                    format!(
                        "There is no account here for this {name} sign-in, and this server does not make one from it. Sign in another way, then link {name} on your account page"
                    ),
                ),
                Refusal::UnverifiedEmailOfAnAccount => (
                    "unverified_email",
                    format!(
                        "{name} has not verified the address {}, so it cannot be used here. Verify it at {name}, or sign in another way. Nothing was linked and you are not signed in",
                        email.as_deref().unwrap_or("")
                    ),
                ),
            };
            let mut a = Audit::new(AuditKind::UpstreamLoginRefused).meta(meta);
            if let Some(u) = &account_with_email {
                a = a.user(&u.id);
            }
            a.detail(serde_json::json!({ "upstream": id, "reason": reason })).record(app).await?;
            return Err(AppError::Forbidden(text));
        }
    };
    let outcome = sign_in(app, up, user, b.device_trust_token, meta).await?;
    Ok(Finished::SignIn { outcome, next: row.next })
}

async fn sign_in(app: &App, up: &Upstream, user: UserRow, trust: Option<&str>, meta: &ClientMeta) -> AppResult<LoginOutcome> {
    let scope = Scope::parse(&app.settings.tokens.default_scope)?;
    let verified = Verified {
        user,
        method: format!("upstream:{}", up.id()),
        amr: vec![up.id().to_owned()],
        authorized_by: AuthorizedBy::Upstream,
        passkey_id: None,
    };
    let ctx = SignInContext {
        client_id: WEB_CLIENT,
        scope: &scope,
        device_input: None,
        device: DeviceFacts::from_input(None, &meta.user_agent)?,
        web: true,
        device_trust_token: trust,
    };
    auth::complete_sign_in(app, verified, ctx, meta).await
}

fn new_identity(user_id: &str, upstream: &str, issuer: &str, subject: &str, email: Option<&str>, now: i64) -> IdentityRow {
    IdentityRow {
        id: uuid::Uuid::now_v7().to_string(),
        user_id: user_id.to_owned(),
        upstream: upstream.to_owned(),
        issuer: issuer.to_owned(),
        subject: subject.to_owned(),
        email: email.map(str::to_owned),
        created_at: now,
        last_used_at: now,
    }
}

#[allow(clippy::too_many_arguments)]
async fn link(
    app: &App,
    up: &Upstream,
    caller: &Caller,
    linked: Option<&IdentityRow>,
    issuer: &str,
    subject: &str,
    email: Option<&str>,
    meta: &ClientMeta,
) -> AppResult<()> {
    match linked {
        Some(l) if l.user_id == caller.user_id => return Ok(()),
        Some(_) => {
            Audit::new(AuditKind::UpstreamLoginRefused)
                .user(&caller.user_id)
                .meta(meta)
                .detail(serde_json::json!({ "upstream": up.id(), "reason": "linked_to_another_account" }))
                .record(app)
                .await?;
            return Err(AppError::Conflict(format!("This {} sign-in is linked to another account already", up.display_name())));
        }
        None => {}
    }
    let row = new_identity(&caller.user_id, up.id(), issuer, subject, email, app.now());
    app.store.link_identity(&row).await.map_err(|e| match e {
        crate::store::StoreError::Conflict => {
            AppError::Conflict(format!("This {} sign-in is linked to an account already", up.display_name()))
        }
        e => e.into(),
    })?;
    Audit::new(AuditKind::IdentityLinked)
        .user(&caller.user_id)
        .device(&caller.device_id)
        .meta(meta)
        .detail(serde_json::json!({ "upstream": up.id(), "identity_id": row.id }))
        .record(app)
        .await
}

async fn audit_failed(app: &App, id: &str, reason: &str, meta: &ClientMeta) -> AppResult<()> {
    let reason: String = reason.chars().take(200).collect();
    Audit::new(AuditKind::UpstreamLoginFailed).meta(meta).detail(serde_json::json!({ "upstream": id, "reason": reason })).record(app).await
}

/// An identity waiting for the person to prove the account that has its verified address.
/// Sealed (AES-GCM under a server key) in a cookie of the browser that came back with it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PendingLink {
    pub upstream: String,
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub user_id: String,
    pub created_at: i64,
}

const LINK_CONTEXT: &[u8] = b"upstream_pending_link";

impl PendingLink {
    fn seal(&self, app: &App) -> String {
        let plain = serde_json::to_vec(self).unwrap_or_default();
        secret::b64url(&sealed::seal(&app.mfa_key, LINK_CONTEXT, &plain))
    }

    /// The pending link in a cookie, if it is ours, unexpired, and for the signed-in account,
    /// whose sign-in must have happened after the upstream's (so the person just proved it).
    pub fn open(app: &App, cookie: &str, caller: &Caller) -> AppResult<PendingLink> {
        let gone = || AppError::BadRequest("There is no sign-in waiting to be linked, or it has expired. Start again".into());
        let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, cookie).map_err(|_| gone())?;
        let plain = sealed::open(&app.mfa_key, LINK_CONTEXT, &bytes).ok_or_else(gone)?;
        let p: PendingLink = serde_json::from_slice(&plain).map_err(|_| gone())?;
        if p.created_at + LINK_TTL_SECS <= app.now() {
            return Err(gone());
        }
        if p.user_id != caller.user_id {
            return Err(AppError::Forbidden("That sign-in is waiting to be linked to another account than the one signed in here".into()));
        }
        if caller.auth_time < p.created_at {
            return Err(AppError::Forbidden("Sign in to this account again to link it".into()));
        }
        Ok(p)
    }

    pub fn display_name<'a>(&self, app: &'a App) -> &'a str {
        app.upstreams.get(&self.upstream).map_or("an upstream provider", |u| u.display_name())
    }
}

/// The person declined to link a pending identity.
pub async fn decline_link(app: &App, caller: &Caller, p: &PendingLink, meta: &ClientMeta) -> AppResult<()> {
    Audit::new(AuditKind::UpstreamLoginRefused)
        .user(&caller.user_id)
        .meta(meta)
        .detail(serde_json::json!({ "upstream": p.upstream, "reason": "link_declined" }))
        .record(app)
        .await
}

/// Links a pending identity to the signed-in account that just proved itself.
pub async fn confirm_link(app: &App, caller: &Caller, p: &PendingLink, meta: &ClientMeta) -> AppResult<()> {
    let up = upstream(app, &p.upstream)?;
    let linked = app.store.identity(&p.upstream, &p.issuer, &p.subject).await?;
    link(app, up, caller, linked.as_ref(), &p.issuer, &p.subject, p.email.as_deref(), meta).await
}

/// An identity as the account page and the API show it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct IdentityView {
    pub id: String,
    /// The upstream's id in the configuration.
    pub upstream: String,
    /// Its name on the sign-in page.
    pub display_name: String,
    /// The e-mail the upstream last said (not the account's own).
    pub email: Option<String>,
    pub linked_at: String,
    pub last_used_at: String,
}

pub async fn identities(app: &App, caller: &Caller) -> AppResult<Vec<IdentityView>> {
    let rows = app.store.identities_for_user(&caller.user_id).await?;
    Ok(rows
        .into_iter()
        .map(|r| IdentityView {
            display_name: app.upstreams.get(&r.upstream).map_or_else(|| r.upstream.clone(), |u| u.display_name().to_owned()),
            upstream: r.upstream,
            id: r.id,
            email: r.email,
            linked_at: crate::clock::rfc3339(r.created_at),
            last_used_at: crate::clock::rfc3339(r.last_used_at),
        })
        .collect())
}

/// The upstreams an account with these identities can still link: `(id, display name)`.
pub fn linkable(app: &App, have: &[IdentityView]) -> Vec<(String, String)> {
    app.upstreams
        .all()
        .iter()
        .filter(|u| !have.iter().any(|h| h.upstream == u.id()))
        .map(|u| (u.id().to_owned(), u.display_name().to_owned()))
        .collect()
}

pub async fn unlink(app: &App, caller: &Caller, id: &str, meta: &ClientMeta) -> AppResult<()> {
    match app.store.unlink_identity(&caller.user_id, id).await? {
        Unlinked::Removed => {
            Audit::new(AuditKind::IdentityUnlinked)
                .user(&caller.user_id)
                .device(&caller.device_id)
                .meta(meta)
                .detail(serde_json::json!({ "identity_id": id }))
                .record(app)
                .await
        }
        Unlinked::NotFound => Err(AppError::NotFound),
        Unlinked::LastWayIn => Err(AppError::Conflict(
            "This is the account's only way to sign in: set a password or link another sign-in before removing it".into(),
        )),
    }
}
