//! `/mfa`: the second step of a browser login, with "Remember this device".

use super::AppState;
use super::pages::{cookie, cookie_names, csrf_ok, csrf_refused, csrf_token, safe_next};
use crate::service::login_mfa;
use crate::service::{AppError, ClientMeta};
use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::{Cookie, CookieJar};
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

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn render(s: &AppState, jar: CookieJar, next: String, error: Option<String>, notice: Option<String>, status: StatusCode) -> Response {
    let names = cookie_names(s.app.secure_cookies);
    let Some(token) = jar.get(names.mfa).map(|c| c.value().to_owned()) else {
        return Redirect::to("/login").into_response();
    };
    let methods = match login_mfa::pending_methods(&s.app, &token).await {
        Ok(m) => m,
        Err(AppError::Unauthorized) => return Redirect::to("/login").into_response(),
        Err(e) => return super::error::ApiError(e).into_response(),
    };
    let (jar, csrf) = csrf_token(jar, s);
    (status, jar, MfaPage { csrf, next, methods, remember_days: s.app.settings.mfa.remember_days, error, notice }).into_response()
}

async fn mfa_form(State(s): State<AppState>, jar: CookieJar, Query(q): Query<NextQuery>) -> Response {
    render(&s, jar, safe_next(q.next.as_deref()), None, None, StatusCode::OK).await
}

#[derive(Deserialize)]
struct SendForm {
    csrf: String,
    next: Option<String>,
}

async fn mfa_send_email(State(s): State<AppState>, jar: CookieJar, headers: HeaderMap, axum::Form(f): axum::Form<SendForm>) -> Response {
    if !csrf_ok(&jar, &headers, &s, &f.csrf) {
        return csrf_refused();
    }
    let next = safe_next(f.next.as_deref());
    let token = jar.get(cookie_names(s.app.secure_cookies).mfa).map(|c| c.value().to_owned()).unwrap_or_default();
    match login_mfa::send_login_code(&s.app, &token).await {
        Ok(()) => render(&s, jar, next, None, Some("We sent a code to your e-mail address.".into()), StatusCode::OK).await,
        Err(AppError::RateLimited { retry_after }) => {
            render(
                &s,
                jar,
                next,
                Some(format!("A code was sent moments ago. Wait {retry_after} seconds to ask for another.")),
                None,
                StatusCode::TOO_MANY_REQUESTS,
            )
            .await
        }
        Err(AppError::Unauthorized) => Redirect::to("/login").into_response(),
        Err(e) => super::error::ApiError(e).into_response(),
    }
}

#[derive(Deserialize)]
struct VerifyForm {
    csrf: String,
    method: String,
    code: String,
    remember: Option<String>,
    next: Option<String>,
}

async fn mfa_submit(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    headers: HeaderMap,
    axum::Form(f): axum::Form<VerifyForm>,
) -> Response {
    if !csrf_ok(&jar, &headers, &s, &f.csrf) {
        return csrf_refused();
    }
    let names = cookie_names(s.app.secure_cookies);
    let next = safe_next(f.next.as_deref());
    let token = jar.get(names.mfa).map(|c| c.value().to_owned()).unwrap_or_default();
    match login_mfa::verify(&s.app, &token, &f.method, &f.code, f.remember.is_some(), &meta).await {
        Ok(signed) => {
            let secure = s.app.secure_cookies;
            let session = &signed.opened.session;
            let mut jar = jar
                .add(cookie(
                    names.session,
                    signed.opened.web_token.clone().unwrap_or_default(),
                    secure,
                    session.expires_at - session.created_at,
                ))
                .remove(Cookie::build(names.mfa).path("/"));
            if let Some(t) = signed.trust_token {
                jar = jar.add(cookie(names.trust, t, secure, s.app.settings.mfa.remember_days as i64 * 86_400));
            }
            (jar, Redirect::to(&next)).into_response()
        }
        Err(AppError::Unauthorized) => Redirect::to("/login").into_response(),
        Err(AppError::BadRequest(text)) => render(&s, jar, next, Some(text), None, StatusCode::BAD_REQUEST).await,
        Err(e) => super::error::ApiError(e).into_response(),
    }
}
