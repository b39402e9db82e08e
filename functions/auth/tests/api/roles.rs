//! AZ-05/06/07, SES-05/06: the role matrix, escalation attempts, and access that ends at
//! the next request after a demotion or removal.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{Team, TestApp, spawn_app, unique_email};

const ROLES: [&str; 4] = ["viewer", "member", "admin", "owner"];

/// One mutating call, prepared against a fresh target so that success is possible.
async fn attempt(app: &TestApp, team: &Team, actor: &str, action: &str) -> StatusCode {
    let org = team.org();
    let token = &team.by_role(actor).access;
    let (method, path, body): (Method, String, Option<Value>) = match action {
        "org.update" => (
            Method::PATCH,
            format!("/v1/orgs/{org}"),
            Some(json!({"name": format!("renamed by {actor}")})),
        ),
        "member.promote_to_member" | "member.promote_to_owner" | "member.remove" => {
            let target = app.signup("target").await;
            app.add_member(&team.owner, &target, "viewer").await;
            match action {
                "member.promote_to_member" => (
                    Method::PATCH,
                    format!("/v1/orgs/{org}/members/{}", target.user_id),
                    Some(json!({"role": "member"})),
                ),
                "member.promote_to_owner" => (
                    Method::PATCH,
                    format!("/v1/orgs/{org}/members/{}", target.user_id),
                    Some(json!({"role": "owner"})),
                ),
                _ => (
                    Method::DELETE,
                    format!("/v1/orgs/{org}/members/{}", target.user_id),
                    None,
                ),
            }
        }
        "owner.demote" | "owner.remove" => {
            let target = app.signup("co-owner").await;
            app.add_member(&team.owner, &target, "owner").await;
            match action {
                "owner.demote" => (
                    Method::PATCH,
                    format!("/v1/orgs/{org}/members/{}", target.user_id),
                    Some(json!({"role": "admin"})),
                ),
                _ => (
                    Method::DELETE,
                    format!("/v1/orgs/{org}/members/{}", target.user_id),
                    None,
                ),
            }
        }
        "invite.viewer" | "invite.admin" | "invite.owner" => {
            let role = action.trim_start_matches("invite.");
            (
                Method::POST,
                format!("/v1/orgs/{org}/invitations"),
                Some(json!({"email": unique_email("inv"), "role": role})),
            )
        }
        other => panic!("unknown action {other}"),
    };
    app.call(method, &path, Some(token), body).await.0
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn az05_role_matrix_of_every_mutating_org_route(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let team = Team::new(&app, "m").await;
    // (action, the least role allowed). Owner-only cells come from "only an Owner grants or
    // removes Owner".
    let policy = [
        ("org.update", "admin"),
        ("member.promote_to_member", "admin"),
        ("member.remove", "admin"),
        ("invite.viewer", "admin"),
        ("invite.admin", "admin"),
        ("member.promote_to_owner", "owner"),
        ("owner.demote", "owner"),
        ("owner.remove", "owner"),
        ("invite.owner", "owner"),
    ];
    let rank = |r: &str| ROLES.iter().position(|x| *x == r).unwrap();
    for (action, least) in policy {
        for actor in ROLES {
            let status = attempt(&app, &team, actor, action).await;
            let allowed = rank(actor) >= rank(least);
            if allowed {
                assert!(status.is_success(), "{actor} {action}: {status}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{actor} {action}");
            }
        }
    }
    // Reads are open to every member.
    for actor in ROLES {
        let token = &team.by_role(actor).access;
        assert_eq!(
            app.get(&format!("/v1/orgs/{}", team.org()), token).await.0,
            StatusCode::OK
        );
        assert_eq!(
            app.get(&format!("/v1/orgs/{}/members", team.org()), token)
                .await
                .0,
            StatusCode::OK
        );
    }
    // Verb tampering is not honoured.
    let response = app
        .client
        .post(app.url(&format!("/v1/orgs/{}", team.org())))
        .bearer_auth(&team.viewer.access)
        .header("x-http-method-override", "PATCH")
        .json(&json!({"name": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn az06_escalation_and_the_last_owner(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let team = Team::new(&app, "e").await;
    let org = team.org();
    let member_path = |s: &str| format!("/v1/orgs/{org}/members/{s}");

    let (status, _) = app
        .call(
            Method::PATCH,
            &member_path(&team.admin.user_id),
            Some(&team.admin.access),
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "admin makes self owner");
    let (status, _) = app
        .post(
            &format!("/v1/orgs/{org}/invitations"),
            Some(&team.member.access),
            json!({"email": unique_email("x"), "role": "admin"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "member invites an admin");

    let (status, body) = app
        .call(
            Method::PATCH,
            &member_path(&team.owner.user_id),
            Some(&team.owner.access),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("last_owner"))
    );
    let (status, body) = app
        .call(
            Method::DELETE,
            &member_path(&team.owner.user_id),
            Some(&team.owner.access),
            None,
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("last_owner"))
    );
    let (status, _) = app
        .call(
            Method::DELETE,
            &member_path(&team.owner.user_id),
            Some(&team.admin.access),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "admin removes the owner");
    let (status, _) = app
        .call(
            Method::PATCH,
            &member_path(&team.owner.user_id),
            Some(&team.owner.access),
            Some(json!({"role": "superuser"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // With two owners, two concurrent self-demotions cannot leave the org ownerless.
    let second = app.signup("second-owner").await;
    app.add_member(&team.owner, &second, "owner").await;
    let (first_path, second_path) = (
        member_path(&team.owner.user_id),
        member_path(&second.user_id),
    );
    let (r1, r2) = tokio::join!(
        app.call(
            Method::PATCH,
            &first_path,
            Some(&team.owner.access),
            Some(json!({"role": "admin"}))
        ),
        app.call(
            Method::PATCH,
            &second_path,
            Some(&second.access),
            Some(json!({"role": "admin"}))
        ),
    );
    let mut statuses = [r1.0, r2.0];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT]);
    let owners: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM memberships WHERE org_id = $1::uuid AND role = 'owner'",
    )
    .bind(org)
    .fetch_one(&app.admin)
    .await
    .unwrap();
    assert_eq!(owners, 1);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn az07_mass_assignment_is_refused(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let team = Team::new(&app, "ma").await;
    for extra in [
        json!({"name": "x", "plan": "enterprise"}),
        json!({"name": "x", "id": uuid::Uuid::now_v7()}),
        json!({"plan": "enterprise"}),
    ] {
        let (status, body) = app
            .call(
                Method::PATCH,
                &format!("/v1/orgs/{}", team.org()),
                Some(&team.owner.access),
                Some(extra),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_body"))
        );
    }
    let plan: String = sqlx::query_scalar("SELECT plan FROM orgs WHERE id = $1::uuid")
        .bind(team.org())
        .fetch_one(&app.admin)
        .await
        .unwrap();
    assert_eq!(plan, "trial");
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn ses05_ses06_demoted_or_removed_members_lose_access_at_the_next_request(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let team = Team::new(&app, "d").await;
    let org = team.org();
    let rename = |name: &str| json!({"name": name});
    assert_eq!(
        app.call(
            Method::PATCH,
            &format!("/v1/orgs/{org}"),
            Some(&team.admin.access),
            Some(rename("one"))
        )
        .await
        .0,
        StatusCode::OK
    );

    // Demote the admin: the same, unexpired access token can no longer administer.
    let (status, _) = app
        .call(
            Method::PATCH,
            &format!("/v1/orgs/{org}/members/{}", team.admin.user_id),
            Some(&team.owner.access),
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        app.call(
            Method::PATCH,
            &format!("/v1/orgs/{org}"),
            Some(&team.admin.access),
            Some(rename("two"))
        )
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.get(&format!("/v1/orgs/{org}"), &team.admin.access)
            .await
            .0,
        StatusCode::OK
    );

    // Remove the member: the org no longer exists for them.
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/orgs/{org}/members/{}", team.member.user_id),
            Some(&team.owner.access),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app
        .get(&format!("/v1/orgs/{org}"), &team.member.access)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );

    // Each change is audited with from/to and the actor.
    let events = app.outbox(org).await;
    let change = events
        .iter()
        .find(|(a, _)| a == "member.role_change")
        .unwrap();
    assert_eq!(
        change.1["details"],
        json!({"from": "admin", "to": "viewer"})
    );
    assert_eq!(change.1["actor"]["id"], team.owner.user_id.as_str());
    assert_eq!(
        change.1["target"],
        json!({"type": "user", "id": team.admin.user_id})
    );
    assert!(events.iter().any(|(a, e)| a == "member.remove" && e["target"]["id"] == team.member.user_id.as_str()));
    assert!(events.iter().any(|(a, _)| a == "org.update"));

    // Anyone may leave an org.
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/orgs/{org}/members/{}", team.viewer.user_id),
            Some(&team.viewer.access),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn orgs_can_be_created_read_and_renamed(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let s = app.signup("orgs").await;
    let (status, org) = app
        .post(
            "/v1/orgs",
            Some(&s.access),
            json!({"name": "  Second Org "}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{org}");
    assert_eq!(org["name"], "Second Org");
    // One trial per user: their personal org had it.
    assert_eq!(org["plan"], "unpaid");
    assert_eq!(org["google_workspace_domain"], serde_json::Value::Null);
    let id = org["id"].as_str().unwrap();
    let (status, shown) = app.get(&format!("/v1/orgs/{id}"), &s.access).await;
    assert_eq!((status, shown["id"].as_str()), (StatusCode::OK, Some(id)));
    let (status, renamed) = app
        .call(
            Method::PATCH,
            &format!("/v1/orgs/{id}"),
            Some(&s.access),
            Some(json!({"name": "Renamed"})),
        )
        .await;
    assert_eq!(
        (status, renamed["name"].as_str()),
        (StatusCode::OK, Some("Renamed"))
    );
    let (status, _) = app
        .post("/v1/orgs", Some(&s.access), json!({"name": ""}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let actions: Vec<String> = app.outbox(id).await.into_iter().map(|(a, _)| a).collect();
    assert_eq!(actions, ["org.create", "org.update"]);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn members_are_cursor_paginated_with_a_clamped_limit(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let team = Team::new(&app, "p").await;
    let base = format!("/v1/orgs/{}/members", team.org());
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{base}?limit=3&cursor={c}"),
            None => format!("{base}?limit=3"),
        };
        let (status, page) = app.get(&path, &team.viewer.access).await;
        assert_eq!(status, StatusCode::OK);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 3);
        seen.extend(
            items
                .iter()
                .map(|m| m["user_id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!((seen.len(), sorted.len()), (4, 4));
    let (_, page) = app
        .get(&format!("{base}?limit=0"), &team.viewer.access)
        .await;
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        1,
        "limit clamps to at least 1"
    );
    assert_eq!(
        app.get(&format!("{base}?cursor=garbage"), &team.viewer.access)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.get(&format!("{base}?limit=abc"), &team.viewer.access)
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
}
