//! `/mfa`: the second step of a browser login, with "Remember this device".

use super::AppState;
use super::web::{
    CsrfForm, MaybeWebUser, PageError, PageQuery, allow_form_target, cookie_names, csrf_token, forget, next_app_origin, safe_next,
    signed_in,
};
use crate::service::login_mfa;
use crate::service::{AppError, ClientMeta};
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
    Router::new().route("/mfa", get(mfa_form).post(mfa_submit)).route("/mfa/email", post(mfa_send_email))
}

#[derive(Template, WebTemplate)]
#[template(path = "mfa.html")]
struct MfaPage {
    csrf: String,
    next: String,
    methods: Vec<&'static str>,
    remember_days: u64,
    error: Option<String>,
    notice: Option<String>,
}

impl MfaPage {
    fn has(&self, m: &str) -> bool {
        self.methods.contains(&m)
    }
}

/// What the page says above the form.
enum Say {
    Nothing,
    Notice(String),
    Error(StatusCode, String),
}

/// The mfa_token of this browser's pending login (empty when it has none: the service refuses it).
fn pending_token(jar: &CookieJar, s: &AppState) -> String {
    jar.get(cookie_names(s.app.secure_cookies).mfa).map(|c| c.value().to_owned()).unwrap_or_default()
}

/// A login that is over (or never started) goes back to `/login`; other errors are pages.
fn restart(e: AppError) -> Result<Response, PageError> {
    match e {
        AppError::Unauthorized => Ok(Redirect::to("/login").into_response()),
        other => Err(other.into()),
    }
}

async fn render(s: &AppState, jar: CookieJar, next: String, say: Say) -> Result<Response, PageError> {
    let methods = match login_mfa::pending_methods(&s.app, &pending_token(&jar, s)).await {
        Ok(m) => m,
        Err(e) => return restart(e),
    };
    let (status, error, notice) = match say {
        Say::Nothing => (StatusCode::OK, None, None),
        Say::Notice(text) => (StatusCode::OK, None, Some(text)),
        Say::Error(status, text) => (status, Some(text), None),
    };
    let (jar, csrf) = csrf_token(jar, s);
    let origin = next_app_origin(s, &next).await;
    let page =
        (status, jar, MfaPage { csrf, next, methods, remember_days: s.app.settings.mfa.remember_days, error, notice }).into_response();
    Ok(allow_form_target(page, origin.as_deref()))
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

/// The second step of a login under way; with none, a signed-in browser gets its settings.
async fn mfa_form(
    State(s): State<AppState>,
    jar: CookieJar,
    MaybeWebUser(user): MaybeWebUser,
    PageQuery(q): PageQuery<NextQuery>,
) -> Result<Response, PageError> {
    if let Some(caller) = user
        && jar.get(cookie_names(s.app.secure_cookies).mfa).is_none()
    {
        return super::factor_pages::settings(&s, jar, &caller).await;
    }
    render(&s, jar, safe_next(q.next.as_deref()), Say::Nothing).await
}

async fn mfa_send_email(State(s): State<AppState>, jar: CookieJar, CsrfForm(f): CsrfForm<NextQuery>) -> Result<Response, PageError> {
    let next = safe_next(f.next.as_deref());
    let say = match login_mfa::send_login_code(&s.app, &pending_token(&jar, &s)).await {
        Ok(()) => Say::Notice("We sent a code to your e-mail address.".into()),
        Err(AppError::RateLimited { retry_after }) => Say::Error(
            StatusCode::TOO_MANY_REQUESTS,
            format!("A code was sent moments ago. Wait {retry_after} seconds to ask for another."),
        ),
        Err(e) => return restart(e),
    };
    render(&s, jar, next, say).await
}

#[derive(Deserialize)]
struct VerifyForm {
    method: String,
    code: String,
    remember: Option<String>,
    next: Option<String>,
}

async fn mfa_submit(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    CsrfForm(f): CsrfForm<VerifyForm>,
) -> Result<Response, PageError> {
    let next = safe_next(f.next.as_deref());
    match login_mfa::verify(&s.app, &pending_token(&jar, &s), &f.method, &f.code, f.remember.is_some(), true, &meta).await {
        Ok(signed) => {
            let jar = forget(signed_in(jar, &s, &signed.opened, signed.trust_token), cookie_names(s.app.secure_cookies).mfa);
            Ok((jar, Redirect::to(&next)).into_response())
        }
        Err(AppError::BadRequest(text)) => render(&s, jar, next, Say::Error(StatusCode::BAD_REQUEST, text)).await,
        Err(e) => restart(e),
    }
}
