//! auth's HTTP surface. `ROUTES` is the one list of what is served: the router, the
//! OpenAPI document and the role-matrix and tenancy tests are all checked against it.

mod account;
mod credentials;
mod google;
mod invitations;
mod members;
mod orgs;

use axum::Router;
use axum::routing::{delete, get, patch, post};

use crate::AppState;

use runwarden_tenancy::routes::route;
pub use runwarden_tenancy::routes::{Access, Audit, Route};

/// Every route. For member routes the rules also depend on the target's role (see
/// `orgs.rs`); the role here is the least any call needs.
#[rustfmt::skip]
pub const ROUTES: &[Route] = {
    use runwarden_tenancy::Role::*;
    use runwarden_tenancy::routes::{Access::*, Audit::*};
    &[
        route("POST", "/v1/auth/signup", Public, Unaudited("creates an unverified account that owns nothing and belongs to no org (so no org audit log); its verification is audited")),
        route("POST", "/v1/auth/verify-email", Public, PerChange(&["org.create", "user.email_verified"])),
        route("POST", "/v1/auth/verify-email/resend", Public, Unaudited("mails a verification link again; changes no account")),
        // Account events: one per org the user belongs to (`crate::account_audit`).
        route("POST", "/v1/auth/login", Public, PerItem("session.login")),
        // Nothing on a rotation; a reused token revokes its family and records this.
        route("POST", "/v1/auth/refresh", Public, PerItem("session.refresh_reuse")),
        route("POST", "/v1/auth/logout", User, PerItem("session.logout")),
        route("POST", "/v1/auth/reauthenticate", User, SessionOnly),
        route("POST", "/v1/auth/password/change", User, PerItem("user.password_change")),
        route("POST", "/v1/auth/password/forgot", Public, PerItem("user.password_reset_request")),
        route("POST", "/v1/auth/password/reset", Public, PerItem("user.password_reset")),
        route("GET", "/v1/auth/google/start", Public, Read),
        route("GET", "/v1/auth/google/callback", Public, EventWhenCreating("org.create")),
        route("GET", "/v1/me", User, Read),
        route("GET", "/v1/me/sessions", User, Read),
        route("DELETE", "/v1/me/sessions/{id}", User, PerItem("session.revoke")),
        route("GET", "/.well-known/jwks.json", Public, Read),
        route("GET", "/openapi.json", Public, Read),
        route("POST", "/v1/orgs", User, Event("org.create")),
        route("GET", "/v1/orgs/{org}", Org(Viewer), Read),
        route("PATCH", "/v1/orgs/{org}", Org(Admin), Event("org.update")),
        route("GET", "/v1/orgs/{org}/members", Org(Viewer), Read),
        route("PATCH", "/v1/orgs/{org}/members/{user}", Org(Admin), Event("member.role_change")),
        route("DELETE", "/v1/orgs/{org}/members/{user}", Org(Admin), Event("member.remove")),
        route("DELETE", "/v1/orgs/{org}/members/{user}/sessions", Org(Admin), Event("member.sessions_revoke")),
        route("POST", "/v1/orgs/{org}/invitations", Org(Admin), Event("invitation.create")),
        route("POST", "/v1/invitations/{token}/accept", User, Event("member.add")),
        route("POST", "/internal/tasks/retention-purge", Task, Unaudited("a system effect: deletes sessions and sign-in flows past their retention; it reports how many")),
        route("GET", "/healthz", Public, Read),
    ]
};

pub const OPENAPI: &str = include_str!("../openapi.json");

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/auth/signup", post(account::signup))
        .route("/v1/auth/verify-email", post(account::verify_email))
        .route(
            "/v1/auth/verify-email/resend",
            post(account::resend_verification),
        )
        .route("/v1/auth/login", post(account::login))
        .route("/v1/auth/refresh", post(account::refresh))
        .route("/v1/auth/logout", post(account::logout))
        .route("/v1/auth/reauthenticate", post(credentials::reauthenticate))
        .route(
            "/v1/auth/password/change",
            post(credentials::change_password),
        )
        .route(
            "/v1/auth/password/forgot",
            post(credentials::forgot_password),
        )
        .route("/v1/auth/password/reset", post(credentials::reset_password))
        .route("/v1/auth/google/start", get(google::start))
        .route("/v1/auth/google/callback", get(google::callback))
        .route("/v1/me", get(account::me))
        .route("/v1/me/sessions", get(credentials::list_sessions))
        .route("/v1/me/sessions/{id}", delete(credentials::revoke_session))
        .route("/.well-known/jwks.json", get(account::jwks))
        .route("/openapi.json", get(openapi))
        .route("/v1/orgs", post(orgs::create))
        .route("/v1/orgs/{org}", get(orgs::show).patch(orgs::update))
        .route("/v1/orgs/{org}/members", get(members::list))
        .route(
            "/v1/orgs/{org}/members/{user}",
            patch(members::change_role).delete(members::remove),
        )
        .route(
            "/v1/orgs/{org}/members/{user}/sessions",
            delete(members::revoke_sessions),
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
