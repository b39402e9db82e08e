//! Audit ingestion throughput (`bench audit`, driven by `scripts/bench`), in three phases
//! against one fresh migrated database (`audit_log` emptied between phases):
//!
//! 1. baseline: the rows COPYed straight into `audit_log` as the superuser (no chaining, no
//!    per-event transaction) → rows/s;
//! 2. push ingestion: Pub/Sub push envelopes POSTed by concurrent clients straight to a
//!    release `audit` (`POST /push/audit-events?token=...`), each answered 204 only after its
//!    event is committed to its org's hash chain → events/s;
//! 3. end to end: audit events committed to `outbox_events` first (`AuditEvent::record`, as
//!    `runwarden_auth` with the org's tenant setting), then the clock runs from the relay's
//!    start until `audit_log` holds every event: outbox relay → Google's Pub/Sub emulator →
//!    push subscription (from `topics.json`) → audit → `audit_log` → events/s.
//!
//! The ratio end to end / COPY is checked against the target (≥ 25 %). Afterwards every
//! chain is checked in SQL (contiguous `seq`, each `prev_hash` the previous row's `hash`),
//! and, end to end, that each org's events arrived in the order they were committed.
//!
//! audit runs as a release binary on a free port (it fetches `AUTH_JWKS_URL` at start: a
//! tiny JWKS server in this program serves a generated Ed25519 key), in development mode
//! with a per-run `PUSH_SECRET`; the emulator topics live in a per-run project.
//!
//! Environment: `BENCH_DB_ADMIN_URL` (superuser URL of the fresh migrated database),
//! `BENCH_DB_RELAY_URL` (the same database as `runwarden_auth`), `BENCH_DB_AUDIT_URL` (as
//! `runwarden_audit`), `PUBSUB_EMULATOR_HOST`, and optionally `BENCH_AUDIT_COPY_ROWS`
//! (default 20000) and `BENCH_AUDIT_EVENTS` (default 5000).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use base64::Engine as _;
use runwarden_events::bus::{PubSubBus, PubSubConfig};
use runwarden_events::relay::Relay;
use runwarden_events::topics::{Admin, Topology, topology};
use runwarden_events::{Actor, AuditEvent, Target};
use runwarden_tenancy::OrgId;
use runwarden_tokens::TokenSigner;
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use runwarden_e2e::Proc;

use crate::harness::{JwksServer, require_binaries, stop};
use crate::measure::required_env;

const DEFAULT_COPY_ROWS: usize = 20_000;
const DEFAULT_EVENTS: usize = 5000;
const ORGS: usize = 50;
const PUSH_CLIENTS: usize = 16;
/// Target from the issue: end to end at ≥ 25 % of the raw COPY rate.
const TARGET_RATIO: f64 = 0.25;
/// Bounds of the timed phases (the whole section stays well under two minutes when healthy).
const PUSH_DEADLINE: Duration = Duration::from_secs(45);
const E2E_DEADLINE: Duration = Duration::from_secs(60);
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(10);
/// The package that provides Google's Pub/Sub emulator (Google's Cloud SDK apt repository).
const EMULATOR_PACKAGE: &str = "google-cloud-cli-pubsub-emulator";

/// The columns the baseline COPYs, in the order it writes them.
const COPY_COLUMNS: &str = "org_id, seq, event_id, occurred_at, actor_kind, actor_id, action, \
     target_type, target_id, outcome, request_id, ip, user_agent, details, prev_hash, hash, \
     created_at";

struct Copied {
    rows: usize,
    elapsed: Duration,
}

struct Pushed {
    events: usize,
    elapsed: Duration,
    /// Rows in `audit_log` afterwards.
    appended: i64,
    chains: ChainCheck,
}

struct EndToEnd {
    events: usize,
    /// Committing the backlog to the outbox (not part of the measured time).
    backlog: Duration,
    elapsed: Duration,
    /// When the relay had marked every outbox row published (all accepted by the emulator).
    relayed: Option<Duration>,
    appended: i64,
    chains: ChainCheck,
}

/// What the SQL walk over every org's chain found.
struct ChainCheck {
    orgs: i64,
    /// Rows whose `seq` is not the previous row's + 1 (the first row's is not 1).
    gaps: i64,
    /// Rows whose `prev_hash` is not the previous row's `hash` (32 zero bytes for the first).
    broken_links: i64,
    /// Rows that occurred before the row chained ahead of them in their org.
    out_of_order: i64,
}

fn count_var(name: &str, default: usize) -> anyhow::Result<usize> {
    let n = match std::env::var(name) {
        Ok(v) => v.trim().parse().with_context(|| name.to_owned())?,
        Err(_) => default,
    };
    ensure!(n > 0, "{name} must be positive");
    Ok(n)
}

fn emulator_missing(host: &str, why: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "Google's Pub/Sub emulator is not reachable at PUBSUB_EMULATOR_HOST={host:?} ({why}): the \
         audit benchmark's end-to-end phase publishes to it and receives its pushes. Install \
         {EMULATOR_PACKAGE} (apt-get install {EMULATOR_PACKAGE}, from Google's Cloud SDK apt \
         repository; it needs Java) and run scripts/bench, which starts it on 127.0.0.1:8085, \
         or start one there yourself"
    )
}

pub fn run() -> anyhow::Result<()> {
    let admin_url = required_env("BENCH_DB_ADMIN_URL")?;
    let relay_url = required_env("BENCH_DB_RELAY_URL")?;
    let audit_url = required_env("BENCH_DB_AUDIT_URL")?;
    let host =
        required_env("PUBSUB_EMULATOR_HOST").map_err(|_| emulator_missing("", "it is unset"))?;
    let copy_rows = count_var("BENCH_AUDIT_COPY_ROWS", DEFAULT_COPY_ROWS)?;
    let events = count_var("BENCH_AUDIT_EVENTS", DEFAULT_EVENTS)?;
    require_binaries(&["audit"], "cargo build -p runwarden-audit --bins")?;
    let cores = crate::measure::cores();
    let runtime = crate::measure::runtime()?;
    let (copied, pushed, e2e) = runtime.block_on(async {
        // Fail before any work when the emulator is not there (never skip the phase).
        match tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::TcpStream::connect(host.as_str()),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(emulator_missing(&host, &e.to_string())),
            Err(_) => return Err(emulator_missing(&host, "connecting timed out")),
        }
        let admin = PgPoolOptions::new()
            .max_connections(2)
            .connect(&admin_url)
            .await
            .context("connecting to BENCH_DB_ADMIN_URL")?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect(&relay_url)
            .await
            .context("connecting to BENCH_DB_RELAY_URL")?;
        ensure!(
            audit_rows(&admin).await? == 0,
            "audit_log is not empty: the benchmark needs a fresh database"
        );

        eprintln!("==> audit: COPY {copy_rows} rows over {ORGS} orgs into audit_log (baseline)");
        let copied = copy_baseline(&admin, copy_rows).await?;
        truncate(&admin).await?;

        // audit, with auth's JWKS stood in for by a generated key.
        let jwks = JwksServer::start(&TokenSigner::generate("bench-1")).await?;
        let secret = uuid::Uuid::new_v4().simple().to_string();
        let mut audit = start_audit(&audit_url, &jwks.url, &secret);
        let result = async {
            audit.try_wait_healthy(HEALTHY_TIMEOUT).await?;
            eprintln!(
                "==> audit: {events} push envelopes over {ORGS} orgs, {PUSH_CLIENTS} clients, \
                 straight to audit on {}",
                audit.base_url()
            );
            let pushed = push_phase(&admin, &audit.base_url(), &secret, events).await?;
            truncate(&admin).await?;
            eprintln!(
                "==> audit: {events} events over {ORGS} orgs end to end (outbox → relay → \
                 emulator at {host} → push → audit)"
            );
            let e2e = end_to_end(&admin, &pool, &host, &audit.base_url(), &secret, events).await?;
            anyhow::Ok((pushed, e2e))
        }
        .await;
        drop(jwks);
        let result = result.map_err(|e| anyhow::anyhow!("{e:#}\n{}", audit.output_tail()));
        stop(&mut audit, STOP_GRACE).await;
        let (pushed, e2e) = result?;
        anyhow::Ok((copied, pushed, e2e))
    })?;
    print_table(cores, &copied, &pushed, &e2e);
    Ok(())
}

async fn audit_rows(admin: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM audit_log")
        .fetch_one(admin)
        .await?)
}

async fn truncate(admin: &PgPool) -> anyhow::Result<()> {
    sqlx::query("TRUNCATE audit_log").execute(admin).await?;
    Ok(())
}

/// `ORGS` fresh orgs.
fn orgs() -> Vec<OrgId> {
    (0..ORGS).map(|_| OrgId::new()).collect()
}

/// The event every phase uses: what a role change from a request looks like.
fn bench_event(org: OrgId, i: usize) -> AuditEvent {
    let ip: IpAddr = format!("192.0.2.{}", i % 250 + 1)
        .parse()
        .expect("a valid address");
    AuditEvent::new(
        org,
        Actor::user(format!("bench-{i}")),
        "member.role_change",
        Target::new("user", format!("u-{i}")),
    )
    .with_request(
        Some(format!("req-{i}")),
        Some(ip),
        Some("runwarden-bench/1".into()),
    )
    .with_details(json!({"from": "member", "to": "admin"}))
}

// ---------------------------------------------------------------------------------------
// 1. COPY baseline

/// `rows` records over `ORGS` orgs in COPY text format, each org's `seq` contiguous and its
/// hashes linked (SHA-256 of the previous hash and the event id: valid-looking, not audit's
/// canonical encoding).
fn copy_data(rows: usize) -> Vec<u8> {
    use std::fmt::Write as _;
    let orgs = orgs();
    let mut heads: Vec<(i64, [u8; 32])> = vec![(0, [0; 32]); ORGS];
    let created_at = sqlx::types::chrono::Utc::now()
        .format("%Y-%m-%d %H:%M:%S%.6f+00")
        .to_string();
    let mut out = String::with_capacity(rows * 400);
    for i in 0..rows {
        let o = i % ORGS;
        let event = bench_event(orgs[o], i);
        let (seq, prev) = heads[o];
        let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        digest.update(&prev);
        digest.update(event.id.as_bytes());
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest.finish().as_ref());
        heads[o] = (seq + 1, hash);
        let text = |v: &Option<String>| v.clone().unwrap_or_else(|| "\\N".into());
        writeln!(
            out,
            "{}\t{}\t{}\t{}\tuser\t{}\t{}\t{}\t{}\tsuccess\t{}\t{}\t{}\t{}\t\\\\x{}\t\\\\x{}\t{created_at}",
            event.org_id,
            seq + 1,
            event.id,
            event.time.format("%Y-%m-%d %H:%M:%S%.6f+00"),
            text(&event.actor.id),
            event.action,
            event.target.kind,
            event.target.id,
            text(&event.request_id),
            event.ip.map_or_else(|| "\\N".into(), |ip| ip.to_string()),
            text(&event.user_agent),
            event.details,
            hex(&prev),
            hex(&hash),
        )
        .expect("writing to a String");
    }
    out.into_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn copy_baseline(admin: &PgPool, rows: usize) -> anyhow::Result<Copied> {
    let data = copy_data(rows);
    let mut conn = admin.acquire().await?;
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw(&format!("COPY audit_log ({COPY_COLUMNS}) FROM STDIN"))
        .await?;
    for chunk in data.chunks(1 << 20) {
        copy.send(chunk).await?;
    }
    let copied = copy.finish().await?;
    let elapsed = started.elapsed();
    drop(conn);
    ensure!(
        copied == rows as u64,
        "COPY reported {copied} rows, expected {rows}"
    );
    ensure!(
        audit_rows(admin).await? == rows as i64,
        "audit_log does not hold the {rows} COPYed rows"
    );
    Ok(Copied { rows, elapsed })
}

// ---------------------------------------------------------------------------------------
// audit

/// Starts the release audit on a free port (development mode, push secret, warnings only).
fn start_audit(database_url: &str, jwks_url: &str, secret: &str) -> Proc {
    let port = runwarden_e2e::free_port();
    let mut cmd = runwarden_e2e::command("audit");
    cmd.env("RUNWARDEN_ENV", "development")
        .env("PORT", port.to_string())
        .env("DATABASE_URL", database_url)
        .env("AUTH_JWKS_URL", jwks_url)
        .env("PUSH_SECRET", secret)
        .env("TRUSTED_PROXY_HOPS", "0")
        .env("RUST_LOG", "warn");
    let mut audit = Proc::spawn("audit", cmd);
    audit.port = Some(port);
    audit
}

// ---------------------------------------------------------------------------------------
// 2. push ingestion

/// A Pub/Sub push envelope for `event`, as the emulator would send it.
fn envelope(event: &AuditEvent, message_id: usize) -> anyhow::Result<Vec<u8>> {
    let data = base64::engine::general_purpose::STANDARD.encode(serde_json::to_vec(event)?);
    Ok(serde_json::to_vec(&json!({
        "message": {
            "data": data,
            "messageId": message_id.to_string(),
            "attributes": {"event_id": event.id.to_string(), "kind": event.action},
            "orderingKey": event.org_id.to_string(),
        },
        "subscription": "projects/runwarden-bench/subscriptions/audit-events-push",
    }))?)
}

async fn push_phase(
    admin: &PgPool,
    base: &str,
    secret: &str,
    events: usize,
) -> anyhow::Result<Pushed> {
    let orgs = orgs();
    let bodies: Vec<Vec<u8>> = (0..events)
        .map(|i| envelope(&bench_event(orgs[i % ORGS], i), i + 1))
        .collect::<anyhow::Result<_>>()?;
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let url = format!("{base}/push/audit-events?token={secret}");
    let started = Instant::now();
    let deadline = started + PUSH_DEADLINE;
    let mut tasks = Vec::with_capacity(PUSH_CLIENTS);
    for _ in 0..PUSH_CLIENTS {
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(15))
            .build()?;
        let (bodies, next, url) = (bodies.clone(), next.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() {
                    return anyhow::Ok(accepted);
                }
                ensure!(
                    Instant::now() < deadline,
                    "the push phase did not finish within {PUSH_DEADLINE:?}"
                );
                let response = client
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(bodies[i].clone())
                    .send()
                    .await
                    .with_context(|| format!("push {i}"))?;
                let status = response.status();
                if status != reqwest::StatusCode::NO_CONTENT {
                    let body = response.text().await.unwrap_or_default();
                    bail!("push {i} answered {status} (expected 204): {body}");
                }
                accepted += 1;
            }
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await??;
    }
    let elapsed = started.elapsed();
    ensure!(
        accepted == events,
        "{accepted} of {events} pushes answered 204"
    );
    let appended = audit_rows(admin).await?;
    ensure!(
        appended == events as i64,
        "all {events} pushes answered 204 but audit_log holds {appended} rows"
    );
    let chains = check_chains(admin).await?;
    Ok(Pushed {
        events,
        elapsed,
        appended,
        chains,
    })
}

// ---------------------------------------------------------------------------------------
// 3. end to end

/// Commits `events` audit events over `orgs` to the outbox as the runtime role, 100 per
/// transaction (one org per transaction, as a mutation would), 8 transactions at a time.
async fn commit_backlog(pool: &PgPool, orgs: &[OrgId], events: usize) -> anyhow::Result<()> {
    let chunks: Vec<(OrgId, usize)> = (0..events.div_ceil(100))
        .map(|c| (orgs[c % orgs.len()], c * 100))
        .collect();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = Vec::new();
    for (org, first) in chunks {
        let pool = pool.clone();
        let semaphore = semaphore.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire().await?;
            let mut tx = pool.begin().await?;
            runwarden_tenancy::set_tenant(&mut tx, Some(org), None).await?;
            for i in first..(first + 100).min(events) {
                bench_event(org, i).record(&mut tx).await?;
            }
            tx.commit().await?;
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// (rows in `audit_log`, outbox rows not yet published).
async fn progress(admin: &PgPool) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(
        "SELECT (SELECT count(*) FROM audit_log),
                (SELECT count(*) FROM outbox_events WHERE published_at IS NULL)",
    )
    .fetch_one(admin)
    .await?)
}

async fn end_to_end(
    admin: &PgPool,
    pool: &PgPool,
    host: &str,
    audit_base: &str,
    secret: &str,
    events: usize,
) -> anyhow::Result<EndToEnd> {
    ensure!(
        progress(admin).await? == (0, 0),
        "audit_log or the outbox is not empty before the end-to-end run"
    );
    // A project of its own on the emulator, so nothing else publishes to or reads its topics.
    let project = format!("rwb-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    let config = PubSubConfig::emulator(project, host);
    let topics = Admin::connect(config.clone())
        .await
        .map_err(|e| emulator_missing(host, &format!("{e:#}")))?;
    topics
        .apply(&audit_topology(), |spec| {
            Ok(format!("{audit_base}{}?token={secret}", spec.path))
        })
        .await?;
    let result = relay_until_appended(admin, pool, &config, events).await;
    // Best-effort: a failed run's own error is the one to report.
    if let Err(e) = remove_topology(&topics).await {
        eprintln!("warning: could not remove the benchmark's topics from the emulator: {e:#}");
    }
    result
}

/// The topics of `topics.json` that audit consumes, with only audit's push subscriptions
/// (the other functions' subscriptions have no one to push to here, and nothing this
/// benchmark relays goes to their topics).
fn audit_topology() -> Topology {
    let topics = topology()
        .topics
        .iter()
        .filter_map(|t| {
            let mut t = t.clone();
            t.push_subscriptions.retain(|s| s.function == "audit");
            (!t.push_subscriptions.is_empty()).then_some(t)
        })
        .collect();
    Topology { topics }
}

/// Deletes every subscription and topic of `topics.json` from the admin's (per-run) emulator
/// project, push subscriptions first, so the emulator stops pushing at once (the runs
/// benchmark cleans up with it too).
pub(crate) async fn remove_topology(topics: &Admin) -> anyhow::Result<()> {
    for t in &topology().topics {
        for s in &t.push_subscriptions {
            topics.delete_subscription(&s.name).await?;
        }
        topics
            .delete_subscription(&t.dead_letter.subscription)
            .await?;
        topics.delete_topic(&t.dead_letter.topic).await?;
        topics.delete_topic(&t.name).await?;
    }
    Ok(())
}

async fn relay_until_appended(
    admin: &PgPool,
    pool: &PgPool,
    config: &PubSubConfig,
    events: usize,
) -> anyhow::Result<EndToEnd> {
    let orgs = orgs();
    let committing = Instant::now();
    commit_backlog(pool, &orgs, events).await?;
    let backlog = committing.elapsed();
    ensure!(
        progress(admin).await? == (0, events as i64),
        "backlog not committed"
    );

    // One relay, as one function instance runs it: its own client, its own loop.
    let bus = Arc::new(PubSubBus::connect(config.clone()).await?);
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let relay = tokio::spawn(Relay::new(pool.clone(), bus).run(async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    let deadline = started + E2E_DEADLINE;
    let mut relayed = None;
    let outcome = loop {
        let (appended, pending) = progress(admin).await?;
        if pending == 0 && relayed.is_none() {
            relayed = Some(started.elapsed());
        }
        if appended >= events as i64 {
            break Ok(appended);
        }
        if Instant::now() >= deadline {
            break Err(anyhow::anyhow!(
                "end to end: audit_log holds {appended} of {events} events after \
                 {E2E_DEADLINE:?} ({pending} outbox rows still unpublished)"
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    relay.await?;
    let appended = outcome?;
    let chains = check_chains(admin).await?;
    Ok(EndToEnd {
        events,
        backlog,
        elapsed,
        relayed,
        appended,
        chains,
    })
}

// ---------------------------------------------------------------------------------------
// checks and the table

/// Walks every org's chain in SQL (links and numbering, not the hashes themselves).
async fn check_chains(admin: &PgPool) -> anyhow::Result<ChainCheck> {
    let (orgs, gaps, broken_links, out_of_order): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(DISTINCT org_id),
                count(*) FILTER (WHERE seq <> coalesce(prev_seq, 0) + 1),
                count(*) FILTER (WHERE prev_hash <> coalesce(prev_row_hash, decode(repeat('00', 32), 'hex'))),
                count(*) FILTER (WHERE occurred_at < prev_occurred_at)
           FROM (SELECT org_id, seq, prev_hash, occurred_at,
                        lag(seq) OVER w AS prev_seq,
                        lag(hash) OVER w AS prev_row_hash,
                        lag(occurred_at) OVER w AS prev_occurred_at
                   FROM audit_log
                 WINDOW w AS (PARTITION BY org_id ORDER BY seq)) AS chained",
    )
    .fetch_one(admin)
    .await?;
    Ok(ChainCheck {
        orgs,
        gaps,
        broken_links,
        out_of_order,
    })
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn chains(c: &ChainCheck, order_matters: bool) -> String {
    let mut out = if c.gaps == 0 && c.broken_links == 0 {
        format!("{} chains intact (seq, links)", c.orgs)
    } else {
        format!(
            "{} chains: {} seq gaps, {} broken links",
            c.orgs, c.gaps, c.broken_links
        )
    };
    if order_matters {
        if c.out_of_order == 0 {
            out.push_str("; each org in commit order");
        } else {
            out.push_str(&format!("; {} rows out of commit order", c.out_of_order));
        }
    }
    out
}

fn print_table(cores: usize, copied: &Copied, pushed: &Pushed, e2e: &EndToEnd) {
    let copy_rate = rate(copied.rows, copied.elapsed);
    let push_rate = rate(pushed.events, pushed.elapsed);
    let e2e_rate = rate(e2e.events, e2e.elapsed);
    let ratio = e2e_rate / copy_rate;
    let verdict = if ratio >= TARGET_RATIO {
        "met"
    } else {
        "NOT met"
    };
    println!(
        "\naudit benchmark: {cores} cores; {ORGS} orgs per phase, audit_log emptied between \
         phases; PostgreSQL, {} audit (RUST_LOG=warn), relay, Pub/Sub emulator and this \
         client share the machine\n",
        crate::harness::profile()
    );
    println!("| # | measurement | throughput | time | rows in audit_log | check |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| 1 | COPY into audit_log as superuser (baseline: one statement, no chaining), {} rows | {copy_rate:.0} rows/s | {} | {} | – |",
        copied.rows,
        secs(copied.elapsed),
        copied.rows,
    );
    println!(
        "| 2 | POST /push/audit-events straight to audit (push envelopes), {PUSH_CLIENTS} clients, {} events | {push_rate:.0} events/s = {:.1} % of (1) | {} | {} of {} (all 204) | {} |",
        pushed.events,
        push_rate / copy_rate * 100.0,
        secs(pushed.elapsed),
        pushed.appended,
        pushed.events,
        chains(&pushed.chains, false),
    );
    println!(
        "| 3 | end to end: committed outbox → 1 relay → Pub/Sub emulator → push subscription → audit → audit_log, {} events (backlog committed first in {}) | {e2e_rate:.0} events/s | {} (outbox all published at {}) | {} of {} | {} |",
        e2e.events,
        secs(e2e.backlog),
        secs(e2e.elapsed),
        e2e.relayed.map_or_else(|| "–".into(), secs),
        e2e.appended,
        e2e.events,
        chains(&e2e.chains, true),
    );
    println!(
        "| 4 | end to end / COPY = (3) / (1) | {:.1} % | – | – | target ≥ {:.0} %: {verdict} |",
        ratio * 100.0,
        TARGET_RATIO * 100.0,
    );
}
