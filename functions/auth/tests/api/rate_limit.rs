//! API4-01: the per-org request rate of the org's plan, enforced on /v1/orgs/{org} routes
//! and shared by every instance through the database.

use reqwest::StatusCode;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{spawn_app, spawn_second_instance};

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn api4_01_an_orgs_plan_rate_holds_across_instances(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let first = spawn_app(options.clone()).await;
    let second = spawn_second_instance(options, &first).await;
    let a = first.signup("a").await;
    let b = first.signup("b").await;
    sqlx::query("UPDATE plans SET requests_per_minute = 5 WHERE name = 'trial'")
        .execute(&first.admin)
        .await
        .unwrap();

    let path = format!("/v1/orgs/{}", a.org_id);
    let mut ok = 0;
    let mut limited = None;
    for i in 0..8 {
        let app = if i % 2 == 0 { &first } else { &second };
        let (status, headers, body) = app
            .call_raw(reqwest::Method::GET, &path, Some(&a.access), None)
            .await;
        assert!(
            headers.contains_key("ratelimit") && headers.contains_key("ratelimit-policy"),
            "{headers:?}"
        );
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => limited = Some((headers, body)),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(
        ok, 5,
        "exactly the plan's 5 per minute across both instances"
    );
    let (headers, body) = limited.expect("the sixth request is refused");
    assert!(
        headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    let problem: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(problem["code"], "rate_limited");

    // Another org is unaffected, and routes outside an org are not counted.
    let (status, _) = second
        .get(&format!("/v1/orgs/{}", b.org_id), &b.access)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = first.get("/v1/me", &a.access).await;
    assert_eq!(status, StatusCode::OK);
}

/// Issue 10, attack 3: 90 requests with no token, a garbage token or a non-member's token to
/// a victim org's route used to spend its budget for every member. Only a live member's
/// requests are charged to the org; the anonymous client is limited per IP.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn an_anonymous_flood_leaves_the_orgs_members_unaffected(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let victim = app.signup("victim").await;
    let outsider = app.signup("outsider").await;
    sqlx::query("UPDATE plans SET requests_per_minute = 5 WHERE name = 'trial'")
        .execute(&app.admin)
        .await
        .unwrap();
    let path = format!("/v1/orgs/{}", victim.org_id);
    let flood_from = "198.51.100.200";
    let mut anonymous = Vec::new();
    for i in 0..270 {
        let mut request = app
            .client
            .get(app.url(&path))
            .header("x-forwarded-for", flood_from);
        let outsider_call = i % 3 == 2;
        match i % 3 {
            0 => {}
            1 => request = request.bearer_auth("not.a.token"),
            _ => request = request.bearer_auth(&outsider.access),
        }
        let response = request.send().await.unwrap();
        if outsider_call {
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "request {i}");
            continue;
        }
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(
                response.headers()["ratelimit-policy"],
                "\"anonymous\";q=60;w=60"
            );
            assert!(response.headers().contains_key("retry-after"));
        }
        anonymous.push(response.status());
    }
    // The client's burst of 60, then 429 for that client, but for the one a second the rate
    // gives back while the flood lasts.
    assert_eq!(anonymous[..60], [StatusCode::UNAUTHORIZED; 60]);
    let refused = anonymous
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert!(refused >= 90, "{refused} of 180 refused");
    let org_rows: i64 = sqlx::query_scalar("SELECT count(*) FROM rate_limits WHERE key = $1")
        .bind(format!("org:{}:api", victim.org_id))
        .fetch_one(&app.admin)
        .await
        .unwrap();
    assert_eq!(org_rows, 0, "the org's budget is untouched");

    // The member, even from the flooding address, has the org's whole budget.
    for remaining in (0..5).rev() {
        let response = app
            .client
            .get(app.url(&path))
            .header("x-forwarded-for", flood_from)
            .bearer_auth(&victim.access)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let ratelimit = response.headers()["ratelimit"].to_str().unwrap();
        assert!(
            ratelimit.starts_with(&format!("\"org\";r={remaining};")),
            "{ratelimit}"
        );
    }
    let (status, headers, _) = app
        .call_raw(reqwest::Method::GET, &path, Some(&victim.access), None)
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["ratelimit-policy"], "\"org\";q=5;w=60");
}
