//! `bench run`: load benchmark of a running `auth` (started by `scripts/bench`): the bare
//! Argon2id hash rate, login/s, refresh/s, `GET /v1/me` latency and auth's RSS, printed as a
//! Markdown table.
//!
//! Environment: `BENCH_AUTH_URL` (`http://127.0.0.1:PORT`), optionally `BENCH_AUTH_PID`
//! (for the RSS columns).

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use runwarden_auth::password::{ITERATIONS, MEMORY_KIB, PARALLELISM};
use runwarden_e2e::{PASSWORD, Tokens};
use serde_json::{Value, json};
use url::Url;

use crate::measure::{cores, ms, percentile, runtime, scaled};

const HASH_SECS: f64 = 5.0;
const LOGIN_SECS: f64 = 10.0;
const REFRESH_SECS: f64 = 10.0;
const ME_SECS: f64 = 10.0;
const REFRESH_CLIENTS: usize = 16;
const ME_CLIENTS: [usize; 2] = [16, 64];
/// Target from the design: a login storm should run at ≥ 90 % of the bare hash rate.
const LOGIN_TARGET_RATIO: f64 = 0.90;
/// Target: p99 of an authenticated read under 5 ms at 16 clients.
const ME_P99_TARGET: Duration = Duration::from_millis(5);

pub fn run() -> anyhow::Result<()> {
    let base = std::env::var("BENCH_AUTH_URL").context("BENCH_AUTH_URL is required")?;
    let parsed = Url::parse(&base).context("BENCH_AUTH_URL")?;
    ensure!(
        matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")),
        "BENCH_AUTH_URL must point at this machine (127.0.0.1), got {base}"
    );
    let pid: Option<u32> = match std::env::var("BENCH_AUTH_PID") {
        Ok(p) => Some(p.trim().parse().context("BENCH_AUTH_PID")?),
        Err(_) => None,
    };
    let cores = cores();
    let runtime = runtime()?;

    runtime.block_on(wait_healthy(&base))?;
    let idle_rss = pid.map(|p| proc_status_kib(p, "VmRSS")).transpose()?;
    eprintln!("==> auth is up (pid {pid:?}, idle RSS {idle_rss:?} KiB)");

    eprintln!(
        "==> bare Argon2id hash rate on {cores} threads for {:?}",
        scaled(HASH_SECS)
    );
    let hash_rate = argon2_rate(cores, scaled(HASH_SECS));

    let login_clients = 2 * cores;
    let users = login_clients.max(REFRESH_CLIENTS);
    eprintln!("==> creating {users} users");
    let accounts = runtime.block_on(create_users(&base, users, 2 * cores))?;

    let logins = accounts
        .iter()
        .take(login_clients)
        .map(|(email, _)| LoopKind::Login {
            email: email.clone(),
        })
        .collect();
    let login = runtime.block_on(load("login", &base, pid, logins, scaled(LOGIN_SECS)))?;

    let chains = accounts
        .iter()
        .take(REFRESH_CLIENTS)
        .map(|(_, tokens)| LoopKind::Refresh {
            token: tokens.refresh.clone(),
        })
        .collect();
    let refresh = runtime.block_on(load("refresh", &base, pid, chains, scaled(REFRESH_SECS)))?;
    // Each chain's latest access token (rotation keeps the session, so it stays valid).
    let access: Vec<String> = refresh.final_access.iter().flatten().cloned().collect();
    ensure!(
        !access.is_empty(),
        "no refresh succeeded, so there is no access token to read /v1/me with"
    );

    let mut me = Vec::new();
    for clients in ME_CLIENTS {
        let reads = (0..clients)
            .map(|i| LoopKind::Me {
                token: access[i % access.len()].clone(),
            })
            .collect();
        let result = runtime.block_on(load("GET /v1/me", &base, pid, reads, scaled(ME_SECS)))?;
        me.push((clients, result));
    }
    let peak_rss = pid.map(|p| proc_status_kib(p, "VmHWM")).transpose()?;

    print_table(
        cores,
        hash_rate,
        login_clients,
        &login,
        &refresh,
        &me,
        idle_rss,
        peak_rss,
    );
    Ok(())
}

async fn wait_healthy(base: &str) -> anyhow::Result<()> {
    let client = runwarden_e2e::client();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client
            .get(format!("{base}/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            && r.status().is_success()
        {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "auth at {base} was not healthy within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// auth's current RSS in KiB, when its pid is known (None if it cannot be read).
fn rss(pid: Option<u32>) -> Option<u64> {
    pid.and_then(|p| proc_status_kib(p, "VmRSS").ok())
}

/// A field of /proc/<pid>/status in KiB (`VmRSS`, `VmHWM`).
fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .with_context(|| format!("{field} not in /proc/{pid}/status"))?;
    line.split_whitespace()
        .nth(1)
        .context("malformed status line")?
        .parse()
        .context("malformed status value")
}

/// Argon2id hashes per second with auth's parameters on `threads` threads for `duration`.
fn argon2_rate(threads: usize, duration: Duration) -> f64 {
    let started = Instant::now();
    let deadline = started + duration;
    let total: u64 = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
                        .expect("valid parameters");
                    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
                    let mut n = 0u64;
                    while Instant::now() < deadline {
                        let salt =
                            SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
                        let hash = argon2
                            .hash_password(PASSWORD.as_bytes(), &salt)
                            .expect("hashing");
                        std::hint::black_box(hash);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("hash thread"))
            .sum()
    });
    total as f64 / started.elapsed().as_secs_f64()
}

/// Seeds `n` verified users straight into auth's database (its runtime role may write
/// `users`; sign-up itself now waits for a mailed link, and is limited per client IP), all
/// with one Argon2id hash of [`PASSWORD`] at auth's parameters, then logs each in.
async fn create_users(
    base: &str,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<(String, Tokens)>> {
    let db = std::env::var("BENCH_AUTH_DB_URL").context("BENCH_AUTH_DB_URL is required")?;
    let pool = sqlx::PgPool::connect(&db)
        .await
        .context("BENCH_AUTH_DB_URL")?;
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None).expect("valid parameters");
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let hash = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(PASSWORD.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing: {e}"))?
        .to_string();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let emails: Vec<String> = (0..n)
        .map(|i| format!("bench-{run}-{i}@example.com"))
        .collect();
    for email in &emails {
        sqlx::query(
            "INSERT INTO users (id, email, password_hash, email_verified_at) VALUES ($1, $2, $3, now())",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(email)
        .bind(&hash)
        .execute(&pool)
        .await?;
    }
    pool.close().await;
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = Vec::with_capacity(n);
    for email in emails {
        let api = runwarden_e2e::Api::new(base);
        let semaphore = semaphore.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire().await?;
            let reply = api.login(&email, PASSWORD).await;
            ensure!(
                reply.status == 200,
                "login of a seeded user failed: {} {}",
                reply.status,
                reply.text
            );
            anyhow::Ok((email, Tokens::from_reply(&reply)))
        }));
    }
    let mut out = Vec::with_capacity(n);
    for task in tasks {
        out.push(task.await??);
    }
    Ok(out)
}

#[derive(Clone)]
enum LoopKind {
    Login {
        email: String,
    },
    /// Chains: each success hands the client its next refresh token.
    Refresh {
        token: String,
    },
    Me {
        token: String,
    },
}

#[derive(Default)]
struct LoadResult {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// Refresh only: each client's latest access token.
    final_access: Vec<Option<String>>,
    /// auth's RSS in KiB right after this phase.
    rss_after: Option<u64>,
}

impl LoadResult {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }
}

struct ClientResult {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    latencies: Vec<Duration>,
    last_access: Option<String>,
}

/// One client per entry of `kinds`, each with its own connection, each sending one request
/// after another until `duration` has passed; then auth's RSS (when `pid` is known).
async fn load(
    what: &str,
    base: &str,
    pid: Option<u32>,
    kinds: Vec<LoopKind>,
    duration: Duration,
) -> anyhow::Result<LoadResult> {
    eprintln!("==> {what} at {} clients for {duration:?}", kinds.len());
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(kinds.len());
    for kind in kinds {
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(15))
            .build()?;
        let base = base.to_owned();
        tasks.push(tokio::spawn(client_loop(client, base, kind, deadline)));
    }
    let mut result = LoadResult::default();
    for task in tasks {
        let c = task.await?;
        result.ok += c.ok;
        result.errors += c.errors;
        if result.first_error.is_none() {
            result.first_error = c.first_error;
        }
        result.latencies.extend(c.latencies);
        result.final_access.push(c.last_access);
    }
    result.elapsed = started.elapsed();
    result.latencies.sort_unstable();
    result.rss_after = rss(pid);
    Ok(result)
}

async fn client_loop(
    client: reqwest::Client,
    base: String,
    mut kind: LoopKind,
    deadline: Instant,
) -> ClientResult {
    let mut out = ClientResult {
        ok: 0,
        errors: 0,
        first_error: None,
        latencies: Vec::new(),
        last_access: None,
    };
    while Instant::now() < deadline {
        let request = match &kind {
            LoopKind::Login { email } => client
                .post(format!("{base}/v1/auth/login"))
                .json(&json!({"email": email, "password": PASSWORD})),
            LoopKind::Refresh { token } => client
                .post(format!("{base}/v1/auth/refresh"))
                .json(&json!({"refresh_token": token})),
            LoopKind::Me { token } => client.get(format!("{base}/v1/me")).bearer_auth(token),
        };
        let sent = Instant::now();
        let outcome = async {
            let response = request.send().await?;
            let status = response.status();
            let body = response.bytes().await?;
            anyhow::Ok((status, body))
        }
        .await;
        let took = sent.elapsed();
        match outcome {
            Ok((status, body)) if status.is_success() => {
                out.ok += 1;
                out.latencies.push(took);
                if let LoopKind::Refresh { token } = &mut kind {
                    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    match (
                        parsed["refresh_token"].as_str(),
                        parsed["access_token"].as_str(),
                    ) {
                        (Some(next), Some(access)) => {
                            *token = next.to_owned();
                            out.last_access = Some(access.to_owned());
                        }
                        _ => {
                            out.first_error
                                .get_or_insert_with(|| "refresh answered without tokens".into());
                            out.errors += 1;
                            break; // the chain is broken
                        }
                    }
                }
            }
            Ok((status, body)) => {
                out.errors += 1;
                out.first_error
                    .get_or_insert_with(|| format!("{status} {}", String::from_utf8_lossy(&body)));
                if matches!(kind, LoopKind::Refresh { .. }) {
                    break; // a refused rotation ends the chain
                }
            }
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| format!("{e:#}"));
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    out
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(
        || "n/a (no BENCH_AUTH_PID)".into(),
        |k| format!("{:.1} MiB", k as f64 / 1024.0),
    )
}

fn errors(r: &LoadResult) -> String {
    match &r.first_error {
        None => "0".into(),
        Some(e) => {
            let e: String = e.chars().take(80).collect();
            format!("{} (first: {})", r.errors, e.replace('|', "/"))
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn print_table(
    cores: usize,
    hash_rate: f64,
    login_clients: usize,
    login: &LoadResult,
    refresh: &LoadResult,
    me: &[(usize, LoadResult)],
    idle_rss: Option<u64>,
    peak_rss: Option<u64>,
) {
    let ratio = login.rate() / hash_rate;
    let verdict = |ok: bool| if ok { "met" } else { "NOT met" };
    println!(
        "auth benchmark: {cores} cores, Argon2id m={MEMORY_KIB} KiB t={ITERATIONS} p={PARALLELISM}; \
         client and server share the machine\n"
    );
    println!(
        "| # | measurement | throughput | latency p50 / p99 | errors | auth RSS after | target |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| 1 | bare Argon2id hashing, {cores} threads, {:.0} s | {hash_rate:.1} hashes/s | {} per hash per thread | – | {} (idle) | – |",
        scaled(HASH_SECS).as_secs_f64(),
        ms(Duration::from_secs_f64(cores as f64 / hash_rate)),
        mib(idle_rss),
    );
    println!(
        "| 2 | POST /v1/auth/login, {login_clients} clients, {:.0} s | {:.1} logins/s = {:.1} % of (1) | {} / {} | {} | {} | ≥ {:.0} % of (1): {} |",
        login.elapsed.as_secs_f64(),
        login.rate(),
        ratio * 100.0,
        ms(login.percentile(0.50)),
        ms(login.percentile(0.99)),
        errors(login),
        mib(login.rss_after),
        LOGIN_TARGET_RATIO * 100.0,
        verdict(ratio >= LOGIN_TARGET_RATIO),
    );
    println!(
        "| 3 | POST /v1/auth/refresh, {REFRESH_CLIENTS} clients each rotating its own token, {:.0} s | {:.1} refreshes/s | {} / {} | {} | {} | – |",
        refresh.elapsed.as_secs_f64(),
        refresh.rate(),
        ms(refresh.percentile(0.50)),
        ms(refresh.percentile(0.99)),
        errors(refresh),
        mib(refresh.rss_after),
    );
    for (clients, r) in me {
        let target = if *clients == 16 {
            let p99 = r.percentile(0.99);
            format!(
                "p99 < {}: {}",
                ms(ME_P99_TARGET),
                verdict(p99 < ME_P99_TARGET)
            )
        } else {
            "–".into()
        };
        println!(
            "| 4 | GET /v1/me (Bearer), {clients} clients, {:.0} s | {:.1} req/s | {} / {} | {} | {} | {target} |",
            r.elapsed.as_secs_f64(),
            r.rate(),
            ms(r.percentile(0.50)),
            ms(r.percentile(0.99)),
            errors(r),
            mib(r.rss_after),
        );
    }
    println!(
        "| 5 | auth RSS idle (after start, before any load) | {} | – | – | – | – |",
        mib(idle_rss)
    );
    println!(
        "| 5 | auth peak RSS (VmHWM after all the load) | {} | – | – | – | – |",
        mib(peak_rss)
    );
}
