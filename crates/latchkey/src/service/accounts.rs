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
    let user = UserRow { id, email: Some(email.as_str().into()), password_hash: Some(hash), created_at: app.now() };
    app.store.create_user(&user).await.map_err(|e| match e {
        crate::store::StoreError::Conflict => AppError::Conflict("an account with this e-mail already exists".into()),
        e => e.into(),
    })?;
    Ok(user)
}

pub async fn register(app: &App, email: &str, password: String, meta: &ClientMeta) -> AppResult<UserRow> {
    if !app.settings.accounts.self_registration {
        return Err(AppError::Forbidden("self-registration is switched off on this server".into()));
    }
    let email = Email::parse(email)?;
    let password = Password::parse(password)?;
    limits::check(app, &format!("register:ip:{}", meta.ip), app.settings.limits.register_per_ip_per_hour, 3600, meta).await?;
    let user = create_user(app, &email, &password).await?;
    Audit::new(AuditKind::AccountCreated).user(&user.id).meta(meta).record(app).await?;
    Ok(user)
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
        email: email.map(|e| e.as_str().to_owned()),
        password_hash: None,
        created_at: app.now(),
    };
    app.store.create_user(&user).await.map_err(|e| match e {
        crate::store::StoreError::Conflict => AppError::Conflict("an account with this e-mail already exists".into()),
        e => e.into(),
    })?;
    Audit::new(AuditKind::AccountCreated).user(&user.id).meta(meta).detail(serde_json::json!({ "passwordless": true })).record(app).await?;
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
