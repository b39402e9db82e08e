//! Abuse limits (issue 10, attack 4; API6-01): one trial per user, whatever becomes of the
//! first org; org creation per user and invitations per org per day, each refused with a
//! 429 problem of its own code and a `security_event` log line.

use reqwest::{Method, StatusCode};
use runwarden_auth::abuse_limits;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{Session, TestApp, spawn_app, unique_email};

async fn create_org(app: &TestApp, s: &Session, name: &str) -> (StatusCode, Value) {
    app.post("/v1/orgs", Some(&s.access), json!({"name": name}))
        .await
}

async fn plan(app: &TestApp, org: &str) -> String {
    sqlx::query_scalar("SELECT plan FROM orgs WHERE id = $1::uuid")
        .bind(org)
        .fetch_one(&app.admin)
        .await
        .unwrap()
}

/// A day passes for the user's org-creation key.
async fn forget_org_creation_limit(app: &TestApp, user: &str) {
    sqlx::query("DELETE FROM rate_limits WHERE key = $1")
        .bind(abuse_limits::org_creation_key(user.parse().unwrap()))
        .execute(&app.admin)
        .await
        .unwrap();
}

/// The attack of issue 10: one user makes org after org, each with fresh trial caps. Now
/// only their first org is on trial; orgs #2..#12 are `unpaid` (quotas admits no run on
/// it: 402 `plan_required`, see quotas' `api6_01_an_unpaid_org_runs_nothing...`).
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn api6_01_one_user_gets_one_trial_however_many_orgs_they_create(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let farmer = app.signup("farmer").await;
    assert_eq!(plan(&app, &farmer.org_id).await, "trial");

    let mut created = Vec::new();
    for n in 2..=12 {
        let (mut status, mut org) = create_org(&app, &farmer, &format!("Org {n}")).await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            // The per-user creation limit, tested below; a day passes.
            forget_org_creation_limit(&app, &farmer.user_id).await;
            (status, org) = create_org(&app, &farmer, &format!("Org {n}")).await;
        }
        assert_eq!(status, StatusCode::CREATED, "org #{n}: {org}");
        assert_eq!(org["plan"], "unpaid", "org #{n}: {org}");
        let id = org["id"].as_str().unwrap().to_owned();
        assert_eq!(plan(&app, &id).await, "unpaid");
        // Audited with the plan it got.
        let events = app.outbox(&id).await;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].0, "org.create");
        assert_eq!(events[0].1["details"]["plan"], "unpaid", "{}", events[0].1);
        created.push(id);
    }
    let trials: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM orgs o JOIN memberships m ON m.org_id = o.id
          WHERE m.user_id = $1::uuid AND o.plan = 'trial'",
    )
    .bind(&farmer.user_id)
    .fetch_one(&app.admin)
    .await
    .unwrap();
    assert_eq!(trials, 1, "exactly one trial among 12 orgs");

    // Their trial is recorded against the user, with the org it went to.
    let trial_org: Option<String> =
        sqlx::query_scalar("SELECT trial_org_id::text FROM users WHERE id = $1::uuid")
            .bind(&farmer.user_id)
            .fetch_one(&app.admin)
            .await
            .unwrap();
    assert_eq!(trial_org.as_deref(), Some(farmer.org_id.as_str()));
}

/// Losing the trial org does not give the user another trial: not leaving it, not its
/// termination, not its deletion.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn api6_01_leaving_terminating_or_deleting_the_trial_org_grants_no_new_trial(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let farmer = app.signup("farmer").await;
    let accomplice = app.signup("accomplice").await;

    // Leave: hand the trial org to someone else, then leave it.
    app.add_member(&farmer, &accomplice, "owner").await;
    let (status, body) = app
        .call(
            Method::DELETE,
            &format!("/v1/orgs/{}/members/{}", farmer.org_id, farmer.user_id),
            Some(&farmer.access),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, org) = create_org(&app, &farmer, "After leaving").await;
    assert_eq!(
        (status, org["plan"].as_str()),
        (StatusCode::CREATED, Some("unpaid"))
    );

    // Terminated, then deleted outright: still no second trial.
    sqlx::query("UPDATE orgs SET terminated_at = now() WHERE id = $1::uuid")
        .bind(&farmer.org_id)
        .execute(&app.admin)
        .await
        .unwrap();
    let (status, org) = create_org(&app, &farmer, "After termination").await;
    assert_eq!(
        (status, org["plan"].as_str()),
        (StatusCode::CREATED, Some("unpaid"))
    );
    sqlx::query("DELETE FROM orgs WHERE id = $1::uuid")
        .bind(&farmer.org_id)
        .execute(&app.admin)
        .await
        .unwrap();
    let (status, org) = create_org(&app, &farmer, "After deletion").await;
    assert_eq!(
        (status, org["plan"].as_str()),
        (StatusCode::CREATED, Some("unpaid"))
    );

    // The accomplice, who joined the farmer's org, still has their own one trial.
    assert_eq!(plan(&app, &accomplice.org_id).await, "trial");
}

/// Two creations racing for one user's trial: exactly one can have it, because the claim
/// serializes on the user's row.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn api6_01_concurrent_first_orgs_claim_one_trial(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let user = app.signup("racer").await;
    // A user with no trial yet (as one made before this rule, owning nothing).
    sqlx::query("UPDATE users SET trial_org_id = NULL WHERE id = $1::uuid")
        .bind(&user.user_id)
        .execute(&app.admin)
        .await
        .unwrap();
    sqlx::query("DELETE FROM orgs WHERE id = $1::uuid")
        .bind(&user.org_id)
        .execute(&app.admin)
        .await
        .unwrap();
    let names: Vec<String> = (0..4).map(|n| format!("Race {n}")).collect();
    let results =
        futures::future::join_all(names.iter().map(|name| create_org(&app, &user, name))).await;
    let mut plans: Vec<&str> = results
        .iter()
        .map(|(status, org)| {
            assert_eq!(*status, StatusCode::CREATED, "{org}");
            org["plan"].as_str().unwrap()
        })
        .collect();
    plans.sort_unstable();
    assert_eq!(plans, ["trial", "unpaid", "unpaid", "unpaid"]);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn api6_01_org_creation_is_limited_per_user(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let user = app.signup("maker").await;
    let other = app.signup("other").await;
    for n in 1..=5 {
        let (status, org) = create_org(&app, &user, &format!("Org {n}")).await;
        assert_eq!(status, StatusCode::CREATED, "#{n}: {org}");
    }
    let (status, headers, text) = app
        .call_raw(
            Method::POST,
            "/v1/orgs",
            Some(&user.access),
            Some(json!({"name": "One too many"})),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
    let problem: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(problem["code"], "org_creation_rate_limited", "{problem}");
    assert_eq!(headers["content-type"], "application/problem+json");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((17_000..=17_280).contains(&retry), "{retry}");
    assert!(
        headers["ratelimit-policy"]
            .to_str()
            .unwrap()
            .contains("org-creation"),
        "{headers:?}"
    );
    // Refused before anything was written: 6 orgs (the personal one and 5), no more.
    let orgs: i64 = sqlx::query_scalar("SELECT count(*) FROM memberships WHERE user_id = $1::uuid")
        .bind(&user.user_id)
        .fetch_one(&app.admin)
        .await
        .unwrap();
    assert_eq!(orgs, 6);
    // The limit is the user's: another user is unaffected.
    let (status, _) = create_org(&app, &other, "Mine").await;
    assert_eq!(status, StatusCode::CREATED);
}

/// An Admin spamming invitations: 100 a day per org, each audited; the 101st is refused
/// with its own code and nothing is written for it.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn api6_01_invitations_are_limited_per_org_per_day(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let owner = app.signup("spammer").await;
    // A plan whose request rate lets 101 requests through in a minute: the limit met is
    // the invitation limit, not the org's request rate.
    sqlx::query("UPDATE orgs SET plan = 'enterprise' WHERE id = $1::uuid")
        .bind(&owner.org_id)
        .execute(&app.admin)
        .await
        .unwrap();
    let path = format!("/v1/orgs/{}/invitations", owner.org_id);
    for n in 0..100 {
        let (status, body) = app
            .post(
                &path,
                Some(&owner.access),
                json!({"email": unique_email("victim"), "role": "viewer"}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "#{n}: {body}");
    }
    let (status, headers, text) = app
        .call_raw(
            Method::POST,
            &path,
            Some(&owner.access),
            Some(json!({"email": unique_email("victim"), "role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
    let problem: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(problem["code"], "invitation_rate_limited", "{problem}");
    assert!(headers.contains_key("retry-after"));

    let invitations: i64 =
        sqlx::query_scalar("SELECT count(*) FROM invitations WHERE org_id = $1::uuid")
            .bind(&owner.org_id)
            .fetch_one(&app.admin)
            .await
            .unwrap();
    assert_eq!(invitations, 100);
    let audited = app
        .outbox(&owner.org_id)
        .await
        .into_iter()
        .filter(|(action, _)| action == "invitation.create")
        .count();
    assert_eq!(audited, 100, "each invitation sent is audited");

    // Another org's invitations are its own.
    let other = app.signup("other").await;
    let (status, body) = app
        .post(
            &format!("/v1/orgs/{}/invitations", other.org_id),
            Some(&other.access),
            json!({"email": unique_email("friend"), "role": "viewer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
