//! The application skeleton every function runs: a router served on a listener beside named
//! background tasks (outbox relay, reapers, SSE hub …), and one shutdown order on SIGTERM or
//! Ctrl-C (see `docs/architecture.md`):
//!
//! 1. stop accepting connections;
//! 2. drain in-flight requests, for at most [`Limits::shutdown_grace`];
//! 3. tell background tasks to stop ([`Stop`]) and await them, for at most
//!    [`Service::task_grace`]; those still running are aborted;
//! 4. return.
//!
//! Both bounds together stay under Cloud Run's 10 seconds between SIGTERM and SIGKILL.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::server::{self, Limits};

/// Default time background tasks get to stop after requests are drained.
pub const TASK_GRACE: Duration = Duration::from_secs(1);

/// Binds `0.0.0.0:port` (port 0 picks a free one, for tests).
pub async fn bind(port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], port)))
        .await
        .with_context(|| format!("binding port {port}"))
}

/// A background task's stop signal: resolves once the service is shutting down.
#[derive(Debug, Clone)]
pub struct Stop {
    rx: watch::Receiver<bool>,
    /// Keeps the sender of [`Stop::never`] alive, so its signal stays pending.
    _never: Option<Arc<watch::Sender<bool>>>,
}

impl Stop {
    fn new(rx: watch::Receiver<bool>) -> Self {
        Self { rx, _never: None }
    }

    /// A signal that never fires, for running a task on its own (tests, one-off tools).
    pub fn never() -> Self {
        let (tx, rx) = watch::channel(false);
        Self {
            rx,
            _never: Some(Arc::new(tx)),
        }
    }

    /// Resolves when the service asks its tasks to stop.
    pub async fn stopped(&mut self) {
        // An error means the sender is gone: the service is gone too, so stop as well.
        let _ = self.rx.wait_for(|stop| *stop).await;
    }

    pub fn is_stopped(&self) -> bool {
        *self.rx.borrow()
    }
}

type TaskFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type TaskStart = Box<dyn FnOnce(Stop) -> TaskFuture + Send>;

/// A router on a listener, with its background tasks.
pub struct Service {
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: Limits,
    tasks: Vec<(&'static str, TaskStart)>,
    task_grace: Duration,
}

impl Service {
    /// `name` names the function in logs; `router` is already wrapped by [`server::app`].
    pub fn new(name: &'static str, listener: TcpListener, router: Router, limits: Limits) -> Self {
        Self {
            name,
            listener,
            router,
            limits,
            tasks: Vec::new(),
            task_grace: TASK_GRACE,
        }
    }

    /// Adds a background task, started when the service starts serving. It gets a [`Stop`]
    /// and should return soon after it fires; one still running after
    /// [`Self::task_grace`] is aborted.
    pub fn background<F, Fut>(mut self, name: &'static str, task: F) -> Self
    where
        F: FnOnce(Stop) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks.push((
            name,
            Box::new(move |stop| Box::pin(task(stop)) as TaskFuture),
        ));
        self
    }

    /// How long background tasks get to stop once requests are drained.
    pub fn task_grace(mut self, grace: Duration) -> Self {
        self.task_grace = grace;
        self
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The routes alone, for in-process tests.
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// Serves until SIGTERM or Ctrl-C, then shuts down in the order above.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(server::shutdown_signal()).await
    }

    /// Serves until `shutdown` resolves, then shuts down in the order above.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> std::io::Result<()> {
        let Self {
            name,
            listener,
            router,
            limits,
            tasks,
            task_grace,
        } = self;
        tracing::info!(addr = %listener.local_addr()?, service = name, "listening");
        let (stop_tx, stop_rx) = watch::channel(false);
        let handles: Vec<_> = tasks
            .into_iter()
            .map(|(task, start)| {
                let stop = Stop::new(stop_rx.clone());
                let future = start(stop.clone());
                let handle = tokio::spawn(async move {
                    future.await;
                    if !stop.is_stopped() {
                        tracing::warn!(task, "background task ended before shutdown");
                    }
                });
                (task, handle)
            })
            .collect();
        // Stops accepting, then drains in-flight requests within `limits.shutdown_grace`.
        let served = server::serve(listener, router, &limits, shutdown).await;
        tracing::info!(
            service = name,
            "requests drained; stopping background tasks"
        );
        let _ = stop_tx.send(true);
        let deadline = tokio::time::Instant::now() + task_grace;
        for (task, mut handle) in handles {
            match tokio::time::timeout_at(deadline, &mut handle).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) if e.is_panic() => tracing::error!(task, "background task panicked"),
                Ok(Err(_)) => {}
                Err(_) => {
                    tracing::warn!(task, "background task did not stop in time; aborted");
                    handle.abort();
                }
            }
        }
        tracing::info!(service = name, "stopped");
        served
    }
}

/// A background task that runs `pass` every `every` (the first pass right away) until the
/// service stops; a pass in progress is finished, never cut. Failures are logged and retried
/// on the next tick.
pub async fn every<F, Fut>(mut stop: Stop, task: &'static str, every: Duration, mut pass: F)
where
    F: FnMut() -> Fut + Send,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.stopped() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = pass().await {
            tracing::warn!(
                task,
                error = format!("{e:#}"),
                "background pass failed; retrying next tick"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::routing::get;

    use super::*;

    type Log = Arc<Mutex<Vec<&'static str>>>;

    fn note(log: &Log, what: &'static str) {
        log.lock().unwrap().push(what);
    }

    async fn service(log: &Log, limits: Limits) -> Service {
        let slow = {
            let log = log.clone();
            move || async move {
                note(&log, "request started");
                tokio::time::sleep(Duration::from_millis(300)).await;
                note(&log, "request finished");
                "done"
            }
        };
        let router = server::app(
            Router::new().route("/slow", get(slow)),
            &limits,
            crate::request::TrustedProxyHops(0),
        );
        Service::new("test", bind(0).await.unwrap(), router, limits)
    }

    #[tokio::test]
    async fn drains_requests_before_stopping_tasks_then_returns() {
        let log = Log::default();
        let task_log = log.clone();
        let svc = service(&log, Limits::default()).await.background(
            "recorder",
            move |mut stop| async move {
                note(&task_log, "task started");
                stop.stopped().await;
                note(&task_log, "task stopped");
            },
        );
        let addr = svc.local_addr().unwrap();
        let (trigger, shutdown) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(svc.run_until(async {
            let _ = shutdown.await;
        }));

        let url = format!("http://127.0.0.1:{}/slow", addr.port());
        let request = tokio::spawn(async move { reqwest::get(url).await.unwrap().text().await });
        while !log.lock().unwrap().contains(&"request started") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        trigger.send(()).unwrap();

        assert_eq!(request.await.unwrap().unwrap(), "done");
        running.await.unwrap().unwrap();
        let log = log.lock().unwrap().clone();
        assert_eq!(
            log,
            [
                "task started",
                "request started",
                "request finished",
                "task stopped"
            ]
        );
        // The listener is closed: nothing is accepted any more.
        assert!(
            tokio::net::TcpStream::connect(("127.0.0.1", addr.port()))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_task_that_ignores_stop_is_aborted_within_the_bound() {
        let log = Log::default();
        let svc = service(&log, Limits::default())
            .await
            .task_grace(Duration::from_millis(100))
            .background("stubborn", |_stop| std::future::pending::<()>());
        let started = std::time::Instant::now();
        svc.run_until(async {}).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[tokio::test]
    async fn draining_is_bounded_by_the_shutdown_grace() {
        let log = Log::default();
        let limits = Limits {
            shutdown_grace: Duration::from_millis(50),
            ..Limits::default()
        };
        let svc = service(&log, limits).await;
        let addr = svc.local_addr().unwrap();
        let (trigger, shutdown) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(svc.run_until(async {
            let _ = shutdown.await;
        }));
        let url = format!("http://127.0.0.1:{}/slow", addr.port());
        let _request = tokio::spawn(async move { reqwest::get(url).await });
        while !log.lock().unwrap().contains(&"request started") {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let started = std::time::Instant::now();
        trigger.send(()).unwrap();
        running.await.unwrap().unwrap();
        assert!(started.elapsed() < Duration::from_millis(250));
    }

    #[tokio::test]
    async fn every_runs_passes_until_stopped() {
        let (tx, rx) = watch::channel(false);
        let passes = Arc::new(Mutex::new(0u32));
        let counted = passes.clone();
        let task = tokio::spawn(every(
            Stop::new(rx),
            "counter",
            Duration::from_millis(10),
            move || {
                let counted = counted.clone();
                async move {
                    *counted.lock().unwrap() += 1;
                    anyhow::bail!("fails, and is retried")
                }
            },
        ));
        while *passes.lock().unwrap() < 3 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn never_stays_pending() {
        let mut stop = Stop::never();
        assert!(!stop.is_stopped());
        assert!(
            tokio::time::timeout(Duration::from_millis(20), stop.stopped())
                .await
                .is_err()
        );
    }
}
