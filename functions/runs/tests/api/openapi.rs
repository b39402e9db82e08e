//! runs' OpenAPI document against `ROUTES` and the live router, by the test kit's one
//! contract checker (`runwarden_testkit::contract`): the same routes in both directions,
//! their security, operation ids, path parameters and problem answers; every response of
//! every test is also checked against its documented schema (`TestApp::api`).

use runwarden_runs::routes::ROUTES;
use runwarden_testkit::contract;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::spawn_app;

/// What the checker reads for mounts outside `ROUTES`.
const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn openapi_lists_exactly_the_routes(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    contract::check_document(&app.api, ROUTES).await;
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn every_route_in_routes_is_mounted(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    contract::check_mounted(&app.api, ROUTES, SRC, &[], |name| match name {
        "name" => "screenshot.png".to_owned(),
        _ => uuid::Uuid::now_v7().to_string(),
    })
    .await;
}
