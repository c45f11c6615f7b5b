//! Server-rendered pages: `/login` and `/account`, with no JavaScript. Cookies, CSRF, the
//! signed-in browser and the error page are `web.rs`'s.

use super::AppState;
use super::web::{
    CsrfForm, Empty, PageError, PagePath, PageQuery, WebUser, allow_form_target, allow_upstream_targets, asset, cookie, cookie_names,
    csrf_token, forget, next_app_origin, safe_next, signed_in, urlencode,
};
use crate::clock::rfc3339;
use crate::service::auth::{self, LoginOutcome, PasswordLogin};
use crate::service::authorize::{self, AppAccess};
use crate::service::devices::{self, DeviceView};
use crate::service::passkeys::{self, StepUpRule};
use crate::service::sessions;
use crate::service::upstream_login::{self, IdentityView};
use crate::service::{AppError, ClientMeta, accounts, audit};
use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/account") }))
        .route("/login", get(login_form).post(login_submit))
        .route("/logout", post(logout))
        .route("/account", get(account))
        .route("/account/devices/{id}/revoke", post(revoke_device))
        .route("/account/logout-everywhere", post(logout_everywhere))
        .route("/account/apps/{client_id}/revoke", post(revoke_app))
        .route("/static/app.css", get(|| async { asset("text/css; charset=utf-8", include_str!("../../static/app.css")) }))
}

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    email: String,
    error: Option<String>,
    /// `(id, display name)` of each "Sign in with …".
    upstreams: Vec<(String, String)>,
    next_encoded: String,
    /// "Sign in with a passkey" is offered (the server is a relying party).
    passkeys: bool,
}

impl LoginPage {
    fn new(s: &AppState, csrf: String, next: String, email: String, error: Option<String>) -> Self {
        let upstreams = s.app.upstreams.all().iter().map(|u| (u.id().to_owned(), u.display_name().to_owned())).collect();
        let next_encoded = urlencode(&next);
        Self { csrf, next, email, error, upstreams, next_encoded, passkeys: s.app.webauthn.is_some() }
    }
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
    /// An app's `login_hint` (OpenID Connect), brought along by `/oauth/authorize`: fills in the e-mail.
    login_hint: Option<String>,
}

async fn login_form(State(s): State<AppState>, jar: CookieJar, PageQuery(q): PageQuery<NextQuery>) -> Response {
    let (jar, csrf) = csrf_token(jar, &s);
    let next = safe_next(q.next.as_deref());
    let origin = next_app_origin(&s, &next).await;
    let email = q.login_hint.filter(|h| h.len() <= 254).unwrap_or_default();
    allow_form_target((jar, LoginPage::new(&s, csrf, next, email, None)).into_response(), origin.as_deref())
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    next: Option<String>,
}

async fn login_submit(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    CsrfForm(f): CsrfForm<LoginForm>,
) -> Result<Response, PageError> {
    let next = safe_next(f.next.as_deref());
    let names = cookie_names(s.app.secure_cookies);
    let trust = jar.get(names.trust).map(|c| c.value().to_owned());
    let req = PasswordLogin {
        email: f.email.clone(),
        password: f.password,
        device: None,
        client_id: None,
        client_secret: None,
        scope: None,
        web: true,
        device_trust_token: trust,
    };
    match auth::password_login(&s.app, req, &meta).await {
        Ok(outcome) => Ok(web_signed_in(jar, &s, outcome, &next)),
        Err(e) => {
            // The form again, with what went wrong and the e-mail kept.
            let (status, text) = match &e {
                AppError::InvalidCredentials | AppError::Invalid(_) => {
                    (StatusCode::UNAUTHORIZED, "The e-mail or password is wrong.".to_owned())
                }
                AppError::RateLimited { retry_after } => {
                    (StatusCode::TOO_MANY_REQUESTS, format!("Too many attempts. Try again in {retry_after} seconds."))
                }
                AppError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "The server is busy. Try again in a moment.".to_owned()),
                _ => return Err(e.into()),
            };
            let (jar, csrf) = csrf_token(jar, &s);
            let origin = next_app_origin(&s, &next).await;
            let page = (status, jar, LoginPage::new(&s, csrf, next, f.email, Some(text))).into_response();
            Ok(allow_form_target(page, origin.as_deref()))
        }
    }
}

/// A browser's sign-in done (cookies set, on to `next`) or waiting for its second factor (`/mfa`).
pub(super) fn web_signed_in(jar: CookieJar, s: &AppState, outcome: LoginOutcome, next: &str) -> Response {
    match outcome {
        LoginOutcome::Signed(signed) => (signed_in(jar, s, &signed.opened, signed.trust_token), Redirect::to(next)).into_response(),
        LoginOutcome::MfaRequired(m) => {
            let jar = jar.add(cookie(cookie_names(s.app.secure_cookies).mfa, m.mfa_token, s.app.secure_cookies, m.expires_in as i64));
            (jar, Redirect::to(&format!("/mfa?next={}", urlencode(next)))).into_response()
        }
    }
}

/// Back to `/login` without the session cookie. The trust cookie stays: remembering this
/// device survives logout, on purpose.
fn signed_out(jar: CookieJar, s: &AppState) -> Response {
    (forget(jar, cookie_names(s.app.secure_cookies).session), Redirect::to("/login")).into_response()
}

async fn logout(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    user: Result<WebUser, Response>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, PageError> {
    // Signed out already (an expired session): just drop the cookie.
    if let Ok(WebUser(caller)) = user {
        sessions::logout(&s.app, &caller, &meta).await?;
    }
    Ok(signed_out(jar, &s))
}

struct EventView {
    at: String,
    kind: String,
    ip: String,
}

#[derive(Template, WebTemplate)]
#[template(path = "account.html")]
struct AccountPage {
    csrf: String,
    email: String,
    devices: Vec<DeviceView>,
    apps: Vec<AppAccess>,
    identities: Vec<IdentityView>,
    /// `(id, display name)` of the upstreams not linked yet.
    linkable: Vec<(String, String)>,
    passkeys: Vec<PasskeyItem>,
    passkeys_available: bool,
    step_up: StepUpRule,
    mail: crate::service::device_alerts::MailChoice,
    email_unverified: bool,
    /// Sign-in codes by e-mail are on; None: the account has no address for them.
    email_codes: Option<bool>,
    events: Vec<EventView>,
}

struct PasskeyItem {
    id: String,
    name: String,
    added: String,
    last_used: String,
    synced: bool,
}

async fn account(State(s): State<AppState>, jar: CookieJar, WebUser(caller): WebUser) -> Result<Response, PageError> {
    let user = accounts::profile(&s.app, &caller).await?;
    let devices = devices::list(&s.app, &caller).await?;
    let apps = authorize::apps_with_access(&s.app, &caller).await?;
    let identities = upstream_login::identities(&s.app, &caller).await?;
    let linkable = upstream_login::linkable(&s.app, &identities);
    let passkeys = passkeys::list(&s.app, &caller)
        .await?
        .into_iter()
        .map(|p| PasskeyItem {
            added: rfc3339(p.created_at),
            last_used: p.last_used_at.map_or_else(|| "never used".to_owned(), |t| format!("last used {}", rfc3339(t))),
            synced: p.backup_eligible,
            id: p.id,
            name: p.name,
        })
        .collect();
    let step_up = passkeys::step_up_rule(&s.app, &caller).await?;
    let mail = crate::service::device_alerts::choice(&s.app, &caller).await?;
    let events = audit::for_user(&s.app, &caller, 20).await?;
    let (jar, csrf) = csrf_token(jar, &s);
    let events =
        events.into_iter().map(|e| EventView { at: rfc3339(e.at), kind: e.kind.replace('_', " "), ip: e.ip.unwrap_or_default() }).collect();
    let email_unverified = user.email.is_some() && user.email_verified_at.is_none();
    let email_codes = match user.email {
        Some(_) => Some(crate::service::enrolment::email_codes_on(&s.app, &caller).await?),
        None => None,
    };
    let email = user.email.unwrap_or_else(|| "an account without e-mail".into());
    let page = (
        jar,
        AccountPage {
            csrf,
            email,
            devices,
            apps,
            identities,
            linkable,
            passkeys,
            passkeys_available: s.app.webauthn.is_some(),
            step_up,
            mail,
            email_unverified,
            email_codes,
            events,
        },
    )
        .into_response();
    Ok(allow_upstream_targets(page, &s))
}

async fn revoke_device(
    State(s): State<AppState>,
    meta: ClientMeta,
    WebUser(caller): WebUser,
    PagePath(id): PagePath<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Redirect, PageError> {
    match devices::revoke(&s.app, &caller, &id, &meta).await {
        // Revoked twice (two tabs): the account page shows it gone either way.
        Ok(()) | Err(AppError::NotFound) => Ok(Redirect::to("/account")),
        Err(e) => Err(e.into()),
    }
}

async fn revoke_app(
    State(s): State<AppState>,
    meta: ClientMeta,
    WebUser(caller): WebUser,
    PagePath(client_id): PagePath<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Redirect, PageError> {
    match authorize::revoke_app(&s.app, &caller, &client_id, &meta).await {
        Ok(_) | Err(AppError::NotFound) => Ok(Redirect::to("/account")),
        Err(e) => Err(e.into()),
    }
}

async fn logout_everywhere(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    WebUser(caller): WebUser,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, PageError> {
    sessions::logout_everywhere(&s.app, &caller, &meta).await?;
    Ok(signed_out(jar, &s))
}
