//! "A new device signed in to your account": every device added to an account, whichever way in
//! (password, device grant, pairing, QR, upstream, passkey), mails its owner what the server saw,
//! with a one-click "This wasn't me" link. The link holds a single-use token (only its SHA-256
//! is stored, 7 days); its page is inert on GET, and its POST signs exactly that device out:
//! sessions, refresh tokens, device trust, and whatever it approved that is not collected yet.

use super::audit::{Audit, AuditKind};
use super::sessions::Caller;
use crate::clock::rfc3339;
use crate::domain::{secret, user_agent};
use crate::mail::Mail;
use crate::service::{App, AppError, AppResult, ClientMeta};
use crate::store::{DeviceAlertRow, DeviceRow};

pub const ALERT_PREFIX: &str = "lk_nd_";
pub const ALERT_TTL_SECS: i64 = 7 * 86400;

/// After a new device's rows are stored: its owner is mailed, in the background, so that no
/// sign-in waits for the mail server. Accounts without an e-mail address, accounts that chose
/// not to get it and servers that turned it off send nothing; a new account's own first device
/// (signing up from a device) is no news to anyone.
pub fn notify(app: &App, device: &DeviceRow) {
    if !app.settings.mail.new_device_mail || device.authorized_by == "signup" {
        return;
    }
    let (store, mailer, issuer, now, device) = (app.store.clone(), app.mailer.clone(), app.issuer.clone(), app.now(), device.clone());
    tokio::spawn(async move {
        if let Err(e) = send(store, mailer, &issuer, now, &device).await {
            tracing::warn!(error = %e, user_id = %device.user_id, device_id = %device.id, "could not send the new-device mail");
        }
    });
}

async fn send(store: crate::store::DynStore, mailer: crate::mail::Mailer, issuer: &str, now: i64, d: &DeviceRow) -> anyhow::Result<()> {
    let Some(user) = store.user_by_id(&d.user_id).await? else { return Ok(()) };
    // An unverified address may be someone else's: it hears about nothing but its verification.
    let (Some(to), Some(_)) = (user.email, user.email_verified_at) else { return Ok(()) };
    if !store.new_device_mail(&d.user_id).await? {
        return Ok(());
    }
    let approver = match &d.approved_by_device {
        Some(id) => store.device(&d.user_id, id).await?.map(|a| a.name),
        None => None,
    };
    let token = secret::new_token(ALERT_PREFIX);
    store
        .create_device_alert(&DeviceAlertRow {
            token_hash: secret::token_hash(&token),
            user_id: d.user_id.clone(),
            device_id: d.id.clone(),
            created_at: now,
            expires_at: now + ALERT_TTL_SECS,
            used_at: None,
        })
        .await?;
    mailer.send(mail(issuer, &to, d, approver.as_deref(), &token)).await
}

/// How the device got in, in words.
fn how(d: &DeviceRow, approver: Option<&str>) -> String {
    let by = approver.map(|a| format!(" approved on your device \"{a}\"")).unwrap_or_default();
    match d.authorized_by.as_str() {
        "password" => "with your password".to_owned(),
        "device_code" => format!("with a device code{by}"),
        "pairing" => format!("with a pairing code{by}"),
        "qr" => format!("by a QR code{by}"),
        "upstream" => "through a linked identity provider".to_owned(),
        "passkey" => "with a passkey".to_owned(),
        "app" => "through an app's sign-in".to_owned(),
        other => other.replace('_', " "),
    }
}

fn mail(issuer: &str, to: &str, d: &DeviceRow, approver: Option<&str>, token: &str) -> Mail {
    let ua = user_agent::parse(&d.user_agent);
    let link = format!("{issuer}/wasnt-me/{token}");
    let facts = [
        ("Device", d.name.clone()),
        ("Seen as", format!("{} on {}", ua.browser, ua.os)),
        ("Signed in", how(d, approver)),
        ("From", d.last_ip.clone()),
        ("At", rfc3339(d.first_seen_at)),
    ];
    let lines: String = facts.iter().map(|(k, v)| format!("    {k}: {v}\n")).collect();
    let text = format!(
        "A new device signed in to your account {to} on {issuer}:\n\n{lines}\n\
         If this was you, there is nothing to do.\n\n\
         If it wasn't you, open this link to sign that device out at once (it works once, for 7 days):\n\n    {link}\n\n\
         Then change your password. You can turn these mails off on {issuer}/account.\n"
    );
    let esc = super::second_factor::html_escape;
    let rows: String = facts.iter().map(|(k, v)| format!("<tr><th align=\"left\">{k}</th><td>{}</td></tr>", esc(v))).collect();
    let html = format!(
        "<p>A new device signed in to your account {} on {}:</p><table>{rows}</table>\
         <p>If this was you, there is nothing to do.</p>\
         <p>If it wasn't you: <a href=\"{}\"><strong>This wasn't me</strong></a> signs that device out at once \
         (the link works once, for 7 days). Then change your password.</p>\
         <p>You can turn these mails off on your <a href=\"{}/account\">account page</a>.</p>",
        esc(to),
        esc(issuer),
        esc(&link),
        esc(issuer)
    );
    Mail { to: to.to_owned(), subject: format!("New sign-in to your account: {}", d.name), text, html }
}

/// What the "This wasn't me" page shows of the device, before anything is done.
#[derive(Debug, Clone)]
pub struct Disowned {
    pub device_name: String,
    pub seen_as: String,
    pub how: String,
    pub ip: String,
    pub at: String,
    /// The device was signed out already (from /account, or by an earlier click).
    pub already_out: bool,
}

async fn describe(app: &App, a: &DeviceAlertRow) -> AppResult<Disowned> {
    let d = app.store.device(&a.user_id, &a.device_id).await?.ok_or_else(link_invalid)?;
    let approver = match &d.approved_by_device {
        Some(id) => app.store.device(&d.user_id, id).await?.map(|a| a.name),
        None => None,
    };
    let ua = user_agent::parse(&d.user_agent);
    Ok(Disowned {
        how: how(&d, approver.as_deref()),
        seen_as: format!("{} on {}", ua.browser, ua.os),
        ip: d.last_ip.clone(),
        at: rfc3339(d.first_seen_at),
        already_out: d.revoked_at.is_some(),
        device_name: d.name,
    })
}

fn link_invalid() -> AppError {
    AppError::BadRequest("This link is not valid: it was used already, or it expired (links work for 7 days).".into())
}

fn alert_hash(token: &str) -> AppResult<Vec<u8>> {
    if !token.starts_with(ALERT_PREFIX) || token.len() > 128 {
        return Err(link_invalid());
    }
    Ok(secret::token_hash(token))
}

/// The confirmation page's view of a live link: changes nothing (mail scanners follow links).
pub async fn look(app: &App, token: &str) -> AppResult<Disowned> {
    let a = app.store.device_alert(&alert_hash(token)?, app.now()).await?.ok_or_else(link_invalid)?;
    describe(app, &a).await
}

/// "This wasn't me": uses the link (once) and signs its device out.
pub async fn disown(app: &App, token: &str, meta: &ClientMeta) -> AppResult<Disowned> {
    let a = app.store.use_device_alert(&alert_hash(token)?, app.now()).await?.ok_or_else(link_invalid)?;
    let mut seen = describe(app, &a).await?;
    let audit = Audit::new(AuditKind::DeviceDisowned).detail(serde_json::json!({ "by": "new_device_mail", "name": seen.device_name }));
    match super::devices::end(app, &a.user_id, &a.device_id, audit, meta).await {
        Ok(()) => {}
        // Signed out already: the click changes nothing, and says so.
        Err(AppError::NotFound) => seen.already_out = true,
        Err(e) => return Err(e),
    }
    Ok(seen)
}

/// Whether the account gets new-device mail, and whether the server sends it at all.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct MailChoice {
    /// The account's own choice.
    pub new_device_mail: bool,
    /// False when the operator turned new-device mail off for everyone.
    pub sent_by_server: bool,
}

pub async fn choice(app: &App, caller: &Caller) -> AppResult<MailChoice> {
    Ok(MailChoice { new_device_mail: app.store.new_device_mail(&caller.user_id).await?, sent_by_server: app.settings.mail.new_device_mail })
}

pub async fn set_choice(app: &App, caller: &Caller, on: bool, meta: &ClientMeta) -> AppResult<MailChoice> {
    app.store.set_new_device_mail(&caller.user_id, on).await?;
    Audit::new(AuditKind::NewDeviceMailChoice)
        .user(&caller.user_id)
        .device(&caller.device_id)
        .meta(meta)
        .detail(serde_json::json!({ "new_device_mail": on }))
        .record(app)
        .await?;
    choice(app, caller).await
}
