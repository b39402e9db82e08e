//! AZ-01/02: another org's resources do not exist for the caller; RLS as the runtime role.

use reqwest::{Method, StatusCode};
use runwarden_auth::routes::{Access, ROUTES};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection};

use crate::helpers::{Team, TestApp, spawn_app, unique_email};

fn body_for(method: &str, path: &str) -> Option<Value> {
    match (method, path) {
        ("PATCH", "/v1/orgs/{org}") => Some(json!({"name": "taken over"})),
        ("PATCH", "/v1/orgs/{org}/members/{user}") => Some(json!({"role": "viewer"})),
        ("POST", "/v1/orgs/{org}/invitations") => {
            Some(json!({"email": unique_email("x"), "role": "viewer"}))
        }
        _ => None,
    }
}

/// Everything about org B that a write could change.
async fn fingerprint(app: &TestApp, org: &str) -> String {
    sqlx::query_scalar(
        "SELECT md5(coalesce((SELECT string_agg(o::text, '') FROM orgs o WHERE id = $1::uuid), '')
                 || coalesce((SELECT string_agg(m::text, '' ORDER BY user_id) FROM memberships m WHERE org_id = $1::uuid), '')
                 || coalesce((SELECT count(*)::text FROM invitations WHERE org_id = $1::uuid), ''))",
    )
    .bind(org)
    .fetch_one(&app.admin)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn az01_az02_every_org_route_answers_another_orgs_ids_like_missing_ones(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let a = Team::new(&app, "a").await;
    let b = Team::new(&app, "b").await;
    let before = fingerprint(&app, b.org()).await;
    let missing = uuid::Uuid::now_v7().to_string();
    let org_routes: Vec<_> = ROUTES
        .iter()
        .filter(|r| matches!(r.access, Access::Org(_)))
        .collect();
    assert!(org_routes.len() >= 6);

    for r in org_routes {
        let (method, template) = (r.method, r.path);
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        // A's owner (the most powerful caller) uses B's ids, and then ids that exist nowhere.
        let cases = [
            (
                b.org(),
                b.member.user_id.as_str(),
                missing.as_str(),
                missing.as_str(),
            ),
            (
                a.org(),
                b.member.user_id.as_str(),
                a.org(),
                missing.as_str(),
            ),
        ];
        for (org, user, ref_org, ref_user) in cases {
            let path = template.replace("{org}", org).replace("{user}", user);
            let reference = template
                .replace("{org}", ref_org)
                .replace("{user}", ref_user);
            if path == reference || (!template.contains("{user}") && org == a.org()) {
                continue;
            }
            let body = body_for(method.as_str(), template);
            let (status, headers, text) = app
                .call_raw(method.clone(), &path, Some(&a.owner.access), body.clone())
                .await;
            let (ref_status, ref_headers, ref_text) = app
                .call_raw(method.clone(), &reference, Some(&a.owner.access), body)
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {text}");
            assert_eq!(
                (status, &text),
                (ref_status, &ref_text),
                "{method} {path} vs {reference}"
            );
            assert_eq!(headers["content-type"], ref_headers["content-type"]);
        }
    }
    // Malformed ids are just more ids that do not exist.
    let (status, _, text) = app
        .call_raw(
            Method::GET,
            "/v1/orgs/not-a-uuid",
            Some(&a.owner.access),
            None,
        )
        .await;
    let (_, _, reference) = app
        .call_raw(
            Method::GET,
            &format!("/v1/orgs/{missing}"),
            Some(&a.owner.access),
            None,
        )
        .await;
    assert_eq!((status, text), (StatusCode::NOT_FOUND, reference));

    assert_eq!(fingerprint(&app, b.org()).await, before, "org B unchanged");
    assert!(
        app.outbox(b.org())
            .await
            .iter()
            .all(|(_, e)| e["actor"]["id"] != a.owner.user_id.as_str())
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn lists_and_me_show_nothing_of_other_orgs(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let a = Team::new(&app, "a").await;
    let b = Team::new(&app, "b").await;
    let (status, members) = app
        .get(&format!("/v1/orgs/{}/members", a.org()), &a.viewer.access)
        .await;
    assert_eq!(status, StatusCode::OK);
    let ids: Vec<&str> = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 4);
    for s in [&b.owner, &b.admin, &b.member, &b.viewer] {
        assert!(!ids.contains(&s.user_id.as_str()));
    }
    let (_, me) = app.get("/v1/me", &a.member.access).await;
    let orgs: Vec<&str> = me["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["org_id"].as_str().unwrap())
        .collect();
    assert!(orgs.contains(&a.org()) && !orgs.contains(&b.org()));
}

/// Connects as auth's runtime role, the way the function does in production.
async fn runtime_connection(options: &PgConnectOptions) -> PgConnection {
    PgConnection::connect_with(&options.clone().username(runwarden_store::roles::AUTH))
        .await
        .unwrap()
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn az04_row_level_security_as_the_runtime_role(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options.clone()).await;
    let a = Team::new(&app, "a").await;
    let b = Team::new(&app, "b").await;
    let mut conn = runtime_connection(&options).await;

    let is_super: bool = sqlx::query_scalar(
        "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(!is_super, "the runtime role must not bypass RLS");

    // Rows exist (the superuser sees them)...
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM memberships")
        .fetch_one(&app.admin)
        .await
        .unwrap();
    assert!(total >= 8);
    // ...but without the org setting the runtime role sees no tenant rows.
    for table in ["orgs", "memberships", "invitations"] {
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(n, 0, "{table} without tenant setting");
    }
    // The outbox is append-only for functions: not even readable.
    assert!(
        sqlx::query("SELECT count(*) FROM outbox_events")
            .fetch_one(&mut conn)
            .await
            .is_err()
    );

    // With org A set, only A's rows.
    let mut tx = conn.begin().await.unwrap();
    runwarden_tenancy::set_tenant(&mut tx, Some(a.org().parse().unwrap()), None)
        .await
        .unwrap();
    let orgs: Vec<String> = sqlx::query_scalar("SELECT id::text FROM orgs")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(orgs, [a.org().to_owned()]);
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM memberships")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 4);
    // Writing into B while scoped to A is refused by the policy.
    let err = sqlx::query(
        "INSERT INTO memberships (org_id, user_id, role) VALUES ($1::uuid, $2::uuid, 'owner')",
    )
    .bind(b.org())
    .bind(&a.owner.user_id)
    .execute(&mut *tx)
    .await
    .unwrap_err();
    assert!(err.to_string().contains("row-level security"), "{err}");
    tx.rollback().await.unwrap();

    // The setting is per transaction: it does not leak to the next one on this connection.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM orgs")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 0);
    // The audit role never gets UPDATE or DELETE on tenant tables.
    let can: bool = sqlx::query_scalar(
        "SELECT has_table_privilege('runwarden_audit', 'memberships', 'UPDATE')",
    )
    .fetch_one(&app.admin)
    .await
    .unwrap();
    assert!(!can);
}
