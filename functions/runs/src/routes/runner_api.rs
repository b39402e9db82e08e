//! `/internal/runner/...`: the runner of one run, behind `X-Internal-Auth` and (after the
//! exchange) its runner token. Thin: parse, check the token, call `runs`/`tickets`, answer.

use axum::Json as AxumJson;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use runwarden_platform::extract::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::AppState;
use crate::error::{RunsError, RunsResult};
use crate::runs::{self, EndedBy, Ending, RunnerOutcome};
use crate::secrets::{self, SecretKind};
use crate::tickets;

/// Most events in one append, and the longest message kept (longer ones are cut).
pub const MAX_EVENTS_PER_CALL: usize = 500;
pub const MAX_MESSAGE_BYTES: usize = 4096;

fn bearer(headers: &HeaderMap) -> RunsResult<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(RunsError::unauthenticated())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRequest {
    pub run_id: Uuid,
    pub ticket: String,
}

#[derive(Serialize)]
pub struct ExchangeResponse {
    pub runner_token: String,
    pub agent: String,
    pub input: Value,
    pub cap_secs: i64,
}

pub async fn exchange(
    State(state): State<AppState>,
    Json(req): Json<ExchangeRequest>,
) -> RunsResult<AxumJson<ExchangeResponse>> {
    let exchanged =
        tickets::exchange(&state.pool, req.run_id, &req.ticket, state.runner_grace).await?;
    Ok(AxumJson(ExchangeResponse {
        runner_token: exchanged.token,
        agent: exchanged.run.agent,
        input: exchanged.run.input.0,
        cap_secs: exchanged.run.granted_cap_secs.unwrap_or(0),
    }))
}

/// One secret as the runner receives it: the only answer that carries a plaintext, and only
/// to the live runner of a run of that project.
#[derive(Serialize)]
pub struct RunnerSecret {
    pub name: String,
    pub kind: SecretKind,
    pub value: String,
}

#[derive(Serialize)]
pub struct SecretsResponse {
    pub secrets: Vec<RunnerSecret>,
}

/// The latest version of every secret of the run's project, each read audited
/// (`secret.read_by_runner`) in the same transaction.
pub async fn read_secrets(
    State(state): State<AppState>,
    Path(run_id): Path<Uuid>,
    headers: HeaderMap,
) -> RunsResult<AxumJson<SecretsResponse>> {
    use secrecy::ExposeSecret;
    let token = bearer(&headers)?;
    let (mut tx, org) = tickets::enter_run(&state.pool, run_id).await?;
    let run = tickets::check_token(&mut tx, org, run_id, token).await?;
    let plain =
        secrets::read_for_runner(&mut tx, &state.vault, org, run.project_id, run_id).await?;
    tx.commit().await?;
    Ok(AxumJson(SecretsResponse {
        secrets: plain
            .into_iter()
            .map(|s| RunnerSecret {
                name: s.name,
                kind: s.kind,
                value: s.value.expose_secret().to_owned(),
            })
            .collect(),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RunnerEvent {
    Log {
        stream: Stream,
        message: String,
    },
    Status {
        message: String,
    },
    Progress {
        percent: u8,
        #[serde(default)]
        message: String,
    },
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsRequest {
    pub events: Vec<RunnerEvent>,
}

/// Cuts `message` to at most `MAX_MESSAGE_BYTES`, on a character boundary.
pub fn clip(message: &str) -> &str {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

pub async fn append_events(
    State(state): State<AppState>,
    Path(run_id): Path<Uuid>,
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
    for event in &req.events {
        let (kind, stream, message, percent) = match event {
            RunnerEvent::Log { stream, message } => (
                "log",
                Some(match stream {
                    Stream::Stdout => "stdout",
                    Stream::Stderr => "stderr",
                }),
                message.as_str(),
                None,
            ),
            RunnerEvent::Status { message } => ("status", None, message.as_str(), None),
            RunnerEvent::Progress { percent, message } => (
                "progress",
                None,
                message.as_str(),
                Some(i16::from((*percent).min(100))),
            ),
        };
        sqlx::query(
            "INSERT INTO run_events (run_id, org_id, kind, stream, message, percent)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(run_id)
        .bind(org)
        .bind(kind)
        .bind(stream)
        .bind(clip(message))
        .bind(percent)
        .execute(&mut *tx)
        .await?;
    }
    runs::notify_events(&mut tx, run_id).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    pub outcome: RunnerOutcome,
    pub exit_code: Option<i32>,
    pub actual_secs: i64,
}

pub async fn complete(
    State(state): State<AppState>,
    Path(run_id): Path<Uuid>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        assert_eq!(clip("short"), "short");
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let cut = clip(&long);
        assert!(cut.len() <= MAX_MESSAGE_BYTES && cut.len() >= MAX_MESSAGE_BYTES - 1);
        assert!(long.starts_with(cut));
    }
}
