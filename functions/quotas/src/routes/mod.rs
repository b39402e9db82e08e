//! quotas' HTTP surface. `ROUTES` is the one list of what is served: the router, the
//! OpenAPI document and the access tests are all checked against it.

mod internal;
mod push;
mod usage;

use axum::Router;
use axum::routing::{get, post, put};
use runwarden_events::push::PushAuth;
use runwarden_platform::internal_auth::{InternalSecrets, require_internal_auth};
use runwarden_tenancy::Role;

use crate::AppState;

pub use push::{RUN_FINISHED_TOPIC, handle_push};

use runwarden_tenancy::routes::route;
pub use runwarden_tenancy::routes::{Access, Audit, Route};

/// Every route quotas serves, pushes and scheduler tasks included.
pub const ROUTES: &[Route] = &[
    route(
        "GET",
        "/v1/orgs/{org}/usage",
        Access::Org(Role::Viewer),
        Audit::Read,
    ),
    route(
        "POST",
        "/internal/admissions",
        Access::Internal,
        Audit::Unaudited(
            "bookkeeping runs asks for: runs audits the run it admits or refuses (`run.create`)",
        ),
    ),
    route(
        "POST",
        "/internal/settlements",
        Access::Internal,
        Audit::Unaudited(
            "bookkeeping runs asks for: runs audits how the run ended (`run.finish`, ...)",
        ),
    ),
    route(
        "PUT",
        "/internal/orgs/{org}/plan",
        Access::Internal,
        Audit::Event("quota.plan_change"),
    ),
    route(
        "PUT",
        "/internal/orgs/{org}/overrides",
        Access::Internal,
        Audit::Event("quota.overrides_change"),
    ),
    route(
        "POST",
        "/push/run-finished",
        Access::Push,
        Audit::Unaudited(
            "a system effect: settles a run whose ending runs audits (`run.finish`, ...)",
        ),
    ),
    route(
        "POST",
        "/internal/tasks/reap",
        Access::Task,
        Audit::Unaudited(
            "a system effect: settles reservations past their cap as timed out (each \
             logged); runs audits the run's ending",
        ),
    ),
    route("GET", "/healthz", Access::Public, Audit::Read),
    route("GET", "/openapi.json", Access::Public, Audit::Read),
];

pub const OPENAPI: &str = include_str!("../openapi.json");

/// Every quotas route but `/healthz` (which the platform adds).
pub fn router(state: AppState, push_auth: PushAuth, secrets: InternalSecrets) -> Router {
    let pool = state.pool.clone();
    let (reap_pool, grace) = (state.pool.clone(), state.reaper_grace);
    let tasks = runwarden_events::tasks::route("reap", push_auth.clone(), move || {
        let pool = reap_pool.clone();
        async move { crate::reap(&pool, grace).await }
    });
    let internal = Router::new()
        .route("/internal/admissions", post(internal::admit))
        .route("/internal/settlements", post(internal::settle))
        .route("/internal/orgs/{org}/plan", put(internal::set_plan))
        .route(
            "/internal/orgs/{org}/overrides",
            put(internal::set_overrides),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            secrets,
            require_internal_auth,
        ));
    Router::new()
        .route("/v1/orgs/{org}/usage", get(usage::get_usage))
        .route("/openapi.json", get(openapi))
        .merge(internal)
        .with_state(state)
        .merge(tasks)
        .merge(runwarden_events::push::route(
            RUN_FINISHED_TOPIC,
            push_auth,
            move |delivery| handle_push(pool.clone(), delivery),
        ))
}

async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}
