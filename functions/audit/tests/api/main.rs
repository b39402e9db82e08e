//! audit's integration tests: one binary, one module per concern.

mod helpers;

mod access;
mod chain;
mod config;
mod export;
mod guarantees;
mod list;
mod oidc;
mod openapi;
mod push;
