//! audit: consumes audit events pushed by Pub/Sub on `audit-events`, appends them per org in
//! a hash chain, and serves the log to the org's Admins and Owners (query, export, verify).
//!
//! `App::build` wires configuration into a served router; `router` is the same routes
//! without a socket, for in-process tests.

pub mod chain;
pub mod config;
pub mod error;
pub mod extract;
pub mod ingest;
pub mod offline;
pub mod routes;
pub mod store;

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use runwarden_events::push::PushAuth;
use runwarden_platform::request::TrustedProxyHops;
use runwarden_platform::server::{self, Limits};
use runwarden_tokens::TokenVerifier;
use sqlx::PgPool;
use tokio::net::TcpListener;

pub use config::Config;
pub use runwarden_events::push::PushConfig;

#[derive(Clone)]
pub struct AppState {
    /// As `runwarden_audit`: INSERT and SELECT on the audit log, never UPDATE or DELETE.
    pub pool: PgPool,
    /// auth's public keys, for access tokens.
    pub verifier: TokenVerifier,
}

/// Every audit route, with the platform's shared layers.
pub fn router(
    state: AppState,
    push_auth: PushAuth,
    hops: TrustedProxyHops,
    limits: &Limits,
) -> Router {
    // Per-org request rate, shared with every other function through the database.
    let rate_limit = runwarden_ratelimit::OrgRateLimit::from_plans(state.pool.clone());
    server::app(
        rate_limit.apply(routes::router(state, push_auth)),
        limits,
        hops,
    )
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
        let push_auth = config.push.into_auth().await?;
        let limits = Limits::default();
        let router = router(
            AppState { pool, verifier },
            push_auth,
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

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        tracing::info!(addr = %self.local_addr()?, "audit listening");
        server::serve(
            self.listener,
            self.router,
            &self.limits,
            server::shutdown_signal(),
        )
        .await
    }
}
