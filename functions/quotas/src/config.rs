//! quotas' configuration, from the environment (documented in `.env.example`).

use runwarden_events::push::PushConfig;
use runwarden_platform::config::{
    http_url, optional_var, port, required_secret, required_var, var_parsed,
};
use runwarden_platform::internal_auth::InternalSecrets;
use runwarden_platform::{ConfigError, Environment};
use secrecy::SecretString;
use url::Url;

pub const DEFAULT_PORT: u16 = 8083;

/// Not `Debug`: it holds the internal secrets.
pub struct Config {
    pub env: Environment,
    pub port: u16,
    /// As the `runwarden_quotas` role.
    pub database_url: SecretString,
    /// auth's published keys (`{auth}/.well-known/jwks.json`), fetched at start.
    pub auth_jwks_url: Url,
    pub push: PushConfig,
    /// `X-Internal-Auth` secrets for `/internal/` (one, or two during a rotation).
    pub internal_secrets: InternalSecrets,
    /// How long past its cap a reservation waits before the reaper settles it at the cap.
    pub reaper_grace_secs: u64,
    pub trusted_proxy_hops: usize,
    pub project: Option<String>,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let env = Environment::from_env()?;
        Ok(Self {
            env,
            port: port(DEFAULT_PORT)?,
            database_url: required_secret("DATABASE_URL")?,
            auth_jwks_url: http_url("AUTH_JWKS_URL", &required_var("AUTH_JWKS_URL")?)?,
            push: PushConfig::from_env(env)?,
            internal_secrets: InternalSecrets::parse(&required_secret("INTERNAL_AUTH_SECRETS")?)?,
            reaper_grace_secs: var_parsed("REAPER_GRACE_SECS", 120)?,
            trusted_proxy_hops: var_parsed("TRUSTED_PROXY_HOPS", 0)?,
            project: optional_var("GOOGLE_CLOUD_PROJECT"),
        })
    }
}
