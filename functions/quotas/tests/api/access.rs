//! Who may call what: internal routes need `X-Internal-Auth`; usage is for members only,
//! and another org's usage does not exist.

use reqwest::{Method, StatusCode};
use runwarden_quotas::routes::{Access, ROUTES, Route};
use runwarden_tenancy::Role;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::{INTERNAL_SECRET, spawn_app};

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn internal_routes_refuse_missing_or_wrong_secret(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.org_on("team").await;
    let run = Uuid::now_v7();
    let wrong = format!("{INTERNAL_SECRET}x");
    for Route {
        method,
        path,
        access,
        ..
    } in ROUTES
    {
        if *access != Access::Internal {
            continue;
        }
        let concrete = path.replace("{org}", &org.to_string());
        let body = json!({"org_id": org, "run_id": run, "requested_cap_secs": 60,
                          "actual_secs": 1, "plan": "enterprise"});
        for header in [
            None,
            Some(""),
            Some(wrong.as_str()),
            Some(&INTERNAL_SECRET[..31]),
        ] {
            let mut request = app
                .client
                .request(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    app.url(&concrete),
                )
                .json(&body);
            if let Some(value) = header {
                request = request.header("x-internal-auth", value);
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} {header:?}"
            );
        }
    }
    // Nothing happened.
    assert_eq!(app.tally(org).await, (0, 0, 0, 0));
    let plan: String = sqlx::query_scalar("SELECT plan FROM orgs WHERE id = $1")
        .bind(org)
        .fetch_one(&app.admin)
        .await
        .unwrap();
    assert_eq!(plan, "team");
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn usage_is_for_members_only(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let org = app.org().await;
    let other = app.org().await;
    let path = format!("/v1/orgs/{org}/usage");
    for role in Role::ALL {
        let caller = app.member(org, role).await;
        let (status, body) = app.get(&path, Some(&caller.token)).await;
        assert_eq!(status, StatusCode::OK, "{role:?}");
        assert_eq!(body["org_id"], org.to_string());
        assert_eq!(body["plan"], "trial");
        assert!(body["trial_ends_at"].is_string(), "{body}");
        assert_eq!(body["active_projects"], 0, "{body}");
    }
    // A member of another org, or an outsider: 404, the same as no such org.
    let stranger = app.member(other, Role::Owner).await;
    let (status, not_member) = app.get(&path, Some(&stranger.token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, missing) = app
        .get(
            &format!("/v1/orgs/{}/usage", Uuid::now_v7()),
            Some(&stranger.token),
        )
        .await;
    assert_eq!((status, &missing), (StatusCode::NOT_FOUND, &not_member));
    let (status, _) = app
        .get("/v1/orgs/not-a-uuid/usage", Some(&stranger.token))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // No token, or a bad one: 401.
    assert_eq!(app.get(&path, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get(&path, Some("nope")).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A revoked session loses access at once.
    let viewer = app.member(org, Role::Viewer).await;
    sqlx::query("DELETE FROM sessions WHERE id = $1")
        .bind(viewer.session_id)
        .execute(&app.admin)
        .await
        .unwrap();
    assert_eq!(
        app.get(&path, Some(&viewer.token)).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn runtime_role_sees_only_the_tenant_it_sets(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let (a, b) = (app.org().await, app.org().await);
    app.admit(a, Uuid::now_v7(), 60).await;
    app.admit(b, Uuid::now_v7(), 60).await;
    let mut tx = app.runtime.begin().await.unwrap();
    let none: i64 = sqlx::query_scalar("SELECT count(*) FROM quota_admissions")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(none, 0, "no tenant set: no rows");
    runwarden_tenancy::set_tenant(&mut tx, Some(a), None)
        .await
        .unwrap();
    let orgs: Vec<Uuid> = sqlx::query_scalar("SELECT DISTINCT org_id FROM quota_admissions")
        .fetch_all(&mut *tx)
        .await
        .unwrap();
    assert_eq!(orgs, vec![a.as_uuid()]);
    let denied = sqlx::query("DELETE FROM quota_admissions")
        .execute(&mut *tx)
        .await;
    assert!(denied.is_err(), "no DELETE grant");
}

/// SSO-04 in quotas: an org restricted to a Google Workspace domain admits only sessions
/// from Google sign-in in that domain, here as in auth (one check: `auth_enter`).
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn sso04_usage_of_a_workspace_domain_org_needs_a_google_session_from_it(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.org_on("team").await;
    let viewer = app.member(org, Role::Viewer).await;
    sqlx::query("UPDATE orgs SET google_workspace_domain = 'corp.example' WHERE id = $1")
        .bind(org)
        .execute(&app.admin)
        .await
        .unwrap();
    let path = format!("/v1/orgs/{org}/usage");
    let (status, body) = app.get(&path, Some(&viewer.token)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("sso_required")),
        "{body}"
    );
    for (hd, expected) in [
        ("other.example", StatusCode::FORBIDDEN),
        ("corp.example", StatusCode::OK),
    ] {
        sqlx::query("UPDATE sessions SET google_hd = $2 WHERE id = $1")
            .bind(viewer.session_id)
            .bind(hd)
            .execute(&app.admin)
            .await
            .unwrap();
        let (status, body) = app.get(&path, Some(&viewer.token)).await;
        assert_eq!(status, expected, "{hd}: {body}");
    }
}
