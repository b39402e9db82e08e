//! Who may read an org's audit log (LOG-09, tenancy) and what the runtime role may do to it
//! (LOG-07).

use reqwest::StatusCode;
use runwarden_tenancy::OrgId;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{event, spawn_app};

const SUFFIXES: [&str; 3] = ["", "/export", "/verify"];

fn path(org: impl std::fmt::Display, suffix: &str) -> String {
    format!("/v1/orgs/{org}/audit-events{suffix}")
}

/// LOG-09: Owner and Admin read; Member and Viewer are 403; another org's Admin gets the
/// same 404 as for an org that does not exist, on all three routes.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn only_the_orgs_admins_and_owners_read_its_audit_log(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let a = app.team().await;
    let b = app.team().await;
    assert_eq!(
        app.push(&event(a.org, "org.update")).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.push(&event(b.org, "org.update")).await,
        StatusCode::NO_CONTENT
    );

    for suffix in SUFFIXES {
        for (who, caller, expected) in [
            ("owner", &a.owner, StatusCode::OK),
            ("admin", &a.admin, StatusCode::OK),
            ("member", &a.member, StatusCode::FORBIDDEN),
            ("viewer", &a.viewer, StatusCode::FORBIDDEN),
        ] {
            let (status, _, body) = app.get_raw(&path(a.org, suffix), Some(&caller.token)).await;
            assert_eq!(status, expected, "{who} {suffix}: {body}");
            if expected == StatusCode::FORBIDDEN {
                assert_eq!(
                    serde_json::from_str::<Value>(&body).unwrap()["code"],
                    "forbidden"
                );
            }
        }

        // Org B's Admin and Owner on org A; and org A's Admin on an org that does not exist.
        let (_, _, missing) = app
            .get_raw(&path(OrgId::new(), suffix), Some(&a.admin.token))
            .await;
        for caller in [&b.admin, &b.owner] {
            let (status, _, body) = app.get_raw(&path(a.org, suffix), Some(&caller.token)).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{suffix}: {body}");
            assert_eq!(body, missing, "another org's log looks like no org at all");
            assert!(!body.contains(&a.org.to_string()));
        }
        // A malformed org id is just another org that does not exist.
        let (status, _, body) = app
            .get_raw(&path("not-a-uuid", suffix), Some(&a.admin.token))
            .await;
        assert_eq!((status, &body), (StatusCode::NOT_FOUND, &missing));

        // No token, a garbage token: 401.
        for token in [None, Some("garbage")] {
            let (status, _, _) = app.get_raw(&path(a.org, suffix), token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{suffix} {token:?}");
        }
    }

    // Each admin sees only their own org's records.
    let (_, page) = app.get(&path(a.org, ""), &a.admin.token).await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["org_id"], a.org.to_string());
}

/// Authorization is read on every request: a demoted admin is 403 and a removed one 404 at
/// their next request; a revoked or expired session is 401.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn roles_and_sessions_are_read_on_every_request(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let t = app.team().await;
    let list = path(t.org, "");
    assert_eq!(app.get(&list, &t.admin.token).await.0, StatusCode::OK);

    sqlx::query("UPDATE memberships SET role = 'viewer' WHERE org_id = $1 AND user_id = $2")
        .bind(t.org)
        .bind(t.admin.user_id)
        .execute(&app.admin)
        .await
        .unwrap();
    assert_eq!(
        app.get(&list, &t.admin.token).await.0,
        StatusCode::FORBIDDEN
    );

    sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
        .bind(t.org)
        .bind(t.admin.user_id)
        .execute(&app.admin)
        .await
        .unwrap();
    assert_eq!(
        app.get(&list, &t.admin.token).await.0,
        StatusCode::NOT_FOUND
    );

    sqlx::query("UPDATE sessions SET revoked_at = now() WHERE id = $1")
        .bind(t.owner.session_id)
        .execute(&app.admin)
        .await
        .unwrap();
    assert_eq!(
        app.get(&list, &t.owner.token).await.0,
        StatusCode::UNAUTHORIZED
    );

    // A terminated org is gone for everyone.
    let other = app.team().await;
    sqlx::query("UPDATE orgs SET terminated_at = now() WHERE id = $1")
        .bind(other.org)
        .execute(&app.admin)
        .await
        .unwrap();
    assert_eq!(
        app.get(&path(other.org, ""), &other.owner.token).await.0,
        StatusCode::NOT_FOUND
    );
}

/// LOG-07: as `runwarden_audit`, UPDATE, DELETE and TRUNCATE on the audit log are permission
/// denied, even in the org's own tenant context; row-level security hides and refuses other
/// orgs' rows.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn the_runtime_role_can_only_append_and_read(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let org = app.org().await;
    let other = app.org().await;
    for o in [org, other] {
        assert_eq!(
            app.push(&event(o, "org.update")).await,
            StatusCode::NO_CONTENT
        );
    }
    let role: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&app.runtime)
        .await
        .unwrap();
    assert_eq!(role, "runwarden_audit");

    for statement in [
        "UPDATE audit_log SET action = 'org.nothing'",
        "UPDATE audit_log SET action = 'org.nothing' WHERE seq = 1",
        "DELETE FROM audit_log",
        "DELETE FROM audit_log WHERE seq = 1",
        "TRUNCATE audit_log",
        "ALTER TABLE audit_log DISABLE ROW LEVEL SECURITY",
        "DROP TABLE audit_log",
    ] {
        let mut tx = app.runtime.begin().await.unwrap();
        runwarden_tenancy::set_tenant(&mut tx, Some(org), None)
            .await
            .unwrap();
        let err = sqlx::query(statement).execute(&mut *tx).await.unwrap_err();
        let code = err
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        assert!(
            matches!(code.as_deref(), Some("42501")),
            "{statement}: {err}"
        );
    }

    // Row-level security: no tenant, no rows; the org's tenant, its rows only.
    let visible: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(&app.runtime)
        .await
        .unwrap();
    assert_eq!(visible, 0);
    let mut tx = runwarden_tenancy::begin_org_tx(&app.runtime, org, None)
        .await
        .unwrap();
    let orgs: Vec<OrgId> = sqlx::query_scalar("SELECT org_id FROM audit_log")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(orgs, vec![org]);
    // Appending into another org's chain from this org's context is refused.
    let err = sqlx::query(
        "INSERT INTO audit_log (org_id, seq, event_id, occurred_at, created_at, actor_kind,
             action, target_type, target_id, outcome, prev_hash, hash)
         VALUES ($1, 99, gen_random_uuid(), now(), now(), 'system', 'org.x', 'org', 'o',
                 'success', decode(repeat('00', 32), 'hex'), decode(repeat('00', 32), 'hex'))",
    )
    .bind(other)
    .execute(&mut *tx)
    .await
    .unwrap_err();
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("42501"),
        "{err}"
    );
    drop(tx);
    assert_eq!(app.count().await, 2);
}
