//! LOG-01: every mutating route leaves exactly one audit event in the outbox, with the right
//! actor, org, action and target; an account event (login, logout, refresh-token reuse,
//! password change, session revocation) one per org of the user; reads and the other
//! session changes leave none. Routes come from
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
        // Account events (`Audit::PerItem`): one per org of the user; the expected one is
        // the event in the team's org.
        ("POST", "/v1/auth/login") => {
            ok(app.login(&owner.email, PASSWORD).await);
            Some((org, owner.user_id.clone(), "user", owner.user_id.clone()))
        }
        ("POST", "/v1/auth/refresh") => {
            // A rotation records nothing; the reuse of a used token records its revocation.
            let (_, fresh) = app.login(&team.viewer.email, PASSWORD).await;
            let used = fresh["refresh_token"].clone();
            *before = all_events(app).await.len();
            ok(app
                .post(route.path, None, json!({"refresh_token": used}))
                .await);
            assert_eq!(
                all_events(app).await.len(),
                *before,
                "a rotation records nothing"
            );
            let (status, _) = app
                .post(route.path, None, json!({"refresh_token": used}))
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            Some((org, "system".into(), "user", team.viewer.user_id.clone()))
        }
        ("POST", "/v1/auth/logout") => {
            let (_, fresh) = app.login(&team.viewer.email, PASSWORD).await;
            *before = all_events(app).await.len();
            ok(call(
                "POST",
                route.path.into(),
                fresh["access_token"].as_str().map(str::to_owned),
                None,
            )
            .await);
            Some((
                org,
                team.viewer.user_id.clone(),
                "user",
                team.viewer.user_id.clone(),
            ))
        }
        ("POST", "/v1/auth/reauthenticate") => {
            ok(app
                .post(
                    route.path,
                    Some(&team.viewer.access),
                    json!({"password": PASSWORD}),
                )
                .await);
            None
        }
        ("POST", "/v1/auth/password/change") => {
            let changer = app.signup("changer").await;
            app.add_member(owner, &changer, "viewer").await;
            *before = all_events(app).await.len();
            ok(app
                .post(
                    route.path,
                    Some(&changer.access),
                    json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}),
                )
                .await);
            Some((org, changer.user_id.clone(), "user", changer.user_id))
        }
        ("POST", "/v1/auth/password/forgot") => {
            let forgetful = app.signup("forgetful").await;
            app.add_member(owner, &forgetful, "viewer").await;
            verify_email(app, &forgetful.user_id).await;
            *before = all_events(app).await.len();
            ok(app
                .post(route.path, None, json!({"email": forgetful.email}))
                .await);
            Some((org, "system".into(), "user", forgetful.user_id))
        }
        ("POST", "/v1/auth/password/reset") => {
            let resetter = app.signup("resetter").await;
            app.add_member(owner, &resetter, "viewer").await;
            verify_email(app, &resetter.user_id).await;
            ok(app
                .post(
                    "/v1/auth/password/forgot",
                    None,
                    json!({"email": resetter.email}),
                )
                .await);
            let body: String = sqlx::query_scalar(
                "SELECT body_text FROM mail_outbox WHERE to_address = $1 ORDER BY created_at DESC LIMIT 1",
            )
            .bind(&resetter.email)
            .fetch_one(&app.admin)
            .await
            .unwrap();
            let token: String = body
                .split_once("token=")
                .unwrap()
                .1
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            *before = all_events(app).await.len();
            ok(app
                .post(
                    route.path,
                    None,
                    json!({"token": token, "password": "a brand new passphrase"}),
                )
                .await);
            Some((org, resetter.user_id.clone(), "user", resetter.user_id))
        }
        ("DELETE", "/v1/me/sessions/{id}") => {
            let (_, fresh) = app.login(&team.viewer.email, PASSWORD).await;
            let (_, page) = app
                .get("/v1/me/sessions", fresh["access_token"].as_str().unwrap())
                .await;
            let id = page["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["current"] == true)
                .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();
            *before = all_events(app).await.len();
            ok(call(
                "DELETE",
                format!("/v1/me/sessions/{id}"),
                Some(team.viewer.access.clone()),
                None,
            )
            .await);
            Some((
                org,
                team.viewer.user_id.clone(),
                "user",
                team.viewer.user_id.clone(),
            ))
        }
        ("DELETE", "/v1/orgs/{org}/members/{user}/sessions") => {
            let signed_out = app.signup("signedout").await;
            app.add_member(owner, &signed_out, "viewer").await;
            *before = all_events(app).await.len();
            let path = format!("/v1/orgs/{org}/members/{}/sessions", signed_out.user_id);
            ok(call("DELETE", path, Some(owner.access.clone()), None).await);
            Some((org, owner.user_id.clone(), "user", signed_out.user_id))
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

/// Marks a user's address verified, as following their sign-up link does.
async fn verify_email(app: &TestApp, user_id: &str) {
    sqlx::query("UPDATE users SET email_verified_at = now() WHERE id = $1::uuid")
        .bind(user_id)
        .execute(&app.admin)
        .await
        .unwrap();
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
            Audit::PerItem(action) => {
                // An account event: one per org of the user, all of this action.
                let (before, expected) = exercise(&app, &team, route).await;
                let (org, actor, target_type, target_id) = expected.expect("an account event");
                let events = all_events(&app).await;
                let new = &events[before..];
                assert!(
                    !new.is_empty(),
                    "{} {}: at least one event",
                    route.method,
                    route.path
                );
                for (_, event) in new {
                    assert_eq!(event["action"], action, "{} {}", route.method, route.path);
                }
                let (_, event) = new
                    .iter()
                    .find(|(event_org, _)| event_org == &org)
                    .unwrap_or_else(|| panic!("{}: an event in the team's org", route.path));
                let expected_actor = if actor == "system" {
                    json!({"kind": "system"})
                } else {
                    json!({"kind": "user", "id": actor})
                };
                assert_eq!(
                    event["actor"]["kind"], expected_actor["kind"],
                    "{}",
                    route.path
                );
                if let Some(id) = expected_actor.get("id") {
                    assert_eq!(&event["actor"]["id"], id, "{}", route.path);
                }
                assert_eq!(
                    event["target"],
                    json!({"type": target_type, "id": target_id}),
                    "{}",
                    route.path
                );
                assert_eq!(event["ip"], "127.0.0.1", "{}", route.path);
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
            && !dump.contains("pr_")
            && !dump.contains("ev_")
            && !dump.contains("eyJ"),
        "no secret in any event"
    );
}
