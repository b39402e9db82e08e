//! Part 1 of the runs benchmark, run creations: `CLIENTS` concurrent clients
//! `POST /v1/orgs/{org}/projects/{project}/runs` round robin over `ORGS` orgs for
//! `CREATE_SECS`, each answered 202 with the run `queued`.
//! Target: ≥ 500 creations/s. What one creation is here: runs' per-org rate limiter (two
//! round trips, one a commit), the caller's session and membership (`auth_enter`), the
//! run's insert (a commit), quotas' admission over HTTP (quotas' own transaction, which
//! locks the org's usage row), then the run `queued` with its `run-dispatch` and audit
//! rows in the outbox and its first event (a commit). Not included: the dispatch itself.
//! runs' outbox relay is running and publishes those rows to Google's Pub/Sub emulator
//! during the phase (topics exist, so publishing succeeds, as in production), but no
//! subscription exists yet, so the emulator drops them and no runner starts: the runs of
//! this part stay `queued` (their cap, `CAP_SECS`, outlives the benchmark, so the reaper
//! leaves them alone). Every org is on `enterprise` with overrides above the load (runs per
//! month, parallel runs, budget, requests per minute), so nothing is refused; a refusal
//! would be counted apart from errors. Afterwards the rows are counted (every 202 must be
//! one `queued` run, none left `admitting`) and the outbox must drain before part 2, so
//! the relay's backlog does not run into it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::ensure;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::cpu::{CpuMark, CpuUse, Pids};
use super::{CAP_SECS, Tenant};
use crate::measure::{Sample, closed_loop, p50_p99, pass, scaled};
use crate::quotas::json_outcome;

/// Concurrent clients.
const CLIENTS: usize = 32;
const CREATE_SECS: f64 = 15.0;
/// Untimed creations first, on an org of their own: runs and quotas open their pools'
/// connections on first use.
const WARM_UP: Duration = Duration::from_secs(2);
/// How long PostgreSQL's backends may keep their statistics before publishing them.
const STATS_FLUSH: Duration = Duration::from_millis(1500);
/// How long the outbox may take to drain afterwards.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);
/// The target from the issue.
const CREATE_TARGET_PER_SEC: f64 = 500.0;

pub(super) struct Creations {
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

/// Part 1: untimed creations on `warm_up`'s org, then the timed ones over `spread`.
pub(super) async fn measure(
    admin: &PgPool,
    base: &str,
    pids: Pids,
    warm_up: &Tenant,
    spread: &[Tenant],
) -> anyhow::Result<Creations> {
    let warm = std::slice::from_ref(warm_up);
    creations(admin, base, pids, warm, WARM_UP).await?;
    eprintln!(
        "==> runs: POST .../runs over {} orgs, {CLIENTS} clients, {:?}",
        spread.len(),
        scaled(CREATE_SECS)
    );
    creations(admin, base, pids, spread, scaled(CREATE_SECS)).await
}

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
            json_outcome(request, |status, body| {
                status == 202 && body["status"] == "queued"
            })
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

/// Part 1's rows of the table.
pub(super) fn print_rows(c: &Creations) {
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
}
