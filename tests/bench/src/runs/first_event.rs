//! Part 3 of the runs benchmark, the time from `POST .../runs` to the runner's first event,
//! locally: with the push subscriptions set up by the real `pubsub-setup` (so the emulator
//! pushes `run-dispatch` to runs, which starts the release `runner` with the demo agent as a
//! child process, and `run-finished` to quotas), `FIRST_EVENT_RUNS` demo runs one after
//! another; each is watched over SSE right after its 202, and the times are taken from the
//! POST's send to the arrival of: the 202; runs' `running` status (the runner exchanged its
//! ticket: relay, emulator push, process start); the runner's own first event (`started`, after
//! it fetched the run's secrets, before the agent starts); the stream's end (the run ended: the
//! demo agent sleeps `DEMO_SLEEP_SECS`, renders its artifacts with ffmpeg, the runner uploads
//! them to fake-gcs-server and reports). The next run starts after the previous one ended. An
//! event already written when the watcher connected counts as arriving at the connect (the
//! watcher connects within a few ms of the 202, long before a runner can start). The time to
//! `started` is then split by PostgreSQL's own timestamps (see [`Stages`]).

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use super::{SseData, Stack, Tenant, events_url, stream_client};
use crate::measure::{ms, percentile, scaled_count};

const FIRST_EVENT_RUNS: usize = 10;
const DEMO_SLEEP_SECS: u64 = 1;
/// The longest a demo run may take from its POST to its end.
const RUN_TIMEOUT: Duration = Duration::from_secs(90);

/// Part 3: one demo run, each time from its POST's send.
pub(super) struct FirstEvent {
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

/// Part 3: `pubsub-setup` (runs at `base` and quotas at `quotas_url` get their pushes from
/// now on), then the demo runs of `demo`, one after another.
pub(super) async fn measure(
    stack: &Stack,
    admin: &PgPool,
    base: &str,
    quotas_url: &str,
    demo: &Tenant,
) -> anyhow::Result<Vec<FirstEvent>> {
    eprintln!("==> runs: pubsub-setup (run-dispatch pushed to runs from now on)");
    pubsub_setup(stack, base, quotas_url).await?;
    let n = scaled_count(FIRST_EVENT_RUNS, 2);
    eprintln!("==> runs: {n} demo runs one after another, POST to the runner's first event");
    let mut first_events = Vec::with_capacity(n);
    for _ in 0..n {
        first_events.push(first_event(admin, base, demo).await?);
    }
    Ok(first_events)
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

/// Part 3's rows of the table.
pub(super) fn print_rows(runs: &[FirstEvent]) {
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
