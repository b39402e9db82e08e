//! quotas: per-plan limits and the cost of runs (docs/architecture.md §2, admission and settlement).
//!
//! - **Plans** (`plans` table: trial, team, enterprise) set active projects, runs per UTC
//!   calendar month, parallel runs, the wall-clock cap per run, the monthly budget, the
//!   plan's rate (cents per hour) and the request rate. **Overrides** (`quota_overrides`)
//!   replace plan values field by field, except on trial, whose caps are hard: overrides are
//!   refused there and ignored if present. The rules are plain functions in [`rules`].
//! - **Admission** (`POST /internal/admissions`, from runs): one transaction that locks the
//!   org's `quota_usage` row (`SELECT ... FOR UPDATE`) so admissions of one org serialize,
//!   checks parallel runs (429 `parallel_runs_exceeded`), runs this month (402
//!   `monthly_runs_exceeded`) and spent + reserved + this run's worst case (cap x rate)
//!   against the budget (402 `monthly_budget_exceeded`), then reserves the worst case.
//!   Idempotent by run id: a second admission returns the first decision.
//! - **Settlement** (`POST /internal/settlements`, or `POST /push/run-finished` from
//!   Pub/Sub): replaces the reservation with the actual cost (never past the granted cap) and
//!   frees the parallel slot; idempotent by run id. [`reaper`] settles reservations
//!   past cap + grace as timed out at the cap (the binary runs it every 30 s).
//! - **Plan and overrides** (`PUT /internal/orgs/{org}/plan|overrides`): audited as system
//!   actions in the same transaction (outbox).
//! - **Usage** (`GET /v1/orgs/{org}/usage`): any member reads the org's plan, limits and
//!   month; to anyone else the org does not exist (404).
//!
//! Internal routes require `X-Internal-Auth` (`INTERNAL_AUTH_SECRETS`). The app connects as
//! `runwarden_quotas`; every tenant table is under row-level security keyed by `app.org_id`.
//! `App::build` wires configuration into a served router; `router` is the same routes
//! without a socket, for in-process tests.

pub mod config;
pub mod error;
pub mod extract;
pub mod reaper;
pub mod routes;
pub mod rules;
pub mod store;

use std::time::Duration;

use anyhow::Context;
use axum::Router;
use runwarden_events::push::PushAuth;
use runwarden_platform::app::{self, Service};
use runwarden_platform::internal_auth::InternalSecrets;
use runwarden_platform::request::TrustedProxyHops;
use runwarden_platform::server::Limits;
use runwarden_tokens::TokenVerifier;
use sqlx::PgPool;

pub use config::Config;
pub use runwarden_events::push::PushConfig;

#[derive(Clone)]
pub struct AppState {
    /// As `runwarden_quotas`.
    pub pool: PgPool,
    /// auth's public keys, for access tokens.
    pub verifier: TokenVerifier,
    /// How long past its cap a reservation waits before the reaper settles it at the cap.
    pub reaper_grace: Duration,
}

/// Every quotas route, with the platform's shared layers.
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

/// The served router on its listener, with the [`reaper`] beside it.
pub struct App {
    service: Service,
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
        let limits = Limits::default();
        let grace = Duration::from_secs(config.reaper_grace_secs);
        let router = router(
            AppState {
                pool: pool.clone(),
                verifier,
                reaper_grace: grace,
            },
            push_auth,
            config.internal_secrets,
            config.service.hops(),
            &limits,
        );
        let listener = app::bind(config.service.port).await?;
        let service = Service::new("quotas", listener, router, limits)
            .background("reaper", move |stop| {
                reaper::run(stop, pool, grace, reaper::INTERVAL)
            });
        Ok(Self { service })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.service.local_addr()
    }

    /// Serves until SIGTERM, with the reaper running beside it; shuts down in the
    /// platform's order (drain requests, then stop the reaper).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.service.run_until_stopped().await
    }
}
