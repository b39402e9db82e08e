//! runs: projects, runs, their dispatch to one runner each, secrets and media (see
//! `docs/architecture.md`).
//!
//! - **Projects** (`/v1/orgs/{org}/projects[/{project}]`): create, list, get, rename, archive,
//!   unarchive, delete; the active-project quota holds exactly (see [`projects`]).
//! - **Runs** (`POST .../projects/{project}/runs`, `GET .../runs[/{run}]`, `POST .../cancel`):
//!   admitted by quotas (its 429/402 passed on, [`admission`]), idempotent by
//!   `Idempotency-Key`; see [`runs`] for a run's life.
//! - **Dispatch** (`POST /push/run-dispatch`): one runner execution per run, however often
//!   Pub/Sub delivers ([`dispatch`]); the runner job exchanges a single-use ticket for a
//!   token bound to its run ([`tickets`]) and calls the runner API (`/internal/runner/...`,
//!   `routes::runner_api`, bodies from `runwarden_contracts::runner_api`).
//! - **Reaper** ([`reaper`]): runs past their cap plus grace are ended by the server.
//! - **Secrets** (`PUT|GET|DELETE .../projects/{project}/secrets[/{name}]`): versioned,
//!   AES-256-GCM under a per-org data key wrapped by the configured key ring; the API answers
//!   metadata only, the runner reads plaintexts through [`secrets::read_for_runner`].
//! - **Media** ([`media`], [`storage`]): 5-minute media tokens of one run and scope, the
//!   run's events as Server-Sent Events (one `LISTEN` per process, fanned out), and artifacts
//!   through V4 signed Cloud Storage URLs (`/v1/media/...`, `POST .../media-token`).
//!
//! The app connects as `runwarden_runs`; every tenant table is under row-level security
//! keyed by `app.org_id`. `App::build` wires configuration into a served router; `router`
//! is the same routes without a socket, for in-process tests.

pub mod admission;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod extract;
pub mod media;
pub mod projects;
pub mod reaper;
pub mod routes;
mod rows;
pub mod runs;
pub mod secrets;
pub mod storage;
pub mod tickets;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use runwarden_events::bus::PubSubBus;
use runwarden_events::push::PushAuth;
use runwarden_events::relay::Relay;
use runwarden_platform::app::{self, Service};
use runwarden_platform::internal_auth::InternalSecrets;
use runwarden_platform::request::TrustedProxyHops;
use runwarden_platform::server::Limits;
use runwarden_tokens::TokenVerifier;
use sqlx::PgPool;

pub use config::Config;

/// How often the reaper looks for overdue runs.
pub const REAPER_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct AppState {
    /// As `runwarden_runs`.
    pub pool: PgPool,
    /// auth's public keys, for access tokens.
    pub verifier: TokenVerifier,
    pub quotas: admission::QuotasClient,
    pub executor: dispatch::Executor,
    pub agents: runs::Agents,
    /// How long past its cap a runner token lives.
    pub runner_grace: chrono::Duration,
    /// The outbox relay the scheduler's `relay-sweep` task drives (`None`: not configured,
    /// the task answers 503).
    pub sweeper: Option<Arc<Relay>>,
    /// Media tokens, the SSE fan-out and artifact storage.
    pub media: media::Media,
    /// The secrets vault's key-encryption keys, parsed once at start.
    pub vault: Arc<runwarden_vault::KeyRing>,
}

/// runs' request limits: the platform's, with room in a body for a 64 KiB secret value even
/// when JSON escaping doubles it.
pub fn limits() -> Limits {
    Limits {
        body_bytes: 5 * secrets::MAX_VALUE_BYTES / 2,
        ..Limits::default()
    }
}

/// Every runs route, with the platform's shared layers.
pub fn router(
    state: AppState,
    push_auth: PushAuth,
    secrets: InternalSecrets,
    hops: TrustedProxyHops,
    limits: &Limits,
) -> Router {
    let verifier = state.verifier.clone();
    runwarden_ratelimit::served(
        state.pool.clone(),
        routes::router(state, push_auth, secrets),
        limits,
        hops,
        routes::ROUTES,
        verifier,
    )
}

/// runs as served: the router beside its background tasks (the outbox relay and the
/// reaper), and the SSE hub, whose open streams end as soon as the signal comes so they do
/// not hold the drain.
pub struct App {
    service: Service,
    hub: media::EventHub,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let pool = runwarden_store::connect(&config.service.database_url)?;
        let verifier = runwarden_tokens::fetch_verifier_retrying(
            config.auth_jwks_url.as_str(),
            config.auth_jwks_refresh,
            12,
        )
        .await
        .context("AUTH_JWKS_URL: no usable key set")?;
        let push_auth = config.push.into_auth().await?;
        let bus = PubSubBus::connect(config.relay.pubsub.clone())
            .await
            .context("building the Pub/Sub publisher")?;
        let bus: Arc<PubSubBus> = Arc::new(bus);
        let relay =
            Relay::new(pool.clone(), bus.clone()).with_settings(config.relay.settings.clone());
        let sweeper = Relay::new(pool.clone(), bus).with_settings(config.relay.settings.clone());
        let grace = Duration::from_secs(config.runner_grace_secs);
        let executor = match &config.runner_job {
            Some(job) => dispatch::Executor::CloudRun(
                dispatch::CloudRunExecutor::connect(
                    job.clone(),
                    config.runner_runs_url.clone(),
                    i64::try_from(config.runner_grace_secs).unwrap_or(i64::MAX),
                    config.run_api_endpoint.as_deref(),
                )
                .await
                .context("building the Cloud Run jobs client")?,
            ),
            None => dispatch::Executor::Local(dispatch::LocalExecutor::new(
                config.runner_bin.clone(),
                config.runner_runs_url.clone(),
                config.internal_secrets.current(),
            )),
        };
        let media = media::Media::build(config.media, pool.clone())
            .await
            .context("media keys and artifact storage")?;
        let hub = media.hub.clone();
        let state = AppState {
            pool: pool.clone(),
            verifier,
            quotas: admission::QuotasClient::new(
                &config.quotas_url,
                config.internal_secrets.current(),
            )?,
            executor: executor.clone(),
            agents: config.agents.clone(),
            runner_grace: chrono::Duration::from_std(grace)?,
            sweeper: Some(Arc::new(sweeper)),
            vault: Arc::new(config.vault.unwrap_or_else(|| {
                tracing::warn!(
                    "VAULT_KEKS is not set: secrets are encrypted under a throwaway development \
                     key, unreadable after this process ends"
                );
                runwarden_vault::KeyRing::generate("dev")
            })),
            media,
        };
        let limits = limits();
        let router = router(
            state,
            push_auth,
            config.internal_secrets,
            config.service.hops(),
            &limits,
        );
        let listener = app::bind(config.service.port).await?;
        let service = Service::new("runs", listener, router, limits)
            // Publishes what the last requests committed before it stops.
            .background("outbox relay", move |mut stop| async move {
                relay.run(stop.stopped()).await;
            })
            .background("reaper", move |stop| {
                reaper::run(stop, pool, executor, grace, REAPER_INTERVAL)
            });
        Ok(Self { service, hub })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.service.local_addr()
    }

    /// Serves until SIGTERM in the platform's shutdown order (drain, then the relay and the
    /// reaper stop); open event streams end with the signal itself.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let hub = self.hub;
        self.service
            .run_until(async move {
                runwarden_platform::server::shutdown_signal().await;
                hub.close();
            })
            .await
    }
}
