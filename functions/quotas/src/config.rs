//! quotas' configuration, from the environment (documented in `.env.example`).

use runwarden_events::push::PushConfig;
use runwarden_platform::config::{auth_jwks_url, required_secret, var_parsed};
use runwarden_platform::internal_auth::InternalSecrets;
use runwarden_platform::{ConfigError, ServiceConfig};
use url::Url;

pub const DEFAULT_PORT: u16 = 8083;

/// Not `Debug`: it holds the internal secrets.
pub struct Config {
    /// Port, database (as the `runwarden_quotas` role), proxies, project.
    pub service: ServiceConfig,
    /// auth's published keys (`{auth}/.well-known/jwks.json`), fetched at start.
    pub auth_jwks_url: Url,
    /// When auth's keys are fetched again (`AUTH_JWKS_MIN_REFETCH_SECS`, `AUTH_JWKS_MAX_AGE_SECS`).
    pub auth_jwks_refresh: runwarden_tokens::JwksRefresh,
    pub push: PushConfig,
    /// `X-Internal-Auth` secrets for `/internal/` (one, or two during a rotation).
    pub internal_secrets: InternalSecrets,
    /// How long past its cap a reservation waits before the reaper settles it at the cap.
    pub reaper_grace_secs: u64,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let service = ServiceConfig::from_env(DEFAULT_PORT)?;
        Ok(Self {
            auth_jwks_url: auth_jwks_url()?,
            auth_jwks_refresh: runwarden_platform::config::auth_jwks_refresh()?,
            push: PushConfig::from_env(service.env)?,
            internal_secrets: InternalSecrets::parse(&required_secret("INTERNAL_AUTH_SECRETS")?)?,
            reaper_grace_secs: var_parsed("REAPER_GRACE_SECS", 120)?,
            service,
        })
    }
}
