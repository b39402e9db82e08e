//! Re-wraps every org's data key under the active key-encryption key, after a KEK rotation:
//!
//! 1. give every runs instance the new key as well (`VAULT_KEKS=v1:...,v2:...`) and make it
//!    active (`VAULT_KEK_ACTIVE=v2`): new data keys are wrapped under v2, old ones still open;
//! 2. run this job with the same two variables and `DATABASE_URL` as `runwarden_runs`; it
//!    re-wraps what is still under another version (secrets' ciphertexts are not touched) and
//!    may be run again at any time;
//! 3. once it reports success, drop v1 from `VAULT_KEKS`.
//!
//! Exits 2 on a configuration error, 1 when some key could not be re-wrapped (each is logged),
//! 0 otherwise.

use anyhow::Context;
use runwarden_platform::config::{optional_var, required_secret};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    // The key ring is required here whatever RUNWARDEN_ENV says: a throwaway key would make
    // every data key unreadable.
    let config = required_secret("DATABASE_URL")
        .and_then(|url| runwarden_runs::config::required_vault_keys().map(|ring| (url, ring)));
    let (url, ring) = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("vault-rotate: configuration error: {e}");
            std::process::exit(2);
        }
    };
    runwarden_platform::telemetry::init(optional_var("GOOGLE_CLOUD_PROJECT"));
    let pool = runwarden_store::connect(&url)?;
    let count = runwarden_runs::secrets::rewrap_data_keys(&pool, &ring)
        .await
        .context("re-wrapping data keys")?;
    tracing::info!(
        count,
        kek.version = ring.active_version(),
        "data keys re-wrapped"
    );
    eprintln!(
        "vault-rotate: {count} data keys re-wrapped under {}",
        ring.active_version()
    );
    Ok(())
}
