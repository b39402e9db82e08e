//! Runwarden's local front door: the stand-in for the production HTTP load balancer.
//!
//! It routes public paths to the functions by the table in `routes.json` (the same file
//! Terraform's URL map reads), never routes `/internal/**` or `/push/**`, streams bodies
//! both ways (SSE included), appends the client IP to `X-Forwarded-For` and answers its own
//! errors as RFC 9457 problem+json (the shared `runwarden_platform::Problem`). It serves
//! its own `GET /healthz`.
//!
//! ```no_run
//! # async fn run() -> anyhow::Result<()> {
//! use runwarden_frontdoor::{Config, FrontDoor, shutdown_signal};
//! let door = FrontDoor::bind(Config::from_env()?).await?;
//! door.serve(shutdown_signal()).await
//! # }
//! ```

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;

pub mod problem;
pub mod proxy;
pub mod routes;

pub use proxy::Upstream;
pub use routes::{Rejection, RouteTable};
pub use runwarden_platform::Problem;
pub use runwarden_platform::server::shutdown_signal;

/// Default listen address (`FRONTDOOR_ADDR`).
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";
/// After a shutdown signal, open connections (SSE streams, say) get this long to finish
/// before they are cut: inside Cloud Run's 10 s.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(8);

/// Where the front door listens and where each service of the routing table lives.
#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub upstreams: BTreeMap<String, Upstream>,
}

impl Config {
    /// Reads `FRONTDOOR_ADDR` and each service's variable named in `routes.json`
    /// (`AUTH_URL`, `RUNS_URL`, `QUOTAS_URL`, `AUDIT_URL`), with the local defaults.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Config::from_env`], reading variables through `lookup` (for tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let addr_raw = lookup("FRONTDOOR_ADDR")
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ADDR.to_owned());
        let addr = addr_raw
            .trim()
            .parse()
            .with_context(|| format!("FRONTDOOR_ADDR={addr_raw:?} is not a host:port address"))?;
        let mut upstreams = BTreeMap::new();
        for (name, spec) in RouteTable::builtin().services() {
            let url = lookup(&spec.env)
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| spec.local.clone());
            let upstream =
                Upstream::parse(url.trim()).map_err(|e| anyhow::anyhow!("{}: {e}", spec.env))?;
            upstreams.insert(name.clone(), upstream);
        }
        Ok(Self { addr, upstreams })
    }

    /// The local defaults from `routes.json`, listening on `addr`.
    pub fn local(addr: SocketAddr) -> Self {
        let mut config = Self::from_lookup(|_| None).expect("routes.json local URLs are valid");
        config.addr = addr;
        config
    }

    /// Points one service at another base URL.
    pub fn with_upstream(mut self, service: &str, url: &str) -> anyhow::Result<Self> {
        anyhow::ensure!(
            RouteTable::builtin().services().contains_key(service),
            "unknown service {service:?}"
        );
        let upstream = Upstream::parse(url).map_err(anyhow::Error::msg)?;
        self.upstreams.insert(service.to_owned(), upstream);
        Ok(self)
    }
}

/// The router: `GET /healthz` answered here, everything else routed by `routes.json`.
pub fn router(upstreams: BTreeMap<String, Upstream>) -> Router {
    let state = proxy::ProxyState::new(RouteTable::builtin(), upstreams);
    Router::new()
        .route("/healthz", get(healthz))
        .fallback(proxy::proxy)
        .with_state(state)
}

async fn healthz() -> impl axum::response::IntoResponse {
    (
        [
            (http::header::CONTENT_TYPE, "application/json"),
            (http::header::CACHE_CONTROL, "no-store"),
        ],
        r#"{"status":"ok"}"#,
    )
}

/// A bound front door, ready to serve.
pub struct FrontDoor {
    listener: TcpListener,
    router: Router,
}

impl FrontDoor {
    /// Binds the listener (port 0 picks a free port; see [`FrontDoor::local_addr`]).
    pub async fn bind(config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("cannot listen on {}", config.addr))?;
        Ok(Self {
            listener,
            router: router(config.upstreams),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound TCP listener has an address")
    }

    /// Serves until `shutdown` completes, then lets open requests finish for at most
    /// [`DRAIN_TIMEOUT`].
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let addr = self.local_addr();
        let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
        let signal = async move {
            shutdown.await;
            let _ = stopping_tx.send(true);
        };
        let server = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(signal)
        .into_future();
        let drain_deadline = async move {
            if stopping_rx.wait_for(|stopping| *stopping).await.is_ok() {
                tracing::info!("shutting down: draining open connections");
                tokio::time::sleep(DRAIN_TIMEOUT).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tracing::info!(%addr, "front door listening");
        tokio::select! {
            served = server => served.context("front door server failed")?,
            () = drain_deadline => tracing::warn!("drain deadline passed; closing open connections"),
        }
        tracing::info!("front door stopped");
        Ok(())
    }
}

/// Cloud Logging JSON logs on stdout with the platform's redaction, filtered by `RUST_LOG`
/// (default `info`).
pub fn init_tracing() {
    runwarden_platform::telemetry::init(std::env::var("GOOGLE_CLOUD_PROJECT").ok());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_overrides() {
        let c = Config::from_lookup(|_| None).unwrap();
        assert_eq!(c.addr.to_string(), DEFAULT_ADDR);
        assert_eq!(c.upstreams["auth"].to_string(), "http://127.0.0.1:8081");
        assert_eq!(c.upstreams["runs"].to_string(), "http://127.0.0.1:8082");
        assert_eq!(c.upstreams["quotas"].to_string(), "http://127.0.0.1:8083");
        assert_eq!(c.upstreams["audit"].to_string(), "http://127.0.0.1:8084");

        let c = Config::from_lookup(|k| match k {
            "FRONTDOOR_ADDR" => Some("0.0.0.0:9000".into()),
            "RUNS_URL" => Some("http://runs.local:1234".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.addr.to_string(), "0.0.0.0:9000");
        assert_eq!(c.upstreams["runs"].to_string(), "http://runs.local:1234");
    }

    #[test]
    fn config_errors_name_the_variable() {
        let e = Config::from_lookup(|k| (k == "AUDIT_URL").then(|| "https://x".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("AUDIT_URL"), "{e}");
        let e = Config::from_lookup(|k| (k == "FRONTDOOR_ADDR").then(|| "nope".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("FRONTDOOR_ADDR"), "{e}");
        assert!(
            Config::local(DEFAULT_ADDR.parse().unwrap())
                .with_upstream("nope", "http://x")
                .is_err()
        );
    }
}
