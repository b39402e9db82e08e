//! The audit log in PostgreSQL: appending to an org's chain, and reading it back.
//!
//! Appending is serialized per org by a transaction-scoped advisory lock, so concurrent
//! pushes for one org extend the chain one after the other (`seq` contiguous, each record
//! linked to the one before), while different orgs append in parallel. It is idempotent by
//! event id: the duplicate check and the insert run under that lock, and the insert also
//! does nothing on the `event_id` unique constraint (a duplicate of another org's event).

use chrono::{DateTime, Utc};
use runwarden_events::push::PushError;
use runwarden_tenancy::OrgId;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::chain::{self, GENESIS, Hash, Record, RecordActor, RecordTarget};
use crate::ingest::ValidEvent;

/// The columns of a record, in [`RecordRow`] order.
const COLUMNS: &str = "org_id, seq, event_id, occurred_at, created_at, actor_kind, actor_id, \
     action, target_type, target_id, outcome, request_id, ip, user_agent, details, prev_hash, hash";

/// What an append did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    New {
        seq: i64,
        hash: Hash,
    },
    /// The event was already in the log: nothing written.
    Duplicate,
}

/// The string serde gives a unit enum variant (`ActorKind::ApiKey` -> `api_key`).
fn variant_name<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

/// Appends one event to its org's chain, durably (committed) before it returns.
pub async fn append(pool: &PgPool, event: &ValidEvent) -> Result<Appended, PushError> {
    let event = &event.0;
    let org = event.org_id;
    let mut tx = pool.begin().await?;
    // The tenant setting row-level security reads, and the org's append lock, in one trip.
    sqlx::query(
        "SELECT set_config('app.org_id', $1, true), \
                pg_advisory_xact_lock(hashtextextended('audit_log:' || $1, 0))",
    )
    .bind(org.to_string())
    .execute(&mut *tx)
    .await?;
    let (duplicate, head_seq, head_hash): (bool, Option<i64>, Option<Vec<u8>>) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM audit_log WHERE event_id = $2), h.seq, h.hash
           FROM (SELECT 1) AS one
           LEFT JOIN LATERAL (SELECT seq, hash FROM audit_log WHERE org_id = $1
                               ORDER BY seq DESC LIMIT 1) AS h ON true",
    )
    .bind(org)
    .bind(event.id)
    .fetch_one(&mut *tx)
    .await?;
    if duplicate {
        return Ok(Appended::Duplicate);
    }
    let prev_hash: Hash = match head_hash {
        None => GENESIS,
        Some(bytes) => bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("the head record of org {org} has a corrupt hash"))?,
    };
    let record = Record {
        org_id: org,
        seq: head_seq.unwrap_or(0) + 1,
        event_id: event.id,
        time: chain::to_micros(event.time),
        created_at: chain::to_micros(Utc::now()),
        actor: RecordActor {
            kind: variant_name(&event.actor.kind),
            id: event.actor.id.clone(),
        },
        action: event.action.clone(),
        target: RecordTarget {
            kind: event.target.kind.clone(),
            id: event.target.id.clone(),
        },
        outcome: variant_name(&event.outcome),
        request_id: event.request_id.clone(),
        ip: event.ip.map(|ip| ip.to_string()),
        user_agent: event.user_agent.clone(),
        details: event.details.clone(),
        prev_hash,
        hash: GENESIS,
    }
    .seal();
    let mut details = String::new();
    chain::canonical_json(&record.details, &mut details);
    let inserted = sqlx::query(
        "INSERT INTO audit_log (org_id, seq, event_id, occurred_at, created_at, actor_kind,
                                actor_id, action, target_type, target_id, outcome, request_id,
                                ip, user_agent, details, prev_hash, hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
         ON CONFLICT ON CONSTRAINT audit_log_event_id_key DO NOTHING",
    )
    .bind(record.org_id)
    .bind(record.seq)
    .bind(record.event_id)
    .bind(record.time)
    .bind(record.created_at)
    .bind(&record.actor.kind)
    .bind(&record.actor.id)
    .bind(&record.action)
    .bind(&record.target.kind)
    .bind(&record.target.id)
    .bind(&record.outcome)
    .bind(&record.request_id)
    .bind(&record.ip)
    .bind(&record.user_agent)
    .bind(&details)
    .bind(record.prev_hash.as_slice())
    .bind(record.hash.as_slice())
    .execute(&mut *tx)
    .await?;
    if inserted.rows_affected() == 0 {
        // Another org already holds this event id: a producer bug or a replay; never a
        // second record.
        tracing::warn!(
            org.id = %org,
            event.id = %event.id,
            "audit event id already recorded for another org; ignored"
        );
        return Ok(Appended::Duplicate);
    }
    tx.commit().await?;
    Ok(Appended::New {
        seq: record.seq,
        hash: record.hash,
    })
}

/// A stored record as its columns.
#[derive(sqlx::FromRow)]
pub struct RecordRow {
    org_id: OrgId,
    seq: i64,
    event_id: Uuid,
    occurred_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    actor_kind: String,
    actor_id: Option<String>,
    action: String,
    target_type: String,
    target_id: String,
    outcome: String,
    request_id: Option<String>,
    ip: Option<String>,
    user_agent: Option<String>,
    details: String,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
}

impl RecordRow {
    pub fn seq(&self) -> i64 {
        self.seq
    }

    /// The record, or why its stored values cannot be one (the verifier reports that).
    pub fn into_record(self) -> Result<Record, chain::Break> {
        let unreadable = |detail: &str| chain::Break {
            seq: self.seq,
            event_id: self.event_id,
            reason: "unreadable",
            detail: detail.into(),
        };
        // Stored details that are not JSON any more were edited; kept as text, they no
        // longer match the hash, which is how the verifier reports them.
        let details = serde_json::from_str(&self.details)
            .unwrap_or_else(|_| serde_json::Value::String(self.details.clone()));
        let prev_hash: Hash = self
            .prev_hash
            .as_slice()
            .try_into()
            .map_err(|_| unreadable("prev_hash is not 32 bytes"))?;
        let hash: Hash = self
            .hash
            .as_slice()
            .try_into()
            .map_err(|_| unreadable("hash is not 32 bytes"))?;
        Ok(Record {
            org_id: self.org_id,
            seq: self.seq,
            event_id: self.event_id,
            time: self.occurred_at,
            created_at: self.created_at,
            actor: RecordActor {
                kind: self.actor_kind,
                id: self.actor_id,
            },
            action: self.action,
            target: RecordTarget {
                kind: self.target_type,
                id: self.target_id,
            },
            outcome: self.outcome,
            request_id: self.request_id,
            ip: self.ip,
            user_agent: self.user_agent,
            details,
            prev_hash,
            hash,
        })
    }
}

/// The list filters (all optional, combined with AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub actor_id: Option<String>,
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// Inclusive, on the event's time.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive, on the event's time.
    pub to: Option<DateTime<Utc>>,
    /// Only records with a smaller `seq` (the page after the one that ended there).
    pub before_seq: Option<i64>,
}

/// One page of an org's records, newest (highest `seq`) first. The connection's
/// transaction must carry the org's tenant setting.
pub async fn list(
    conn: &mut PgConnection,
    org: OrgId,
    filter: &Filter,
    limit: i64,
) -> Result<Vec<RecordRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM audit_log
          WHERE org_id = $1
            AND ($2::text IS NULL OR actor_id = $2)
            AND ($3::text IS NULL OR action = $3)
            AND ($4::text IS NULL OR target_type = $4)
            AND ($5::text IS NULL OR target_id = $5)
            AND ($6::timestamptz IS NULL OR occurred_at >= $6)
            AND ($7::timestamptz IS NULL OR occurred_at < $7)
            AND ($8::bigint IS NULL OR seq < $8)
          ORDER BY seq DESC
          LIMIT $9"
    ))
    .bind(org)
    .bind(&filter.actor_id)
    .bind(&filter.action)
    .bind(&filter.target_type)
    .bind(&filter.target_id)
    .bind(filter.from)
    .bind(filter.to)
    .bind(filter.before_seq)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The highest `seq` of an org's chain (0 when empty).
pub async fn head_seq(conn: &mut PgConnection, org: OrgId) -> Result<i64, sqlx::Error> {
    let (seq,): (Option<i64>,) = sqlx::query_as("SELECT max(seq) FROM audit_log WHERE org_id = $1")
        .bind(org)
        .fetch_one(conn)
        .await?;
    Ok(seq.unwrap_or(0))
}

/// Records with `after < seq <= up_to`, oldest first, at most `limit`.
pub async fn chain_page(
    conn: &mut PgConnection,
    org: OrgId,
    after: i64,
    up_to: i64,
    limit: i64,
) -> Result<Vec<RecordRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM audit_log
          WHERE org_id = $1 AND seq > $2 AND seq <= $3
          ORDER BY seq
          LIMIT $4"
    ))
    .bind(org)
    .bind(after)
    .bind(up_to)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Same as [`chain_page`] in its own short transaction scoped to the org (export streams
/// page by page and holds no connection between pages).
pub async fn chain_page_tx(
    pool: &PgPool,
    org: OrgId,
    after: i64,
    up_to: i64,
    limit: i64,
) -> Result<Vec<RecordRow>, sqlx::Error> {
    let mut tx = runwarden_tenancy::begin_org_tx(pool, org, None).await?;
    let rows = chain_page(&mut tx, org, after, up_to, limit).await?;
    tx.commit().await?;
    Ok(rows)
}
