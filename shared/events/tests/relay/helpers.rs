//! Test harness: a fresh migrated database per test (`#[sqlx::test]`), reached as the
//! runtime role `runwarden_auth` (so every write and every relay call runs under row-level
//! security and the role's grants), plus Google's Pub/Sub emulator for the end-to-end tests.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::future::BoxFuture;
use runwarden_events::bus::{Bus, BusError, BusMessage, PubSubConfig};
use runwarden_events::topics::Admin;
use runwarden_events::{Actor, AuditEvent, Target};
use runwarden_tenancy::OrgId;
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

/// A pool of the runtime role `runwarden_auth` on the test's database.
pub async fn runtime_pool(options: &PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(20)
        .connect_with(options.clone().username(runwarden_store::roles::AUTH))
        .await
        .expect("connecting as runwarden_auth")
}

/// A superuser pool on the same database, to inspect rows behind RLS.
pub async fn admin_pool(options: &PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options.clone())
        .await
        .expect("connecting as the superuser")
}

pub fn event(org: OrgId, n: usize) -> AuditEvent {
    AuditEvent::new(
        org,
        Actor::user(format!("user-{n}")),
        "member.role_change",
        Target::new("user", format!("target-{n}")),
    )
    .with_details(json!({ "n": n }))
}

/// Commits one event in its own transaction, as a mutation would (tenant set, runtime role).
pub async fn commit_event(pool: &PgPool, event: &AuditEvent) {
    let mut tx = pool.begin().await.unwrap();
    runwarden_tenancy::set_tenant(&mut tx, Some(event.org_id), None)
        .await
        .unwrap();
    event.record(&mut tx).await.unwrap();
    tx.commit().await.unwrap();
}

/// Commits `per_org` events for each org, interleaved, each in its own transaction.
pub async fn commit_events(pool: &PgPool, orgs: &[OrgId], per_org: usize) -> Vec<AuditEvent> {
    let mut events = Vec::with_capacity(orgs.len() * per_org);
    for n in 0..per_org {
        for org in orgs {
            let e = event(*org, n);
            commit_event(pool, &e).await;
            events.push(e);
        }
    }
    events
}

pub async fn pending(admin: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox_events WHERE published_at IS NULL")
        .fetch_one(admin)
        .await
        .unwrap()
}

pub async fn total(admin: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM outbox_events")
        .fetch_one(admin)
        .await
        .unwrap()
}

/// Polls `check` every 20 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------------------
// buses

/// A bus that delegates to one of two buses; flipping it simulates an outage and recovery.
pub struct SwitchBus {
    pub up: Arc<dyn Bus>,
    pub down: Arc<dyn Bus>,
    pub is_up: AtomicBool,
}

impl SwitchBus {
    pub fn set_up(&self, up: bool) {
        self.is_up.store(up, Ordering::SeqCst);
    }
}

impl Bus for SwitchBus {
    fn publish(&self, message: BusMessage) -> BoxFuture<'static, Result<String, BusError>> {
        if self.is_up.load(Ordering::SeqCst) {
            self.up.publish(message)
        } else {
            self.down.publish(message)
        }
    }
}

/// A bus that refuses every message whose event id is in `refuse` and accepts the others
/// (recording them), to check that only accepted events are marked.
#[derive(Default)]
pub struct SelectiveBus {
    pub refuse: std::sync::Mutex<std::collections::HashSet<String>>,
    pub accepted: std::sync::Mutex<Vec<BusMessage>>,
}

impl Bus for SelectiveBus {
    fn publish(&self, message: BusMessage) -> BoxFuture<'static, Result<String, BusError>> {
        let id = message.attributes["event_id"].clone();
        let result = if self.refuse.lock().unwrap().contains(&id) {
            Err(BusError::Publish {
                topic: message.topic,
                reason: "refused by the test".into(),
            })
        } else {
            self.accepted.lock().unwrap().push(message);
            Ok(id)
        };
        Box::pin(async move { result })
    }
}

// ---------------------------------------------------------------------------------------
// the Pub/Sub emulator

/// `PUBSUB_EMULATOR_HOST`, checked to be reachable. The end-to-end tests never skip: without
/// the emulator they fail with what to do.
pub async fn emulator_host() -> String {
    let host = std::env::var("PUBSUB_EMULATOR_HOST")
        .ok()
        .filter(|h| !h.trim().is_empty());
    let Some(host) = host else {
        panic!(
            "PUBSUB_EMULATOR_HOST is not set: these tests publish to Google's Pub/Sub emulator. \
             Run them through scripts/test (which starts it), or start it yourself \
             (gcloud beta emulators pubsub start --host-port=127.0.0.1:8085) and export \
             PUBSUB_EMULATOR_HOST=127.0.0.1:8085"
        );
    };
    let reachable = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect(host.trim()),
    )
    .await;
    assert!(
        matches!(reachable, Ok(Ok(_))),
        "the Pub/Sub emulator at PUBSUB_EMULATOR_HOST={host} is not reachable; start it \
         (scripts/test does) and re-run"
    );
    host.trim().to_owned()
}

/// One test's own Pub/Sub world on the emulator: a project of its own (so the topic can be
/// the real `audit-events` without meeting other tests' messages), the topic, and a pull
/// subscription to read back what the relay published.
pub struct Emulator {
    pub host: String,
    pub config: PubSubConfig,
    pub admin: Admin,
    pub subscription: String,
    http: reqwest::Client,
}

/// A message as the emulator delivered it.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub data: Vec<u8>,
    pub attributes: HashMap<String, String>,
    pub ordering_key: Option<String>,
    pub message_id: String,
}

impl Emulator {
    /// A fresh project; creates nothing yet.
    pub async fn new() -> Self {
        let host = emulator_host().await;
        let project = format!("rwt-{}", &Uuid::new_v4().simple().to_string()[..16]);
        let config = PubSubConfig::emulator(project, &host);
        let admin = Admin::connect(config.clone()).await.expect("admin client");
        Self {
            host,
            config,
            admin,
            subscription: "relay-test-pull".into(),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        }
    }

    /// Creates `topic` and the test's pull subscription on it (ordering enabled).
    pub async fn create_topic(&self, topic: &str) {
        self.admin
            .ensure_topic(topic)
            .await
            .expect("creating topic");
        self.admin
            .ensure_pull_subscription(&self.subscription, topic, true)
            .await
            .expect("creating pull subscription");
    }

    fn url(&self, verb: &str) -> String {
        format!(
            "http://{}/v1/{}:{verb}",
            self.host,
            self.config.subscription_path(&self.subscription)
        )
    }

    /// One pull (acknowledging what it got).
    pub async fn pull_once(&self) -> Vec<Pulled> {
        let reply: Value = self
            .http
            .post(self.url("pull"))
            .json(&json!({ "maxMessages": 1000, "returnImmediately": true }))
            .send()
            .await
            .expect("pull request")
            .error_for_status()
            .expect("pull status")
            .json()
            .await
            .expect("pull reply");
        let received = reply["receivedMessages"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if received.is_empty() {
            return Vec::new();
        }
        let ack_ids: Vec<&str> = received
            .iter()
            .filter_map(|m| m["ackId"].as_str())
            .collect();
        self.http
            .post(self.url("acknowledge"))
            .json(&json!({ "ackIds": ack_ids }))
            .send()
            .await
            .expect("ack request")
            .error_for_status()
            .expect("ack status");
        received
            .iter()
            .map(|m| {
                let msg = &m["message"];
                let data = msg["data"].as_str().unwrap_or_default();
                Pulled {
                    data: base64::engine::general_purpose::STANDARD
                        .decode(data)
                        .expect("base64 data"),
                    attributes: serde_json::from_value(msg["attributes"].clone())
                        .unwrap_or_default(),
                    ordering_key: msg["orderingKey"]
                        .as_str()
                        .filter(|k| !k.is_empty())
                        .map(str::to_owned),
                    message_id: msg["messageId"].as_str().unwrap_or_default().to_owned(),
                }
            })
            .collect()
    }

    /// Pulls until `n` messages arrived (or fails after 15 s), then once more after a pause
    /// to catch extras; returns everything pulled.
    pub async fn pull_exactly(&self, n: usize) -> Vec<Pulled> {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut got = Vec::new();
        while got.len() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} messages arrived within 15 s",
                got.len()
            );
            let batch = self.pull_once().await;
            if batch.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            got.extend(batch);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        got.extend(self.pull_once().await);
        got
    }
}
