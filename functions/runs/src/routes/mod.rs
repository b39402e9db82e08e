//! runs' HTTP surface. `ROUTES` is the one list of what is served: the router, the OpenAPI
//! document and the access tests are all checked against it.

mod projects;

use axum::Router;
use axum::routing::get;
use runwarden_tenancy::Role;

use crate::AppState;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// A member of the org in the path with at least this role.
    Org(Role),
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
    ("GET", "/healthz", Access::Public),
    ("GET", "/openapi.json", Access::Public),
];

pub const OPENAPI: &str = include_str!("../openapi.json");

/// Every runs route but `/healthz` (which the platform adds).
pub fn router(state: AppState) -> Router {
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
        .route("/openapi.json", get(openapi))
        .with_state(state)
}

async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}
