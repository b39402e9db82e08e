//! runs' HTTP surface. `ROUTES` is the one list of what is served: the router, the OpenAPI
//! document and the access tests are all checked against it.

mod media;
pub(crate) mod projects;
mod runner;
mod runs;
mod secrets;

use axum::Router;
use axum::routing::{get, post};
use runwarden_events::push::PushAuth;
use runwarden_platform::internal_auth::{InternalSecrets, require_internal_auth};
use runwarden_tenancy::Role;

use crate::AppState;
use crate::runs::RUN_DISPATCH_TOPIC;

use runwarden_tenancy::routes::route;
pub use runwarden_tenancy::routes::{Access, Audit, Route};

/// Every route runs serves, pushes and scheduler tasks included.
pub const ROUTES: &[Route] = &[
    route(
        "POST",
        "/v1/orgs/{org}/projects",
        Access::Org(Role::Member),
        Audit::Event("project.create"),
    ),
    route(
        "GET",
        "/v1/orgs/{org}/projects",
        Access::Org(Role::Viewer),
        Audit::Read,
    ),
    route(
        "GET",
        "/v1/orgs/{org}/projects/{project}",
        Access::Org(Role::Viewer),
        Audit::Read,
    ),
    route(
        "PATCH",
        "/v1/orgs/{org}/projects/{project}",
        Access::Org(Role::Member),
        Audit::PerChange(&["project.rename", "project.archive", "project.unarchive"]),
    ),
    route(
        "DELETE",
        "/v1/orgs/{org}/projects/{project}",
        Access::Org(Role::Admin),
        Audit::Event("project.delete"),
    ),
    // Admitted or refused by quotas: one `run.create` either way (a refusal's outcome is
    // `failure`).
    route(
        "POST",
        "/v1/orgs/{org}/projects/{project}/runs",
        Access::Org(Role::Member),
        Audit::Event("run.create"),
    ),
    route(
        "GET",
        "/v1/orgs/{org}/runs",
        Access::Org(Role::Viewer),
        Audit::Read,
    ),
    route(
        "GET",
        "/v1/orgs/{org}/runs/{run}",
        Access::Org(Role::Viewer),
        Audit::Read,
    ),
    route(
        "POST",
        "/v1/orgs/{org}/runs/{run}/cancel",
        Access::Org(Role::Member),
        Audit::Event("run.cancel"),
    ),
    route(
        "GET",
        "/v1/orgs/{org}/projects/{project}/secrets",
        Access::Org(Role::Viewer),
        Audit::Read,
    ),
    route(
        "PUT",
        "/v1/orgs/{org}/projects/{project}/secrets/{name}",
        Access::Org(Role::Member),
        Audit::OneOf(&["secret.create", "secret.update"]),
    ),
    // Metadata only: a person never reads a secret's value back.
    route(
        "GET",
        "/v1/orgs/{org}/projects/{project}/secrets/{name}",
        Access::Org(Role::Viewer),
        Audit::Read,
    ),
    route(
        "DELETE",
        "/v1/orgs/{org}/projects/{project}/secrets/{name}",
        Access::Org(Role::Member),
        Audit::Event("secret.delete"),
    ),
    route(
        "POST",
        "/v1/orgs/{org}/runs/{run}/media-token",
        Access::Org(Role::Viewer),
        Audit::Event("run.media_token"),
    ),
    route(
        "GET",
        "/v1/orgs/{org}/runs/{run}/artifacts",
        Access::Org(Role::Viewer),
        Audit::Read,
    ),
    route(
        "GET",
        "/v1/media/runs/{run}/events",
        Access::Media,
        Audit::Read,
    ),
    route(
        "GET",
        "/v1/media/runs/{run}/artifacts/{name}",
        Access::Media,
        Audit::Read,
    ),
    // A replayed ticket is refused (401) and recorded as `run.ticket_replay`, outcome
    // `failure`.
    route(
        "POST",
        "/internal/runner/exchange",
        Access::Runner,
        Audit::Event("run.start"),
    ),
    // A read of plaintexts: every secret handed to the runner is audited.
    route(
        "GET",
        "/internal/runner/runs/{run}/secrets",
        Access::Runner,
        Audit::PerItem("secret.read_by_runner"),
    ),
    route(
        "POST",
        "/internal/runner/runs/{run}/events",
        Access::Runner,
        Audit::Unaudited("the run's own output stream (telemetry), kept with the run"),
    ),
    route(
        "POST",
        "/internal/runner/runs/{run}/complete",
        Access::Runner,
        Audit::Event("run.finish"),
    ),
    route(
        "POST",
        "/internal/runner/runs/{run}/artifacts",
        Access::Runner,
        Audit::Event("run.artifact_upload"),
    ),
    route(
        "POST",
        "/push/run-dispatch",
        Access::Push,
        Audit::Unaudited(
            "a system effect: launches the runner job of a run whose `run.create` is \
             audited; the job's start is audited at the exchange (`run.start`)",
        ),
    ),
    route(
        "POST",
        "/internal/tasks/reap",
        Access::Task,
        Audit::PerItem("run.reap"),
    ),
    route(
        "POST",
        "/internal/tasks/relay-sweep",
        Access::Task,
        Audit::Unaudited("a system effect: publishes outbox rows already recorded"),
    ),
    route("GET", "/healthz", Access::Public, Audit::Read),
    route("GET", "/openapi.json", Access::Public, Audit::Read),
];

pub const OPENAPI: &str = include_str!("../openapi.json");

/// Every runs route but `/healthz` (which the platform adds).
pub fn router(state: AppState, push_auth: PushAuth, secrets: InternalSecrets) -> Router {
    let pool = state.pool.clone();
    let executor = state.executor.clone();
    let tasks = tasks(&state, &push_auth);
    let internal = Router::new()
        .route("/internal/runner/exchange", post(runner::exchange))
        .route(
            "/internal/runner/runs/{run}/secrets",
            get(runner::read_secrets),
        )
        .route(
            "/internal/runner/runs/{run}/events",
            post(runner::append_events),
        )
        .route(
            "/internal/runner/runs/{run}/complete",
            post(runner::complete),
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
