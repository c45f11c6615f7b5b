//! The audit trail: every security event with time, user, device, IP and User-Agent.

use crate::service::sessions::Caller;
use crate::service::{App, AppResult, ClientMeta};
use crate::store::AuditRow;

/// The caller's own account's events, newest first, at most `limit`.
pub async fn for_user(app: &App, caller: &Caller, limit: i64) -> AppResult<Vec<AuditRow>> {
    Ok(app.store.audit_for_user(&caller.user_id, limit).await?)
}

/// The kinds of event, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    AccountCreated,
    LoginSucceeded,
    LoginFailed,
    Logout,
    LogoutEverywhere,
    DeviceAdded,
    DeviceRevoked,
    RefreshTokenReuse,
    TokenRevoked,
    KeyRotated,
    ClientCreated,
    RateLimited,
    DeviceCodeIssued,
    DeviceCodeApproved,
    DeviceCodeDenied,
    DeviceCodeWrong,
    DeviceCodeCollected,
    PairingCodeIssued,
    PairingCodeRedeemed,
    PairingCodeWrong,
    PairingApproved,
    PairingDenied,
    PairingCollected,
    MfaFailed,
    MfaSucceeded,
    MfaChanged,
    MfaSkippedTrustedDevice,
    DeviceRemembered,
    TrustRevoked,
    PasswordChanged,
    QrCreated,
    QrApproved,
    QrDenied,
    QrSignIn,
    HandoffReplayed,
    LoginSecondFactorRequired,
    ClientRemoved,
    AppAuthorized,
    AppConsentGranted,
    AppConsentRevoked,
    AuthorizationCodeReuse,
    AppSignedIn,
    EndSession,
    UpstreamLoginFailed,
    UpstreamLoginRefused,
    IdentityLinked,
    IdentityUnlinked,
    PasskeyAdded,
    PasskeyRenamed,
    PasskeyRemoved,
    PasskeyLoginFailed,
    PasskeyCounterRegressed,
    PasskeyStepUp,
    PasskeyStepUpChoice,
    StepUpRefused,
    RegistrationForTakenEmail,
    DevicePolicyRefused,
    DevicePolicyReport,
    DeviceDisowned,
    NewDeviceMailChoice,
    EmailVerified,
    PasswordResetRequested,
    PasswordReset,
}

impl AuditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AccountCreated => "account_created",
            Self::LoginSucceeded => "login_succeeded",
            Self::LoginFailed => "login_failed",
            Self::Logout => "logout",
            Self::LogoutEverywhere => "logout_everywhere",
            Self::DeviceAdded => "device_added",
            Self::DeviceRevoked => "device_revoked",
            Self::RefreshTokenReuse => "refresh_token_reuse",
            Self::TokenRevoked => "token_revoked",
            Self::KeyRotated => "key_rotated",
            Self::ClientCreated => "client_created",
            Self::RateLimited => "rate_limited",
            Self::DeviceCodeIssued => "device_code_issued",
            Self::DeviceCodeApproved => "device_code_approved",
            Self::DeviceCodeDenied => "device_code_denied",
            Self::DeviceCodeWrong => "device_code_wrong",
            Self::DeviceCodeCollected => "device_code_collected",
            Self::PairingCodeIssued => "pairing_code_issued",
            Self::PairingCodeRedeemed => "pairing_code_redeemed",
            Self::PairingCodeWrong => "pairing_code_wrong",
            Self::PairingApproved => "pairing_approved",
            Self::PairingDenied => "pairing_denied",
            Self::PairingCollected => "pairing_collected",
            Self::MfaFailed => "mfa_failed",
            Self::MfaSucceeded => "mfa_succeeded",
            Self::MfaChanged => "mfa_changed",
            Self::MfaSkippedTrustedDevice => "mfa_skipped_trusted_device",
            Self::DeviceRemembered => "device_remembered",
            Self::TrustRevoked => "trust_revoked",
            Self::PasswordChanged => "password_changed",
            Self::QrCreated => "qr_login_created",
            Self::QrApproved => "qr_approved",
            Self::QrDenied => "qr_denied",
            Self::QrSignIn => "qr_sign_in",
            Self::HandoffReplayed => "handoff_replayed",
            Self::LoginSecondFactorRequired => "login_second_factor_required",
            Self::ClientRemoved => "client_removed",
            Self::AppAuthorized => "app_authorized",
            Self::AppConsentGranted => "app_consent_granted",
            Self::AppConsentRevoked => "app_consent_revoked",
            Self::AuthorizationCodeReuse => "authorization_code_reuse",
            Self::AppSignedIn => "app_signed_in",
            Self::EndSession => "end_session",
            Self::UpstreamLoginFailed => "upstream_login_failed",
            Self::UpstreamLoginRefused => "upstream_login_refused",
            Self::IdentityLinked => "identity_linked",
            Self::IdentityUnlinked => "identity_unlinked",
            Self::PasskeyAdded => "passkey_added",
            Self::PasskeyRenamed => "passkey_renamed",
            Self::PasskeyRemoved => "passkey_removed",
            Self::PasskeyLoginFailed => "passkey_login_failed",
            Self::PasskeyCounterRegressed => "passkey_counter_regressed",
            Self::PasskeyStepUp => "passkey_step_up",
            Self::PasskeyStepUpChoice => "passkey_step_up_choice",
            Self::StepUpRefused => "step_up_refused",
            Self::RegistrationForTakenEmail => "registration_for_taken_email",
            Self::DevicePolicyRefused => "device_policy_refused",
            Self::DevicePolicyReport => "device_policy_would_refuse",
            Self::DeviceDisowned => "device_disowned",
            Self::NewDeviceMailChoice => "new_device_mail_choice",
            Self::EmailVerified => "email_verified",
            Self::PasswordResetRequested => "password_reset_requested",
            Self::PasswordReset => "password_reset",
        }
    }
}

pub struct Audit<'a> {
    pub kind: AuditKind,
    pub user_id: Option<&'a str>,
    pub device_id: Option<&'a str>,
    pub meta: Option<&'a ClientMeta>,
    pub detail: serde_json::Value,
}

impl<'a> Audit<'a> {
    pub fn new(kind: AuditKind) -> Self {
        Self { kind, user_id: None, device_id: None, meta: None, detail: serde_json::json!({}) }
    }
    pub fn user(mut self, id: &'a str) -> Self {
        self.user_id = Some(id);
        self
    }
    pub fn device(mut self, id: &'a str) -> Self {
        self.device_id = Some(id);
        self
    }
    pub fn meta(mut self, m: &'a ClientMeta) -> Self {
        self.meta = Some(m);
        self
    }
    pub fn detail(mut self, d: serde_json::Value) -> Self {
        self.detail = d;
        self
    }

    pub async fn record(self, app: &App) -> AppResult<()> {
        app.store.record_audit(&self.row(app)).await?;
        Ok(())
    }

    /// The row to store, for a store method that writes it together with the change it records.
    /// Logs the event as `record` does.
    pub fn row(self, app: &App) -> AuditRow {
        tracing::info!(
            event = self.kind.as_str(),
            user_id = self.user_id,
            device_id = self.device_id,
            ip = self.meta.map(|m| m.ip.as_str()),
            "audit"
        );
        AuditRow {
            id: 0,
            at: app.now(),
            kind: self.kind.as_str().into(),
            user_id: self.user_id.map(Into::into),
            device_id: self.device_id.map(Into::into),
            ip: self.meta.map(|m| m.ip.clone()),
            user_agent: self.meta.map(|m| m.user_agent.clone()),
            detail: self.detail.to_string(),
        }
    }
}
