//! runs' configuration, from the environment (documented in `.env.example`).

use std::path::PathBuf;

use runwarden_events::push::PushConfig;
use runwarden_events::relay::RelayConfig;
use runwarden_platform::config::{
    auth_jwks_url, http_url, optional_var, required_secret, required_var, var_parsed,
};
use runwarden_platform::internal_auth::InternalSecrets;
use runwarden_platform::{ConfigError, Environment, ServiceConfig};
use runwarden_vault::{KeyRing, KeyRingError};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::runs::Agents;

pub const DEFAULT_PORT: u16 = 8082;

/// Not `Debug`: it holds the database URL and the internal secrets.
pub struct Config {
    /// What every function reads the same way: environment, port, database URL (as the
    /// `runwarden_runs` role), trusted proxy hops, project.
    pub service: ServiceConfig,
    /// auth's published keys (`{auth}/.well-known/jwks.json`), fetched at start.
    pub auth_jwks_url: Url,
    /// When auth's keys are fetched again (`AUTH_JWKS_MIN_REFETCH_SECS`, `AUTH_JWKS_MAX_AGE_SECS`).
    pub auth_jwks_refresh: runwarden_tokens::JwksRefresh,
    /// quotas' base URL, for admissions.
    pub quotas_url: Url,
    /// `X-Internal-Auth` secrets: checked on `/internal/`, the first sent to quotas.
    pub internal_secrets: InternalSecrets,
    pub push: PushConfig,
    pub relay: RelayConfig,
    /// The agents runner images carry (`RUNS_AGENTS`, comma list; default `demo`).
    pub agents: Agents,
    /// The Cloud Run job that runs runners (`projects/P/locations/L/jobs/J`); required in
    /// production, where runs never starts processes itself. Unset: the local executor.
    pub runner_job: Option<String>,
    /// The Run API's base URL, for tests against a stand-in (`RUN_API_ENDPOINT`).
    pub run_api_endpoint: Option<String>,
    /// The runner binary the local executor starts (default: `runner` beside this binary).
    pub runner_bin: PathBuf,
    /// The base URL a runner reaches runs at (default `http://127.0.0.1:{port}`).
    pub runner_runs_url: String,
    /// How long past its cap a run's token lives and the reaper waits.
    pub runner_grace_secs: u64,
    /// Media tokens and artifact storage.
    pub media: crate::media::MediaConfig,
    /// The secrets vault's key-encryption keys (`VAULT_KEKS`, `VAULT_KEK_ACTIVE`). Always set
    /// in production; `None` in development when unset (`App::build` then makes a throwaway).
    pub vault: Option<KeyRing>,
}

/// The vault's key ring: `VAULT_KEKS=v1:<base64 of 32 bytes>[,v2:...]` and the version that
/// wraps new data keys, `VAULT_KEK_ACTIVE`. Required in production (runs refuses to start
/// without it); in development optional. A malformed ring is refused everywhere; the error
/// names the variable and never echoes a key.
pub fn vault_keys(env: Environment) -> Result<Option<KeyRing>, ConfigError> {
    if env.is_production() {
        return required_vault_keys().map(Some);
    }
    runwarden_platform::config::optional_secret("VAULT_KEKS")
        .map(|keks| parse_vault_keys(&keks))
        .transpose()
}

/// The vault's key ring, required whatever the environment (the `vault-rotate` job).
pub fn required_vault_keys() -> Result<KeyRing, ConfigError> {
    parse_vault_keys(&required_secret("VAULT_KEKS")?)
}

fn parse_vault_keys(keks: &SecretString) -> Result<KeyRing, ConfigError> {
    let active = required_var("VAULT_KEK_ACTIVE")?;
    KeyRing::parse(keks.expose_secret(), &active).map_err(|e| ConfigError::Invalid {
        name: match e {
            KeyRingError::ActiveMissing => "VAULT_KEK_ACTIVE",
            _ => "VAULT_KEKS",
        },
        reason: e.to_string(),
    })
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        let env = Environment::from_env()?;
        // The vault's keys first: in production they are what must not be missing.
        let vault = vault_keys(env)?;
        let service = ServiceConfig::from_env(DEFAULT_PORT)?;
        let port = service.port;
        let agents_list = optional_var("RUNS_AGENTS").unwrap_or_else(|| "demo".into());
        let agents = Agents::parse(&agents_list).ok_or(ConfigError::Invalid {
            name: "RUNS_AGENTS",
            reason: "expected a comma list of agent names (a-z, 0-9, - and _)".into(),
        })?;
        let runner_bin = match optional_var("RUNNER_BIN") {
            Some(path) => PathBuf::from(path),
            None => std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(|dir| dir.join("runner")))
                .unwrap_or_else(|| PathBuf::from("runner")),
        };
        let runner_job = optional_var("RUNNER_JOB");
        if env == Environment::Production && runner_job.is_none() {
            return Err(ConfigError::Invalid {
                name: "RUNNER_JOB",
                reason: "required in production (projects/P/locations/L/jobs/J)".into(),
            });
        }
        Ok(Self {
            service,
            runner_job,
            run_api_endpoint: optional_var("RUN_API_ENDPOINT"),
            auth_jwks_url: auth_jwks_url()?,
            auth_jwks_refresh: runwarden_platform::config::auth_jwks_refresh()?,
            quotas_url: http_url("QUOTAS_URL", &required_var("QUOTAS_URL")?)?,
            internal_secrets: InternalSecrets::parse(&required_secret("INTERNAL_AUTH_SECRETS")?)?,
            push: PushConfig::from_env(env)?,
            relay: RelayConfig::from_env()?,
            agents,
            runner_bin,
            runner_runs_url: optional_var("RUNNER_RUNS_URL")
                .unwrap_or_else(|| format!("http://127.0.0.1:{port}")),
            runner_grace_secs: var_parsed("RUNNER_GRACE_SECS", 30)?,
            vault,
            media: crate::media::MediaConfig::from_env(env)?,
        })
    }
}
