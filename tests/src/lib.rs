//! Harness for the workspace end-to-end tests (`tests/e2e`) and the bench program
//! (`tests/bench`, crate `runwarden-bench`): the real binaries from `target/<profile>/`
//! started as child processes with a clean environment, a fresh migrated database per test,
//! free ports, and cleanup on drop (children are killed, databases dropped best-effort).
//!
//! Build the binaries first: `cargo build --workspace --bins`.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use url::Url;

/// A password auth accepts (long enough, not common).
pub const PASSWORD: &str = "correct horse battery staple";
/// The superuser URL used when `DATABASE_URL` is unset.
pub const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// auth's runtime database role (created by the migrations).
pub const AUTH_ROLE: &str = "runwarden_auth";
/// Where the local PostgreSQL server puts its Unix socket (as the Cloud SQL Auth Proxy does
/// under `/cloudsql/...` in production).
pub const SOCKET_DIR: &str = "/var/run/postgresql";

const HEALTHY_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------
// binaries

/// `target/<profile>/`: the directory the workspace's binaries are built into, found from
/// the running executable (`target/debug/deps/e2e-<hash>` for tests,
/// `target/release/bench` for the bench program).
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running executable");
    let mut dir = exe
        .parent()
        .expect("the executable has a directory")
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

/// The path of a workspace binary next to this executable; panics with what to do when it
/// is missing.
pub fn binary(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.is_file(),
        "binary `{name}` not found at {}: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A command for a workspace binary with an empty environment, so that nothing from the
/// caller's environment (a stray `AUTH_SIGNING_KEY`, `RUST_LOG`, ...) changes the test.
pub fn command(name: &str) -> Command {
    let mut cmd = Command::new(binary(name));
    // A clean environment; Google's credential discovery, if anything tries it, stays on
    // loopback (a dead port) instead of probing the metadata server's address.
    cmd.env_clear()
        .env("GCE_METADATA_HOST", "127.0.0.1:9")
        .stdin(Stdio::null());
    cmd
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, read, released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    listener.local_addr().expect("the bound address").port()
}

/// A fresh Ed25519 signing key as PKCS#8 PEM (what `openssl genpkey -algorithm ed25519`
/// writes).
pub fn generate_signing_key_pem() -> String {
    use aws_lc_rs::signature::Ed25519KeyPair;
    let der = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
        .expect("generating an Ed25519 key");
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

/// The base64 lines of a PEM document (everything but the BEGIN/END lines).
pub fn pem_body_lines(pem: &str) -> Vec<String> {
    pem.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------
// databases

/// The superuser URL: `DATABASE_URL`, or [`DEFAULT_ADMIN_URL`].
pub fn admin_url() -> Url {
    let raw = std::env::var("DATABASE_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_owned());
    Url::parse(raw.trim()).unwrap_or_else(|e| panic!("DATABASE_URL is not a valid URL: {e}"))
}

/// `base` pointed at database `db`, and at login role `user` (without a password) when given.
pub fn database_url(base: &Url, db: &str, user: Option<&str>) -> Url {
    let mut url = base.clone();
    url.set_path(&format!("/{db}"));
    if let Some(user) = user {
        url.set_username(user)
            .expect("a URL with a host takes a user name");
        url.set_password(None)
            .expect("a URL with a host takes a password");
    }
    url
}

/// A URL that reaches `db` as `role` through the PostgreSQL Unix socket in `socket_dir`, in
/// the form Cloud Run uses with the Cloud SQL Auth Proxy.
pub fn socket_url(db: &str, role: &str, socket_dir: &str) -> String {
    format!("postgres://{role}@/{db}?host={socket_dir}")
}

fn valid_db_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Runs `migrate` (which creates the database when absent) against `db` on the server of
/// `admin`.
pub fn migrate(admin: &Url, db: &str) -> anyhow::Result<()> {
    anyhow::ensure!(valid_db_name(db), "invalid database name {db:?}");
    let url = database_url(admin, db, None);
    let out = command("migrate")
        .env("DATABASE_URL", url.as_str())
        .output()
        .map_err(|e| anyhow::anyhow!("starting migrate: {e}"))?;
    anyhow::ensure!(
        out.status.success(),
        "migrate failed ({}):\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// `DROP DATABASE IF EXISTS db WITH (FORCE)` on the server of `admin` (a superuser URL).
/// Runs on its own thread and runtime, so it can be called from `Drop` inside async tests.
pub fn drop_database(admin: &Url, db: &str) -> anyhow::Result<()> {
    anyhow::ensure!(valid_db_name(db), "invalid database name {db:?}");
    let admin = admin.as_str().to_owned();
    let statement = format!("DROP DATABASE IF EXISTS \"{db}\" WITH (FORCE)");
    std::thread::spawn(move || -> anyhow::Result<()> {
        use sqlx::Connection as _;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let work = async {
                let mut conn = sqlx::PgConnection::connect(&admin).await?;
                sqlx::query(&statement).execute(&mut conn).await?;
                conn.close().await?;
                anyhow::Ok(())
            };
            tokio::time::timeout(Duration::from_secs(15), work)
                .await
                .map_err(|_| anyhow::anyhow!("timed out"))?
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the drop thread panicked"))?
}

/// A fresh database with a random name, migrated; dropped (best-effort) when this is dropped.
/// Declare it before the processes that use it, so they are stopped first.
pub struct TestDb {
    pub name: String,
    admin: Url,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let db = TestDb {
            name: format!("rw_e2e_{}", uuid::Uuid::new_v4().simple()),
            admin: admin_url(),
        };
        let (admin, name) = (db.admin.clone(), db.name.clone());
        tokio::task::spawn_blocking(move || migrate(&admin, &name))
            .await
            .expect("the migrate task")
            .unwrap_or_else(|e| panic!("creating test database {}: {e:#}", db.name));
        db
    }

    /// TCP URL to this database as `role`.
    pub fn url_as(&self, role: &str) -> String {
        database_url(&self.admin, &self.name, Some(role)).to_string()
    }

    /// Unix-socket URL to this database as `role` (Cloud SQL Auth Proxy form).
    pub fn socket_url_as(&self, role: &str, socket_dir: &str) -> String {
        socket_url(&self.name, role, socket_dir)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Err(e) = drop_database(&self.admin, &self.name) {
            eprintln!("warning: could not drop test database {}: {e:#}", self.name);
        }
    }
}

// ---------------------------------------------------------------------------------------
// processes

/// A child process whose stdout and stderr go to files in its own temporary directory.
/// Dropping it kills the child (and prints the end of its output when a test is failing).
pub struct Proc {
    name: String,
    child: Child,
    dir: PathBuf,
    status: Option<ExitStatus>,
    /// The port it was told to listen on, if any.
    pub port: Option<u16>,
}

impl Proc {
    /// Starts `cmd`, capturing its stdout and stderr.
    pub fn spawn(name: &str, mut cmd: Command) -> Proc {
        let dir = std::env::temp_dir().join(format!(
            "runwarden-e2e-{name}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).expect("creating a temporary directory");
        let stdout = File::create(dir.join("stdout")).expect("creating the stdout file");
        let stderr = File::create(dir.join("stderr")).expect("creating the stderr file");
        let child = cmd
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc {
            name: name.to_owned(),
            child,
            dir,
            status: None,
            port: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name it was started under (for messages).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!(
            "http://127.0.0.1:{}",
            self.port.expect("a process started with a port")
        )
    }

    /// Everything it wrote to stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.dir.join("stdout"))
    }

    /// Everything it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        read_lossy(&self.dir.join("stderr"))
    }

    /// Its exit status, if it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().expect("polling the child");
        }
        self.status
    }

    /// Waits up to `timeout` for it to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends SIGTERM (Cloud Run's stop signal) with `kill -TERM <pid>`.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits until `GET <base_url>/healthz` answers 200; panics with its output if it exits
    /// first or does not become healthy in time.
    pub async fn wait_healthy(&mut self) {
        if let Err(e) = self.try_wait_healthy(HEALTHY_TIMEOUT).await {
            panic!("{e:#}\n{}", self.output_tail());
        }
    }

    /// Waits up to `timeout` until `GET <base_url>/healthz` answers 200; an error if it exits
    /// first or is not healthy in time (for the bench program, which reports and cleans up
    /// instead of panicking).
    pub async fn try_wait_healthy(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let url = format!("{}/healthz", self.base_url());
        let client = client();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_status() {
                anyhow::bail!("{} exited ({status}) before it was healthy", self.name);
            }
            if let Ok(r) = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                && r.status() == StatusCode::OK
            {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} was not healthy at {url} after {timeout:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of its stdout and stderr, for failure messages.
    pub fn output_tail(&self) -> String {
        fn tail(s: &str) -> String {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        }
        format!(
            "--- {name} stdout (tail) ---\n{}\n--- {name} stderr (tail) ---\n{}\n---",
            tail(&self.stdout()),
            tail(&self.stderr()),
            name = self.name
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.output_tail());
        }
        if self.try_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The environment auth gets by default in these tests (development mode, JSON logs at
/// info, called directly so no trusted proxy hops). `extra` adds to or overrides it.
pub fn auth_command(database_url: &str, port: u16, extra: &[(&str, &str)]) -> Command {
    let mut cmd = command("auth");
    cmd.env("RUNWARDEN_ENV", "development")
        .env("PORT", port.to_string())
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "info")
        .env("TRUSTED_PROXY_HOPS", "0")
        .env("PUBSUB_PROJECT", "runwarden-e2e")
        // Mail goes to the local sink (scripts/test starts it and exports SMTP_URL), where
        // `Api::signup` reads the verification link.
        .env(
            "SMTP_URL",
            std::env::var("SMTP_URL").unwrap_or_else(|_| "smtp://127.0.0.1:2525".into()),
        );
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

/// Starts auth on a free port and waits until it is healthy.
pub async fn start_auth(database_url: &str, extra: &[(&str, &str)]) -> Proc {
    let port = free_port();
    let mut auth = Proc::spawn("auth", auth_command(database_url, port, extra));
    auth.port = Some(port);
    auth.wait_healthy().await;
    auth
}

/// Starts the front door on a free port in front of `upstreams` (`("AUTH_URL", url)`, ...)
/// and waits until it is healthy.
pub async fn start_frontdoor(upstreams: &[(&str, &str)]) -> Proc {
    let port = free_port();
    let mut cmd = command("frontdoor");
    cmd.env("FRONTDOOR_ADDR", format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "info");
    for (k, v) in upstreams {
        cmd.env(k, v);
    }
    let mut door = Proc::spawn("frontdoor", cmd);
    door.port = Some(port);
    door.wait_healthy().await;
    door
}

// ---------------------------------------------------------------------------------------
// HTTP

/// A client that never uses a proxy (all traffic here goes to 127.0.0.1) and never hangs.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("building the HTTP client")
}

/// A response: status, headers, the body as text and as JSON (`Null` when not JSON).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn request_id(&self) -> Option<&str> {
        self.header("x-request-id")
    }

    /// `json[field]` as a string; panics with the body when absent.
    pub fn str(&self, field: &str) -> String {
        self.json[field]
            .as_str()
            .unwrap_or_else(|| {
                panic!(
                    "response has no string {field:?}: {} {}",
                    self.status, self.text
                )
            })
            .to_owned()
    }
}

/// Tokens as signup, login and refresh return them.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

impl Tokens {
    pub fn from_reply(reply: &Reply) -> Tokens {
        Tokens {
            access: reply.str("access_token"),
            refresh: reply.str("refresh_token"),
        }
    }
}

/// A small API client for one base URL (auth, or the front door).
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

impl Api {
    pub fn new(base: impl Into<String>) -> Api {
        Api {
            base: base.into(),
            client: client(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut request = self.client.request(method.clone(), self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status();
        let headers = response.headers().clone();
        let text = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: reading the body: {e}"));
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            text,
            json,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(reqwest::Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        self.send(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    /// Signs up as a person does: the sign-up (202), the link the local mail sink received,
    /// the verification. Answers the verification's reply (200 with the login tokens and the
    /// new `org_id`), or the sign-up's when it was refused.
    pub async fn signup(&self, email: &str, password: &str) -> Reply {
        let reply = self
            .post(
                "/v1/auth/signup",
                None,
                &json!({"email": email, "password": password}),
            )
            .await;
        if reply.status != 202 {
            return reply;
        }
        let dir = runwarden_testkit::mail::dir();
        let token = runwarden_testkit::mail::wait_for_token(&dir, email, "token=").await;
        self.post("/v1/auth/verify-email", None, &json!({"token": token}))
            .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Reply {
        self.post(
            "/v1/auth/login",
            None,
            &json!({"email": email, "password": password}),
        )
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Reply {
        self.post(
            "/v1/auth/refresh",
            None,
            &json!({"refresh_token": refresh_token}),
        )
        .await
    }
}

/// A unique address for a new account.
pub fn unique_email(prefix: &str) -> String {
    format!("{prefix}-{}@example.com", uuid::Uuid::new_v4().simple())
}
