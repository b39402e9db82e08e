//! runs' OpenAPI document against `ROUTES` and the live router, by the test kit's one
//! contract checker (`runwarden_testkit::contract`): the same routes in both directions,
//! their security, operation ids, path parameters and problem answers; every response of
//! every test is also checked against its documented schema (`TestApp::api`).

use runwarden_runs::routes::{Access, ROUTES};
use runwarden_testkit::contract::{self, Documented, security};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::spawn_app;

fn table() -> Vec<Documented> {
    ROUTES
        .iter()
        .map(|(method, path, access)| Documented {
            method,
            path,
            security: match access {
                Access::Public => security::public(),
                Access::Push => security::push(),
                // The exchange's credential is the ticket in its body.
                Access::Runner if *path == "/internal/runner/exchange" => security::internal(),
                Access::Runner => security::runner(),
                Access::Org(_) => security::bearer(),
                Access::Media => security::media(),
            },
            org_role: match access {
                Access::Org(role) => Some(*role),
                _ => None,
            },
        })
        .collect()
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn openapi_lists_exactly_the_routes(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    contract::check_document(&app.api, &table()).await;
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn every_route_in_routes_is_mounted(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    contract::check_mounted(
        &app.api,
        &table(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/src"),
        &[],
        |name| match name {
            "name" => "screenshot.png".to_owned(),
            _ => uuid::Uuid::now_v7().to_string(),
        },
    )
    .await;
}
