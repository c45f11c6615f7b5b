//! Pure domain logic: parsing of outside input into types, code and token generation, policies.
//! Nothing here does I/O or reads the clock; time is always an argument.

pub mod approval;
pub mod authorize;
pub mod codes;
pub mod device;
pub mod device_policy;
pub mod email;
pub mod id_token;
pub mod linking;
pub mod passkey;
pub mod password;
pub mod pkce;
pub mod policy;
pub mod qr_image;
pub mod redirect_uri;
pub mod scope;
pub mod sealed;
pub mod secret;
pub mod totp;
pub mod user_agent;

pub use email::Email;
pub use password::Password;
pub use scope::Scope;

/// An error parsing outside input: which field, and what is wrong with it, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ParseError {
    pub field: &'static str,
    pub message: String,
}

impl ParseError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self { field, message: message.into() }
    }
}
