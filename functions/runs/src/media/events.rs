//! A run's events as media streams read them: one page after some id, with the run's state,
//! and whether the caller of a media URL may still see the run.

use axum::response::sse::Event;
use chrono::{DateTime, Utc};
use runwarden_contracts::RunId;
use runwarden_tenancy::{OrgId, set_tenant};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use super::Grant;
use crate::error::{RunsError, RunsResult};

/// The NOTIFY channel `runs::notify_events` signals (payload: the run id).
pub const CHANNEL: &str = "run_events";
/// Events read per query, in a replay and in a feed.
pub const PAGE: i64 = 500;

/// One event of a run's stream, as sent in an SSE `data:` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RunEvent {
    pub id: i64,
    pub kind: String,
    pub stream: Option<String>,
    pub message: String,
    pub percent: Option<i16>,
    pub created_at: DateTime<Utc>,
}

/// An event, and whether it is the run's last (the final status of an ended run).
#[derive(Debug, Clone)]
pub struct Item {
    pub event: RunEvent,
    pub last: bool,
}

/// A page of a run's events after some id.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Item>,
    /// As many as asked: there may be more.
    pub full: bool,
    /// The run has ended: no event will follow its last.
    pub ended: bool,
    /// The run's newest event id, if any.
    pub max_id: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct PageRow {
    id: Option<i64>,
    kind: Option<String>,
    stream: Option<String>,
    message: Option<String>,
    percent: Option<i16>,
    created_at: Option<DateTime<Utc>>,
    ended: bool,
    max_id: Option<i64>,
}

/// Up to `limit` events of `run` after `after`, in id order, with the run's state, read in
/// one statement (one snapshot) in a transaction scoped to `org`; `None` when the org has
/// no such run.
pub async fn page(
    pool: &PgPool,
    org: OrgId,
    run: RunId,
    after: i64,
    limit: i64,
) -> RunsResult<Option<Page>> {
    let mut tx = pool.begin().await?;
    set_tenant(&mut tx, Some(org), None).await?;
    let rows: Vec<PageRow> = sqlx::query_as(
        "SELECT e.id, e.kind, e.stream, e.message, e.percent, e.created_at,
                r.status NOT IN ('admitting', 'queued', 'running') AS ended,
                (SELECT max(m.id) FROM run_events m WHERE m.run_id = r.id) AS max_id
         FROM runs r
         LEFT JOIN LATERAL (
             SELECT id, kind, stream, message, percent, created_at FROM run_events
             WHERE run_id = r.id AND id > $3 ORDER BY id LIMIT $4
         ) e ON true
         WHERE r.org_id = $1 AND r.id = $2
         ORDER BY e.id",
    )
    .bind(org)
    .bind(run)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let (ended, max_id) = (first.ended, first.max_id);
    let items: Vec<Item> = rows
        .into_iter()
        .filter_map(|row| {
            Some(RunEvent {
                id: row.id?,
                kind: row.kind?,
                stream: row.stream,
                message: row.message?,
                percent: row.percent,
                created_at: row.created_at?,
            })
        })
        .map(|event| Item {
            last: ended && Some(event.id) == max_id,
            event,
        })
        .collect();
    Ok(Some(Page {
        full: items.len() as i64 >= limit,
        items,
        ended,
        max_id,
    }))
}

/// The caller of a media URL may still use it: the session that minted the token is live
/// (not logged out, revoked or expired: 401 otherwise, as for an expired token), it is a run
/// of the grant's org and the holder is still a member of that (live) org (404 otherwise, as
/// for another org's run). Read in one statement.
pub async fn check_access(pool: &PgPool, grant: &Grant) -> RunsResult<()> {
    let mut tx = pool.begin().await?;
    set_tenant(&mut tx, Some(grant.org), None).await?;
    check_access_in(&mut tx, grant).await?;
    tx.commit().await?;
    Ok(())
}

/// [`check_access`] inside a transaction scoped to the grant's org.
pub(crate) async fn check_access_in(conn: &mut PgConnection, grant: &Grant) -> RunsResult<()> {
    let (live, member): (bool, Option<bool>) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM sessions s
                        WHERE s.id = $4 AND s.user_id = $3
                          AND s.revoked_at IS NULL AND s.expires_at > now()),
                (SELECT EXISTS (SELECT 1 FROM memberships m JOIN orgs o ON o.id = m.org_id
                                WHERE m.org_id = r.org_id AND m.user_id = $3
                                  AND o.terminated_at IS NULL)
                 FROM runs r WHERE r.org_id = $1 AND r.id = $2)",
    )
    .bind(grant.org)
    .bind(grant.run)
    .bind(grant.user)
    .bind(grant.session)
    .fetch_one(&mut *conn)
    .await?;
    access_verdict(grant, live, member)
}

/// The answer to a media use, from the session's liveness and the membership (`None`: no
/// such run in the org).
pub(crate) fn access_verdict(grant: &Grant, live: bool, member: Option<bool>) -> RunsResult<()> {
    if !live {
        tracing::info!(
            security_event = "media_token_refused",
            reason = "session no longer live",
            user.id = %grant.user,
            org.id = %grant.org,
            run.id = %grant.run,
            "media token refused"
        );
        return Err(RunsError::unauthenticated());
    }
    match member {
        Some(true) => Ok(()),
        Some(false) => {
            tracing::info!(
                security_event = "authz_denied",
                reason = "media token of a former member",
                user.id = %grant.user,
                org.id = %grant.org,
                run.id = %grant.run,
                "media token refused"
            );
            Err(RunsError::not_found())
        }
        None => Err(RunsError::not_found()),
    }
}

pub(crate) fn sse_event(event: &RunEvent) -> Event {
    Event::default()
        .id(event.id.to_string())
        .event(event.kind.as_str())
        .data(serde_json::to_string(event).unwrap_or_default())
}
