//! The second factors themselves (TOTP, e-mail codes, recovery codes): which a user has,
//! checking a code, and mailing one. Login (`login_mfa`) and enrolment (`enrolment`) both use them.

use crate::domain::codes;
use crate::domain::{sealed, secret, totp};
use crate::mail::Mail;
use crate::service::{App, AppError, AppResult};
use crate::store::UserRow;

/// Wrong codes an mfa_token or an e-mail code takes before it stops working.
pub(super) const MAX_FAILURES: i64 = 5;
pub(super) const RECOVERY_PURPOSE: &str = "recovery_code";
pub(super) const EMAIL_PURPOSE: &str = "email_code";
pub(super) const RECOVERY_LEN: usize = 10;

/// The second factors a user has.
pub async fn methods(app: &App, user_id: &str) -> AppResult<Vec<&'static str>> {
    let mut m = Vec::new();
    let totp = app.store.totp(user_id).await?.is_some_and(|t| t.confirmed_at.is_some());
    if totp {
        m.push("totp");
    }
    if app.store.email_factor(user_id).await? {
        m.push("email");
    }
    if totp {
        m.push("recovery");
    }
    Ok(m)
}

/// Mails a fresh six-digit code for `purpose` (`login` or `enroll`); one per resend interval.
pub(super) async fn send_code(app: &App, user: &UserRow, purpose: &str, device: &str, ip: &str) -> AppResult<()> {
    // Sign-in codes go to proven addresses only; an enrolment code is itself the proof.
    if purpose == "login" && user.email_verified_at.is_none() {
        return Err(AppError::Forbidden("this account's e-mail address is not verified: no codes are sent to it".into()));
    }
    let code = loop {
        // Rejection sampling: 4_294_000_000 is the largest multiple of 10^6 below 2^32.
        let n = u32::from_be_bytes(secret::random_bytes::<4>());
        if n < 4_294_000_000 {
            break format!("{:06}", n % 1_000_000);
        }
    };
    let m = &app.settings.mfa;
    let fresh = app
        .store
        .put_email_code(
            &user.id,
            purpose,
            &codes::code_hmac(&app.code_key, EMAIL_PURPOSE, &code),
            app.now(),
            m.email_code_ttl_secs as i64,
            m.email_resend_secs as i64,
        )
        .await?;
    if !fresh {
        return Err(AppError::RateLimited { retry_after: m.email_resend_secs });
    }
    let minutes = match m.email_code_ttl_secs.div_ceil(60) {
        1 => "1 minute".to_owned(),
        n => format!("{n} minutes"),
    };
    let (what, subject) = match purpose {
        "enroll" => ("turn on sign-in codes by e-mail", "Confirm your e-mail for sign-in codes"),
        "disable" => ("turn off sign-in codes by e-mail", "Turning off sign-in codes by e-mail"),
        _ => ("finish signing in", "Your sign-in code"),
    };
    let text = format!(
        "Your code to {what} is:\n\n    {code}\n\nIt works once, for {minutes}.\n\nAsked for by: {device}, from {ip}.\nIf this was not you, do not share the code, and change your password.\n"
    );
    let html = format!(
        "<p>Your code to {what} is:</p><p style=\"font-size:28px;font-family:monospace;letter-spacing:4px\"><strong>{code}</strong></p>\
         <p>It works once, for {minutes}.</p><p>Asked for by: {}, from {}.<br>If this was not you, do not share the code, and change your password.</p>",
        html_escape(device),
        html_escape(ip)
    );
    app.mailer
        .send(Mail {
            to: user.email.clone().ok_or_else(|| AppError::BadRequest("this account has no e-mail address".into()))?,
            subject: subject.into(),
            text,
            html,
        })
        .await
        .map_err(|e| AppError::Internal(e.context("sending mail")))?;
    Ok(())
}

pub(super) fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Checks a code of `method` for `user_id`. Replays and wrong codes are false.
pub(super) async fn check_code(app: &App, user_id: &str, method: &str, code: &str) -> AppResult<bool> {
    let now = app.now();
    match method {
        "totp" => {
            let Some(t) = app.store.totp(user_id).await?.filter(|t| t.confirmed_at.is_some()) else { return Ok(false) };
            let secret = sealed::open(&app.mfa_key, user_id.as_bytes(), &t.secret_enc)
                .ok_or_else(|| anyhow::anyhow!("TOTP secret does not open"))?;
            match totp::matching_step(&secret, code, now) {
                Some(step) => Ok(app.store.use_totp_step(user_id, step).await?),
                None => Ok(false),
            }
        }
        "email" => {
            let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
            if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Ok(false);
            }
            Ok(app
                .store
                .use_email_code(user_id, "login", &codes::code_hmac(&app.code_key, EMAIL_PURPOSE, &code), now, MAX_FAILURES)
                .await?)
        }
        "recovery" => {
            let Ok(code) = codes::normalize(code, RECOVERY_LEN) else { return Ok(false) };
            let used = app.store.use_recovery_code(user_id, &codes::code_hmac(&app.code_key, RECOVERY_PURPOSE, &code), now).await?;
            if used {
                // A recovery code means a lost factor: every remembered device must prove itself again.
                app.store.revoke_trust(user_id, None).await?;
            }
            Ok(used)
        }
        _ => Err(AppError::BadRequest("method must be totp, email or recovery".into())),
    }
}
