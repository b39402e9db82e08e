//! The outbox relay: publishes committed outbox rows to the bus and marks them published.
//!
//! One batch is one transaction:
//! 1. `outbox_claim(n)` locks up to `n` pending rows, oldest first, `FOR UPDATE SKIP LOCKED`
//!    (concurrent relays never claim the same row);
//! 2. every row is handed to the bus and every publish is awaited;
//! 3. `outbox_mark_published` marks the rows the bus accepted, and the transaction commits.
//!
//! A row is marked only after the bus accepted it; a failed publish leaves it pending for a
//! later batch (after a backoff). A crash between publishing and committing leaves the rows
//! pending too, so they are published again: delivery is at-least-once and consumers dedupe
//! by the `event_id` attribute. A rolled-back mutation never had a row, so it is never
//! published.
//!
//! The migration `20261125000007_outbox_relay.sql` provides the two SECURITY DEFINER
//! functions (runtime roles can neither read nor update `outbox_events` directly) and the
//! trigger that `NOTIFY outbox` on every committed insert. [`Relay::run`] listens for those
//! notifications and also polls every second, so a lost notification only delays.
//!
//! A function reads [`RelayConfig`] with its own configuration and starts the relay next to
//! its server, as a background task of its `runwarden_platform::app::Service`:
//! ```text
//! let bus = runwarden_events::bus::PubSubBus::connect(config.relay.pubsub.clone()).await?;
//! let relay = Relay::new(pool.clone(), Arc::new(bus)).with_settings(config.relay.settings.clone());
//! service.background("outbox relay", |mut stop| relay.run(async move { stop.stopped().await }))
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use runwarden_platform::config::{self, ConfigError, Environment};
use sqlx::postgres::PgListener;
use sqlx::{PgConnection, PgPool};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::bus::{Bus, BusError, BusMessage, PubSubConfig};

/// The notification channel of the outbox trigger.
pub const CHANNEL: &str = "outbox";

/// Message attributes set on every published event.
pub const ATTR_EVENT_ID: &str = "event_id";
pub const ATTR_KIND: &str = "kind";

/// One claimed outbox row.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: Uuid,
    pub org_id: Uuid,
    pub topic: String,
    pub kind: String,
    /// The JSON payload as text (what goes on the wire).
    pub payload: String,
}

impl OutboxRow {
    /// The message for this row: data = the JSON payload, attributes `event_id` and `kind`,
    /// ordering key = the org (one org's events are delivered in order).
    pub fn message(&self) -> BusMessage {
        BusMessage {
            topic: self.topic.clone(),
            data: Bytes::from(self.payload.clone().into_bytes()),
            attributes: BTreeMap::from([
                (ATTR_EVENT_ID.to_owned(), self.id.to_string()),
                (ATTR_KIND.to_owned(), self.kind.clone()),
            ]),
            ordering_key: Some(self.org_id.to_string()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{failed} of {claimed} outbox events could not be published (left pending): {first}")]
    Publish {
        claimed: usize,
        failed: usize,
        first: BusError,
    },
}

/// Claims up to `limit` pending rows in the caller's transaction (locks held until it ends).
pub async fn claim(conn: &mut PgConnection, limit: usize) -> Result<Vec<OutboxRow>, sqlx::Error> {
    let limit = i32::try_from(limit).unwrap_or(i32::MAX);
    sqlx::query_as("SELECT id, org_id, topic, kind, payload::text AS payload FROM outbox_claim($1)")
        .bind(limit)
        .fetch_all(conn)
        .await
}

/// Marks rows published in the caller's transaction; returns how many were still pending.
pub async fn mark_published(conn: &mut PgConnection, ids: &[Uuid]) -> Result<u64, sqlx::Error> {
    if ids.is_empty() {
        return Ok(0);
    }
    let marked: i32 = sqlx::query_scalar("SELECT outbox_mark_published($1)")
        .bind(ids)
        .fetch_one(conn)
        .await?;
    Ok(u64::try_from(marked).unwrap_or(0))
}

/// What publishing a set of rows did.
#[derive(Debug)]
pub struct Published {
    /// The ids the bus accepted.
    pub ids: Vec<Uuid>,
    /// The rows it did not, with the first error.
    pub failed: usize,
    pub first_error: Option<BusError>,
}

/// Hands every row to the bus at once (the client batches them) and awaits every publish.
pub async fn publish_all(bus: &dyn Bus, rows: &[OutboxRow]) -> Published {
    let pending: Vec<_> = rows.iter().map(|r| bus.publish(r.message())).collect();
    let results = futures::future::join_all(pending).await;
    let mut out = Published {
        ids: Vec::with_capacity(rows.len()),
        failed: 0,
        first_error: None,
    };
    for (row, result) in rows.iter().zip(results) {
        match result {
            Ok(_) => out.ids.push(row.id),
            Err(e) => {
                out.failed += 1;
                out.first_error.get_or_insert(e);
            }
        }
    }
    out
}

/// How the relay batches, polls and backs off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelaySettings {
    /// Rows per batch (one transaction; at most 1000, Pub/Sub's messages per request).
    pub batch_size: usize,
    /// How often to look for pending rows without a notification.
    pub poll_interval: Duration,
    /// First and longest wait after a failed batch (doubling in between).
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// On shutdown, how long a batch in flight may take to finish before it is abandoned
    /// (its rows stay pending and are published again later).
    pub shutdown_grace: Duration,
}

impl Default for RelaySettings {
    fn default() -> Self {
        Self {
            batch_size: 500,
            poll_interval: Duration::from_secs(1),
            min_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

/// The relay's configuration from the environment: [`PubSubConfig`] (`PUBSUB_PROJECT`,
/// `PUBSUB_EMULATOR_HOST`, `PUBSUB_PUBLISH_TIMEOUT_SECS`) and `OUTBOX_RELAY_BATCH_SIZE`
/// (default 500, 1 to 1000).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelayConfig {
    pub pubsub: PubSubConfig,
    pub settings: RelaySettings,
}

impl RelayConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        let env = Environment::from_env()?;
        let pubsub = PubSubConfig::from_env_in(env)?;
        let batch_size: usize = config::var_parsed("OUTBOX_RELAY_BATCH_SIZE", 500)?;
        if !(1..=1000).contains(&batch_size) {
            return Err(ConfigError::Invalid {
                name: "OUTBOX_RELAY_BATCH_SIZE",
                reason: "expected 1 to 1000".into(),
            });
        }
        Ok(Self {
            pubsub,
            settings: RelaySettings {
                batch_size,
                ..RelaySettings::default()
            },
        })
    }
}

/// What one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchOutcome {
    pub claimed: usize,
    pub published: usize,
}

#[derive(Clone)]
pub struct Relay {
    pool: PgPool,
    bus: Arc<dyn Bus>,
    settings: RelaySettings,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// `pool` connects as the function's runtime role (it needs EXECUTE on the two outbox
    /// functions, nothing else).
    pub fn new(pool: PgPool, bus: Arc<dyn Bus>) -> Self {
        Self {
            pool,
            bus,
            settings: RelaySettings::default(),
        }
    }

    pub fn with_settings(mut self, settings: RelaySettings) -> Self {
        self.settings = settings;
        self
    }

    pub fn settings(&self) -> &RelaySettings {
        &self.settings
    }

    /// One batch: claim, publish all, mark what the bus accepted, commit. Returns an error
    /// (after committing the marks of what did get published) if any publish failed.
    pub async fn relay_batch(&self) -> Result<BatchOutcome, RelayError> {
        let mut tx = self.pool.begin().await?;
        let rows = claim(&mut tx, self.settings.batch_size).await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(BatchOutcome::default());
        }
        let published = publish_all(self.bus.as_ref(), &rows).await;
        mark_published(&mut tx, &published.ids).await?;
        tx.commit().await?;
        let outcome = BatchOutcome {
            claimed: rows.len(),
            published: published.ids.len(),
        };
        match published.first_error {
            None => {
                tracing::debug!(published = outcome.published, "outbox batch published");
                Ok(outcome)
            }
            Some(first) => Err(RelayError::Publish {
                claimed: outcome.claimed,
                failed: published.failed,
                first,
            }),
        }
    }

    /// Batches until no unclaimed row is pending (a batch smaller than the batch size).
    /// Returns how many events were published.
    pub async fn drain(&self) -> Result<usize, RelayError> {
        let mut total = 0;
        loop {
            let outcome = self.relay_batch().await?;
            total += outcome.published;
            if outcome.claimed < self.settings.batch_size {
                return Ok(total);
            }
        }
    }

    /// Runs until `shutdown` resolves: drains whenever the outbox trigger notifies and at
    /// least every `poll_interval`; backs off (doubling, up to `max_backoff`) while publishing
    /// or the database fails. On shutdown a batch in flight gets `shutdown_grace` to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        tokio::pin!(shutdown);
        let mut listener: Option<PgListener> = None;
        let mut backoff = self.settings.min_backoff;
        tracing::info!(
            batch_size = self.settings.batch_size,
            "outbox relay started"
        );
        loop {
            if listener.is_none() {
                listener = self.listen().await;
            }
            let drained = {
                let drain = self.drain();
                tokio::pin!(drain);
                tokio::select! {
                    biased;
                    r = &mut drain => Some(r),
                    () = &mut shutdown => {
                        if tokio::time::timeout(self.settings.shutdown_grace, drain).await.is_err() {
                            tracing::warn!("outbox relay stopped with a batch in flight; its events stay pending");
                        }
                        None
                    }
                }
            };
            let Some(result) = drained else { break };
            match result {
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(published = n, "outbox drained");
                    }
                    backoff = self.settings.min_backoff;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "outbox relay batch failed; retrying");
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.settings.max_backoff);
                    continue;
                }
            }
            // Wait for a notification, the poll interval, or shutdown.
            let poll = tokio::time::sleep(self.settings.poll_interval);
            tokio::pin!(poll);
            match listener.as_mut() {
                Some(l) => {
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        n = l.try_recv() => match n {
                            Ok(Some(_)) => {}
                            Ok(None) | Err(_) => {
                                // The connection was lost: poll until a new one listens.
                                tracing::debug!("outbox listener connection lost; reconnecting");
                                listener = None;
                            }
                        },
                        () = &mut poll => {}
                    }
                }
                None => {
                    tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        () = &mut poll => {}
                    }
                }
            }
        }
        tracing::info!("outbox relay stopped");
    }

    async fn listen(&self) -> Option<PgListener> {
        let result = async {
            let mut l = PgListener::connect_with(&self.pool).await?;
            l.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(l)
        }
        .await;
        match result {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, "outbox relay cannot LISTEN; polling only");
                None
            }
        }
    }
}

/// Starts a relay on the current Tokio runtime; it stops when `shutdown` resolves (await the
/// handle to wait for it).
pub fn spawn(
    pool: PgPool,
    bus: Arc<dyn Bus>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(Relay::new(pool, bus).run(shutdown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_becomes_a_message_keyed_by_org_with_event_attributes() {
        let row = OutboxRow {
            id: Uuid::now_v7(),
            org_id: Uuid::now_v7(),
            topic: "audit-events".into(),
            kind: "member.role_change".into(),
            payload: r#"{"a": 1}"#.into(),
        };
        let m = row.message();
        assert_eq!(m.topic, "audit-events");
        assert_eq!(&m.data[..], br#"{"a": 1}"#);
        assert_eq!(m.attributes[ATTR_EVENT_ID], row.id.to_string());
        assert_eq!(m.attributes[ATTR_KIND], "member.role_change");
        assert_eq!(m.attributes.len(), 2);
        assert_eq!(m.ordering_key, Some(row.org_id.to_string()));
    }
}
