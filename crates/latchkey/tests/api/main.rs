//! The HTTP API end to end: a real server on a random port, a fresh database per test.

#[path = "../common/mod.rs"]
mod common;

mod accounts;
mod apps;
mod device_grant;
mod device_policy;
mod devices;
mod email_links;
mod input;
mod live_pages;
mod login;
mod mfa;
mod new_device_mail;
mod oauth;
mod oidc_rp;
mod operations;
mod pairing;
mod passkeys;
mod qr;
mod refresh;
mod upstream;
