//! Use cases: each function is one thing a person or client does, over the store and domain.
//! Thin HTTP handlers and the CLI both call these.

pub mod accounts;
pub mod approvals;
pub mod audit;
pub mod auth;
pub mod authorize;
pub mod clients;
pub mod code_grant;
mod context;
pub mod device_alerts;
pub mod device_grant;
pub mod device_policy;
pub mod devices;
pub mod email_links;
pub mod enrolment;
pub mod limits;
pub mod login_mfa;
pub mod oidc;
pub mod ops;
pub mod pairing;
pub mod passkeys;
pub mod password;
pub mod qr;
pub mod second_factor;
pub mod sessions;
pub mod tokens;
pub mod trust;
pub mod upstream_login;

pub use context::{App, AppError, AppResult, ClientMeta};
