//! runs' HTTP surface. `ROUTES` is the one list of what is served: the router, the OpenAPI
//! document and the access tests are all checked against it.

mod media;
mod projects;
mod runner_api;
mod runs;
mod secrets;

use axum::Router;
use axum::routing::{get, post};
use runwarden_events::push::PushAuth;
use runwarden_platform::internal_auth::{InternalSecrets, require_internal_auth};
use runwarden_tenancy::Role;

use crate::AppState;
use crate::runs::RUN_DISPATCH_TOPIC;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// Pub/Sub only: Google's OIDC token in production, the stack's secret locally.
    Push,
    /// The runner: `X-Internal-Auth`, then its ticket or runner token.
    Runner,
    /// A member of the org in the path with at least this role.
    Org(Role),
    /// A media token of the path's run in the query string (`?token=`), of the route's scope.
    Media,
}

/// (method, path, access).
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("POST", "/v1/orgs/{org}/projects", Access::Org(Role::Member)),
    ("GET", "/v1/orgs/{org}/projects", Access::Org(Role::Viewer)),
    (
        "GET",
        "/v1/orgs/{org}/projects/{project}",
        Access::Org(Role::Viewer),
    ),
    (
        "PATCH",
        "/v1/orgs/{org}/projects/{project}",
        Access::Org(Role::Member),
    ),
    (
        "DELETE",
        "/v1/orgs/{org}/projects/{project}",
        Access::Org(Role::Admin),
    ),
    (
        "POST",
        "/v1/orgs/{org}/projects/{project}/runs",
        Access::Org(Role::Member),
    ),
    ("GET", "/v1/orgs/{org}/runs", Access::Org(Role::Viewer)),
    (
        "GET",
        "/v1/orgs/{org}/runs/{run}",
        Access::Org(Role::Viewer),
    ),
    (
        "POST",
        "/v1/orgs/{org}/runs/{run}/cancel",
        Access::Org(Role::Member),
    ),
    (
        "GET",
        "/v1/orgs/{org}/projects/{project}/secrets",
        Access::Org(Role::Viewer),
    ),
    (
        "PUT",
        "/v1/orgs/{org}/projects/{project}/secrets/{name}",
        Access::Org(Role::Member),
    ),
    (
        "GET",
        "/v1/orgs/{org}/projects/{project}/secrets/{name}",
        Access::Org(Role::Viewer),
    ),
    (
        "DELETE",
        "/v1/orgs/{org}/projects/{project}/secrets/{name}",
        Access::Org(Role::Member),
    ),
    (
        "POST",
        "/v1/orgs/{org}/runs/{run}/media-token",
        Access::Org(Role::Viewer),
    ),
    (
        "GET",
        "/v1/orgs/{org}/runs/{run}/artifacts",
        Access::Org(Role::Viewer),
    ),
    ("GET", "/v1/media/runs/{run}/events", Access::Media),
    (
        "GET",
        "/v1/media/runs/{run}/artifacts/{name}",
        Access::Media,
    ),
    ("POST", "/internal/runner/exchange", Access::Runner),
    ("GET", "/internal/runner/runs/{run}/secrets", Access::Runner),
    ("POST", "/internal/runner/runs/{run}/events", Access::Runner),
    (
        "POST",
        "/internal/runner/runs/{run}/complete",
        Access::Runner,
    ),
    (
        "POST",
        "/internal/runner/runs/{run}/artifacts",
        Access::Runner,
    ),
    ("POST", "/push/run-dispatch", Access::Push),
    ("POST", "/internal/tasks/reap", Access::Push),
    ("POST", "/internal/tasks/relay-sweep", Access::Push),
    ("GET", "/healthz", Access::Public),
    ("GET", "/openapi.json", Access::Public),
];

pub const OPENAPI: &str = include_str!("../openapi.json");

/// Every runs route but `/healthz` (which the platform adds).
pub fn router(state: AppState, push_auth: PushAuth, secrets: InternalSecrets) -> Router {
    let pool = state.pool.clone();
    let executor = state.executor.clone();
    let tasks = tasks(&state, &push_auth);
    let internal = Router::new()
        .route("/internal/runner/exchange", post(runner_api::exchange))
        .route(
            "/internal/runner/runs/{run}/secrets",
            get(runner_api::read_secrets),
        )
        .route(
            "/internal/runner/runs/{run}/events",
            post(runner_api::append_events),
        )
        .route(
            "/internal/runner/runs/{run}/complete",
            post(runner_api::complete),
        )
        .route("/internal/runner/runs/{run}/artifacts", post(media::upload))
        .route_layer(axum::middleware::from_fn_with_state(
            secrets,
            require_internal_auth,
        ));
    Router::new()
        .route(
            "/v1/orgs/{org}/projects",
            get(projects::list).post(projects::create),
        )
        .route(
            "/v1/orgs/{org}/projects/{project}",
            get(projects::get)
                .patch(projects::update)
                .delete(projects::delete),
        )
        .route("/v1/orgs/{org}/projects/{project}/runs", post(runs::start))
        .route("/v1/orgs/{org}/runs", get(runs::list))
        .route("/v1/orgs/{org}/runs/{run}", get(runs::get))
        .route("/v1/orgs/{org}/runs/{run}/cancel", post(runs::cancel))
        .route(
            "/v1/orgs/{org}/projects/{project}/secrets",
            get(secrets::list),
        )
        .route(
            "/v1/orgs/{org}/projects/{project}/secrets/{name}",
            get(secrets::get).put(secrets::put).delete(secrets::delete),
        )
        .route("/v1/orgs/{org}/runs/{run}/media-token", post(media::mint))
        .route(
            "/v1/orgs/{org}/runs/{run}/artifacts",
            get(media::list_artifacts),
        )
        .route("/v1/media/runs/{run}/events", get(media::events))
        .route(
            "/v1/media/runs/{run}/artifacts/{name}",
            get(media::artifact),
        )
        .route("/openapi.json", get(openapi))
        .merge(internal)
        .with_state(state)
        .merge(tasks)
        .merge(runwarden_events::push::route(
            RUN_DISPATCH_TOPIC,
            push_auth,
            move |delivery| crate::dispatch::handle_push(pool.clone(), executor.clone(), delivery),
        ))
}

/// The scheduler's tasks (`/internal/tasks/...`, authenticated like pushes): the reaper,
/// and a relay sweep that publishes what the outbox holds while Cloud Run throttles an idle
/// instance's background relay.
fn tasks(state: &AppState, push_auth: &PushAuth) -> Router {
    let (pool, executor) = (state.pool.clone(), state.executor.clone());
    let grace = state.runner_grace.to_std().unwrap_or_default();
    let sweeper = state.sweeper.clone();
    Router::new()
        .merge(runwarden_events::tasks::route(
            "reap",
            push_auth.clone(),
            move || {
                let (pool, executor) = (pool.clone(), executor.clone());
                async move {
                    let ended = crate::reaper::reap(&pool, &executor, grace)
                        .await
                        .map_err(|e| anyhow::anyhow!("reaping runs: {e}"))?;
                    Ok(serde_json::json!({"runs_ended": ended}))
                }
            },
        ))
        .merge(runwarden_events::tasks::route(
            "relay-sweep",
            push_auth.clone(),
            move || {
                let sweeper = sweeper.clone();
                async move {
                    let sweeper = sweeper.ok_or_else(|| anyhow::anyhow!("no relay configured"))?;
                    let published = sweeper.drain().await?;
                    Ok(serde_json::json!({"published": published}))
                }
            },
        ))
}

async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}
