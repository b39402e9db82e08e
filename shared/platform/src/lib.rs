//! Server plumbing every Runwarden function shares: typed configuration from the
//! environment, Cloud Logging JSON logs with redaction, the problem+json error envelope,
//! the HTTP server bootstrap (limits, request ids, security headers, graceful shutdown),
//! the `X-Internal-Auth` guard for service-to-service routes, the API error core
//! ([`error::ApiError`]), cursor pagination ([`page`]) and the application skeleton
//! ([`app::Service`]: serving beside background tasks, one shutdown order).

pub mod app;
pub mod config;
pub mod error;
pub mod extract;
pub mod internal_auth;
pub mod page;
pub mod problem;
pub mod request;
pub mod server;
pub mod telemetry;

pub use config::{ConfigError, Environment, ServiceConfig};
pub use error::{ApiError, ApiResult};
pub use page::{ListQuery, Page};
pub use problem::Problem;
