//! Runs: admission through the real quotas, idempotency, dispatch exactly once, the runner
//! ticket and token, ending (runner, cancel, reaper) with settlement messages, the role
//! matrix and tenant isolation.

use reqwest::{Method, StatusCode};
use runwarden_tenancy::Role;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{TestApp, running, spawn_app};

const DEMO: fn(i64) -> Value =
    |cap| json!({"agent": "demo", "input": {"sleep_seconds": 1}, "max_seconds": cap});

/// A team org with a member and a project: (org, member token, project id).
async fn setup(app: &TestApp) -> (runwarden_tenancy::OrgId, String, String) {
    let org = app.fx.org_on("team").await;
    let member = app.fx.member(org, Role::Member).await;
    let project = app.project(org, &member.token).await;
    (org, member.token, project)
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn a_run_is_admitted_queued_and_dispatched_exactly_once(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let (org, token, project) = setup(&app).await;
    let (status, _, run) = app.start_run(org, &project, &token, DEMO(120), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    assert_eq!(run["status"], "queued");
    assert_eq!(run["granted_cap_secs"], 120);
    let id = run["id"].as_str().unwrap().to_owned();
    // The plan's cap wins over a larger request.
    let (_, _, big) = app
        .start_run(org, &project, &token, json!({"agent": "demo"}), None)
        .await;
    assert_eq!(big["granted_cap_secs"], 3600, "team's cap");

    let dispatches = app.outbox(org, "run-dispatch").await;
    assert_eq!(dispatches.len(), 2);
    assert_eq!(dispatches[0]["run_id"], id);
    assert_eq!(app.fx.audit_events(org, "run.create").await.len(), 2);

    // Pub/Sub delivers the same dispatch five times, at once: one runner starts.
    let statuses = futures::future::join_all((0..5).map(|_| app.push_dispatch(org, &id))).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::NO_CONTENT),
        "{statuses:?}"
    );
    assert_eq!(app.push_dispatch(org, &id).await, StatusCode::NO_CONTENT);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let starts = app.starts(1).await;
    assert_eq!(
        starts.iter().filter(|(r, _)| *r == id).count(),
        1,
        "{starts:?}"
    );
    let (_, ticket) = &starts[0];
    assert!(ticket.starts_with("rtk_") && ticket.len() > 40);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn quota_refusals_pass_through_and_dispatch_nothing(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.fx.org_on("trial").await; // 2 parallel runs
    let member = app.fx.member(org, Role::Member).await;
    let project = app.project(org, &member.token).await;
    for _ in 0..2 {
        assert_eq!(
            app.start_run(org, &project, &member.token, DEMO(60), None)
                .await
                .0,
            StatusCode::ACCEPTED
        );
    }
    let (status, headers, problem) = app
        .start_run(org, &project, &member.token, DEMO(60), None)
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{problem}");
    assert_eq!(problem["code"], "parallel_runs_exceeded");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(headers["content-type"], "application/problem+json");
    // API4-04: a run over budget is refused before dispatch: no message, no runner.
    let team = app.fx.org_on("team").await;
    app.fx.override_limit(team, "monthly_budget_cents", 1).await;
    let owner = app.fx.member(team, Role::Owner).await;
    let p = app.project(team, &owner.token).await;
    let (status, _, problem) = app
        .start_run(team, &p, &owner.token, DEMO(3600), None)
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (
            StatusCode::PAYMENT_REQUIRED,
            Some("monthly_budget_exceeded")
        )
    );
    assert!(app.outbox(team, "run-dispatch").await.is_empty());
    assert_eq!(app.outbox(org, "run-dispatch").await.len(), 2);
    let refused: i64 =
        sqlx::query_scalar("SELECT count(*) FROM runs WHERE org_id = $1 AND status = 'refused'")
            .bind(team)
            .fetch_one(&app.fx.admin)
            .await
            .unwrap();
    assert_eq!(refused, 1);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn rel14_one_idempotency_key_is_one_run_and_one_admission(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let (org, token, project) = setup(&app).await;
    let answers = futures::future::join_all(
        (0..10).map(|_| app.start_run(org, &project, &token, DEMO(60), Some("order-42"))),
    )
    .await;
    let ids: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|(status, _, run)| {
            assert_eq!(*status, StatusCode::ACCEPTED, "{run}");
            run["id"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    let (_, _, again) = app
        .start_run(org, &project, &token, DEMO(60), Some("order-42"))
        .await;
    assert!(ids.contains(again["id"].as_str().unwrap()));
    let (runs, admissions): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM runs WHERE org_id = $1),
                (SELECT count(*) FROM quota_admissions WHERE org_id = $1)",
    )
    .bind(org)
    .fetch_one(&app.fx.admin)
    .await
    .unwrap();
    assert_eq!((runs, admissions), (1, 1));
    assert_eq!(app.outbox(org, "run-dispatch").await.len(), 1);
    // Another key is another run.
    let (_, _, other) = app
        .start_run(org, &project, &token, DEMO(60), Some("order-43"))
        .await;
    assert!(!ids.contains(other["id"].as_str().unwrap()));
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn the_ticket_is_single_use_and_the_token_opens_one_live_run(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let (org, token, project) = setup(&app).await;
    let (run, runner_token) = running(&app, org, &token, &project, 60).await;
    assert_eq!(app.run_status(&run).await, "running");
    let ticket = app.starts(1).await[0].1.clone();

    // Replay of the ticket: 401, audited.
    let (status, _) = app
        .runner_call(
            "/internal/runner/exchange",
            None,
            &json!({"run_id": run, "ticket": ticket}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.fx.audit_events(org, "run.ticket_replay").await.len(), 1);

    // Events with the token; without X-Internal-Auth, without or with a wrong token: 401.
    let events = json!({"events": [
        {"kind": "log", "stream": "stdout", "message": "hello"},
        {"kind": "progress", "percent": 50, "message": "half"},
    ]});
    let path = format!("/internal/runner/runs/{run}/events");
    assert_eq!(
        app.runner_call(&path, Some(&runner_token), &events).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.runner_call(&path, None, &events).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.runner_call(&path, Some("rnt_forged"), &events).await.0,
        StatusCode::UNAUTHORIZED
    );
    let no_secret = app
        .client
        .post(app.served.url(&path))
        .bearer_auth(&runner_token)
        .json(&events)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(no_secret, StatusCode::UNAUTHORIZED);

    // The token of this run against another run (even of the same org): 401.
    let (other, _) = running(&app, org, &token, &project, 60).await;
    let other_path = format!("/internal/runner/runs/{other}/events");
    assert_eq!(
        app.runner_call(&other_path, Some(&runner_token), &events)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    // Completion: succeeded, metered at most the cap, settled through run-finished.
    let complete = format!("/internal/runner/runs/{run}/complete");
    let (status, ended) = app
        .runner_call(
            &complete,
            Some(&runner_token),
            &json!({"outcome": "succeeded", "exit_code": 0, "actual_secs": 9999}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    assert_eq!(
        (ended["status"].as_str(), ended["actual_secs"].as_i64()),
        (Some("succeeded"), Some(60))
    );
    let finished = app.outbox(org, "run-finished").await;
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0]["run_id"], run);
    assert_eq!(finished[0]["actual_secs"], 60);
    assert_eq!(
        app.fx.audit_events(org, "run.finish").await[0]["actor"]["kind"],
        "runner"
    );
    // After completion the token is dead.
    assert_eq!(
        app.runner_call(&path, Some(&runner_token), &events).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.runner_call(
            &complete,
            Some(&runner_token),
            &json!({"outcome": "failed", "actual_secs": 1})
        )
        .await
        .0,
        StatusCode::UNAUTHORIZED
    );

    let messages: Vec<String> =
        sqlx::query_scalar("SELECT message FROM run_events WHERE run_id = $1::uuid ORDER BY id")
            .bind(&run)
            .fetch_all(&app.fx.admin)
            .await
            .unwrap();
    assert_eq!(
        messages,
        ["queued", "running", "hello", "half", "succeeded"]
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn a_token_dies_after_the_cap_and_the_reaper_ends_overdue_runs(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let (org, token, project) = setup(&app).await;
    let (run, runner_token) = running(&app, org, &token, &project, 60).await;
    // Past its cap plus grace (the clock moved by moving the run's start back).
    sqlx::query(
        "UPDATE runner_credentials SET token_expires_at = now() - interval '1 second' WHERE run_id = $1::uuid",
    )
    .bind(&run)
    .execute(&app.fx.admin)
    .await
    .unwrap();
    let path = format!("/internal/runner/runs/{run}/events");
    let events = json!({"events": [{"kind": "status", "message": "still here"}]});
    assert_eq!(
        app.runner_call(&path, Some(&runner_token), &events).await.0,
        StatusCode::UNAUTHORIZED
    );

    sqlx::query("UPDATE runs SET started_at = now() - interval '1 hour' WHERE id = $1::uuid")
        .bind(&run)
        .execute(&app.fx.admin)
        .await
        .unwrap();
    // A queued run whose runner never came is failed too, at no cost.
    let (_, _, stuck) = app.start_run(org, &project, &token, DEMO(60), None).await;
    let stuck = stuck["id"].as_str().unwrap().to_owned();
    sqlx::query("UPDATE runs SET created_at = now() - interval '1 hour' WHERE id = $1::uuid")
        .bind(&stuck)
        .execute(&app.fx.admin)
        .await
        .unwrap();
    let runtime = app.fx.pool_as(runwarden_store::roles::RUNS, 2).await;
    let ended =
        runwarden_runs::reaper::reap(&runtime, &app.executor, std::time::Duration::from_secs(5))
            .await
            .unwrap();
    assert_eq!(ended, 2);
    assert_eq!(app.run_status(&run).await, "timed_out");
    assert_eq!(app.run_status(&stuck).await, "failed");
    let finished = app.outbox(org, "run-finished").await;
    let by_run = |id: &str| {
        finished
            .iter()
            .find(|m| m["run_id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(by_run(&run)["actual_secs"], 60, "metering stops at the cap");
    assert_eq!(by_run(&stuck)["actual_secs"], 0);
    assert_eq!(app.fx.audit_events(org, "run.reap").await.len(), 2);
    // Reaping again ends nothing more.
    assert_eq!(
        runwarden_runs::reaper::reap(&runtime, &app.executor, std::time::Duration::from_secs(5))
            .await
            .unwrap(),
        0
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn cancel_stops_a_run_and_kills_its_token(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let (org, token, project) = setup(&app).await;
    let (run, runner_token) = running(&app, org, &token, &project, 60).await;
    let viewer = app.fx.member(org, Role::Viewer).await;
    let cancel = format!("/v1/orgs/{org}/runs/{run}/cancel");
    assert_eq!(
        app.call(Method::POST, &cancel, &viewer.token, None).await.0,
        StatusCode::FORBIDDEN
    );
    let (status, body) = app.call(Method::POST, &cancel, &token, None).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("cancelled")),
        "{body}"
    );
    let (status, body) = app.call(Method::POST, &cancel, &token, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("run_ended"))
    );
    let path = format!("/internal/runner/runs/{run}/events");
    let events = json!({"events": [{"kind": "status", "message": "x"}]});
    assert_eq!(
        app.runner_call(&path, Some(&runner_token), &events).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.outbox(org, "run-finished").await.len(), 1);
    assert_eq!(app.fx.audit_events(org, "run.cancel").await.len(), 1);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn runs_role_matrix_and_tenant_isolation(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let (org, token, project) = setup(&app).await;
    let (_, _, run) = app.start_run(org, &project, &token, DEMO(60), None).await;
    let run = run["id"].as_str().unwrap().to_owned();
    let viewer = app.fx.member(org, Role::Viewer).await;
    // Viewers read, and may not start.
    assert_eq!(
        app.call(
            Method::GET,
            &format!("/v1/orgs/{org}/runs"),
            &viewer.token,
            None
        )
        .await
        .0,
        StatusCode::OK
    );
    let (status, got) = app
        .call(
            Method::GET,
            &format!("/v1/orgs/{org}/runs/{run}"),
            &viewer.token,
            None,
        )
        .await;
    assert_eq!(
        (status, got["id"].as_str()),
        (StatusCode::OK, Some(run.as_str()))
    );
    assert_eq!(
        app.start_run(org, &project, &viewer.token, DEMO(60), None)
            .await
            .0,
        StatusCode::FORBIDDEN
    );

    // Another org's member: 404 for the run and the project, through either org's path.
    let other = app.fx.org_on("team").await;
    let stranger = app.fx.member(other, Role::Owner).await;
    for o in [org, other] {
        for (method, path) in [
            (Method::GET, format!("/v1/orgs/{o}/runs/{run}")),
            (Method::POST, format!("/v1/orgs/{o}/runs/{run}/cancel")),
        ] {
            let (status, body) = app.call(method.clone(), &path, &stranger.token, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
        }
        let (status, _, _) = app
            .start_run(o, &project, &stranger.token, DEMO(60), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (_, page) = app
        .call(
            Method::GET,
            &format!("/v1/orgs/{other}/runs"),
            &stranger.token,
            None,
        )
        .await;
    assert_eq!(page["items"], json!([]));

    // Runs of an archived project cannot start; bad input is 400 problem+json.
    app.patch_project(org, &project, &token, json!({"archived": true}))
        .await;
    let (status, _, body) = app.start_run(org, &project, &token, DEMO(60), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("project_archived"))
    );
    let fresh = app.project(org, &token).await;
    for bad in [
        json!({"agent": "bash -c 'curl evil'"}),
        json!({"agent": "demo", "max_seconds": 0}),
        json!({"agent": "demo", "input": "text"}),
        json!({"agent": "demo", "extra": 1}),
    ] {
        let (status, _, body) = app.start_run(org, &fresh, &token, bad.clone(), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
    }
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn runner_callbacks_are_strict_and_runner_tokens_open_nothing_else(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let (org, token, project) = setup(&app).await;
    let (run, runner_token) = running(&app, org, &token, &project, 60).await;
    let path = format!("/internal/runner/runs/{run}/events");
    // API10-01: unknown fields, wrong types, too many events, an oversized body.
    for bad in [
        json!({"events": [{"kind": "log", "stream": "stdout", "message": "x", "run_id": "other"}]}),
        json!({"events": [{"kind": "progress", "percent": "half"}]}),
        json!({"events": [{"kind": "shell", "message": "rm -rf /"}]}),
        json!({"events": (0..501).map(|_| json!({"kind": "status", "message": "x"})).collect::<Vec<_>>()}),
    ] {
        let (status, body) = app.runner_call(&path, Some(&runner_token), &bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    }
    let huge = json!({"events": [{"kind": "status", "message": "x".repeat(3 << 20)}]});
    let (status, _) = app.runner_call(&path, Some(&runner_token), &huge).await;
    assert_eq!(
        status,
        StatusCode::PAYMENT_REQUIRED.max(StatusCode::PAYLOAD_TOO_LARGE)
    );
    let (status, _) = app
        .runner_call(
            &format!("/internal/runner/runs/{run}/complete"),
            Some(&runner_token),
            &json!({"outcome": "succeeded", "actual_secs": 1, "status": "succeeded"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // JWT-14: a runner token is no access token.
    for path in [
        format!("/v1/orgs/{org}/runs"),
        format!("/v1/orgs/{org}/runs/{run}"),
    ] {
        let (status, _) = app.call(Method::GET, &path, &runner_token, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
    }
    // AZ-03: a run in org A naming org B's project creates nothing and uses no quota.
    let other = app.fx.org_on("team").await;
    let owner_b = app.fx.member(other, Role::Owner).await;
    let project_b = app.project(other, &owner_b.token).await;
    let (status, _, _) = app.start_run(org, &project_b, &token, DEMO(60), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (runs_b, admissions): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM runs WHERE project_id = $1::uuid),
                (SELECT count(*) FROM quota_admissions WHERE org_id = $2)",
    )
    .bind(&project_b)
    .bind(org)
    .fetch_one(&app.fx.admin)
    .await
    .unwrap();
    assert_eq!(
        (runs_b, admissions),
        (0, 1),
        "only the first run was admitted"
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn the_runner_reads_its_projects_secrets_and_no_others(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let (org, token, project) = setup(&app).await;
    let other = app.project(org, &token).await;
    for (p, name, value) in [
        (&project, "SHOP_API_KEY", "shop-canary-1"),
        (&project, "LOGIN_COOKIE", "cookie-canary-2"),
        (&other, "OTHER_KEY", "other-canary-3"),
    ] {
        let (status, body) = app
            .call(
                Method::PUT,
                &format!("/v1/orgs/{org}/projects/{p}/secrets/{name}"),
                &token,
                Some(&json!({"kind": "api_key", "value": value})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (run, runner_token) = running(&app, org, &token, &project, 60).await;
    let path = format!("/internal/runner/runs/{run}/secrets");
    let read = |token: Option<String>| {
        let app = &app;
        let path = path.clone();
        async move {
            let mut request = app
                .client
                .get(app.served.url(&path))
                .header("x-internal-auth", crate::helpers::INTERNAL_SECRET);
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = read(Some(runner_token.clone())).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let got: Vec<(&str, &str)> = body["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["value"].as_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("LOGIN_COOKIE", "cookie-canary-2"),
            ("SHOP_API_KEY", "shop-canary-1")
        ]
    );
    let reads = app.fx.audit_events(org, "secret.read_by_runner").await;
    assert_eq!(reads.len(), 2);
    assert!(
        reads
            .iter()
            .all(|e| e["actor"]["kind"] == "runner" && e["actor"]["id"] == run)
    );
    assert!(!serde_json::to_string(&reads).unwrap().contains("canary"));

    // Without the token, with another run's token, and after the run ended: 401.
    assert_eq!(read(None).await.0, StatusCode::UNAUTHORIZED);
    let (_, other_token) = running(&app, org, &token, &other, 60).await;
    assert_eq!(read(Some(other_token)).await.0, StatusCode::UNAUTHORIZED);
    app.runner_call(
        &format!("/internal/runner/runs/{run}/complete"),
        Some(&runner_token),
        &json!({"outcome": "succeeded", "exit_code": 0, "actual_secs": 1}),
    )
    .await;
    assert_eq!(read(Some(runner_token)).await.0, StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn the_schedulers_tasks_answer_only_an_authenticated_caller(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let (org, token, project) = setup(&app).await;
    let (run, _) = running(&app, org, &token, &project, 60).await;
    sqlx::query("UPDATE runs SET started_at = now() - interval '1 hour' WHERE id = $1::uuid")
        .bind(&run)
        .execute(&app.fx.admin)
        .await
        .unwrap();
    let call = |path: String| {
        let app = &app;
        async move {
            let response = app.client.post(app.served.url(&path)).send().await.unwrap();
            let status = response.status();
            (status, response.json::<Value>().await.unwrap_or_default())
        }
    };
    let secret = crate::helpers::PUSH_SECRET;
    assert_eq!(
        call("/internal/tasks/reap".into()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        call("/internal/tasks/reap?token=not-the-stack-secret-123".into())
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.run_status(&run).await, "running");
    let (status, report) = call(format!("/internal/tasks/reap?token={secret}")).await;
    assert_eq!(
        (status, report["runs_ended"].as_u64()),
        (StatusCode::OK, Some(1)),
        "{report}"
    );
    assert_eq!(app.run_status(&run).await, "timed_out");
    // This app has no relay to sweep with: 503, which the scheduler retries.
    let (status, _) = call(format!("/internal/tasks/relay-sweep?token={secret}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
}

/// One trial per user (API6-01): an org on `unpaid` (every org a user creates after their
/// first) starts no run: quotas' 402 `plan_required` is passed on, nothing is dispatched.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn api6_01_an_unpaid_org_starts_no_run(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let org = app.fx.org_on("unpaid").await;
    let member = app.fx.member(org, Role::Member).await;
    let project = app.project(org, &member.token).await;
    let (status, _, problem) = app
        .start_run(org, &project, &member.token, DEMO(60), None)
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::PAYMENT_REQUIRED, Some("plan_required")),
        "{problem}"
    );
    assert!(app.outbox(org, "run-dispatch").await.is_empty());
}

/// SSO-04 in runs: an org restricted to a Google Workspace domain refuses a member's
/// password session (a session row without `google_hd`) with 403 `sso_required`, on reads
/// and on starting a run; a session from Google sign-in in the domain is admitted.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn sso04_a_workspace_domain_org_refuses_sessions_from_elsewhere(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.fx.org_on("team").await;
    let member = app.fx.member(org, Role::Member).await;
    let project = app.project(org, &member.token).await;
    sqlx::query("UPDATE orgs SET google_workspace_domain = 'corp.example' WHERE id = $1")
        .bind(org)
        .execute(&app.fx.admin)
        .await
        .unwrap();
    let projects = format!("/v1/orgs/{org}/projects");
    let (status, body) = app.call(Method::GET, &projects, &member.token, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("sso_required")),
        "{body}"
    );
    let (status, _, body) = app
        .start_run(org, &project, &member.token, DEMO(60), None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("sso_required")),
        "{body}"
    );
    assert!(app.outbox(org, "run-dispatch").await.is_empty());

    // A stranger still sees nothing at all.
    let stranger = app.fx.user().await;
    let (status, _) = app
        .call(Method::GET, &projects, &stranger.token, None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    sqlx::query("UPDATE sessions SET google_hd = 'corp.example' WHERE id = $1")
        .bind(member.session_id)
        .execute(&app.fx.admin)
        .await
        .unwrap();
    let (status, body) = app.call(Method::GET, &projects, &member.token, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
