//! Test harness: the real quotas router on a real socket (`runwarden_testkit`), backed by a
//! fresh database per test (`#[sqlx::test]`) that the app reaches as its runtime role
//! `runwarden_quotas`, so every test also runs under its grants and row-level security.
//! Users, orgs and memberships come from the test kit's fixtures (`app.user()`,
//! `app.member(..)`, `app.org()`, through `Deref`); what is quotas' own is here.

#![allow(dead_code)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use reqwest::{Method, StatusCode};
use runwarden_events::push::PushAuth;
use runwarden_platform::internal_auth::InternalSecrets;
use runwarden_platform::request::TrustedProxyHops;
use runwarden_platform::server::Limits;
use runwarden_quotas::{AppState, router};
use runwarden_tenancy::OrgId;
use runwarden_testkit::{App, Fixtures};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use uuid::Uuid;

pub const PUSH_SECRET: &str = "test-push-secret-0123456789abcdef";
pub const INTERNAL_SECRET: &str = "test-internal-secret-0123456789abcdef";

pub struct TestApp {
    pub app: App,
    /// The app's own pool, as `runwarden_quotas`.
    pub runtime: PgPool,
}

impl std::ops::Deref for TestApp {
    type Target = App;

    fn deref(&self) -> &App {
        &self.app
    }
}

pub async fn spawn_app(options: PgConnectOptions) -> TestApp {
    let fx = Fixtures::new(options).await;
    let runtime = fx.pool_as(runwarden_store::roles::QUOTAS, 20).await;
    let state = AppState {
        pool: runtime.clone(),
        verifier: fx.signer.verifier(),
        reaper_grace: std::time::Duration::from_secs(120),
    };
    let limits = Limits::default();
    let secrets = InternalSecrets::parse(&SecretString::from(INTERNAL_SECRET)).unwrap();
    let push = PushAuth::shared_secret(SecretString::from(PUSH_SECRET)).unwrap();
    let app = router(state, push, secrets, TrustedProxyHops(0), &limits);
    let app = App::start(fx, app, limits, runwarden_quotas::routes::OPENAPI).await;
    TestApp { app, runtime }
}

impl TestApp {
    /// A request with the internal secret; status and JSON body.
    pub async fn internal(&self, method: Method, path: &str, body: &Value) -> (StatusCode, Value) {
        let reply = self
            .api
            .send(method, path, |r| {
                r.header("x-internal-auth", INTERNAL_SECRET).json(body)
            })
            .await;
        (reply.status, reply.body)
    }

    pub async fn admit(&self, org: OrgId, run: Uuid, cap: i64) -> (StatusCode, Value) {
        self.internal(
            Method::POST,
            "/internal/admissions",
            &json!({"org_id": org, "run_id": run, "requested_cap_secs": cap}),
        )
        .await
    }

    pub async fn settle(&self, run: Uuid, secs: i64) -> (StatusCode, Value) {
        self.internal(
            Method::POST,
            "/internal/settlements",
            &json!({"run_id": run, "actual_secs": secs}),
        )
        .await
    }

    /// `n` admissions of distinct runs at once; (run, status, body) each.
    pub async fn admit_concurrently(
        &self,
        org: OrgId,
        n: usize,
        cap: i64,
    ) -> Vec<(Uuid, StatusCode, Value)> {
        let runs: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
        let results =
            futures::future::join_all(runs.iter().map(|run| self.admit(org, *run, cap))).await;
        runs.into_iter()
            .zip(results)
            .map(|(run, (status, body))| (run, status, body))
            .collect()
    }

    pub async fn get_raw(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let reply = self.api.call(Method::GET, path, token, None).await;
        (reply.status, reply.headers, reply.text)
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let reply = self.api.call(Method::GET, path, token, None).await;
        (reply.status, reply.body)
    }

    pub async fn usage(&self, org: OrgId, token: &str) -> Value {
        let (status, body) = self
            .get(&format!("/v1/orgs/{org}/usage"), Some(token))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Pushes a run-finished event with the local secret.
    pub async fn push_finished(&self, run: Uuid, secs: i64) -> StatusCode {
        let data = serde_json::to_vec(
            &json!({"run_id": run, "org_id": Uuid::nil(), "status": "succeeded",
                                     "actual_secs": secs, "outcome": "passed"}),
        )
        .unwrap();
        let id = Uuid::new_v4().simple().to_string();
        let envelope = json!({
            "subscription": "projects/runwarden-local/subscriptions/run-finished-quotas",
            "message": {"data": STANDARD.encode(data), "messageId": id, "message_id": id},
        });
        self.api
            .send(
                Method::POST,
                &format!("/push/run-finished?token={PUSH_SECRET}"),
                |r| r.json(&envelope),
            )
            .await
            .status
    }

    /// (reserved, settled/timed out, refused) admissions of `org`, and reserved cents.
    pub async fn tally(&self, org: OrgId) -> (i64, i64, i64, i64) {
        sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'reserved'),
                    count(*) FILTER (WHERE status IN ('settled', 'timed_out')),
                    count(*) FILTER (WHERE status = 'refused'),
                    coalesce(sum(reserved_cents) FILTER (WHERE status <> 'refused'), 0)::bigint
             FROM quota_admissions WHERE org_id = $1",
        )
        .bind(org)
        .fetch_one(&self.admin)
        .await
        .unwrap()
    }
}

/// Statuses and problem codes of a batch, counted.
pub fn counts(results: &[(Uuid, StatusCode, Value)]) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for (_, status, body) in results {
        let key = if *status == StatusCode::OK {
            "admitted".to_owned()
        } else {
            format!(
                "{}:{}",
                status.as_u16(),
                body["code"].as_str().unwrap_or("?")
            )
        };
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

pub fn admitted(results: &[(Uuid, StatusCode, Value)]) -> Vec<Uuid> {
    results
        .iter()
        .filter(|(_, s, _)| *s == StatusCode::OK)
        .map(|(run, _, _)| *run)
        .collect()
}
