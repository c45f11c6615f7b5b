//! The browser side of "Sign in with …" an upstream provider, and of linking one to an account:
//! start (a redirect upstream, with this browser's state cookie), the per-provider callback,
//! the page that asks a person to prove an existing account, the link confirmation and unlink.
//! The decisions are `service::upstream_login`'s.

use super::AppState;
use super::pages::web_signed_in;
use super::web::{
    CsrfForm, Empty, MaybeWebUser, PageError, PagePath, PageQuery, WebUser, cookie, cookie_names, csrf_token, decision, forget, safe_next,
};
use crate::service::upstream_login::{self, Browser, CallbackQuery, Finished, LINK_TTL_SECS, PendingLink, STATE_TTL_SECS};
use crate::service::{AppError, ClientMeta, accounts};
use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/login/upstream/{id}", get(start))
        .route("/login/upstream/{id}/callback", get(callback))
        .route("/account/identities/link/{id}", post(start_link))
        .route("/account/identities/confirm", get(confirm_page).post(confirm))
        .route("/account/identities/{id}/unlink", post(unlink))
}

#[derive(Deserialize)]
pub struct StartQuery {
    pub next: Option<String>,
}

/// "Sign in with …": a plain link from `/login` (GET is enough: it only sends the browser away
/// with a fresh state; nothing is signed in until the callback brings that state back to this
/// browser).
#[utoipa::path(get, path = "/login/upstream/{id}", tag = "identities",
    params(("id" = String, Path, description = "the upstream's id in `[[upstream]]`"), ("next" = Option<String>, Query, description = "where to go once signed in (a path here)")),
    responses((status = 303, description = "to the upstream's authorization endpoint, with a state cookie"), (status = 404, description = "no such upstream"),
        (status = 502, description = "the upstream cannot be reached")))]
pub async fn start(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    PagePath(id): PagePath<String>,
    PageQuery(q): PageQuery<StartQuery>,
) -> Result<Response, PageError> {
    let next = safe_next(q.next.as_deref());
    let started = upstream_login::start(&s.app, &id, &next, None, &meta).await?;
    Ok(away(jar, &s, started))
}

fn away(jar: CookieJar, s: &AppState, started: upstream_login::Started) -> Response {
    let secure = s.app.secure_cookies;
    let jar = jar.add(cookie(cookie_names(secure).upstream, started.browser_secret, secure, STATE_TTL_SECS));
    (jar, Redirect::to(&started.location)).into_response()
}

async fn start_link(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    WebUser(caller): WebUser,
    PagePath(id): PagePath<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Response, PageError> {
    let started = upstream_login::start(&s.app, &id, "/account", Some(&caller), &meta).await?;
    Ok(away(jar, &s, started))
}

#[derive(Template, WebTemplate)]
#[template(path = "upstream_prove.html")]
struct ProvePage {
    upstream: String,
    email: String,
}

/// Where an upstream sends the browser back (one path per upstream, so answers of one cannot be
/// delivered to another). Signs in, links, or explains on a page why not.
#[utoipa::path(get, path = "/login/upstream/{id}/callback", tag = "identities",
    params(("id" = String, Path), ("code" = Option<String>, Query), ("state" = Option<String>, Query), ("iss" = Option<String>, Query, description = "RFC 9207"),
        ("error" = Option<String>, Query), ("error_description" = Option<String>, Query)),
    responses((status = 303, description = "signed in (on to `next`, or `/mfa` for the second factor), or linked (to `/account`)"),
        (status = 200, description = "an account has this verified address: sign in to it to link"),
        (status = 400, description = "missing, forged, expired or spent state; an answer for another upstream"),
        (status = 403, description = "refused: by the upstream, a failed id_token check, or the linking rules"),
        (status = 502, description = "the upstream cannot be reached")))]
pub async fn callback(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    MaybeWebUser(caller): MaybeWebUser,
    PagePath(id): PagePath<String>,
    PageQuery(q): PageQuery<CallbackQuery>,
) -> Result<Response, PageError> {
    let names = cookie_names(s.app.secure_cookies);
    let secret_cookie = jar.get(names.upstream).map(|c| c.value().to_owned());
    let trust = jar.get(names.trust).map(|c| c.value().to_owned());
    let browser = Browser { secret_cookie: secret_cookie.as_deref(), caller: caller.as_ref(), device_trust_token: trust.as_deref() };
    let finished = upstream_login::callback(&s.app, &id, &q, browser, &meta).await;
    // The sign-in is spent either way (the store took its state).
    let jar = forget(jar, names.upstream);
    Ok(match finished? {
        Finished::SignIn { outcome, next } => web_signed_in(jar, &s, outcome, &next),
        Finished::Linked => (jar, Redirect::to("/account")).into_response(),
        Finished::ProveAccount { sealed, email, upstream } => {
            let jar = jar.add(cookie(names.link, sealed, s.app.secure_cookies, LINK_TTL_SECS));
            (jar, ProvePage { upstream, email }).into_response()
        }
    })
}

#[derive(Template, WebTemplate)]
#[template(path = "link_confirm.html")]
struct ConfirmPage {
    csrf: String,
    upstream: String,
    email: Option<String>,
    account: String,
}

fn pending(s: &AppState, jar: &CookieJar, caller: &crate::service::sessions::Caller) -> Result<PendingLink, PageError> {
    let names = cookie_names(s.app.secure_cookies);
    let sealed = jar.get(names.link).map(|c| c.value().to_owned()).unwrap_or_default();
    Ok(PendingLink::open(&s.app, &sealed, caller)?)
}

async fn confirm_page(State(s): State<AppState>, jar: CookieJar, WebUser(caller): WebUser) -> Result<Response, PageError> {
    let p = pending(&s, &jar, &caller)?;
    let account = accounts::profile(&s.app, &caller).await?.email.unwrap_or_else(|| "this account".into());
    let (jar, csrf) = csrf_token(jar, &s);
    let page = ConfirmPage { csrf, upstream: p.display_name(&s.app).to_owned(), email: p.email.clone(), account };
    Ok((jar, page).into_response())
}

#[derive(Deserialize)]
struct ConfirmForm {
    decision: String,
}

async fn confirm(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    WebUser(caller): WebUser,
    CsrfForm(f): CsrfForm<ConfirmForm>,
) -> Result<Response, PageError> {
    let approve = decision(&f.decision).ok_or_else(|| AppError::BadRequest("decision must be approve or deny".into()))?;
    let p = pending(&s, &jar, &caller)?;
    let jar = forget(jar, cookie_names(s.app.secure_cookies).link);
    if approve {
        upstream_login::confirm_link(&s.app, &caller, &p, &meta).await?;
    } else {
        upstream_login::decline_link(&s.app, &caller, &p, &meta).await?;
    }
    Ok((jar, Redirect::to("/account")).into_response())
}

async fn unlink(
    State(s): State<AppState>,
    meta: ClientMeta,
    WebUser(caller): WebUser,
    PagePath(id): PagePath<String>,
    CsrfForm(_): CsrfForm<Empty>,
) -> Result<Redirect, PageError> {
    match upstream_login::unlink(&s.app, &caller, &id, &meta).await {
        Ok(()) | Err(AppError::NotFound) => Ok(Redirect::to("/account")),
        Err(e) => Err(e.into()),
    }
}
