//! Issue 10, attack 3: the org's request budget is charged only for its live members; requests
//! without a valid credential are limited per client IP; media traffic counts in the org's
//! rate.

use reqwest::{Method, StatusCode};
use runwarden_tenancy::Role;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{TestApp, spawn_app};

/// `GET path` with an optional bearer token, straight (a 429 is not in the document).
async fn get(app: &TestApp, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(app.served.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn org_key_rows(app: &TestApp, org: runwarden_tenancy::OrgId) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM rate_limits WHERE key = $1")
        .bind(runwarden_ratelimit::org_api_key(org))
        .fetch_one(&app.fx.admin)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn an_anonymous_flood_never_spends_the_orgs_budget(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let victim = app.fx.org_on("team").await;
    app.fx
        .override_limit(victim, "requests_per_minute", 5)
        .await;
    let member = app.fx.member(victim, Role::Viewer).await;
    let other = app.fx.org_on("team").await;
    let outsider = app.fx.member(other, Role::Owner).await;
    let path = format!("/v1/orgs/{victim}/projects");

    // 90 requests each with no token, a garbage token and a non-member's valid token.
    let mut anonymous = Vec::new();
    for i in 0..270 {
        let token = match i % 3 {
            0 => None,
            1 => Some("garbage.token.here"),
            _ => Some(outsider.token.as_str()),
        };
        let response = get(&app, &path, token).await;
        let status = response.status();
        if token == Some(outsider.token.as_str()) {
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "a non-member: 404, uncharged"
            );
            continue;
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let headers = response.headers();
            assert_eq!(headers["ratelimit-policy"], "\"anonymous\";q=60;w=60");
            assert!(headers.contains_key("retry-after"));
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["code"], "rate_limited");
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "request {i}");
        }
        anonymous.push(status);
    }
    // The client's burst of 60 (less what the harness itself spent anonymously from this
    // address), then 429 for that client, but for the one a second the rate gives back.
    let unauthorized = anonymous
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    assert!(
        anonymous[..50]
            .iter()
            .all(|s| *s == StatusCode::UNAUTHORIZED),
        "{anonymous:?}"
    );
    assert!(unauthorized < 90, "{unauthorized} of 180 let through");
    assert_eq!(
        org_key_rows(&app, victim).await,
        0,
        "the org's key untouched"
    );

    // The member, from the same address, has the org's whole budget.
    for remaining in (0..5).rev() {
        let response = get(&app, &path, Some(&member.token)).await;
        assert_eq!(response.status(), StatusCode::OK);
        let ratelimit = response.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(
            ratelimit.starts_with(&format!("\"org\";r={remaining};")),
            "{ratelimit}"
        );
    }
    // Members still meet their org's limit.
    let response = get(&app, &path, Some(&member.token)).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["ratelimit-policy"], "\"org\";q=5;w=60");
    assert!(response.headers().contains_key("retry-after"));
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn media_requests_count_in_the_orgs_rate(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let org = app.fx.org_on("team").await;
    app.fx.override_limit(org, "requests_per_minute", 10).await;
    let member = app.fx.member(org, Role::Member).await;
    let project = app.project(org, &member.token).await;
    let body = json!({"agent": "demo", "input": {"sleep_seconds": 1}, "max_seconds": 600});
    let (status, _, run) = app
        .start_run(org, &project, &member.token, body, None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let run = run["id"].as_str().unwrap().to_owned();
    let (status, tokens) = app
        .call(
            Method::POST,
            &format!("/v1/orgs/{org}/runs/{run}/media-token"),
            &member.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let url = tokens["events"]["url"].as_str().unwrap().to_owned();

    // Each media request takes one request from the org's budget, until none is left.
    let mut last = None;
    let mut refused = None;
    for _ in 0..10 {
        let response = get(&app, &url, None).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some(response);
            break;
        }
        assert_eq!(response.status(), StatusCode::OK);
        let ratelimit = response.headers()["ratelimit"].to_str().unwrap().to_owned();
        let remaining: u32 = ratelimit
            .strip_prefix("\"org\";r=")
            .and_then(|rest| rest.split(';').next())
            .and_then(|r| r.parse().ok())
            .unwrap_or_else(|| panic!("{ratelimit}"));
        if let Some(previous) = last {
            assert_eq!(remaining + 1, previous, "one per media request");
        }
        last = Some(remaining);
        drop(response);
    }
    assert_eq!(last, Some(0), "the budget ran out on media requests");
    let refused = refused.expect("the next media request is refused");
    assert_eq!(refused.headers()["ratelimit-policy"], "\"org\";q=10;w=60");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");
}
