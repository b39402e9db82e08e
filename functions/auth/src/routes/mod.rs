//! auth's HTTP surface. `ROUTES` is the one list of what is served: the router, the
//! OpenAPI document and the role-matrix and tenancy tests are all checked against it.

mod account;
mod google;
mod invitations;
mod members;
mod orgs;

use axum::Router;
use axum::routing::{get, patch, post};
use runwarden_tenancy::Role;

use crate::AppState;

use runwarden_tenancy::routes::route;
pub use runwarden_tenancy::routes::{Access, Audit, Route};

/// Every route. For member routes the rules also depend on the target's role (see
/// `orgs.rs`); the role here is the least any call needs.
pub const ROUTES: &[Route] = &[
    route(
        "POST",
        "/v1/auth/signup",
        Access::Public,
        Audit::Event("org.create"),
    ),
    route("POST", "/v1/auth/login", Access::Public, Audit::SessionOnly),
    route(
        "POST",
        "/v1/auth/refresh",
        Access::Public,
        Audit::SessionOnly,
    ),
    route("POST", "/v1/auth/logout", Access::User, Audit::SessionOnly),
    route("GET", "/v1/auth/google/start", Access::Public, Audit::Read),
    route(
        "GET",
        "/v1/auth/google/callback",
        Access::Public,
        Audit::EventWhenCreating("org.create"),
    ),
    route("GET", "/v1/me", Access::User, Audit::Read),
    route("GET", "/.well-known/jwks.json", Access::Public, Audit::Read),
    route("GET", "/openapi.json", Access::Public, Audit::Read),
    route("POST", "/v1/orgs", Access::User, Audit::Event("org.create")),
    route(
        "GET",
        "/v1/orgs/{org}",
        Access::Org(Role::Viewer),
        Audit::Read,
    ),
    route(
        "PATCH",
        "/v1/orgs/{org}",
        Access::Org(Role::Admin),
        Audit::Event("org.update"),
    ),
    route(
        "GET",
        "/v1/orgs/{org}/members",
        Access::Org(Role::Viewer),
        Audit::Read,
    ),
    route(
        "PATCH",
        "/v1/orgs/{org}/members/{user}",
        Access::Org(Role::Admin),
        Audit::Event("member.role_change"),
    ),
    route(
        "DELETE",
        "/v1/orgs/{org}/members/{user}",
        Access::Org(Role::Admin),
        Audit::Event("member.remove"),
    ),
    route(
        "POST",
        "/v1/orgs/{org}/invitations",
        Access::Org(Role::Admin),
        Audit::Event("invitation.create"),
    ),
    route(
        "POST",
        "/v1/invitations/{token}/accept",
        Access::User,
        Audit::Event("member.add"),
    ),
];

pub const OPENAPI: &str = include_str!("../openapi.json");

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/auth/signup", post(account::signup))
        .route("/v1/auth/login", post(account::login))
        .route("/v1/auth/refresh", post(account::refresh))
        .route("/v1/auth/logout", post(account::logout))
        .route("/v1/auth/google/start", get(google::start))
        .route("/v1/auth/google/callback", get(google::callback))
        .route("/v1/me", get(account::me))
        .route("/.well-known/jwks.json", get(account::jwks))
        .route("/openapi.json", get(openapi))
        .route("/v1/orgs", post(orgs::create))
        .route("/v1/orgs/{org}", get(orgs::show).patch(orgs::update))
        .route("/v1/orgs/{org}/members", get(members::list))
        .route(
            "/v1/orgs/{org}/members/{user}",
            patch(members::change_role).delete(members::remove),
        )
        .route("/v1/orgs/{org}/invitations", post(invitations::create))
        .route("/v1/invitations/{token}/accept", post(invitations::accept))
        .with_state(state)
}

async fn openapi() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
}
