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
