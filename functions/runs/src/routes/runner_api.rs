//! `/internal/runner/...`: the runner of one run, behind `X-Internal-Auth` and (after the
//! exchange) its runner token. The bodies are `runwarden_contracts::runner_api`'s, the ones
//! the runner job sends. Thin: parse, check the token, call `runs`/`tickets`/`secrets`,
//! answer.

use axum::Json as AxumJson;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use runwarden_contracts::SecretName;
use runwarden_contracts::runner_api::{
    CompleteRequest, EventsRequest, ExchangeRequest, ExchangeResponse, MAX_EVENTS_PER_CALL,
    RunnerSecret, SecretsResponse,
};
use runwarden_platform::extract::{Json, Path};
use secrecy::{ExposeSecret, SecretString};

use crate::AppState;
use crate::error::{RunsError, RunsResult};
use crate::routes::paths::RunPath;
use crate::runs::{self, EndedBy, Ending};
use crate::secrets;
use crate::tickets;

/// The runner token of `Authorization: Bearer`; none is 401.
pub(super) fn bearer(headers: &HeaderMap) -> RunsResult<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(RunsError::unauthenticated())
}

pub async fn exchange(
    State(state): State<AppState>,
    Json(req): Json<ExchangeRequest>,
) -> RunsResult<AxumJson<ExchangeResponse>> {
    let exchanged = tickets::exchange(
        &state.pool,
        req.run_id,
        req.ticket.expose_secret(),
        state.runner_grace,
    )
    .await?;
    Ok(AxumJson(ExchangeResponse {
        runner_token: SecretString::from(exchanged.token),
        agent: exchanged.run.agent,
        input: exchanged.run.input.0,
        cap_secs: exchanged.run.granted_cap_secs.unwrap_or(0),
    }))
}

/// The latest version of every secret of the run's project, each read audited
/// (`secret.read_by_runner`) in the same transaction.
pub async fn read_secrets(
    State(state): State<AppState>,
    Path(RunPath { run: run_id }): Path<RunPath>,
    headers: HeaderMap,
) -> RunsResult<AxumJson<SecretsResponse>> {
    let token = bearer(&headers)?;
    let (mut tx, org) = tickets::enter_run(&state.pool, run_id).await?;
    let run = tickets::check_token(&mut tx, org, run_id, token).await?;
    let plain =
        secrets::read_for_runner(&mut tx, &state.vault, org, run.project_id, run_id).await?;
    tx.commit().await?;
    let secrets = plain
        .into_iter()
        .map(|s| {
            Ok(RunnerSecret {
                name: SecretName::parse(&s.name)
                    .map_err(|_| anyhow::anyhow!("a stored secret name breaks the rule"))?,
                kind: s.kind,
                value: s.value,
            })
        })
        .collect::<RunsResult<_>>()?;
    Ok(AxumJson(SecretsResponse { secrets }))
}

pub async fn append_events(
    State(state): State<AppState>,
    Path(RunPath { run: run_id }): Path<RunPath>,
    headers: HeaderMap,
    Json(req): Json<EventsRequest>,
) -> RunsResult<StatusCode> {
    let token = bearer(&headers)?;
    if req.events.len() > MAX_EVENTS_PER_CALL {
        return Err(RunsError::invalid(
            "too_many_events",
            "at most 500 events per call",
        ));
    }
    let (mut tx, org) = tickets::enter_run(&state.pool, run_id).await?;
    tickets::check_token(&mut tx, org, run_id, token).await?;
    runs::append_runner_events(&mut tx, org, run_id, &req.events).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn complete(
    State(state): State<AppState>,
    Path(RunPath { run: run_id }): Path<RunPath>,
    headers: HeaderMap,
    Json(req): Json<CompleteRequest>,
) -> RunsResult<AxumJson<runs::Run>> {
    let token = bearer(&headers)?;
    let (mut tx, org) = tickets::enter_run(&state.pool, run_id).await?;
    tickets::check_token(&mut tx, org, run_id, token).await?;
    let run = runs::finish(
        &mut tx,
        org,
        run_id,
        Ending {
            status: req.outcome.into(),
            exit_code: req.exit_code,
            reported_secs: Some(req.actual_secs),
        },
        EndedBy::Runner,
        None,
    )
    .await?
    .ok_or(RunsError::unauthenticated())?;
    tx.commit().await?;
    Ok(AxumJson(run))
}
