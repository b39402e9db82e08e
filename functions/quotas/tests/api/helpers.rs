//! Test harness: the real quotas router on a real socket, backed by a fresh database per test
//! (`#[sqlx::test]`) that the app reaches as its runtime role `runwarden_quotas`, so every
//! test also runs under its grants and row-level security.
//!
//! Users, orgs, memberships and sessions are inserted directly with the superuser pool, and
//! access tokens are signed by a test `TokenSigner` whose verifier the app gets.

#![allow(dead_code)]

use std::net::SocketAddr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::Utc;
use reqwest::{Method, StatusCode};
use runwarden_events::push::PushAuth;
use runwarden_platform::internal_auth::InternalSecrets;
use runwarden_platform::request::TrustedProxyHops;
use runwarden_platform::server::{Limits, serve};
use runwarden_quotas::{AppState, router};
use runwarden_tenancy::{OrgId, Role};
use runwarden_tokens::{AccessClaims, TokenSigner};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

pub const PUSH_SECRET: &str = "test-push-secret-0123456789abcdef";
pub const INTERNAL_SECRET: &str = "test-internal-secret-0123456789abcdef";

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// A superuser pool on the same database, to arrange rows behind the app's back.
    pub admin: PgPool,
    /// The app's own pool, as `runwarden_quotas`.
    pub runtime: PgPool,
    pub signer: TokenSigner,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub token: String,
}

pub async fn spawn_app(options: PgConnectOptions) -> TestApp {
    let admin = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options.clone())
        .await
        .unwrap();
    // Tests drive one org far past a plan's request rate; the limiter has its own tests.
    sqlx::query("UPDATE plans SET requests_per_minute = 1000000")
        .execute(&admin)
        .await
        .unwrap();
    let runtime = PgPoolOptions::new()
        .max_connections(20)
        .connect_with(options.username(runwarden_store::roles::QUOTAS))
        .await
        .unwrap();
    let signer = TokenSigner::generate("test-auth-key");
    let state = AppState {
        pool: runtime.clone(),
        verifier: signer.verifier(),
        reaper_grace: std::time::Duration::from_secs(120),
    };
    let limits = Limits::default();
    let secrets = InternalSecrets::parse(&SecretString::from(INTERNAL_SECRET)).unwrap();
    let push = PushAuth::shared_secret(SecretString::from(PUSH_SECRET)).unwrap();
    let app = router(state, push, secrets, TrustedProxyHops(0), &limits);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = serve(listener, app, &limits, async {
            let _ = rx.await;
        })
        .await;
    });
    TestApp {
        addr,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(256)
            .build()
            .unwrap(),
        admin,
        runtime,
        signer,
        shutdown: Some(tx),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A request with the internal secret; status and JSON body.
    pub async fn internal(&self, method: Method, path: &str, body: &Value) -> (StatusCode, Value) {
        let response = self
            .client
            .request(method, self.url(path))
            .header("x-internal-auth", INTERNAL_SECRET)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
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
        let mut request = self.client.request(Method::GET, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
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
        self.client
            .post(self.url(&format!("/push/run-finished?token={PUSH_SECRET}")))
            .json(&envelope)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// An org on `plan`, with optional overrides (as the superuser, behind the app's back).
    pub async fn org_on(&self, plan: &str) -> OrgId {
        let org = OrgId::new();
        sqlx::query("INSERT INTO orgs (id, name, plan) VALUES ($1, 'Test org', $2)")
            .bind(org)
            .bind(plan)
            .execute(&self.admin)
            .await
            .unwrap();
        org
    }

    pub async fn org(&self) -> OrgId {
        self.org_on("trial").await
    }

    /// Sets one override column directly.
    pub async fn override_limit(&self, org: OrgId, column: &str, value: i64) {
        sqlx::query(&format!(
            "INSERT INTO quota_overrides (org_id, {column}) VALUES ($1, $2)
             ON CONFLICT (org_id) DO UPDATE SET {column} = EXCLUDED.{column}"
        ))
        .bind(org)
        .bind(value)
        .execute(&self.admin)
        .await
        .unwrap();
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

    pub async fn user(&self) -> Caller {
        let user_id = Uuid::now_v7();
        let session_id = Uuid::now_v7();
        sqlx::query("INSERT INTO users (id, email) VALUES ($1, $2)")
            .bind(user_id)
            .bind(format!("u-{}@example.com", user_id.simple()))
            .execute(&self.admin)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO sessions (id, user_id, expires_at) VALUES ($1, $2, now() + interval '1 day')",
        )
        .bind(session_id)
        .bind(user_id)
        .execute(&self.admin)
        .await
        .unwrap();
        let claims = AccessClaims::new(user_id, session_id, Utc::now().timestamp());
        Caller {
            user_id,
            session_id,
            token: self.signer.sign(&claims).unwrap(),
        }
    }

    pub async fn member(&self, org: OrgId, role: Role) -> Caller {
        let caller = self.user().await;
        sqlx::query("INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3)")
            .bind(org)
            .bind(caller.user_id)
            .bind(role.as_str())
            .execute(&self.admin)
            .await
            .unwrap();
        caller
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
