//! The browser side of apps signing in through Latchkey: `/oauth/authorize` (GET or POST), its
//! consent page, and RP-initiated logout at `/oauth/end_session`. The decisions are
//! `service::authorize`'s and `service::oidc`'s; this file turns them into pages and redirects.

use super::AppState;
use super::web::{
    CsrfForm, MaybeWebUser, PageError, PageQuery, allow_form_target, cookie_names, csrf_token, decision, done, forget, urlencode,
};
use crate::domain::authorize::RawAuthorize;
use crate::service::ClientMeta;
use crate::service::authorize::{self, ConsentView, Step};
use crate::service::oidc::{self, EndSessionRequest};
use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{RawForm, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::CookieJar;
use serde::{Deserialize, Serialize};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/oauth/authorize", get(authorize_get).post(authorize_post))
        .route("/oauth/authorize/decision", post(consent_decision))
        .route("/oauth/end_session", get(end_session_get).post(end_session_post))
        .route("/oauth/end_session/confirm", post(end_session_confirm))
}

/// The authorization request, and (on the way back from `/login`) the time the new sign-in had
/// to follow.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct AuthorizeQuery {
    #[serde(flatten)]
    raw: RawAuthorize,
    lk_after: Option<String>,
}

impl AuthorizeQuery {
    /// Only a sealed `lk_after` of this same request counts (see `authorize::seal_login_after`).
    fn login_after(&self, s: &AppState) -> Option<i64> {
        self.lk_after.as_deref().and_then(|v| authorize::open_login_after(&s.app, &self.raw, v))
    }

    fn encoded(&self) -> String {
        serde_urlencoded::to_string(self).unwrap_or_default()
    }
}

fn bad_request(text: &str) -> PageError {
    PageError::new(StatusCode::BAD_REQUEST, text)
}

fn parse_query(bytes: &[u8]) -> Result<AuthorizeQuery, PageError> {
    serde_urlencoded::from_bytes(bytes).map_err(|e| bad_request(&format!("The authorization request is malformed: {e}.")))
}

#[derive(Template, WebTemplate)]
#[template(path = "consent.html")]
struct ConsentPage {
    csrf: String,
    request: String,
    view: ConsentView,
}

/// RFC 6749 §4.1.1 / OpenID Connect Core §3.1.2.1 (GET).
#[utoipa::path(get, path = "/oauth/authorize", tag = "oidc",
    params(("response_type" = String, Query, description = "code"), ("client_id" = String, Query), ("redirect_uri" = String, Query),
           ("scope" = String, Query), ("state" = Option<String>, Query), ("nonce" = Option<String>, Query),
           ("code_challenge" = Option<String>, Query, description = "PKCE S256; required of public clients"),
           ("code_challenge_method" = Option<String>, Query, description = "S256"), ("prompt" = Option<String>, Query, description = "none, login, consent"),
           ("max_age" = Option<i64>, Query), ("login_hint" = Option<String>, Query)),
    responses((status = 303, description = "to the app's redirect URI with code, state and iss (or error), or to /login"),
              (status = 200, description = "the consent page"), (status = 400, description = "unknown client or redirect URI: an error page, never a redirect")))]
pub async fn authorize_get(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    MaybeWebUser(caller): MaybeWebUser,
    PageQuery(q): PageQuery<AuthorizeQuery>,
) -> Result<Response, PageError> {
    answer(&s, &meta, jar, caller, q, None).await
}

/// The same authorization request as a form post (OpenID Connect Core §3.1.2.1).
#[utoipa::path(post, path = "/oauth/authorize", tag = "oidc",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "the parameters of GET /oauth/authorize"),
    responses((status = 303, description = "as GET /oauth/authorize"), (status = 200, description = "the consent page"), (status = 400, description = "an error page")))]
pub async fn authorize_post(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    MaybeWebUser(caller): MaybeWebUser,
    RawForm(body): RawForm,
) -> Result<Response, PageError> {
    answer(&s, &meta, jar, caller, parse_query(&body)?, None).await
}

async fn answer(
    s: &AppState,
    meta: &ClientMeta,
    jar: CookieJar,
    caller: Option<crate::service::sessions::Caller>,
    mut q: AuthorizeQuery,
    decided: Option<bool>,
) -> Result<Response, PageError> {
    let step = authorize::authorize(&s.app, &q.raw, caller.as_ref(), q.login_after(s), decided, meta).await?;
    Ok(match step {
        Step::Redirect(url) => Redirect::to(&url).into_response(),
        Step::Refused(text) => bad_request(&text).into_response(),
        Step::Login { after } => {
            q.lk_after = Some(authorize::seal_login_after(&s.app, &q.raw, after));
            let back = format!("/oauth/authorize?{}", q.encoded());
            let hint = q.raw.login_hint.as_deref().map(|h| format!("&login_hint={}", urlencode(h))).unwrap_or_default();
            Redirect::to(&format!("/login?next={}{hint}", urlencode(&back))).into_response()
        }
        Step::Consent(view) => {
            let (jar, csrf) = csrf_token(jar, s);
            let origin = view.redirect_origin.clone();
            allow_form_target((jar, ConsentPage { csrf, request: q.encoded(), view }).into_response(), origin.as_deref())
        }
    })
}

#[derive(Deserialize)]
pub struct DecisionForm {
    request: String,
    decision: String,
}

/// The consent page's answer: Allow or Deny, CSRF-checked; the request it carries is checked
/// again from the start.
#[utoipa::path(post, path = "/oauth/authorize/decision", tag = "oidc",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "csrf, request (the authorization request, form-encoded), decision (approve or deny)"),
    responses((status = 303, description = "to the app with a code or access_denied, or to /login"), (status = 403, description = "CSRF check failed")))]
pub async fn consent_decision(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    MaybeWebUser(caller): MaybeWebUser,
    CsrfForm(f): CsrfForm<DecisionForm>,
) -> Result<Response, PageError> {
    let approve = decision(&f.decision).ok_or_else(|| bad_request("Choose Allow or Deny."))?;
    let q = parse_query(f.request.as_bytes())?;
    // Signed out meanwhile: sign in and see the question again.
    let decided = caller.as_ref().map(|_| approve);
    answer(&s, &meta, jar, caller, q, decided).await
}

#[derive(Template, WebTemplate)]
#[template(path = "end_session.html")]
struct EndSessionPage {
    csrf: String,
    request: String,
}

/// RP-initiated logout: ends this browser's Latchkey session. With an `id_token_hint` of the
/// signed-in user it needs no confirmation; without one the user confirms. It redirects only to
/// a `post_logout_redirect_uri` the client registered, with `state`.
#[utoipa::path(get, path = "/oauth/end_session", tag = "oidc",
    params(("id_token_hint" = Option<String>, Query), ("client_id" = Option<String>, Query), ("post_logout_redirect_uri" = Option<String>, Query), ("state" = Option<String>, Query)),
    responses((status = 303, description = "to the registered post_logout_redirect_uri"), (status = 200, description = "a confirmation or signed-out page"), (status = 400, description = "an unregistered redirect or a bad hint")))]
pub async fn end_session_get(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    MaybeWebUser(caller): MaybeWebUser,
    PageQuery(req): PageQuery<EndSessionRequest>,
) -> Result<Response, PageError> {
    end_session(&s, &meta, jar, caller, req, false).await
}

/// RP-initiated logout as a form post: as GET /oauth/end_session.
#[utoipa::path(post, path = "/oauth/end_session", tag = "oidc",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "id_token_hint?, client_id?, post_logout_redirect_uri?, state?"),
    responses((status = 303, description = "to the registered post_logout_redirect_uri"), (status = 200, description = "a confirmation or signed-out page"), (status = 400)))]
pub async fn end_session_post(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    MaybeWebUser(caller): MaybeWebUser,
    RawForm(body): RawForm,
) -> Result<Response, PageError> {
    let req = serde_urlencoded::from_bytes(&body).map_err(|e| bad_request(&format!("The logout request is malformed: {e}.")))?;
    end_session(&s, &meta, jar, caller, req, false).await
}

/// The logout confirmation's answer (CSRF-checked): sign out, or stay signed in.
#[utoipa::path(post, path = "/oauth/end_session/confirm", tag = "oidc",
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "csrf, request (the logout request, form-encoded), decision (approve or deny)"),
    responses((status = 303, description = "to the registered post_logout_redirect_uri"), (status = 200, description = "signed out, or still signed in"), (status = 403, description = "CSRF check failed")))]
pub async fn end_session_confirm(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    MaybeWebUser(caller): MaybeWebUser,
    CsrfForm(f): CsrfForm<DecisionForm>,
) -> Result<Response, PageError> {
    let req: EndSessionRequest =
        serde_urlencoded::from_str(&f.request).map_err(|e| bad_request(&format!("The logout request is malformed: {e}.")))?;
    match decision(&f.decision) {
        Some(true) => end_session(&s, &meta, jar, caller, req, true).await,
        _ => Ok(done("You are still signed in.")),
    }
}

async fn end_session(
    s: &AppState,
    meta: &ClientMeta,
    jar: CookieJar,
    caller: Option<crate::service::sessions::Caller>,
    req: EndSessionRequest,
    confirmed_by_user: bool,
) -> Result<Response, PageError> {
    let checked = oidc::check_end_session(&s.app, &req, caller.as_ref()).await?;
    let Some(caller) = caller else {
        return Ok(after_logout(checked.redirect));
    };
    if !checked.confirmed && !confirmed_by_user {
        let (jar, csrf) = csrf_token(jar, s);
        let request = serde_urlencoded::to_string(&req).unwrap_or_default();
        let origin = checked.redirect.as_deref().and_then(authorize::origin_of);
        return Ok(allow_form_target((jar, EndSessionPage { csrf, request }).into_response(), origin.as_deref()));
    }
    oidc::end_session(&s.app, &caller, req.client_id.as_deref(), meta).await?;
    let jar = forget(jar, cookie_names(s.app.secure_cookies).session);
    Ok((jar, after_logout(checked.redirect)).into_response())
}

fn after_logout(redirect: Option<String>) -> Response {
    match redirect {
        Some(url) => Redirect::to(&url).into_response(),
        None => done("You are signed out."),
    }
}
