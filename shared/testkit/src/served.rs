//! A router served on a real socket, and the client the tests call it with.

use std::net::SocketAddr;

use axum::Router;
use runwarden_platform::server::{Limits, serve};

use crate::{Api, Fixtures};

/// A router served on 127.0.0.1 until dropped.
pub struct Served {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl Served {
    pub async fn start(app: Router, limits: Limits) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = serve(listener, app, &limits, async {
                let _ = rx.await;
            })
            .await;
        });
        Self {
            addr,
            shutdown: Some(tx),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

/// A client that follows no redirects and keeps enough connections for concurrency tests.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(256)
        .build()
        .unwrap()
}

/// A function's app under test: served, with its checked caller, a client, and the test's
/// fixtures (through `Deref`). A function's `TestApp` holds one and derefs to it.
pub struct App {
    pub served: Served,
    /// Checks every response against the function's OpenAPI document.
    pub api: Api,
    pub client: reqwest::Client,
    pub fx: Fixtures,
}

impl App {
    /// Serves `router` with `limits`; `spec` is the function's document (`routes::OPENAPI`).
    pub async fn start(fx: Fixtures, router: Router, limits: Limits, spec: &str) -> Self {
        let served = Served::start(router, limits).await;
        let client = client();
        Self {
            api: Api::new(&served, client.clone(), spec),
            served,
            client,
            fx,
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.served.url(path)
    }
}

impl std::ops::Deref for App {
    type Target = Fixtures;

    fn deref(&self) -> &Fixtures {
        &self.fx
    }
}
