//! Plan changes and overrides: audited in the same transaction; trial caps are hard.

use reqwest::{Method, StatusCode};
use runwarden_tenancy::Role;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app};

async fn outbox(app: &TestApp, kind: &str) -> Vec<Value> {
    sqlx::query_scalar("SELECT payload FROM outbox_events WHERE kind = $1 ORDER BY created_at")
        .bind(kind)
        .fetch_all(&app.admin)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn plan_change_is_audited_and_takes_effect(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let org = app.org().await;
    let viewer = app.member(org, Role::Viewer).await;
    assert_eq!(
        app.usage(org, &viewer.token).await["limits"]["parallel_runs"],
        2
    );

    let (status, body) = app
        .internal(
            Method::PUT,
            &format!("/internal/orgs/{org}/plan"),
            &json!({"plan": "team"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["plan"], "team");
    let usage = app.usage(org, &viewer.token).await;
    assert_eq!(usage["plan"], "team");
    assert_eq!(usage["limits"]["parallel_runs"], 10);

    let events = outbox(&app, "quota.plan_change").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["org_id"], org.to_string());
    assert_eq!(events[0]["actor"]["kind"], "system");
    assert_eq!(events[0]["details"], json!({"from": "trial", "to": "team"}));

    let (status, body) = app
        .internal(
            Method::PUT,
            &format!("/internal/orgs/{org}/plan"),
            &json!({"plan": "platinum"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unknown_plan"))
    );
    let (status, _) = app
        .internal(
            Method::PUT,
            &format!("/internal/orgs/{}/plan", Uuid::now_v7()),
            &json!({"plan": "team"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        outbox(&app, "quota.plan_change").await.len(),
        1,
        "refusals are not audited"
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn overrides_apply_field_by_field_and_are_audited(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.org_on("team").await;
    let viewer = app.member(org, Role::Viewer).await;
    let path = format!("/internal/orgs/{org}/overrides");
    let (status, body) = app
        .internal(
            Method::PUT,
            &path,
            &json!({"parallel_runs": 40, "monthly_budget_cents": 7}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let limits = &app.usage(org, &viewer.token).await["limits"];
    assert_eq!(limits["parallel_runs"], 40);
    assert_eq!(limits["monthly_budget_cents"], 7);
    assert_eq!(limits["runs_per_month"], 5000, "the plan's value");
    assert_eq!(outbox(&app, "quota.overrides_change").await.len(), 1);

    let (status, body) = app
        .internal(Method::PUT, &path, &json!({"parallel_runs": -1}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_override"))
    );
    let (status, _) = app
        .internal(Method::PUT, &path, &json!({"plan": "enterprise"}))
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "unknown fields are refused"
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn trial_caps_cannot_be_raised_by_an_override(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let org = app.org().await;
    let viewer = app.member(org, Role::Viewer).await;
    let (status, body) = app
        .internal(
            Method::PUT,
            &format!("/internal/orgs/{org}/overrides"),
            &json!({"parallel_runs": 100}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("trial_caps_fixed"))
    );
    assert!(outbox(&app, "quota.overrides_change").await.is_empty());

    // Overrides stored behind the app's back (or left from a paid plan) are ignored on trial.
    app.override_limit(org, "parallel_runs", 100).await;
    app.override_limit(org, "wall_clock_cap_secs", 100_000)
        .await;
    assert_eq!(
        app.usage(org, &viewer.token).await["limits"]["parallel_runs"],
        2
    );
    let results = app.admit_concurrently(org, 20, 100_000).await;
    let c = crate::helpers::counts(&results);
    assert_eq!(c.get("admitted"), Some(&2), "{c:?}");
    for (_, status, body) in &results {
        if *status == StatusCode::OK {
            assert_eq!(body["granted_cap_secs"], 900);
        }
    }
}
