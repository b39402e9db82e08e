//! Server plumbing every Runwarden function shares: typed configuration from the
//! environment, Cloud Logging JSON logs with redaction, the problem+json error envelope,
//! the HTTP server bootstrap (limits, request ids, security headers, graceful shutdown),
//! and the `X-Internal-Auth` guard for service-to-service routes.

pub mod config;
pub mod extract;
pub mod internal_auth;
pub mod problem;
pub mod request;
pub mod server;
pub mod telemetry;

pub use config::{ConfigError, Environment};
pub use problem::Problem;
