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

use anyhow::Context;
use axum::Router;
use runwarden_events::push::PushAuth;
use runwarden_platform::app::{self, Service};
use runwarden_platform::request::TrustedProxyHops;
use runwarden_platform::server::Limits;
use runwarden_tokens::TokenVerifier;
use sqlx::PgPool;

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
    let pool = state.pool.clone();
    let verifier = state.verifier.clone();
    runwarden_ratelimit::served(
        pool,
        routes::router(state, push_auth),
        limits,
        hops,
        routes::ROUTES,
        verifier,
    )
}

/// The served router on its listener.
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
        let router = router(
            AppState { pool, verifier },
            push_auth,
            config.service.hops(),
            &limits,
        );
        let listener = app::bind(config.service.port).await?;
        Ok(Self {
            service: Service::new("audit", listener, router, limits),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.service.local_addr()
    }

    /// Serves until SIGTERM, then drains in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.service.run_until_stopped().await
    }
}
