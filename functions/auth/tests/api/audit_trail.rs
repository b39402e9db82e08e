//! LOG-01: every mutating route leaves exactly one audit event in the outbox, with the right
//! actor, org, action and target; reads and session changes leave none. Routes come from
//! `ROUTES`, so a new route without a declared audit policy and an exercise here fails.

use reqwest::{Method, StatusCode};
use runwarden_auth::routes::{Access, Audit, ROUTES, Route};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{PASSWORD, TASK_SECRET, Team, TestApp, spawn_app, unique_email};

/// Every outbox row so far, oldest first: (org, payload).
async fn all_events(app: &TestApp) -> Vec<(String, Value)> {
    sqlx::query_as::<_, (String, Value)>(
        "SELECT org_id::text, payload FROM outbox_events ORDER BY created_at, id",
    )
    .fetch_all(&app.admin)
    .await
    .unwrap()
}

/// What one successful call should have recorded: (org, actor, target type, target id).
type Expected = Option<(String, String, &'static str, String)>;

/// Performs `route` successfully after any setup it needs, and returns the number of events
/// just before the call itself and what the call must have recorded.
async fn exercise(app: &TestApp, team: &Team, route: &Route) -> (usize, Expected) {
    let mut before = all_events(app).await.len();
    let expected = exercise_inner(app, team, route, &mut before).await;
    (before, expected)
}

async fn exercise_inner(app: &TestApp, team: &Team, route: &Route, before: &mut usize) -> Expected {
    let org = team.org().to_owned();
    let owner = &team.owner;
    let call = |method: &str, path: String, token: Option<String>, body: Option<Value>| {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        async move { app.call(method, &path, token.as_deref(), body).await }
    };
    let ok = |(status, body): (StatusCode, Value)| {
        assert!(
            status.is_success(),
            "{} {}: {status} {body}",
            route.method,
            route.path
        );
        body
    };
    match (route.method, route.path) {
        ("POST", "/v1/auth/signup") => {
            ok(app
                .post(
                    route.path,
                    None,
                    json!({"email": unique_email("new"), "password": PASSWORD}),
                )
                .await);
            None
        }
        ("POST", "/v1/auth/verify-email/resend") => {
            let email = unique_email("resend");
            ok(app
                .post(
                    "/v1/auth/signup",
                    None,
                    json!({"email": email, "password": PASSWORD}),
                )
                .await);
            app.mailed_token(&email).await;
            *before = all_events(app).await.len();
            ok(app.post(route.path, None, json!({"email": email})).await);
            None
        }
        ("POST", "/v1/auth/verify-email") => {
            let email = unique_email("verify");
            ok(app
                .post(
                    "/v1/auth/signup",
                    None,
                    json!({"email": email, "password": PASSWORD}),
                )
                .await);
            let token = app.mailed_token(&email).await;
            *before = all_events(app).await.len();
            let body = ok(app.verify(&token).await);
            let new_org = body["org_id"].as_str().unwrap().to_owned();
            Some((
                new_org.clone(),
                body["user_id"].as_str().unwrap().into(),
                "org",
                new_org,
            ))
        }
        ("POST", "/v1/auth/login") => {
            ok(app.login(&owner.email, PASSWORD).await);
            None
        }
        ("POST", "/v1/auth/refresh") => {
            let (_, fresh) = app.login(&team.viewer.email, PASSWORD).await;
            ok(app
                .post(
                    route.path,
                    None,
                    json!({"refresh_token": fresh["refresh_token"]}),
                )
                .await);
            None
        }
        ("POST", "/v1/auth/logout") => {
            let (_, fresh) = app.login(&team.viewer.email, PASSWORD).await;
            ok(call(
                "POST",
                route.path.into(),
                fresh["access_token"].as_str().map(str::to_owned),
                None,
            )
            .await);
            None
        }
        ("POST", "/v1/orgs") => {
            let body = ok(app
                .post(route.path, Some(&owner.access), json!({"name": "Another"}))
                .await);
            let id = body["id"].as_str().unwrap().to_owned();
            Some((id.clone(), owner.user_id.clone(), "org", id))
        }
        ("PATCH", "/v1/orgs/{org}") => {
            ok(call(
                "PATCH",
                format!("/v1/orgs/{org}"),
                Some(team.admin.access.clone()),
                Some(json!({"name": "Renamed"})),
            )
            .await);
            Some((org.clone(), team.admin.user_id.clone(), "org", org))
        }
        ("PATCH", "/v1/orgs/{org}/members/{user}") => {
            let path = format!("/v1/orgs/{org}/members/{}", team.member.user_id);
            ok(call(
                "PATCH",
                path,
                Some(team.admin.access.clone()),
                Some(json!({"role": "viewer"})),
            )
            .await);
            Some((
                org,
                team.admin.user_id.clone(),
                "user",
                team.member.user_id.clone(),
            ))
        }
        ("DELETE", "/v1/orgs/{org}/members/{user}") => {
            let leaver = app.signup("leaver").await;
            app.add_member(owner, &leaver, "viewer").await;
            *before = all_events(app).await.len();
            let path = format!("/v1/orgs/{org}/members/{}", leaver.user_id);
            ok(call("DELETE", path, Some(owner.access.clone()), None).await);
            Some((org, owner.user_id.clone(), "user", leaver.user_id))
        }
        ("POST", "/v1/orgs/{org}/invitations") => {
            let body = ok(app
                .post(
                    &format!("/v1/orgs/{org}/invitations"),
                    Some(&owner.access),
                    json!({"email": unique_email("i"), "role": "viewer"}),
                )
                .await);
            Some((
                org,
                owner.user_id.clone(),
                "invitation",
                body["id"].as_str().unwrap().into(),
            ))
        }
        ("POST", "/v1/invitations/{token}/accept") => {
            let joiner = app.signup("joiner").await;
            let (_, invitation) = app
                .post(
                    &format!("/v1/orgs/{org}/invitations"),
                    Some(&owner.access),
                    json!({"email": joiner.email, "role": "member"}),
                )
                .await;
            let path = format!(
                "/v1/invitations/{}/accept",
                invitation["token"].as_str().unwrap()
            );
            *before = all_events(app).await.len();
            ok(call("POST", path, Some(joiner.access.clone()), Some(json!({}))).await);
            Some((org, joiner.user_id.clone(), "user", joiner.user_id))
        }
        // Exercised against a local OIDC provider in google.rs, which asserts exactly one
        // org.create when the account is created and none on later sign-ins.
        ("GET", "/v1/auth/google/callback") => None,
        (method, path) => panic!("no exercise for {method} {path}: add one when adding the route"),
    }
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn log01_every_mutating_route_records_exactly_one_event(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let team = Team::new(&app, "t").await;
    let mut checked = 0;
    for route in ROUTES {
        let before = all_events(&app).await.len();
        match route.audit {
            Audit::Read => {
                // Reads (with full access) write nothing.
                let path = route.path.replace("{org}", team.org());
                let (status, _) = app
                    .call(Method::GET, &path, Some(&team.owner.access), None)
                    .await;
                assert!(
                    status.is_success()
                        || status.is_redirection()
                        || status == StatusCode::NOT_FOUND,
                    "{path}: {status}"
                );
                assert_eq!(
                    all_events(&app).await.len(),
                    before,
                    "GET {} wrote an event",
                    route.path
                );
            }
            Audit::SessionOnly | Audit::EventWhenCreating(_) => {
                let (before, expected) = exercise(&app, &team, route).await;
                assert_eq!(expected, None);
                assert_eq!(
                    all_events(&app).await.len(),
                    before,
                    "{} {} wrote an event",
                    route.method,
                    route.path
                );
            }
            Audit::Event(action) => {
                let (before, expected) = exercise(&app, &team, route).await;
                let (org, actor, target_type, target_id) = expected.expect("a mutation");
                let events = all_events(&app).await;
                assert_eq!(
                    events.len(),
                    before + 1,
                    "{} {}: exactly one event",
                    route.method,
                    route.path
                );
                let (event_org, event) = events.last().unwrap();
                assert_eq!(event_org, &org);
                assert_eq!(event["org_id"], org.as_str());
                assert_eq!(event["action"], action, "{}", route.path);
                assert_eq!(
                    event["actor"],
                    json!({"kind": "user", "id": actor}),
                    "{}",
                    route.path
                );
                assert_eq!(
                    event["target"],
                    json!({"type": target_type, "id": target_id}),
                    "{}",
                    route.path
                );
                assert_eq!(event["outcome"], "success");
                assert!(
                    event["request_id"].as_str().is_some_and(|r| !r.is_empty()),
                    "request id recorded"
                );
                assert_eq!(event["ip"], "127.0.0.1");
                assert!(event["time"].as_str().unwrap().contains('T'));
                checked += 1;
            }
            Audit::PerChange(actions) => {
                // Email verification: the personal org's creation, then the verification,
                // both in the new org, by the new user.
                let (before, expected) = exercise(&app, &team, route).await;
                let (org, actor, _, _) = expected.expect("a mutation");
                let events = all_events(&app).await;
                let recorded: Vec<(&str, &str, &str)> = events[before..]
                    .iter()
                    .map(|(o, e)| {
                        (
                            o.as_str(),
                            e["action"].as_str().unwrap(),
                            e["actor"]["id"].as_str().unwrap(),
                        )
                    })
                    .collect();
                let wanted: Vec<(&str, &str, &str)> = actions
                    .iter()
                    .map(|a| (org.as_str(), *a, actor.as_str()))
                    .collect();
                assert_eq!(recorded, wanted, "{} {}", route.method, route.path);
                checked += 1;
            }
            Audit::Unaudited(_) if route.access == Access::Public => {
                // Sign-up and resend: an unverified account belongs to no org, so there is
                // no org audit log to write to (its verification is audited).
                let (before, expected) = exercise(&app, &team, route).await;
                assert_eq!(expected, None);
                assert_eq!(
                    all_events(&app).await.len(),
                    before,
                    "{} {} wrote an event",
                    route.method,
                    route.path
                );
            }
            Audit::Unaudited(_) => {
                // The scheduler's retention purge: a system effect that records nothing.
                assert_eq!(route.access, Access::Task, "{}", route.path);
                let method = Method::from_bytes(route.method.as_bytes()).unwrap();
                let path = format!("{}?token={TASK_SECRET}", route.path);
                let (status, _) = app.call(method, &path, None, None).await;
                assert_eq!(status, StatusCode::OK, "{path}");
                assert_eq!(
                    all_events(&app).await.len(),
                    before,
                    "{} {} wrote an event",
                    route.method,
                    route.path
                );
            }
            other => panic!(
                "{} {}: auth declares no {other:?}",
                route.method, route.path
            ),
        }
    }
    assert!(checked >= 7, "{checked} mutating routes checked");
    let dump = serde_json::to_string(&all_events(&app).await).unwrap();
    assert!(
        !dump.contains(PASSWORD)
            && !dump.contains("rt_")
            && !dump.contains("inv_")
            && !dump.contains("ev_")
            && !dump.contains("eyJ"),
        "no secret in any event"
    );
}
