//! `/mfa` for a signed-in browser: the account's second factors, and turning sign-in codes by
//! e-mail on and off, each confirmed by a code mailed to the address (the same steps as
//! `POST /api/v1/mfa/email` and `/email/disable`). The same path during a login is its second
//! step (`mfa_pages`).

use super::AppState;
use super::web::{CsrfForm, PageError, WebUser, csrf_token, on_off};
use crate::service::{ClientMeta, accounts, enrolment};
use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::post;
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;

pub fn router() -> Router<AppState> {
    Router::new().route("/mfa/email-codes", post(email_codes))
}

#[derive(Template, WebTemplate)]
#[template(path = "mfa_settings.html")]
struct SettingsPage {
    csrf: String,
    totp: bool,
    email: Option<String>,
    email_codes: bool,
}

/// `GET /mfa` with no login under way: what the account has, and the e-mail-codes switch.
pub async fn settings(s: &AppState, jar: CookieJar, caller: &crate::service::sessions::Caller) -> Result<Response, PageError> {
    let email = accounts::profile(&s.app, caller).await?.email;
    let email_codes = enrolment::email_codes_on(&s.app, caller).await?;
    let totp = enrolment::totp_on(&s.app, caller).await?;
    let (jar, csrf) = csrf_token(jar, s);
    Ok((jar, SettingsPage { csrf, totp, email, email_codes }).into_response())
}

#[derive(Template, WebTemplate)]
#[template(path = "email_codes.html")]
struct CodePage {
    csrf: String,
    email: String,
    turning_on: bool,
}

#[derive(Deserialize)]
struct EmailCodes {
    action: String,
    code: Option<String>,
}

/// Without a code: mails one and asks for it. With it: makes the change and goes back to /mfa.
async fn email_codes(
    State(s): State<AppState>,
    meta: ClientMeta,
    jar: CookieJar,
    WebUser(caller): WebUser,
    CsrfForm(f): CsrfForm<EmailCodes>,
) -> Result<Response, PageError> {
    let on = on_off("action", &f.action)?;
    let code = f.code.as_deref().filter(|c| !c.trim().is_empty());
    let done = if on {
        enrolment::enrol_email(&s.app, &caller, code, &meta).await?
    } else {
        enrolment::disable_email(&s.app, &caller, code, &meta).await?
    };
    if done {
        return Ok(Redirect::to("/mfa").into_response());
    }
    let email = accounts::profile(&s.app, &caller).await?.email.unwrap_or_default();
    let (jar, csrf) = csrf_token(jar, &s);
    Ok((jar, CodePage { csrf, email, turning_on: on }).into_response())
}
