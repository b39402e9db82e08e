//! auth's integration tests: one binary, one module per concern.

mod helpers;

mod account;
mod invitations;
mod roles;
mod sessions;
mod tenancy;
