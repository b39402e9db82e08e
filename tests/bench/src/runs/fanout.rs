//! Part 2 of the runs benchmark, SSE fan-out: one `running` run (inserted directly, with a
//! runner token whose hash is in `runner_credentials`, as the ticket exchange leaves it),
//! `WATCHERS` clients on `GET /v1/media/runs/{run}/events?token=` (one media token of the org's
//! member, from `POST .../media-token`), each on its own connection; once all are connected and
//! have received an untimed first event (each has caught up and waits on the run's broadcast),
//! events appended as a runner does (`POST /internal/runner/runs/{run}/events`,
//! `X-Internal-Auth` and the runner token), `APPENDS_PER_SEC` appends of `EVENTS_PER_APPEND`
//! log events each, open loop, for `FANOUT_SECS`. Each event's message carries the moment its
//! append was sent; each watcher notes when the chunk holding it arrived. The delay of every
//! (event, watcher) pair is the receipt minus the send: the append's commit, the NOTIFY, the
//! run's feed reading it once, the broadcast and the 500 writes, and this client's reading (the
//! watchers and the appender share this process and its two runtime workers with the machine).
//! Target: p99 < 50 ms. Every watcher must get every event, once.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use runwarden_tokens::opaque;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use super::cpu::{CpuMark, CpuUse, Pids};
use super::{CAP_SECS, SseData, Tenant, events_url, stream_client};
use crate::measure::{Outcome, Sample, ms, open_loop, p50_p99, pass, percentile, scaled};

pub(super) const WATCHERS: usize = 500;
/// A chatty runner sends a batch at most every 250 ms; this is five such runners' worth of
/// calls on one run, one event each, so every event's delay is its own append's.
const APPENDS_PER_SEC: f64 = 20.0;
const EVENTS_PER_APPEND: usize = 1;
const FANOUT_SECS: f64 = 10.0;
/// How long watchers may take to connect, and to get the last events after the appends.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
const DELIVERY_GRACE: Duration = Duration::from_secs(10);
/// The target from the issue.
const FANOUT_P99_TARGET: Duration = Duration::from_millis(50);
/// Event messages: one untimed first (every watcher caught up and waiting), then
/// `bench-event <seq> <µs since the phase's start>`, then the end.
const READY_MESSAGE: &str = "bench-ready";
const EVENT_PREFIX: &str = "bench-event ";
const END_MESSAGE: &str = "bench-end";

pub(super) struct Fanout {
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

/// Part 2: `WATCHERS` watchers of one `running` run of `tenant`, and its events appended
/// with the internal secret `internal`.
pub(super) async fn measure(
    admin: &PgPool,
    base: &str,
    pids: Pids,
    tenant: &Tenant,
    internal: &str,
) -> anyhow::Result<Fanout> {
    eprintln!(
        "==> runs: SSE fan-out of one run to {WATCHERS} watchers, {APPENDS_PER_SEC} \
         appends/s, {:?}",
        scaled(FANOUT_SECS)
    );
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

/// Part 2's rows of the table.
pub(super) fn print_rows(f: &Fanout) {
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
}
