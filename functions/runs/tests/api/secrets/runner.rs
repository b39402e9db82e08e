//! The runner's read of its run's secrets, each read audited.

use super::*;

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn the_runner_reads_the_latest_versions_and_each_read_is_audited(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.fx.org_on("team").await;
    let other_org = app.fx.org_on("team").await;
    let member = app.fx.member(org, Role::Member).await;
    let other = app.fx.member(other_org, Role::Member).await;
    let project = app.project(org, &member.token).await;
    let sibling = app.project(org, &member.token).await;
    let elsewhere = app.project(other_org, &other.token).await;
    put(
        &app,
        org,
        &project,
        &member.token,
        "TOKEN",
        "api_key",
        "one",
    )
    .await;
    put(
        &app,
        org,
        &project,
        &member.token,
        "TOKEN",
        "api_key",
        "two",
    )
    .await;
    put(
        &app,
        org,
        &project,
        &member.token,
        "COOKIES",
        "auth_cookie",
        "jar=1; a=b",
    )
    .await;
    put(
        &app,
        org,
        &sibling,
        &member.token,
        "SIBLING",
        "api_key",
        "not-this-project",
    )
    .await;
    put(
        &app,
        other_org,
        &elsewhere,
        &other.token,
        "TOKEN",
        "api_key",
        "not-this-org",
    )
    .await;

    let runtime = app.fx.pool_as(runwarden_store::roles::RUNS, 1).await;
    // Secrets go to a run of their own project only: not to a run of a sibling project, not
    // to a run id that names no run.
    let sibling_run = new_run(&runtime, org, &sibling).await;
    for run in [sibling_run, Uuid::now_v7()] {
        let refused = read_as(&runtime, &app.vault, org, &project, run).await;
        assert!(
            matches!(refused, Err(RunsError::Api(ApiError::NotFound))),
            "{refused:?}"
        );
    }
    assert!(
        app.fx
            .audit_events(org, "secret.read_by_runner")
            .await
            .is_empty()
    );

    let run = new_run(&runtime, org, &project).await;
    let read = read_as(&runtime, &app.vault, org, &project, run)
        .await
        .unwrap();
    assert_eq!(
        values(&read),
        [
            ("COOKIES".to_owned(), 1, "jar=1; a=b".to_owned()),
            ("TOKEN".to_owned(), 2, "two".to_owned()),
        ]
    );
    assert_eq!(read[0].kind, SecretKind::AuthCookie);
    assert_eq!(read[1].kind, SecretKind::ApiKey);
    let printed = format!("{read:?}");
    assert!(
        !printed.contains("two") && !printed.contains("jar=1"),
        "{printed}"
    );

    let events = app.fx.audit_events(org, "secret.read_by_runner").await;
    assert_eq!(events.len(), 2, "{events:?}");
    for (event, name, version) in [(&events[0], "COOKIES", 1), (&events[1], "TOKEN", 2)] {
        assert_eq!(event["actor"]["kind"], "runner");
        assert_eq!(event["actor"]["id"], run.to_string());
        assert_eq!(event["target"]["type"], "secret");
        assert_eq!(event["target"]["id"], format!("{project}/{name}"));
        assert_eq!(event["details"]["run_id"], run.to_string());
        assert_eq!(event["details"]["version"], version);
        assert!(!event.to_string().contains("two"), "{event}");
    }

    // A read whose transaction is rolled back leaves no event (events commit with the read).
    let mut tx = begin_org_tx(&runtime, org, None).await.unwrap();
    let again = secrets::read_for_runner(
        &mut tx,
        &app.vault,
        org,
        project.parse().unwrap(),
        run.into(),
    )
    .await
    .unwrap();
    assert_eq!(again.len(), 2);
    tx.rollback().await.unwrap();
    assert_eq!(
        app.fx
            .audit_events(org, "secret.read_by_runner")
            .await
            .len(),
        2
    );

    // A project without secrets: nothing, and no data key is made for an org without one.
    let fresh = app.fx.org_on("team").await;
    let owner = app.fx.member(fresh, Role::Owner).await;
    let empty = app.project(fresh, &owner.token).await;
    let read = runner_read(&runtime, &app.vault, fresh, &empty)
        .await
        .unwrap();
    assert!(read.is_empty());
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM org_data_keys WHERE org_id = $1")
        .bind(fresh)
        .fetch_one(&app.fx.admin)
        .await
        .unwrap();
    assert_eq!(keys, 0);
    assert!(
        app.fx
            .audit_events(fresh, "secret.read_by_runner")
            .await
            .is_empty()
    );
}
