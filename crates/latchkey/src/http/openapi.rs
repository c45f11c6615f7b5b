//! The OpenAPI document, generated from the handlers' annotations, and the two routes that
//! serve it: `/api/openapi.json` and the offline docs page `/docs`.

use super::AppState;
use askama::Template;
use askama_web::WebTemplate;
use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

pub fn router() -> Router<AppState> {
    Router::new().route("/api/openapi.json", get(openapi)).route("/docs", get(docs))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Latchkey", description = "Device authorization and passwordless login server."),
    paths(
        super::api::register, super::api::login, super::api::logout, super::api::logout_everywhere, super::api::me,
        super::api::list_devices, super::api::revoke_device, super::api::audit,
        super::qr_api::create, super::qr_api::status, super::qr_api::scan, super::qr_api::approve, super::qr_api::deny, super::qr_api::handoff,
        super::mfa_api::verify, super::mfa_api::send_email_code, super::mfa_api::start_totp, super::mfa_api::confirm_totp, super::mfa_api::disable_totp,
        super::mfa_api::enrol_email, super::mfa_api::disable_email, super::mfa_api::forget_all_devices, super::mfa_api::forget_device, super::mfa_api::change_password, super::mfa_api::add_email,
        super::device_grant_api::approve_user_code, super::device_grant_api::deny_user_code, super::pairing_api::create_pairing_code,
        super::pairing_api::redeem_pairing_code, super::pairing_api::pairing_status, super::pairing_api::approve_pairing, super::pairing_api::deny_pairing,
        super::api::list_apps, super::api::revoke_app, super::api::list_identities, super::api::unlink_identity,
        super::upstream_pages::start, super::upstream_pages::callback,
        super::passkeys_api::register_start, super::passkeys_api::register_finish, super::passkeys_api::list, super::passkeys_api::rename,
        super::passkeys_api::remove, super::passkeys_api::login_start, super::passkeys_api::login_finish, super::passkeys_api::step_up_start,
        super::passkeys_api::step_up_finish, super::passkeys_api::step_up_rule, super::passkeys_api::set_step_up_rule,
        super::alert_pages::mail_choice, super::alert_pages::set_mail_choice,
        super::email_link_pages::resend, super::email_link_pages::confirm_verification, super::email_link_pages::request_reset,
        super::email_link_pages::confirm_reset,
        super::oauth::device_authorization, super::oauth::token, super::oauth::revoke, super::oauth::introspect, super::oauth::metadata, super::oauth::jwks,
        super::authorize_pages::authorize_get, super::authorize_pages::authorize_post, super::authorize_pages::consent_decision,
        super::authorize_pages::end_session_get, super::authorize_pages::end_session_post, super::authorize_pages::end_session_confirm,
        super::oauth::userinfo, super::oauth::userinfo_post, super::oauth::openid_configuration,
        super::ops::healthz, super::ops::readyz,
    ),
    modifiers(&BearerAuth),
    tags((name = "accounts"), (name = "sessions"), (name = "devices"), (name = "device authorization"), (name = "second factors"), (name = "qr login"), (name = "audit"), (name = "apps"), (name = "identities"), (name = "passkeys"), (name = "oauth"), (name = "oidc"), (name = "operations"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}

pub fn spec() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], spec().to_pretty_json().unwrap_or_default()).into_response()
}

struct DocOp {
    method: String,
    path: String,
    summary: String,
    auth: bool,
}

#[derive(Template, WebTemplate)]
#[template(path = "docs.html")]
struct DocsPage {
    ops: Vec<DocOp>,
}

/// A docs page rendered on the server from the OpenAPI document: no CDN, works offline.
async fn docs() -> DocsPage {
    let spec = spec();
    let mut ops = Vec::new();
    for (path, item) in &spec.paths.paths {
        let methods = [("GET", &item.get), ("POST", &item.post), ("DELETE", &item.delete), ("PUT", &item.put), ("PATCH", &item.patch)];
        for (m, op) in methods {
            if let Some(op) = op {
                let summary = op.summary.clone().or_else(|| op.description.clone()).unwrap_or_default();
                ops.push(DocOp {
                    method: m.into(),
                    path: path.clone(),
                    summary,
                    auth: op.security.as_ref().is_some_and(|s| !s.is_empty()),
                });
            }
        }
    }
    DocsPage { ops }
}
