//! Admission under concurrency: every limit holds exactly, and admission is idempotent by
//! run id.

use reqwest::StatusCode;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::{admitted, counts, spawn_app};

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn parallel_limit_holds_under_200_concurrent_admissions(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.org_on("team").await;
    app.override_limit(org, "parallel_runs", 5).await;

    let results = app.admit_concurrently(org, 200, 600).await;
    let c = counts(&results);
    assert_eq!(c.get("admitted"), Some(&5), "{c:?}");
    assert_eq!(c.get("429:parallel_runs_exceeded"), Some(&195), "{c:?}");
    assert_eq!(app.tally(org).await.0, 5);

    // Settling the five frees their slots: five more, and only five, are admitted.
    for run in admitted(&results) {
        let (status, body) = app.settle(run, 30).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let results = app.admit_concurrently(org, 50, 600).await;
    let c = counts(&results);
    assert_eq!(c.get("admitted"), Some(&5), "{c:?}");
    assert_eq!(c.get("429:parallel_runs_exceeded"), Some(&45), "{c:?}");
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn monthly_run_limit_holds_under_concurrency_and_resets_next_month(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.org_on("team").await;
    app.override_limit(org, "runs_per_month", 7).await;
    app.override_limit(org, "parallel_runs", 1000).await;

    let results = app.admit_concurrently(org, 100, 60).await;
    let c = counts(&results);
    assert_eq!(c.get("admitted"), Some(&7), "{c:?}");
    assert_eq!(c.get("402:monthly_runs_exceeded"), Some(&93), "{c:?}");

    // Settling does not give runs back within the month.
    for run in admitted(&results) {
        assert_eq!(app.settle(run, 10).await.0, StatusCode::OK);
    }
    let (status, body) = app.admit(org, Uuid::now_v7(), 60).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::PAYMENT_REQUIRED, Some("monthly_runs_exceeded"))
    );

    // A month later (timestamps moved back as the superuser), the counter starts again.
    sqlx::query(
        "UPDATE quota_admissions SET admitted_at = admitted_at - interval '1 month' WHERE org_id = $1",
    )
    .bind(org)
    .execute(&app.admin)
    .await
    .unwrap();
    let results = app.admit_concurrently(org, 20, 60).await;
    let c = counts(&results);
    assert_eq!(c.get("admitted"), Some(&7), "{c:?}");
    assert_eq!(c.get("402:monthly_runs_exceeded"), Some(&13), "{c:?}");
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn budget_holds_under_concurrency(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let org = app.org_on("team").await;
    app.override_limit(org, "parallel_runs", 1000).await;
    app.override_limit(org, "cost_cents_per_hour", 120).await;
    // Worst case per run: 3600 s x 120 c/h = 120 cents; 1000 cents fit 8 of them.
    app.override_limit(org, "monthly_budget_cents", 1000).await;

    let results = app.admit_concurrently(org, 60, 3600).await;
    let c = counts(&results);
    assert_eq!(c.get("admitted"), Some(&8), "{c:?}");
    assert_eq!(c.get("402:monthly_budget_exceeded"), Some(&52), "{c:?}");
    for (_, status, body) in &results {
        if *status == StatusCode::OK {
            assert_eq!(body["reserved_cents"], 120);
            assert_eq!(body["granted_cap_secs"], 3600);
        }
    }
    let (_, _, _, reserved) = app.tally(org).await;
    assert!(reserved <= 1000, "{reserved}");

    // Settling for less frees the difference: 8 runs of 10 minutes cost 20 each (160),
    // leaving 840: seven more worst cases.
    for run in admitted(&results) {
        assert_eq!(app.settle(run, 600).await.0, StatusCode::OK);
    }
    let results = app.admit_concurrently(org, 30, 3600).await;
    assert_eq!(counts(&results).get("admitted"), Some(&7));
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn cap_is_the_smaller_of_requested_and_plan(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let org = app.org().await; // trial: cap 900 s at 120 c/h
    let (status, body) = app.admit(org, Uuid::now_v7(), 100_000).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["admitted"], true);
    assert_eq!(body["granted_cap_secs"], 900);
    assert_eq!(body["reserved_cents"], 30);
    let (status, body) = app.admit(org, Uuid::now_v7(), 0).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_cap"))
    );
    let (status, _) = app
        .admit(runwarden_tenancy::OrgId::new(), Uuid::now_v7(), 60)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn duplicate_admission_returns_the_first_decision_and_changes_nothing(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.org_on("team").await;
    app.override_limit(org, "parallel_runs", 1).await;
    let run = Uuid::now_v7();

    // The same run at once, ten times: one reservation, the same answer each time.
    let answers = futures::future::join_all((0..10).map(|_| app.admit(org, run, 600))).await;
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::OK, "{body}");
        assert_eq!(body, &answers[0].1);
    }
    assert_eq!(app.tally(org).await, (1, 0, 0, 20));

    // A refused run stays refused, even once a slot is free.
    let refused = Uuid::now_v7();
    let (status, first) = app.admit(org, refused, 600).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    app.settle(run, 60).await;
    let (status, again) = app.admit(org, refused, 600).await;
    assert_eq!(
        (status, &again["code"]),
        (StatusCode::TOO_MANY_REQUESTS, &first["code"])
    );
    // And the settled run's re-admission is still its first decision: no new reservation.
    let (status, body) = app.admit(org, run, 600).await;
    assert_eq!((status, &body), (StatusCode::OK, &answers[0].1));
    assert_eq!(app.tally(org).await, (0, 1, 1, 20));

    // A run id of another org is not taken over.
    let other = app.org_on("team").await;
    let (status, body) = app.admit(other, run, 600).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn one_run_id_admitted_by_two_orgs_at_once_is_a_conflict_for_one(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let (a, b) = (app.org_on("team").await, app.org_on("team").await);
    for org in [a, b] {
        app.override_limit(org, "parallel_runs", 1000).await;
    }
    for _ in 0..20 {
        let run = Uuid::now_v7();
        let (first, second) = tokio::join!(app.admit(a, run, 60), app.admit(b, run, 60));
        let mut statuses = [first.0, second.0];
        statuses.sort();
        assert_eq!(
            statuses,
            [StatusCode::OK, StatusCode::CONFLICT],
            "{first:?} {second:?}"
        );
        let conflict = if first.0 == StatusCode::CONFLICT {
            first.1
        } else {
            second.1
        };
        assert_eq!(conflict["code"], "run_id_conflict");
    }
}

/// Installs (as the superuser) a trigger that fails the next `failures` admission inserts
/// with `sqlstate`, counted by a sequence because a failed transaction rolls back any table
/// write the trigger would make.
async fn fail_admissions(app: &crate::helpers::TestApp, sqlstate: &str, failures: i64) {
    for statement in [
        "DROP TRIGGER IF EXISTS forced_failure ON quota_admissions".to_string(),
        "DROP SEQUENCE IF EXISTS forced_failures".to_string(),
        "CREATE SEQUENCE forced_failures".to_string(),
        "GRANT USAGE ON SEQUENCE forced_failures TO PUBLIC".to_string(),
        format!(
            "CREATE OR REPLACE FUNCTION forced_failure() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 IF nextval('forced_failures') <= {failures} THEN
                     RAISE EXCEPTION 'forced' USING ERRCODE = '{sqlstate}';
                 END IF;
                 RETURN NEW;
             END $$"
        ),
        "CREATE TRIGGER forced_failure BEFORE INSERT ON quota_admissions
         FOR EACH ROW EXECUTE FUNCTION forced_failure()"
            .to_string(),
    ] {
        sqlx::query(&statement).execute(&app.admin).await.unwrap();
    }
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn serialization_failures_and_deadlocks_are_retried_and_never_a_500(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.org_on("team").await;
    for sqlstate in ["40001", "40P01"] {
        // Three failures in a row: the fourth attempt admits, exactly once.
        fail_admissions(&app, sqlstate, 3).await;
        let run = Uuid::now_v7();
        let (status, body) = app.admit(org, run, 60).await;
        assert_eq!(status, StatusCode::OK, "{sqlstate}: {body}");
        let rows: i64 =
            sqlx::query_scalar("SELECT count(*) FROM quota_admissions WHERE run_id = $1")
                .bind(run)
                .fetch_one(&app.admin)
                .await
                .unwrap();
        assert_eq!(rows, 1, "{sqlstate}");

        // Failing every attempt: 503 with Retry-After (the client may retry), not 500, and
        // nothing reserved.
        fail_admissions(&app, sqlstate, 1000).await;
        let run = Uuid::now_v7();
        let response = app
            .client
            .post(app.url("/internal/admissions"))
            .header("x-internal-auth", crate::helpers::INTERNAL_SECRET)
            .json(&serde_json::json!({"org_id": org, "run_id": run, "requested_cap_secs": 60}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{sqlstate}"
        );
        assert!(response.headers().contains_key("retry-after"), "{sqlstate}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["status"], 503, "{body}");
        let rows: i64 =
            sqlx::query_scalar("SELECT count(*) FROM quota_admissions WHERE run_id = $1")
                .bind(run)
                .fetch_one(&app.admin)
                .await
                .unwrap();
        assert_eq!(rows, 0, "{sqlstate}");
    }
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn rel12_the_last_run_of_the_month_goes_to_exactly_one_of_50(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.org_on("team").await;
    app.override_limit(org, "runs_per_month", 100).await;
    app.override_limit(org, "parallel_runs", 1000).await;
    // 99 of 100 used (settled, so only the monthly counter binds).
    let used = app.admit_concurrently(org, 99, 60).await;
    for run in admitted(&used) {
        app.settle(run, 1).await;
    }
    let results = app.admit_concurrently(org, 50, 60).await;
    let c = counts(&results);
    assert_eq!(c.get("admitted"), Some(&1), "{c:?}");
    assert_eq!(c.get("402:monthly_runs_exceeded"), Some(&49), "{c:?}");
    let this_month: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM quota_admissions WHERE org_id = $1 AND status <> 'refused'",
    )
    .bind(org)
    .fetch_one(&app.admin)
    .await
    .unwrap();
    assert_eq!(this_month, 100, "never 101");
    // The 1st of next month (UTC): the counter starts again.
    sqlx::query(
        "UPDATE quota_admissions SET admitted_at = date_trunc('month', now()) - interval '1 second'
         WHERE org_id = $1",
    )
    .bind(org)
    .execute(&app.admin)
    .await
    .unwrap();
    let (status, body) = app.admit(org, Uuid::now_v7(), 60).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn api4_06_a_trial_past_its_end_runs_nothing_until_it_changes_plan(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.org().await;
    let (status, _) = app.admit(org, Uuid::now_v7(), 60).await;
    assert_eq!(status, StatusCode::OK, "a new trial runs");
    sqlx::query("UPDATE orgs SET trial_ends_at = now() - interval '1 second' WHERE id = $1")
        .bind(org)
        .execute(&app.admin)
        .await
        .unwrap();
    let (status, body) = app.admit(org, Uuid::now_v7(), 60).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::PAYMENT_REQUIRED, Some("trial_expired")),
        "{body}"
    );
    // No reservation was made for it: only the first run holds budget.
    assert_eq!(app.tally(org).await.3, 2);
    // On a paid plan the trial's end no longer applies.
    let (status, body) = app
        .internal(
            reqwest::Method::PUT,
            &format!("/internal/orgs/{org}/plan"),
            &serde_json::json!({"plan": "team"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.admit(org, Uuid::now_v7(), 60).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// One trial per user (API6-01, issue 10 attack 4): a user's further orgs are on `unpaid`,
/// which admits no run at all, with its own code, until a paid plan is set; the usage route
/// shows the plan.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn api6_01_an_unpaid_org_runs_nothing_until_a_paid_plan_is_set(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.org_on("unpaid").await;
    let viewer = app.member(org, runwarden_tenancy::Role::Viewer).await;
    let usage = app.usage(org, &viewer.token).await;
    assert_eq!(usage["plan"], "unpaid", "{usage}");
    assert_eq!(usage["limits"]["runs_per_month"], 0, "{usage}");
    assert_eq!(usage["limits"]["monthly_budget_cents"], 0, "{usage}");
    assert_eq!(usage["trial_ends_at"], serde_json::Value::Null, "{usage}");

    let run = Uuid::now_v7();
    let (status, body) = app.admit(org, run, 60).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::PAYMENT_REQUIRED, Some("plan_required")),
        "{body}"
    );
    // Recorded as refused, idempotently, with no reservation.
    let (status, again) = app.admit(org, run, 60).await;
    assert_eq!(
        (status, again["code"].as_str()),
        (StatusCode::PAYMENT_REQUIRED, Some("plan_required"))
    );
    assert_eq!(app.tally(org).await, (0, 0, 1, 0));
    // Overrides stored behind the app's back do not make it run either.
    app.override_limit(org, "runs_per_month", 100).await;
    app.override_limit(org, "parallel_runs", 10).await;
    app.override_limit(org, "monthly_budget_cents", 100_000)
        .await;
    let (status, body) = app.admit(org, Uuid::now_v7(), 60).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::PAYMENT_REQUIRED, Some("plan_required")),
        "{body}"
    );

    // A paid plan: runs are admitted.
    let (status, body) = app
        .internal(
            reqwest::Method::PUT,
            &format!("/internal/orgs/{org}/plan"),
            &serde_json::json!({"plan": "team"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.admit(org, Uuid::now_v7(), 60).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.usage(org, &viewer.token).await["plan"], "team");
}
