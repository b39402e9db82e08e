//! audit's HTTP surface. `ROUTES` is the one list of what is served: the router, the
//! OpenAPI document and the access tests are all checked against it.

mod events;
mod push;

use axum::Router;
use axum::routing::get;
use runwarden_events::push::PushAuth;
use runwarden_tenancy::Role;

use crate::AppState;

pub use push::handle_push;

use runwarden_tenancy::routes::route;
pub use runwarden_tenancy::routes::{Access, Audit, Route};

/// Every route audit serves, its push included. Reading the log is itself not audited.
pub const ROUTES: &[Route] = &[
    route(
        "GET",
        "/v1/orgs/{org}/audit-events",
        Access::Org(Role::Admin),
        Audit::Read,
    ),
    route(
        "GET",
        "/v1/orgs/{org}/audit-events/export",
        Access::Org(Role::Admin),
        Audit::Read,
    ),
    route(
        "GET",
        "/v1/orgs/{org}/audit-events/verify",
        Access::Org(Role::Admin),
        Audit::Read,
    ),
    route(
        "POST",
        "/push/audit-events",
        Access::Push,
        Audit::Unaudited(
            "the log itself: stores events other functions recorded, records none of its own",
        ),
    ),
    route("GET", "/healthz", Access::Public, Audit::Read),
    route("GET", "/openapi.json", Access::Public, Audit::Read),
];

pub const OPENAPI: &str = include_str!("../openapi.json");

/// Every audit route but `/healthz` (which the platform adds).
pub fn router(state: AppState, push_auth: PushAuth) -> Router {
    let pool = state.pool.clone();
    Router::new()
        .route("/v1/orgs/{org}/audit-events", get(events::list))
        .route("/v1/orgs/{org}/audit-events/export", get(events::export))
        .route("/v1/orgs/{org}/audit-events/verify", get(events::verify))
        .route("/openapi.json", get(openapi))
        .with_state(state)
        .merge(runwarden_events::push::route(
            runwarden_events::AUDIT_TOPIC,
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
