//! Browser plumbing, once for every page: the cookies, the CSRF token and the extractors that
//! check it, the signed-in browser, and the error page. A page handler that takes a
//! [`CsrfForm`] cannot forget the CSRF check, and one that answers [`PageError`] cannot answer a
//! person with JSON.
//!
//! Cookies are HttpOnly, SameSite=Lax, and Secure (with the `__Host-` prefix) unless the server
//! is plain-http loopback. CSRF is a double-submit token (cookie and form field, compared in
//! constant time) plus an Origin and `Sec-Fetch-Site` check.

use super::AppState;
use crate::domain::secret;
use crate::service::sessions::{self, Caller, Opened};
use crate::service::{AppError, ClientMeta};
use askama::Template;
use askama_web::WebTemplate;
use axum::extract::rejection::{PathRejection, QueryRejection, RawFormRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, RawForm, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;
use serde::de::DeserializeOwned;

// --- cookies -------------------------------------------------------------------------------

pub struct CookieNames {
    pub session: &'static str,
    pub csrf: &'static str,
    /// The pending second step of a login (the mfa_token).
    pub mfa: &'static str,
    /// "Remember this device": survives logout, on purpose.
    pub trust: &'static str,
    /// The prefix of each QR login's secret cookie (one per login: see [`qr_cookie`]).
    pub qr: &'static str,
    /// The secret binding this browser's sign-in at an upstream provider to it.
    pub upstream: &'static str,
    /// An upstream identity waiting for its account to be proved (sealed).
    pub link: &'static str,
}

pub fn cookie_names(secure: bool) -> CookieNames {
    if secure {
        CookieNames {
            session: "__Host-lk_session",
            csrf: "__Host-lk_csrf",
            mfa: "__Host-lk_mfa",
            trust: "__Host-lk_trust",
            qr: "__Host-lk_qr",
            upstream: "__Host-lk_upstream",
            link: "__Host-lk_link",
        }
    } else {
        CookieNames {
            session: "lk_session",
            csrf: "lk_csrf",
            mfa: "lk_mfa",
            trust: "lk_trust",
            qr: "lk_qr",
            upstream: "lk_upstream",
            link: "lk_link",
        }
    }
}

/// The cookie holding the secret of QR login `id`: one per login, so that two `/login` tabs each
/// finish their own.
pub fn qr_cookie(secure: bool, id: &str) -> String {
    format!("{}_{id}", cookie_names(secure).qr)
}

pub fn cookie(name: impl Into<std::borrow::Cow<'static, str>>, value: String, secure: bool, max_age_secs: i64) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(time::Duration::seconds(max_age_secs))
        .build()
}

/// Removes a cookie set by [`cookie`] (the path must match for the browser to drop it).
pub fn forget(jar: CookieJar, name: impl Into<std::borrow::Cow<'static, str>>) -> CookieJar {
    let name = name.into();
    // A `__Host-` cookie is only replaced (here: removed) by one that is Secure too.
    let secure = name.starts_with("__Host-");
    jar.remove(Cookie::build(name).path("/").secure(secure))
}

/// This browser is signed in: the session cookie for as long as the session lives, and the
/// device-trust cookie when the device is (still) remembered.
pub fn signed_in(jar: CookieJar, s: &AppState, opened: &Opened, trust_token: Option<String>) -> CookieJar {
    let (names, secure) = (cookie_names(s.app.secure_cookies), s.app.secure_cookies);
    let max_age = opened.session.expires_at - opened.session.created_at;
    let jar = jar.add(cookie(names.session, opened.web_token.clone().unwrap_or_default(), secure, max_age));
    match trust_token {
        Some(t) => jar.add(cookie(names.trust, t, secure, s.app.settings.mfa.remember_days as i64 * 86_400)),
        None => jar,
    }
}

// --- CSRF ----------------------------------------------------------------------------------

/// The CSRF token of this browser, creating the cookie if it has none.
pub fn csrf_token(jar: CookieJar, s: &AppState) -> (CookieJar, String) {
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

/// What a request's headers say about where it comes from, read before its body.
struct Provenance {
    cookie_token: Option<String>,
    /// No Origin or `Sec-Fetch-Site` that names another site (a browser that says nothing passes).
    same_site: bool,
}

impl Provenance {
    fn of(headers: &HeaderMap, s: &AppState) -> Self {
        let jar = CookieJar::from_headers(headers);
        let cookie_token = jar.get(cookie_names(s.app.secure_cookies).csrf).map(|c| c.value().to_owned());
        let origin_ok = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).is_none_or(|o| o == s.app.issuer);
        let site_ok = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()).is_none_or(|v| v == "same-origin" || v == "none");
        Self { cookie_token, same_site: origin_ok && site_ok }
    }

    /// A post is accepted only with the cookie's CSRF token in it and from our own origin.
    fn accepts(&self, given: &str) -> Result<(), PageError> {
        let token_ok = self.cookie_token.as_ref().is_some_and(|c| !given.is_empty() && secret::ct_eq(c.as_bytes(), given.as_bytes()));
        if token_ok && self.same_site { Ok(()) } else { Err(PageError::new(StatusCode::FORBIDDEN, CSRF_REFUSED)) }
    }
}

const CSRF_REFUSED: &str = "This form has expired or did not come from this site. Go back, reload the page and try again.";

/// A page's form post (`application/x-www-form-urlencoded`) whose `csrf` field has been checked
/// against the browser's CSRF cookie and origin before the form is even parsed. `T` needs no
/// `csrf` field; one that wants the token (to put it into the next page) may declare it.
pub struct CsrfForm<T>(pub T);

#[derive(Deserialize)]
struct CsrfField {
    #[serde(default)]
    csrf: String,
}

impl<T: DeserializeOwned> FromRequest<AppState> for CsrfForm<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, s: &AppState) -> Result<Self, Self::Rejection> {
        let provenance = Provenance::of(req.headers(), s);
        let RawForm(body) = RawForm::from_request(req, s).await.map_err(form_refused)?;
        // A body that does not even parse has no token: refused as forged, not as malformed.
        let given = serde_urlencoded::from_bytes::<CsrfField>(&body).map(|f| f.csrf).unwrap_or_default();
        provenance.accepts(&given)?;
        serde_urlencoded::from_bytes(&body).map(Self).map_err(|e| {
            PageError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("This form is missing something or has a value it cannot take ({e})."))
        })
    }
}

/// A form with nothing but its CSRF token: `CsrfForm<Empty>`.
#[derive(Deserialize)]
pub struct Empty {}

fn form_refused(rej: RawFormRejection) -> PageError {
    let text = match &rej {
        RawFormRejection::InvalidFormContentType(_) => "This page takes forms only (application/x-www-form-urlencoded).".to_owned(),
        other => other.body_text(),
    };
    PageError::new(rej.status(), text)
}

/// A page script's post (JSON, not a form): the CSRF token comes in `X-CSRF-Token`.
pub struct CsrfHeader;

impl FromRequestParts<AppState> for CsrfHeader {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let given = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).unwrap_or("");
        Provenance::of(&parts.headers, s).accepts(given).map(|()| Self)
    }
}

/// A page's query string; a malformed one is a 400 page.
#[derive(FromRequestParts)]
#[from_request(via(Query), rejection(PageError))]
pub struct PageQuery<T>(pub T);

impl From<QueryRejection> for PageError {
    fn from(rej: QueryRejection) -> Self {
        PageError::new(rej.status(), rej.body_text())
    }
}

/// A page's path parameters; a malformed one is a 4xx page.
#[derive(FromRequestParts)]
#[from_request(via(Path), rejection(PageError))]
pub struct PagePath<T>(pub T);

impl From<PathRejection> for PageError {
    fn from(rej: PathRejection) -> Self {
        PageError::new(rej.status(), rej.body_text())
    }
}

// --- the signed-in browser -----------------------------------------------------------------

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
            Err(e) => Err(PageError::from(e).into_response()),
        }
    }
}

/// The signed-in browser if there is one; no redirect when there is not (the authorization and
/// logout endpoints decide themselves what a signed-out browser gets).
pub struct MaybeWebUser(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeWebUser {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        let meta = ClientMeta::from_request_parts(parts, s).await.unwrap_or_else(|e| match e {});
        let Some(c) = jar.get(cookie_names(s.app.secure_cookies).session) else {
            return Ok(Self(None));
        };
        match sessions::caller_from_cookie(&s.app, c.value(), &meta).await {
            Ok(caller) => Ok(Self(Some(caller))),
            Err(AppError::Unauthorized) => Ok(Self(None)),
            Err(e) => Err(e.into()),
        }
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"/-_.~?=".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// Only a local absolute path is a valid place to return to: no scheme, no `//host`, no
/// backslash tricks. Anything else goes to `/account`.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.len() < 4096
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_owned()
        }
        _ => "/account".into(),
    }
}

/// Lets this page's forms redirect on to every configured upstream's authorization endpoint
/// (the account page's "Link …" buttons).
pub fn allow_upstream_targets(resp: Response, s: &AppState) -> Response {
    let mut origins = Vec::new();
    for u in s.app.upstreams.all() {
        if let Some(o) = u.form_origin()
            && !origins.contains(&o)
        {
            origins.push(o);
        }
    }
    if origins.is_empty() { resp } else { allow_form_target(resp, Some(&origins.join(" "))) }
}

/// Lets this page's forms redirect on to `origin` (see [`super::csp_with_form_target`]).
pub fn allow_form_target(mut resp: Response, origin: Option<&str>) -> Response {
    if let Some(value) = origin.and_then(|o| HeaderValue::from_str(&super::csp_with_form_target(o)).ok()) {
        resp.headers_mut().insert(header::CONTENT_SECURITY_POLICY, value);
    }
    resp
}

/// The app's origin a sign-in page's `next` leads back to, if it is an authorization request
/// whose redirect URI the app registered; None for anything else.
pub async fn next_app_origin(s: &AppState, next: &str) -> Option<String> {
    let query = next.strip_prefix("/oauth/authorize?")?;
    let raw: crate::domain::authorize::RawAuthorize = serde_urlencoded::from_str(query).ok()?;
    crate::service::authorize::redirect_origin(&s.app, &raw).await
}

/// `on` or `off`, from a form's toggle button named `field`.
pub fn on_off(field: &str, word: &str) -> Result<bool, PageError> {
    match word {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(PageError::from(crate::service::AppError::BadRequest(format!("{field}: on or off")))),
    }
}

/// `approve` or `deny`, from a button or a path; anything else is `None`.
pub fn decision(word: &str) -> Option<bool> {
    match word {
        "approve" => Some(true),
        "deny" => Some(false),
        _ => None,
    }
}

// --- pages that only say something ---------------------------------------------------------

#[derive(Template, WebTemplate)]
#[template(path = "message.html")]
struct MessagePage {
    title: String,
    text: String,
}

fn message(status: StatusCode, text: String) -> Response {
    let title = if status.is_success() { "Done" } else { status.canonical_reason().unwrap_or("Error") };
    (status, MessagePage { title: title.into(), text }).into_response()
}

/// The page after a decision was taken.
pub fn done(text: &str) -> Response {
    message(StatusCode::OK, text.into())
}

/// What a page answers when it cannot do what was asked: the message page, in words, with the
/// status the API would have used. Never JSON, never a 500 for bad input.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    text: String,
    retry_after: Option<u64>,
}

impl PageError {
    pub fn new(status: StatusCode, text: impl Into<String>) -> Self {
        Self { status, text: text.into(), retry_after: None }
    }
}

impl From<AppError> for PageError {
    fn from(e: AppError) -> Self {
        let text = match &e {
            AppError::RateLimited { retry_after } => format!("Too many attempts. Try again in {retry_after} seconds."),
            AppError::Overloaded => "The server is busy. Try again in a moment.".into(),
            AppError::Unauthorized => "You are not signed in any more. Sign in again.".into(),
            AppError::Invalid(p) => sentence(&p.message),
            // Logs the cause of a 5xx; the person sees only that it was the server.
            other => sentence(&super::error::detail(other)),
        };
        Self { status: super::error::status(&e), text, retry_after: super::error::retry_after(&e) }
    }
}

/// "not found" → "Not found.": service messages are written for the API's `detail`.
fn sentence(s: &str) -> String {
    let mut chars = s.chars();
    let mut out: String = chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default();
    if !out.is_empty() && !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let mut resp = message(self.status, self.text);
        super::error::set_retry_after(&mut resp, self.retry_after);
        resp
    }
}

/// A static file of the pages (CSS, scripts), cached for an hour.
pub fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=3600")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::{safe_next, sentence};

    #[test]
    fn next_never_leaves_the_site() {
        assert_eq!(safe_next(Some("/account")), "/account");
        assert_eq!(safe_next(Some("/device?code=X")), "/device?code=X");
        for bad in ["//evil.example", "https://evil.example", "/\\evil", "evil", "/a b"] {
            assert_eq!(safe_next(Some(bad)), "/account", "{bad}");
        }
    }

    #[test]
    fn service_messages_read_as_sentences() {
        assert_eq!(sentence("not found"), "Not found.");
        assert_eq!(sentence("Wrong code."), "Wrong code.");
        assert_eq!(sentence(""), "");
    }
}
