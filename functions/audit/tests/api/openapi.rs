//! audit's OpenAPI document against `ROUTES` and the live router, by the test kit's one
//! contract checker (`runwarden_testkit::contract`): the same routes in both directions,
//! their security, operation ids, path parameters and problem answers; every response of
//! every test is also checked against its documented schema (`TestApp::api`).

use runwarden_audit::routes::ROUTES;
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

    // The record schema names exactly the fields a record has.
    let sample = serde_json::to_value(runwarden_audit::chain::Record {
        org_id: runwarden_tenancy::OrgId::new(),
        seq: 1,
        event_id: uuid::Uuid::nil(),
        time: chrono::Utc::now(),
        created_at: chrono::Utc::now(),
        actor: runwarden_audit::chain::RecordActor {
            kind: "user".into(),
            id: None,
        },
        action: "a.b".into(),
        target: runwarden_audit::chain::RecordTarget {
            kind: "t".into(),
            id: "i".into(),
        },
        outcome: "success".into(),
        request_id: None,
        ip: None,
        user_agent: None,
        details: serde_json::Value::Null,
        prev_hash: [0; 32],
        hash: [0; 32],
    })
    .unwrap();
    contract::assert_schema_fields(&doc, "AuditRecord", &sample);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn every_route_in_routes_is_mounted(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    contract::check_mounted(&app.api, ROUTES, SRC, &[], contract::any_id).await;
}
