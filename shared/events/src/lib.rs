//! Event schemas shared between functions, and the transactional outbox they travel through.
//!
//! A mutation calls [`AuditEvent::record`] inside its own transaction: the event commits
//! with the change or not at all. Nothing secret ever goes into an event: no secret value,
//! password, token or hash.
//!
//! The publishing half: [`relay`] publishes committed outbox rows through a [`bus::Bus`]
//! (Google Pub/Sub, or its emulator locally) to the topics declared in `topics.json`
//! ([`topics`]).
//!
//! The receiving half: [`push`] mounts `POST /push/{topic}` on a consuming function.

pub mod bus;
pub mod push;
pub mod relay;
pub mod tasks;
pub mod topics;

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use uuid::Uuid;

use runwarden_tenancy::{ActorKind, OrgId};

use runwarden_contracts::topics::AUDIT_EVENTS;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub kind: ActorKind,
    pub id: Option<String>,
}

impl Actor {
    pub fn user(id: impl ToString) -> Self {
        Self {
            kind: ActorKind::User,
            id: Some(id.to_string()),
        }
    }

    /// The runner of one run, acting with that run's token.
    pub fn runner(run: impl ToString) -> Self {
        Self {
            kind: ActorKind::Runner,
            id: Some(run.to_string()),
        }
    }

    pub fn system() -> Self {
        Self {
            kind: ActorKind::System,
            id: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

impl Target {
    pub fn new(kind: &str, id: impl ToString) -> Self {
        Self {
            kind: kind.into(),
            id: id.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Denied,
    Failure,
}

/// One audited action. `action` is `<resource>.<verb>`, e.g. `member.role_change`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: Uuid,
    pub org_id: OrgId,
    pub actor: Actor,
    pub action: String,
    pub target: Target,
    pub outcome: Outcome,
    pub request_id: Option<String>,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub time: DateTime<Utc>,
    /// Non-secret facts about the change (e.g. `{"from":"member","to":"admin"}`).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl AuditEvent {
    pub fn new(org_id: OrgId, actor: Actor, action: &str, target: Target) -> Self {
        Self {
            id: Uuid::now_v7(),
            org_id,
            actor,
            action: action.into(),
            target,
            outcome: Outcome::Success,
            request_id: None,
            ip: None,
            user_agent: None,
            time: Utc::now(),
            details: serde_json::Value::Null,
        }
    }

    /// A user's action through the API, with the request's id, address and user agent.
    pub fn by_user(
        meta: &runwarden_platform::request::RequestMeta,
        org_id: OrgId,
        user: runwarden_tenancy::UserId,
        action: &str,
        target: Target,
    ) -> Self {
        Self::new(org_id, Actor::user(user), action, target).with_request(
            meta.request_id.clone(),
            meta.ip,
            meta.user_agent.clone(),
        )
    }

    pub fn with_request(
        mut self,
        request_id: Option<String>,
        ip: Option<IpAddr>,
        user_agent: Option<String>,
    ) -> Self {
        self.request_id = request_id;
        self.ip = ip;
        self.user_agent = user_agent;
        self
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// Appends the event to the outbox in the caller's transaction. The transaction must
    /// carry the event's org as its tenant setting (row-level security checks it).
    pub async fn record(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        insert(conn, self.id, self.org_id, AUDIT_EVENTS, &self.action, self).await
    }
}

/// Writes one message for `topic` to the outbox in the caller's transaction; the relay
/// publishes it (event id and `kind` as attributes, the org as ordering key). The
/// transaction must carry `org` as its tenant setting. Returns the event id, which
/// consumers deduplicate by.
pub async fn enqueue(
    conn: &mut PgConnection,
    org: OrgId,
    topic: &str,
    kind: &str,
    payload: &impl Serialize,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    insert(conn, id, org, topic, kind, payload).await?;
    Ok(id)
}

async fn insert(
    conn: &mut PgConnection,
    id: Uuid,
    org: OrgId,
    topic: &str,
    kind: &str,
    payload: &impl Serialize,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox_events (id, org_id, topic, kind, payload, created_at)
         VALUES ($1, $2, $3, $4, $5, now())",
    )
    .bind(id)
    .bind(org)
    .bind(topic)
    .bind(kind)
    .bind(sqlx::types::Json(payload))
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_the_documented_shape() {
        let org = OrgId::new();
        let event = AuditEvent::new(
            org,
            Actor::user("u-1"),
            "member.role_change",
            Target::new("user", "u-2"),
        )
        .with_request(Some("req-1".into()), Some("1.2.3.4".parse().unwrap()), None)
        .with_details(serde_json::json!({"from": "member", "to": "admin"}));
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["org_id"], org.to_string());
        assert_eq!(json["actor"]["kind"], "user");
        assert_eq!(json["target"]["type"], "user");
        assert_eq!(json["outcome"], "success");
        assert_eq!(json["ip"], "1.2.3.4");
        let back: AuditEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}
