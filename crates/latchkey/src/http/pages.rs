//! Server-rendered pages: `/login` and `/account`. Cookie session (HttpOnly, SameSite=Lax,
//! Secure unless plain-http loopback), a double-submit CSRF token on every form plus an Origin
//! check, and no JavaScript.

use super::AppState;
use crate::clock::rfc3339;
use crate::domain::secret;
use crate::service::auth::{self, LoginOutcome, PasswordLogin};
use crate::service::devices::{self, DeviceView};
use crate::service::sessions::{self, Caller};
use crate::service::{AppError, ClientMeta, accounts, audit};
use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/account") }))
        .route("/login", get(login_form).post(login_submit))
        .route("/logout", post(logout))
        .route("/account", get(account))
        .route("/account/devices/{id}/revoke", post(revoke_device))
        .route("/account/logout-everywhere", post(logout_everywhere))
        .route("/static/app.css", get(css))
}

pub struct CookieNames {
    pub session: &'static str,
    pub csrf: &'static str,
    /// The pending second step of a login (the mfa_token).
    pub mfa: &'static str,
    /// "Remember this device": survives logout, on purpose.
    pub trust: &'static str,
    /// The secret of this browser's QR login.
    pub qr: &'static str,
}

pub fn cookie_names(secure: bool) -> CookieNames {
    if secure {
        CookieNames {
            session: "__Host-lk_session",
            csrf: "__Host-lk_csrf",
            mfa: "__Host-lk_mfa",
            trust: "__Host-lk_trust",
            qr: "__Host-lk_qr",
        }
    } else {
        CookieNames { session: "lk_session", csrf: "lk_csrf", mfa: "lk_mfa", trust: "lk_trust", qr: "lk_qr" }
    }
}

pub(super) fn cookie(name: &'static str, value: String, secure: bool, max_age_secs: i64) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(time::Duration::seconds(max_age_secs))
        .build()
}

/// The CSRF token of this browser, creating the cookie if it has none.
pub(super) fn csrf_token(jar: CookieJar, s: &AppState) -> (CookieJar, String) {
    let names = cookie_names(s.app.secure_cookies);
    if let Some(c) = jar.get(names.csrf)
        && secret::token_bytes(c.value(), "").is_some()
    {
        let v = c.value().to_owned();
        return (jar, v);
    }
    let v = secret::b64url(&secret::random_bytes::<32>());
    (jar.add(cookie(names.csrf, v.clone(), s.app.secure_cookies, 86400)), v)
}

/// A form POST is accepted only with the cookie's CSRF token in the body and, when the browser
/// says where it comes from, from our own origin.
pub(super) fn csrf_ok(jar: &CookieJar, headers: &HeaderMap, s: &AppState, given: &str) -> bool {
    let names = cookie_names(s.app.secure_cookies);
    let cookie_ok = jar.get(names.csrf).is_some_and(|c| !given.is_empty() && secret::ct_eq(c.value().as_bytes(), given.as_bytes()));
    let origin_ok = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).is_none_or(|o| o == s.app.issuer);
    let site_ok = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_none_or(|v| v == "same-origin" || v == "none");
    cookie_ok && origin_ok && site_ok
}

pub(super) fn csrf_refused() -> Response {
    message(StatusCode::FORBIDDEN, "This form has expired or did not come from this site. Go back, reload the page and try again.")
}

/// The signed-in browser, or a redirect to `/login` that comes back here.
pub struct WebUser(pub Caller);

impl FromRequestParts<AppState> for WebUser {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        let meta = ClientMeta::from_request_parts(parts, s).await.unwrap_or_else(|e| match e {});
        let names = cookie_names(s.app.secure_cookies);
        let here = parts.uri.path_and_query().map_or(parts.uri.path(), |p| p.as_str());
        let back = || Redirect::to(&format!("/login?next={}", urlencode(here))).into_response();
        let Some(c) = jar.get(names.session) else {
            return Err(back());
        };
        match sessions::caller_from_cookie(&s.app, c.value(), &meta).await {
            Ok(caller) => Ok(WebUser(caller)),
            Err(AppError::Unauthorized) => Err(back()),
            Err(e) => Err(super::error::ApiError(e).into_response()),
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"/-_.~?=".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Only a local absolute path is a valid place to return to: no scheme, no `//host`, no
/// backslash tricks. Anything else goes to `/account`.
pub(super) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.len() < 512
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_owned()
        }
        _ => "/account".into(),
    }
}

#[derive(Template, WebTemplate)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    email: String,
    error: Option<String>,
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_form(State(s): State<AppState>, jar: CookieJar, Query(q): Query<NextQuery>) -> Response {
    let (jar, csrf) = csrf_token(jar, &s);
    (jar, LoginPage { csrf, next: safe_next(q.next.as_deref()), email: String::new(), error: None }).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: String,
    csrf: String,
    next: Option<String>,
}

async fn login_submit(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    headers: HeaderMap,
    axum::Form(f): axum::Form<LoginForm>,
) -> Response {
    if !csrf_ok(&jar, &headers, &s, &f.csrf) {
        return csrf_refused();
    }
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
        Ok(LoginOutcome::Signed(signed)) => {
            let secure = s.app.secure_cookies;
            let max_age = signed.opened.session.expires_at - signed.opened.session.created_at;
            let token = signed.opened.web_token.unwrap_or_default();
            let mut jar = jar.add(cookie(names.session, token, secure, max_age));
            if let Some(t) = signed.trust_token {
                jar = jar.add(cookie(names.trust, t, secure, s.app.settings.mfa.remember_days as i64 * 86_400));
            }
            (jar, Redirect::to(&next)).into_response()
        }
        Ok(LoginOutcome::MfaRequired(m)) => {
            let jar = jar.add(cookie(names.mfa, m.mfa_token, s.app.secure_cookies, m.expires_in as i64));
            (jar, Redirect::to(&format!("/mfa?next={}", urlencode(&next)))).into_response()
        }
        Err(e) => {
            let (status, text) = match &e {
                AppError::InvalidCredentials | AppError::Invalid(_) => {
                    (StatusCode::UNAUTHORIZED, "The e-mail or password is wrong.".to_owned())
                }
                AppError::RateLimited { retry_after } => {
                    (StatusCode::TOO_MANY_REQUESTS, format!("Too many attempts. Try again in {retry_after} seconds."))
                }
                AppError::Overloaded => (StatusCode::SERVICE_UNAVAILABLE, "The server is busy. Try again in a moment.".to_owned()),
                _ => return super::error::ApiError(e).into_response(),
            };
            let (jar, csrf) = csrf_token(jar, &s);
            (status, jar, LoginPage { csrf, next, email: f.email, error: Some(text) }).into_response()
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    headers: HeaderMap,
    user: Result<WebUser, Response>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&jar, &headers, &s, &f.csrf) {
        return csrf_refused();
    }
    if let Ok(WebUser(caller)) = user
        && let Err(e) = sessions::logout(&s.app, &caller, &meta).await
    {
        return super::error::ApiError(e).into_response();
    }
    let names = cookie_names(s.app.secure_cookies);
    (jar.remove(Cookie::build(names.session).path("/")), Redirect::to("/login")).into_response()
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
    events: Vec<EventView>,
}

async fn account(State(s): State<AppState>, jar: CookieJar, WebUser(caller): WebUser) -> Response {
    let load = async {
        let user = accounts::profile(&s.app, &caller).await?;
        let devices = devices::list(&s.app, &caller).await?;
        let events = audit::for_user(&s.app, &caller, 20).await?;
        Ok::<_, AppError>((user, devices, events))
    };
    match load.await {
        Ok((user, devices, events)) => {
            let (jar, csrf) = csrf_token(jar, &s);
            let events = events
                .into_iter()
                .map(|e| EventView { at: rfc3339(e.at), kind: e.kind.replace('_', " "), ip: e.ip.unwrap_or_default() })
                .collect();
            (jar, AccountPage { csrf, email: user.email.unwrap_or_else(|| "an account without e-mail".into()), devices, events })
                .into_response()
        }
        Err(e) => super::error::ApiError(e).into_response(),
    }
}

async fn revoke_device(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    headers: HeaderMap,
    WebUser(caller): WebUser,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&jar, &headers, &s, &f.csrf) {
        return csrf_refused();
    }
    match devices::revoke(&s.app, &caller, &id, &meta).await {
        Ok(()) | Err(AppError::NotFound) => Redirect::to("/account").into_response(),
        Err(e) => super::error::ApiError(e).into_response(),
    }
}

async fn logout_everywhere(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    headers: HeaderMap,
    WebUser(caller): WebUser,
    axum::Form(f): axum::Form<CsrfForm>,
) -> Response {
    if !csrf_ok(&jar, &headers, &s, &f.csrf) {
        return csrf_refused();
    }
    if let Err(e) = sessions::logout_everywhere(&s.app, &caller, &meta).await {
        return super::error::ApiError(e).into_response();
    }
    let names = cookie_names(s.app.secure_cookies);
    (jar.remove(Cookie::build(names.session).path("/")), Redirect::to("/login")).into_response()
}

#[derive(Template, WebTemplate)]
#[template(path = "message.html")]
struct MessagePage {
    title: String,
    text: String,
}

pub fn message(status: StatusCode, text: &str) -> Response {
    let title = if status.is_success() { "Done" } else { status.canonical_reason().unwrap_or("Error") };
    (status, MessagePage { title: title.into(), text: text.into() }).into_response()
}

async fn css() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
        include_str!("../../static/app.css"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_never_leaves_the_site() {
        assert_eq!(safe_next(Some("/account")), "/account");
        assert_eq!(safe_next(Some("/device?code=X")), "/device?code=X");
        for bad in ["//evil.example", "https://evil.example", "/\\evil", "evil", "/a b"] {
            assert_eq!(safe_next(Some(bad)), "/account", "{bad}");
        }
    }
}
