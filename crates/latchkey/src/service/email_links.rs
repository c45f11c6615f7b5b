//! Links mailed to an account's address: e-mail verification (24 hours) and password reset
//! (30 minutes). Each holds a single-use token, stored only as its SHA-256 and taken by one
//! conditional write; opening a link changes nothing, its form does. A reset is asked with the
//! same answer for known and unknown addresses (the work that differs happens in the background),
//! under limits per IP and per address; using one sets the password, ends every session of the
//! account and its remembered devices, and verifies the address (the mail reached its owner).

use super::audit::{Audit, AuditKind};
use super::limits;
use super::sessions::Caller;
use crate::domain::{Email, Password, secret};
use crate::mail::Mail;
use crate::service::{App, AppError, AppResult, ClientMeta};
use crate::store::{AuditRow, EmailLinkRow, UserRow};

pub const VERIFY: &str = "verify";
pub const RESET: &str = "reset";
const VERIFY_PREFIX: &str = "lk_ev_";
const RESET_PREFIX: &str = "lk_pr_";
pub const VERIFY_TTL_SECS: i64 = 86_400;
pub const RESET_TTL_SECS: i64 = 1_800;
/// Reset mails one IP may ask for per hour, and one address.
const RESETS_PER_IP_PER_HOUR: i64 = 10;
const RESETS_PER_ADDRESS_PER_HOUR: i64 = 3;
const VERIFICATIONS_PER_ACCOUNT_PER_HOUR: i64 = 5;

fn invalid() -> AppError {
    AppError::BadRequest("This link is not valid: it was used already, or it expired. Ask for a new one.".into())
}

fn hash_of(token: &str, prefix: &str) -> AppResult<Vec<u8>> {
    if !token.starts_with(prefix) || token.len() > 128 {
        return Err(invalid());
    }
    Ok(secret::token_hash(token))
}

/// Whether a new address starts out verified: only where the operator turned verification off.
pub fn verified_at_creation(app: &App) -> Option<i64> {
    (!app.settings.accounts.verify_email).then(|| app.now())
}

/// Stores a link and mails it, in the background: the caller's answer waits for neither.
/// `audit`, if any, is written there too.
fn mail_link(
    app: &App,
    purpose: &'static str,
    user_id: &str,
    email: &str,
    compose: fn(&str, &str) -> (String, String),
    audit: Option<AuditRow>,
) {
    let (prefix, ttl) = if purpose == RESET { (RESET_PREFIX, RESET_TTL_SECS) } else { (VERIFY_PREFIX, VERIFY_TTL_SECS) };
    let token = secret::new_token(prefix);
    let now = app.now();
    let row = EmailLinkRow {
        token_hash: secret::token_hash(&token),
        purpose: purpose.into(),
        user_id: user_id.into(),
        email: email.into(),
        created_at: now,
        expires_at: now + ttl,
        used_at: None,
    };
    let path = if purpose == RESET { "reset-password" } else { "verify-email" };
    let (subject, text) = compose(&app.issuer, &format!("{}/{path}/{token}", app.issuer));
    let html = format!("<p>{}</p>", super::second_factor::html_escape(&text).replace("\n\n", "</p><p>").replace('\n', "<br>"));
    let mail = Mail { to: email.into(), subject, text, html };
    let (store, mailer) = (app.store.clone(), app.mailer.clone());
    tokio::spawn(async move {
        let sent = async {
            if let Some(a) = &audit {
                store.record_audit(a).await?;
            }
            store.create_email_link(&row).await?;
            mailer.send(mail).await
        };
        if let Err(e) = sent.await {
            tracing::warn!(error = %e, purpose, "could not send the mailed link");
        }
    });
}

fn verification_mail(issuer: &str, link: &str) -> (String, String) {
    let text = format!(
        "Confirm that this is your e-mail address for your account on {issuer}:\n\n    {link}\n\n\
         The link works once, for 24 hours. Until then this address gets no sign-in codes and no \
         security mail.\nIf you did not create an account there, ignore this mail.\n"
    );
    ("Confirm your e-mail address".into(), text)
}

fn reset_mail(issuer: &str, link: &str) -> (String, String) {
    let text = format!(
        "Someone asked to reset the password of your account on {issuer}. To choose a new one:\n\n    {link}\n\n\
         The link works once, for 30 minutes. A new password signs out every device of the account.\n\
         If you did not ask for this, ignore this mail: your password stays as it is.\n"
    );
    ("Reset your password".into(), text)
}

/// Mails a verification link for a new account's address (no mail when it counts as verified).
pub fn after_new_address(app: &App, user: &UserRow) {
    if let (Some(email), None) = (&user.email, user.email_verified_at) {
        mail_link(app, VERIFY, &user.id, email, verification_mail, None);
    }
}

/// `POST /api/v1/account/email-verification`: another verification link for the account's address.
pub async fn request_verification(app: &App, caller: &Caller, meta: &ClientMeta) -> AppResult<()> {
    let user = app.store.user_by_id(&caller.user_id).await?.ok_or(AppError::Unauthorized)?;
    let Some(email) = &user.email else { return Err(AppError::BadRequest("this account has no e-mail address".into())) };
    if user.email_verified_at.is_some() {
        return Err(AppError::Conflict("this address is verified already".into()));
    }
    limits::check(app, &format!("verify:user:{}", user.id), VERIFICATIONS_PER_ACCOUNT_PER_HOUR, 3600, meta).await?;
    mail_link(app, VERIFY, &user.id, email, verification_mail, None);
    Ok(())
}

/// The address a live verification link is for (the page shows it; nothing changes).
pub async fn look_verification(app: &App, token: &str) -> AppResult<String> {
    let l = app.store.email_link(&hash_of(token, VERIFY_PREFIX)?, VERIFY, app.now()).await?.ok_or_else(invalid)?;
    Ok(l.email)
}

/// Follows a verification link: once, and only while the account still has that address.
pub async fn confirm_verification(app: &App, token: &str, meta: &ClientMeta) -> AppResult<String> {
    let now = app.now();
    let l = app.store.use_email_link(&hash_of(token, VERIFY_PREFIX)?, VERIFY, now).await?.ok_or_else(invalid)?;
    if !app.store.verify_email(&l.user_id, &l.email, now).await? {
        return Err(invalid());
    }
    Audit::new(AuditKind::EmailVerified).user(&l.user_id).meta(meta).detail(serde_json::json!({ "by": "link" })).record(app).await?;
    Ok(l.email)
}

/// A mailed enrolment code reached the address: that verifies it too.
pub async fn verified_by_code(app: &App, user: &UserRow) -> AppResult<()> {
    if let (Some(email), None) = (&user.email, user.email_verified_at) {
        app.store.verify_email(&user.id, email, app.now()).await?;
    }
    Ok(())
}

/// "Forgot password": the same answer whether or not an account has the address.
pub async fn request_reset(app: &App, raw_email: &str, meta: &ClientMeta) -> AppResult<()> {
    let email = Email::parse(raw_email)?;
    limits::check(app, &format!("reset:ip:{}", meta.ip), RESETS_PER_IP_PER_HOUR, 3600, meta).await?;
    limits::check(app, &format!("reset:email:{}", email.as_str()), RESETS_PER_ADDRESS_PER_HOUR, 3600, meta).await?;
    if let Some(user) = app.store.user_by_email(email.as_str()).await? {
        // Written with the link, in the background: a known address answers as fast as any.
        let audit = Audit::new(AuditKind::PasswordResetRequested).user(&user.id).meta(meta).row(app);
        mail_link(app, RESET, &user.id, email.as_str(), reset_mail, Some(audit));
    }
    Ok(())
}

/// The address a live reset link is for.
pub async fn look_reset(app: &App, token: &str) -> AppResult<String> {
    let l = app.store.email_link(&hash_of(token, RESET_PREFIX)?, RESET, app.now()).await?.ok_or_else(invalid)?;
    Ok(l.email)
}

/// Sets a new password through a reset link: every session of the account ends, and its
/// remembered devices are forgotten. Answers how many sessions ended.
pub async fn confirm_reset(app: &App, token: &str, new_password: String, meta: &ClientMeta) -> AppResult<u64> {
    let hash = hash_of(token, RESET_PREFIX)?;
    let password = Password::parse(new_password)?;
    // The link is looked at first and taken only after the slow hashing, so that a busy server
    // (503) or a weak password does not use it up.
    let l = app.store.email_link(&hash, RESET, app.now()).await?.ok_or_else(invalid)?;
    let password_hash = app.passwords.hash(&l.user_id, &password).await?;
    let now = app.now();
    let l = app.store.use_email_link(&hash, RESET, now).await?.ok_or_else(invalid)?;
    app.store.set_password_hash(&l.user_id, &password_hash).await?;
    let ended = app.store.revoke_user_sessions(&l.user_id, None, "password_reset", now).await?;
    app.store.revoke_trust(&l.user_id, None).await?;
    app.store.end_email_links(&l.user_id, RESET, now).await?;
    app.store.verify_email(&l.user_id, &l.email, now).await?;
    Audit::new(AuditKind::PasswordReset)
        .user(&l.user_id)
        .meta(meta)
        .detail(serde_json::json!({ "sessions_ended": ended }))
        .record(app)
        .await?;
    Ok(ended)
}
