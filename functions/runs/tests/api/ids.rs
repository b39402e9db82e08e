//! A malformed id in a path names nothing: every id-bearing route family answers it exactly
//! as it answers a well-formed id of nothing, 404 with the `not_found` problem (never a 400
//! or a 500 that would tell the two apart).

use reqwest::{Method, StatusCode};
use runwarden_tenancy::Role;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::{INTERNAL_SECRET, spawn_app};

const MALFORMED: [&str; 3] = ["not-a-uuid", "0191e5f2-7b3c-7a00-8000", "1"];

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn org_routes_answer_a_malformed_project_or_run_id_as_a_missing_one(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let org = app.fx.org_on("team").await;
    let owner = app.fx.member(org, Role::Owner).await;
    let project = app.project(org, &owner.token).await;
    let missing = Uuid::now_v7();
    let (status, not_found) = app
        .call(
            Method::GET,
            &format!("/v1/orgs/{org}/projects/{missing}"),
            &owner.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(not_found["code"], "not_found");

    let secret = json!({"kind": "api_key", "value": "v"});
    let run = json!({"agent": "demo"});
    let rename = json!({"name": "renamed"});
    for id in MALFORMED {
        let routes: Vec<(Method, String, Option<&Value>)> = vec![
            // projects
            (Method::GET, format!("/v1/orgs/{org}/projects/{id}"), None),
            (
                Method::PATCH,
                format!("/v1/orgs/{org}/projects/{id}"),
                Some(&rename),
            ),
            (
                Method::DELETE,
                format!("/v1/orgs/{org}/projects/{id}"),
                None,
            ),
            // runs
            (
                Method::POST,
                format!("/v1/orgs/{org}/projects/{id}/runs"),
                Some(&run),
            ),
            (Method::GET, format!("/v1/orgs/{org}/runs/{id}"), None),
            (
                Method::POST,
                format!("/v1/orgs/{org}/runs/{id}/cancel"),
                None,
            ),
            // secrets
            (
                Method::GET,
                format!("/v1/orgs/{org}/projects/{id}/secrets"),
                None,
            ),
            (
                Method::PUT,
                format!("/v1/orgs/{org}/projects/{id}/secrets/API_KEY"),
                Some(&secret),
            ),
            (
                Method::GET,
                format!("/v1/orgs/{org}/projects/{id}/secrets/API_KEY"),
                None,
            ),
            (
                Method::DELETE,
                format!("/v1/orgs/{org}/projects/{id}/secrets/API_KEY"),
                None,
            ),
            // media, through the org
            (
                Method::POST,
                format!("/v1/orgs/{org}/runs/{id}/media-token"),
                None,
            ),
            (
                Method::GET,
                format!("/v1/orgs/{org}/runs/{id}/artifacts"),
                None,
            ),
        ];
        for (method, path, body) in routes {
            let answer = app.call(method.clone(), &path, &owner.token, body).await;
            assert_eq!(
                answer,
                (StatusCode::NOT_FOUND, not_found.clone()),
                "{method} {path}"
            );
        }
    }
    // The well-formed project still works: nothing above touched it.
    let (status, _) = app
        .call(
            Method::GET,
            &format!("/v1/orgs/{org}/projects/{project}"),
            &owner.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn media_and_runner_routes_answer_a_malformed_run_id_as_a_missing_one(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let events = json!({"events": [{"kind": "log", "stream": "stdout", "message": "hi"}]});
    let complete = json!({"outcome": "succeeded", "exit_code": 0, "actual_secs": 1});
    let artifact = json!({"name": "shot.png", "content_type": "image/png", "size": 1});
    for id in MALFORMED {
        // Media URLs carry their token in the query; the path is read first.
        for path in [
            format!("/v1/media/runs/{id}/events?token=x"),
            format!("/v1/media/runs/{id}/artifacts/shot.png?token=x"),
        ] {
            let response = app.client.get(app.served.url(&path)).send().await.unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            assert_eq!(
                (status, body["code"].as_str()),
                (StatusCode::NOT_FOUND, Some("not_found")),
                "{path}"
            );
        }
        // The runner API, behind X-Internal-Auth.
        let response = app
            .client
            .get(
                app.served
                    .url(&format!("/internal/runner/runs/{id}/secrets")),
            )
            .header("x-internal-auth", INTERNAL_SECRET)
            .bearer_auth("rnt_x")
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found")),
            "GET .../{id}/secrets"
        );
        for (rest, body) in [
            ("events", &events),
            ("complete", &complete),
            ("artifacts", &artifact),
        ] {
            let path = format!("/internal/runner/runs/{id}/{rest}");
            let (status, problem) = app.runner_call(&path, Some("rnt_x"), body).await;
            assert_eq!(
                (status, problem["code"].as_str()),
                (StatusCode::NOT_FOUND, Some("not_found")),
                "POST {path}"
            );
        }
    }
}
