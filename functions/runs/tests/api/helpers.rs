//! Test harness: the real runs router on a real socket, backed by a fresh database per test
//! (`#[sqlx::test]`) that the app reaches as its runtime role `runwarden_runs`, so every
//! test also runs under its grants and row-level security.

#![allow(dead_code)]

use reqwest::{Method, StatusCode};
use runwarden_platform::request::TrustedProxyHops;
use runwarden_platform::server::Limits;
use runwarden_runs::{AppState, router};
use runwarden_tenancy::OrgId;
use runwarden_testkit::{Fixtures, Served};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;

pub struct TestApp {
    pub served: Served,
    pub client: reqwest::Client,
    pub fx: Fixtures,
}

pub async fn spawn_app(options: PgConnectOptions) -> TestApp {
    let fx = Fixtures::new(options).await;
    let state = AppState {
        pool: fx.pool_as(runwarden_store::roles::RUNS, 20).await,
        verifier: fx.signer.verifier(),
    };
    let limits = Limits::default();
    let served = Served::start(router(state, TrustedProxyHops(0), &limits), limits).await;
    TestApp {
        served,
        client: runwarden_testkit::client(),
        fx,
    }
}

impl TestApp {
    /// `method path` with a bearer token and an optional JSON body: (status, JSON or Null).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, self.served.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn create_project(
        &self,
        org: OrgId,
        token: &str,
        name: impl ToString,
    ) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            &format!("/v1/orgs/{org}/projects"),
            token,
            Some(&serde_json::json!({ "name": name.to_string() })),
        )
        .await
    }

    pub async fn patch_project(
        &self,
        org: OrgId,
        project: &str,
        token: &str,
        body: Value,
    ) -> (StatusCode, Value) {
        self.call(
            Method::PATCH,
            &format!("/v1/orgs/{org}/projects/{project}"),
            token,
            Some(&body),
        )
        .await
    }

    /// Active (not archived) projects of `org`, counted by the superuser.
    pub async fn active_projects(&self, org: OrgId) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM projects WHERE org_id = $1 AND archived_at IS NULL",
        )
        .bind(org)
        .fetch_one(&self.fx.admin)
        .await
        .unwrap()
    }
}
