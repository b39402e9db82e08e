//! quotas' OpenAPI document against `ROUTES` and the live router, by the test kit's one
//! contract checker (`runwarden_testkit::contract`): the same routes in both directions,
//! their security, operation ids, path parameters and problem answers; every response of
//! every test is also checked against its documented schema (`TestApp::api`).

use runwarden_quotas::routes::ROUTES;
use runwarden_testkit::contract;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::spawn_app;

/// What the checker reads for mounts outside `ROUTES`.
const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn openapi_lists_exactly_the_routes_with_their_security(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let doc = contract::check_document(&app.api, ROUTES).await;

    // The limits schema names exactly the fields of `Limits`.
    let sample = serde_json::to_value(runwarden_quotas::rules::Limits {
        active_projects: 0,
        runs_per_month: 0,
        parallel_runs: 0,
        wall_clock_cap_secs: 1,
        monthly_budget_cents: 0,
        cost_cents_per_hour: 0,
        requests_per_minute: 0,
    })
    .unwrap();
    contract::assert_schema_fields(&doc, "Limits", &sample);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn every_route_in_routes_is_mounted(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    contract::check_mounted(&app.api, ROUTES, SRC, &[], contract::any_id).await;
}
