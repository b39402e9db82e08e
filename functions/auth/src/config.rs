//! auth's configuration, from the environment (documented in `.env.example`).

use runwarden_platform::config::{
    optional_secret, optional_var, parse_value, required_secret, required_var, var_parsed,
};
use runwarden_platform::{ConfigError, Environment, ServiceConfig};
use secrecy::SecretString;
use url::Url;

pub const DEFAULT_PORT: u16 = 8081;
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

#[derive(Debug)]
pub struct Config {
    /// What every function reads the same way: environment, port, database, proxy hops,
    /// project.
    pub service: ServiceConfig,
    /// Ed25519 PKCS#8 PEM. Required in production; development generates one per start.
    pub signing_key: Option<SecretString>,
    pub signing_key_id: String,
    /// `AUTH_NEXT_SIGNING_KEY` (+ `AUTH_NEXT_SIGNING_KEY_ID`): the key that signs after the
    /// next rotation, published in the JWKS ahead so verifiers know it (never signs here).
    pub next_signing_key: Option<(String, SecretString)>,
    /// `AUTH_PREVIOUS_JWKS`: public JWKs (a JSON key set or array) of keys that
    /// signed before the last rotation, published until their tokens have expired.
    pub previous_signing_keys: Vec<runwarden_tokens::Jwk>,
    pub hash_concurrency: usize,
    pub google: Option<GoogleConfig>,
    /// The outbox relay that publishes this function's events to Pub/Sub.
    pub relay: runwarden_events::relay::RelayConfig,
    /// Who may call the scheduler's tasks (`/internal/tasks/...`): authenticated like
    /// pushes. Required in production; in development the tasks are served only when
    /// `PUSH_SECRET` (or `PUSH_AUDIENCE`) is set.
    pub tasks: Option<runwarden_events::push::PushConfig>,
    /// Outgoing mail: `SMTP_URL` (secret), `MAIL_FROM`, `PUBLIC_APP_URL`.
    pub mail: crate::mail::MailConfig,
}

/// Google sign-in. Every endpoint is configuration so tests can run their own provider.
#[derive(Debug, Clone)]
pub struct GoogleConfig {
    pub client_id: String,
    pub client_secret: SecretString,
    pub redirect_url: Url,
    pub issuer: String,
    pub auth_url: Url,
    pub token_url: Url,
    pub jwks_url: Url,
}

impl GoogleConfig {
    /// Google documents both spellings of its issuer.
    pub fn accepted_issuers(&self) -> Vec<String> {
        if self.issuer == GOOGLE_ISSUER {
            vec![GOOGLE_ISSUER.into(), "accounts.google.com".into()]
        } else {
            vec![self.issuer.clone()]
        }
    }
}

fn url_var(name: &'static str, default: &str) -> Result<Url, ConfigError> {
    let raw = optional_var(name).unwrap_or_else(|| default.to_owned());
    parse_value(name, &raw)
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        // The signing key first: in production it is the variable whose absence matters most,
        // and the error names it before anything else.
        let env = Environment::from_env()?;
        let signing_key = if env.is_production() {
            Some(required_secret("AUTH_SIGNING_KEY")?)
        } else {
            optional_secret("AUTH_SIGNING_KEY")
        };
        let signing_key_id = if env.is_production() {
            required_var("AUTH_SIGNING_KEY_ID")?
        } else {
            optional_var("AUTH_SIGNING_KEY_ID").unwrap_or_else(|| "dev".into())
        };
        let next_signing_key = match optional_secret("AUTH_NEXT_SIGNING_KEY") {
            None => None,
            Some(pem) => Some((required_var("AUTH_NEXT_SIGNING_KEY_ID")?, pem)),
        };
        let previous_signing_keys = match optional_var("AUTH_PREVIOUS_JWKS") {
            None => Vec::new(),
            Some(json) => runwarden_tokens::SigningKeys::parse_previous(&json).map_err(|e| {
                ConfigError::Invalid {
                    name: "AUTH_PREVIOUS_JWKS",
                    reason: e.to_string(),
                }
            })?,
        };
        let service = ServiceConfig::from_env(DEFAULT_PORT)?;
        let google = match optional_var("GOOGLE_OAUTH_CLIENT_ID") {
            None => None,
            Some(client_id) => Some(GoogleConfig {
                client_id,
                client_secret: required_secret("GOOGLE_OAUTH_CLIENT_SECRET")?,
                redirect_url: parse_value(
                    "GOOGLE_OAUTH_REDIRECT_URL",
                    &required_var("GOOGLE_OAUTH_REDIRECT_URL")?,
                )?,
                issuer: optional_var("GOOGLE_OIDC_ISSUER").unwrap_or_else(|| GOOGLE_ISSUER.into()),
                auth_url: url_var(
                    "GOOGLE_OIDC_AUTH_URL",
                    "https://accounts.google.com/o/oauth2/v2/auth",
                )?,
                token_url: url_var(
                    "GOOGLE_OIDC_TOKEN_URL",
                    "https://oauth2.googleapis.com/token",
                )?,
                jwks_url: url_var(
                    "GOOGLE_OIDC_JWKS_URL",
                    "https://www.googleapis.com/oauth2/v3/certs",
                )?,
            }),
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(Self {
            service,
            signing_key,
            signing_key_id,
            next_signing_key,
            previous_signing_keys,
            hash_concurrency: var_parsed("AUTH_HASH_CONCURRENCY", cores)?,
            google,
            relay: runwarden_events::relay::RelayConfig::from_env()?,
            tasks: tasks_config(env)?,
            mail: crate::mail::MailConfig::from_env(env)?,
        })
    }
}

fn tasks_config(
    env: Environment,
) -> Result<Option<runwarden_events::push::PushConfig>, ConfigError> {
    let configured =
        optional_var("PUSH_SECRET").is_some() || optional_var("PUSH_AUDIENCE").is_some();
    if env.is_production() || configured {
        runwarden_events::push::PushConfig::from_env(env).map(Some)
    } else {
        Ok(None)
    }
}
