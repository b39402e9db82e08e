//! Test harness: the real runs router on a real socket, backed by a fresh database per test
//! (`#[sqlx::test]`) that the app reaches as its runtime role `runwarden_runs`, so every
//! test also runs under its grants and row-level security.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::OnceLock;

use base64::Engine;
use reqwest::{Method, StatusCode};
use runwarden_events::push::PushAuth;
use runwarden_platform::internal_auth::InternalSecrets;
use runwarden_platform::request::TrustedProxyHops;
use runwarden_platform::server::Limits;
use runwarden_runs::dispatch::{Executor, LocalExecutor};
use runwarden_runs::media::{EventHub, Media, MediaKeys, StreamLimits};
use runwarden_runs::runs::Agents;
use runwarden_runs::storage::{ArtifactStore, SigningKey};
use runwarden_runs::{AppState, router};
use runwarden_tenancy::OrgId;
use runwarden_testkit::{App, Fixtures, Served};
use runwarden_vault::KeyRing;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;
use uuid::Uuid;

pub const PUSH_SECRET: &str = "test-push-secret-0123456789abcdef";
pub const INTERNAL_SECRET: &str = "test-internal-secret-0123456789abcdef";
/// The runner grace the app runs with.
pub const GRACE_SECS: i64 = 5;

pub struct TestApp {
    /// runs, served and checked against its document; the fixtures through `Deref`.
    pub app: App,
    /// quotas, served beside runs on the same database, as in production.
    pub quotas: Served,
    /// Where the stand-in runner records each start: one line "<run id> <ticket>".
    pub starts: PathBuf,
    pub executor: Executor,
    /// The app's vault key ring (one random key, `test`).
    pub vault: Arc<KeyRing>,
    /// The app's media keys (to mint tokens it would not), fan-out and artifact store.
    pub media: Media,
    _dir: TempDir,
}

impl std::ops::Deref for TestApp {
    type Target = App;

    fn deref(&self) -> &App {
        &self.app
    }
}

/// A directory removed when the test ends.
pub struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("runwarden-runs-test-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A runner stand-in for the dispatch tests: records its start (with the ticket it got) and
/// exits, as a real process started by the real local executor.
const RECORDING_RUNNER: &str =
    "#!/bin/sh\necho \"$RUNWARDEN_RUN_ID $RUNNER_TICKET\" >> \"$(dirname \"$0\")/starts\"\n";

pub async fn spawn_app(options: PgConnectOptions) -> TestApp {
    spawn_app_with(options, StreamLimits::default()).await
}

/// [`spawn_app`] with other caps on concurrent event streams.
pub async fn spawn_app_with(options: PgConnectOptions, stream_limits: StreamLimits) -> TestApp {
    let fx = Fixtures::new(options).await;
    let limits: Limits = runwarden_runs::limits();
    let vault = Arc::new(KeyRing::generate("test"));
    let secrets = InternalSecrets::parse(&SecretString::from(INTERNAL_SECRET)).unwrap();
    let push = || PushAuth::shared_secret(SecretString::from(PUSH_SECRET)).unwrap();

    let quotas_state = runwarden_quotas::AppState {
        pool: fx.pool_as(runwarden_store::roles::QUOTAS, 10).await,
        verifier: fx.signer.verifier(),
        reaper_grace: std::time::Duration::from_secs(120),
    };
    let quotas = Served::start(
        runwarden_quotas::router(
            quotas_state,
            push(),
            secrets.clone(),
            TrustedProxyHops(0),
            &limits,
        ),
        limits.clone(),
    )
    .await;

    let dir = TempDir::new();
    let runner = dir.path().join("runner");
    std::fs::write(&runner, RECORDING_RUNNER).unwrap();
    std::fs::set_permissions(&runner, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let executor = Executor::Local(LocalExecutor::new(
        runner,
        "http://127.0.0.1:9".into(),
        SecretString::from(INTERNAL_SECRET),
    ));
    let pool = fx.pool_as(runwarden_store::roles::RUNS, 20).await;
    let mut media = Media::new(
        MediaKeys::new(runwarden_tokens::TokenSigner::generate("test-media-key")),
        pool.clone(),
        artifact_store().await,
    );
    media.hub = EventHub::with_limits(pool.clone(), stream_limits);
    let state = AppState {
        pool,
        verifier: fx.signer.verifier(),
        quotas: runwarden_runs::admission::QuotasClient::new(
            &quotas.url("/").parse().unwrap(),
            SecretString::from(INTERNAL_SECRET),
        )
        .unwrap(),
        executor: executor.clone(),
        agents: Agents::parse("demo").unwrap(),
        runner_grace: chrono::Duration::seconds(GRACE_SECS),
        sweeper: None,
        vault: vault.clone(),
        media: media.clone(),
    };
    let router = router(state, push(), secrets, TrustedProxyHops(0), &limits);
    let app = App::start(fx, router, limits, runwarden_runs::routes::OPENAPI).await;
    TestApp {
        app,
        quotas,
        starts: dir.path().join("starts"),
        executor,
        vault,
        media,
        _dir: dir,
    }
}

/// The bucket the tests' artifacts go to (created on the emulator by [`gcs_emulator`]).
pub const TEST_BUCKET: &str = "runwarden-artifacts-test";

/// Signs with a service-account key generated once per test binary (an RSA key takes a
/// moment), against `STORAGE_EMULATOR_HOST` (signing itself never contacts it).
async fn artifact_store() -> ArtifactStore {
    static KEY: OnceLock<Value> = OnceLock::new();
    let key = KEY.get_or_init(|| {
        runwarden_runs::storage::throwaway_service_account_key(
            "runs-test@runwarden-local.iam.gserviceaccount.com",
        )
        .unwrap()
    });
    let endpoint = std::env::var("STORAGE_EMULATOR_HOST")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| "http://127.0.0.1".into());
    ArtifactStore::new(
        TEST_BUCKET,
        SigningKey::ServiceAccount(key.clone()),
        Some(endpoint),
    )
    .await
    .unwrap()
}

/// `STORAGE_EMULATOR_HOST` (fake-gcs-server), checked to answer, with the test bucket in
/// it. The artifact tests never skip: without the emulator they fail with what to do.
pub async fn gcs_emulator(client: &reqwest::Client) -> String {
    let host = std::env::var("STORAGE_EMULATOR_HOST")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| {
            panic!(
                "STORAGE_EMULATOR_HOST is not set: the artifact tests PUT to and GET from \
                 fake-gcs-server. Run them through scripts/test (which starts it), or start it \
                 (bash -c 'source scripts/lib/stack.sh; ensure_fake_gcs; sleep infinity') and \
                 export STORAGE_EMULATOR_HOST=http://127.0.0.1"
            )
        });
    let host = host.trim().trim_end_matches('/').to_owned();
    let created = client
        .post(format!("{host}/storage/v1/b?project=test"))
        .json(&json!({"name": TEST_BUCKET}))
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "fake-gcs-server at STORAGE_EMULATOR_HOST={host} is not reachable ({e}); start \
                 it (scripts/test does) and re-run"
            )
        })
        .status();
    assert!(
        created.is_success() || created == StatusCode::CONFLICT,
        "creating the test bucket on {host}: {created}"
    );
    host
}

/// Starts a run and takes it to `running` through dispatch and the ticket exchange: (run id,
/// runner token).
pub async fn running(
    app: &TestApp,
    org: OrgId,
    token: &str,
    project: &str,
    cap: i64,
) -> (String, String) {
    let body = json!({"agent": "demo", "input": {"sleep_seconds": 1}, "max_seconds": cap});
    let (status, _, run) = app.start_run(org, project, token, body, None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    let id = run["id"].as_str().unwrap().to_owned();
    assert_eq!(app.push_dispatch(org, &id).await, StatusCode::NO_CONTENT);
    let mut ticket = None;
    for _ in 0..50 {
        ticket = app
            .starts(0)
            .await
            .into_iter()
            .find(|(r, _)| *r == id)
            .map(|(_, t)| t);
        if ticket.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let ticket = ticket.expect("runner started");
    let (status, body) = app
        .runner_call(
            "/internal/runner/exchange",
            None,
            &json!({"run_id": id, "ticket": ticket}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (id, body["runner_token"].as_str().unwrap().to_owned())
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
        let reply = self.api.call(method, path, Some(token), body).await;
        (reply.status, reply.body)
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

impl TestApp {
    /// A project of `org`, created through the API by `token`; its id.
    pub async fn project(&self, org: OrgId, token: &str) -> String {
        let (status, body) = self.create_project(org, token, Uuid::now_v7()).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    /// `POST .../runs` with an optional `Idempotency-Key`.
    pub async fn start_run(
        &self,
        org: OrgId,
        project: &str,
        token: &str,
        body: Value,
        key: Option<&str>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let path = format!("/v1/orgs/{org}/projects/{project}/runs");
        let reply = self
            .api
            .send(Method::POST, &path, |mut request| {
                request = request.bearer_auth(token).json(&body);
                if let Some(key) = key {
                    request = request.header("idempotency-key", key);
                }
                request
            })
            .await;
        (reply.status, reply.headers, reply.body)
    }

    /// Delivers the run's dispatch as Pub/Sub would (the stack's push secret in the URL).
    pub async fn push_dispatch(&self, org: OrgId, run: &str) -> StatusCode {
        let data = base64::engine::general_purpose::STANDARD
            .encode(json!({"run_id": run, "org_id": org}).to_string());
        let envelope = json!({
            "subscription": "projects/test/subscriptions/run-dispatch-runs",
            "message": {"data": data, "messageId": Uuid::now_v7().to_string(),
                        "attributes": {"kind": "run.dispatch"}},
        });
        self.api
            .send(
                Method::POST,
                &format!("/push/run-dispatch?token={PUSH_SECRET}"),
                |r| r.json(&envelope),
            )
            .await
            .status
    }

    /// The starts the stand-in runner recorded: (run id, ticket). Waits up to 5 s for
    /// `expected` of them (the executor starts a real process).
    pub async fn starts(&self, expected: usize) -> Vec<(String, String)> {
        let mut lines = Vec::new();
        for _ in 0..50 {
            lines = std::fs::read_to_string(&self.starts)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())))
                .collect();
            if lines.len() >= expected {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        lines
    }

    /// A runner API call: `X-Internal-Auth`, and the runner token when given.
    pub async fn runner_call(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (StatusCode, Value) {
        let reply = self
            .api
            .send(Method::POST, path, |mut request| {
                request = request
                    .header("x-internal-auth", INTERNAL_SECRET)
                    .json(body);
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                request
            })
            .await;
        (reply.status, reply.body)
    }

    /// Outbox messages of `org` on `topic`, oldest first (payloads).
    pub async fn outbox(&self, org: OrgId, topic: &str) -> Vec<Value> {
        sqlx::query_scalar(
            "SELECT payload FROM outbox_events WHERE org_id = $1 AND topic = $2 ORDER BY created_at, id",
        )
        .bind(org)
        .bind(topic)
        .fetch_all(&self.fx.admin)
        .await
        .unwrap()
    }

    pub async fn run_status(&self, run: &str) -> String {
        sqlx::query_scalar("SELECT status FROM runs WHERE id = $1::uuid")
            .bind(run)
            .fetch_one(&self.fx.admin)
            .await
            .unwrap()
    }
}
