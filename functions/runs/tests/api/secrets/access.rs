//! Who may touch secrets: the role matrix, and another org's secrets answering like
//! missing ones (also as the runtime role under row-level security).

use super::*;

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn role_matrix(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let org = app.fx.org_on("team").await;
    let owner = app.fx.member(org, Role::Owner).await;
    let project = app.project(org, &owner.token).await;
    let (status, _) = put(&app, org, &project, &owner.token, "TARGET", "api_key", "k").await;
    assert_eq!(status, StatusCode::CREATED);
    let outsider = app.fx.user().await;

    // (role, may read, may write and delete)
    let cases = [
        (Some(Role::Viewer), true, false),
        (Some(Role::Member), true, true),
        (Some(Role::Admin), true, true),
        (Some(Role::Owner), true, true),
        (None, false, false),
    ];
    for (i, (role, read, write)) in cases.into_iter().enumerate() {
        let caller = match role {
            Some(role) => app.fx.member(org, role).await,
            None => outsider.clone(),
        };
        let expect = |allowed: bool, ok: StatusCode| match (allowed, role) {
            (true, _) => ok,
            (false, None) => StatusCode::NOT_FOUND,
            (false, Some(_)) => StatusCode::FORBIDDEN,
        };
        let list = list_path(org, &project);
        let one = secret_path(org, &project, "TARGET");
        assert_eq!(
            app.call(Method::GET, &list, &caller.token, None).await.0,
            expect(read, StatusCode::OK),
            "{role:?} list"
        );
        assert_eq!(
            app.call(Method::GET, &one, &caller.token, None).await.0,
            expect(read, StatusCode::OK),
            "{role:?} get"
        );
        let name = format!("NEW_{i}");
        assert_eq!(
            put(&app, org, &project, &caller.token, &name, "api_key", "v")
                .await
                .0,
            expect(write, StatusCode::CREATED),
            "{role:?} create"
        );
        assert_eq!(
            put(&app, org, &project, &caller.token, "TARGET", "api_key", "v")
                .await
                .0,
            expect(write, StatusCode::OK),
            "{role:?} new version"
        );
        let doomed = if write { name.as_str() } else { "TARGET" };
        assert_eq!(
            app.call(
                Method::DELETE,
                &secret_path(org, &project, doomed),
                &caller.token,
                None
            )
            .await
            .0,
            expect(write, StatusCode::NO_CONTENT),
            "{role:?} delete"
        );
    }
    // Three writers added a version each; the viewer and the outsider changed nothing.
    let (_, target) = app
        .call(
            Method::GET,
            &secret_path(org, &project, "TARGET"),
            &owner.token,
            None,
        )
        .await;
    assert_eq!(target["version"], 4);
    let (_, page) = app
        .call(Method::GET, &list_path(org, &project), &owner.token, None)
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");

    // Without a token, or with a tampered one: 401.
    for token in ["", &format!("{}x", owner.token)] {
        assert_eq!(
            app.call(Method::GET, &list_path(org, &project), token, None)
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
    }
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn another_orgs_secrets_do_not_exist(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let (a, b) = (app.fx.org_on("team").await, app.fx.org_on("team").await);
    let alice = app.fx.member(a, Role::Owner).await;
    let bob = app.fx.member(b, Role::Owner).await;
    let project_a = app.project(a, &alice.token).await;
    let project_b = app.project(b, &bob.token).await;
    put(
        &app,
        a,
        &project_a,
        &alice.token,
        "API_KEY",
        "api_key",
        "alice-canary",
    )
    .await;
    put(
        &app,
        b,
        &project_b,
        &bob.token,
        "API_KEY",
        "api_key",
        "bob-canary",
    )
    .await;

    // Bob through Alice's org path, and through his own org's path with Alice's project.
    for org in [a, b] {
        for (method, path) in [
            (Method::GET, list_path(org, &project_a)),
            (Method::GET, secret_path(org, &project_a, "API_KEY")),
            (Method::DELETE, secret_path(org, &project_a, "API_KEY")),
        ] {
            let (status, problem) = app.call(method.clone(), &path, &bob.token, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {problem}");
            assert_eq!(problem["code"], "not_found");
        }
        let (status, problem) = put(
            &app,
            org,
            &project_a,
            &bob.token,
            "API_KEY",
            "api_key",
            "bob-was-here",
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{problem}");
        let (status, _) = put(
            &app,
            org,
            &project_a,
            &bob.token,
            "PLANTED",
            "api_key",
            "bob-was-here",
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (_, still) = app
        .call(
            Method::GET,
            &secret_path(a, &project_a, "API_KEY"),
            &alice.token,
            None,
        )
        .await;
    assert_eq!(still["version"], 1);
    let planted: i64 =
        sqlx::query_scalar("SELECT count(*) FROM project_secrets WHERE name = 'PLANTED'")
            .fetch_one(&app.fx.admin)
            .await
            .unwrap();
    assert_eq!(planted, 0);

    // Row-level security, as the runtime role itself, scoped to org B.
    let runtime = app.fx.pool_as(runwarden_store::roles::RUNS, 1).await;
    let mut tx = begin_org_tx(&runtime, b, None).await.unwrap();
    for table in [
        "org_data_keys",
        "project_secrets",
        "project_secret_versions",
    ] {
        let seen: i64 =
            sqlx::query_scalar(&format!("SELECT count(*) FROM {table} WHERE org_id = $1"))
                .bind(a)
                .fetch_one(&mut *tx)
                .await
                .unwrap();
        assert_eq!(seen, 0, "{table}");
        let own: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(own, 1, "{table}: org B sees its own row only");
    }
    let changed = sqlx::query("UPDATE project_secrets SET updated_at = now() WHERE org_id = $1")
        .bind(a)
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(changed, 0);
    let changed = sqlx::query("UPDATE org_data_keys SET rotated_at = now() WHERE org_id = $1")
        .bind(a)
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(changed, 0);
    let insert = sqlx::query(
        "INSERT INTO project_secrets (org_id, project_id, name, kind) VALUES ($1, $2::uuid, 'X', 'api_key')",
    )
    .bind(a)
    .bind(&project_a)
    .execute(&mut *tx)
    .await;
    assert!(
        insert.is_err(),
        "row-level security refuses another org's row"
    );
    tx.rollback().await.unwrap();

    // A row claiming org B for org A's project: the composite foreign key refuses it.
    let mut tx = begin_org_tx(&runtime, b, None).await.unwrap();
    let insert = sqlx::query(
        "INSERT INTO project_secrets (org_id, project_id, name, kind) VALUES ($1, $2::uuid, 'X', 'api_key')",
    )
    .bind(b)
    .bind(&project_a)
    .execute(&mut *tx)
    .await
    .unwrap_err();
    assert_eq!(
        insert.as_database_error().unwrap().constraint(),
        Some("project_secrets_project_fkey")
    );
    tx.rollback().await.unwrap();

    // Ciphertexts are immutable for the app: no UPDATE on versions.
    let mut tx = begin_org_tx(&runtime, a, None).await.unwrap();
    let update = sqlx::query("UPDATE project_secret_versions SET ciphertext = ciphertext")
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert!(update.to_string().contains("permission denied"), "{update}");
    tx.rollback().await.unwrap();

    // The runner's read, scoped to B, never yields A's secrets even when asked for A's
    // project with a run of A's: that run is no run of B's.
    let run_a = new_run(&runtime, a, &project_a).await;
    let refused = read_as(&runtime, &app.vault, b, &project_a, run_a).await;
    assert!(
        matches!(refused, Err(RunsError::Api(ApiError::NotFound))),
        "{refused:?}"
    );
    assert!(
        app.fx
            .audit_events(b, "secret.read_by_runner")
            .await
            .is_empty()
    );
    // Other roles have no access at all.
    for role in [
        runwarden_store::roles::AUTH,
        runwarden_store::roles::QUOTAS,
        runwarden_store::roles::AUDIT,
    ] {
        let pool = app.fx.pool_as(role, 1).await;
        let mut tx = begin_org_tx(&pool, a, None).await.unwrap();
        let denied = sqlx::query("SELECT 1 FROM project_secret_versions")
            .execute(&mut *tx)
            .await
            .unwrap_err();
        assert!(
            denied.to_string().contains("permission denied"),
            "{role}: {denied}"
        );
    }
}
