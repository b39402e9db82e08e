//! Outbox relay throughput (`bench relay`, driven by `scripts/bench`): N outbox rows are
//! committed first, then relays start and the clock runs until every row is marked
//! published, i.e. until Google's Pub/Sub emulator accepted every message (the relay marks a
//! row only after its publish succeeded). Delivery is then checked, untimed, by pulling every
//! message back from a subscription.
//!
//! Environment: `BENCH_DB_ADMIN_URL` (superuser URL of the migrated bench database),
//! `BENCH_DB_RELAY_URL` (the same database as a runtime role, e.g. `runwarden_auth`),
//! `PUBSUB_EMULATOR_HOST`, and optionally `BENCH_RELAY_EVENTS` (default 5000).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use runwarden_contracts::topics::AUDIT_EVENTS as AUDIT_TOPIC;
use runwarden_events::bus::{PubSubBus, PubSubConfig};
use runwarden_events::relay::Relay;
use runwarden_events::topics::Admin;
use runwarden_events::{Actor, AuditEvent, Target};
use runwarden_tenancy::OrgId;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::measure::required_env;

const DEFAULT_EVENTS: usize = 5000;
const PULL_SUBSCRIPTION: &str = "bench-relay-pull";

struct Scenario {
    relays: usize,
    orgs: usize,
}

const SCENARIOS: [Scenario; 3] = [
    Scenario {
        relays: 1,
        orgs: 50,
    },
    Scenario {
        relays: 3,
        orgs: 50,
    },
    Scenario { relays: 1, orgs: 1 },
];

struct Measured {
    relays: usize,
    orgs: usize,
    events: usize,
    elapsed: Duration,
    delivered: usize,
    duplicates: usize,
}

pub fn run() -> anyhow::Result<()> {
    let admin_url = required_env("BENCH_DB_ADMIN_URL")?;
    let relay_url = required_env("BENCH_DB_RELAY_URL")?;
    let host = required_env("PUBSUB_EMULATOR_HOST")
        .context("the relay benchmark publishes to Google's Pub/Sub emulator")?;
    let events: usize = match std::env::var("BENCH_RELAY_EVENTS") {
        Ok(v) => v.trim().parse().context("BENCH_RELAY_EVENTS")?,
        Err(_) => DEFAULT_EVENTS,
    };
    ensure!(events > 0, "BENCH_RELAY_EVENTS must be positive");
    let cores = crate::measure::cores();
    let runtime = crate::measure::runtime()?;
    let results = runtime.block_on(async {
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
        // A project of its own on the emulator, so nothing else reads or writes its topic.
        let project = format!("rwb-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let config = PubSubConfig::emulator(project, &host);
        let topics = Admin::connect(config.clone()).await?;
        topics.ensure_topic(AUDIT_TOPIC).await?;
        topics
            .ensure_pull_subscription(PULL_SUBSCRIPTION, AUDIT_TOPIC, true)
            .await?;
        let mut results = Vec::new();
        for s in &SCENARIOS {
            eprintln!(
                "==> relay: {events} events over {} org(s), {} relay(s)",
                s.orgs, s.relays
            );
            results.push(scenario(&admin, &pool, &config, &host, s, events).await?);
        }
        topics.delete_subscription(PULL_SUBSCRIPTION).await?;
        topics.delete_topic(AUDIT_TOPIC).await?;
        anyhow::Ok(results)
    })?;
    print_table(cores, &results);
    Ok(())
}

async fn pending(admin: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM outbox_events WHERE published_at IS NULL")
            .fetch_one(admin)
            .await?,
    )
}

/// Commits `events` audit events spread over `orgs` orgs, as the runtime role, 100 per
/// transaction (one org per transaction, as a mutation would), 8 transactions at a time.
async fn commit_backlog(pool: &PgPool, orgs: usize, events: usize) -> anyhow::Result<()> {
    let orgs: Vec<OrgId> = (0..orgs).map(|_| OrgId::new()).collect();
    let chunks: Vec<(OrgId, usize)> = (0..events.div_ceil(100))
        .map(|c| (orgs[c % orgs.len()], (events - c * 100).min(100)))
        .collect();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(8));
    let mut tasks = Vec::new();
    for (org, n) in chunks {
        let pool = pool.clone();
        let semaphore = semaphore.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire().await?;
            let mut tx = pool.begin().await?;
            runwarden_tenancy::set_tenant(&mut tx, Some(org), None).await?;
            for i in 0..n {
                AuditEvent::new(
                    org,
                    Actor::user(format!("bench-{i}")),
                    "member.role_change",
                    Target::new("user", format!("u-{i}")),
                )
                .with_details(json!({"from": "member", "to": "admin"}))
                .record(&mut tx)
                .await?;
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

async fn scenario(
    admin: &PgPool,
    pool: &PgPool,
    config: &PubSubConfig,
    host: &str,
    s: &Scenario,
    events: usize,
) -> anyhow::Result<Measured> {
    ensure!(
        pending(admin).await? == 0,
        "the outbox is not empty before the run"
    );
    commit_backlog(pool, s.orgs, events).await?;
    ensure!(
        pending(admin).await? == events as i64,
        "backlog not committed"
    );

    // Each relay as a function instance would run it: its own client, its own loop.
    let mut buses = Vec::new();
    for _ in 0..s.relays {
        buses.push(Arc::new(PubSubBus::connect(config.clone()).await?));
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let mut handles = Vec::new();
    for bus in buses {
        let mut stopped = stopped.clone();
        let relay = Relay::new(pool.clone(), bus);
        handles.push(tokio::spawn(relay.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })));
    }
    let deadline = started + Duration::from_secs(300);
    while pending(admin).await? > 0 {
        ensure!(
            Instant::now() < deadline,
            "the relay did not publish {events} events within 300 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(true);
    for h in handles {
        h.await?;
    }

    let (delivered, duplicates) = pull_all(host, config, events).await?;
    Ok(Measured {
        relays: s.relays,
        orgs: s.orgs,
        events,
        elapsed,
        delivered,
        duplicates,
    })
}

/// Pulls (and acks) until `expected` distinct event ids arrived; returns (distinct, extra).
async fn pull_all(
    host: &str,
    config: &PubSubConfig,
    expected: usize,
) -> anyhow::Result<(usize, usize)> {
    let client = runwarden_e2e::client();
    let base = format!(
        "http://{host}/v1/{}",
        config.subscription_path(PULL_SUBSCRIPTION)
    );
    let mut ids = HashSet::new();
    let mut duplicates = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut empty_after_done = 0;
    while empty_after_done < 2 {
        ensure!(
            Instant::now() < deadline,
            "only {} of {expected} messages came back from the emulator",
            ids.len()
        );
        let reply: Value = client
            .post(format!("{base}:pull"))
            .json(&json!({"maxMessages": 1000, "returnImmediately": true}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let received = reply["receivedMessages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if received.is_empty() {
            if ids.len() >= expected {
                empty_after_done += 1;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let acks: Vec<&str> = received
            .iter()
            .filter_map(|m| m["ackId"].as_str())
            .collect();
        client
            .post(format!("{base}:acknowledge"))
            .json(&json!({ "ackIds": acks }))
            .send()
            .await?
            .error_for_status()?;
        for m in &received {
            let id = m["message"]["attributes"]["event_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if !ids.insert(id) {
                duplicates += 1;
            }
        }
    }
    Ok((ids.len(), duplicates))
}

fn print_table(cores: usize, results: &[Measured]) {
    println!(
        "\nrelay benchmark: {cores} cores; outbox rows committed first, then the clock runs until \
         every row is marked published (each publish accepted by the Pub/Sub emulator); batch 500; \
         database, relay and emulator share the machine\n"
    );
    println!("| # | measurement | throughput | time | delivered (pulled back) | duplicates |");
    println!("|---|---|---|---|---|---|");
    for r in results {
        println!(
            "| R | outbox relay → Pub/Sub emulator, {} relay(s), {} events over {} org(s) (ordering keys) | {:.0} events/s | {:.2} s | {} of {} | {} |",
            r.relays,
            r.events,
            r.orgs,
            r.events as f64 / r.elapsed.as_secs_f64(),
            r.elapsed.as_secs_f64(),
            r.delivered,
            r.events,
            r.duplicates,
        );
    }
}
