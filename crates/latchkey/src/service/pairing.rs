//! Pairing codes (seed 000): a signed-in device shows a one-time code; the new device types it;
//! the issuing device sees who joined and allows or denies it. Built on the approval machine.

use super::approvals::{self, Opening, Outcome, Request, RequesterFacts, State};
use super::audit::{Audit, AuditKind};
use super::clients::{self, CLI_CLIENT};
use super::limits;
use super::sessions::Caller;
use crate::domain::Scope;
use crate::domain::approval::Flow;
use crate::domain::codes::{self, PAIRING_CODE_LEN};
use crate::domain::device::{DeviceFacts, DeviceInput};
use crate::service::{App, AppError, AppResult, ClientMeta};
use crate::store::{DecideBy, Decision, PairingCodeRow};

pub const PAIRING_PURPOSE: &str = "pairing_code";

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PairingCode {
    pub id: String,
    /// Shown in two groups, e.g. `BCDFG-HJKLM`; typed with or without the dash, any case.
    pub code: String,
    pub expires_in: u64,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Redeemed {
    pub device_code: String,
    pub interval: u64,
    pub expires_in: u64,
}

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PairingStatus {
    pub id: String,
    /// `waiting` for someone to type the code, then the state of the request it started.
    pub state: String,
    pub expires_in: i64,
    /// Who joined: the server's observations, and apart from them the name the device gave.
    pub requester: Option<RequesterFacts>,
}

fn generic_failure() -> AppError {
    AppError::BadRequest("That pairing code is not valid. Ask for a new code on your signed-in device.".into())
}

pub async fn create(app: &App, caller: &Caller, scope: Option<&str>, meta: &ClientMeta) -> AppResult<PairingCode> {
    let granted = Scope::parse(&caller.scope)?;
    let scope = match scope {
        Some(s) => Scope::parse(s)?,
        None => granted.clone(),
    };
    if scope.is_empty() || !scope.is_subset_of(&granted) {
        return Err(AppError::InvalidScope("a pairing code can grant at most the scope of the device issuing it".into()));
    }
    // Each code is a row until it is swept: a device may not mint them without end.
    limits::check(app, &format!("pairing:device:{}", caller.device_id), 20, 3600, meta).await?;
    let now = app.now();
    let ttl = app.settings.device.pairing_ttl_secs;
    for _ in 0..5 {
        let code = codes::generate(PAIRING_CODE_LEN);
        let row = PairingCodeRow {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: caller.user_id.clone(),
            issuer_device_id: caller.device_id.clone(),
            code_hmac: codes::code_hmac(&app.code_key, PAIRING_PURPOSE, &code),
            scope: scope.to_string(),
            created_at: now,
            expires_at: now + ttl as i64,
            redeemed_at: None,
            approval_id: None,
        };
        match app.store.create_pairing_code(&row, now).await {
            Ok(()) => {}
            Err(crate::store::StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
        Audit::new(AuditKind::PairingCodeIssued)
            .user(&caller.user_id)
            .device(&caller.device_id)
            .meta(meta)
            .detail(serde_json::json!({ "pairing": row.id }))
            .record(app)
            .await?;
        return Ok(PairingCode { id: row.id, code: codes::display(&code), expires_in: ttl });
    }
    Err(anyhow::anyhow!("could not draw a unique pairing code").into())
}

/// The new device types the code. The first valid redemption consumes it and starts a pending
/// request; the device then polls the token endpoint with the device_code it gets.
pub async fn redeem(
    app: &App,
    raw_code: &str,
    device: Option<&DeviceInput>,
    client_id: Option<&str>,
    meta: &ClientMeta,
) -> AppResult<Redeemed> {
    limits::check_code_failures(app, None, meta).await?;
    let client_id = client_id.unwrap_or(CLI_CLIENT);
    let client = clients::authenticate(app, client_id, None).await?;
    let facts = DeviceFacts::from_input(device, &meta.user_agent)?;
    let d = &app.settings.device;
    let id = uuid::Uuid::now_v7().to_string();
    let (device_code, secret_hash) = approvals::new_device_code(&id);
    let request = Request {
        flow: Flow::Pairing,
        id,
        secret_hash,
        client_id: &client.id,
        // The code supplies the scope, the user and the approving device.
        scope: String::new(),
        ttl_secs: d.pairing_ttl_secs,
        poll_interval: d.interval_secs,
        kind: facts.kind,
        claimed_name: device.and_then(|d| d.name.as_ref()).map(|_| facts.name.clone()),
    };
    let row = request.row(meta, app.now());
    let opened = match codes::normalize(raw_code, PAIRING_CODE_LEN) {
        Ok(code) => {
            approvals::open(app, &row, Opening::PairingCode(&codes::code_hmac(&app.code_key, PAIRING_PURPOSE, &code)), meta).await?
        }
        Err(_) => Outcome::NoSuchCode,
    };
    match opened {
        Outcome::Opened => Ok(Redeemed { device_code, interval: d.interval_secs, expires_in: d.pairing_ttl_secs }),
        Outcome::Collision | Outcome::NoSuchCode => {
            limits::count_code_failure(app, None, meta).await?;
            Audit::new(AuditKind::PairingCodeWrong).meta(meta).record(app).await?;
            Err(generic_failure())
        }
    }
}

async fn own_code(app: &App, caller: &Caller, id: &str) -> AppResult<PairingCodeRow> {
    match app.store.pairing_code(id).await? {
        Some(c) if c.user_id == caller.user_id && c.issuer_device_id == caller.device_id => Ok(c),
        _ => Err(AppError::NotFound),
    }
}

pub async fn status(app: &App, caller: &Caller, id: &str) -> AppResult<PairingStatus> {
    let code = own_code(app, caller, id).await?;
    let now = app.now();
    let approval = match &code.approval_id {
        Some(a) => app.store.approval(a).await?,
        None => None,
    };
    let (state, requester, expires_at) = match approval {
        Some(a) => {
            let facts = approvals::facts(app, &a, None).await?;
            (facts.state.as_str().to_owned(), Some(facts), a.expires_at)
        }
        None if now >= code.expires_at => ("expired".to_owned(), None, code.expires_at),
        None => ("waiting".to_owned(), None, code.expires_at),
    };
    Ok(PairingStatus { id: code.id, state, expires_in: (expires_at - now).max(0), requester })
}

/// The issuing device allows or denies the device that typed its code.
pub async fn decide(app: &App, caller: &Caller, id: &str, approve: bool, meta: &ClientMeta) -> AppResult<PairingStatus> {
    let code = own_code(app, caller, id).await?;
    let approval_id = code.approval_id.ok_or_else(|| AppError::Conflict("nobody has used this code yet".into()))?;
    let decision = Decision {
        by: DecideBy::Pairing { approval_id: &approval_id },
        approve,
        user_id: &caller.user_id,
        device_id: &caller.device_id,
        requester_name: None,
        handoff: None,
        passkey_verified: false,
    };
    let reason = if approve { "approved" } else { "denied" };
    let Some(_) = approvals::decide(app, caller, decision, reason, meta).await? else {
        let current = app.store.approval(&approval_id).await?;
        let what = current.map(|a| approvals::state(&a, app.now())).unwrap_or(State::Expired);
        return Err(AppError::Conflict(format!("this request can no longer be decided: it is {}", what.as_str())));
    };
    status(app, caller, id).await
}
