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
    pub push: PushConfig,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let service = ServiceConfig::from_env(DEFAULT_PORT)?;
        Ok(Self {
            auth_jwks_url: auth_jwks_url()?,
            push: PushConfig::from_env(service.env)?,
            service,
        })
    }
}
