//! audit's configuration, from the environment (documented in `.env.example`).

use runwarden_events::push::PushConfig;
use runwarden_platform::config::auth_jwks_url;
use runwarden_platform::{ConfigError, ServiceConfig};
use url::Url;

pub const DEFAULT_PORT: u16 = 8084;

#[derive(Debug)]
pub struct Config {
    /// Port, database (as the `runwarden_audit` role), proxies, project.
    pub service: ServiceConfig,
    /// auth's published keys (`{auth}/.well-known/jwks.json`), fetched at start.
    pub auth_jwks_url: Url,
    /// When auth's keys are fetched again (`AUTH_JWKS_MIN_REFETCH_SECS`, `AUTH_JWKS_MAX_AGE_SECS`).
    pub auth_jwks_refresh: runwarden_tokens::JwksRefresh,
    pub push: PushConfig,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let service = ServiceConfig::from_env(DEFAULT_PORT)?;
        Ok(Self {
            auth_jwks_url: auth_jwks_url()?,
            auth_jwks_refresh: runwarden_platform::config::auth_jwks_refresh()?,
            push: PushConfig::from_env(service.env)?,
            service,
        })
    }
}
