//! The one cross-device approval machine behind the device grant, pairing and QR login
//! (DESIGN.md, "the one idea in the middle"; the rules are `domain::approval`). A requester asks
//! (`open`); the server records what it observed of it; a signed-in device approves or denies
//! after seeing those facts (`decide`); the requester collects its own session exactly once
//! (`collect`, by poll or by handoff). Every step is one conditional write in the store, one
//! event for whoever waits, and one audit entry, the same for every flow. The flow files keep
//! only what differs: how the requester shows or types its code, and how it waits.

use super::audit::{Audit, AuditKind};
use super::clients;
use super::device_policy::{self, About};
use super::limits;
use super::sessions::PasskeyUse;
use super::sessions::{self, AuthorizedBy, Caller, NewSession, Opened};
use crate::clock::rfc3339;
use crate::domain::approval::{self, Flow};
use crate::domain::device::DeviceFacts;
use crate::domain::device_policy::{Stage, Subject};
use crate::domain::{secret, user_agent};
use crate::events::Event;
use crate::service::{App, AppError, AppResult, ClientMeta};
use crate::store::{ApprovalRow, CollectBy, Collected, Created, Decision, Redeemed, StoreError};

pub use crate::domain::approval::State;

pub const DEVICE_CODE_PREFIX: &str = "lk_dc_";

pub fn state(a: &ApprovalRow, now: i64) -> State {
    approval::state(a.status, a.expires_at, now)
}

/// How each flow names its steps in the audit trail.
struct Kinds {
    opened: AuditKind,
    approved: AuditKind,
    denied: AuditKind,
    collected: AuditKind,
    /// What the new device's owner reads in the collection's entry.
    message: &'static str,
    authorized_by: AuthorizedBy,
    amr: &'static [&'static str],
}

fn kinds(flow: Flow) -> Kinds {
    match flow {
        Flow::DeviceCode => Kinds {
            opened: AuditKind::DeviceCodeIssued,
            approved: AuditKind::DeviceCodeApproved,
            denied: AuditKind::DeviceCodeDenied,
            collected: AuditKind::DeviceCodeCollected,
            message: "new device by device code",
            authorized_by: AuthorizedBy::DeviceCode,
            amr: &["device_code"],
        },
        Flow::Pairing => Kinds {
            opened: AuditKind::PairingCodeRedeemed,
            approved: AuditKind::PairingApproved,
            denied: AuditKind::PairingDenied,
            collected: AuditKind::PairingCollected,
            message: "new device by pairing code",
            authorized_by: AuthorizedBy::Pairing,
            amr: &["pairing"],
        },
        Flow::Qr => Kinds {
            opened: AuditKind::QrCreated,
            approved: AuditKind::QrApproved,
            denied: AuditKind::QrDenied,
            collected: AuditKind::QrSignIn,
            message: "new sign-in by QR",
            authorized_by: AuthorizedBy::Qr,
            // The phone that approved is itself signed in, with its own factors.
            amr: &["qr", "mfa"],
        },
    }
}

/// What the server itself observed of the requester, for the approver to judge by.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct RequesterFacts {
    pub client_id: String,
    pub client_name: String,
    pub scope: String,
    pub ip: String,
    pub os: String,
    pub browser: String,
    pub requested_at: String,
    pub seconds_ago: i64,
    pub expires_in: i64,
    /// What the new device calls itself: its own claim, not an observation.
    pub claimed_name: Option<String>,
    pub state: State,
    /// Whether the requester and the approver look like one network (IPv4 /24, IPv6 /64); absent
    /// where the approver's address is not part of the view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_network: Option<bool>,
}

/// What the approver is shown; `approver_ip` (the address the approver's request came from) adds
/// the same-network indication.
pub async fn facts(app: &App, a: &ApprovalRow, approver_ip: Option<&str>) -> AppResult<RequesterFacts> {
    let now = app.now();
    let client_name = clients::lookup(app, &a.client_id).await?.map(|c| c.name).unwrap_or_else(|| a.client_id.clone());
    let ua = user_agent::parse(&a.requester_ua);
    Ok(RequesterFacts {
        client_id: a.client_id.clone(),
        client_name,
        scope: a.scope.clone(),
        ip: a.requester_ip.clone(),
        os: ua.os,
        browser: ua.browser,
        requested_at: rfc3339(a.created_at),
        seconds_ago: (now - a.created_at).max(0),
        expires_in: (a.expires_at - now).max(0),
        claimed_name: a.requester_name.clone(),
        state: state(a, now),
        same_network: approver_ip.map(|ip| approval::same_network(&a.requester_ip, ip)),
    })
}

/// A new device_code for the request `id`: the id and 256 random bits; only its SHA-256 is
/// stored, and the store finds the request by the id (see `secret::new_located_token`).
pub fn new_device_code(id: &str) -> (String, Vec<u8>) {
    let code = secret::new_located_token(DEVICE_CODE_PREFIX, id);
    let hash = secret::token_hash(&code);
    (code, hash)
}

/// What every flow records of a new request the same way: the requester as the server saw it.
pub struct Request<'a> {
    pub flow: Flow,
    pub id: String,
    /// The hash of the requester's own secret (its device_code, or the browser's secret).
    pub secret_hash: Vec<u8>,
    pub client_id: &'a str,
    pub scope: String,
    pub ttl_secs: u64,
    /// How often the requester may look (polls; 1 for a socket).
    pub poll_interval: u64,
    pub kind: user_agent::DeviceKind,
    /// What the requester calls itself, if it said.
    pub claimed_name: Option<String>,
}

impl Request<'_> {
    /// The pending row; a flow adds what only it has (a user code, a match number).
    pub fn row(self, meta: &ClientMeta, now: i64) -> ApprovalRow {
        ApprovalRow {
            id: self.id,
            flow: self.flow,
            device_code_hash: self.secret_hash,
            client_id: self.client_id.to_owned(),
            scope: self.scope,
            status: approval::Status::Pending,
            created_at: now,
            expires_at: now + self.ttl_secs as i64,
            requester_ip: meta.ip.clone(),
            requester_ua: meta.user_agent.clone(),
            requester_name: self.claimed_name,
            requester_kind: Some(self.kind.as_str().into()),
            poll_interval: self.poll_interval as i64,
            ..Default::default()
        }
    }
}

/// Where a new request comes from.
pub enum Opening<'a> {
    /// The requester asks on its own (device authorization, QR login).
    Fresh,
    /// The requester typed a pairing code: consuming it opens the request, bound to the code's
    /// user and issuing device, in one write.
    PairingCode(&'a [u8]),
}

/// What opening came to, short of an error.
pub enum Outcome {
    Opened,
    /// The id or user code is taken by a live request: draw again.
    Collision,
    /// No live pairing code matched.
    NoSuchCode,
}

/// Opens a pending request, under the server-wide cap and the per-IP cap, with its audit entry
/// in the same write. Every flow comes through here.
pub async fn open(app: &App, row: &ApprovalRow, via: Opening<'_>, meta: &ClientMeta) -> AppResult<Outcome> {
    let now = row.created_at;
    let cap = app.settings.device.pending_per_ip;
    let _admitted = limits::admit_pending(app, now).await?;
    let audit = Audit::new(kinds(row.flow).opened)
        .meta(meta)
        .detail(serde_json::json!({
            "request": row.id, "flow": row.flow.as_str(), "client_id": row.client_id, "claimed_name": row.requester_name,
        }))
        .row(app);
    let opened = match via {
        Opening::Fresh => match app.store.create_approval(row, cap, now, Some(&audit)).await {
            Ok(Created::Yes) => Outcome::Opened,
            Ok(Created::CapReached) => return Err(limits::pending_cap_reached()),
            Err(StoreError::Conflict) => Outcome::Collision,
            Err(e) => return Err(e.into()),
        },
        Opening::PairingCode(code_hmac) => match app.store.redeem_pairing_code(code_hmac, row, cap, now, &audit).await? {
            Redeemed::Opened(_) => Outcome::Opened,
            Redeemed::CapReached => return Err(limits::pending_cap_reached()),
            Redeemed::NoSuchCode => Outcome::NoSuchCode,
        },
    };
    if let Outcome::Opened = opened {
        metrics::counter!("latchkey_approvals_opened_total", "flow" => row.flow.as_str()).increment(1);
        // A pairing request is bound at once to the code's device, which is waiting to see it.
        if row.flow == Flow::Pairing {
            app.events.publish(Event::ApprovalChanged { approval_id: row.id.clone() });
        }
    }
    Ok(opened)
}

/// Approves or denies a live pending request as the caller: one conditional write (whoever
/// races for it, it is decided once), then its event and audit entry. `None`: there was no
/// such live pending request for this caller to decide. `reason` goes into the audit entry.
pub async fn decide(
    app: &App,
    caller: &Caller,
    mut decision: Decision<'_>,
    reason: &str,
    meta: &ClientMeta,
) -> AppResult<Option<ApprovalRow>> {
    // An approval may need a fresh passkey assertion (step-up); a denial never does.
    if decision.approve {
        decision.passkey_verified = super::passkeys::approval_step_up(app, caller, meta).await?;
    }
    let Some(a) = app.store.decide_approval(&decision, app.now()).await? else { return Ok(None) };
    app.events.publish(Event::ApprovalChanged { approval_id: a.id.clone() });
    let k = kinds(a.flow);
    Audit::new(if decision.approve { k.approved } else { k.denied })
        .user(&caller.user_id)
        .device(&caller.device_id)
        .meta(meta)
        .detail(serde_json::json!({
            "request": a.id, "flow": a.flow.as_str(), "client_id": a.client_id, "requester_ip": a.requester_ip, "reason": reason,
            "passkey_verified": a.passkey_verified,
        }))
        .record(app)
        .await?;
    Ok(Some(a))
}

/// The server denies a pending request itself (a requester abusing the poll interval).
pub async fn deny_for_abuse(app: &App, a: &ApprovalRow, reason: &str, meta: &ClientMeta) -> AppResult<()> {
    // Concurrent abusive polls all see it pending; only the one that ends it tells anyone.
    if !app.store.deny_for_abuse(&a.id, app.now()).await? {
        return Ok(());
    }
    app.events.publish(Event::ApprovalChanged { approval_id: a.id.clone() });
    Audit::new(kinds(a.flow).denied)
        .meta(meta)
        .detail(serde_json::json!({ "request": a.id, "flow": a.flow.as_str(), "reason": reason, "slow_downs": a.slow_downs }))
        .record(app)
        .await?;
    Ok(())
}

/// The requester's new device, as it is collected.
pub struct Collector<'a> {
    pub how: CollectBy<'a>,
    pub device: DeviceFacts,
    pub client_id: &'a str,
    /// A browser session (cookie) rather than an API session (refresh token).
    pub web: bool,
}

/// The new device's facts from what the server saw when the request was opened (a poll comes
/// from the same device, with the same User-Agent): its kind, and the name it gave.
pub fn requester_device(a: &ApprovalRow) -> AppResult<DeviceFacts> {
    let mut device = DeviceFacts::from_input(None, &a.requester_ua)?;
    if let Some(name) = &a.requester_name {
        device.name = name.clone();
    }
    if let Some(kind) = a.requester_kind.as_deref().and_then(user_agent::DeviceKind::parse) {
        device.kind = kind;
    }
    Ok(device)
}

/// Collects an approved request: the new device's session is created with the one conditional
/// write that marks the request collected, so it happens at most once. A replayed handoff
/// (right secret and code, already used) ends the session the first use minted.
pub async fn collect(app: &App, a: &ApprovalRow, c: Collector<'_>, meta: &ClientMeta) -> AppResult<Opened> {
    let invalid = || AppError::InvalidGrant("the code is invalid, expired or already used".into());
    let (Some(user_id), Some(approver)) = (&a.user_id, &a.approver_device_id) else { return Err(invalid()) };
    let k = kinds(a.flow);
    let built = sessions::build(
        app,
        NewSession {
            user_id,
            client_id: c.client_id,
            scope: a.scope.clone(),
            amr: k.amr.iter().map(|a| (*a).to_owned()).collect(),
            device: c.device,
            authorized_by: k.authorized_by,
            approved_by_device: Some(approver.clone()),
            web: c.web,
            existing_device: None,
            passkey: PasskeyUse { session_passkey: None, approval_verified: a.passkey_verified },
        },
        meta,
    );
    let now = app.now();
    let refresh = built.refresh.as_ref().map(|(_, r)| r);
    match app.store.collect_approval(&c.how, &built.device, &built.session, refresh, now).await? {
        Collected::Yes => {}
        Collected::Replayed { session_id } => {
            // Someone else holds the code and the secret: end the session it minted.
            app.store.revoke_session(&session_id, "handoff_replayed", now).await?;
            Audit::new(AuditKind::HandoffReplayed)
                .user(user_id)
                .meta(meta)
                .detail(serde_json::json!({ "request": a.id, "flow": a.flow.as_str(), "session_id": session_id }))
                .record(app)
                .await?;
            return Err(invalid());
        }
        Collected::No => return Err(invalid()),
    }
    app.events.publish(Event::ApprovalChanged { approval_id: a.id.clone() });
    let opened = sessions::finish(app, built, meta).await?;
    Audit::new(k.collected)
        .user(user_id)
        .device(&opened.device.id)
        .meta(meta)
        .detail(serde_json::json!({
            "request": a.id, "flow": a.flow.as_str(), "message": k.message, "approved_by_device": approver, "client_id": c.client_id,
            "passkey_verified": a.passkey_verified,
        }))
        .record(app)
        .await?;
    Ok(opened)
}

/// Ends every request that a revoked device approved or holds (scanned, or bound to its pairing
/// code) and its live pairing codes: nothing it let in can still be collected. Wakes whoever
/// waits on those requests, on every instance.
pub async fn end_for_device(app: &App, user_id: &str, device_id: &str) -> AppResult<()> {
    app.store.end_approvals_of_device(user_id, device_id, app.now()).await?;
    app.events.publish(Event::DeviceRevoked { user_id: user_id.to_owned(), device_id: device_id.to_owned() });
    Ok(())
}

/// The device-grant policy again as an approved request is collected: an operator who tightened
/// it since the approval (or a device now polling from elsewhere) stops the tokens. A refused
/// request is ended, so the device is told once and for all.
async fn collection_allowed(app: &App, a: &ApprovalRow, meta: &ClientMeta) -> AppResult<()> {
    let Some(user_id) = &a.user_id else { return Ok(()) };
    let email = app.store.user_by_id(user_id).await?.and_then(|u| u.email);
    let collecting = Subject {
        client_id: &a.client_id,
        requester_ips: vec![&a.requester_ip, &meta.ip],
        account_email: Some(email.as_deref()),
        sign_in_age_secs: None,
    };
    let about = About { request: Some(&a.id), user_id: Some(user_id), device_id: a.approver_device_id.as_deref() };
    if device_policy::check(app, Stage::Collection, &collecting, about, meta).await?.is_ok() {
        return Ok(());
    }
    if app.store.end_approval(&a.id, app.now()).await? {
        app.events.publish(Event::ApprovalChanged { approval_id: a.id.clone() });
    }
    Err(AppError::DeviceGrant("access_denied"))
}

/// The token endpoint's device-code grant, for the device grant and pairing alike: one poll by
/// the requester, which collects its session once the request is approved.
pub async fn poll(
    app: &App,
    device_code: &str,
    client_id: &str,
    client_secret: Option<&str>,
    meta: &ClientMeta,
) -> AppResult<sessions::TokenResponse> {
    let client = clients::authenticate(app, client_id, client_secret).await?;
    limits::check(app, &format!("token:ip:{}", meta.ip), app.settings.limits.token_per_ip_per_minute, 60, meta).await?;
    let invalid = || AppError::InvalidGrant("the device code is invalid, expired or already used".into());
    let id = secret::located_token_id(device_code, DEVICE_CODE_PREFIX).ok_or_else(invalid)?;
    let now = app.now();
    let a = app.store.poll_approval(id, &secret::token_hash(device_code), &client.id, now).await?.ok_or_else(invalid)?;
    match state(&a, now) {
        State::Collected => return Err(invalid()),
        State::Expired => return Err(AppError::DeviceGrant("expired_token")),
        State::Denied => return Err(AppError::DeviceGrant("access_denied")),
        State::Pending | State::Approved => {}
    }
    if a.poll_early != 0 {
        if a.slow_downs > app.settings.device.max_slow_downs {
            deny_for_abuse(app, &a, "polling too fast", meta).await?;
            return Err(AppError::DeviceGrant("access_denied"));
        }
        return Err(AppError::DeviceGrant("slow_down"));
    }
    if state(&a, now) == State::Pending {
        return Err(AppError::DeviceGrant("authorization_pending"));
    }
    if a.flow == Flow::DeviceCode {
        collection_allowed(app, &a, meta).await?;
    }
    let collector = Collector { how: CollectBy::Id(&a.id), device: requester_device(&a)?, client_id: &a.client_id, web: false };
    let opened = collect(app, &a, collector, meta).await.map_err(|e| match e {
        AppError::InvalidGrant(_) => invalid(),
        other => other,
    })?;
    opened.tokens.ok_or_else(|| anyhow::anyhow!("API session without tokens").into())
}
