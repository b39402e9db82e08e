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

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// Pub/Sub only: Google's OIDC token in production, the stack's secret locally.
    Push,
    /// Other functions only: `X-Internal-Auth`.
    Internal,
    /// A member of the org in the path with at least this role.
    Org(Role),
}

/// (method, path, access).
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "/v1/orgs/{org}/usage", Access::Org(Role::Viewer)),
    ("POST", "/internal/admissions", Access::Internal),
    ("POST", "/internal/settlements", Access::Internal),
    ("PUT", "/internal/orgs/{org}/plan", Access::Internal),
    ("PUT", "/internal/orgs/{org}/overrides", Access::Internal),
    ("POST", "/push/run-finished", Access::Push),
    ("POST", "/internal/tasks/reap", Access::Push),
    ("GET", "/healthz", Access::Public),
    ("GET", "/openapi.json", Access::Public),
];

pub const OPENAPI: &str = include_str!("../openapi.json");

/// Every quotas route but `/healthz` (which the platform adds).
pub fn router(state: AppState, push_auth: PushAuth, secrets: InternalSecrets) -> Router {
    let pool = state.pool.clone();
    let (reap_pool, grace) = (state.pool.clone(), state.reaper_grace);
    let tasks = runwarden_events::tasks::route("reap", push_auth.clone(), move || {
        let pool = reap_pool.clone();
        async move { crate::reaper::reap(&pool, grace).await }
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
