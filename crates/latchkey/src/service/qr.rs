//! QR login (seed 001, SECURITY.md ): the browser shows a QR of a public id and keeps
//! a secret; a signed-in phone scans it (and locks it), checks the two-digit number, and
//! approves; the browser collects its session with a single-use handoff code (seed 003).
//! It is the same approval state machine as the device grant, with flow `qr`.

use super::approvals::{self, Collector, Opening, Outcome, Request, State};
use super::clients::{CLI_CLIENT, WEB_CLIENT};
use super::limits;
use super::sessions::{Caller, Opened};
use crate::domain::approval::Flow;
use crate::domain::device::DeviceFacts;
use crate::domain::{secret, user_agent};
use crate::events::{Event, Watch};
use crate::service::{App, AppError, AppResult, ClientMeta};
use crate::store::{ApprovalRow, CollectBy, DecideBy, Decision};

pub const SECRET_PREFIX: &str = "lk_qs_";
pub const HANDOFF_PREFIX: &str = "lk_ho_";

#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct QrLogin {
    /// Public: it is what the QR carries.
    pub id: String,
    /// Private to this browser: never in the QR. Needed to hear the result and to collect it.
    pub secret: String,
    /// What the QR encodes: `<base>/q/<id>`.
    pub url: String,
    pub qr_svg: String,
    /// Two digits the browser shows; the phone must pick them out of three.
    pub match_code: String,
    pub expires_in: u64,
}

fn random_match_code() -> String {
    loop {
        let b = secret::random_bytes::<1>()[0];
        // 90 values, 10..=99; 180 = 2 × 90, so bytes below it are unbiased.
        if b < 180 {
            return format!("{}", 10 + b % 90);
        }
    }
}

pub async fn create(app: &App, meta: &ClientMeta) -> AppResult<QrLogin> {
    let q = &app.settings.qr;
    limits::check(app, &format!("qr:ip:{}", meta.ip), q.create_per_ip_per_minute, 60, meta).await?;
    let now = app.now();
    let id = secret::b64url(&secret::random_bytes::<16>());
    let browser_secret = secret::new_located_token(SECRET_PREFIX, &id);
    let match_code = random_match_code();
    let request = Request {
        flow: Flow::Qr,
        id: id.clone(),
        secret_hash: secret::token_hash(&browser_secret),
        client_id: WEB_CLIENT,
        scope: app.settings.tokens.default_scope.clone(),
        ttl_secs: q.ttl_secs,
        // The browser waits on a socket; it does not poll.
        poll_interval: 1,
        kind: user_agent::parse(&meta.user_agent).kind,
        claimed_name: None,
    };
    let row = ApprovalRow { match_code: Some(match_code.clone()), ..request.row(meta, now) };
    match approvals::open(app, &row, Opening::Fresh, meta).await? {
        Outcome::Opened => {}
        // 128 random bits of id: a collision means a broken random source, not bad luck.
        Outcome::Collision | Outcome::NoSuchCode => return Err(anyhow::anyhow!("QR login id collision").into()),
    }
    metrics::counter!("latchkey_qr_logins_total").increment(1);
    let url = format!("{}/q/{id}", app.issuer);
    Ok(QrLogin { qr_svg: crate::domain::qr_image::svg(&url)?, url, id, secret: browser_secret, match_code, expires_in: q.ttl_secs })
}

/// What the browser is told. `handoff_code` only with `approved`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct BrowserState {
    /// `waiting`, `scanned`, `approved`, `denied` or `expired`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handoff_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_in: Option<i64>,
}

impl BrowserState {
    pub fn is_final(&self) -> bool {
        matches!(self.kind, "approved" | "denied" | "expired")
    }
}

/// The handoff code is derived with a server key from the login and its secret's hash, so the
/// store keeps only the code's hash, and whichever instance holds the browser's socket can
/// hand it over. Exchanging it needs the browser's secret too.
fn handoff_code(app: &App, id: &str, secret_hash: &[u8]) -> String {
    let mac = secret::hmac(&app.code_key, &[b"latchkey qr handoff v1", id.as_bytes(), secret_hash]);
    format!("{HANDOFF_PREFIX}{}", secret::b64url(&mac))
}

/// The login, if `browser_secret` is its secret. Anything else is "not found": without the
/// secret nothing about the login is ever told.
pub async fn own(app: &App, id: &str, browser_secret: &str) -> AppResult<ApprovalRow> {
    if secret::located_token_id(browser_secret, SECRET_PREFIX) != Some(id) {
        return Err(AppError::NotFound);
    }
    let a = app.store.approval(id).await?.filter(|a| a.flow == crate::domain::approval::Flow::Qr).ok_or(AppError::NotFound)?;
    if !secret::ct_eq(&a.device_code_hash, &secret::token_hash(browser_secret)) {
        return Err(AppError::NotFound);
    }
    Ok(a)
}

/// Registers the browser's socket for the changes of its login: call it before reading the
/// state, so that no change between the two is missed.
pub fn watch(app: &App, id: &str) -> Watch {
    app.events.watch_approval(id)
}

/// What the browser's socket shows now. Once a phone has scanned the login, the watch also
/// wakes when that phone is revoked (which ends the login).
pub async fn current(app: &App, id: &str, watch: &Watch) -> AppResult<BrowserState> {
    let a = app.store.approval(id).await?.ok_or(AppError::NotFound)?;
    if let Some(phone) = &a.approver_device_id {
        watch.device(phone);
    }
    browser_state(app, &a).await
}

pub async fn browser_state(app: &App, a: &ApprovalRow) -> AppResult<BrowserState> {
    let now = app.now();
    let mut st = BrowserState { kind: "waiting", device: None, handoff_code: None, expires_in: Some((a.expires_at - now).max(0)) };
    match approvals::state(a, now) {
        State::Denied => st.kind = "denied",
        State::Expired | State::Collected => st.kind = "expired",
        State::Approved => {
            st.kind = "approved";
            st.handoff_code = Some(handoff_code(app, &a.id, &a.device_code_hash));
        }
        State::Pending if a.scanned_at.is_some() => {
            st.kind = "scanned";
            st.device = match &a.approver_device_id {
                Some(d) => app.store.device(a.user_id.as_deref().unwrap_or_default(), d).await?.map(|x| x.name),
                None => None,
            };
        }
        State::Pending => {}
    }
    if st.is_final() {
        st.expires_in = None;
    }
    Ok(st)
}

/// What the phone sees after scanning: the requester as the server saw it, as on every
/// approval screen, and what only a QR login has.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct PhoneView {
    pub id: String,
    #[serde(flatten)]
    pub requester: approvals::RequesterFacts,
    /// Whether the browser and this phone appear to share a network (same IPv4 /24 or IPv6 /64).
    pub same_network: bool,
    /// Three numbers; one is what the browser shows.
    pub match_choices: Vec<String>,
}

pub use crate::domain::approval::same_network;

/// Three distinct numbers including the right one, in an order derived from the login (stable
/// across reloads, so looking twice does not reveal which one stays).
fn choices(app: &App, a: &ApprovalRow) -> Vec<String> {
    let right: u32 = a.match_code.as_deref().and_then(|m| m.parse().ok()).unwrap_or(10);
    let seed = secret::hmac(&app.code_key, &[b"qr match choices", a.id.as_bytes()]);
    let mut nums = vec![right];
    let mut i = 0;
    while nums.len() < 3 {
        let n = 10 + (u32::from(seed[i % 32]) * 7 + i as u32) % 90;
        if !nums.contains(&n) {
            nums.push(n);
        }
        i += 1;
    }
    let rot = seed[31] as usize % 3;
    nums.rotate_left(rot);
    nums.into_iter().map(|n| n.to_string()).collect()
}

fn not_found() -> AppError {
    AppError::NotFound
}

/// The phone opens the QR's URL: the first signed-in device to do so locks the login.
pub async fn scan(app: &App, caller: &Caller, id: &str, meta: &ClientMeta) -> AppResult<PhoneView> {
    let now = app.now();
    let a = app.store.scan_qr(id, &caller.user_id, &caller.device_id, now).await?.ok_or_else(not_found)?;
    if a.scanned_at == Some(now) {
        app.events.publish(Event::ApprovalChanged { approval_id: a.id.clone() });
    }
    Ok(PhoneView {
        id: a.id.clone(),
        same_network: same_network(&a.requester_ip, &meta.ip),
        match_choices: choices(app, &a),
        requester: approvals::facts(app, &a, None).await?,
    })
}

/// Approve with the number the browser shows, or deny. A wrong number denies and ends it.
pub async fn decide(app: &App, caller: &Caller, id: &str, approve: bool, match_code: Option<&str>, meta: &ClientMeta) -> AppResult<()> {
    let now = app.now();
    let a = app.store.approval(id).await?.filter(|a| a.flow == crate::domain::approval::Flow::Qr).ok_or_else(not_found)?;
    let right = approve && a.match_code.as_deref().zip(match_code).is_some_and(|(m, g)| secret::ct_eq(m.as_bytes(), g.trim().as_bytes()));
    let decision = Decision {
        by: DecideBy::Qr { approval_id: id },
        approve: right,
        user_id: &caller.user_id,
        device_id: &caller.device_id,
        requester_name: None,
        handoff: right.then(|| {
            let code = handoff_code(app, &a.id, &a.device_code_hash);
            (secret::token_hash(&code), (now + app.settings.qr.handoff_ttl_secs as i64).min(a.expires_at))
        }),
        passkey_verified: false,
    };
    let reason = if approve && !right {
        "wrong number"
    } else if right {
        "approved"
    } else {
        "denied"
    };
    approvals::decide(app, caller, decision, reason, meta).await?.ok_or_else(not_found)?;
    if approve && !right {
        return Err(AppError::BadRequest("That is not the number the browser shows. The sign-in was denied.".into()));
    }
    Ok(())
}

/// The browser exchanges its handoff code (with its secret) for its own session.
pub async fn handoff(app: &App, code: &str, browser_secret: &str, web: bool, meta: &ClientMeta) -> AppResult<Opened> {
    let invalid = || AppError::InvalidGrant("the handoff code is invalid, expired or already used".into());
    secret::token_bytes(code, HANDOFF_PREFIX).ok_or_else(invalid)?;
    let id = secret::located_token_id(browser_secret, SECRET_PREFIX).ok_or_else(invalid)?;
    let secret_hash = secret::token_hash(browser_secret);
    let a = app.store.approval(id).await?.filter(|a| a.flow == crate::domain::approval::Flow::Qr).ok_or_else(invalid)?;
    if !secret::ct_eq(&a.device_code_hash, &secret_hash) {
        return Err(invalid());
    }
    if !secret::ct_eq(handoff_code(app, &a.id, &secret_hash).as_bytes(), code.as_bytes()) {
        return Err(invalid());
    }
    let handoff_hash = secret::token_hash(code);
    let collector = Collector {
        how: CollectBy::Handoff { handoff_hash: &handoff_hash, secret_hash: &secret_hash },
        // The browser presenting the code is the new device.
        device: DeviceFacts::from_input(None, &meta.user_agent)?,
        // A browser page gets a cookie session; an API client gets tokens it refreshes as the CLI client.
        client_id: if web { WEB_CLIENT } else { CLI_CLIENT },
        web,
    };
    approvals::collect(app, &a, collector, meta).await.map_err(|e| match e {
        AppError::InvalidGrant(_) => invalid(),
        other => other,
    })
}
