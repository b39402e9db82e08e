//! Secrets: versions and their audit trail, the role matrix, tenant isolation (also as the
//! runtime role under row-level security), input rules, no value in any answer, event or row
//! (CRY-01), the runner's read, ciphertexts moved or tampered with (CRY-03, CRY-04), key
//! rotation (CRY-06) and production refusing to start without its key (CRY-05).

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use runwarden_platform::request::RequestMeta;
use runwarden_runs::error::{ApiError, RunsError, RunsResult};
use runwarden_runs::secrets::{self, PlainSecret, SecretKind, SecretName, SecretValue};
use runwarden_tenancy::{OrgContext, OrgId, Principal, Role, begin_org_tx};
use runwarden_vault::{KeyRing, generate_kek_base64};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app};

const KINDS: [&str; 4] = [
    "client_credential",
    "secret_variable",
    "auth_cookie",
    "api_key",
];

fn secret_path(org: OrgId, project: &str, name: &str) -> String {
    format!("/v1/orgs/{org}/projects/{project}/secrets/{name}")
}

fn list_path(org: OrgId, project: &str) -> String {
    format!("/v1/orgs/{org}/projects/{project}/secrets")
}

/// `PUT .../secrets/{name}`: (status, raw body text, JSON or Null).
async fn put_raw(
    app: &TestApp,
    org: OrgId,
    project: &str,
    token: &str,
    name: &str,
    body: &Value,
) -> (StatusCode, String, Value) {
    let response = app
        .client
        .put(app.served.url(&secret_path(org, project, name)))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    (status, text, json)
}

async fn put(
    app: &TestApp,
    org: OrgId,
    project: &str,
    token: &str,
    name: &str,
    kind: &str,
    value: &str,
) -> (StatusCode, Value) {
    let (status, _, json) = put_raw(
        app,
        org,
        project,
        token,
        name,
        &json!({"kind": kind, "value": value}),
    )
    .await;
    (status, json)
}

/// A `GET`/`DELETE` as raw text (to search it).
async fn text(app: &TestApp, method: Method, path: &str, token: &str) -> (StatusCode, String) {
    let response = app
        .client
        .request(method, app.served.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

/// A run of `project`, inserted as the runtime role (as `POST .../runs` would leave it).
async fn new_run(runtime: &PgPool, org: OrgId, project: &str) -> Uuid {
    let run = Uuid::now_v7();
    let mut tx = begin_org_tx(runtime, org, None).await.unwrap();
    sqlx::query(
        "INSERT INTO runs (id, org_id, project_id, agent, requested_cap_secs, status)
         VALUES ($1, $2, $3::uuid, 'demo', 60, 'running')",
    )
    .bind(run)
    .bind(org)
    .bind(project)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    run
}

/// The runner of `run` reads, as the runtime role in a transaction scoped to `org`, committed
/// when it succeeds (as the runner API would).
async fn read_as(
    runtime: &PgPool,
    ring: &KeyRing,
    org: OrgId,
    project: &str,
    run: Uuid,
) -> RunsResult<Vec<PlainSecret>> {
    let mut tx = begin_org_tx(runtime, org, None).await.unwrap();
    let read =
        secrets::read_for_runner(&mut tx, ring, org, project.parse().unwrap(), run.into()).await?;
    tx.commit().await.unwrap();
    Ok(read)
}

/// The runner of a new run of `project` reads.
async fn runner_read(
    runtime: &PgPool,
    ring: &KeyRing,
    org: OrgId,
    project: &str,
) -> RunsResult<Vec<PlainSecret>> {
    let run = new_run(runtime, org, project).await;
    read_as(runtime, ring, org, project, run).await
}

fn values(read: &[PlainSecret]) -> Vec<(String, i32, String)> {
    read.iter()
        .map(|s| {
            (
                s.name.clone(),
                s.version,
                s.value.expose_secret().to_owned(),
            )
        })
        .collect()
}

/// (version, ciphertext) of every version of one secret, read by the superuser.
async fn ciphertexts(admin: &PgPool, project: &str, name: &str) -> Vec<(i32, Vec<u8>)> {
    sqlx::query_as(
        "SELECT version, ciphertext FROM project_secret_versions
         WHERE project_id = $1::uuid AND name = $2 ORDER BY version",
    )
    .bind(project)
    .bind(name)
    .fetch_all(admin)
    .await
    .unwrap()
}

fn keys_of(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

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

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn no_value_in_any_answer_event_or_row(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let org = app.fx.org_on("team").await;
    let member = app.fx.member(org, Role::Member).await;
    let project = app.project(org, &member.token).await;

    let canaries: Vec<(String, &str, String)> = KINDS
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            (
                format!("CANARY_{i}"),
                *kind,
                format!("canary-{kind}-{}", Uuid::new_v4().simple()),
            )
        })
        .collect();
    let mut bodies = Vec::new();
    for (name, kind, value) in &canaries {
        for _ in 0..2 {
            let (status, body, _) = put_raw(
                &app,
                org,
                &project,
                &member.token,
                name,
                &json!({"kind": kind, "value": value}),
            )
            .await;
            assert!(status.is_success(), "{body}");
            bodies.push(body);
        }
        // Refusals never echo the value either.
        for body in [
            json!({"kind": "password", "value": value}),
            json!({"kind": kind, "value": value, "extra": 1}),
            json!({"kind": kind, "value": format!("{value}\u{0}")}),
            json!({"kind": kind, "value": value.repeat(65536 / value.len() + 1)}),
        ] {
            let (status, text, _) = put_raw(&app, org, &project, &member.token, name, &body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
            bodies.push(text);
        }
        let (status, text, _) = put_raw(
            &app,
            org,
            &project,
            &member.token,
            "lower_case",
            &json!({"kind": kind, "value": value}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        bodies.push(text);
        bodies.push(
            text_of(
                &app,
                Method::GET,
                &secret_path(org, &project, name),
                &member.token,
            )
            .await,
        );
    }
    bodies.push(text_of(&app, Method::GET, &list_path(org, &project), &member.token).await);
    let runtime = app.fx.pool_as(runwarden_store::roles::RUNS, 1).await;
    runner_read(&runtime, &app.vault, org, &project)
        .await
        .unwrap();

    let outbox: Vec<String> = sqlx::query_scalar("SELECT payload::text FROM outbox_events")
        .fetch_all(&app.fx.admin)
        .await
        .unwrap();
    assert!(outbox.len() >= 12, "{outbox:?}");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT quote_ident(table_name) FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    )
    .fetch_all(&app.fx.admin)
    .await
    .unwrap();
    assert!(tables.iter().any(|t| t == "project_secret_versions"));
    for (_, _, value) in &canaries {
        for body in &bodies {
            assert!(
                !body.contains(value.as_str()),
                "a response carried a value: {body}"
            );
        }
        for payload in &outbox {
            assert!(
                !payload.contains(value.as_str()),
                "an event carried a value: {payload}"
            );
        }
        // Every row of every table, as text (bytea as hex), holds neither the value nor its
        // hex: the plaintext never reached the database (CRY-01).
        let hex: String = value.bytes().map(|b| format!("{b:02x}")).collect();
        for table in &tables {
            let hits: i64 = sqlx::query_scalar(&format!(
                "SELECT count(*) FROM {table} t
                 WHERE strpos(t::text, $1) > 0 OR strpos(t::text, $2) > 0"
            ))
            .bind(value)
            .bind(&hex)
            .fetch_one(&app.fx.admin)
            .await
            .unwrap();
            assert_eq!(hits, 0, "{table} holds a value");
        }
    }

    // The layout: 0x01 || 96-bit nonce || ciphertext || 128-bit tag, one row per version,
    // and a wrapped data key under the ring's version.
    for (name, _, value) in &canaries {
        let versions = ciphertexts(&app.fx.admin, &project, name).await;
        assert_eq!(versions.len(), 2);
        for (_, ciphertext) in &versions {
            assert_eq!(ciphertext[0], 1);
            assert_eq!(ciphertext.len(), 1 + 12 + value.len() + 16);
        }
        assert_ne!(versions[0].1[1..13], versions[1].1[1..13], "fresh nonces");
    }
    let (version, wrapped): (String, Vec<u8>) =
        sqlx::query_as("SELECT kek_version, wrapped_key FROM org_data_keys WHERE org_id = $1")
            .bind(org)
            .fetch_one(&app.fx.admin)
            .await
            .unwrap();
    assert_eq!(version, "test");
    assert_eq!(wrapped.len(), 1 + 12 + 32 + 16);
}

async fn text_of(app: &TestApp, method: Method, path: &str, token: &str) -> String {
    let (status, body) = text(app, method, path, token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn bad_input_is_refused_with_problem_json(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let org = app.fx.org_on("team").await;
    let member = app.fx.member(org, Role::Member).await;
    let project = app.project(org, &member.token).await;
    let ok = json!({"kind": "api_key", "value": "v"});

    for name in ["lower", "1ABC", "A-B", "DB.PASSWORD", "É", &"A".repeat(65)] {
        let (status, _, problem) = put_raw(&app, org, &project, &member.token, name, &ok).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name}: {problem}");
        assert_eq!(problem["code"], "invalid_secret_name", "{name}");
        assert_eq!(problem["status"], 400);
    }
    for (body, code) in [
        (
            json!({"kind": "password", "value": "v"}),
            "invalid_secret_kind",
        ),
        (
            json!({"kind": "API_KEY", "value": "v"}),
            "invalid_secret_kind",
        ),
        (
            json!({"kind": "api_key", "value": ""}),
            "invalid_secret_value",
        ),
        (
            json!({"kind": "api_key", "value": "a\u{0}b"}),
            "invalid_secret_value",
        ),
        (
            json!({"kind": "api_key", "value": "a".repeat(65537)}),
            "invalid_secret_value",
        ),
        (json!({"kind": "api_key"}), "invalid_body"),
        (json!({"value": "v"}), "invalid_body"),
        (json!({"kind": "api_key", "value": 7}), "invalid_body"),
        (
            json!({"kind": "api_key", "value": "v", "version": 9}),
            "invalid_body",
        ),
        (json!([]), "invalid_body"),
    ] {
        let (status, _, problem) = put_raw(&app, org, &project, &member.token, "GOOD", &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
        assert_eq!(problem["code"], code, "{body}");
    }
    // Exactly 64 KiB fits, as UTF-8 bytes and even when JSON escaping doubles the body.
    for (name, value) in [
        ("ASCII", "a".repeat(65536)),
        ("TWO_BYTE", "é".repeat(32768)),
        ("QUOTES", "\"".repeat(65536)),
    ] {
        let (status, _, body) = put_raw(
            &app,
            org,
            &project,
            &member.token,
            name,
            &json!({"kind": "auth_cookie", "value": value}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{name}: {body}");
    }
    // A body far past any value is cut off before it is read.
    let (status, _, problem) = put_raw(
        &app,
        org,
        &project,
        &member.token,
        "HUGE",
        &json!({"kind": "api_key", "value": "a".repeat(400 * 1024)}),
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{problem}");
    assert_eq!(problem["code"], "body_too_large");

    // Reading a name that cannot exist, or a malformed project: 404.
    for path in [
        secret_path(org, &project, "lower"),
        secret_path(org, "not-a-uuid", "GOOD"),
        list_path(org, "not-a-uuid"),
        list_path(org, &Uuid::now_v7().to_string()),
    ] {
        let (status, _) = app.call(Method::GET, &path, &member.token, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = put(
        &app,
        org,
        &Uuid::now_v7().to_string(),
        &member.token,
        "GOOD",
        "api_key",
        "v",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no such project");
    for query in ["?cursor=lower", "?limit=many", "?offset=1"] {
        let path = format!("{}{query}", list_path(org, &project));
        let (status, problem) = app.call(Method::GET, &path, &member.token, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {problem}");
    }
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

fn meta() -> RequestMeta {
    RequestMeta {
        request_id: Some("test".into()),
        ip: None,
        user_agent: None,
    }
}

/// A Member's context in `org`, for calling `secrets` directly.
async fn member_ctx(app: &TestApp, org: OrgId) -> OrgContext {
    let caller = app.fx.member(org, Role::Member).await;
    OrgContext {
        principal: Principal {
            user_id: caller.user_id.into(),
            session_id: caller.session_id.into(),
        },
        org_id: org,
        role: Role::Member,
    }
}

/// Writes `value` as a new version of `name`, with `ring`, as the runtime role.
async fn put_with(
    runtime: &PgPool,
    ring: &KeyRing,
    ctx: &OrgContext,
    project: &str,
    name: &str,
    value: &str,
) -> RunsResult<i32> {
    let mut tx = begin_org_tx(runtime, ctx.org_id, None).await.unwrap();
    let (meta_out, _) = secrets::put(
        &mut tx,
        ring,
        &meta(),
        ctx,
        project.parse().unwrap(),
        &SecretName::parse(name).unwrap(),
        SecretKind::SecretVariable,
        &SecretValue::parse(SecretString::from(value)).unwrap(),
    )
    .await?;
    tx.commit().await.unwrap();
    Ok(meta_out.version)
}

async fn kek_versions(admin: &PgPool) -> Vec<(Uuid, String)> {
    sqlx::query_as("SELECT org_id, kek_version FROM org_data_keys ORDER BY org_id")
        .fetch_all(admin)
        .await
        .unwrap()
}

fn ring(entries: &[(&str, &SecretString)], active: &str) -> KeyRing {
    let keks: Vec<String> = entries
        .iter()
        .map(|(v, k)| format!("{v}:{}", k.expose_secret()))
        .collect();
    KeyRing::parse(&keks.join(","), active).unwrap()
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn rotation_rewraps_data_keys_and_never_touches_ciphertexts(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options.clone()).await;
    let runtime = app.fx.pool_as(runwarden_store::roles::RUNS, 2).await;
    let admin = &app.fx.admin;
    let (k1, k2, k3) = (
        generate_kek_base64(),
        generate_kek_base64(),
        generate_kek_base64(),
    );
    let v1 = ring(&[("v1", &k1)], "v1");
    let both = ring(&[("v1", &k1), ("v2", &k2)], "v2");
    let v2 = ring(&[("v2", &k2)], "v2");

    // Two orgs written under v1.
    let mut orgs = Vec::new();
    for i in 0..2 {
        let org = app.fx.org_on("team").await;
        let ctx = member_ctx(&app, org).await;
        let project = app
            .project(org, &app.fx.member(org, Role::Owner).await.token)
            .await;
        put_with(&runtime, &v1, &ctx, &project, "TOKEN", &format!("old-{i}"))
            .await
            .unwrap();
        orgs.push((org, ctx, project));
    }
    let before: Vec<(String, i32, Vec<u8>)> = sqlx::query_as(
        "SELECT name, version, ciphertext FROM project_secret_versions ORDER BY project_id, name, version",
    )
    .fetch_all(admin)
    .await
    .unwrap();

    // During the rotation {v1 decrypt-only, v2 active}: old rows read, new rows are v2's.
    let newcomer = app.fx.org_on("team").await;
    let newcomer_ctx = member_ctx(&app, newcomer).await;
    let newcomer_project = app
        .project(newcomer, &app.fx.member(newcomer, Role::Owner).await.token)
        .await;
    put_with(
        &runtime,
        &both,
        &newcomer_ctx,
        &newcomer_project,
        "TOKEN",
        "new",
    )
    .await
    .unwrap();
    for (i, (org, ctx, project)) in orgs.iter().enumerate() {
        let read = runner_read(&runtime, &both, *org, project).await.unwrap();
        assert_eq!(read[0].value.expose_secret(), format!("old-{i}"));
        // Writing a new version with the new ring still uses the org's (v1-wrapped) key.
        assert_eq!(
            put_with(&runtime, &both, ctx, project, "TOKEN", &format!("old-{i}"))
                .await
                .unwrap(),
            2
        );
    }
    let mut expected: Vec<(Uuid, String)> = orgs
        .iter()
        .map(|(o, _, _)| (o.as_uuid(), "v1".to_owned()))
        .chain([(newcomer.as_uuid(), "v2".to_owned())])
        .collect();
    expected.sort();
    assert_eq!(kek_versions(admin).await, expected);

    // A ring whose v2 is another key cannot re-wrap anything, and changes nothing.
    let wrong = ring(&[("v1", &k3), ("v2", &k2)], "v2");
    assert!(secrets::rewrap_data_keys(&runtime, &wrong).await.is_err());
    assert_eq!(kek_versions(admin).await, expected);

    // The re-wrap job: the two v1 keys, then nothing left to do.
    assert_eq!(secrets::rewrap_data_keys(&runtime, &both).await.unwrap(), 2);
    assert_eq!(secrets::rewrap_data_keys(&runtime, &both).await.unwrap(), 0);
    assert!(
        kek_versions(admin)
            .await
            .iter()
            .all(|(_, version)| version == "v2")
    );
    let rotated: i64 =
        sqlx::query_scalar("SELECT count(*) FROM org_data_keys WHERE rotated_at IS NOT NULL")
            .fetch_one(admin)
            .await
            .unwrap();
    assert_eq!(rotated, 2);
    for (org, _, _) in &orgs {
        let events = app.fx.audit_events(*org, "data_key.rewrap").await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["actor"]["kind"], "system");
        assert_eq!(events[0]["details"], json!({"from": "v1", "to": "v2"}));
    }

    // Ciphertexts: not one byte changed by the rotation (only the versions added above).
    let after: Vec<(String, i32, Vec<u8>)> = sqlx::query_as(
        "SELECT name, version, ciphertext FROM project_secret_versions ORDER BY project_id, name, version",
    )
    .fetch_all(admin)
    .await
    .unwrap();
    for row in &before {
        assert!(
            after.contains(row),
            "ciphertext of {} v{} changed",
            row.0,
            row.1
        );
    }

    // v1 dropped from the ring: everything still reads; a ring of v1 alone reads nothing.
    for (i, (org, _, project)) in orgs.iter().enumerate() {
        let read = runner_read(&runtime, &v2, *org, project).await.unwrap();
        assert_eq!(values(&read), [("TOKEN".to_owned(), 2, format!("old-{i}"))]);
        assert!(matches!(
            runner_read(&runtime, &v1, *org, project).await,
            Err(RunsError::Api(ApiError::Internal(_)))
        ));
    }
    let read = runner_read(&runtime, &v2, newcomer, &newcomer_project)
        .await
        .unwrap();
    assert_eq!(read[0].value.expose_secret(), "new");

    // The vault-rotate job does the same from the environment, to a third key.
    let url = format!(
        "postgres://{}@{}:{}/{}",
        runwarden_store::roles::RUNS,
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap()
    );
    let keks = format!("v2:{},v3:{}", k2.expose_secret(), k3.expose_secret());
    let out = run_bin(
        env!("CARGO_BIN_EXE_vault-rotate"),
        &[
            ("DATABASE_URL", &url),
            ("VAULT_KEKS", &keks),
            ("VAULT_KEK_ACTIVE", "v3"),
        ],
    )
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("3 data keys re-wrapped under v3"),
        "{}",
        stderr(&out)
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(k2.expose_secret()));
    let v3 = ring(&[("v3", &k3)], "v3");
    for (i, (org, _, project)) in orgs.iter().enumerate() {
        let read = runner_read(&runtime, &v3, *org, project).await.unwrap();
        assert_eq!(read[0].value.expose_secret(), format!("old-{i}"));
    }
    // Without its keys the job refuses to run (exit 2, naming the variable).
    let out = run_bin(
        env!("CARGO_BIN_EXE_vault-rotate"),
        &[("DATABASE_URL", &url)],
    )
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("VAULT_KEKS"), "{}", stderr(&out));
}

/// Runs a binary of this crate with exactly `env`, for at most 20 s.
async fn run_bin(bin: &str, env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.env_clear().kill_on_drop(true);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .unwrap_or_else(|_| panic!("{bin} with {env:?} still running after 20 s"))
        .unwrap()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn production_refuses_to_start_without_a_valid_key_ring() {
    let runs = env!("CARGO_BIN_EXE_runs");
    let good = generate_kek_base64();
    let good = good.expose_secret();
    let short = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg=="; // 31 bytes
    let zeros = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="; // 32 zero bytes
    let prod = ("RUNWARDEN_ENV", "production");
    let one = format!("v1:{good}");
    let (short_entry, zeros_entry) = (format!("v1:{short}"), format!("v1:{zeros}"));
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "VAULT_KEKS"),
        (
            vec![("VAULT_KEKS", ""), ("VAULT_KEK_ACTIVE", "v1")],
            "VAULT_KEKS",
        ),
        (vec![("VAULT_KEKS", &one)], "VAULT_KEK_ACTIVE"),
        (
            vec![("VAULT_KEKS", &one), ("VAULT_KEK_ACTIVE", "v2")],
            "VAULT_KEK_ACTIVE",
        ),
        (
            vec![("VAULT_KEKS", good), ("VAULT_KEK_ACTIVE", "v1")],
            "VAULT_KEKS",
        ),
        (
            vec![("VAULT_KEKS", &short_entry), ("VAULT_KEK_ACTIVE", "v1")],
            "VAULT_KEKS",
        ),
        (
            vec![("VAULT_KEKS", &zeros_entry), ("VAULT_KEK_ACTIVE", "v1")],
            "VAULT_KEKS",
        ),
        (
            vec![
                ("VAULT_KEKS", "v1:not-base64!!"),
                ("VAULT_KEK_ACTIVE", "v1"),
            ],
            "VAULT_KEKS",
        ),
    ];
    for (vars, named) in cases {
        let env: Vec<(&str, &str)> = [prod].into_iter().chain(vars).collect();
        let out = run_bin(runs, &env).await;
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {err}");
        assert!(err.contains("configuration error"), "{err}");
        assert!(err.contains(named), "{env:?} should name {named}: {err}");
        for key in [good, short, zeros] {
            assert!(!err.contains(key), "the key leaked: {err}");
        }
    }
    // With a valid ring, production gets past the vault (and stops at the next variable).
    let keks = format!("v1:{good}");
    let out = run_bin(
        runs,
        &[prod, ("VAULT_KEKS", &keks), ("VAULT_KEK_ACTIVE", "v1")],
    )
    .await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!err.contains("VAULT_"), "{err}");
    assert!(!err.contains(good), "{err}");
    // Development needs no ring (a throwaway is made at start); a malformed one is refused.
    let out = run_bin(runs, &[("RUNWARDEN_ENV", "development")]).await;
    assert!(!stderr(&out).contains("VAULT_"), "{}", stderr(&out));
    let out = run_bin(
        runs,
        &[
            ("RUNWARDEN_ENV", "development"),
            ("VAULT_KEKS", &short_entry),
            ("VAULT_KEK_ACTIVE", "v1"),
        ],
    )
    .await;
    assert!(stderr(&out).contains("VAULT_KEKS"), "{}", stderr(&out));
}
