//! runs: projects, and (as they land) secrets, runs, dispatch and media (DESIGN.md
//! sections 2 and 4).
//!
//! - **Projects** (`/v1/orgs/{org}/projects[/{project}]`): create, list (newest first,
//!   cursor-paginated), get, rename, archive, unarchive, delete. Creating or unarchiving
//!   past the plan's active projects is refused with 402 `active_projects_exceeded`, exactly
//!   under concurrency (see [`projects`]). Every change writes its audit event in the same
//!   transaction.
//!
//! The app connects as `runwarden_runs`; every tenant table is under row-level security
//! keyed by `app.org_id`. `App::build` wires configuration into a served router; `router`
//! is the same routes without a socket, for in-process tests.

pub mod config;
pub mod error;
pub mod extract;
pub mod projects;
pub mod routes;

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use runwarden_platform::request::TrustedProxyHops;
use runwarden_platform::server::{self, Limits};
use runwarden_tokens::TokenVerifier;
use sqlx::PgPool;
use tokio::net::TcpListener;

pub use config::Config;

#[derive(Clone)]
pub struct AppState {
    /// As `runwarden_runs`.
    pub pool: PgPool,
    /// auth's public keys, for access tokens.
    pub verifier: TokenVerifier,
}

/// Every runs route, with the platform's shared layers.
pub fn router(state: AppState, hops: TrustedProxyHops, limits: &Limits) -> Router {
    // Per-org request rate, shared with every other function through the database.
    let rate_limit = runwarden_ratelimit::OrgRateLimit::from_plans(state.pool.clone());
    server::app(rate_limit.apply(routes::router(state)), limits, hops)
}

pub struct App {
    listener: TcpListener,
    router: Router,
    limits: Limits,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let options = runwarden_store::connect_options(&config.database_url)?;
        let pool = runwarden_store::pool(options, &runwarden_store::PoolSettings::default());
        let verifier = runwarden_tokens::fetch_verifier_retrying(config.auth_jwks_url.as_str(), 12)
            .await
            .context("AUTH_JWKS_URL: no usable key set")?;
        let limits = Limits::default();
        let router = router(
            AppState { pool, verifier },
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
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until SIGTERM.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        tracing::info!(addr = %self.local_addr()?, "runs listening");
        server::serve(
            self.listener,
            self.router,
            &self.limits,
            server::shutdown_signal(),
        )
        .await
    }
}
