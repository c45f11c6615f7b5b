//! The HTTP API end to end: a real server on a random port, a fresh database per test.

#[path = "../common/mod.rs"]
mod common;

mod accounts;
mod devices;
mod input;
mod login;
mod oauth;
mod operations;
mod refresh;
