//! The declared Pub/Sub topology: `shared/events/topics.json`, the one list of topics, their
//! dead-letter topics and the push subscriptions that deliver them to consuming functions.
//! This crate reads it (`include_str!`) to set up the emulator; Terraform reads the same file
//! (`jsondecode(file(...))`) to create the real resources.
//!
//! [`Admin`] creates the resources idempotently over the crate's `TopicAdmin` and
//! `SubscriptionAdmin` clients (HTTP); the `pubsub-setup` binary applies the whole list to
//! the emulator for `scripts/dev`.

use std::sync::LazyLock;

use google_cloud_gax::error::rpc::Code;
use google_cloud_pubsub::client::{SubscriptionAdmin, TopicAdmin};
use google_cloud_pubsub::model::{DeadLetterPolicy, PushConfig, Subscription, Topic};
use serde::Deserialize;

use crate::bus::PubSubConfig;

/// The file's text, compiled in.
pub const TOPICS_JSON: &str = include_str!("../topics.json");

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    pub topics: Vec<TopicSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    /// The topic id, e.g. `audit-events`.
    pub name: String,
    /// Where messages go after `max_delivery_attempts` failed pushes, and the pull
    /// subscription that keeps them there for inspection and replay.
    pub dead_letter: DeadLetterSpec,
    pub push_subscriptions: Vec<PushSubscriptionSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterSpec {
    pub topic: String,
    pub subscription: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushSubscriptionSpec {
    pub name: String,
    /// The consuming function (a directory under `functions/`).
    pub function: String,
    /// The function's push route, e.g. `/push/audit-events`.
    pub path: String,
    pub ack_deadline_seconds: i32,
    pub max_delivery_attempts: i32,
    pub message_ordering: bool,
}

/// The compiled-in topology (checked by this crate's tests, so it cannot fail at run time).
pub fn topology() -> &'static Topology {
    static TOPOLOGY: LazyLock<Topology> = LazyLock::new(|| {
        let topology: Topology = serde_json::from_str(TOPICS_JSON).expect("topics.json parses");
        topology.validate().expect("topics.json is valid");
        topology
    });
    &TOPOLOGY
}

impl Topology {
    /// Names are valid Pub/Sub ids and unique; Pub/Sub's limits hold.
    pub fn validate(&self) -> Result<(), String> {
        let mut topics = std::collections::HashSet::new();
        let mut subscriptions = std::collections::HashSet::new();
        for t in &self.topics {
            for name in [&t.name, &t.dead_letter.topic] {
                check_id(name)?;
                if !topics.insert(name.clone()) {
                    return Err(format!("topic {name} is declared twice"));
                }
            }
            let subs = std::iter::once(&t.dead_letter.subscription)
                .chain(t.push_subscriptions.iter().map(|s| &s.name));
            for name in subs {
                check_id(name)?;
                if !subscriptions.insert(name.clone()) {
                    return Err(format!("subscription {name} is declared twice"));
                }
            }
            for s in &t.push_subscriptions {
                if !(10..=600).contains(&s.ack_deadline_seconds) {
                    return Err(format!("{}: ack_deadline_seconds must be 10..=600", s.name));
                }
                if !(5..=100).contains(&s.max_delivery_attempts) {
                    return Err(format!("{}: max_delivery_attempts must be 5..=100", s.name));
                }
                if !s.path.starts_with("/push/") || s.path.contains(['?', '#']) {
                    return Err(format!("{}: path must be /push/<topic>", s.name));
                }
                if s.function.is_empty() || !s.function.bytes().all(|b| b.is_ascii_lowercase()) {
                    return Err(format!("{}: function must be a function's name", s.name));
                }
            }
        }
        Ok(())
    }

    /// Every topic a relay may publish to.
    pub fn topic_names(&self) -> impl Iterator<Item = &str> {
        self.topics.iter().map(|t| t.name.as_str())
    }
}

/// Pub/Sub resource ids: 3-255 characters, a letter first, then letters, digits and
/// `-_.~+%`, never starting with `goog`.
fn check_id(id: &str) -> Result<(), String> {
    let ok = (3..=255).contains(&id.len())
        && id.as_bytes()[0].is_ascii_alphabetic()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~+%".contains(&b))
        && !id.starts_with("goog");
    if ok {
        Ok(())
    } else {
        Err(format!("{id:?} is not a valid Pub/Sub id"))
    }
}

/// Whether a resource was made now or was there already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    Existed,
}

/// Creates topics and subscriptions (for the emulator and tests; Terraform owns the real
/// ones). Every call is idempotent: "already exists" is success.
#[derive(Debug, Clone)]
pub struct Admin {
    config: PubSubConfig,
    topics: TopicAdmin,
    subscriptions: SubscriptionAdmin,
}

impl Admin {
    pub async fn connect(config: PubSubConfig) -> anyhow::Result<Self> {
        let (topics, subscriptions) = match &config.emulator_endpoint {
            Some(endpoint) => {
                let anonymous =
                    || google_cloud_auth::credentials::anonymous::Builder::new().build();
                (
                    TopicAdmin::builder()
                        .with_endpoint(endpoint.clone())
                        .with_credentials(anonymous())
                        .build()
                        .await?,
                    SubscriptionAdmin::builder()
                        .with_endpoint(endpoint.clone())
                        .with_credentials(anonymous())
                        .build()
                        .await?,
                )
            }
            None => (
                TopicAdmin::builder().build().await?,
                SubscriptionAdmin::builder().build().await?,
            ),
        };
        Ok(Self {
            config,
            topics,
            subscriptions,
        })
    }

    pub fn config(&self) -> &PubSubConfig {
        &self.config
    }

    pub async fn ensure_topic(&self, topic: &str) -> anyhow::Result<Created> {
        let result = self
            .topics
            .create_topic()
            .with_request(Topic::new().set_name(self.config.topic_path(topic)))
            .send()
            .await;
        created(result, || format!("creating topic {topic}"))
    }

    /// A pull subscription (dead-letter keepers, tests).
    pub async fn ensure_pull_subscription(
        &self,
        subscription: &str,
        topic: &str,
        message_ordering: bool,
    ) -> anyhow::Result<Created> {
        let request = Subscription::new()
            .set_name(self.config.subscription_path(subscription))
            .set_topic(self.config.topic_path(topic))
            .set_ack_deadline_seconds(30)
            .set_enable_message_ordering(message_ordering);
        self.create_subscription(request, subscription).await
    }

    /// A push subscription delivering `topic` to `endpoint`, with the spec's ack deadline,
    /// ordering and dead-letter policy. When it exists already its push endpoint is set to
    /// `endpoint` (the endpoint carries the per-stack push secret, which may have changed).
    pub async fn ensure_push_subscription(
        &self,
        topic: &TopicSpec,
        spec: &PushSubscriptionSpec,
        endpoint: &str,
    ) -> anyhow::Result<Created> {
        let name = self.config.subscription_path(&spec.name);
        let request = Subscription::new()
            .set_name(name.clone())
            .set_topic(self.config.topic_path(&topic.name))
            .set_push_config(PushConfig::new().set_push_endpoint(endpoint))
            .set_ack_deadline_seconds(spec.ack_deadline_seconds)
            .set_enable_message_ordering(spec.message_ordering)
            .set_dead_letter_policy(
                DeadLetterPolicy::new()
                    .set_dead_letter_topic(self.config.topic_path(&topic.dead_letter.topic))
                    .set_max_delivery_attempts(spec.max_delivery_attempts),
            );
        let created = self.create_subscription(request, &spec.name).await?;
        if created == Created::Existed {
            self.subscriptions
                .modify_push_config()
                .set_subscription(name)
                .set_push_config(PushConfig::new().set_push_endpoint(endpoint))
                .send()
                .await
                .map_err(|e| {
                    anyhow::Error::new(e)
                        .context(format!("updating the push endpoint of {}", spec.name))
                })?;
        }
        Ok(created)
    }

    async fn create_subscription(
        &self,
        request: Subscription,
        name: &str,
    ) -> anyhow::Result<Created> {
        let result = self
            .subscriptions
            .create_subscription()
            .with_request(request)
            .send()
            .await;
        created(result, || format!("creating subscription {name}"))
    }

    pub async fn delete_topic(&self, topic: &str) -> anyhow::Result<()> {
        let result = self
            .topics
            .delete_topic()
            .set_topic(self.config.topic_path(topic))
            .send()
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(e) if has_code(&e, Code::NotFound, 404) => Ok(()),
            Err(e) => Err(anyhow::Error::new(e).context(format!("deleting topic {topic}"))),
        }
    }

    pub async fn delete_subscription(&self, subscription: &str) -> anyhow::Result<()> {
        let result = self
            .subscriptions
            .delete_subscription()
            .set_subscription(self.config.subscription_path(subscription))
            .send()
            .await;
        match result {
            Ok(()) => Ok(()),
            Err(e) if has_code(&e, Code::NotFound, 404) => Ok(()),
            Err(e) => {
                Err(anyhow::Error::new(e).context(format!("deleting subscription {subscription}")))
            }
        }
    }

    /// Creates every topic, dead-letter topic, dead-letter subscription and push
    /// subscription of `topology`. `endpoint` gives each push subscription's full push URL.
    pub async fn apply(
        &self,
        topology: &Topology,
        endpoint: impl Fn(&PushSubscriptionSpec) -> anyhow::Result<String>,
    ) -> anyhow::Result<Vec<(String, Created)>> {
        let mut report = Vec::new();
        for t in &topology.topics {
            let dlq = &t.dead_letter;
            report.push((
                format!("topic {}", t.name),
                self.ensure_topic(&t.name).await?,
            ));
            report.push((
                format!("topic {}", dlq.topic),
                self.ensure_topic(&dlq.topic).await?,
            ));
            report.push((
                format!("subscription {}", dlq.subscription),
                self.ensure_pull_subscription(&dlq.subscription, &dlq.topic, false)
                    .await?,
            ));
            for s in &t.push_subscriptions {
                let url = endpoint(s)?;
                report.push((
                    format!("subscription {}", s.name),
                    self.ensure_push_subscription(t, s, &url).await?,
                ));
            }
        }
        Ok(report)
    }
}

fn has_code(e: &google_cloud_pubsub::Error, code: Code, http: u16) -> bool {
    e.status().is_some_and(|s| s.code == code) || e.http_status_code() == Some(http)
}

fn created<T>(
    result: google_cloud_pubsub::Result<T>,
    what: impl FnOnce() -> String,
) -> anyhow::Result<Created> {
    match result {
        Ok(_) => Ok(Created::New),
        Err(e) if has_code(&e, Code::AlreadyExists, 409) => Ok(Created::Existed),
        Err(e) => Err(anyhow::Error::new(e).context(what())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runwarden_contracts::topics;

    #[test]
    fn the_declared_topology_is_valid_and_declares_audit_events() {
        let t = topology();
        let audit = t
            .topics
            .iter()
            .find(|t| t.name == topics::AUDIT_EVENTS)
            .expect("audit-events is declared");
        assert_eq!(audit.dead_letter.topic, "audit-events-dlq");
        assert_eq!(audit.dead_letter.subscription, "audit-events-dlq-sub");
        let push = &audit.push_subscriptions[0];
        assert_eq!(push.name, "audit-events-push");
        assert_eq!(push.function, "audit");
        assert_eq!(push.path, "/push/audit-events");
        assert_eq!(push.ack_deadline_seconds, 30);
        assert_eq!(push.max_delivery_attempts, 5);
        assert!(
            !push.message_ordering,
            "audit appends in arrival order; ordered push would allow one message in flight per org"
        );
    }

    #[test]
    fn finished_runs_are_pushed_to_quotas_for_settlement() {
        let t = topology();
        let topic = t
            .topics
            .iter()
            .find(|t| t.name == topics::RUN_FINISHED)
            .expect("run-finished is declared");
        let push = &topic.push_subscriptions[0];
        assert_eq!(
            (push.function.as_str(), push.path.as_str()),
            ("quotas", "/push/run-finished")
        );
        assert_eq!(topic.dead_letter.topic, "run-finished-dlq");
    }

    #[test]
    fn every_contract_topic_is_declared_and_pushed_to_its_path() {
        let t = topology();
        let declared: Vec<&str> = t.topics.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(declared, topics::ALL);
        for topic in &t.topics {
            for push in &topic.push_subscriptions {
                assert_eq!(push.path, crate::push::path(&topic.name), "{}", topic.name);
            }
        }
    }

    #[test]
    fn validation_rejects_bad_ids_and_duplicates() {
        let mut t = topology().clone();
        t.topics[0].dead_letter.topic = t.topics[0].name.clone();
        assert!(t.validate().unwrap_err().contains("declared twice"));
        let mut t = topology().clone();
        t.topics[0].push_subscriptions[0].name = "ab".into();
        assert!(t.validate().is_err());
        let mut t = topology().clone();
        t.topics[0].push_subscriptions[0].max_delivery_attempts = 3;
        assert!(t.validate().is_err());
        assert!(check_id("goog-topic").is_err());
        assert!(check_id("audit-events").is_ok());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<Topology>(r#"{"topics":[],"extra":1}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
