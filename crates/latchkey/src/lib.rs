//! Latchkey: device authorization and passwordless login.
//!
//! Layers, from the inside out: `domain` (pure), `store` (one trait, backends), `events`,
//! `service` (use cases), `http` (axum) and `cli`. See `docs/architecture.md`.

// A panic on a request path is a 500 or a dead task: outside tests, every fallible call is
// handled, and the few that cannot fail say why where they are allowed.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod events;
pub mod http;
pub mod keys;
pub mod mail;
pub mod passwords;
pub mod server;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod upstream;

/// Both rustls and jsonwebtoken want exactly one process-wide crypto provider: aws-lc-rs.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
