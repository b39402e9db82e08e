//! quotas' configuration, from the environment (documented in `.env.example`).

use runwarden_platform::config::{
    optional_secret, optional_var, parse_value, port, required_secret, required_var, var_parsed,
};
use runwarden_platform::internal_auth::InternalSecrets;
use runwarden_platform::{ConfigError, Environment};
use runwarden_tokens::oidc::GOOGLE_JWKS_URL;
use secrecy::{ExposeSecret, SecretString};
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

/// How pushes are authenticated.
#[derive(Debug, Clone)]
pub enum PushConfig {
    /// Local stack: the secret in the push endpoint URL's `token` parameter.
    SharedSecret(SecretString),
    /// Production: Google's OIDC token for this audience from this service account.
    GoogleOidc {
        audience: String,
        service_account: String,
        jwks_url: Url,
    },
}

fn url_var(name: &'static str, raw: &str) -> Result<Url, ConfigError> {
    let url: Url = parse_value(name, raw)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::Invalid {
            name,
            reason: "expected an http(s) URL".into(),
        });
    }
    Ok(url)
}

impl PushConfig {
    /// Production requires Google's OIDC (`PUSH_AUDIENCE`, `PUSH_SERVICE_ACCOUNT`) and refuses
    /// the shared secret; development uses OIDC when `PUSH_AUDIENCE` is set, else requires
    /// `PUSH_SECRET`. Either way pushes are authenticated.
    pub fn from_env(env: Environment) -> Result<Self, ConfigError> {
        let oidc = env.is_production() || optional_var("PUSH_AUDIENCE").is_some();
        if !oidc {
            let secret = required_secret("PUSH_SECRET")?;
            if secret.expose_secret().len() < runwarden_events::push::MIN_SECRET_LEN {
                return Err(ConfigError::Invalid {
                    name: "PUSH_SECRET",
                    reason: "must be at least 16 characters".into(),
                });
            }
            return Ok(Self::SharedSecret(secret));
        }
        if env.is_production() && optional_secret("PUSH_SECRET").is_some() {
            return Err(ConfigError::Invalid {
                name: "PUSH_SECRET",
                reason: "not accepted in production: pushes carry Google's OIDC token".into(),
            });
        }
        let audience = required_var("PUSH_AUDIENCE")?;
        let service_account = required_var("PUSH_SERVICE_ACCOUNT")?;
        if !service_account.contains('@') {
            return Err(ConfigError::Invalid {
                name: "PUSH_SERVICE_ACCOUNT",
                reason: "expected the push service account's email".into(),
            });
        }
        let jwks_url = url_var(
            "GOOGLE_OIDC_JWKS_URL",
            &optional_var("GOOGLE_OIDC_JWKS_URL").unwrap_or_else(|| GOOGLE_JWKS_URL.into()),
        )?;
        Ok(Self::GoogleOidc {
            audience,
            service_account,
            jwks_url,
        })
    }
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let env = Environment::from_env()?;
        Ok(Self {
            env,
            port: port(DEFAULT_PORT)?,
            database_url: required_secret("DATABASE_URL")?,
            auth_jwks_url: url_var("AUTH_JWKS_URL", &required_var("AUTH_JWKS_URL")?)?,
            push: PushConfig::from_env(env)?,
            internal_secrets: InternalSecrets::parse(&required_secret("INTERNAL_AUTH_SECRETS")?)?,
            reaper_grace_secs: var_parsed("REAPER_GRACE_SECS", 120)?,
            trusted_proxy_hops: var_parsed("TRUSTED_PROXY_HOPS", 0)?,
            project: optional_var("GOOGLE_CLOUD_PROJECT"),
        })
    }
}
