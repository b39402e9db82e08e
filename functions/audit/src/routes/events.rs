//! `GET /v1/orgs/{org}/audit-events[/export|/verify]`: reading an org's audit log. Admins
//! and Owners only; another org's log does not exist for the caller (404).

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use runwarden_tenancy::{OrgId, Role};
use serde::Serialize;

use crate::AppState;
use crate::chain::{ChainWalker, Record, Verdict};
use crate::error::{AuditError, AuditResult};
use crate::extract::OrgAccess;
use crate::store::{self, Filter, RecordRow};

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;
/// Records read per query by export and verify.
const CHAIN_PAGE: i64 = 500;

#[derive(Debug, Serialize)]
pub struct Page {
    pub items: Vec<Record>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<String>,
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

/// Parses the list query: `actor`, `action`, `target_type`, `target_id`, `from`, `to`,
/// `cursor`, `limit`. Unknown or repeated parameters are refused; empty ones are absent.
pub fn parse_list_query(raw: Option<&str>) -> AuditResult<(Filter, i64)> {
    let mut filter = Filter::default();
    let mut limit = DEFAULT_LIMIT;
    let mut seen = std::collections::HashSet::new();
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if !seen.insert(name.clone()) {
            return Err(AuditError::invalid(
                "invalid_query",
                format!("query parameter {name} is repeated"),
            ));
        }
        let value = value.trim();
        if value.is_empty() {
            continue;
        }
        if value.len() > 256 {
            return Err(AuditError::invalid(
                "invalid_query",
                format!("query parameter {name} is too long"),
            ));
        }
        match name.as_ref() {
            "actor" => filter.actor_id = Some(value.to_owned()),
            "action" => filter.action = Some(value.to_owned()),
            "target_type" => filter.target_type = Some(value.to_owned()),
            "target_id" => filter.target_id = Some(value.to_owned()),
            "from" => filter.from = Some(time_param("from", value)?),
            "to" => filter.to = Some(time_param("to", value)?),
            "cursor" => {
                let seq = value
                    .parse::<i64>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| AuditError::invalid("invalid_cursor", "cursor is not valid"))?;
                filter.before_seq = Some(seq);
            }
            "limit" => {
                limit = value
                    .parse::<i64>()
                    .map_err(|_| AuditError::invalid("invalid_limit", "limit must be a number"))?
                    .clamp(1, MAX_LIMIT);
            }
            other => {
                return Err(AuditError::invalid(
                    "invalid_query",
                    format!("unknown query parameter {other}"),
                ));
            }
        }
    }
    Ok((filter, limit))
}

fn record(row: RecordRow) -> AuditResult<Record> {
    row.into_record()
        .map_err(|b| AuditError::Internal(anyhow::anyhow!("stored record {}: {}", b.seq, b.detail)))
}

pub async fn list(access: OrgAccess, RawQuery(query): RawQuery) -> AuditResult<Json<Page>> {
    access.require(Role::Admin)?;
    let (filter, limit) = parse_list_query(query.as_deref())?;
    let OrgAccess { ctx, mut tx } = access;
    let mut rows = store::list(&mut tx, ctx.org_id, &filter, limit + 1).await?;
    tx.commit().await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let items = rows
        .into_iter()
        .map(record)
        .collect::<AuditResult<Vec<_>>>()?;
    let next_cursor = more
        .then(|| items.last().map(|r| r.seq.to_string()))
        .flatten();
    Ok(Json(Page { items, next_cursor }))
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
