//! auth: users, passwords, sessions, JWTs, Google sign-in, organizations, members, roles.
//!
//! `App::build` wires configuration into a served router; `router` is the same routes
//! without a socket, for in-process tests and the benchmarks.
//!
//! Layers, top to bottom: `routes` (handlers: parse, authorize, call a domain function,
//! respond), `extract` and `error` (the HTTP edge: who is calling, and how each error
//! answers), then the domain modules (`accounts`, `sessions`, `orgs`, `members`,
//! `invitations`, `google`, `throttle`, `abuse_limits`, `retention`) and the domain types (`email`,
//! `password`). SQL and audit writes live in the domain modules; each returns its own error,
//! mapped to [`error::AuthError`] at the edge only (see `docs/architecture.md`).

pub mod abuse_limits;
pub mod account_audit;
pub mod accounts;
pub mod config;
pub mod credentials;
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
pub mod password_reset;
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
use runwarden_tokens::{Jwks, SigningKeys, TokenSigner, TokenVerifier};
use secrecy::ExposeSecret;
use sqlx::PgPool;

pub use config::Config;

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    /// The current key: the one that signs.
    pub signer: Arc<TokenSigner>,
    /// Every published key (current, next, previous): auth accepts what it publishes.
    pub verifier: TokenVerifier,
    /// What `/.well-known/jwks.json` serves.
    pub jwks: Arc<Jwks>,
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
        Self::with_keys(pool, SigningKeys::single(signer), hash_concurrency, google)
    }

    /// [`Self::new`] with a key set being rotated: the current key signs, every key of the
    /// set is published and verifies.
    pub fn with_keys(
        pool: PgPool,
        keys: SigningKeys,
        hash_concurrency: usize,
        google: Option<config::GoogleConfig>,
    ) -> Self {
        let verifier = keys.verifier();
        let jwks = Arc::new(keys.jwks());
        Self {
            pool,
            signer: Arc::new(keys.into_current()),
            verifier,
            jwks,
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
    let verifier = state.verifier.clone();
    let mut routes = routes::router(state);
    if let Some(auth) = tasks {
        let pool = pool.clone();
        routes = routes.merge(runwarden_events::tasks::route(
            "retention-purge",
            auth,
            move || retention::purge(pool.clone()),
        ));
    }
    runwarden_ratelimit::served(pool, routes, limits, hops, routes::ROUTES, verifier)
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
        let next = match &config.next_signing_key {
            Some((kid, pem)) => Some(
                TokenSigner::from_pem(kid, pem.expose_secret())
                    .context("AUTH_NEXT_SIGNING_KEY is not a valid Ed25519 PKCS#8 PEM key")?,
            ),
            None => None,
        };
        let keys = SigningKeys::new(signer, next, config.previous_signing_keys.clone())
            .context("AUTH_SIGNING_KEY, AUTH_NEXT_SIGNING_KEY and AUTH_PREVIOUS_JWKS")?;
        tracing::info!(
            signing.kid = keys.current().kid(),
            published.kids = ?keys.jwks().keys.iter().filter_map(|k| k.common.key_id.clone()).collect::<Vec<_>>(),
            "signing keys loaded"
        );
        let pool = runwarden_store::connect(&config.service.database_url)?;
        let bus = PubSubBus::connect(config.relay.pubsub.clone())
            .await
            .context("building the Pub/Sub publisher")?;
        let relay =
            Relay::new(pool.clone(), Arc::new(bus)).with_settings(config.relay.settings.clone());
        let mailer = mail::Mailer::new(&config.mail.public_app_url);
        let sender = mail::Sender::new(pool.clone(), &config.mail, &mailer)?;
        let state = AppState::with_keys(pool, keys, config.hash_concurrency, config.google.clone())
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
