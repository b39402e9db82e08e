//! Configuration comes only from environment variables, parsed once at boot. Every error
//! names the variable so an operator knows what to fix.

use std::fmt;
use std::str::FromStr;

use secrecy::SecretString;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("missing required environment variable {0}")]
    Missing(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Where the process runs. Production refuses to start without its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

impl Environment {
    pub fn from_env() -> Result<Self, ConfigError> {
        match optional_var("RUNWARDEN_ENV").as_deref() {
            None | Some("development") | Some("dev") | Some("test") => Ok(Self::Development),
            Some("production") | Some("prod") => Ok(Self::Production),
            Some(other) => Err(ConfigError::Invalid {
                name: "RUNWARDEN_ENV",
                reason: format!("expected development or production, got {other:?}"),
            }),
        }
    }

    pub fn is_production(self) -> bool {
        self == Self::Production
    }
}

/// A variable that may be absent; an empty value counts as absent.
pub fn optional_var(name: &'static str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

pub fn required_var(name: &'static str) -> Result<String, ConfigError> {
    optional_var(name).ok_or(ConfigError::Missing(name))
}

/// A secret variable: held as `SecretString` so it cannot be printed by accident.
pub fn optional_secret(name: &'static str) -> Option<SecretString> {
    optional_var(name).map(SecretString::from)
}

pub fn required_secret(name: &'static str) -> Result<SecretString, ConfigError> {
    required_var(name).map(SecretString::from)
}

/// Parses a variable, falling back to `default` when it is absent.
pub fn var_parsed<T>(name: &'static str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match optional_var(name) {
        None => Ok(default),
        Some(raw) => parse_value(name, &raw),
    }
}

pub fn parse_value<T>(name: &'static str, raw: &str) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    raw.trim()
        .parse()
        .map_err(|e: T::Err| ConfigError::Invalid {
            name,
            reason: e.to_string(),
        })
}

/// An `http(s)` URL variable.
pub fn http_url(name: &'static str, raw: &str) -> Result<url::Url, ConfigError> {
    let url: url::Url = parse_value(name, raw)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ConfigError::Invalid {
            name,
            reason: "expected an http(s) URL".into(),
        });
    }
    Ok(url)
}

/// The port a function listens on: `PORT` on Cloud Run, the function's default locally.
pub fn port(default: u16) -> Result<u16, ConfigError> {
    var_parsed("PORT", default)
}

/// What every HTTP function reads the same way: where it runs, its port, its database, how
/// many proxies stand in front of it, and its Google Cloud project. A function's `Config`
/// holds one of these beside its own variables.
#[derive(Debug)]
pub struct ServiceConfig {
    pub env: Environment,
    /// `PORT` on Cloud Run, the function's default locally.
    pub port: u16,
    /// `DATABASE_URL`, as the function's own database role.
    pub database_url: SecretString,
    /// `TRUSTED_PROXY_HOPS` (default 0): proxies whose `X-Forwarded-For` entries are trusted.
    pub trusted_proxy_hops: usize,
    /// `GOOGLE_CLOUD_PROJECT`, when set.
    pub project: Option<String>,
}

impl ServiceConfig {
    pub fn from_env(default_port: u16) -> Result<Self, ConfigError> {
        Ok(Self {
            env: Environment::from_env()?,
            port: port(default_port)?,
            database_url: required_secret("DATABASE_URL")?,
            trusted_proxy_hops: var_parsed("TRUSTED_PROXY_HOPS", 0)?,
            project: optional_var("GOOGLE_CLOUD_PROJECT"),
        })
    }

    pub fn hops(&self) -> crate::request::TrustedProxyHops {
        crate::request::TrustedProxyHops(self.trusted_proxy_hops)
    }
}

/// `AUTH_JWKS_URL`: auth's published keys (`{auth}/.well-known/jwks.json`), read by every
/// function that accepts access tokens.
pub fn auth_jwks_url() -> Result<url::Url, ConfigError> {
    http_url("AUTH_JWKS_URL", &required_var("AUTH_JWKS_URL")?)
}

/// How a function keeps auth's keys current after start-up (see `runwarden_tokens::JwksRefresh`):
/// `AUTH_JWKS_MIN_REFETCH_SECS` (default 30), the least time between two fetches caused by
/// tokens with an unknown `kid`; `AUTH_JWKS_MAX_AGE_SECS` (default 300), the age after which
/// the keys are refreshed in the background.
pub fn auth_jwks_refresh() -> Result<runwarden_tokens::JwksRefresh, ConfigError> {
    let default = runwarden_tokens::JwksRefresh::default();
    Ok(runwarden_tokens::JwksRefresh {
        min_refetch_interval: std::time::Duration::from_secs(var_parsed(
            "AUTH_JWKS_MIN_REFETCH_SECS",
            default.min_refetch_interval.as_secs(),
        )?),
        max_age: std::time::Duration::from_secs(var_parsed(
            "AUTH_JWKS_MAX_AGE_SECS",
            default.max_age.as_secs(),
        )?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_the_variable() {
        let err = parse_value::<u16>("PORT", "eighty").unwrap_err();
        assert!(err.to_string().contains("PORT"), "{err}");
        assert_eq!(parse_value::<u16>("PORT", " 8080 ").unwrap(), 8080);
    }

    #[test]
    fn missing_error_names_the_variable() {
        assert_eq!(
            ConfigError::Missing("AUTH_SIGNING_KEY").to_string(),
            "missing required environment variable AUTH_SIGNING_KEY"
        );
    }
}
