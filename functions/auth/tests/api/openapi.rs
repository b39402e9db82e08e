//! auth's OpenAPI document against `ROUTES` and the live router, by the test kit's one
//! contract checker (`runwarden_testkit::contract`): the same routes in both directions,
//! their security, operation ids, path parameters and problem answers; every response of
//! every test is also checked against its documented schema (`TestApp::api`).

use runwarden_auth::routes::ROUTES;
use runwarden_platform::request::TrustedProxyHops;
use runwarden_testkit::contract;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use runwarden_auth::config::GoogleConfig;

use crate::helpers::{spawn_app, spawn_app_with};

/// What the checker reads for mounts outside `ROUTES`.
const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn openapi_lists_exactly_the_routes_with_their_security(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let doc = contract::check_document(&app.api, ROUTES).await;
    let paths = &doc["paths"];

    // The error envelope and the members page are described as they are sent.
    let problem = &doc["components"]["schemas"]["Problem"]["properties"];
    for field in ["type", "title", "status", "detail", "code", "retry_after"] {
        assert!(problem.get(field).is_some(), "Problem.{field}");
    }
    let list = &paths["/v1/orgs/{org}/members"]["get"];
    let page = doc
        .pointer("/components/schemas/MemberPage/properties")
        .unwrap();
    assert!(page.get("items").is_some() && page.get("next_cursor").is_some());
    assert_eq!(
        list["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/MemberPage"
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn every_route_in_routes_is_mounted(_: PgPoolOptions, options: PgConnectOptions) {
    // Google configured (with endpoints nobody listens on) so its routes answer for real
    // instead of 404 `not_configured`; none of the calls below reaches the provider.
    let unreachable = url::Url::parse("http://127.0.0.1:9/").unwrap();
    let google = GoogleConfig {
        client_id: "client".into(),
        client_secret: "secret".into(),
        redirect_url: url::Url::parse("https://runwarden.test/v1/auth/google/callback").unwrap(),
        issuer: runwarden_auth::config::GOOGLE_ISSUER.into(),
        auth_url: unreachable.join("authorize").unwrap(),
        token_url: unreachable.join("token").unwrap(),
        jwks_url: unreachable.join("jwks").unwrap(),
    };
    let app = spawn_app_with(options, Some(google), TrustedProxyHops(1)).await;
    contract::check_mounted(&app.api, ROUTES, SRC, &[], |name| match name {
        "token" => format!("inv_{}", uuid::Uuid::new_v4().simple()),
        _ => uuid::Uuid::new_v4().to_string(),
    })
    .await;
}
