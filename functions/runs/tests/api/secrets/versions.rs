//! Secret versions: each change adds one and is audited without the value, pagination by
//! name, and concurrent puts.

use super::*;

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn versions_grow_by_one_and_every_change_is_audited_without_the_value(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.fx.org_on("team").await;
    let member = app.fx.member(org, Role::Member).await;
    let project = app.project(org, &member.token).await;

    let (status, created) = put(
        &app,
        org,
        &project,
        &member.token,
        "DB_PASSWORD",
        "secret_variable",
        "v-one-canary",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(
        keys_of(&created),
        ["created_at", "kind", "name", "updated_at", "version"]
            .map(String::from)
            .into(),
        "metadata only: {created}"
    );
    assert_eq!(created["name"], "DB_PASSWORD");
    assert_eq!(created["kind"], "secret_variable");
    assert_eq!(created["version"], 1);
    assert_eq!(created["created_at"], created["updated_at"]);

    for expected in [2, 3] {
        let (status, updated) = put(
            &app,
            org,
            &project,
            &member.token,
            "DB_PASSWORD",
            "secret_variable",
            &format!("v-{expected}-canary"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{updated}");
        assert_eq!(updated["version"], expected);
        assert_eq!(updated["created_at"], created["created_at"]);
        assert!(updated["updated_at"].as_str() >= created["updated_at"].as_str());
    }
    let versions = ciphertexts(&app.fx.admin, &project, "DB_PASSWORD").await;
    assert_eq!(
        versions.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        [1, 2, 3]
    );

    let (status, got) = app
        .call(
            Method::GET,
            &secret_path(org, &project, "DB_PASSWORD"),
            &member.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got["version"], 3);
    assert_eq!(keys_of(&got), keys_of(&created));

    // A name keeps its kind.
    let (status, problem) = put(
        &app,
        org,
        &project,
        &member.token,
        "DB_PASSWORD",
        "api_key",
        "x",
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::CONFLICT, Some("kind_mismatch"))
    );
    assert_eq!(
        ciphertexts(&app.fx.admin, &project, "DB_PASSWORD")
            .await
            .len(),
        3
    );

    // Deleting removes every version; the name then starts again at 1.
    let (status, _) = app
        .call(
            Method::DELETE,
            &secret_path(org, &project, "DB_PASSWORD"),
            &member.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        ciphertexts(&app.fx.admin, &project, "DB_PASSWORD")
            .await
            .is_empty()
    );
    let (status, problem) = app
        .call(
            Method::GET,
            &secret_path(org, &project, "DB_PASSWORD"),
            &member.token,
            None,
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );
    let (status, _) = app
        .call(
            Method::DELETE,
            &secret_path(org, &project, "DB_PASSWORD"),
            &member.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, again) = put(
        &app,
        org,
        &project,
        &member.token,
        "DB_PASSWORD",
        "api_key",
        "fresh-canary",
    )
    .await;
    assert_eq!(
        (status, &again["version"]),
        (StatusCode::CREATED, &json!(1))
    );

    let target = format!("{project}/DB_PASSWORD");
    for (action, count) in [
        ("secret.create", 2),
        ("secret.update", 2),
        ("secret.delete", 1),
    ] {
        let events = app.fx.audit_events(org, action).await;
        assert_eq!(events.len(), count, "{action}: {events:?}");
        for event in &events {
            assert_eq!(event["actor"]["kind"], "user", "{action}");
            assert_eq!(event["actor"]["id"], member.user_id.to_string(), "{action}");
            assert_eq!(event["target"]["type"], "secret", "{action}");
            assert_eq!(event["target"]["id"], target, "{action}");
            assert_eq!(event["details"]["project_id"], project, "{action}");
            assert!(event["request_id"].is_string(), "{action}: {event}");
            assert!(!event.to_string().contains("canary"), "{event}");
        }
    }
    assert_eq!(
        app.fx.audit_events(org, "secret.update").await[1]["details"]["version"],
        3
    );
    assert_eq!(
        app.fx.audit_events(org, "secret.delete").await[0]["details"]["versions"],
        3
    );
    // The refused kind change recorded nothing.
    assert_eq!(
        app.fx.audit_events(org, "secret.update").await.len(),
        2,
        "a refused change is not an update"
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn pagination_walks_every_secret_once_by_name(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let org = app.fx.org_on("team").await;
    let member = app.fx.member(org, Role::Member).await;
    let project = app.project(org, &member.token).await;
    let names = ["G", "A", "E", "C", "B", "F", "D"];
    for name in names {
        assert_eq!(
            put(&app, org, &project, &member.token, name, "api_key", "v")
                .await
                .0,
            StatusCode::CREATED
        );
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=3&cursor={c}"),
            None => "?limit=3".into(),
        };
        let (status, page) = app
            .call(
                Method::GET,
                &format!("{}{query}", list_path(org, &project)),
                &member.token,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        for item in page["items"].as_array().unwrap() {
            assert_eq!(keys_of(item).len(), 5, "{item}");
            seen.push(item["name"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["A", "B", "C", "D", "E", "F", "G"]);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn concurrent_puts_get_consecutive_versions_and_one_data_key(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.fx.org_on("team").await;
    let member = app.fx.member(org, Role::Member).await;
    let project = app.project(org, &member.token).await;

    // First use of the org's data key by ten requests at once: one key, every value readable.
    let results = futures::future::join_all((0..10).map(|i| {
        let (project, token) = (project.clone(), member.token.clone());
        let app = &app;
        async move {
            put(
                app,
                org,
                &project,
                &token,
                &format!("S{i}"),
                "api_key",
                &format!("value-{i}"),
            )
            .await
        }
    }))
    .await;
    for (status, body) in &results {
        assert_eq!(*status, StatusCode::CREATED, "{body}");
    }
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM org_data_keys WHERE org_id = $1")
        .bind(org)
        .fetch_one(&app.fx.admin)
        .await
        .unwrap();
    assert_eq!(keys, 1);

    // Ten versions of one name at once: 1 to 10, each once.
    let results = futures::future::join_all((0..10).map(|i| {
        let (project, token) = (project.clone(), member.token.clone());
        let app = &app;
        async move {
            put(
                app,
                org,
                &project,
                &token,
                "SAME",
                "api_key",
                &format!("same-{i}"),
            )
            .await
        }
    }))
    .await;
    let mut versions: Vec<i64> = results
        .iter()
        .map(|(_, body)| body["version"].as_i64().unwrap())
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, (1..=10).collect::<Vec<_>>());
    assert_eq!(
        results
            .iter()
            .filter(|(s, _)| *s == StatusCode::CREATED)
            .count(),
        1
    );

    let runtime = app.fx.pool_as(runwarden_store::roles::RUNS, 1).await;
    let read = runner_read(&runtime, &app.vault, org, &project)
        .await
        .unwrap();
    assert_eq!(read.len(), 11);
    let same = read.iter().find(|s| s.name == "SAME").unwrap();
    assert_eq!(same.version, 10);
    // The latest version holds the value of whichever request got version 10.
    let winner = results
        .iter()
        .position(|(_, body)| body["version"] == 10)
        .unwrap();
    assert_eq!(same.value.expose_secret(), format!("same-{winner}"));
    for i in 0..10 {
        let s = read.iter().find(|s| s.name == format!("S{i}")).unwrap();
        assert_eq!(s.value.expose_secret(), format!("value-{i}"));
    }
}
