//! Test harness: the real audit router on a real socket, backed by a fresh database per test
//! (`#[sqlx::test]`) that the app reaches as its runtime role `runwarden_audit`, so every
//! test also runs under its grants and row-level security.
//!
//! audit never depends on auth's crate: users, orgs, memberships and sessions are inserted
//! directly with the superuser pool, and access tokens are signed by a test `TokenSigner`
//! whose verifier the app gets (as it would get auth's JWKS).

use std::net::SocketAddr;

use chrono::Utc;
use reqwest::{Method, StatusCode};
use runwarden_audit::{AppState, router};
use runwarden_events::push::PushAuth;
use runwarden_events::{Actor, AuditEvent, Target};
use runwarden_platform::request::TrustedProxyHops;
use runwarden_platform::server::{Limits, serve};
use runwarden_tenancy::{OrgId, Role};
use runwarden_tokens::{AccessClaims, TokenSigner};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

pub const PUSH_SECRET: &str = "test-push-secret-0123456789abcdef";
pub const PUSH_PATH: &str = "/push/audit-events";

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    /// A superuser pool on the same database, to arrange rows and tamper behind the app's back.
    pub admin: PgPool,
    /// The app's own pool, as `runwarden_audit`.
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

/// A signed-in user: their ids and a valid access token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub token: String,
}

pub fn secret_auth() -> PushAuth {
    PushAuth::shared_secret(SecretString::from(PUSH_SECRET)).unwrap()
}

pub async fn spawn_app(options: PgConnectOptions) -> TestApp {
    spawn_app_with(options, secret_auth()).await
}

pub async fn spawn_app_with(options: PgConnectOptions, push_auth: PushAuth) -> TestApp {
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
        .connect_with(options.username(runwarden_store::roles::AUDIT))
        .await
        .unwrap();
    let signer = TokenSigner::generate("test-auth-key");
    let state = AppState {
        pool: runtime.clone(),
        verifier: signer.verifier(),
    };
    let limits = Limits::default();
    let app = router(state, push_auth, TrustedProxyHops(0), &limits);
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
            .pool_max_idle_per_host(64)
            .build()
            .unwrap(),
        admin,
        runtime,
        signer,
        shutdown: Some(tx),
    }
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
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

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
        let mut request = self.client.post(url).json(body);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.text().await.unwrap())
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
        let mut request = self.client.request(Method::GET, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        (status, headers, response.text().await.unwrap())
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

    /// A user with a live session and an access token for it.
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

    pub async fn org(&self) -> OrgId {
        let org = OrgId::new();
        sqlx::query("INSERT INTO orgs (id, name) VALUES ($1, 'Test org')")
            .bind(org)
            .execute(&self.admin)
            .await
            .unwrap();
        org
    }

    pub async fn add_member(&self, org: OrgId, caller: &Caller, role: Role) {
        sqlx::query("INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3)")
            .bind(org)
            .bind(caller.user_id)
            .bind(role.as_str())
            .execute(&self.admin)
            .await
            .unwrap();
    }

    pub async fn member(&self, org: OrgId, role: Role) -> Caller {
        let caller = self.user().await;
        self.add_member(org, &caller, role).await;
        caller
    }
}

/// An org with one member of each role.
pub struct Team {
    pub org: OrgId,
    pub owner: Caller,
    pub admin: Caller,
    pub member: Caller,
    pub viewer: Caller,
}

impl Team {
    pub async fn new(app: &TestApp) -> Team {
        let org = app.org().await;
        Team {
            org,
            owner: app.member(org, Role::Owner).await,
            admin: app.member(org, Role::Admin).await,
            member: app.member(org, Role::Member).await,
            viewer: app.member(org, Role::Viewer).await,
        }
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
