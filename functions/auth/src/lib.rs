//! auth: users, passwords, sessions, JWTs, Google sign-in, organizations, members, roles.
//!
//! `App::build` wires configuration into a served router; `router` is the same routes
//! without a socket, for in-process tests and the benchmarks.
//!
//! Layers, top to bottom: `routes` (handlers: parse, authorize, call a domain function,
//! respond), `extract` and `error` (the HTTP edge: who is calling, and how each error
//! answers), then the domain modules (`accounts`, `sessions`, `orgs`, `members`,
//! `invitations`, `google`, `throttle`, `retention`) and the domain types (`email`,
//! `password`). SQL and audit writes live in the domain modules; each returns its own error,
//! mapped to [`error::AuthError`] at the edge only (see `docs/architecture.md`).

pub mod account_audit;
pub mod accounts;
pub mod config;
pub mod email;
pub mod email_tokens;
pub mod error;
pub mod extract;
pub mod google;
pub mod invitations;
pub mod mail;
pub mod members;
pub mod orgs;
pub mod password;
pub mod retention;
pub mod routes;
/// Opaque secrets live in the tokens crate, shared with runs (runner tickets and tokens).
pub use runwarden_tokens::opaque as secret_token;
pub mod sessions;
pub mod signup_limits;
pub mod throttle;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use runwarden_events::bus::PubSubBus;
use runwarden_events::push::PushAuth;
use runwarden_events::relay::Relay;
use runwarden_platform::app::{self, Service};
use runwarden_platform::request::TrustedProxyHops;
use runwarden_platform::server::Limits;
use runwarden_tokens::{TokenSigner, TokenVerifier};
use secrecy::ExposeSecret;
use sqlx::PgPool;

pub use config::Config;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub signer: Arc<TokenSigner>,
    pub verifier: TokenVerifier,
    pub hasher: password::Hasher,
    pub google: Option<Arc<google::GoogleSignIn>>,
    /// Links in mails, and the bell that wakes the mail sender after a commit.
    pub mailer: mail::Mailer,
}

impl AppState {
    pub fn new(
        pool: PgPool,
        signer: TokenSigner,
        hash_concurrency: usize,
        google: Option<config::GoogleConfig>,
    ) -> Self {
        let verifier = signer.verifier();
        Self {
            pool,
            signer: Arc::new(signer),
            verifier,
            hasher: password::Hasher::new(hash_concurrency),
            google: google.map(|g| Arc::new(google::GoogleSignIn::new(g))),
            mailer: mail::Mailer::new(&mail::MailConfig::local().public_app_url),
        }
    }

    /// The mailer whose sender drains this deployment's outbox (see [`mail::Sender`]).
    pub fn with_mailer(mut self, mailer: mail::Mailer) -> Self {
        self.mailer = mailer;
        self
    }
}

/// Every auth route, with the platform's shared layers.
pub fn router(state: AppState, hops: TrustedProxyHops, limits: &Limits) -> Router {
    router_with_tasks(state, None, hops, limits)
}

/// [`router`], plus the scheduler's tasks when `tasks` says who may call them.
pub fn router_with_tasks(
    state: AppState,
    tasks: Option<PushAuth>,
    hops: TrustedProxyHops,
    limits: &Limits,
) -> Router {
    let pool = state.pool.clone();
    let mut routes = routes::router(state);
    if let Some(auth) = tasks {
        let pool = pool.clone();
        routes = routes.merge(runwarden_events::tasks::route(
            "retention-purge",
            auth,
            move || retention::purge(pool.clone()),
        ));
    }
    runwarden_ratelimit::served(pool, routes, limits, hops)
}

/// The auth service: its routes on a listener, beside the outbox relay and the mail sender (see
/// `runwarden_platform::app` for the shutdown order).
pub struct App {
    service: Service,
}

impl App {
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let signer = match &config.signing_key {
            Some(pem) => TokenSigner::from_pem(&config.signing_key_id, pem.expose_secret())
                .context("AUTH_SIGNING_KEY is not a valid Ed25519 PKCS#8 PEM key")?,
            None => {
                tracing::warn!(
                    "AUTH_SIGNING_KEY is not set: using a throwaway key (development only)"
                );
                TokenSigner::generate(&config.signing_key_id)
            }
        };
        let pool = runwarden_store::connect(&config.service.database_url)?;
        let bus = PubSubBus::connect(config.relay.pubsub.clone())
            .await
            .context("building the Pub/Sub publisher")?;
        let relay =
            Relay::new(pool.clone(), Arc::new(bus)).with_settings(config.relay.settings.clone());
        let mailer = mail::Mailer::new(&config.mail.public_app_url);
        let sender = mail::Sender::new(pool.clone(), &config.mail, &mailer)?;
        let state = AppState::new(pool, signer, config.hash_concurrency, config.google.clone())
            .with_mailer(mailer);
        let limits = Limits::default();
        let tasks = match &config.tasks {
            Some(tasks) => Some(tasks.into_auth().await?),
            None => None,
        };
        let router = router_with_tasks(state, tasks, config.service.hops(), &limits);
        let listener = app::bind(config.service.port).await?;
        let service = Service::new("auth", listener, router, limits)
            // Publishes what the last requests committed before it stops.
            .background("outbox-relay", move |mut stop| {
                relay.run(async move { stop.stopped().await })
            })
            // Sends the mail the requests committed (verification links, notices).
            .background("mail-sender", move |mut stop| {
                sender.run(async move { stop.stopped().await })
            });
        Ok(Self { service })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.service.local_addr()
    }

    /// Serves and relays outbox events until SIGTERM: the server drains first, then the
    /// relay publishes what the last requests committed and stops.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.service.run_until_stopped().await
    }
}
