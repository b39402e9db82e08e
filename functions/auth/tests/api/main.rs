//! auth's integration tests: one binary, one module per concern.

mod helpers;

mod abuse;
mod account;
mod audit_trail;
mod email_ownership;
mod exposure;
mod google;
mod guarantees;
mod invitations;
mod key_rotation;
mod openapi;
mod password_lifecycle;
mod rate_limit;
mod retention;
mod roles;
mod sessions;
mod tenancy;
