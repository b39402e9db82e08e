//! The database: one PostgreSQL pool per process, over TCP locally or the Cloud SQL Auth
//! Proxy's Unix socket in production, and every migration of every function in one place.
//!
//! `DATABASE_URL` selects the transport: `postgres://user@127.0.0.1:5432/runwarden` for TCP,
//! `postgres://user@/runwarden?host=/cloudsql/PROJECT:REGION:INSTANCE` for the socket.

use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// Every migration, applied by the `migrate` binary (its own deploy step), never by a
/// function at start-up: runtime roles cannot create tables.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The runtime database roles, one per function (created by the migrations).
pub mod roles {
    pub const AUTH: &str = "runwarden_auth";
    pub const RUNS: &str = "runwarden_runs";
    pub const QUOTAS: &str = "runwarden_quotas";
    pub const AUDIT: &str = "runwarden_audit";
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is not logged: it may carry a password.
    #[error("DATABASE_URL is not a valid PostgreSQL URL")]
    InvalidUrl,
}

#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    pub statement_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(5),
        }
    }
}

pub fn connect_options(url: &SecretString) -> Result<PgConnectOptions, StoreError> {
    let url = url.expose_secret();
    let rest = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
        .ok_or(StoreError::InvalidUrl)?;
    // libpq accepts an empty host (`user@/db?host=/cloudsql/...`), the form Cloud SQL
    // documents for its socket; sqlx's URL parser does not, so name a placeholder host that
    // the `host` query parameter then replaces with the socket directory.
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let normalized = if authority.is_empty() || authority.ends_with('@') {
        format!("postgres://{authority}localhost{}", &rest[authority_end..])
    } else {
        format!("postgres://{rest}")
    };
    PgConnectOptions::from_str(&normalized).map_err(|_| StoreError::InvalidUrl)
}

/// A function's runtime pool from its `DATABASE_URL`, with the default [`PoolSettings`];
/// connections open lazily, so a function starts before its database answers.
pub fn connect(url: &SecretString) -> Result<PgPool, StoreError> {
    Ok(pool(connect_options(url)?, &PoolSettings::default()))
}

/// A lazily connecting pool: the process starts even while the database is briefly away,
/// and requests fail fast (503) until it is back.
pub fn pool(options: PgConnectOptions, settings: &PoolSettings) -> PgPool {
    let statement_timeout = format!("{}ms", settings.statement_timeout.as_millis());
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_lazy_with(
            options
                .options([("statement_timeout", statement_timeout.as_str())])
                .application_name("runwarden"),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_socket_urls_select_the_socket_directory() {
        let url = SecretString::from("postgres://runwarden_auth@/runwarden?host=/cloudsql/p:r:i");
        let options = connect_options(&url).unwrap();
        assert_eq!(
            options.get_socket(),
            Some(&std::path::PathBuf::from("/cloudsql/p:r:i"))
        );
        assert_eq!(options.get_database(), Some("runwarden"));
        assert_eq!(options.get_username(), "runwarden_auth");
    }

    #[test]
    fn tcp_urls_and_socket_urls_without_a_user_parse() {
        let tcp = connect_options(&SecretString::from(
            "postgres://runwarden_auth@127.0.0.1:5432/runwarden",
        ))
        .unwrap();
        assert_eq!((tcp.get_host(), tcp.get_port()), ("127.0.0.1", 5432));
        assert_eq!(tcp.get_socket(), None);
        let socket = connect_options(&SecretString::from(
            "postgresql:///runwarden?host=/var/run/postgresql",
        ))
        .unwrap();
        assert_eq!(
            socket.get_socket(),
            Some(&std::path::PathBuf::from("/var/run/postgresql"))
        );
    }

    #[test]
    fn invalid_url_error_does_not_echo_the_url() {
        let url = SecretString::from("mysql://user:hunter2@host/db");
        let err = connect_options(&url).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }
}
