use super::audit::{Audit, AuditKind};
use super::limits;
use crate::app::{App, AppError, AppResult, ClientMeta};
use crate::domain::{Email, Password};
use crate::store::UserRow;

/// Creates an account with a password. Used by self-registration and by `latchkey user add`.
pub async fn create_user(app: &App, email: &Email, password: &Password) -> AppResult<UserRow> {
    if app.store.user_by_email(email.as_str()).await?.is_some() {
        return Err(AppError::Conflict("an account with this e-mail already exists".into()));
    }
    let id = uuid::Uuid::now_v7().to_string();
    let hash = app.passwords.hash(&id, password).await?;
    let user = UserRow { id, email: email.as_str().into(), password_hash: Some(hash), created_at: app.now() };
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
