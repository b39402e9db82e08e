//! Runs: the rules (status, agents, caps) and their database work. Every function here runs
//! in a transaction scoped to one org by row-level security, and records its audit event and
//! its Pub/Sub messages (dispatch, finished) in that same transaction (outbox).
//!
//! A run's life: `admitting` (quotas is asked; a retry with the same `Idempotency-Key` asks
//! again, admission being idempotent by run id) → `refused`, or `queued` (its `run-dispatch`
//! message is in the outbox) → `running` (its runner exchanged the single-use ticket for its
//! token) → `succeeded` | `failed` | `timed_out` | `cancelled`. Every end but `refused`
//! publishes `run-finished`, from which quotas settles the reservation.

use chrono::{DateTime, Utc};
use runwarden_contracts::messages::{RunDispatch, RunFinished};
use runwarden_contracts::runner_api::{MAX_MESSAGE_BYTES, RunnerEvent};
use runwarden_contracts::{ProjectId, RunId, topics};
use runwarden_events::{Actor, AuditEvent, Outcome, Target};
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::{OrgContext, OrgId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgConnection;
use sqlx::types::Json;
use uuid::Uuid;

use crate::error::{RunsError, RunsResult};
use crate::rows;

/// Asked for when the request names no cap: quotas grants the plan's.
pub const DEFAULT_REQUESTED_CAP_SECS: i64 = 24 * 3600;
/// The most a run's input may weigh, serialized.
pub const MAX_INPUT_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Admitting,
    Refused,
    Queued,
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admitting => "admitting",
            Self::Refused => "refused",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Admitting,
            Self::Refused,
            Self::Queued,
            Self::Running,
            Self::Succeeded,
            Self::Failed,
            Self::TimedOut,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }

    /// Not ended yet: it may still hold a parallel slot and a runner may still act for it.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Admitting | Self::Queued | Self::Running)
    }
}

/// How a run ended, as the runner reports it.
pub use runwarden_contracts::runner_api::Outcome as RunnerOutcome;

impl From<RunnerOutcome> for Status {
    fn from(o: RunnerOutcome) -> Self {
        match o {
            RunnerOutcome::Succeeded => Self::Succeeded,
            RunnerOutcome::Failed => Self::Failed,
            RunnerOutcome::TimedOut => Self::TimedOut,
        }
    }
}

/// The agents runner images carry, by name: a run names one, never a command line.
#[derive(Debug, Clone)]
pub struct Agents(Vec<String>);

impl Agents {
    /// From a comma list such as `demo,browser`.
    pub fn parse(list: &str) -> Option<Self> {
        let names: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        let valid = |n: &String| {
            n.len() <= 64
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        };
        (!names.is_empty() && names.iter().all(valid)).then_some(Self(names))
    }

    pub fn check(&self, agent: &str) -> RunsResult<()> {
        if self.0.iter().any(|a| a == agent) {
            Ok(())
        } else {
            Err(RunsError::invalid(
                "unknown_agent",
                format!("agent must be one of: {}", self.0.join(", ")),
            ))
        }
    }
}

/// A start request, checked.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub project: ProjectId,
    pub agent: String,
    pub input: Value,
    pub requested_cap_secs: i64,
    pub idempotency_key: Option<String>,
}

impl NewRun {
    pub fn check(
        agents: &Agents,
        project: ProjectId,
        agent: String,
        input: Option<Value>,
        max_seconds: Option<i64>,
        idempotency_key: Option<String>,
    ) -> RunsResult<Self> {
        agents.check(&agent)?;
        let input = input.unwrap_or_else(|| json!({}));
        if !input.is_object() {
            return Err(RunsError::invalid(
                "invalid_input",
                "input must be a JSON object",
            ));
        }
        if input.to_string().len() > MAX_INPUT_BYTES {
            return Err(RunsError::invalid(
                "invalid_input",
                "input must be at most 64 KiB",
            ));
        }
        let requested_cap_secs = match max_seconds {
            None => DEFAULT_REQUESTED_CAP_SECS,
            Some(s) if (1..=DEFAULT_REQUESTED_CAP_SECS).contains(&s) => s,
            Some(_) => {
                return Err(RunsError::invalid(
                    "invalid_cap",
                    "max_seconds must be 1 to 86400",
                ));
            }
        };
        if let Some(key) = &idempotency_key
            && (key.is_empty() || key.len() > 200 || !key.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(RunsError::invalid(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1 to 200 visible ASCII characters",
            ));
        }
        Ok(Self {
            project,
            agent,
            input,
            requested_cap_secs,
            idempotency_key,
        })
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Run {
    pub id: RunId,
    pub org_id: Uuid,
    pub project_id: ProjectId,
    pub agent: String,
    pub input: Json<Value>,
    pub requested_cap_secs: i64,
    pub granted_cap_secs: Option<i64>,
    pub status: String,
    #[serde(skip)]
    pub refusal: Option<Json<Value>>,
    #[serde(skip)]
    pub execution: Option<String>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub actual_secs: Option<i64>,
}

impl Run {
    pub fn status(&self) -> Status {
        Status::parse(&self.status).unwrap_or(Status::Failed)
    }
}

pub const COLUMNS: &str = "id, org_id, project_id, agent, input, requested_cap_secs, \
     granted_cap_secs, status, refusal, execution, created_by, created_at, started_at, \
     finished_at, exit_code, actual_secs";

/// The run as it was first created when `new` carries an `Idempotency-Key` already used in
/// the org, else a new run in `admitting`. The project must exist in the org and be active.
pub async fn insert(tx: &mut PgConnection, ctx: &OrgContext, new: &NewRun) -> RunsResult<Run> {
    if let Some(existing) =
        by_idempotency_key(tx, ctx.org_id, new.idempotency_key.as_deref()).await?
    {
        return Ok(existing);
    }
    let archived: Option<Option<DateTime<Utc>>> =
        sqlx::query_scalar("SELECT archived_at FROM projects WHERE org_id = $1 AND id = $2")
            .bind(ctx.org_id)
            .bind(new.project)
            .fetch_optional(&mut *tx)
            .await?;
    match archived {
        None => return Err(RunsError::not_found()),
        Some(Some(_)) => {
            return Err(RunsError::conflict(
                "project_archived",
                "the project is archived; unarchive it to start runs",
            ));
        }
        Some(None) => {}
    }
    let inserted: Option<Run> = sqlx::query_as(&format!(
        "INSERT INTO runs (id, org_id, project_id, agent, input, requested_cap_secs,
                           idempotency_key, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (org_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
         RETURNING {COLUMNS}"
    ))
    .bind(RunId::new())
    .bind(ctx.org_id)
    .bind(new.project)
    .bind(&new.agent)
    .bind(Json(&new.input))
    .bind(new.requested_cap_secs)
    .bind(new.idempotency_key.as_deref())
    .bind(ctx.principal.user_id)
    .fetch_optional(&mut *tx)
    .await?;
    match inserted {
        Some(run) => Ok(run),
        // A concurrent request with the same key committed first: its run is this one.
        None => by_idempotency_key(tx, ctx.org_id, new.idempotency_key.as_deref())
            .await?
            .ok_or_else(|| RunsError::from(anyhow::anyhow!("idempotent run vanished"))),
    }
}

async fn by_idempotency_key(
    tx: &mut PgConnection,
    org: OrgId,
    key: Option<&str>,
) -> RunsResult<Option<Run>> {
    let Some(key) = key else { return Ok(None) };
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM runs WHERE org_id = $1 AND idempotency_key = $2"
    ))
    .bind(org)
    .bind(key)
    .fetch_optional(tx)
    .await?)
}

/// The run, locked for the rest of the transaction when `lock`; another org's (or none) is 404.
pub async fn get(tx: &mut PgConnection, org: OrgId, id: RunId, lock: bool) -> RunsResult<Run> {
    rows::by_id(tx, "runs", COLUMNS, org, id, lock).await
}

/// One page, newest first; `before` is the last id of the previous page.
pub async fn list(
    tx: &mut PgConnection,
    org: OrgId,
    before: Option<RunId>,
    limit: i64,
) -> RunsResult<Vec<Run>> {
    rows::newest_first(tx, "runs", COLUMNS, org, before, limit).await
}

fn user_event(meta: &RequestMeta, ctx: &OrgContext, action: &str, run: RunId) -> AuditEvent {
    AuditEvent::by_user(
        meta,
        ctx.org_id,
        ctx.principal.user_id,
        action,
        Target::new("run", run),
    )
}

/// Quotas admitted the run: it is queued and its dispatch goes out with this commit.
pub async fn admitted(
    tx: &mut PgConnection,
    meta: &RequestMeta,
    ctx: &OrgContext,
    run: RunId,
    granted_cap_secs: i64,
) -> RunsResult<Run> {
    let run: Run = sqlx::query_as(&format!(
        "UPDATE runs SET status = 'queued', granted_cap_secs = $3
         WHERE org_id = $1 AND id = $2 AND status = 'admitting'
         RETURNING {COLUMNS}"
    ))
    .bind(ctx.org_id)
    .bind(run)
    .bind(granted_cap_secs)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| RunsError::conflict("run_not_admitting", "the run is no longer admitting"))?;
    runwarden_events::enqueue(
        tx,
        ctx.org_id,
        topics::RUN_DISPATCH,
        "run.dispatch",
        &RunDispatch {
            run_id: run.id,
            org_id: ctx.org_id.as_uuid(),
        },
    )
    .await?;
    user_event(meta, ctx, "run.create", run.id)
        .with_details(json!({
            "project_id": run.project_id,
            "agent": run.agent,
            "granted_cap_secs": granted_cap_secs,
        }))
        .record(tx)
        .await?;
    insert_event(tx, ctx.org_id, run.id, "status", "queued").await?;
    Ok(run)
}

/// Quotas refused the run; `problem` is its answer, replayed to a retry with the same key.
pub async fn refused(
    tx: &mut PgConnection,
    meta: &RequestMeta,
    ctx: &OrgContext,
    run: RunId,
    problem: &Value,
) -> RunsResult<()> {
    sqlx::query(
        "UPDATE runs SET status = 'refused', refusal = $3, finished_at = now()
         WHERE org_id = $1 AND id = $2 AND status = 'admitting'",
    )
    .bind(ctx.org_id)
    .bind(run)
    .bind(Json(problem))
    .execute(&mut *tx)
    .await?;
    let mut event = user_event(meta, ctx, "run.create", run)
        .with_details(json!({"refused": problem.get("code")}));
    event.outcome = Outcome::Failure;
    event.record(tx).await?;
    Ok(())
}

/// Appends one event to the run's stream (and wakes its SSE watchers).
pub async fn insert_event(
    tx: &mut PgConnection,
    org: OrgId,
    run: RunId,
    kind: &str,
    message: &str,
) -> RunsResult<()> {
    sqlx::query("INSERT INTO run_events (run_id, org_id, kind, message) VALUES ($1, $2, $3, $4)")
        .bind(run)
        .bind(org)
        .bind(kind)
        .bind(message)
        .execute(&mut *tx)
        .await?;
    notify_events(tx, run).await
}

/// Appends what the runner reported to the run's stream (messages cut to
/// [`MAX_MESSAGE_BYTES`]) and wakes its SSE watchers.
pub async fn append_runner_events(
    tx: &mut PgConnection,
    org: OrgId,
    run: RunId,
    events: &[RunnerEvent],
) -> RunsResult<()> {
    for event in events {
        let (kind, stream, message, percent) = match event {
            RunnerEvent::Log { stream, message } => {
                ("log", Some(stream.as_str()), message.as_str(), None)
            }
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
        .bind(run)
        .bind(org)
        .bind(kind)
        .bind(stream)
        .bind(clip(message))
        .bind(percent)
        .execute(&mut *tx)
        .await?;
    }
    notify_events(tx, run).await
}

/// Cuts `message` to at most [`MAX_MESSAGE_BYTES`], on a character boundary.
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

/// Wakes the SSE streams of `run` when the transaction commits.
pub async fn notify_events(tx: &mut PgConnection, run: RunId) -> RunsResult<()> {
    sqlx::query("SELECT pg_notify('run_events', $1)")
        .bind(run.to_string())
        .execute(tx)
        .await?;
    Ok(())
}

/// Who ends a run.
#[derive(Debug, Clone, Copy)]
pub enum EndedBy {
    Runner,
    User(runwarden_tenancy::UserId),
    /// The reaper: past its cap plus grace, or never started.
    Reaper,
}

/// How a run ends: its status, the exit code and the seconds the runner reports (if any).
#[derive(Debug, Clone, Copy)]
pub struct Ending {
    pub status: Status,
    pub exit_code: Option<i32>,
    pub reported_secs: Option<i64>,
}

impl Ending {
    /// Ended by the server (cancel, reaper): no exit code, time measured here.
    pub fn by_server(status: Status) -> Self {
        Self {
            status,
            exit_code: None,
            reported_secs: None,
        }
    }
}

/// Ends a live run: its status, time and exit code; the runner token dies; `run-finished`
/// goes out for settlement; one audit event. A run already ended is left as it is (`None`).
pub async fn finish(
    tx: &mut PgConnection,
    org: OrgId,
    run: RunId,
    ending: Ending,
    by: EndedBy,
    meta: Option<&RequestMeta>,
) -> RunsResult<Option<Run>> {
    let Ending {
        status,
        exit_code,
        reported_secs,
    } = ending;
    let current = get(tx, org, run, true).await?;
    if !current.status().is_live() {
        return Ok(None);
    }
    // Metering stops at the cap whatever is reported; a run never started cost nothing.
    let cap = current.granted_cap_secs.unwrap_or(0);
    let actual_secs = match (current.started_at, reported_secs) {
        (None, _) => 0,
        (Some(_), Some(secs)) => secs.clamp(0, cap),
        (Some(started), None) => (Utc::now() - started).num_seconds().clamp(0, cap),
    };
    let ended: Run = sqlx::query_as(&format!(
        "UPDATE runs SET status = $3, exit_code = $4, actual_secs = $5, finished_at = now()
         WHERE org_id = $1 AND id = $2
         RETURNING {COLUMNS}"
    ))
    .bind(org)
    .bind(run)
    .bind(status.as_str())
    .bind(exit_code)
    .bind(actual_secs)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE runner_credentials SET token_hash = NULL WHERE org_id = $1 AND run_id = $2",
    )
    .bind(org)
    .bind(run)
    .execute(&mut *tx)
    .await?;
    // Even a run that never left `admitting`: quotas may have admitted it before its answer
    // was lost, and settling a run it never admitted changes nothing.
    runwarden_events::enqueue(
        tx,
        org,
        topics::RUN_FINISHED,
        "run.finished",
        &RunFinished {
            run_id: run,
            org_id: org.as_uuid(),
            status: status.as_str().to_owned(),
            actual_secs,
        },
    )
    .await?;
    let (action, actor) = match by {
        EndedBy::Runner => ("run.finish", Actor::runner(run)),
        EndedBy::User(user) => ("run.cancel", Actor::user(user)),
        EndedBy::Reaper => ("run.reap", Actor::system()),
    };
    let mut event = AuditEvent::new(org, actor, action, Target::new("run", run)).with_details(
        json!({"status": status.as_str(), "exit_code": exit_code, "actual_secs": actual_secs}),
    );
    if let Some(meta) = meta {
        event = event.with_request(meta.request_id.clone(), meta.ip, meta.user_agent.clone());
    }
    event.record(tx).await?;
    insert_event(tx, org, run, "status", status.as_str()).await?;
    Ok(Some(ended))
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

    fn agents() -> Agents {
        Agents::parse("demo, browser").unwrap()
    }

    #[test]
    fn statuses_round_trip_and_only_three_are_live() {
        for s in [
            Status::Admitting,
            Status::Refused,
            Status::Queued,
            Status::Running,
            Status::Succeeded,
            Status::Failed,
            Status::TimedOut,
            Status::Cancelled,
        ] {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            assert_eq!(
                s.is_live(),
                matches!(s, Status::Admitting | Status::Queued | Status::Running)
            );
        }
        assert_eq!(Status::parse("paused"), None);
    }

    #[test]
    fn agents_are_names_from_the_configured_list_never_commands() {
        assert!(agents().check("demo").is_ok());
        assert!(agents().check("rm -rf /").is_err());
        assert!(Agents::parse("bash -c x").is_none());
        assert!(Agents::parse(" , ").is_none());
    }

    #[test]
    fn start_requests_are_checked() {
        let p = ProjectId::new();
        let ok = NewRun::check(
            &agents(),
            p,
            "demo".into(),
            None,
            Some(60),
            Some("k-1".into()),
        )
        .unwrap();
        assert_eq!((ok.requested_cap_secs, ok.input.clone()), (60, json!({})));
        let default = NewRun::check(&agents(), p, "demo".into(), None, None, None).unwrap();
        assert_eq!(default.requested_cap_secs, DEFAULT_REQUESTED_CAP_SECS);
        for (agent, input, cap, key) in [
            ("nope", None, None, None),
            ("demo", Some(json!([1])), None, None),
            (
                "demo",
                Some(json!({"x": "y".repeat(MAX_INPUT_BYTES)})),
                None,
                None,
            ),
            ("demo", None, Some(0), None),
            ("demo", None, Some(86_401), None),
            ("demo", None, None, Some(String::new())),
            ("demo", None, None, Some("has space".into())),
        ] {
            assert!(
                NewRun::check(&agents(), p, agent.into(), input.clone(), cap, key.clone()).is_err(),
                "{agent} {input:?} {cap:?} {key:?}"
            );
        }
    }
}
