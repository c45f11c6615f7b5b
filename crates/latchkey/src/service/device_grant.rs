//! RFC 8628: the new device asks and shows a user code; a signed-in user approves it.

use super::approvals::{self, Opening, Outcome, Request, RequesterFacts};
use super::audit::{Audit, AuditKind};
use super::device_policy::{self, About};
use super::sessions::Caller;
use super::{clients, limits};
use crate::domain::Scope;
use crate::domain::approval::Flow;
use crate::domain::codes::{self, USER_CODE_LEN};
use crate::domain::device::DeviceFacts;
use crate::domain::device_policy::{Stage, Subject};
use crate::service::{App, AppError, AppResult, ClientMeta};
use crate::store::{ApprovalRow, DecideBy, Decision};

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: String,
    pub expires_in: u64,
    pub interval: u64,
}

pub const USER_CODE_PURPOSE: &str = "user_code";

/// One generic answer for every wrong, expired or used code: nothing to learn from it.
pub fn generic_failure() -> AppError {
    AppError::BadRequest("That code is not valid. Check it on the device's screen and try again.".into())
}

pub async fn authorize(
    app: &App,
    client_id: &str,
    client_secret: Option<&str>,
    scope: Option<&str>,
    meta: &ClientMeta,
) -> AppResult<DeviceAuthorization> {
    let d = &app.settings.device;
    let client = clients::authenticate(app, client_id, client_secret).await?;
    let scope = Scope::parse(scope.unwrap_or(&app.settings.tokens.default_scope))?;
    if scope.is_empty() {
        return Err(AppError::InvalidScope("scope must not be empty".into()));
    }
    clients::check_scope(&client, &scope)?;
    limits::check(app, &format!("devauth:ip:{}", meta.ip), d.create_per_ip_per_minute, 60, meta).await?;
    limits::check(app, &format!("devauth:client:{}", client.id), d.create_per_client_per_minute, 60, meta).await?;
    let asking = Subject { client_id: &client.id, requester_ips: vec![&meta.ip], ..Default::default() };
    if device_policy::check(app, Stage::Request, &asking, About::default(), meta).await?.is_err() {
        // The device learns that it is refused, not which rule refused it (the audit log says).
        return Err(AppError::Forbidden("this server's device-grant policy does not allow this client here".into()));
    }
    let now = app.now();
    let kind = DeviceFacts::from_input(None, &meta.user_agent)?.kind;
    // A collision with a live code is astronomically rare; draw again rather than fail.
    for _ in 0..5 {
        let user_code = codes::generate(USER_CODE_LEN);
        // Time-ordered, so new requests append to the primary key's index.
        let id = uuid::Uuid::now_v7().to_string();
        let (device_code, secret_hash) = approvals::new_device_code(&id);
        let request = Request {
            flow: Flow::DeviceCode,
            id,
            secret_hash,
            client_id: &client.id,
            scope: scope.to_string(),
            ttl_secs: d.code_ttl_secs,
            poll_interval: d.interval_secs,
            kind,
            claimed_name: None,
        };
        let row =
            ApprovalRow { user_code_hmac: Some(codes::code_hmac(&app.code_key, USER_CODE_PURPOSE, &user_code)), ..request.row(meta, now) };
        match approvals::open(app, &row, Opening::Fresh, meta).await? {
            Outcome::Opened => {}
            Outcome::Collision | Outcome::NoSuchCode => continue,
        }
        metrics::counter!("latchkey_device_authorizations_total").increment(1);
        let shown = codes::display(&user_code);
        return Ok(DeviceAuthorization {
            device_code,
            verification_uri: format!("{}/device", app.issuer),
            verification_uri_complete: format!("{}/device?user_code={shown}", app.issuer),
            user_code: shown,
            expires_in: d.code_ttl_secs,
            interval: d.interval_secs,
        });
    }
    Err(anyhow::anyhow!("could not draw a unique user code").into())
}

/// Finds the pending request behind a typed user code, for the approver to look at. Wrong,
/// expired and used codes all get the same answer, and count against the approver.
pub async fn lookup(app: &App, caller: &Caller, raw_code: &str, meta: &ClientMeta) -> AppResult<(ApprovalRow, RequesterFacts)> {
    limits::check_code_failures(app, Some(&caller.user_id), meta).await?;
    let found = match codes::normalize(raw_code, USER_CODE_LEN) {
        Ok(code) => app.store.approval_by_user_code(&codes::code_hmac(&app.code_key, USER_CODE_PURPOSE, &code)).await?,
        Err(_) => None,
    };
    let now = app.now();
    match found {
        Some(a) if approvals::state(&a, now) == approvals::State::Pending && a.user_id.as_deref().is_none_or(|u| u == caller.user_id) => {
            let facts = approvals::facts(app, &a, Some(&meta.ip)).await?;
            Ok((a, facts))
        }
        _ => {
            limits::count_code_failure(app, Some(&caller.user_id), meta).await?;
            Audit::new(AuditKind::DeviceCodeWrong).user(&caller.user_id).device(&caller.device_id).meta(meta).record(app).await?;
            Err(generic_failure())
        }
    }
}

/// Approves or denies the request behind a user code, as the caller. One conditional write: a
/// code is bound once, whoever races for it. When the requester is on another network than the
/// approver, approving needs `in_front`: the approver says the device is in front of them (a
/// phished code is typed by someone far away).
pub async fn decide(
    app: &App,
    caller: &Caller,
    raw_code: &str,
    approve: bool,
    device_name: Option<&str>,
    in_front: bool,
    meta: &ClientMeta,
) -> AppResult<RequesterFacts> {
    let (a, facts) = lookup(app, caller, raw_code, meta).await?;
    if approve && facts.same_network == Some(false) && !in_front {
        return Err(AppError::BadRequest(format!(
            "in_front_of_me: the device asking is on another network ({}); approve only if you started this on a device in front of you, and say so",
            a.requester_ip
        )));
    }
    if approve {
        let user = app.store.user_by_id(&caller.user_id).await?.ok_or(AppError::Unauthorized)?;
        let approving = Subject {
            client_id: &a.client_id,
            requester_ips: vec![&a.requester_ip],
            account_email: Some(user.email.as_deref()),
            sign_in_age_secs: Some(app.now() - caller.auth_time),
        };
        let about = About { request: Some(&a.id), user_id: Some(&caller.user_id), device_id: Some(&caller.device_id) };
        if let Err(r) = device_policy::check(app, Stage::Approval, &approving, about, meta).await? {
            return Err(AppError::Forbidden(format!("This server's device-grant policy does not allow this approval: {}.", r.why)));
        }
    }
    let name = device_name.map(crate::domain::device::parse_name).transpose()?;
    let hmac = a.user_code_hmac.clone().unwrap_or_default();
    let decision = Decision {
        by: DecideBy::UserCode(&hmac),
        approve,
        user_id: &caller.user_id,
        device_id: &caller.device_id,
        requester_name: name.as_deref(),
        handoff: None,
        passkey_verified: false,
    };
    let reason = if approve { "approved" } else { "denied" };
    let decided = approvals::decide(app, caller, decision, reason, meta).await?.ok_or_else(generic_failure)?;
    approvals::facts(app, &decided, Some(&meta.ip)).await
}
