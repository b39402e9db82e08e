//! quotas: per-plan limits and the cost of runs (DESIGN.md section 5).
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
//!   frees the parallel slot; idempotent by run id. [`store::reap_expired`] settles
//!   reservations past cap + grace as timed out at the cap (the binary runs it every 30 s).
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
pub mod routes;
pub mod rules;
pub mod store;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use runwarden_events::push::PushAuth;
use runwarden_platform::internal_auth::InternalSecrets;
use runwarden_platform::request::TrustedProxyHops;
use runwarden_platform::server::{self, Limits};
use runwarden_tokens::TokenVerifier;
use sqlx::PgPool;
use tokio::net::TcpListener;

pub use config::Config;
pub use runwarden_events::push::PushConfig;

/// How often the binary's reaper looks for reservations past their cap.
pub const REAPER_INTERVAL: Duration = Duration::from_secs(30);

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
    // Per-org request rate, shared with every other function through the database.
    let rate_limit = runwarden_ratelimit::OrgRateLimit::from_plans(state.pool.clone());
    server::app(
        rate_limit.apply(routes::router(state, push_auth, secrets)),
        limits,
        hops,
    )
}

/// One reaper pass: settles reservations past their cap plus `grace` as timed out, and
/// purges idle rate-limit keys (every instance of every function writes them; one sweeper
/// is enough). Run every [`REAPER_INTERVAL`] by the binary and by the scheduler's `reap`
/// task (`POST /internal/tasks/reap`), which keeps it going while Cloud Run throttles an
/// idle instance. Answers what it did.
pub async fn reap(pool: &PgPool, grace: Duration) -> anyhow::Result<serde_json::Value> {
    let settled = store::reap_expired(pool, grace)
        .await
        .map_err(|e| anyhow::anyhow!("reaping reservations: {e}"))?;
    let purged = runwarden_ratelimit::purge_idle(pool).await?;
    Ok(serde_json::json!({"settled": settled, "rate_limit_keys_purged": purged}))
}

/// Runs [`reap`] every `every` until the process ends.
pub fn spawn_reaper(pool: PgPool, grace: Duration, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = reap(&pool, grace).await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "reaper pass failed; retrying next tick"
                );
            }
        }
    })
}

pub struct App {
    listener: TcpListener,
    router: Router,
    limits: Limits,
    pool: PgPool,
    reaper_grace: Duration,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let options = runwarden_store::connect_options(&config.database_url)?;
        let pool = runwarden_store::pool(options, &runwarden_store::PoolSettings::default());
        let verifier = runwarden_tokens::fetch_verifier_retrying(config.auth_jwks_url.as_str(), 12)
            .await
            .context("AUTH_JWKS_URL: no usable key set")?;
        let push_auth = config.push.into_auth().await?;
        let limits = Limits::default();
        let router = router(
            AppState {
                pool: pool.clone(),
                verifier,
                reaper_grace: Duration::from_secs(config.reaper_grace_secs),
            },
            push_auth,
            config.internal_secrets,
            TrustedProxyHops(config.trusted_proxy_hops),
            &limits,
        );
        let listener = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], config.port)))
            .await
            .with_context(|| format!("binding port {}", config.port))?;
        Ok(Self {
            listener,
            router,
            limits,
            pool,
            reaper_grace: Duration::from_secs(config.reaper_grace_secs),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until SIGTERM, with the reaper running beside it.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        tracing::info!(addr = %self.local_addr()?, "quotas listening");
        let reaper = spawn_reaper(self.pool.clone(), self.reaper_grace, REAPER_INTERVAL);
        let result = server::serve(
            self.listener,
            self.router,
            &self.limits,
            server::shutdown_signal(),
        )
        .await;
        reaper.abort();
        result
    }
}
