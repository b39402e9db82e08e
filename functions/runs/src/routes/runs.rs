//! `POST /v1/orgs/{org}/projects/{project}/runs`, `GET /v1/orgs/{org}/runs[/{run}]`,
//! `POST /v1/orgs/{org}/runs/{run}/cancel`. Viewers read; Members start and cancel. Thin:
//! parse, authorize, call `admission` or `runs`, answer.

use axum::Json as AxumJson;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use runwarden_contracts::RunId;
use runwarden_platform::extract::{Json, Path};
use runwarden_platform::page::{ListQuery, Page};
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::Role;
use serde::Deserialize;
use serde_json::Value;

use crate::AppState;
use crate::admission;
use crate::error::{RunsError, RunsResult};
use crate::extract::OrgAccess;
use crate::routes::paths::{ProjectPath, RunPath};
use crate::runs::{self, EndedBy, Ending, NewRun, Run, Status};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    pub agent: String,
    pub input: Option<Value>,
    pub max_seconds: Option<i64>,
}

/// 202 with the queued run; quotas' 429/402 as they are. The same `Idempotency-Key` again
/// (or at once) answers with the same run and never asks quotas for a second one.
pub async fn start(
    State(state): State<AppState>,
    access: OrgAccess,
    meta: RequestMeta,
    Path(ProjectPath { project }): Path<ProjectPath>,
    headers: HeaderMap,
    Json(req): Json<StartRun>,
) -> RunsResult<(StatusCode, AxumJson<Run>)> {
    access.require(Role::Member)?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| {
                    RunsError::invalid(
                        "invalid_idempotency_key",
                        "Idempotency-Key must be visible ASCII",
                    )
                })?
                .to_owned(),
        ),
    };
    let new = NewRun::check(
        &state.agents,
        project,
        req.agent,
        req.input,
        req.max_seconds,
        key,
    )?;
    let run = admission::start(
        &state.quotas,
        &state.pool,
        access.tx,
        &access.ctx,
        &meta,
        &new,
    )
    .await?;
    Ok((StatusCode::ACCEPTED, AxumJson(run)))
}

pub async fn list(mut access: OrgAccess, query: ListQuery<RunId>) -> RunsResult<Page<Run>> {
    access.require(Role::Viewer)?;
    let org = access.ctx.org_id;
    let rows = runs::list(&mut access.tx, org, query.cursor, query.fetch_limit()).await?;
    access.tx.commit().await?;
    Ok(query.page(rows, |r| r.id))
}

pub async fn get(
    mut access: OrgAccess,
    Path(RunPath { run }): Path<RunPath>,
) -> RunsResult<AxumJson<Run>> {
    access.require(Role::Viewer)?;
    let run = runs::get(&mut access.tx, access.ctx.org_id, run, false).await?;
    access.tx.commit().await?;
    Ok(AxumJson(run))
}

/// Stops a live run (its runner's token dies at once, and its execution is stopped); a run
/// already ended is 409 `run_ended`.
pub async fn cancel(
    State(state): State<AppState>,
    mut access: OrgAccess,
    meta: RequestMeta,
    Path(RunPath { run }): Path<RunPath>,
) -> RunsResult<AxumJson<Run>> {
    access.require(Role::Member)?;
    let id = run;
    let org = access.ctx.org_id;
    let ended = runs::finish(
        &mut access.tx,
        org,
        id,
        Ending::by_server(Status::Cancelled),
        EndedBy::User(access.ctx.principal.user_id),
        Some(&meta),
    )
    .await?
    .ok_or_else(|| RunsError::conflict("run_ended", "the run has already ended"))?;
    access.tx.commit().await?;
    if let Some(execution) = &ended.execution {
        state.executor.cancel(execution).await;
    }
    Ok(AxumJson(ended))
}
