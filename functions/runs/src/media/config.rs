//! Media configuration (documented in `.env.example`) and building [`Media`] from it.

use anyhow::Context;
use runwarden_platform::config::{
    http_url, optional_secret, optional_var, required_secret, var_parsed,
};
use runwarden_platform::{ConfigError, Environment};
use runwarden_tokens::TokenSigner;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

use super::{EventHub, Media, MediaKeys, StreamLimits};
use crate::storage::{ArtifactStore, SigningKey};

impl Media {
    /// From configuration. Outside production a missing media key or storage key is
    /// replaced by a throwaway one, with a warning (tokens and URLs then die with the
    /// process); production refuses to start without its media key (see [`MediaConfig`]).
    pub async fn build(config: MediaConfig, pool: PgPool) -> anyhow::Result<Self> {
        let signer = match &config.signing_key {
            Some(pem) => TokenSigner::from_pem(&config.signing_key_id, pem.expose_secret())
                .context("MEDIA_SIGNING_KEY is not a valid Ed25519 PKCS#8 PEM key")?,
            None => {
                tracing::warn!(
                    "MEDIA_SIGNING_KEY is not set: using a throwaway key (development only)"
                );
                TokenSigner::generate(&config.signing_key_id)
            }
        };
        let key = match (&config.storage_signing_key_file, config.env.is_production()) {
            (Some(path), _) => {
                let raw = std::fs::read_to_string(path).with_context(|| {
                    format!("STORAGE_SIGNING_KEY_FILE: cannot read {}", path.display())
                })?;
                SigningKey::ServiceAccount(
                    serde_json::from_str(&raw)
                        .context("STORAGE_SIGNING_KEY_FILE is not a JSON key file")?,
                )
            }
            (None, true) => SigningKey::Adc,
            (None, false) => {
                tracing::warn!(
                    "STORAGE_SIGNING_KEY_FILE is not set: signing storage URLs with a throwaway \
                     key (development only; the emulator ignores signatures)"
                );
                SigningKey::ServiceAccount(crate::storage::throwaway_service_account_key(
                    "runs-dev@runwarden-local.iam.gserviceaccount.com",
                )?)
            }
        };
        let store = ArtifactStore::new(
            &config.artifacts_bucket,
            key,
            config.storage_emulator_host.clone(),
        )
        .await?;
        let mut media = Self::new(MediaKeys::new(signer), pool.clone(), store);
        media.hub = EventHub::with_limits(pool, config.stream_limits);
        Ok(media)
    }
}

/// Media configuration (documented in `.env.example`). Not `Debug`: it holds the key.
pub struct MediaConfig {
    pub env: Environment,
    /// Ed25519 PKCS#8 PEM signing media tokens (`MEDIA_SIGNING_KEY`; required in production).
    pub signing_key: Option<SecretString>,
    /// Its key id (`MEDIA_SIGNING_KEY_ID`, default `media-1`).
    pub signing_key_id: String,
    /// The bucket artifacts go to (`ARTIFACTS_BUCKET`, default `runwarden-artifacts`).
    pub artifacts_bucket: String,
    /// A service-account key JSON that signs storage URLs offline
    /// (`STORAGE_SIGNING_KEY_FILE`); unset in production: ADC's signer.
    pub storage_signing_key_file: Option<std::path::PathBuf>,
    /// The Cloud Storage emulator (`STORAGE_EMULATOR_HOST`, e.g. `http://127.0.0.1`);
    /// refused in production.
    pub storage_emulator_host: Option<String>,
    /// Concurrent event streams per media token (`MEDIA_STREAMS_PER_TOKEN`, default 3) and
    /// per run (`MEDIA_STREAMS_PER_RUN`, default 20), at least 1 each.
    pub stream_limits: StreamLimits,
}

impl MediaConfig {
    pub fn from_env(env: Environment) -> Result<Self, ConfigError> {
        let signing_key = if env.is_production() {
            Some(required_secret("MEDIA_SIGNING_KEY")?)
        } else {
            optional_secret("MEDIA_SIGNING_KEY")
        };
        let artifacts_bucket =
            optional_var("ARTIFACTS_BUCKET").unwrap_or_else(|| "runwarden-artifacts".into());
        let bucket_ok = (3..=63).contains(&artifacts_bucket.len())
            && artifacts_bucket.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            });
        if !bucket_ok {
            return Err(ConfigError::Invalid {
                name: "ARTIFACTS_BUCKET",
                reason: "expected a bucket name: 3 to 63 of a-z, 0-9, -, _ and .".into(),
            });
        }
        let storage_emulator_host = match optional_var("STORAGE_EMULATOR_HOST") {
            Some(_) if env.is_production() => {
                return Err(ConfigError::Invalid {
                    name: "STORAGE_EMULATOR_HOST",
                    reason: "the storage emulator is for the local stack only".into(),
                });
            }
            Some(raw) => Some(http_url("STORAGE_EMULATOR_HOST", &raw)?.to_string()),
            None => None,
        };
        let defaults = StreamLimits::default();
        let stream_limits = StreamLimits {
            per_token: at_least_one(
                "MEDIA_STREAMS_PER_TOKEN",
                var_parsed("MEDIA_STREAMS_PER_TOKEN", defaults.per_token)?,
            )?,
            per_run: at_least_one(
                "MEDIA_STREAMS_PER_RUN",
                var_parsed("MEDIA_STREAMS_PER_RUN", defaults.per_run)?,
            )?,
        };
        Ok(Self {
            env,
            stream_limits,
            signing_key,
            signing_key_id: optional_var("MEDIA_SIGNING_KEY_ID")
                .unwrap_or_else(|| "media-1".into()),
            artifacts_bucket,
            storage_signing_key_file: optional_var("STORAGE_SIGNING_KEY_FILE")
                .map(std::path::PathBuf::from),
            storage_emulator_host,
        })
    }
}

fn at_least_one(name: &'static str, value: u32) -> Result<u32, ConfigError> {
    if value == 0 {
        return Err(ConfigError::Invalid {
            name,
            reason: "expected at least 1".into(),
        });
    }
    Ok(value)
}
