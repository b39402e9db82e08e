//! The outbox relay against a real database (fresh per test, reached as the runtime role
//! `runwarden_auth`) and, where it says so, Google's Pub/Sub emulator.
//!
//! Catalogue rows: LOG-02 (audit atomicity), REL-06 (outbox under kills and concurrent
//! relays), REL-07 (Pub/Sub outage).

mod helpers;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use runwarden_contracts::topics::AUDIT_EVENTS;
use runwarden_events::AuditEvent;
use runwarden_events::bus::{Bus, MemoryBus, PubSubBus, PubSubConfig};
use runwarden_events::relay::{self, Relay, RelayError, RelaySettings};
use runwarden_tenancy::OrgId;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use helpers::*;

fn fast_settings(batch_size: usize) -> RelaySettings {
    RelaySettings {
        batch_size,
        poll_interval: Duration::from_millis(200),
        min_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(400),
        shutdown_grace: Duration::from_secs(2),
    }
}

/// End to end through the emulator: 50 committed events (5 orgs) arrive exactly once, with
/// data = the event JSON, attributes `event_id` and `kind`, ordering key = the org, each
/// org's events in commit order; every row is marked published.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn emulator_delivers_every_committed_event_once_with_attributes_and_key(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let emu = Emulator::new().await;
    emu.create_topic(AUDIT_EVENTS).await;
    let pool = runtime_pool(&options).await;
    let admin = admin_pool(&options).await;
    let orgs: Vec<OrgId> = (0..5).map(|_| OrgId::new()).collect();
    let events = commit_events(&pool, &orgs, 10).await;
    assert_eq!(pending(&admin).await, 50);

    let bus = PubSubBus::connect(emu.config.clone()).await.unwrap();
    let relay = Relay::new(pool.clone(), Arc::new(bus)).with_settings(fast_settings(20));
    assert_eq!(relay.drain().await.unwrap(), 50);
    assert_eq!(pending(&admin).await, 0, "every row is marked published");

    let pulled = emu.pull_exactly(50).await;
    assert_eq!(pulled.len(), 50, "each event arrives once, no extras");
    let by_id: HashMap<String, &AuditEvent> =
        events.iter().map(|e| (e.id.to_string(), e)).collect();
    let mut seen = HashSet::new();
    let mut order: HashMap<String, Vec<String>> = HashMap::new();
    for m in &pulled {
        let id = &m.attributes["event_id"];
        assert!(seen.insert(id.clone()), "event {id} arrived twice");
        assert!(!m.message_id.is_empty(), "Pub/Sub assigned a message id");
        let event = by_id.get(id).expect("a committed event");
        assert_eq!(m.attributes["kind"], event.action);
        assert_eq!(
            m.attributes.len(),
            2,
            "only event_id and kind: {:?}",
            m.attributes
        );
        let body: AuditEvent = serde_json::from_slice(&m.data).expect("data is the event JSON");
        assert_eq!(&body, *event);
        if let Some(key) = &m.ordering_key {
            assert_eq!(key, &event.org_id.to_string(), "ordering key is the org");
        }
        order
            .entry(event.org_id.to_string())
            .or_default()
            .push(id.clone());
    }
    assert!(
        pulled.iter().all(|m| m.ordering_key.is_some()),
        "the emulator returned messages without an ordering key"
    );
    for org in &orgs {
        let expected: Vec<String> = events
            .iter()
            .filter(|e| e.org_id == *org)
            .map(|e| e.id.to_string())
            .collect();
        assert_eq!(
            order[&org.to_string()],
            expected,
            "one org's events in commit order"
        );
    }
}

/// LOG-02: an event recorded in a transaction that rolls back (explicitly, or because the
/// mutation failed after the insert) is never published; committed ones are.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn log02_rolled_back_events_are_never_published(_: PgPoolOptions, options: PgConnectOptions) {
    let pool = runtime_pool(&options).await;
    let admin = admin_pool(&options).await;
    let org = OrgId::new();

    let rolled_back = event(org, 1);
    let mut tx = pool.begin().await.unwrap();
    runwarden_tenancy::set_tenant(&mut tx, Some(org), None)
        .await
        .unwrap();
    rolled_back.record(&mut tx).await.unwrap();
    tx.rollback().await.unwrap();

    // The mutation fails after its event was written: the whole transaction is lost.
    let failed = event(org, 2);
    let mut tx = pool.begin().await.unwrap();
    runwarden_tenancy::set_tenant(&mut tx, Some(org), None)
        .await
        .unwrap();
    failed.record(&mut tx).await.unwrap();
    let err = sqlx::query("SELECT 1/0").execute(&mut *tx).await;
    assert!(err.is_err());
    drop(tx);

    let committed = event(org, 3);
    commit_event(&pool, &committed).await;

    let bus = Arc::new(MemoryBus::new());
    let relay = Relay::new(pool.clone(), bus.clone());
    assert_eq!(relay.drain().await.unwrap(), 1);
    let counts = bus.count_by_attribute("event_id");
    assert_eq!(counts.len(), 1);
    assert_eq!(counts[&committed.id.to_string()], 1);
    assert!(!counts.contains_key(&rolled_back.id.to_string()));
    assert!(!counts.contains_key(&failed.id.to_string()));
    assert_eq!(total(&admin).await, 1);
}

/// REL-06: while the bus fails, nothing is marked and every row stays pending; a later
/// relay publishes every one of them once.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn rel06_a_failing_bus_leaves_rows_pending_and_a_later_relay_publishes_them(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = runtime_pool(&options).await;
    let admin = admin_pool(&options).await;
    let events = commit_events(&pool, &[OrgId::new(), OrgId::new()], 15).await;

    let bus = Arc::new(MemoryBus::new());
    bus.set_failing(true);
    let relay = Relay::new(pool.clone(), bus.clone()).with_settings(fast_settings(10));
    let err = relay.drain().await.unwrap_err();
    assert!(
        matches!(
            err,
            RelayError::Publish {
                claimed: 10,
                failed: 10,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        pending(&admin).await,
        30,
        "nothing is marked unless published"
    );
    assert!(bus.published().is_empty());

    bus.set_failing(false);
    let later = Relay::new(pool.clone(), bus.clone()).with_settings(fast_settings(10));
    assert_eq!(later.drain().await.unwrap(), 30);
    assert_eq!(pending(&admin).await, 0);
    let counts = bus.count_by_attribute("event_id");
    assert_eq!(counts.len(), 30);
    for e in &events {
        assert_eq!(counts[&e.id.to_string()], 1);
    }
}

/// REL-06 with the real client: publishing to a topic that does not exist (yet) on the
/// emulator fails and leaves every row pending; once the topic exists the relay publishes
/// them all.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn rel06_missing_topic_on_the_emulator_leaves_rows_pending_until_it_exists(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let emu = Emulator::new().await;
    let pool = runtime_pool(&options).await;
    let admin = admin_pool(&options).await;
    commit_events(&pool, &[OrgId::new()], 12).await;

    let bus = Arc::new(PubSubBus::connect(emu.config.clone()).await.unwrap());
    let relay = Relay::new(pool.clone(), bus.clone()).with_settings(fast_settings(50));
    let err = relay.drain().await.unwrap_err();
    assert!(
        matches!(err, RelayError::Publish { failed: 12, .. }),
        "{err}"
    );
    assert_eq!(pending(&admin).await, 12);

    emu.create_topic(AUDIT_EVENTS).await;
    // The same client recovers (the failed ordering key was resumed).
    assert_eq!(relay.drain().await.unwrap(), 12);
    assert_eq!(pending(&admin).await, 0);
    let pulled = emu.pull_exactly(12).await;
    let ids: HashSet<_> = pulled
        .iter()
        .map(|m| m.attributes["event_id"].clone())
        .collect();
    assert_eq!((pulled.len(), ids.len()), (12, 12));
}

/// REL-06: a relay killed after publishing but before marking (its transaction is dropped,
/// as a killed process's would be) loses nothing: the rows are still pending and the next
/// relay publishes them again (a duplicate that consumers drop by event id).
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn rel06_crash_between_publish_and_mark_republishes_and_loses_nothing(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = runtime_pool(&options).await;
    let admin = admin_pool(&options).await;
    let events = commit_events(&pool, &[OrgId::new(), OrgId::new()], 10).await;
    let bus = Arc::new(MemoryBus::new());

    {
        let mut tx = pool.begin().await.unwrap();
        let rows = relay::claim(&mut tx, 8).await.unwrap();
        assert_eq!(rows.len(), 8);
        let published = relay::publish_all(bus.as_ref(), &rows).await;
        assert_eq!(published.ids.len(), 8);
        // killed here: no mark, no commit
        drop(tx);
    }
    assert_eq!(
        pending(&admin).await,
        20,
        "the crashed batch is still pending"
    );

    let relay = Relay::new(pool.clone(), bus.clone()).with_settings(fast_settings(8));
    assert_eq!(relay.drain().await.unwrap(), 20);
    assert_eq!(pending(&admin).await, 0);
    let counts = bus.count_by_attribute("event_id");
    assert_eq!(counts.len(), 20, "no event lost");
    let duplicated = counts.values().filter(|&&c| c == 2).count();
    assert_eq!(
        duplicated, 8,
        "exactly the crashed batch was published twice"
    );
    assert!(counts.values().all(|&c| c == 1 || c == 2));
    let oldest: HashSet<String> = events.iter().take(8).map(|e| e.id.to_string()).collect();
    for (id, c) in &counts {
        assert_eq!(
            *c == 2,
            oldest.contains(id),
            "the oldest 8 were the claimed batch"
        );
    }
}

/// REL-06: three relays draining 300 events at once: every event is published, and none is
/// published by two relays (each exactly once), so SKIP LOCKED splits the work.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn rel06_three_concurrent_relays_publish_each_of_300_events_exactly_once(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = runtime_pool(&options).await;
    let admin = admin_pool(&options).await;
    let orgs: Vec<OrgId> = (0..3).map(|_| OrgId::new()).collect();
    let events = commit_events(&pool, &orgs, 100).await;

    let bus = Arc::new(MemoryBus::new());
    bus.set_delay(Some(Duration::from_millis(3)));
    let mut relays = Vec::new();
    for _ in 0..3 {
        let relay = Relay::new(pool.clone(), bus.clone()).with_settings(fast_settings(10));
        relays.push(tokio::spawn(async move { relay.drain().await }));
    }
    let mut per_relay = Vec::new();
    for r in relays {
        per_relay.push(r.await.unwrap().unwrap());
    }
    // A relay stops when it sees less than a batch unclaimed; finish what is left.
    let rest = Relay::new(pool.clone(), bus.clone()).drain().await.unwrap();
    assert_eq!(
        per_relay.iter().sum::<usize>() + rest,
        300,
        "{per_relay:?} + {rest}"
    );
    assert!(
        per_relay.iter().filter(|&&n| n > 0).count() >= 2,
        "the relays ran concurrently: {per_relay:?}"
    );
    assert_eq!(pending(&admin).await, 0);
    let counts = bus.count_by_attribute("event_id");
    assert_eq!(counts.len(), 300);
    for e in &events {
        assert_eq!(
            counts[&e.id.to_string()],
            1,
            "event {} published once",
            e.id
        );
    }
}

/// REL-07: with Pub/Sub unreachable (a dead endpoint) writes keep committing and the
/// running relay keeps failing without marking anything; after Pub/Sub is back the backlog
/// drains through the emulator, every event once. Shutdown then stops the relay promptly.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn rel07_writes_commit_during_a_pubsub_outage_and_the_backlog_drains_after(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let emu = Emulator::new().await;
    emu.create_topic(AUDIT_EVENTS).await;
    let pool = runtime_pool(&options).await;
    let admin = admin_pool(&options).await;

    let dead = PubSubConfig::emulator(emu.config.project.clone(), "127.0.0.1:9")
        .with_publish_timeout(Duration::from_millis(500));
    let bus = Arc::new(SwitchBus {
        up: Arc::new(PubSubBus::connect(emu.config.clone()).await.unwrap()),
        down: Arc::new(PubSubBus::connect(dead).await.unwrap()),
        is_up: AtomicBool::new(false),
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = Relay::new(pool.clone(), bus.clone()).with_settings(fast_settings(25));
    let handle = tokio::spawn(relay.run(async {
        let _ = stopped.await;
    }));

    // Writes during the outage: each commits at once, whatever the bus does.
    let orgs: Vec<OrgId> = (0..4).map(|_| OrgId::new()).collect();
    let started = Instant::now();
    let mut events = Vec::new();
    for round in 0..5 {
        events.extend(commit_events(&pool, &orgs, 5).await);
        if round < 4 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let write_time = started.elapsed();
    assert!(
        write_time < Duration::from_secs(5),
        "100 writes took {write_time:?} while Pub/Sub was down"
    );
    assert_eq!(total(&admin).await, 100);
    assert_eq!(
        pending(&admin).await,
        100,
        "nothing is marked while Pub/Sub is down"
    );

    bus.set_up(true);
    eventually(Duration::from_secs(20), "the backlog drains", || async {
        pending(&admin).await == 0
    })
    .await;
    let pulled = emu.pull_exactly(100).await;
    let ids: HashSet<String> = pulled
        .iter()
        .map(|m| m.attributes["event_id"].clone())
        .collect();
    assert_eq!(pulled.len(), 100, "each event once");
    let expected: HashSet<String> = events.iter().map(|e| e.id.to_string()).collect();
    assert_eq!(ids, expected);

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(3), handle)
        .await
        .expect("the relay stops within 3 s of shutdown")
        .unwrap();
}

/// The running relay is woken by the outbox trigger's NOTIFY (not only by its poll: the
/// poll interval here is a minute), publishes, and stops cleanly on shutdown.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn relay_wakes_on_notify_and_stops_on_shutdown(_: PgPoolOptions, options: PgConnectOptions) {
    let pool = runtime_pool(&options).await;
    let admin = admin_pool(&options).await;
    let bus = Arc::new(MemoryBus::new());
    let settings = RelaySettings {
        poll_interval: Duration::from_secs(60),
        ..fast_settings(100)
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(
        Relay::new(pool.clone(), bus.clone() as Arc<dyn Bus>)
            .with_settings(settings)
            .run(async {
                let _ = stopped.await;
            }),
    );
    // Let it drain the empty outbox and start listening.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for round in 0..3 {
        let e = event(OrgId::new(), round);
        commit_event(&pool, &e).await;
        eventually(
            Duration::from_secs(3),
            "the notified relay publishes",
            || {
                let bus = bus.clone();
                let id = e.id.to_string();
                async move { bus.count_by_attribute("event_id").contains_key(&id) }
            },
        )
        .await;
    }
    assert_eq!(pending(&admin).await, 0);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(2), handle)
        .await
        .expect("the relay stops within 2 s")
        .unwrap();
}

/// The spawn helper starts a relay that stops with its shutdown future.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn spawn_starts_a_relay_that_publishes_and_stops(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = runtime_pool(&options).await;
    let admin = admin_pool(&options).await;
    commit_events(&pool, &[OrgId::new()], 3).await;
    let bus = Arc::new(MemoryBus::new());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = relay::spawn(pool.clone(), bus.clone(), async {
        let _ = stopped.await;
    });
    eventually(
        Duration::from_secs(5),
        "the spawned relay drains",
        || async { pending(&admin).await == 0 },
    )
    .await;
    assert_eq!(bus.published().len(), 3);
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(2), handle)
        .await
        .expect("stops")
        .unwrap();
}

/// Only the events the bus accepted are marked; the refused ones stay pending and are the
/// only ones a later batch publishes.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn only_events_the_bus_accepted_are_marked(_: PgPoolOptions, options: PgConnectOptions) {
    let pool = runtime_pool(&options).await;
    let admin = admin_pool(&options).await;
    let events = commit_events(&pool, &[OrgId::new()], 10).await;
    let refused: Vec<String> = events.iter().step_by(3).map(|e| e.id.to_string()).collect();
    let bus = Arc::new(SelectiveBus::default());
    bus.refuse.lock().unwrap().extend(refused.iter().cloned());

    let relay = Relay::new(pool.clone(), bus.clone()).with_settings(fast_settings(100));
    let err = relay.relay_batch().await.unwrap_err();
    assert!(
        matches!(
            err,
            RelayError::Publish {
                claimed: 10,
                failed: 4,
                ..
            }
        ),
        "{err}"
    );
    let still: Vec<String> = sqlx::query_scalar(
        "SELECT id::text FROM outbox_events WHERE published_at IS NULL ORDER BY created_at",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    assert_eq!(still, refused);

    bus.refuse.lock().unwrap().clear();
    assert_eq!(relay.drain().await.unwrap(), 4);
    assert_eq!(pending(&admin).await, 0);
    assert_eq!(bus.accepted.lock().unwrap().len(), 10);
}

/// The runtime roles still cannot read or rewrite the outbox directly (RLS and grants); they
/// reach it only through the two functions, and the audit role not even through those.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn runtime_roles_reach_the_outbox_only_through_the_relay_functions(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = runtime_pool(&options).await;
    let org = OrgId::new();
    commit_events(&pool, &[org], 2).await;

    let mut tx = pool.begin().await.unwrap();
    runwarden_tenancy::set_tenant(&mut tx, Some(org), None)
        .await
        .unwrap();
    let select = sqlx::query("SELECT * FROM outbox_events")
        .execute(&mut *tx)
        .await;
    assert!(
        select
            .unwrap_err()
            .to_string()
            .contains("permission denied")
    );
    drop(tx);
    let update = sqlx::query("UPDATE outbox_events SET published_at = now()")
        .execute(&pool)
        .await;
    assert!(
        update
            .unwrap_err()
            .to_string()
            .contains("permission denied")
    );

    for role in ["runwarden_audit"] {
        let other = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone().username(role))
            .await
            .unwrap();
        for sql in [
            "SELECT * FROM outbox_claim(10)",
            "SELECT outbox_mark_published(ARRAY[]::uuid[])",
        ] {
            let err = sqlx::query(sql).execute(&other).await.unwrap_err();
            assert!(
                err.to_string().contains("permission denied"),
                "{role}: {sql}: {err}"
            );
        }
    }
    for role in ["runwarden_runs", "runwarden_quotas"] {
        let other = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone().username(role))
            .await
            .unwrap();
        let mut tx = other.begin().await.unwrap();
        let rows = relay::claim(&mut tx, 10).await.unwrap();
        assert_eq!(rows.len(), 2, "{role} relays every org's events");
        tx.rollback().await.unwrap();
    }
}
