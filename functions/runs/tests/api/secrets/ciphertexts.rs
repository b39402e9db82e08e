//! Ciphertexts moved between rows or tampered with fail to decrypt (CRY-03, CRY-04).

use super::*;

/// Runs `sql` as the superuser (an attacker with write access to the database).
async fn tamper(admin: &PgPool, sql: &str) {
    let changed = sqlx::query(sql)
        .execute(admin)
        .await
        .unwrap()
        .rows_affected();
    assert!(changed >= 1, "{sql} changed nothing");
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn moved_or_tampered_ciphertexts_fail_to_decrypt(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let (a, b) = (app.fx.org_on("team").await, app.fx.org_on("team").await);
    let alice = app.fx.member(a, Role::Owner).await;
    let bob = app.fx.member(b, Role::Owner).await;
    let project = app.project(a, &alice.token).await;
    let sibling = app.project(a, &alice.token).await;
    let project_b = app.project(b, &bob.token).await;
    put(
        &app,
        a,
        &project,
        &alice.token,
        "FIRST",
        "api_key",
        "first-canary",
    )
    .await;
    put(
        &app,
        a,
        &project,
        &alice.token,
        "SECOND",
        "api_key",
        "second-canary",
    )
    .await;
    put(
        &app,
        a,
        &project,
        &alice.token,
        "SECOND",
        "api_key",
        "second-v2-canary",
    )
    .await;
    put(
        &app,
        a,
        &sibling,
        &alice.token,
        "FIRST",
        "api_key",
        "sibling-canary",
    )
    .await;
    put(
        &app,
        b,
        &project_b,
        &bob.token,
        "FIRST",
        "api_key",
        "bob-canary",
    )
    .await;

    let runtime = app.fx.pool_as(runwarden_store::roles::RUNS, 1).await;
    let run = new_run(&runtime, a, &project).await;
    let admin = &app.fx.admin;
    let snapshot: Vec<(String, String, i32, Vec<u8>)> = sqlx::query_as(
        "SELECT project_id::text, name, version, ciphertext FROM project_secret_versions",
    )
    .fetch_all(admin)
    .await
    .unwrap();
    let keys: Vec<(Uuid, Vec<u8>)> =
        sqlx::query_as("SELECT org_id, wrapped_key FROM org_data_keys")
            .fetch_all(admin)
            .await
            .unwrap();
    let restore = async || {
        for (project, name, version, ciphertext) in &snapshot {
            sqlx::query(
                "UPDATE project_secret_versions SET ciphertext = $4
                 WHERE project_id = $1::uuid AND name = $2 AND version = $3",
            )
            .bind(project)
            .bind(name)
            .bind(version)
            .bind(ciphertext)
            .execute(admin)
            .await
            .unwrap();
        }
        for (org, wrapped) in &keys {
            sqlx::query("UPDATE org_data_keys SET wrapped_key = $2 WHERE org_id = $1")
                .bind(org)
                .bind(wrapped)
                .execute(admin)
                .await
                .unwrap();
        }
        sqlx::query("UPDATE project_secrets SET kind = 'api_key'")
            .execute(admin)
            .await
            .unwrap();
    };
    let read_a = || read_as(&runtime, &app.vault, a, &project, run);
    assert_eq!(read_a().await.unwrap().len(), 2, "untampered reads work");

    let first = format!("project_id = '{project}' AND name = 'FIRST'");
    let second_v2 = format!("project_id = '{project}' AND name = 'SECOND' AND version = 2");
    let attacks = [
        // Another row of the same project (CRY-04).
        format!(
            "UPDATE project_secret_versions SET ciphertext =
               (SELECT ciphertext FROM project_secret_versions WHERE {second_v2})
             WHERE {first}"
        ),
        // An older version of the same secret replayed as the latest.
        format!(
            "UPDATE project_secret_versions SET ciphertext =
               (SELECT ciphertext FROM project_secret_versions
                WHERE project_id = '{project}' AND name = 'SECOND' AND version = 1)
             WHERE {second_v2}"
        ),
        // The same name in another project of the org.
        format!(
            "UPDATE project_secret_versions SET ciphertext =
               (SELECT ciphertext FROM project_secret_versions
                WHERE project_id = '{sibling}' AND name = 'FIRST')
             WHERE {first}"
        ),
        // Another org's row.
        format!(
            "UPDATE project_secret_versions SET ciphertext =
               (SELECT ciphertext FROM project_secret_versions
                WHERE project_id = '{project_b}' AND name = 'FIRST')
             WHERE {first}"
        ),
        // Another org's wrapped data key.
        format!(
            "UPDATE org_data_keys SET wrapped_key =
               (SELECT wrapped_key FROM org_data_keys WHERE org_id = '{b}')
             WHERE org_id = '{a}'"
        ),
        // One bit of the nonce, of the ciphertext, of the tag (CRY-03).
        format!(
            "UPDATE project_secret_versions SET ciphertext = set_byte(ciphertext, 1, get_byte(ciphertext, 1) # 1)
             WHERE {first}"
        ),
        format!(
            "UPDATE project_secret_versions SET ciphertext = set_byte(ciphertext, 14, get_byte(ciphertext, 14) # 128)
             WHERE {first}"
        ),
        format!(
            "UPDATE project_secret_versions
             SET ciphertext = set_byte(ciphertext, length(ciphertext) - 1,
                                       get_byte(ciphertext, length(ciphertext) - 1) # 1)
             WHERE {first}"
        ),
        // One bit of the wrapped data key.
        format!(
            "UPDATE org_data_keys SET wrapped_key = set_byte(wrapped_key, 20, get_byte(wrapped_key, 20) # 4)
             WHERE org_id = '{a}'"
        ),
        // The kind relabelled (an API key handed over as a cookie jar).
        format!("UPDATE project_secrets SET kind = 'auth_cookie' WHERE {first}"),
    ];
    for attack in &attacks {
        let reads = app.fx.audit_events(a, "secret.read_by_runner").await.len();
        tamper(admin, attack).await;
        let err = read_a().await.unwrap_err();
        assert!(
            matches!(err, RunsError::Api(ApiError::Internal(_))),
            "{attack}: {err:?}"
        );
        let message = format!("{err:#} {err:?}");
        assert!(!message.contains("canary"), "{message}");
        // No partial result, and no read on record.
        assert_eq!(
            app.fx.audit_events(a, "secret.read_by_runner").await.len(),
            reads,
            "{attack}"
        );
        restore().await;
        assert_eq!(read_a().await.unwrap().len(), 2, "restored after {attack}");
    }

    // Through the API: metadata still answers; adding a version under a tampered data key is
    // a generic 500 that writes nothing.
    tamper(
        admin,
        &format!(
            "UPDATE org_data_keys SET wrapped_key = set_byte(wrapped_key, 20, get_byte(wrapped_key, 20) # 4)
             WHERE org_id = '{a}'"
        ),
    )
    .await;
    let (status, meta) = app
        .call(
            Method::GET,
            &secret_path(a, &project, "FIRST"),
            &alice.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{meta}");
    let (status, problem) = put(&app, a, &project, &alice.token, "FIRST", "api_key", "x").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("internal"))
    );
    assert!(!problem.to_string().contains("unwrap"), "{problem}");
    assert_eq!(ciphertexts(admin, &project, "FIRST").await.len(), 1);
}
