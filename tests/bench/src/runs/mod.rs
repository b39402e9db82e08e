//! Runs benchmark (`bench runs`, driven by `scripts/bench`) against one fresh migrated
//! database, a release `runs` and the release `quotas` it admits through, in three parts:
//!
//! 1. run creations ([`creations`]),
//! 2. SSE fan-out ([`fanout`]),
//! 3. time from `POST .../runs` to the runner's first event ([`first_event`]).
//!
//! Where the time goes: parts 1 and 2 also report the CPU time used per run created or per
//! event appended, and how busy the machine was meanwhile ([`cpu`]).
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

mod cpu;
mod creations;
mod fanout;
mod first_event;

use std::time::Duration;

use anyhow::{Context, ensure};
use runwarden_events::bus::PubSubConfig;
use runwarden_events::topics::{Admin, topology};
use runwarden_store::PoolSettings;
use runwarden_tokens::TokenSigner;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use runwarden_e2e::Proc;

use crate::harness::{JwksServer, fresh_admin_pool, require_binaries, stop};
use crate::measure::{cores, load_average, required_env};
use crate::quotas::{BenchOrg, create_orgs, start_quotas};

const ORGS: usize = 200;
/// The `max_seconds` part 1's runs ask for (and part 2's run is granted): longer than the
/// benchmark, so the reaper (which ends runs past their cap plus grace) leaves them queued.
const CAP_SECS: i64 = 3600;
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(10);

/// An org of the benchmark with its one project.
#[derive(Clone)]
struct Tenant {
    org: BenchOrg,
    project: Uuid,
}

struct Report {
    load_before: Option<f64>,
    creations: creations::Creations,
    fanout: fanout::Fanout,
    first_events: Vec<first_event::FirstEvent>,
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
            let pids = cpu::Pids {
                runs: runs.pid(),
                quotas: quotas.pid(),
            };

            let creations = creations::measure(&admin, &base, pids, &warm_up, &spread).await?;
            let fanout =
                fanout::measure(&admin, &base, pids, &watched, &stack.internal_secret).await?;
            let first_events =
                first_event::measure(&stack, &admin, &base, &quotas.base_url(), &demo).await?;
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
        // The fan-out part watches one run with one media token from WATCHERS clients: the
        // caps on concurrent streams (3 per token, 20 per run by default) are raised to that
        // design point, so the part measures the fan-out, not the caps.
        .env("MEDIA_STREAMS_PER_TOKEN", fanout::WATCHERS.to_string())
        .env("MEDIA_STREAMS_PER_RUN", fanout::WATCHERS.to_string())
        .env("TRUSTED_PROXY_HOPS", "0")
        .env("RUST_LOG", "warn");
    let mut runs = Proc::spawn("runs", cmd);
    runs.port = Some(port);
    runs
}

// ---------------------------------------------------------------------------------------
// shared by parts 2 and 3: watching a run's events

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

// ---------------------------------------------------------------------------------------
// the table

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
    creations::print_rows(&r.creations);
    fanout::print_rows(&r.fanout);
    first_event::print_rows(&r.first_events);
}
