use super::audit::{Audit, AuditKind};
use super::limits;
use crate::domain::{Email, Password};
use crate::service::{App, AppError, AppResult, ClientMeta};
use crate::store::UserRow;

/// Creates an account with a password. Used by self-registration and by `latchkey user add`.
pub async fn create_user(app: &App, email: &Email, password: &Password) -> AppResult<UserRow> {
    if app.store.user_by_email(email.as_str()).await?.is_some() {
        return Err(AppError::Conflict("an account with this e-mail already exists".into()));
    }
    let id = uuid::Uuid::now_v7().to_string();
    let hash = app.passwords.hash(&id, password).await?;
    let user = UserRow {
        id,
        email: Some(email.as_str().into()),
        password_hash: Some(hash),
        created_at: app.now(),
        email_verified_at: super::email_links::verified_at_creation(app),
    };
    app.store.create_user(&user).await.map_err(|e| match e {
        crate::store::StoreError::Conflict => AppError::Conflict("an account with this e-mail already exists".into()),
        e => e.into(),
    })?;
    Ok(user)
}

/// Self-registration. Whether the address had an account is not told to the caller (that would
/// let anyone test which addresses have accounts here): a taken address gets the same answer,
/// after the same password hashing, and its owner gets a mail saying someone tried. Answers the
/// normalised address either way.
pub async fn register(app: &App, email: &str, password: String, meta: &ClientMeta) -> AppResult<String> {
    if !app.settings.accounts.self_registration {
        return Err(AppError::Forbidden("self-registration is switched off on this server".into()));
    }
    let email = Email::parse(email)?;
    let password = Password::parse(password)?;
    limits::check(app, &format!("register:ip:{}", meta.ip), app.settings.limits.register_per_ip_per_hour, 3600, meta).await?;
    let owner = match app.store.user_by_email(email.as_str()).await? {
        Some(owner) => Some(owner),
        None => match create_user(app, &email, &password).await {
            Ok(user) => {
                Audit::new(AuditKind::AccountCreated).user(&user.id).meta(meta).record(app).await?;
                super::email_links::after_new_address(app, &user);
                None
            }
            // Registered a moment ago by someone else: the same as taken.
            Err(AppError::Conflict(_)) => app.store.user_by_email(email.as_str()).await?,
            Err(e) => return Err(e),
        },
    };
    if let Some(owner) = owner {
        // The hashing a new account costs, so that the answer takes as long.
        app.passwords.hash(&owner.id, &password).await?;
        Audit::new(AuditKind::RegistrationForTakenEmail).user(&owner.id).meta(meta).record(app).await?;
        tell_owner(app, &owner, meta);
    }
    Ok(email.as_str().to_owned())
}

/// "Someone tried to create an account with your address", sent in the background so that the
/// answer does not wait for the mail server (which would tell taken addresses apart by time).
fn tell_owner(app: &App, owner: &UserRow, meta: &ClientMeta) {
    let Some(to) = owner.email.clone() else { return };
    let device = crate::domain::user_agent::parse(&meta.user_agent);
    let text = format!(
        "Someone tried to create a new account on {issuer} with this e-mail address, which already has one.\n\n\
         Asked from: {} on {}, at {}.\n\nYour account is unchanged. If it was you, sign in at {issuer}/login.\n\
         If it was not you, you need not do anything.\n",
        device.browser,
        device.os,
        meta.ip,
        issuer = app.issuer
    );
    let html = format!("<p>{}</p>", super::second_factor::html_escape(&text).replace("\n\n", "</p><p>").replace('\n', "<br>"));
    let mail = crate::mail::Mail { to, subject: "Someone tried to create an account with your address".into(), text, html };
    let mailer = app.mailer.clone();
    tokio::spawn(async move {
        if let Err(e) = mailer.send(mail).await {
            tracing::warn!(error = %e, "could not send the taken-address mail");
        }
    });
}

/// Sign-up from a device (seed 001): a passwordless account, e-mail optional, whose first device
/// stays signed in by its refresh tokens and can approve QR logins at once.
pub async fn register_device(
    app: &App,
    email: Option<&str>,
    device: Option<&crate::domain::device::DeviceInput>,
    meta: &ClientMeta,
) -> AppResult<crate::service::sessions::Opened> {
    use crate::service::sessions::{self, AuthorizedBy, NewSession};
    if !app.settings.accounts.self_registration {
        return Err(AppError::Forbidden("self-registration is switched off on this server".into()));
    }
    let email = email.map(Email::parse).transpose()?;
    let facts = crate::domain::device::DeviceFacts::from_input(device, &meta.user_agent)?;
    limits::check(app, &format!("register:ip:{}", meta.ip), app.settings.limits.register_per_ip_per_hour, 3600, meta).await?;
    let user = UserRow {
        id: uuid::Uuid::now_v7().to_string(),
        email_verified_at: email.as_ref().and_then(|_| super::email_links::verified_at_creation(app)),
        email: email.map(|e| e.as_str().to_owned()),
        password_hash: None,
        created_at: app.now(),
    };
    app.store.create_user(&user).await.map_err(|e| match e {
        crate::store::StoreError::Conflict => AppError::Conflict("an account with this e-mail already exists".into()),
        e => e.into(),
    })?;
    Audit::new(AuditKind::AccountCreated).user(&user.id).meta(meta).detail(serde_json::json!({ "passwordless": true })).record(app).await?;
    super::email_links::after_new_address(app, &user);
    sessions::open(
        app,
        NewSession {
            user_id: &user.id,
            client_id: crate::service::clients::CLI_CLIENT,
            scope: app.settings.tokens.default_scope.clone(),
            amr: vec!["signup".into()],
            device: facts,
            authorized_by: AuthorizedBy::Signup,
            approved_by_device: None,
            web: false,
            existing_device: None,
            passkey: Default::default(),
        },
        meta,
    )
    .await
}

/// Adds an e-mail to an account that has none (a passwordless account made from a device).
pub async fn add_email(app: &App, caller: &crate::service::sessions::Caller, email: &str, meta: &ClientMeta) -> AppResult<()> {
    let email = Email::parse(email)?;
    if !app.store.set_email_if_none(&caller.user_id, email.as_str()).await? {
        return Err(AppError::Conflict("this account already has an e-mail address".into()));
    }
    let user = profile(app, caller).await?;
    match super::email_links::verified_at_creation(app) {
        Some(now) => {
            app.store.verify_email(&user.id, email.as_str(), now).await?;
        }
        None => super::email_links::after_new_address(app, &user),
    }
    Audit::new(AuditKind::AccountCreated)
        .user(&caller.user_id)
        .device(&caller.device_id)
        .meta(meta)
        .detail(serde_json::json!({ "email_added": true }))
        .record(app)
        .await?;
    Ok(())
}

/// The caller's own account. A session whose account is gone is no session.
pub async fn profile(app: &App, caller: &crate::service::sessions::Caller) -> AppResult<UserRow> {
    app.store.user_by_id(&caller.user_id).await?.ok_or(AppError::Unauthorized)
}
