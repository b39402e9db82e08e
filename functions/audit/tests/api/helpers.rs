//! Test harness: the real audit router on a real socket, backed by a fresh database per test
//! (`#[sqlx::test]`) that the app reaches as its runtime role `runwarden_audit`, so every
//! test also runs under its grants and row-level security.
//!
//! audit never depends on auth's crate: users, orgs, memberships and sessions are inserted
//! directly with the superuser pool, and access tokens are signed by a test `TokenSigner`
//! whose verifier the app gets (as it would get auth's JWKS).

use reqwest::{Method, StatusCode};
use runwarden_audit::{AppState, router};
use runwarden_events::push::PushAuth;
use runwarden_events::{Actor, AuditEvent, Target};
use runwarden_platform::request::TrustedProxyHops;
use runwarden_platform::server::Limits;
use runwarden_tenancy::OrgId;
use runwarden_testkit::{App, Fixtures};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use uuid::Uuid;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

pub const PUSH_SECRET: &str = "test-push-secret-0123456789abcdef";
pub const PUSH_PATH: &str = "/push/audit-events";

pub struct TestApp {
    pub app: App,
    /// The app's own pool, as `runwarden_audit`.
    pub runtime: PgPool,
}

impl std::ops::Deref for TestApp {
    type Target = App;

    fn deref(&self) -> &App {
        &self.app
    }
}

pub fn secret_auth() -> PushAuth {
    PushAuth::shared_secret(SecretString::from(PUSH_SECRET)).unwrap()
}

pub async fn spawn_app(options: PgConnectOptions) -> TestApp {
    spawn_app_with(options, secret_auth()).await
}

pub async fn spawn_app_with(options: PgConnectOptions, push_auth: PushAuth) -> TestApp {
    let fx = Fixtures::new(options).await;
    let runtime = fx.pool_as(runwarden_store::roles::AUDIT, 20).await;
    let state = AppState {
        pool: runtime.clone(),
        verifier: fx.signer.verifier(),
    };
    let limits = Limits::default();
    let router = router(state, push_auth, TrustedProxyHops(0), &limits);
    let app = App::start(fx, router, limits, runwarden_audit::routes::OPENAPI).await;
    TestApp { app, runtime }
}

/// An audit event as auth would write it, in `org`.
pub fn event(org: OrgId, action: &str) -> AuditEvent {
    AuditEvent::new(
        org,
        Actor::user(Uuid::now_v7()),
        action,
        Target::new("user", Uuid::now_v7()),
    )
    .with_request(
        Some(format!("req-{}", Uuid::new_v4().simple())),
        Some("203.0.113.7".parse().unwrap()),
        Some("Mozilla/5.0 (test)".into()),
    )
    .with_details(json!({"from": "member", "to": "admin"}))
}

/// Pub/Sub's wrapped envelope around `data`, shaped like the emulator's (both spellings).
pub fn envelope(data: &[u8], message_id: &str) -> Value {
    json!({
        "subscription": "projects/runwarden-local/subscriptions/audit-events-push",
        "message": {
            "data": STANDARD.encode(data),
            "attributes": {"kind": "member.role_change"},
            "messageId": message_id,
            "message_id": message_id,
            "publishTime": "2026-11-25T06:15:20.058Z",
            "publish_time": "2026-11-25T06:15:20.058Z",
        }
    })
}

pub fn event_envelope(event: &AuditEvent) -> Value {
    envelope(
        &serde_json::to_vec(event).unwrap(),
        &Uuid::new_v4().simple().to_string(),
    )
}

impl TestApp {
    pub fn push_url(&self) -> String {
        self.url(&format!("{PUSH_PATH}?token={PUSH_SECRET}"))
    }

    /// POSTs a JSON body to `url` with optional bearer token; status and body text.
    pub async fn post_json(
        &self,
        url: &str,
        bearer: Option<&str>,
        body: &Value,
    ) -> (StatusCode, String) {
        let path = url
            .strip_prefix(&self.served.url(""))
            .expect("a URL of this app");
        let reply = self.api.call(Method::POST, path, bearer, Some(body)).await;
        (reply.status, reply.text)
    }

    /// Pushes one event with the local secret.
    pub async fn push(&self, event: &AuditEvent) -> StatusCode {
        self.post_json(&self.push_url(), None, &event_envelope(event))
            .await
            .0
    }

    pub async fn get_raw(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let reply = self.api.call(Method::GET, path, token, None).await;
        (reply.status, reply.headers, reply.text)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let (status, _, body) = self.get_raw(path, Some(token)).await;
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    pub async fn verify(&self, org: OrgId, token: &str) -> Value {
        let (status, body) = self
            .get(&format!("/v1/orgs/{org}/audit-events/verify"), token)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn export(&self, org: OrgId, token: &str) -> String {
        let (status, _, body) = self
            .get_raw(&format!("/v1/orgs/{org}/audit-events/export"), Some(token))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM audit_log")
            .fetch_one(&self.admin)
            .await
            .unwrap()
    }

    /// (seq, event_id) of an org's records, by seq.
    pub async fn seqs(&self, org: OrgId) -> Vec<(i64, Uuid)> {
        sqlx::query_as("SELECT seq, event_id FROM audit_log WHERE org_id = $1 ORDER BY seq")
            .bind(org)
            .fetch_all(&self.admin)
            .await
            .unwrap()
    }
}

/// Runs the built `audit-verify` binary on `export` (through a file), returning its exit
/// code and its JSON verdict.
pub fn offline_verify(export: &str, extra_args: &[&str]) -> (i32, Value) {
    let dir = std::env::temp_dir().join(format!("audit-verify-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("export.ndjson");
    std::fs::write(&file, export).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_audit-verify"))
        .args(extra_args)
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&output.stdout);
    (
        output.status.code().unwrap_or(-1),
        serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
            panic!(
                "audit-verify printed {stdout:?}, stderr {:?}",
                String::from_utf8_lossy(&output.stderr)
            )
        }),
    )
}
