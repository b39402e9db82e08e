//! runs' configuration, from the environment (documented in `.env.example`).

use runwarden_platform::config::{
    http_url, optional_var, port, required_secret, required_var, var_parsed,
};
use runwarden_platform::{ConfigError, Environment};
use secrecy::SecretString;
use url::Url;

pub const DEFAULT_PORT: u16 = 8082;

/// Not `Debug`: it holds the database URL, which may carry a password.
pub struct Config {
    pub env: Environment,
    pub port: u16,
    /// As the `runwarden_runs` role.
    pub database_url: SecretString,
    /// auth's published keys (`{auth}/.well-known/jwks.json`), fetched at start.
    pub auth_jwks_url: Url,
    pub trusted_proxy_hops: usize,
    pub project: Option<String>,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            env: Environment::from_env()?,
            port: port(DEFAULT_PORT)?,
            database_url: required_secret("DATABASE_URL")?,
            auth_jwks_url: http_url("AUTH_JWKS_URL", &required_var("AUTH_JWKS_URL")?)?,
            trusted_proxy_hops: var_parsed("TRUSTED_PROXY_HOPS", 0)?,
            project: optional_var("GOOGLE_CLOUD_PROJECT"),
        })
    }
}
