//! The message bus the outbox relay publishes to: a small [`Bus`] trait, its real adapter
//! over Google's `google-cloud-pubsub` [`Publisher`] ([`PubSubBus`]), and, for tests only
//! (feature `test-util`), an in-memory adapter ([`MemoryBus`]).
//!
//! Locally and in tests the real adapter talks to Google's Pub/Sub emulator: the Rust crates
//! ignore `PUBSUB_EMULATOR_HOST`, so [`PubSubConfig`] turns it into an explicit endpoint and
//! anonymous credentials. In production the client uses Application Default Credentials
//! (the service account of the Cloud Run service) and the emulator variable is refused.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use google_cloud_gax::retry_policy::RetryPolicyExt as _;
use google_cloud_pubsub::client::{BasePublisher, Publisher};
use google_cloud_pubsub::model::Message;
use google_cloud_pubsub::retry_policy::RetryableErrors;
use runwarden_platform::config::{self, ConfigError, Environment};

/// The Google Cloud project used when `PUBSUB_PROJECT` is unset outside production.
pub const LOCAL_PROJECT: &str = "runwarden-local";

/// One message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusMessage {
    /// The topic id (`audit-events`), not its full resource name.
    pub topic: String,
    pub data: Bytes,
    pub attributes: BTreeMap<String, String>,
    /// Messages with the same key are delivered in publish order (subscriptions with
    /// message ordering enabled). `None` publishes without a key.
    pub ordering_key: Option<String>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    #[error("publishing to topic {topic} failed: {reason}")]
    Publish { topic: String, reason: String },
    #[error("could not create the Pub/Sub client: {0}")]
    Client(String),
}

/// Publishes messages. `publish` hands the message to the client at once (so a caller can
/// start many publishes and let the client batch them) and returns a future that resolves
/// to the message id the bus assigned, once the bus has accepted the message.
pub trait Bus: Send + Sync + 'static {
    fn publish(&self, message: BusMessage) -> BoxFuture<'static, Result<String, BusError>>;
}

/// Where and how to reach Pub/Sub, read from the environment:
///
/// - `PUBSUB_PROJECT`: the Google Cloud project of the topics; required in production,
///   `runwarden-local` otherwise.
/// - `PUBSUB_EMULATOR_HOST`: `host:port` (or a URL) of Google's Pub/Sub emulator; local and
///   test only: a production process refuses to start with it set.
/// - `PUBSUB_PUBLISH_TIMEOUT_SECS`: how long one publish may retry transient errors before
///   it fails (default 10): the relay then leaves the rows pending and retries later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubSubConfig {
    pub project: String,
    /// The emulator's endpoint as a URL (`http://127.0.0.1:8085`), or `None` for Google.
    pub emulator_endpoint: Option<String>,
    pub publish_timeout: Duration,
}

impl PubSubConfig {
    pub const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_in(Environment::from_env()?)
    }

    pub fn from_env_in(env: Environment) -> Result<Self, ConfigError> {
        Self::from_values(
            env,
            config::optional_var("PUBSUB_PROJECT"),
            config::optional_var("PUBSUB_EMULATOR_HOST"),
            config::optional_var("PUBSUB_PUBLISH_TIMEOUT_SECS"),
        )
    }

    fn from_values(
        env: Environment,
        project: Option<String>,
        emulator_host: Option<String>,
        publish_timeout_secs: Option<String>,
    ) -> Result<Self, ConfigError> {
        let project = match project {
            Some(p) => p,
            None if env.is_production() => return Err(ConfigError::Missing("PUBSUB_PROJECT")),
            None => LOCAL_PROJECT.to_owned(),
        };
        validate_project(&project)?;
        let emulator_endpoint = match emulator_host {
            Some(_) if env.is_production() => {
                return Err(ConfigError::Invalid {
                    name: "PUBSUB_EMULATOR_HOST",
                    reason: "the Pub/Sub emulator must not be used in production; unset it".into(),
                });
            }
            Some(host) => Some(emulator_endpoint(&host)),
            None => None,
        };
        let secs: u64 = match publish_timeout_secs {
            Some(raw) => config::parse_value("PUBSUB_PUBLISH_TIMEOUT_SECS", &raw)?,
            None => Self::DEFAULT_PUBLISH_TIMEOUT.as_secs(),
        };
        if secs == 0 || secs > 600 {
            return Err(ConfigError::Invalid {
                name: "PUBSUB_PUBLISH_TIMEOUT_SECS",
                reason: "expected 1 to 600 seconds".into(),
            });
        }
        Ok(Self {
            project,
            emulator_endpoint,
            publish_timeout: Duration::from_secs(secs),
        })
    }

    /// A configuration for the emulator at `host` (`127.0.0.1:8085` or a URL).
    pub fn emulator(project: impl Into<String>, host: &str) -> Self {
        Self {
            project: project.into(),
            emulator_endpoint: Some(emulator_endpoint(host)),
            publish_timeout: Self::DEFAULT_PUBLISH_TIMEOUT,
        }
    }

    pub fn with_publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// `projects/{project}/topics/{topic}`.
    pub fn topic_path(&self, topic: &str) -> String {
        format!("projects/{}/topics/{topic}", self.project)
    }

    /// `projects/{project}/subscriptions/{subscription}`.
    pub fn subscription_path(&self, subscription: &str) -> String {
        format!("projects/{}/subscriptions/{subscription}", self.project)
    }
}

/// `127.0.0.1:8085` → `http://127.0.0.1:8085`; a value with a scheme is kept as it is.
fn emulator_endpoint(host: &str) -> String {
    let host = host.trim().trim_end_matches('/');
    if host.contains("://") {
        host.to_owned()
    } else {
        format!("http://{host}")
    }
}

/// Project ids are 6 to 30 lower-case letters, digits and hyphens (checked so that a typo
/// fails at start-up rather than as a NotFound at the first publish).
fn validate_project(project: &str) -> Result<(), ConfigError> {
    let ok = (6..=30).contains(&project.len())
        && project
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && project.as_bytes()[0].is_ascii_lowercase();
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            name: "PUBSUB_PROJECT",
            reason: "expected a Google Cloud project id (6-30 lower-case letters, digits, hyphens)"
                .into(),
        })
    }
}

/// The real bus: Google's `Publisher`, one per topic, built on first use from one shared
/// `BasePublisher` (one gRPC channel) and kept for the life of the process.
pub struct PubSubBus {
    config: PubSubConfig,
    base: BasePublisher,
    publishers: Mutex<HashMap<String, Publisher>>,
}

impl std::fmt::Debug for PubSubBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSubBus")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Messages per publish request. Pub/Sub's maximum is 1000; a relay batch is at most that.
const PUBLISH_BATCH_MESSAGES: u32 = 1000;

impl PubSubBus {
    /// Builds the client (no network traffic yet; credentials are fetched at the first
    /// publish). Must run inside a Tokio runtime.
    pub async fn connect(config: PubSubConfig) -> Result<Self, BusError> {
        // Transient errors (unavailable, timeouts, connection refused) are retried with the
        // client's backoff for at most `publish_timeout`; then the publish fails and the
        // relay retries the still-pending rows with its own backoff.
        let retry = RetryableErrors.with_time_limit(config.publish_timeout);
        let mut builder = BasePublisher::builder().with_retry_policy(retry);
        if let Some(endpoint) = &config.emulator_endpoint {
            builder = builder.with_endpoint(endpoint.clone()).with_credentials(
                google_cloud_auth::credentials::anonymous::Builder::new().build(),
            );
        }
        let base = builder
            .build()
            .await
            .map_err(|e| BusError::Client(e.to_string()))?;
        Ok(Self {
            config,
            base,
            publishers: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &PubSubConfig {
        &self.config
    }

    fn publisher(&self, topic: &str) -> Publisher {
        let mut publishers = self
            .publishers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        publishers
            .entry(topic.to_owned())
            .or_insert_with(|| {
                self.base
                    .publisher(self.config.topic_path(topic))
                    .set_message_count_threshold(PUBLISH_BATCH_MESSAGES)
                    .build()
            })
            .clone()
    }

    /// Waits until every message handed to any of the publishers has been sent.
    pub async fn flush(&self) {
        let publishers: Vec<Publisher> = self
            .publishers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for p in publishers {
            p.flush().await;
        }
    }
}

impl Bus for PubSubBus {
    fn publish(&self, message: BusMessage) -> BoxFuture<'static, Result<String, BusError>> {
        let publisher = self.publisher(&message.topic);
        let BusMessage {
            topic,
            data,
            attributes,
            ordering_key,
        } = message;
        let mut msg = Message::new().set_data(data).set_attributes(attributes);
        if let Some(key) = &ordering_key {
            msg = msg.set_ordering_key(key.clone());
        }
        let pending = publisher.publish(msg);
        Box::pin(async move {
            match pending.await {
                Ok(id) => Ok(id),
                Err(e) => {
                    // After a failed publish the client pauses the ordering key (it fails
                    // every later message of that key) until told to resume. The caller
                    // republishes what failed, so let the key go on.
                    if let Some(key) = ordering_key {
                        publisher.resume_publish(key);
                    }
                    Err(BusError::Publish {
                        topic,
                        reason: error_chain(&e),
                    })
                }
            }
        })
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(any(test, feature = "test-util"))]
pub use memory::MemoryBus;

#[cfg(any(test, feature = "test-util"))]
mod memory {
    use std::collections::HashMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use futures::future::BoxFuture;

    use super::{Bus, BusError, BusMessage};

    /// An in-memory bus for tests: records every accepted message, and can be told to fail
    /// (as an unreachable Pub/Sub would) or to take time per publish.
    #[derive(Debug, Default)]
    pub struct MemoryBus {
        published: Mutex<Vec<BusMessage>>,
        failing: AtomicBool,
        delay: Mutex<Option<Duration>>,
    }

    impl MemoryBus {
        pub fn new() -> Self {
            Self::default()
        }

        /// While `true`, every publish fails and nothing is recorded.
        pub fn set_failing(&self, failing: bool) {
            self.failing.store(failing, Ordering::SeqCst);
        }

        /// Every publish waits this long before it is accepted (or fails).
        pub fn set_delay(&self, delay: Option<Duration>) {
            *self.delay.lock().unwrap() = delay;
        }

        /// Every accepted message, in acceptance order.
        pub fn published(&self) -> Vec<BusMessage> {
            self.published.lock().unwrap().clone()
        }

        /// How many times each value of `attribute` was published.
        pub fn count_by_attribute(&self, attribute: &str) -> HashMap<String, usize> {
            let mut counts = HashMap::new();
            for m in self.published.lock().unwrap().iter() {
                if let Some(v) = m.attributes.get(attribute) {
                    *counts.entry(v.clone()).or_insert(0) += 1;
                }
            }
            counts
        }
    }

    impl Bus for MemoryBus {
        fn publish(&self, message: BusMessage) -> BoxFuture<'static, Result<String, BusError>> {
            let delay = *self.delay.lock().unwrap();
            // Decided when the publish starts (like a client that cannot connect).
            let failing = self.failing.load(Ordering::SeqCst);
            let outcome = if failing {
                Err(BusError::Publish {
                    topic: message.topic,
                    reason: "the in-memory bus is failing".into(),
                })
            } else {
                let mut published = self.published.lock().unwrap();
                published.push(message);
                Ok(published.len().to_string())
            };
            Box::pin(async move {
                if let Some(d) = delay {
                    tokio::time::sleep(d).await;
                }
                outcome
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulator_host_becomes_an_http_endpoint() {
        assert_eq!(emulator_endpoint("127.0.0.1:8085"), "http://127.0.0.1:8085");
        assert_eq!(
            emulator_endpoint("http://127.0.0.1:8085/"),
            "http://127.0.0.1:8085"
        );
        let c = PubSubConfig::emulator("runwarden-local", "127.0.0.1:8085");
        assert_eq!(
            c.topic_path("audit-events"),
            "projects/runwarden-local/topics/audit-events"
        );
        assert_eq!(
            c.subscription_path("audit-events-push"),
            "projects/runwarden-local/subscriptions/audit-events-push"
        );
    }

    #[test]
    fn project_ids_are_validated() {
        assert!(validate_project("runwarden-local").is_ok());
        assert!(validate_project("my-prod-123").is_ok());
        for bad in [
            "",
            "abc",
            "Upper-Case",
            "1starts-with-digit",
            "has/slash",
            "a b c d e f",
        ] {
            let err = validate_project(bad).unwrap_err();
            assert!(err.to_string().contains("PUBSUB_PROJECT"), "{bad}: {err}");
        }
    }

    #[test]
    fn production_requires_a_project_and_refuses_the_emulator() {
        let prod = Environment::Production;
        let dev = Environment::Development;
        assert_eq!(
            PubSubConfig::from_values(prod, None, None, None).unwrap_err(),
            ConfigError::Missing("PUBSUB_PROJECT")
        );
        let err = PubSubConfig::from_values(
            prod,
            Some("runwarden-prod".into()),
            Some("127.0.0.1:8085".into()),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("PUBSUB_EMULATOR_HOST"), "{err}");
        let ok =
            PubSubConfig::from_values(prod, Some("runwarden-prod".into()), None, None).unwrap();
        assert_eq!(ok.emulator_endpoint, None);
        assert_eq!(ok.publish_timeout, PubSubConfig::DEFAULT_PUBLISH_TIMEOUT);

        let local =
            PubSubConfig::from_values(dev, None, Some("127.0.0.1:8085".into()), Some("3".into()))
                .unwrap();
        assert_eq!(local.project, LOCAL_PROJECT);
        assert_eq!(
            local.emulator_endpoint.as_deref(),
            Some("http://127.0.0.1:8085")
        );
        assert_eq!(local.publish_timeout, Duration::from_secs(3));
        for bad in ["0", "601", "ten"] {
            let err = PubSubConfig::from_values(dev, None, None, Some(bad.into())).unwrap_err();
            assert!(
                err.to_string().contains("PUBSUB_PUBLISH_TIMEOUT_SECS"),
                "{err}"
            );
        }
    }

    #[tokio::test]
    async fn memory_bus_records_and_fails_on_demand() {
        let bus = MemoryBus::new();
        let msg = BusMessage {
            topic: "audit-events".into(),
            data: Bytes::from_static(b"{}"),
            attributes: [("event_id".to_owned(), "e1".to_owned())].into(),
            ordering_key: Some("org".into()),
        };
        assert_eq!(bus.publish(msg.clone()).await.unwrap(), "1");
        bus.set_failing(true);
        assert!(bus.publish(msg.clone()).await.is_err());
        bus.set_failing(false);
        assert_eq!(bus.publish(msg.clone()).await.unwrap(), "2");
        assert_eq!(bus.count_by_attribute("event_id")["e1"], 2);
        assert_eq!(bus.published(), vec![msg.clone(), msg]);
    }
}
