//! The authorization endpoint's decisions (RFC 6749 §4.1, OpenID Connect Core §3.1.2): who the
//! app is, whether the browser must sign in (again), whether the user must consent, and the
//! code that goes back to the app. The browser's own sign-in (password, second factor,
//! remembered device, QR login) is the one `/login` has: an app never gets a flow of its own.

use super::audit::{Audit, AuditKind};
use super::clients::{self, Consent};
use super::sessions::Caller;
use crate::domain::authorize::{self, AuthorizationRequest, ClientFacts, RawAuthorize, Refusal};
use crate::domain::redirect_uri::RedirectUri;
use crate::domain::{Scope, secret};
use crate::service::{App, AppError, AppResult, ClientMeta};
use crate::store::{AuthCodeRow, ClientRow, ConsentRow};

/// Codes live at most this long (RFC 6749 §4.1.2 recommends at most ten minutes; apps redeem
/// them at once).
pub const CODE_TTL_SECS: i64 = 60;
pub const CODE_PREFIX: &str = "lk_ac_";

/// What the browser is shown next.
#[derive(Debug)]
pub enum Step {
    /// Sign in first, then come back: `after` is the time the new sign-in must follow (for
    /// `prompt=login` and `max_age`).
    Login { after: i64 },
    /// Ask the user.
    Consent(ConsentView),
    /// Back to the app: with a code, or with an error.
    Redirect(String),
    /// The request cannot be trusted to go back to the app: shown on our page.
    Refused(String),
}

/// What the consent page names.
#[derive(Debug, Clone)]
pub struct ConsentView {
    pub client_id: String,
    pub client_name: String,
    pub redirect_host: String,
    /// Where the answer goes (the page's form must be allowed to redirect there).
    pub redirect_origin: Option<String>,
    pub scopes: Vec<(String, &'static str)>,
}

/// Words for the scopes a person is asked about.
pub fn describe_scope(s: &str) -> &'static str {
    match s {
        "openid" => "Know who you are on this server (your account id)",
        "email" => "See your e-mail address",
        "profile" => "See your basic profile",
        "offline_access" => "Keep its access while you are away",
        _ => "An application-specific permission",
    }
}

fn facts(c: &ClientRow) -> (Vec<RedirectUri>, Scope, bool) {
    let uris = c.redirect_uri_list().map(|u| RedirectUri::stored(u.to_owned())).collect();
    (uris, Scope::parse(&c.scopes).unwrap_or_default(), c.is_public())
}

fn error_redirect(app: &App, redirect_uri: &str, state: Option<&str>, error: &str, description: &str) -> Step {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(s) = state {
        params.push(("state", s));
    }
    params.push(("iss", &app.issuer));
    Step::Redirect(authorize::redirect_with(redirect_uri, &params))
}

/// The client and the parsed request, or the step that refuses it.
async fn parse(app: &App, raw: &RawAuthorize) -> AppResult<Result<(ClientRow, AuthorizationRequest), Step>> {
    let Some(client_id) = raw.client_id.as_deref() else {
        return Ok(Err(Step::Refused("The request does not say which application is asking (client_id).".into())));
    };
    let Some(client) = clients::lookup(app, client_id).await? else {
        return Ok(Err(Step::Refused("No application with that client_id is registered here.".into())));
    };
    let (uris, scope, public) = facts(&client);
    match authorize::parse(raw, &ClientFacts { redirect_uris: &uris, public, allowed_scope: &scope }) {
        Ok(req) => Ok(Ok((client, req))),
        Err(Refusal::Page(text)) => Ok(Err(Step::Refused(text))),
        Err(Refusal::Redirect { redirect_uri, state, error, description }) => {
            Ok(Err(error_redirect(app, &redirect_uri, state.as_deref(), error, &description)))
        }
    }
}

/// The origin (`scheme://host[:port]`) of the redirect URI the request would answer on, once it
/// is checked against the client's registered ones; None if it does not check out.
pub async fn redirect_origin(app: &App, raw: &RawAuthorize) -> Option<String> {
    let client = clients::lookup(app, raw.client_id.as_deref()?).await.ok()??;
    let (uris, scope, public) = facts(&client);
    let target = authorize::redirect_target(raw, &ClientFacts { redirect_uris: &uris, public, allowed_scope: &scope }).ok()?;
    origin_of(&target)
}

pub fn origin_of(uri: &str) -> Option<String> {
    let u = url::Url::parse(uri).ok()?;
    // Private-use schemes (a native app's `com.example:/cb`) have no host: the scheme alone.
    match u.host_str() {
        Some(_) => Some(u.origin().ascii_serialization()).filter(|o| o != "null"),
        None => Some(format!("{}:", u.scheme())),
    }
}

/// The time a new sign-in must follow, sealed to this very request: `T.mac`, with the mac an HMAC
/// over `T` and the request's parameters. It rides along through `/login` and the consent form
/// as `lk_after`; unsealed (or moved to another request) it would let anyone at the browser skip
/// an app's `prompt=login` or `max_age`.
pub fn seal_login_after(app: &App, raw: &RawAuthorize, after: i64) -> String {
    format!("{after}.{}", secret::b64url(&login_after_mac(app, raw, after)))
}

pub fn open_login_after(app: &App, raw: &RawAuthorize, sealed: &str) -> Option<i64> {
    let (t, mac) = sealed.split_once('.')?;
    let after: i64 = t.parse().ok()?;
    secret::ct_eq(mac.as_bytes(), secret::b64url(&login_after_mac(app, raw, after)).as_bytes()).then_some(after)
}

fn login_after_mac(app: &App, raw: &RawAuthorize, after: i64) -> [u8; 32] {
    let request = serde_urlencoded::to_string(raw).unwrap_or_default();
    secret::hmac(&app.code_key, &[b"authorize_login_after", after.to_string().as_bytes(), request.as_bytes()])
}

/// `decision`: None on the authorization request itself; Some(approve) when the consent form
/// comes back with the same request.
pub async fn authorize(
    app: &App,
    raw: &RawAuthorize,
    caller: Option<&Caller>,
    login_after: Option<i64>,
    decision: Option<bool>,
    meta: &ClientMeta,
) -> AppResult<Step> {
    let (client, req) = match parse(app, raw).await? {
        Ok(v) => v,
        Err(step) => return Ok(step),
    };
    let now = app.now();
    let refuse = |error: &str, description: &str| error_redirect(app, &req.redirect_uri, req.state.as_deref(), error, description);
    let Some(caller) = caller else {
        if req.prompt.none {
            return Ok(refuse("login_required", "the user is not signed in"));
        }
        return Ok(Step::Login { after: now });
    };
    // Checked on the consent form's answer too: the form must not be a way around prompt=login.
    if authorize::needs_login(req.prompt, req.max_age, caller.auth_time, login_after, now) {
        if req.prompt.none {
            return Ok(refuse("login_required", "a new sign-in is required"));
        }
        return Ok(Step::Login { after: login_after.unwrap_or(now) });
    }
    match decision {
        Some(false) => {
            Audit::new(AuditKind::AppConsentRevoked)
                .user(&caller.user_id)
                .device(&caller.device_id)
                .meta(meta)
                .detail(serde_json::json!({ "client_id": client.id, "denied": true }))
                .record(app)
                .await?;
            return Ok(refuse("access_denied", "the user denied the request"));
        }
        Some(true) => grant_consent(app, caller, &client, &req.scope, meta).await?,
        None => {
            if consent_needed(app, caller, &client, &req).await? {
                if req.prompt.none {
                    return Ok(refuse("consent_required", "the user has not consented to this application"));
                }
                return Ok(Step::Consent(consent_view(&client, &req)));
            }
        }
    }
    let code = issue_code(app, caller, &client, &req, now, meta).await?;
    let mut params = vec![("code", code.as_str())];
    if let Some(s) = req.state.as_deref() {
        params.push(("state", s));
    }
    params.push(("iss", &app.issuer));
    Ok(Step::Redirect(authorize::redirect_with(&req.redirect_uri, &params)))
}

async fn consent_needed(app: &App, caller: &Caller, client: &ClientRow, req: &AuthorizationRequest) -> AppResult<bool> {
    if req.prompt.consent || Consent::parse(&client.consent)? == Consent::Always {
        return Ok(true);
    }
    let granted = app.store.consent(&caller.user_id, &client.id).await?;
    Ok(!granted.is_some_and(|g| Scope::parse(&g.scope).is_ok_and(|g| req.scope.is_subset_of(&g))))
}

fn consent_view(client: &ClientRow, req: &AuthorizationRequest) -> ConsentView {
    let redirect_host = url::Url::parse(&req.redirect_uri).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
    ConsentView {
        client_id: client.id.clone(),
        client_name: client.name.clone(),
        redirect_host,
        redirect_origin: origin_of(&req.redirect_uri),
        scopes: req.scope.iter().map(|s| (s.to_owned(), describe_scope(s))).collect(),
    }
}

async fn grant_consent(app: &App, caller: &Caller, client: &ClientRow, scope: &Scope, meta: &ClientMeta) -> AppResult<()> {
    let before = app.store.consent(&caller.user_id, &client.id).await?;
    let widened = match &before {
        Some(b) => Scope::parse(&b.scope)?.union(scope),
        None => scope.clone(),
    };
    let row =
        ConsentRow { user_id: caller.user_id.clone(), client_id: client.id.clone(), scope: widened.to_string(), granted_at: app.now() };
    app.store.put_consent(&row).await?;
    Audit::new(AuditKind::AppConsentGranted)
        .user(&caller.user_id)
        .device(&caller.device_id)
        .meta(meta)
        .detail(serde_json::json!({ "client_id": client.id, "scope": row.scope }))
        .record(app)
        .await
}

async fn issue_code(
    app: &App,
    caller: &Caller,
    client: &ClientRow,
    req: &AuthorizationRequest,
    now: i64,
    meta: &ClientMeta,
) -> AppResult<String> {
    let code = secret::new_token(CODE_PREFIX);
    let row = AuthCodeRow {
        code_hash: secret::token_hash(&code),
        client_id: client.id.clone(),
        redirect_uri: req.redirect_uri.clone(),
        user_id: caller.user_id.clone(),
        browser_session_id: caller.session_id.clone(),
        device_id: caller.device_id.clone(),
        scope: req.scope.to_string(),
        nonce: req.nonce.clone(),
        code_challenge: req.code_challenge.as_ref().map(|c| c.as_str().to_owned()),
        auth_time: caller.auth_time,
        amr: caller.amr.clone(),
        created_at: now,
        expires_at: now + CODE_TTL_SECS,
        used_at: None,
        issued_session_id: None,
    };
    app.store.create_auth_code(&row).await?;
    Audit::new(AuditKind::AppAuthorized)
        .user(&caller.user_id)
        .device(&caller.device_id)
        .meta(meta)
        .detail(serde_json::json!({ "client_id": client.id, "scope": row.scope }))
        .record(app)
        .await?;
    Ok(code)
}

/// An app the user has let in, as `/account` and the API list it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct AppAccess {
    pub client_id: String,
    pub name: String,
    pub scope: String,
    pub granted_at: String,
}

pub async fn apps_with_access(app: &App, caller: &Caller) -> AppResult<Vec<AppAccess>> {
    let mut out = Vec::new();
    for c in app.store.consents_for_user(&caller.user_id).await? {
        // A removed client's consents are dropped with it; a stale cache entry is skipped.
        let Some(client) = clients::lookup(app, &c.client_id).await? else { continue };
        out.push(AppAccess { client_id: c.client_id, name: client.name, scope: c.scope, granted_at: crate::clock::rfc3339(c.granted_at) });
    }
    Ok(out)
}

/// Takes an app's access away: the consent goes and the app's sessions of this user end now.
pub async fn revoke_app(app: &App, caller: &Caller, client_id: &str, meta: &ClientMeta) -> AppResult<u64> {
    let (had, ended) = app.store.revoke_consent(&caller.user_id, client_id, app.now()).await?;
    if !had && ended == 0 {
        return Err(AppError::NotFound);
    }
    Audit::new(AuditKind::AppConsentRevoked)
        .user(&caller.user_id)
        .device(&caller.device_id)
        .meta(meta)
        .detail(serde_json::json!({ "client_id": client_id, "sessions": ended }))
        .record(app)
        .await?;
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use super::origin_of;

    #[test]
    fn origins_are_what_a_csp_names() {
        assert_eq!(origin_of("https://app.example/cb?x=1").as_deref(), Some("https://app.example"));
        assert_eq!(origin_of("http://127.0.0.1:49152/native").as_deref(), Some("http://127.0.0.1:49152"));
        assert_eq!(origin_of("com.example.app:/cb").as_deref(), Some("com.example.app:"));
        assert_eq!(origin_of("not a url"), None);
    }
}
