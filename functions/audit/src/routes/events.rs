//! `GET /v1/orgs/{org}/audit-events[/export|/verify]`: reading an org's audit log. Admins
//! and Owners only; another org's log does not exist for the caller (404).

use std::str::FromStr;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use runwarden_platform::{ListQuery, Page};
use runwarden_tenancy::{OrgId, Role};

use crate::AppState;
use crate::chain::{ChainWalker, Record, Verdict};
use crate::error::{AuditError, AuditResult};
use crate::extract::OrgAccess;
use crate::store::{self, Filter, RecordRow};

/// Records read per query by export and verify.
const CHAIN_PAGE: i64 = 500;

/// The list's cursor: the `seq` of the previous page's last (oldest) record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqCursor(i64);

impl FromStr for SeqCursor {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<i64>()
            .ok()
            .filter(|seq| *seq > 0)
            .map(Self)
            .ok_or(())
    }
}

fn time_param(name: &str, raw: &str) -> AuditResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            AuditError::invalid(
                "invalid_time",
                format!("{name} must be an RFC 3339 time, e.g. 2026-11-25T00:00:00Z"),
            )
        })
}

/// Parses the list query: the filters `actor`, `action`, `target_type`, `target_id`,
/// `from`, `to`, and `cursor`/`limit` under the platform's one pagination policy
/// ([`ListQuery`]: unknown or repeated parameters refused, empty ones absent).
pub fn parse_list_query(raw: Option<&str>) -> AuditResult<(Filter, ListQuery<SeqCursor>)> {
    let mut filter = Filter::default();
    let query = ListQuery::parse_with(raw, |name, value| {
        match name {
            "actor" => filter.actor_id = Some(value.to_owned()),
            "action" => filter.action = Some(value.to_owned()),
            "target_type" => filter.target_type = Some(value.to_owned()),
            "target_id" => filter.target_id = Some(value.to_owned()),
            "from" => filter.from = Some(time_param("from", value)?),
            "to" => filter.to = Some(time_param("to", value)?),
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    filter.before_seq = query.cursor.map(|SeqCursor(seq)| seq);
    Ok((filter, query))
}

fn record(row: RecordRow) -> AuditResult<Record> {
    row.into_record()
        .map_err(|b| AuditError::Internal(anyhow::anyhow!("stored record {}: {}", b.seq, b.detail)))
}

/// One page of the log, newest first; `next_cursor` is the last record's `seq`.
pub async fn list(access: OrgAccess, RawQuery(query): RawQuery) -> AuditResult<Page<Record>> {
    access.require(Role::Admin)?;
    let (filter, query) = parse_list_query(query.as_deref())?;
    let OrgAccess { ctx, mut tx } = access;
    let rows = store::list(&mut tx, ctx.org_id, &filter, query.fetch_limit()).await?;
    tx.commit().await?;
    query.page(rows, RecordRow::seq).try_map(record)
}

/// The whole chain as NDJSON, oldest first, streamed page by page: each page is read in its
/// own short transaction, so a slow download holds no database connection. The chain is
/// append-only, so the pages up to the head read at the start form one consistent chain.
/// A failure mid-way aborts the response (the client sees an incomplete transfer).
pub async fn export(State(state): State<AppState>, access: OrgAccess) -> AuditResult<Response> {
    access.require(Role::Admin)?;
    let OrgAccess { ctx, mut tx } = access;
    let org = ctx.org_id;
    let head = store::head_seq(&mut tx, org).await?;
    tx.commit().await?;
    tracing::info!(org.id = %org, audit.head_seq = head, "audit log export");
    let pool = state.pool;
    let pages = futures::stream::try_unfold(0i64, move |after| {
        let pool = pool.clone();
        async move {
            if after >= head {
                return Ok(None);
            }
            let rows = store::chain_page_tx(&pool, org, after, head, CHAIN_PAGE)
                .await
                .map_err(|e| export_failed(org, &e))?;
            let Some(last) = rows.last().map(|r| r.seq()) else {
                return Ok(None);
            };
            let mut chunk = Vec::with_capacity(rows.len() * 512);
            for row in rows {
                let record = row
                    .into_record()
                    .map_err(|b| export_failed(org, &b.detail))?;
                serde_json::to_writer(&mut chunk, &record).map_err(|e| export_failed(org, &e))?;
                chunk.push(b'\n');
            }
            Ok::<_, std::io::Error>(Some((Bytes::from(chunk), last)))
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"audit-{org}.ndjson\""),
            ),
        ],
        Body::from_stream(pages),
    )
        .into_response())
}

fn export_failed(org: OrgId, cause: &dyn std::fmt::Display) -> std::io::Error {
    tracing::error!(org.id = %org, error = %cause, "audit log export aborted");
    std::io::Error::other("export aborted")
}

/// Walks the whole chain and says whether it is intact, or where it breaks.
pub async fn verify(access: OrgAccess) -> AuditResult<Json<Verdict>> {
    access.require(Role::Admin)?;
    let OrgAccess { ctx, mut tx } = access;
    let org = ctx.org_id;
    let head = store::head_seq(&mut tx, org).await?;
    let mut walker = ChainWalker::new(Some(org));
    let mut after = 0;
    let verdict = 'walk: loop {
        let rows = store::chain_page(&mut tx, org, after, head, CHAIN_PAGE).await?;
        let Some(last) = rows.last().map(|r| r.seq()) else {
            break Verdict::ok(&walker);
        };
        for row in rows {
            let checked = row.into_record().and_then(|record| walker.push(&record));
            if let Err(at) = checked {
                break 'walk Verdict::broken(&walker, at);
            }
        }
        after = last;
    };
    tx.commit().await?;
    if let Verdict::Broken { broken_at, .. } = &verdict {
        tracing::warn!(
            security_event = "audit_chain_broken",
            org.id = %org,
            audit.seq = broken_at.seq,
            reason = broken_at.reason,
            "audit chain verification failed"
        );
    }
    Ok(Json(verdict))
}
