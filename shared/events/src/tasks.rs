//! Scheduled tasks: `POST /internal/tasks/{name}`, called by Cloud Scheduler (relay sweeps,
//! reapers, retention purges) so the work happens inside a request even when Cloud Run
//! throttles the CPU of idle instances. A task is authenticated exactly like a push (the
//! scheduler presents the push service account's OIDC token for the function's audience in
//! production; locally the stack's secret is in `?token=`), and answers what it did as JSON.
//! `/internal/` is never routed by the front door.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use runwarden_platform::Problem;
use serde_json::Value;

use crate::push::{AuthFailure, PushAuth};

/// The path of task `name`.
pub fn path(name: &str) -> String {
    format!("/internal/tasks/{name}")
}

/// One task: runs `task` for each authenticated call and answers its report (200), or 503
/// when it failed (the scheduler retries at its next tick).
pub fn route<F, Fut>(name: &'static str, auth: PushAuth, task: F) -> Router
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<Value>> + Send + 'static,
{
    let auth = Arc::new(auth);
    Router::new().route(
        &path(name),
        post(move |State(auth): State<Arc<PushAuth>>, request: Request| {
            let task = task.clone();
            async move { run(name, &auth, request, task).await }
        })
        .with_state(auth),
    )
}

async fn run<F, Fut>(name: &'static str, auth: &PushAuth, request: Request, task: F) -> Response
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<Value>>,
{
    match auth
        .authenticate(request.headers(), request.uri().query())
        .await
    {
        Ok(()) => {}
        Err(AuthFailure::Rejected(reason)) => {
            tracing::warn!(
                security_event = "task_rejected",
                task = name,
                reason,
                "task call refused"
            );
            return Problem::unauthorized().into_response();
        }
        Err(AuthFailure::Unavailable) => return Problem::unavailable().into_response(),
    }
    match task().await {
        Ok(report) => {
            tracing::info!(task = name, report = %report, "task done");
            axum::Json(report).into_response()
        }
        Err(e) => {
            tracing::warn!(task = name, error = format!("{e:#}"), "task failed");
            Problem::unavailable().into_response()
        }
    }
}
