//! Runs benchmark (`bench runs`, driven by `scripts/bench`) against one fresh migrated
//! database, a release `runs` and the release `quotas` it admits through, in three parts:
//!
//! 1. run creations: `CLIENTS` concurrent clients `POST /v1/orgs/{org}/projects/{project}/runs`
//!    round robin over `ORGS` orgs for `CREATE_SECS`, each answered 202 with the run `queued`.
//!    Target: ≥ 500 creations/s. What one creation is here: runs' per-org rate limiter (two
//!    round trips, one a commit), the caller's session and membership (`auth_enter`), the
//!    run's insert (a commit), quotas' admission over HTTP (quotas' own transaction, which
//!    locks the org's usage row), then the run `queued` with its `run-dispatch` and audit
//!    rows in the outbox and its first event (a commit). Not included: the dispatch itself.
//!    runs' outbox relay is running and publishes those rows to Google's Pub/Sub emulator
//!    during the phase (topics exist, so publishing succeeds, as in production), but no
//!    subscription exists yet, so the emulator drops them and no runner starts: the runs of
//!    this part stay `queued` (their cap, `CAP_SECS`, outlives the benchmark, so the reaper
//!    leaves them alone). Every org is on `enterprise` with overrides above the load (runs per
//!    month, parallel runs, budget, requests per minute), so nothing is refused; a refusal
//!    would be counted apart from errors. Afterwards the rows are counted (every 202 must be
//!    one `queued` run, none left `admitting`) and the outbox must drain before part 2, so
//!    the relay's backlog does not run into it.
//! 2. SSE fan-out: one `running` run (inserted directly, with a runner token whose hash is in
//!    `runner_credentials`, as the ticket exchange leaves it), `WATCHERS` clients on
//!    `GET /v1/media/runs/{run}/events?token=` (one media token of the org's member, from
//!    `POST .../media-token`), each on its own connection; once all are connected and have
//!    received an untimed first event (each has caught up and waits on the run's broadcast),
//!    events appended as a runner does (`POST /internal/runner/runs/{run}/events`,
//!    `X-Internal-Auth` and the runner token), `APPENDS_PER_SEC` appends of
//!    `EVENTS_PER_APPEND` log events each, open loop, for `FANOUT_SECS`. Each event's message
//!    carries the moment its append was sent; each watcher notes when the chunk holding it
//!    arrived. The delay of every (event, watcher)
//!    pair is the receipt minus the send: the append's commit, the NOTIFY, the run's feed
//!    reading it once, the broadcast and the 500 writes, and this client's reading (the
//!    watchers and the appender share this process and its two runtime workers with the
//!    machine). Target: p99 < 50 ms. Every watcher must get every event, once.
//! 3. time from `POST .../runs` to the runner's first event, locally: with the push
//!    subscriptions set up by the real `pubsub-setup` (so the emulator pushes `run-dispatch`
//!    to runs, which starts the release `runner` with the demo agent as a child process, and
//!    `run-finished` to quotas), `FIRST_EVENT_RUNS` demo runs one after another; each is
//!    watched over SSE right after its 202, and the times are taken from the POST's send to
//!    the arrival of: the 202; runs' `running` status (the runner exchanged its ticket: relay,
//!    emulator push, process start); the runner's own first event (`started`, after it fetched
//!    the run's secrets, before the agent starts); the stream's end (the run ended: the demo
//!    agent sleeps `DEMO_SLEEP_SECS`, renders its artifacts with ffmpeg, the runner uploads
//!    them to fake-gcs-server and reports). The next run starts after the previous one ended.
//!    An event already written when the watcher connected counts as arriving at the connect
//!    (the watcher connects within a few ms of the 202, long before a runner can start).
//!    The time to `started` is then split by PostgreSQL's own timestamps (see [`Stages`]).
//!
//! Where the time goes: parts 1 and 2 also report the CPU time runs, quotas, the PostgreSQL
//! backends of the benchmark's database and this program used (from `/proc`), per run created
//! or per event appended, and how busy the whole machine was meanwhile (other work on it
//! included); part 1 also the transactions the database ended per run created
//! (`pg_stat_database`, the relay's included).
//!
//! runs and quotas run as release binaries on free ports (development mode, per-run internal
//! and push secrets, a per-run emulator project; they fetch `AUTH_JWKS_URL` at start, served
//! here with the key that signs the benchmark's access tokens) and are stopped at the end,
//! after which the emulator project's subscriptions and topics are deleted. Orgs, users,
//! sessions, memberships, overrides and projects are inserted directly as the superuser.
//!
//! Environment: `BENCH_DB_ADMIN_URL` (superuser URL of the fresh migrated database),
//! `BENCH_DB_RUNS_URL` and `BENCH_DB_QUOTAS_URL` (the same database as `runwarden_runs` and
//! `runwarden_quotas`), `PUBSUB_EMULATOR_HOST`, `STORAGE_EMULATOR_HOST` (fake-gcs-server) and
//! `BENCH_ARTIFACTS_BUCKET` (a bucket there); `BENCH_SECONDS_SCALE` shortens every timed phase
//! and the number of runs of part 3.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use runwarden_events::bus::PubSubConfig;
use runwarden_events::topics::{Admin, topology};
use runwarden_store::PoolSettings;
use runwarden_tokens::{TokenSigner, opaque};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use runwarden_e2e::Proc;

use crate::harness::{JwksServer, fresh_admin_pool, require_binaries, stop};
use crate::measure::{
    Outcome, Sample, closed_loop, cores, load_average, machine_busy, ms, open_loop, p50_p99, pass,
    percentile, process_cpu, required_env, scaled, scaled_count,
};
use crate::quotas::{BenchOrg, create_orgs, start_quotas};

/// Concurrent clients of part 1.
const CLIENTS: usize = 32;
const ORGS: usize = 200;
const CREATE_SECS: f64 = 15.0;
/// Untimed creations first, on an org of their own: runs and quotas open their pools'
/// connections on first use.
const WARM_UP: Duration = Duration::from_secs(2);
/// The `max_seconds` part 1's runs ask for: longer than the benchmark, so the reaper (which
/// ends runs past their cap plus grace) leaves them queued.
const CAP_SECS: i64 = 3600;
/// How long PostgreSQL's backends may keep their statistics before publishing them.
const STATS_FLUSH: Duration = Duration::from_millis(1500);
/// How long the outbox may take to drain after part 1.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
const WATCHERS: usize = 500;
/// A chatty runner sends a batch at most every 250 ms; this is five such runners' worth of
/// calls on one run, one event each, so every event's delay is its own append's.
const APPENDS_PER_SEC: f64 = 20.0;
const EVENTS_PER_APPEND: usize = 1;
const FANOUT_SECS: f64 = 10.0;
/// How long watchers may take to connect, and to get the last events after the appends.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
const DELIVERY_GRACE: Duration = Duration::from_secs(10);
const FIRST_EVENT_RUNS: usize = 10;
const DEMO_SLEEP_SECS: u64 = 1;
/// The longest a demo run of part 3 may take from its POST to its end.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);
/// Targets from the issue.
const CREATE_TARGET_PER_SEC: f64 = 500.0;
const FANOUT_P99_TARGET: Duration = Duration::from_millis(50);
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Event messages of part 2: one untimed first (every watcher caught up and waiting), then
/// `bench-event <seq> <µs since the phase's start>`, then the end.
const READY_MESSAGE: &str = "bench-ready";
const EVENT_PREFIX: &str = "bench-event ";
const END_MESSAGE: &str = "bench-end";

/// An org of the benchmark with its one project.
#[derive(Clone)]
struct Tenant {
    org: BenchOrg,
    project: Uuid,
}

struct Creations {
    orgs: usize,
    sample: Sample,
    /// Runs of those orgs by status afterwards.
    queued: i64,
    admitting: i64,
    refused: i64,
    /// From the phase's end until no outbox row was pending.
    drained_after: Duration,
    cpu: CpuUse,
    /// Transactions the database ended meanwhile (`pg_stat_database`), the relay's included.
    transactions: i64,
}

struct Fanout {
    watchers: usize,
    /// From the first watcher's request until all had their stream's headers.
    connect: Duration,
    /// The appends (latency: the POST's round trip).
    appends: Sample,
    /// Events the appends that were answered 204 carried.
    events: u64,
    /// One per (event, watcher) received, sorted.
    delays: Vec<Duration>,
    duplicates: u64,
    /// Watchers that failed (could not connect, or their stream broke).
    failed_watchers: usize,
    first_failure: Option<String>,
    /// From the first append until every watcher was done.
    cpu: CpuUse,
}

impl Fanout {
    fn expected(&self) -> u64 {
        self.events * (self.watchers - self.failed_watchers) as u64
    }

    fn received(&self) -> u64 {
        self.delays.len() as u64
    }

    fn delay(&self, p: f64) -> Duration {
        percentile(&self.delays, p)
    }
}

/// Part 3: one demo run, each time from its POST's send.
struct FirstEvent {
    accepted: Duration,
    watching: Duration,
    running: Option<Duration>,
    started: Option<Duration>,
    ended: Option<Duration>,
    /// The stream's last status message (`succeeded` when all went well).
    last_status: Option<String>,
    /// Where the dispatch's time went (see [`dispatch_stages`]).
    stages: Option<Stages>,
}

/// A demo run's way from `queued` to the runner's first event, from PostgreSQL's timestamps
/// (each the start of the transaction that wrote it): queued (the outbox row) → the relay
/// claimed it (`published_at`) → the push reached runs' dispatch (`dispatched_at`) → the
/// runner exchanged its ticket (`ticket_used_at`) → the runner's `started` event.
#[derive(Clone, Copy)]
struct Stages {
    relay: Duration,
    publish_and_push: Duration,
    runner_start: Duration,
    secrets_and_start: Duration,
}

struct Report {
    load_before: Option<f64>,
    creations: Creations,
    fanout: Fanout,
    first_events: Vec<FirstEvent>,
}

/// What runs is started with.
struct Stack {
    runs_db: String,
    quotas_db: String,
    pubsub: String,
    pubsub_project: String,
    storage: String,
    bucket: String,
    internal_secret: String,
    push_secret: String,
}

/// The processes whose CPU time the benchmark accounts for.
#[derive(Clone, Copy)]
struct Pids {
    runs: u32,
    quotas: u32,
}

/// CPU time used so far (see [`CpuMark::take`]).
struct CpuMark {
    at: Instant,
    runs: Duration,
    quotas: Duration,
    bench: Duration,
    /// By backend pid.
    backends: HashMap<i32, Duration>,
    machine: Duration,
}

/// The CPU time used between two marks.
#[derive(Default)]
struct CpuUse {
    wall: Duration,
    runs: Duration,
    quotas: Duration,
    /// This program: the clients (watchers, appender), not a server.
    bench: Duration,
    /// The PostgreSQL backends of the benchmark's database (not the WAL writer and the
    /// server's other background processes).
    postgres: Duration,
    /// The whole machine, whoever used it.
    machine: Duration,
}

impl CpuMark {
    /// runs' and quotas' CPU time (runs' without its runners), this program's, that of every
    /// PostgreSQL backend connected to the benchmark's database, and the machine's.
    async fn take(admin: &PgPool, pids: Pids) -> anyhow::Result<CpuMark> {
        let backends: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(admin)
        .await?;
        let cpu = |pid: u32| process_cpu(pid).unwrap_or_default();
        Ok(CpuMark {
            at: Instant::now(),
            runs: cpu(pids.runs),
            quotas: cpu(pids.quotas),
            bench: cpu(std::process::id()),
            backends: backends
                .into_iter()
                .map(|pid| (pid, u32::try_from(pid).map(cpu).unwrap_or_default()))
                .collect(),
            machine: machine_busy().unwrap_or_default(),
        })
    }

    /// What was used from `self` to `later` (a backend that connected in between counts in
    /// full; one that disconnected is lost, which pools do not do within a phase).
    fn until(&self, later: &CpuMark) -> CpuUse {
        CpuUse {
            wall: later.at - self.at,
            runs: later.runs.saturating_sub(self.runs),
            quotas: later.quotas.saturating_sub(self.quotas),
            bench: later.bench.saturating_sub(self.bench),
            postgres: later
                .backends
                .iter()
                .map(|(pid, t)| {
                    t.saturating_sub(self.backends.get(pid).copied().unwrap_or_default())
                })
                .sum(),
            machine: later.machine.saturating_sub(self.machine),
        }
    }
}

impl CpuUse {
    fn ours(&self) -> Duration {
        self.runs + self.quotas + self.bench + self.postgres
    }

    /// `runs 1.20 ms + quotas ... = 4.00 ms`, each divided by `n`.
    fn per(&self, n: u64) -> String {
        let per = |d: Duration| ms(d / u32::try_from(n.max(1)).unwrap_or(u32::MAX));
        format!(
            "runs {} + quotas {} + PostgreSQL backends {} + this client {} = {}",
            per(self.runs),
            per(self.quotas),
            per(self.postgres),
            per(self.bench),
            per(self.ours())
        )
    }

    /// Busy shares of the machine's cores over the wall time.
    fn shares(&self) -> String {
        let share = |d: Duration| {
            100.0 * d.as_secs_f64() / (self.wall.as_secs_f64() * cores() as f64).max(f64::EPSILON)
        };
        format!(
            "machine busy {:.0} % of {} cores, of which this stack {:.0} % (runs {:.0} %, \
             quotas {:.0} %, PostgreSQL backends {:.0} %, this client {:.0} %)",
            share(self.machine),
            cores(),
            share(self.ours()),
            share(self.runs),
            share(self.quotas),
            share(self.postgres),
            share(self.bench),
        )
    }
}

pub fn run() -> anyhow::Result<()> {
    let admin_url = required_env("BENCH_DB_ADMIN_URL")?;
    let stack = Stack {
        runs_db: required_env("BENCH_DB_RUNS_URL")?,
        quotas_db: required_env("BENCH_DB_QUOTAS_URL")?,
        pubsub: required_env("PUBSUB_EMULATOR_HOST")?,
        // A project of its own on the emulator (at most 30 characters).
        pubsub_project: format!("rwb-runs-{}", &Uuid::new_v4().simple().to_string()[..16]),
        storage: required_env("STORAGE_EMULATOR_HOST")?,
        bucket: required_env("BENCH_ARTIFACTS_BUCKET")?,
        internal_secret: format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple()),
        // pubsub-setup wants at least 32 URL-safe characters.
        push_secret: Uuid::new_v4().simple().to_string(),
    };
    require_binaries(
        &["runs", "quotas", "runner", "demo-agent", "pubsub-setup"],
        "cargo build -p runwarden-runs -p runwarden-quotas -p runwarden-runner \
         -p runwarden-events --bins",
    )?;
    let runtime = crate::measure::runtime()?;
    let load_before = load_average();
    let report = runtime.block_on(async {
        let admin = fresh_admin_pool(&admin_url, "runs").await?;
        let signer = TokenSigner::generate("bench-1");
        eprintln!(
            "==> runs: creating {} enterprise orgs and projects",
            ORGS + 3
        );
        let mut tenants = create_tenants(&admin, &signer, ORGS + 3).await?;
        let warm_up = tenants.pop().context("no warm-up org")?;
        let watched = tenants.pop().context("no watched org")?;
        let demo = tenants.pop().context("no demo org")?;
        let spread = tenants;

        // Topics first (so runs' relay publishes successfully), subscriptions only in part 3.
        let topics = Admin::connect(PubSubConfig::emulator(
            stack.pubsub_project.clone(),
            &stack.pubsub,
        ))
        .await
        .context("connecting to the Pub/Sub emulator")?;
        for topic in topology().topic_names() {
            topics.ensure_topic(topic).await?;
        }
        let jwks = JwksServer::start(&signer).await?;
        let mut quotas = start_quotas(
            &stack.quotas_db,
            &jwks.url,
            &stack.internal_secret,
            &stack.push_secret,
        );
        let mut runs = None;
        let result = async {
            quotas.try_wait_healthy(HEALTHY_TIMEOUT).await?;
            let runs = runs.insert(start_runs(&stack, &jwks.url, &quotas.base_url()));
            runs.try_wait_healthy(HEALTHY_TIMEOUT).await?;
            let base = runs.base_url();
            let pids = Pids {
                runs: runs.pid(),
                quotas: quotas.pid(),
            };

            let warm = std::slice::from_ref(&warm_up);
            creations(&admin, &base, pids, warm, WARM_UP).await?;
            eprintln!(
                "==> runs: POST .../runs over {} orgs, {CLIENTS} clients, {:?}",
                spread.len(),
                scaled(CREATE_SECS)
            );
            let creations = creations(&admin, &base, pids, &spread, scaled(CREATE_SECS)).await?;

            eprintln!(
                "==> runs: SSE fan-out of one run to {WATCHERS} watchers, {APPENDS_PER_SEC} \
                 appends/s, {:?}",
                scaled(FANOUT_SECS)
            );
            let fanout = fanout(&admin, &base, pids, &watched, &stack.internal_secret).await?;

            eprintln!("==> runs: pubsub-setup (run-dispatch pushed to runs from now on)");
            pubsub_setup(&stack, &base, &quotas.base_url()).await?;
            let n = scaled_count(FIRST_EVENT_RUNS, 2);
            eprintln!(
                "==> runs: {n} demo runs one after another, POST to the runner's first event"
            );
            let mut first_events = Vec::with_capacity(n);
            for _ in 0..n {
                first_events.push(first_event(&admin, &base, &demo).await?);
            }
            anyhow::Ok((creations, fanout, first_events))
        }
        .await;
        let result = result.map_err(|e| {
            let runs_tail = runs.as_ref().map(Proc::output_tail).unwrap_or_default();
            anyhow::anyhow!("{e:#}\n{runs_tail}\n{}", quotas.output_tail())
        });
        if let Some(runs) = runs.as_mut() {
            stop(runs, STOP_GRACE).await;
        }
        stop(&mut quotas, STOP_GRACE).await;
        if let Err(e) = crate::audit::remove_topology(&topics).await {
            eprintln!("warning: could not remove the benchmark's topics from the emulator: {e:#}");
        }
        let (creations, fanout, first_events) = result?;
        anyhow::Ok(Report {
            load_before,
            creations,
            fanout,
            first_events,
        })
    })?;
    print_table(&report);
    Ok(())
}

/// `n` orgs as the quotas benchmark makes them, each member a `member` (who may start runs),
/// and one project in each.
async fn create_tenants(
    admin: &PgPool,
    signer: &TokenSigner,
    n: usize,
) -> anyhow::Result<Vec<Tenant>> {
    let orgs = create_orgs(admin, signer, n, "member").await?;
    let ids: Vec<Uuid> = orgs.iter().map(|o| o.id).collect();
    let projects: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    sqlx::query(
        "INSERT INTO projects (id, org_id, name)
         SELECT p, o, 'Bench project' FROM unnest($1::uuid[], $2::uuid[]) AS t(p, o)",
    )
    .bind(&projects)
    .bind(&ids)
    .execute(admin)
    .await?;
    Ok(orgs
        .into_iter()
        .zip(projects)
        .map(|(org, project)| Tenant { org, project })
        .collect())
}

/// Starts the release runs on a free port (development mode, warnings only), admitting
/// through quotas at `quotas_url`, relaying to the emulator project, starting runners
/// (`runner` beside it) as child processes and storing artifacts in fake-gcs-server.
fn start_runs(stack: &Stack, jwks_url: &str, quotas_url: &str) -> Proc {
    let port = runwarden_e2e::free_port();
    let mut cmd = runwarden_e2e::command("runs");
    cmd.env("RUNWARDEN_ENV", "development")
        .env("PORT", port.to_string())
        .env("DATABASE_URL", &stack.runs_db)
        .env("AUTH_JWKS_URL", jwks_url)
        .env("QUOTAS_URL", quotas_url)
        .env("INTERNAL_AUTH_SECRETS", &stack.internal_secret)
        .env("PUSH_SECRET", &stack.push_secret)
        .env("PUBSUB_EMULATOR_HOST", &stack.pubsub)
        .env("PUBSUB_PROJECT", &stack.pubsub_project)
        .env("STORAGE_EMULATOR_HOST", &stack.storage)
        .env("ARTIFACTS_BUCKET", &stack.bucket)
        .env("TRUSTED_PROXY_HOPS", "0")
        .env("RUST_LOG", "warn");
    let mut runs = Proc::spawn("runs", cmd);
    runs.port = Some(port);
    runs
}

/// The real `pubsub-setup` against the benchmark's emulator project: every topic and push
/// subscription of `topics.json`, `run-dispatch` to runs and `run-finished` to quotas. No
/// audit runs here: its pushes go to a closed port (the emulator retries them, then
/// dead-letters them).
async fn pubsub_setup(stack: &Stack, runs_url: &str, quotas_url: &str) -> anyhow::Result<()> {
    let mut cmd = runwarden_e2e::command("pubsub-setup");
    cmd.env("PUBSUB_EMULATOR_HOST", &stack.pubsub)
        .env("PUBSUB_PROJECT", &stack.pubsub_project)
        .env("PUSH_SECRET", &stack.push_secret)
        .env("RUNS_URL", runs_url)
        .env("QUOTAS_URL", quotas_url)
        .env("AUDIT_URL", "http://127.0.0.1:9");
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await?
        .context("starting pubsub-setup")?;
    ensure!(
        out.status.success(),
        "pubsub-setup failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// 1. run creations

/// `CLIENTS` clients starting runs round robin over `tenants` for `duration`; then the runs
/// counted by status and the outbox waited for until drained.
async fn creations(
    admin: &PgPool,
    base: &str,
    pids: Pids,
    tenants: &[Tenant],
    duration: Duration,
) -> anyhow::Result<Creations> {
    let client = runwarden_e2e::client();
    let shared: Arc<Vec<Tenant>> = Arc::new(tenants.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let base: Arc<str> = base.into();
    let transactions_before = transactions(admin).await?;
    let before = CpuMark::take(admin, pids).await?;
    let sample = closed_loop(CLIENTS, duration, |_| {
        let (client, tenants, next, base) =
            (client.clone(), shared.clone(), next.clone(), base.clone());
        move || {
            let t = &tenants[next.fetch_add(1, Ordering::Relaxed) % tenants.len()];
            let request = client
                .post(format!(
                    "{base}/v1/orgs/{}/projects/{}/runs",
                    t.org.id, t.project
                ))
                .bearer_auth(&t.org.token)
                .json(&json!({"agent": "demo", "input": {}, "max_seconds": CAP_SECS}));
            creation_outcome(request)
        }
    })
    .await?;
    let ended = Instant::now();
    let cpu = before.until(&CpuMark::take(admin, pids).await?);
    let ids: Vec<Uuid> = tenants.iter().map(|t| t.org.id).collect();
    let (queued, admitting, refused): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'queued'),
                count(*) FILTER (WHERE status = 'admitting'),
                count(*) FILTER (WHERE status = 'refused')
           FROM runs WHERE org_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(admin)
    .await?;
    loop {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox_events WHERE published_at IS NULL")
                .fetch_one(admin)
                .await?;
        if pending == 0 {
            break;
        }
        ensure!(
            ended.elapsed() < DRAIN_TIMEOUT,
            "{pending} outbox rows still unpublished {DRAIN_TIMEOUT:?} after the creations"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let drained_after = ended.elapsed();
    let transactions = transactions(admin).await? - transactions_before;
    Ok(Creations {
        orgs: tenants.len(),
        sample,
        queued,
        admitting,
        refused,
        drained_after,
        cpu,
        transactions,
    })
}

/// Transactions committed or rolled back in the benchmark's database so far, once every
/// backend has published its counters (PostgreSQL's backends do that at most once a second).
async fn transactions(admin: &PgPool) -> anyhow::Result<i64> {
    tokio::time::sleep(STATS_FLUSH).await;
    Ok(sqlx::query_scalar(
        "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(admin)
    .await?)
}

async fn creation_outcome(request: reqwest::RequestBuilder) -> Outcome {
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("{e:#}")),
    };
    let status = response.status();
    let body: Value = match response.bytes().await {
        Ok(b) => serde_json::from_slice(&b).unwrap_or(Value::Null),
        Err(e) => return Outcome::Failed(format!("{e:#}")),
    };
    match status.as_u16() {
        202 if body["status"] == "queued" => Outcome::Ok,
        402 | 429 => Outcome::Refused(body["code"].as_str().unwrap_or("?").to_owned()),
        _ => Outcome::Failed(format!("{status} {body}")),
    }
}

// ---------------------------------------------------------------------------------------
// 2. SSE fan-out

/// A `running` run of `tenant`'s project with a live runner token, as the ticket exchange
/// leaves it (rows inserted as the superuser); returns (run, runner token).
async fn insert_running_run(admin: &PgPool, tenant: &Tenant) -> anyhow::Result<(Uuid, String)> {
    let run = Uuid::now_v7();
    let token = opaque::generate("rnt_");
    let mut tx = admin.begin().await?;
    sqlx::query(
        "INSERT INTO runs (id, org_id, project_id, agent, requested_cap_secs, granted_cap_secs,
                           status, dispatched_at, execution, started_at)
         VALUES ($1, $2, $3, 'demo', $4, $4, 'running', now(), 'bench', now())",
    )
    .bind(run)
    .bind(tenant.org.id)
    .bind(tenant.project)
    .bind(CAP_SECS)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO runner_credentials (run_id, org_id, ticket_hash, ticket_used_at,
                                         token_hash, token_expires_at)
         VALUES ($1, $2, $3, now(), $4, now() + make_interval(secs => $5))",
    )
    .bind(run)
    .bind(tenant.org.id)
    .bind(opaque::hash(&opaque::generate("rtk_")))
    .bind(opaque::hash(&token))
    .bind(CAP_SECS as f64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((run, token))
}

/// The events media URL of `run` (path and query), minted for `tenant`'s member.
async fn events_url(
    client: &reqwest::Client,
    base: &str,
    tenant: &Tenant,
    run: &str,
) -> anyhow::Result<String> {
    let response = client
        .post(format!(
            "{base}/v1/orgs/{}/runs/{run}/media-token",
            tenant.org.id
        ))
        .bearer_auth(&tenant.org.token)
        .json(&json!({}))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    ensure!(status == 200, "media-token answered {status} {body}");
    body["events"]["url"]
        .as_str()
        .map(|u| format!("{base}{u}"))
        .with_context(|| format!("no events URL in {body}"))
}

/// A client for event streams: no overall timeout (a stream lasts as long as the run).
fn stream_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .build()?)
}

/// Splits an SSE byte stream into its `data:` payloads, parsed as JSON.
#[derive(Default)]
struct SseData {
    buffer: Vec<u8>,
}

impl SseData {
    fn push(&mut self, chunk: &[u8]) -> Vec<Value> {
        self.buffer.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buffer.drain(..=end).collect();
            if let Some(data) = line.strip_prefix(b"data:") {
                out.push(serde_json::from_slice(data.trim_ascii()).unwrap_or(Value::Null));
            }
        }
        out
    }
}

/// What one watcher of part 2 saw.
#[derive(Default)]
struct Watched {
    delays: Vec<Duration>,
    duplicates: u64,
    failure: Option<String>,
}

/// What a watcher reports while it starts.
enum Progress {
    /// Its stream's headers arrived (runs has subscribed it to the run's feed).
    Connected,
    /// It received the ready message: caught up and waiting on the broadcast.
    Ready,
    Failed(String),
}

/// One watcher: connects, then takes every event, noting the delay of each benchmark event
/// against `clock`, until the end message, its stream's end or `give_up`; reports its start
/// on `progress`.
async fn watch(
    client: reqwest::Client,
    url: String,
    clock: Instant,
    progress: tokio::sync::mpsc::UnboundedSender<Progress>,
    mut give_up: tokio::sync::watch::Receiver<bool>,
) -> Watched {
    let mut out = Watched::default();
    let mut response = match client.get(&url).send().await {
        Ok(r) if r.status() == reqwest::StatusCode::OK => r,
        Ok(r) => {
            let e = format!("events answered {}", r.status());
            let _ = progress.send(Progress::Failed(e.clone()));
            out.failure = Some(e);
            return out;
        }
        Err(e) => {
            let e = format!("{e:#}");
            let _ = progress.send(Progress::Failed(e.clone()));
            out.failure = Some(e);
            return out;
        }
    };
    let _ = progress.send(Progress::Connected);
    let mut sse = SseData::default();
    let mut seen = HashSet::new();
    loop {
        let chunk = tokio::select! {
            chunk = response.chunk() => chunk,
            _ = give_up.wait_for(|g| *g) => break,
        };
        let at = clock.elapsed();
        let bytes = match chunk {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                out.failure = Some("the stream ended before the end message".into());
                break;
            }
            Err(e) => {
                out.failure = Some(format!("{e:#}"));
                break;
            }
        };
        let mut done = false;
        for event in sse.push(&bytes) {
            let message = event["message"].as_str().unwrap_or_default();
            if message == END_MESSAGE {
                done = true;
            } else if message == READY_MESSAGE {
                let _ = progress.send(Progress::Ready);
            } else if let Some((seq, sent_us)) = message
                .strip_prefix(EVENT_PREFIX)
                .and_then(|m| m.split_once(' '))
                .and_then(|(seq, us)| Some((seq.parse::<u64>().ok()?, us.parse::<u64>().ok()?)))
            {
                if seen.insert(seq) {
                    out.delays
                        .push(at.saturating_sub(Duration::from_micros(sent_us)));
                } else {
                    out.duplicates += 1;
                }
            }
        }
        if done {
            break;
        }
    }
    out
}

/// `POST /internal/runner/runs/{run}/events` as the runner sends it.
fn append(
    client: &reqwest::Client,
    base: &str,
    run: Uuid,
    internal: &str,
    token: &str,
    messages: &[String],
) -> reqwest::RequestBuilder {
    let events: Vec<Value> = messages
        .iter()
        .map(|m| json!({"kind": "log", "stream": "stdout", "message": m}))
        .collect();
    client
        .post(format!("{base}/internal/runner/runs/{run}/events"))
        .header(runwarden_platform::internal_auth::HEADER, internal)
        .bearer_auth(token)
        .json(&json!({ "events": events }))
}

async fn append_outcome(request: reqwest::RequestBuilder) -> Outcome {
    match request.send().await {
        Ok(r) if r.status() == reqwest::StatusCode::NO_CONTENT => Outcome::Ok,
        Ok(r) => {
            let status = r.status();
            Outcome::Failed(format!("{status} {}", r.text().await.unwrap_or_default()))
        }
        Err(e) => Outcome::Failed(format!("{e:#}")),
    }
}

async fn fanout(
    admin: &PgPool,
    base: &str,
    pids: Pids,
    tenant: &Tenant,
    internal: &str,
) -> anyhow::Result<Fanout> {
    let (run, token) = insert_running_run(admin, tenant).await?;
    let client = runwarden_e2e::client();
    let url = events_url(&client, base, tenant, &run.to_string()).await?;
    let streams = stream_client()?;
    let clock = Instant::now();
    let (progress, mut started) = tokio::sync::mpsc::unbounded_channel();
    let (give_up, gave_up) = tokio::sync::watch::channel(false);
    let watchers: Vec<_> = (0..WATCHERS)
        .map(|_| {
            tokio::spawn(watch(
                streams.clone(),
                url.clone(),
                clock,
                progress.clone(),
                gave_up.clone(),
            ))
        })
        .collect();
    drop(progress);
    // Every watcher connected (or failed), then, after an untimed first event, caught up.
    let mut failed_watchers = 0;
    let mut first_failure = None;
    let (mut connected, mut ready) = (0, 0);
    let mut connect = None;
    let mut ready_sent = false;
    while ready + failed_watchers < WATCHERS {
        match tokio::time::timeout(CONNECT_TIMEOUT, started.recv()).await {
            Ok(Some(Progress::Connected)) => connected += 1,
            Ok(Some(Progress::Ready)) => ready += 1,
            Ok(Some(Progress::Failed(e))) => {
                failed_watchers += 1;
                first_failure.get_or_insert(e);
            }
            Ok(None) => break,
            Err(_) => anyhow::bail!(
                "of {WATCHERS} watchers, {connected} connected, {ready} caught up and \
                 {failed_watchers} failed in {CONNECT_TIMEOUT:?}"
            ),
        }
        if !ready_sent && connected + failed_watchers == WATCHERS {
            ensure!(
                failed_watchers < WATCHERS,
                "no watcher connected: {}",
                first_failure.clone().unwrap_or_default()
            );
            connect = Some(clock.elapsed());
            let first = append(
                &client,
                base,
                run,
                internal,
                &token,
                &[READY_MESSAGE.into()],
            );
            if let Outcome::Failed(e) = append_outcome(first).await {
                anyhow::bail!("appending the first event failed: {e}");
            }
            ready_sent = true;
        }
    }
    let connect = connect.context("the watchers never all connected")?;

    let before = CpuMark::take(admin, pids).await?;
    let mut seq = 0u64;
    let appends = open_loop(APPENDS_PER_SEC, scaled(FANOUT_SECS), || {
        let sent_us = clock.elapsed().as_micros();
        let messages: Vec<String> = (0..EVENTS_PER_APPEND)
            .map(|_| {
                seq += 1;
                format!("{EVENT_PREFIX}{seq} {sent_us}")
            })
            .collect();
        append_outcome(append(&client, base, run, internal, &token, &messages))
    })
    .await?;
    let end = append(&client, base, run, internal, &token, &[END_MESSAGE.into()]);
    if let Outcome::Failed(e) = append_outcome(end).await {
        eprintln!("warning: appending the end message failed ({e}); waiting for the grace");
    }
    tokio::spawn(async move {
        tokio::time::sleep(DELIVERY_GRACE).await;
        let _ = give_up.send(true);
    });
    let mut delays = Vec::new();
    let mut duplicates = 0;
    for w in watchers {
        let watched = w.await?;
        delays.extend(watched.delays);
        duplicates += watched.duplicates;
        if let Some(e) = watched.failure {
            first_failure.get_or_insert(e);
        }
    }
    let cpu = before.until(&CpuMark::take(admin, pids).await?);
    delays.sort_unstable();
    Ok(Fanout {
        watchers: WATCHERS,
        connect,
        events: appends.ok * EVENTS_PER_APPEND as u64,
        appends,
        delays,
        duplicates,
        failed_watchers,
        first_failure,
        cpu,
    })
}

// ---------------------------------------------------------------------------------------
// 3. POST to the runner's first event

/// One demo run, started and watched to its end.
async fn first_event(admin: &PgPool, base: &str, tenant: &Tenant) -> anyhow::Result<FirstEvent> {
    let client = runwarden_e2e::client();
    let t0 = Instant::now();
    let response = client
        .post(format!(
            "{base}/v1/orgs/{}/projects/{}/runs",
            tenant.org.id, tenant.project
        ))
        .bearer_auth(&tenant.org.token)
        .json(&json!({
            "agent": "demo",
            "input": {"sleep_seconds": DEMO_SLEEP_SECS},
            "max_seconds": 60,
        }))
        .send()
        .await?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let accepted = t0.elapsed();
    ensure!(status == 202, "POST .../runs answered {status} {body}");
    let run = body["id"].as_str().context("no run id")?.to_owned();
    let url = events_url(&client, base, tenant, &run).await?;
    let watched = async {
        let mut response = stream_client()?.get(&url).send().await?;
        ensure!(
            response.status() == 200,
            "events answered {}",
            response.status()
        );
        let mut out = FirstEvent {
            accepted,
            watching: t0.elapsed(),
            running: None,
            started: None,
            ended: None,
            last_status: None,
            stages: None,
        };
        let mut sse = SseData::default();
        while let Some(chunk) = response.chunk().await? {
            let at = t0.elapsed();
            for event in sse.push(&chunk) {
                if event["kind"] != "status" {
                    continue;
                }
                let message = event["message"].as_str().unwrap_or_default();
                match message {
                    "running" => {
                        out.running.get_or_insert(at);
                    }
                    "started" => {
                        out.started.get_or_insert(at);
                    }
                    _ => {}
                }
                out.last_status = Some(message.to_owned());
            }
        }
        out.ended = Some(t0.elapsed());
        anyhow::Ok(out)
    };
    let mut out = tokio::time::timeout(RUN_TIMEOUT, watched)
        .await
        .with_context(|| format!("run {run} did not end within {RUN_TIMEOUT:?}"))??;
    out.stages = dispatch_stages(admin, run.parse()?).await?;
    Ok(out)
}

/// [`Stages`] of `run` (`None` when a timestamp is missing: the run never got that far).
async fn dispatch_stages(admin: &PgPool, run: Uuid) -> anyhow::Result<Option<Stages>> {
    let row: Option<(f64, f64, f64, f64)> = sqlx::query_as(
        "SELECT extract(epoch FROM o.published_at - o.created_at)::float8,
                extract(epoch FROM r.dispatched_at - o.published_at)::float8,
                extract(epoch FROM c.ticket_used_at - r.dispatched_at)::float8,
                extract(epoch FROM e.created_at - c.ticket_used_at)::float8
           FROM runs r
           JOIN runner_credentials c ON c.run_id = r.id
           JOIN outbox_events o ON o.topic = 'run-dispatch' AND o.payload->>'run_id' = r.id::text
           JOIN run_events e ON e.run_id = r.id AND e.kind = 'status' AND e.message = 'started'
          WHERE r.id = $1 AND o.published_at IS NOT NULL AND r.dispatched_at IS NOT NULL
            AND c.ticket_used_at IS NOT NULL",
    )
    .bind(run)
    .fetch_optional(admin)
    .await?;
    let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
    Ok(row.map(|(relay, push, start, secrets)| Stages {
        relay: secs(relay),
        publish_and_push: secs(push),
        runner_start: secs(start),
        secrets_and_start: secs(secrets),
    }))
}

// ---------------------------------------------------------------------------------------
// the table

/// `p50 1.23 ms / max 4.56 ms` of the `pick`ed times (`n/m` when only n of m have one).
fn p50_max(runs: &[FirstEvent], pick: impl Fn(&FirstEvent) -> Option<Duration>) -> String {
    let mut times: Vec<Duration> = runs.iter().filter_map(pick).collect();
    times.sort_unstable();
    let seen = if times.len() == runs.len() {
        String::new()
    } else {
        format!(" ({} of {} runs)", times.len(), runs.len())
    };
    format!(
        "p50 {} / max {}{seen}",
        ms(percentile(&times, 0.5)),
        ms(times.last().copied().unwrap_or_default())
    )
}

fn print_table(r: &Report) {
    let load = |l: Option<f64>| l.map_or_else(|| "?".into(), |l| format!("{l:.1}"));
    println!(
        "\nruns benchmark: {} cores (1-min load average {} before, {} after); PostgreSQL, \
         {} runs and quotas (RUST_LOG=warn, pools of {} connections), the Pub/Sub \
         emulator, fake-gcs-server and this client share the machine; every org on \
         enterprise with overrides above the load\n",
        cores(),
        load(r.load_before),
        load(load_average()),
        crate::harness::profile(),
        PoolSettings::default().max_connections
    );
    println!("| # | measurement | throughput | latency | refused / errors | check | target |");
    println!("|---|---|---|---|---|---|---|");

    let c = &r.creations;
    let rows_ok = c.queued == c.sample.ok as i64 && c.admitting == 0;
    println!(
        "| 1 | POST /v1/orgs/{{org}}/projects/{{project}}/runs (admission by quotas included; \
         dispatch not: no subscription yet), {} orgs round robin, {CLIENTS} clients, {:.0} s \
         | {:.0} runs/s | p50 / p99 {} | {} / {} | {} queued + {} admitting + {} refused runs \
         {} answers; outbox drained {:.1} s after the phase | ≥ {CREATE_TARGET_PER_SEC:.0}/s: \
         {} |",
        c.orgs,
        c.sample.elapsed.as_secs_f64(),
        c.sample.rate(),
        p50_p99(&c.sample),
        c.sample.refusals(),
        c.sample.failures(),
        c.queued,
        c.admitting,
        c.refused,
        if rows_ok { "=" } else { "≠" },
        c.drained_after.as_secs_f64(),
        pass(c.sample.rate() >= CREATE_TARGET_PER_SEC),
    );
    println!(
        "| 1 | where the CPU went during (1) | – | – | – | CPU per run created: {}; {:.1} \
         PostgreSQL transactions per run created (each waits for its WAL flush); {} | – |",
        c.cpu.per(c.sample.ok),
        c.transactions as f64 / c.sample.ok.max(1) as f64,
        c.cpu.shares(),
    );

    let f = &r.fanout;
    let secs = f.appends.elapsed.as_secs_f64();
    let complete = f.received() == f.expected() && f.duplicates == 0;
    let errors = match &f.first_failure {
        None => format!("{}", f.appends.failed),
        Some(e) => {
            let e: String = e.chars().take(80).collect();
            format!(
                "{} appends, {} watchers (first: {})",
                f.appends.failed,
                f.failed_watchers,
                e.replace('|', "/")
            )
        }
    };
    println!(
        "| 2 | SSE fan-out: one run, {} watchers (connected in {:.1} s), {APPENDS_PER_SEC:.0} \
         appends/s of {EVENTS_PER_APPEND} event(s) via POST /internal/runner/runs/{{run}}/events, \
         {secs:.0} s | {:.0} events/s → {:.0} deliveries/s | delay append sent → watcher \
         received: p50 / p99 {} / {} (max {}); the append's own round trip: {} | – / {errors} \
         | {} of {} deliveries ({} events × {} watchers), {} duplicates | p99 < {}: {} |",
        f.watchers,
        f.connect.as_secs_f64(),
        f.events as f64 / secs,
        f.received() as f64 / secs,
        ms(f.delay(0.50)),
        ms(f.delay(0.99)),
        ms(f.delays.last().copied().unwrap_or_default()),
        p50_p99(&f.appends),
        f.received(),
        f.expected(),
        f.events,
        f.watchers - f.failed_watchers,
        f.duplicates,
        ms(FANOUT_P99_TARGET),
        pass(complete && f.delay(0.99) < FANOUT_P99_TARGET),
    );
    println!(
        "| 2 | where the CPU went during (2), appends and deliveries | – | – | – | CPU per event \
         appended: {}; {} | – |",
        f.cpu.per(f.events),
        f.cpu.shares(),
    );

    let runs = &r.first_events;
    let succeeded = runs
        .iter()
        .filter(|e| e.last_status.as_deref() == Some("succeeded"))
        .count();
    let n = runs.len();
    let ended = format!(
        "the run ended (demo agent: {DEMO_SLEEP_SECS} s of sleep, ffmpeg renders, the runner \
         uploads and reports)"
    );
    let rows = [
        ("202 answered", p50_max(runs, |e| Some(e.accepted))),
        (
            "watcher connected (media token, then SSE)",
            p50_max(runs, |e| Some(e.watching)),
        ),
        (
            "runs' `running` status seen (the dispatch: relay → emulator push → runner \
             process started → ticket exchanged)",
            p50_max(runs, |e| e.running),
        ),
        (
            "**the runner's first event** (`started`: its secrets fetched, the agent about \
             to start)",
            p50_max(runs, |e| e.started),
        ),
        (ended.as_str(), p50_max(runs, |e| e.ended)),
    ];
    for (what, times) in rows {
        println!(
            "| 3 | POST .../runs (demo agent) → {what}; {n} runs one after another | – | {times} \
             | – | {succeeded} of {n} runs succeeded | – |",
        );
    }
    println!(
        "| 3 | where the time to `started` went, from PostgreSQL's timestamps: queued → the \
         relay claimed the dispatch; → the emulator's push reached runs' dispatch (publish and \
         push); → the runner exchanged its ticket (process start); → `started` (its secrets \
         fetched) | – | {} ; {} ; {} ; {} | – | – | – |",
        p50_max(runs, |e| e.stages.map(|s| s.relay)),
        p50_max(runs, |e| e.stages.map(|s| s.publish_and_push)),
        p50_max(runs, |e| e.stages.map(|s| s.runner_start)),
        p50_max(runs, |e| e.stages.map(|s| s.secrets_and_start)),
    );
}
