//! Settlement (internal route and Pub/Sub push) and the reaper.

use std::time::Duration;

use reqwest::StatusCode;
use runwarden_tenancy::Role;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::spawn_app;

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn settlement_replaces_the_reservation_once(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let org = app.org().await;
    let viewer = app.member(org, Role::Viewer).await;
    let run = Uuid::now_v7();
    assert_eq!(app.admit(org, run, 900).await.0, StatusCode::OK);
    let usage = app.usage(org, &viewer.token).await;
    assert_eq!(
        (
            usage["parallel_runs"].as_i64(),
            usage["reserved_cents"].as_i64()
        ),
        (Some(1), Some(30))
    );

    let (status, first) = app.settle(run, 300).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["status"], "settled");
    assert_eq!(first["actual_cents"], 10);
    // Again, with another duration: nothing changes.
    let (status, again) = app.settle(run, 900).await;
    assert_eq!((status, &again), (StatusCode::OK, &first));
    let usage = app.usage(org, &viewer.token).await;
    assert_eq!(usage["parallel_runs"], 0);
    assert_eq!(usage["reserved_cents"], 0);
    assert_eq!(usage["spent_cents"], 10);
    assert_eq!(usage["runs_this_month"], 1);

    // More than the cap is charged at the cap.
    let long = Uuid::now_v7();
    app.admit(org, long, 60).await;
    let (_, body) = app.settle(long, 10_000).await;
    assert_eq!(
        (body["actual_secs"].as_i64(), body["actual_cents"].as_i64()),
        (Some(60), Some(2))
    );

    let (status, _) = app.settle(Uuid::now_v7(), 10).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn run_finished_push_settles_idempotently(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let org = app.org().await;
    let run = Uuid::now_v7();
    app.admit(org, run, 900).await;
    assert_eq!(app.push_finished(run, 120).await, StatusCode::NO_CONTENT);
    assert_eq!(app.push_finished(run, 900).await, StatusCode::NO_CONTENT);
    assert_eq!(app.tally(org).await, (0, 1, 0, 30));
    let cents: i64 =
        sqlx::query_scalar("SELECT actual_cents FROM quota_admissions WHERE run_id = $1")
            .bind(run)
            .fetch_one(&app.admin)
            .await
            .unwrap();
    assert_eq!(cents, 4);
    // The internal route agrees, and changes nothing either.
    let (_, body) = app.settle(run, 1).await;
    assert_eq!(body["actual_cents"], 4);
    // Never admitted: acknowledged, nothing written.
    assert_eq!(
        app.push_finished(Uuid::now_v7(), 1).await,
        StatusCode::NO_CONTENT
    );
    // Without the secret: refused.
    let response = app
        .client
        .post(app.url("/push/run-finished"))
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn reaper_settles_expired_reservations_at_their_cap(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.org().await;
    let (stale, fresh) = (Uuid::now_v7(), Uuid::now_v7());
    app.admit(org, stale, 600).await;
    app.admit(org, fresh, 600).await;
    sqlx::query(
        "UPDATE quota_admissions SET admitted_at = now() - interval '11 minutes' WHERE run_id = $1",
    )
    .bind(stale)
    .execute(&app.admin)
    .await
    .unwrap();
    let reaped = runwarden_quotas::store::reap_expired(&app.runtime, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(reaped, 1);
    let (status, body) = app.settle(stale, 5).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "timed_out");
    assert_eq!(
        (body["actual_secs"].as_i64(), body["actual_cents"].as_i64()),
        (Some(600), Some(20))
    );
    assert_eq!(
        app.tally(org).await.0,
        1,
        "the fresh run keeps its reservation"
    );
    // A second pass finds nothing.
    let reaped = runwarden_quotas::store::reap_expired(&app.runtime, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(reaped, 0);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn the_schedulers_reap_task_settles_and_purges_only_for_an_authenticated_caller(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.org().await;
    let stale = Uuid::now_v7();
    app.admit(org, stale, 600).await;
    sqlx::query(
        "UPDATE quota_admissions SET admitted_at = now() - interval '1 hour' WHERE run_id = $1",
    )
    .bind(stale)
    .execute(&app.admin)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO rate_limits (key, tat) VALUES ('org:idle:api', now() - interval '1 minute')",
    )
    .execute(&app.admin)
    .await
    .unwrap();
    let call = |query: &'static str| {
        let app = &app;
        async move {
            let response = app
                .client
                .post(app.url(&format!("/internal/tasks/reap{query}")))
                .send()
                .await
                .unwrap();
            let status = response.status();
            (
                status,
                response
                    .json::<serde_json::Value>()
                    .await
                    .unwrap_or_default(),
            )
        }
    };
    assert_eq!(call("").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        call("?token=wrong-secret-0123456789").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.tally(org).await.0,
        1,
        "nothing reaped for an unauthenticated call"
    );
    let (status, report) = call("?token=test-push-secret-0123456789abcdef").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(report["settled"], 1);
    assert!(
        report["rate_limit_keys_purged"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert_eq!(app.tally(org).await.0, 0);
}
