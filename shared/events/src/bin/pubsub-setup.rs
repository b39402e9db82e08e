//! Creates every topic, dead-letter topic, dead-letter subscription and push subscription of
//! `shared/events/topics.json` on Google's Pub/Sub emulator (`scripts/dev` runs it). Safe to
//! run again: what exists is kept (a push subscription's endpoint is updated).
//!
//! Environment:
//! - `PUBSUB_EMULATOR_HOST` (required): `host:port` of the emulator. This program never
//!   talks to Google's Pub/Sub: Terraform owns the real topics.
//! - `PUBSUB_PROJECT`: the project of the topics, default `runwarden-local`.
//! - `PUSH_SECRET` (required): the per-stack secret each push endpoint carries
//!   (`?token=...`), which the consuming function checks; the emulator sends no OIDC token.
//! - `<FUNCTION>_URL` for each consuming function, e.g. `AUDIT_URL` (default
//!   `http://127.0.0.1:8084`): push endpoint = `{AUDIT_URL}{path}?token={PUSH_SECRET}`.

use anyhow::{Context, bail};
use runwarden_events::bus::{LOCAL_PROJECT, PubSubConfig};
use runwarden_events::topics::{Admin, Created, topology};

/// The local stack's default port of each function (scripts/dev).
fn default_url(function: &str) -> Option<&'static str> {
    Some(match function {
        "auth" => "http://127.0.0.1:8081",
        "runs" => "http://127.0.0.1:8082",
        "quotas" => "http://127.0.0.1:8083",
        "audit" => "http://127.0.0.1:8084",
        _ => return None,
    })
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let host = var("PUBSUB_EMULATOR_HOST")
        .context("PUBSUB_EMULATOR_HOST is required: this program only sets up the emulator")?;
    let project = var("PUBSUB_PROJECT").unwrap_or_else(|| LOCAL_PROJECT.to_owned());
    let secret =
        var("PUSH_SECRET").context("PUSH_SECRET is required (the push endpoints carry it)")?;
    if secret.len() < 32
        || !secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
    {
        bail!("PUSH_SECRET must be at least 32 URL-safe characters (e.g. openssl rand -hex 32)");
    }

    let admin = Admin::connect(PubSubConfig::emulator(project.clone(), &host)).await?;
    let topology = topology();
    let report = admin
        .apply(topology, |sub| {
            let env = format!("{}_URL", sub.function.to_ascii_uppercase());
            let base = match std::env::var(&env).ok().filter(|v| !v.trim().is_empty()) {
                Some(url) => url,
                None => default_url(&sub.function)
                    .with_context(|| {
                        format!("{env} is required for push subscription {}", sub.name)
                    })?
                    .to_owned(),
            };
            let base = base.trim_end_matches('/');
            if !(base.starts_with("http://") || base.starts_with("https://")) {
                bail!("{env} must be an http(s) URL");
            }
            Ok(format!("{base}{}?token={secret}", sub.path))
        })
        .await
        .with_context(|| format!("setting up Pub/Sub on the emulator at {host}"))?;
    for (what, created) in report {
        let state = match created {
            Created::New => "created",
            Created::Existed => "exists",
        };
        eprintln!("pubsub-setup: {what} ({state}) in project {project}");
    }
    Ok(())
}
