//! Projects: the lifecycle and its audit trail, the role matrix, tenant isolation (also as
//! the runtime role under row-level security), names, pagination, and the active-project
//! quota under concurrency.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use runwarden_tenancy::Role;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::spawn_app;

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn lifecycle_is_audited_one_event_per_change(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let org = app.fx.org_on("team").await;
    let member = app.fx.member(org, Role::Member).await;
    let admin = app.fx.member(org, Role::Admin).await;

    let (status, created) = app
        .create_project(org, &member.token, "  Checkout flow ")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["name"], "Checkout flow");
    assert_eq!(created["org_id"], org.to_string());
    assert_eq!(created["created_by"], member.user_id.to_string());
    assert_eq!(created["archived_at"], Value::Null);
    let id = created["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/orgs/{org}/projects/{id}");

    let (status, got) = app.call(Method::GET, &path, &member.token, None).await;
    assert_eq!((status, &got), (StatusCode::OK, &created));

    let (status, renamed) = app
        .patch_project(org, &id, &member.token, json!({"name": "Checkout"}))
        .await;
    assert_eq!(
        (status, renamed["name"].as_str()),
        (StatusCode::OK, Some("Checkout"))
    );
    let (status, archived) = app
        .patch_project(org, &id, &member.token, json!({"archived": true}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(archived["archived_at"].is_string());
    // Archiving what is archived changes nothing and records nothing.
    let (status, _) = app
        .patch_project(org, &id, &member.token, json!({"archived": true}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, unarchived) = app
        .patch_project(org, &id, &member.token, json!({"archived": false}))
        .await;
    assert_eq!(
        (status, &unarchived["archived_at"]),
        (StatusCode::OK, &Value::Null)
    );

    let (status, _) = app.call(Method::DELETE, &path, &admin.token, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = app.call(Method::GET, &path, &member.token, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found"))
    );

    for (action, actor) in [
        ("project.create", member.user_id),
        ("project.rename", member.user_id),
        ("project.archive", member.user_id),
        ("project.unarchive", member.user_id),
        ("project.delete", admin.user_id),
    ] {
        let events = app.fx.audit_events(org, action).await;
        assert_eq!(events.len(), 1, "{action}: {events:?}");
        let event = &events[0];
        assert_eq!(event["actor"]["id"], actor.to_string(), "{action}");
        assert_eq!(event["target"]["type"], "project", "{action}");
        assert_eq!(event["target"]["id"], id, "{action}");
        assert!(event["request_id"].is_string(), "{action}: {event}");
    }
    assert_eq!(
        app.fx.audit_events(org, "project.rename").await[0]["details"],
        json!({"from": "Checkout flow", "to": "Checkout"})
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn role_matrix(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let org = app.fx.org_on("team").await;
    let owner = app.fx.member(org, Role::Owner).await;
    let (_, project) = app.create_project(org, &owner.token, "target").await;
    let id = project["id"].as_str().unwrap().to_owned();
    let outsider = app.fx.user().await;

    // (role, may read, may create/change, may delete)
    let cases = [
        (Some(Role::Viewer), true, false, false),
        (Some(Role::Member), true, true, false),
        (Some(Role::Admin), true, true, true),
        (Some(Role::Owner), true, true, true),
        (None, false, false, false),
    ];
    for (i, (role, read, change, delete)) in cases.into_iter().enumerate() {
        let caller = match role {
            Some(role) => app.fx.member(org, role).await,
            None => outsider.clone(),
        };
        let hidden = role.is_none();
        let expect = |allowed: bool, ok: StatusCode| {
            if allowed {
                ok
            } else if hidden {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::FORBIDDEN
            }
        };
        let list = format!("/v1/orgs/{org}/projects");
        let one = format!("/v1/orgs/{org}/projects/{id}");
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
        assert_eq!(
            app.create_project(org, &caller.token, &format!("p{i}"))
                .await
                .0,
            expect(change, StatusCode::CREATED),
            "{role:?} create"
        );
        assert_eq!(
            app.patch_project(
                org,
                &id,
                &caller.token,
                json!({"name": format!("renamed {i}")})
            )
            .await
            .0,
            expect(change, StatusCode::OK),
            "{role:?} rename"
        );
        if delete {
            let (_, doomed) = app
                .create_project(org, &owner.token, &format!("doomed {i}"))
                .await;
            let path = format!("/v1/orgs/{org}/projects/{}", doomed["id"].as_str().unwrap());
            assert_eq!(
                app.call(Method::DELETE, &path, &caller.token, None).await.0,
                StatusCode::NO_CONTENT
            );
        } else {
            assert_eq!(
                app.call(Method::DELETE, &one, &caller.token, None).await.0,
                expect(false, StatusCode::NO_CONTENT),
                "{role:?} delete"
            );
        }
    }
    // Without a token, or with a tampered one: 401.
    let list = format!("/v1/orgs/{org}/projects");
    assert_eq!(
        app.call(Method::GET, &list, "", None).await.0,
        StatusCode::UNAUTHORIZED
    );
    let mut tampered = owner.token.clone();
    tampered.pop();
    tampered.push(if owner.token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(
        app.call(Method::GET, &list, &tampered, None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn another_orgs_project_does_not_exist(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let (a, b) = (app.fx.org_on("team").await, app.fx.org_on("team").await);
    let alice = app.fx.member(a, Role::Owner).await;
    let bob = app.fx.member(b, Role::Owner).await;
    let (_, project) = app.create_project(a, &alice.token, "secret plans").await;
    let id = project["id"].as_str().unwrap();

    // Bob through his own org's path, and through Alice's: 404 either way, nothing changes.
    for org in [a, b] {
        let path = format!("/v1/orgs/{org}/projects/{id}");
        for (method, body) in [
            (Method::GET, None),
            (Method::PATCH, Some(json!({"name": "mine now"}))),
            (Method::DELETE, None),
        ] {
            let (status, problem) = app
                .call(method.clone(), &path, &bob.token, body.as_ref())
                .await;
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "{method} via {org}: {problem}"
            );
            assert_eq!(problem["code"], "not_found");
        }
    }
    let (_, page) = app
        .call(
            Method::GET,
            &format!("/v1/orgs/{b}/projects"),
            &bob.token,
            None,
        )
        .await;
    assert_eq!(page["items"], json!([]));
    // The same name is free in another org.
    assert_eq!(
        app.create_project(b, &bob.token, "secret plans").await.0,
        StatusCode::CREATED
    );
    let (_, still) = app
        .call(
            Method::GET,
            &format!("/v1/orgs/{a}/projects/{id}"),
            &alice.token,
            None,
        )
        .await;
    assert_eq!(still["name"], "secret plans");

    // Row-level security, as the runtime role itself: scoped to org B, org A's rows are
    // invisible and untouchable, and a row cannot be written into org A.
    let runtime = app.fx.pool_as(runwarden_store::roles::RUNS, 1).await;
    let mut tx = runtime.begin().await.unwrap();
    runwarden_tenancy::set_tenant(&mut tx, Some(b), None)
        .await
        .unwrap();
    let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM projects WHERE org_id = $1")
        .bind(a)
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(seen, 0);
    let changed = sqlx::query("UPDATE projects SET name = 'x' WHERE org_id = $1")
        .bind(a)
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(changed, 0);
    let insert = sqlx::query("INSERT INTO projects (id, org_id, name) VALUES ($1, $2, 'planted')")
        .bind(uuid::Uuid::now_v7())
        .bind(a)
        .execute(&mut *tx)
        .await;
    assert!(
        insert.is_err(),
        "row-level security refuses another org's row"
    );
    tx.rollback().await.unwrap();
    // And it cannot claim a project slot for another org than its transaction's.
    let mut tx = runtime.begin().await.unwrap();
    runwarden_tenancy::set_tenant(&mut tx, Some(b), None)
        .await
        .unwrap();
    let claim = sqlx::query("SELECT * FROM quota_project_slot($1)")
        .bind(a)
        .execute(&mut *tx)
        .await;
    assert!(claim.is_err());
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn names_are_validated_and_unique_per_org(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let org = app.fx.org_on("team").await;
    let member = app.fx.member(org, Role::Member).await;
    let path = format!("/v1/orgs/{org}/projects");
    for body in [
        json!({"name": ""}),
        json!({"name": "   "}),
        json!({"name": "x".repeat(101)}),
        json!({"name": "line\nbreak"}),
        json!({"name": 7}),
        json!({"name": "ok", "owner": "someone else"}),
        json!({}),
    ] {
        let (status, problem) = app
            .call(Method::POST, &path, &member.token, Some(&body))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {problem}");
        assert_eq!(problem["status"], 400, "{problem}");
        assert!(problem["code"].is_string(), "{problem}");
    }
    assert_eq!(
        app.create_project(org, &member.token, "Checkout").await.0,
        StatusCode::CREATED
    );
    let (status, problem) = app.create_project(org, &member.token, "checkout").await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::CONFLICT, Some("name_taken"))
    );
    let (_, other) = app.create_project(org, &member.token, "Other").await;
    let other = other["id"].as_str().unwrap();
    let (status, problem) = app
        .patch_project(org, other, &member.token, json!({"name": "CHECKOUT"}))
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::CONFLICT, Some("name_taken"))
    );
    let (status, problem) = app
        .patch_project(org, other, &member.token, json!({}))
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("empty_change"))
    );
    // A malformed project id names no project.
    let (status, _) = app
        .call(
            Method::GET,
            &format!("{path}/not-a-uuid"),
            &member.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(app.active_projects(org).await, 2);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn pagination_is_clamped_and_walks_every_project_once(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.fx.org_on("team").await;
    let member = app.fx.member(org, Role::Member).await;
    for i in 0..7 {
        assert_eq!(
            app.create_project(org, &member.token, format!("p{i}"))
                .await
                .0,
            StatusCode::CREATED
        );
    }
    let list = |query: String| {
        let path = format!("/v1/orgs/{org}/projects{query}");
        let token = member.token.clone();
        let app = &app;
        async move { app.call(Method::GET, &path, &token, None).await }
    };
    let (status, page) = list("?limit=100000".into()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 7);
    assert_eq!(page["next_cursor"], Value::Null);
    let (_, page) = list("?limit=-1".into()).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    for bad in ["?limit=many", "?cursor=123", "?offset=100000"] {
        let (status, problem) = list(bad.into()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {problem}");
    }

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=3&cursor={c}"),
            None => "?limit=3".into(),
        };
        let (_, page) = list(query).await;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["name"].as_str().unwrap().to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["p6", "p5", "p4", "p3", "p2", "p1", "p0"],
        "newest first, each once"
    );
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 7);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn active_project_quota_holds_under_concurrency(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let org = app.fx.org_on("trial").await; // 3 active projects, a hard cap
    let member = app.fx.member(org, Role::Member).await;
    // An override stored behind the app's back does not raise a trial cap.
    app.fx.override_limit(org, "active_projects", 50).await;

    let results = futures::future::join_all(
        (0..20).map(|i| app.create_project(org, &member.token, format!("p{i}"))),
    )
    .await;
    let created: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .map(|(_, b)| b)
        .collect();
    assert_eq!(created.len(), 3, "{results:?}");
    for (status, body) in results.iter().filter(|(s, _)| *s != StatusCode::CREATED) {
        assert_eq!(*status, StatusCode::PAYMENT_REQUIRED, "{body}");
        assert_eq!(body["code"], "active_projects_exceeded");
    }
    assert_eq!(app.active_projects(org).await, 3);

    // Archiving frees a slot; unarchiving at the limit is refused and changes nothing.
    let first = created[0]["id"].as_str().unwrap();
    assert_eq!(
        app.patch_project(org, first, &member.token, json!({"archived": true}))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        app.create_project(org, &member.token, "replacement")
            .await
            .0,
        StatusCode::CREATED
    );
    let (status, body) = app
        .patch_project(org, first, &member.token, json!({"archived": false}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (
            StatusCode::PAYMENT_REQUIRED,
            Some("active_projects_exceeded")
        )
    );
    assert_eq!(app.active_projects(org).await, 3);
    assert!(
        app.fx
            .audit_events(org, "project.unarchive")
            .await
            .is_empty()
    );

    // Concurrent unarchives for one free slot: exactly one wins.
    let archived: Vec<String> = created
        .iter()
        .skip(1)
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    for id in &archived {
        app.patch_project(org, id, &member.token, json!({"archived": true}))
            .await;
    }
    assert_eq!(app.active_projects(org).await, 1);
    let results = futures::future::join_all(
        [first.to_owned()]
            .iter()
            .chain(archived.iter())
            .map(|id| app.patch_project(org, id, &member.token, json!({"archived": false}))),
    )
    .await;
    assert_eq!(
        results.iter().filter(|(s, _)| *s == StatusCode::OK).count(),
        2,
        "{results:?}"
    );
    assert_eq!(app.active_projects(org).await, 3);

    // Outside trial an override does apply.
    let team = app.fx.org_on("team").await;
    app.fx.override_limit(team, "active_projects", 2).await;
    let owner = app.fx.member(team, Role::Owner).await;
    let statuses: Vec<StatusCode> = futures::future::join_all(
        (0..6).map(|i| app.create_project(team, &owner.token, format!("t{i}"))),
    )
    .await
    .into_iter()
    .map(|(s, _)| s)
    .collect();
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        2,
        "{statuses:?}"
    );
}
