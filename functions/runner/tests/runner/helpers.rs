//! A small stand-in for runs' `/internal/runner/...` API (exactly the runs <-> runner
//! contract, recording what it receives) and for the Cloud Storage upload target, plus a
//! helper that runs the real `runner` binary against them.
//!
//! This stands in for runs only in the runner's own tests; the end-to-end tests start the
//! real runs.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use runwarden_platform::server::Limits;
use runwarden_testkit::Served;
use serde_json::{Value, json};
use uuid::Uuid;

pub const TICKET: &str = "rtk_ticket-0a9b8c7d6e5f";
pub const TOKEN: &str = "rnt_token-1f2e3d4c5b6a";
pub const INTERNAL: &str = "internal-secret-0123456789abcdef-0123456789";
pub const VALUE_A: &str = "value-of-a-7f3c1e55";
pub const VALUE_B: &str = "bee-secret-92d4aa01";
/// Part of every signed upload URL the fake hands out: it must never be logged either.
pub const SIGNATURE: &str = "X-Goog-Signature=5ca1ab1e0ddba11";

/// Everything the runner's own output must never contain.
pub const NEVER_PRINTED: &[&str] = &[TICKET, TOKEN, INTERNAL, VALUE_A, VALUE_B, SIGNATURE];

#[derive(Debug, Clone)]
pub struct Upload {
    pub path: String,
    pub method: Method,
    pub content_type: Option<String>,
    pub content_length: Option<String>,
    pub transfer_encoding: Option<String>,
    pub bytes: Bytes,
}

pub struct Fake {
    pub run_id: Uuid,
    pub agent: String,
    pub input: Value,
    pub cap_secs: i64,
    pub secrets: Vec<(String, String)>,
    storage_base: Mutex<String>,
    ticket_used: AtomicBool,
    /// Every runs call, as `METHOD path`, in order.
    pub calls: Mutex<Vec<String>>,
    /// Calls with a wrong or missing X-Internal-Auth or token.
    pub bad_auth: AtomicUsize,
    /// Every event received, in order, and the size of each batch.
    pub events: Mutex<Vec<Value>>,
    pub batches: Mutex<Vec<usize>>,
    pub artifacts: Mutex<Vec<Value>>,
    pub uploads: Mutex<Vec<Upload>>,
    pub complete: Mutex<Option<Value>>,
    /// Events calls answered before events are refused with 404 (negative: never).
    pub events_before_404: AtomicI64,
    /// How many exchange and events calls answer 503 first.
    pub exchange_503s: AtomicU32,
    pub events_503s: AtomicU32,
}

impl Fake {
    pub fn new(agent: &str, input: Value, cap_secs: i64) -> Self {
        Self {
            run_id: Uuid::new_v4(),
            agent: agent.into(),
            input,
            cap_secs,
            secrets: vec![("A".into(), VALUE_A.into()), ("B".into(), VALUE_B.into())],
            storage_base: Mutex::default(),
            ticket_used: AtomicBool::new(false),
            calls: Mutex::default(),
            bad_auth: AtomicUsize::new(0),
            events: Mutex::default(),
            batches: Mutex::default(),
            artifacts: Mutex::default(),
            uploads: Mutex::default(),
            complete: Mutex::default(),
            events_before_404: AtomicI64::new(-1),
            exchange_503s: AtomicU32::new(0),
            events_503s: AtomicU32::new(0),
        }
    }

    pub fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// The messages of log events, as `stream: message`.
    pub fn log_lines(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e["kind"] == "log")
            .map(|e| {
                format!(
                    "{}: {}",
                    e["stream"].as_str().unwrap(),
                    e["message"].as_str().unwrap()
                )
            })
            .collect()
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e["kind"] == "log" && e["stream"] == "stdout")
            .map(|e| e["message"].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn complete(&self) -> Option<Value> {
        self.complete.lock().unwrap().clone()
    }

    /// Everything runs and storage received, as one string (to search for leaks).
    pub fn everything_received(&self) -> String {
        let mut all = serde_json::to_string(&self.events()).unwrap();
        all.push_str(&serde_json::to_string(&*self.artifacts.lock().unwrap()).unwrap());
        all.push_str(&format!("{:?}", self.complete()));
        all
    }
}

type Shared = Arc<Fake>;

fn problem(status: StatusCode, code: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        json!({"type": "about:blank", "title": code, "status": status.as_u16(), "code": code})
            .to_string(),
    )
        .into_response()
}

/// X-Internal-Auth, and (after the exchange) the bearer token and the right run.
fn authorized(fake: &Fake, headers: &HeaderMap, run: Option<Uuid>) -> bool {
    let internal = headers.get("x-internal-auth").and_then(|v| v.to_str().ok()) == Some(INTERNAL);
    let token = match run {
        None => true,
        Some(run) => {
            run == fake.run_id
                && headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    == Some(&format!("Bearer {TOKEN}"))
        }
    };
    if !(internal && token) {
        fake.bad_auth.fetch_add(1, Ordering::SeqCst);
    }
    internal && token
}

fn record(fake: &Fake, call: String) {
    fake.calls.lock().unwrap().push(call);
}

async fn exchange(State(fake): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    record(&fake, "POST exchange".into());
    if !authorized(&fake, &headers, None) {
        return problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    if fake
        .exchange_503s
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    }
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    if body["run_id"] != fake.run_id.to_string()
        || body["ticket"] != TICKET
        || fake.ticket_used.swap(true, Ordering::SeqCst)
    {
        return problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    axum::Json(json!({
        "runner_token": TOKEN,
        "agent": fake.agent,
        "input": fake.input,
        "cap_secs": fake.cap_secs,
    }))
    .into_response()
}

async fn secrets(
    State(fake): State<Shared>,
    UrlPath(run): UrlPath<Uuid>,
    headers: HeaderMap,
) -> Response {
    record(&fake, "GET secrets".into());
    if !authorized(&fake, &headers, Some(run)) {
        return problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    let secrets: Vec<Value> = fake
        .secrets
        .iter()
        .map(|(name, value)| json!({"name": name, "kind": "secret_variable", "value": value}))
        .collect();
    axum::Json(json!({ "secrets": secrets })).into_response()
}

async fn events(
    State(fake): State<Shared>,
    UrlPath(run): UrlPath<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&fake, "POST events".into());
    if !authorized(&fake, &headers, Some(run)) {
        return problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    if fake
        .events_503s
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    }
    if fake
        .events_before_404
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n != 0).then(|| if n > 0 { n - 1 } else { n })
        })
        .is_err()
    {
        return problem(StatusCode::NOT_FOUND, "not_found");
    }
    let body: Value = serde_json::from_slice(&body).unwrap();
    let events = body["events"].as_array().unwrap();
    assert!(!events.is_empty() && events.len() <= 500);
    for event in events {
        let fields = event.as_object().unwrap();
        match event["kind"].as_str().unwrap() {
            "log" => {
                assert!(matches!(
                    event["stream"].as_str(),
                    Some("stdout" | "stderr")
                ));
                assert!(event["message"].as_str().unwrap().len() <= 4096);
                assert_eq!(fields.len(), 3, "{event}");
            }
            "status" => assert_eq!(fields.len(), 2, "{event}"),
            "progress" => {
                assert!(event["percent"].as_u64().unwrap() <= 100);
                assert_eq!(fields.len(), 3, "{event}");
            }
            other => panic!("unknown event kind {other}"),
        }
    }
    fake.batches.lock().unwrap().push(events.len());
    fake.events.lock().unwrap().extend(events.iter().cloned());
    StatusCode::NO_CONTENT.into_response()
}

async fn artifacts(
    State(fake): State<Shared>,
    UrlPath(run): UrlPath<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&fake, "POST artifacts".into());
    if !authorized(&fake, &headers, Some(run)) {
        return problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
    let name = body["name"].as_str().unwrap().to_owned();
    let content_type = body["content_type"].as_str().unwrap().to_owned();
    fake.artifacts.lock().unwrap().push(body);
    let base = fake.storage_base.lock().unwrap().clone();
    axum::Json(json!({
        "upload_url": format!("{base}/upload/{run}/{name}?X-Goog-Algorithm=GOOG4-RSA-SHA256&{SIGNATURE}"),
        "method": "PUT",
        "headers": {"content-type": content_type},
    }))
    .into_response()
}

async fn complete(
    State(fake): State<Shared>,
    UrlPath(run): UrlPath<Uuid>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&fake, "POST complete".into());
    if !authorized(&fake, &headers, Some(run)) {
        return problem(StatusCode::UNAUTHORIZED, "unauthenticated");
    }
    let body: Value = serde_json::from_slice(&body).unwrap();
    *fake.complete.lock().unwrap() = Some(body);
    axum::Json(json!({"id": run, "status": "succeeded"})).into_response()
}

async fn upload(
    State(fake): State<Shared>,
    method: Method,
    UrlPath((run, name)): UrlPath<(Uuid, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let text = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    fake.uploads.lock().unwrap().push(Upload {
        path: format!("{run}/{name}"),
        method,
        content_type: text(header::CONTENT_TYPE),
        content_length: text(header::CONTENT_LENGTH),
        transfer_encoding: text(header::TRANSFER_ENCODING),
        bytes: body,
    });
    StatusCode::OK.into_response()
}

/// The fake runs and the fake storage, served on real sockets.
pub struct Servers {
    pub fake: Shared,
    pub runs: Served,
    _storage: Served,
}

impl Servers {
    pub async fn start(fake: Fake) -> Self {
        let fake = Arc::new(fake);
        let runs_routes = Router::new()
            .route("/internal/runner/exchange", post(exchange))
            .route("/internal/runner/runs/{run}/secrets", get(secrets))
            .route("/internal/runner/runs/{run}/events", post(events))
            .route("/internal/runner/runs/{run}/artifacts", post(artifacts))
            .route("/internal/runner/runs/{run}/complete", post(complete))
            .with_state(fake.clone());
        // runs' own limits (64 KiB bodies), so an oversized events batch fails here too.
        let runs = Served::start(runs_routes, Limits::default()).await;
        let storage_routes = Router::new()
            .route("/upload/{run}/{name}", put(upload))
            .with_state(fake.clone());
        let storage = Served::start(
            storage_routes,
            Limits {
                body_bytes: 16 * 1024 * 1024,
                ..Limits::default()
            },
        )
        .await;
        *fake.storage_base.lock().unwrap() = format!("http://{}", storage.addr);
        Self {
            fake,
            runs,
            _storage: storage,
        }
    }
}

/// A scratch folder, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("runner-test-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct Options {
    pub ticket: String,
    /// `RUNNER_AGENTS`; `None` leaves the default (the demo agent beside the runner).
    pub agents: Option<Value>,
    /// `RUNNER_WORK_DIR`; `None` lets the runner make one up.
    pub work_dir: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            ticket: TICKET.into(),
            agents: None,
            work_dir: None,
        }
    }
}

impl Options {
    /// One agent, `agent`, with this argv, working in `work_dir`.
    pub fn agent(argv: &[&str], work_dir: &Path) -> Self {
        Self {
            agents: Some(json!({ "agent": argv })),
            work_dir: Some(work_dir.to_path_buf()),
            ..Self::default()
        }
    }
}

pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    /// The runner's own output never shows a credential or a secret value.
    pub fn assert_no_leaks(&self) {
        for needle in NEVER_PRINTED {
            assert!(
                !self.stdout.contains(needle) && !self.stderr.contains(needle),
                "the runner printed {needle}:\n{}\n{}",
                self.stdout,
                self.stderr
            );
        }
    }
}

/// The `runner` binary with the environment runs gives it, pointed at `servers`.
pub fn runner_command(servers: &Servers, options: &Options) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_runner"));
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("RUNWARDEN_RUN_ID", servers.fake.run_id.to_string())
        .env("RUNS_URL", servers.runs.url(""))
        .env("RUNNER_TICKET", &options.ticket)
        .env("INTERNAL_AUTH_SECRET", INTERNAL)
        // Debug, so that library logs are checked for leaks too.
        .env("RUST_LOG", "debug")
        .env("RUNWARDEN_ENV", "test")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(agents) = &options.agents {
        command.env("RUNNER_AGENTS", agents.to_string());
    }
    if let Some(dir) = &options.work_dir {
        command.env("RUNNER_WORK_DIR", dir);
    }
    command
}

/// Waits for a started runner (at most 90 s) and collects what it printed.
pub async fn finish(child: tokio::process::Child, started: Instant) -> Outcome {
    let output = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("the runner did not end within 90 s")
        .unwrap();
    let outcome = Outcome {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
    };
    if std::env::var_os("TEST_LOG").is_some() {
        eprintln!(
            "runner stdout:\n{}\nrunner stderr:\n{}",
            outcome.stdout, outcome.stderr
        );
    }
    outcome
}

/// Runs the real `runner` binary against `servers` to its end.
pub async fn run_runner(servers: &Servers, options: Options) -> Outcome {
    let started = Instant::now();
    let child = runner_command(servers, &options).spawn().unwrap();
    finish(child, started).await
}

/// Whether a process is alive (a zombie is not).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // "pid (comm) S ...": the state follows the last ')'.
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next()),
            Some(Some('Z' | 'X'))
        ),
        Err(_) => false,
    }
}

/// Waits up to `within` for the process to be gone.
pub async fn gone_within(pid: u32, within: Duration) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    !alive(pid)
}

/// Reads a pid an agent wrote to `file`, waiting for it a little.
pub async fn read_pid(file: &Path) -> u32 {
    for _ in 0..100 {
        if let Ok(text) = std::fs::read_to_string(file)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no pid in {}", file.display());
}
