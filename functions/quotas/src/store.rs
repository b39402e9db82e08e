//! quotas' database work. Every function here runs in one transaction scoped to one org
//! (row-level security reads `app.org_id`), so the org's rows are all it can see.
//!
//! Admission locks the org's `quota_usage` row (`SELECT ... FOR UPDATE`): admissions of one
//! org serialize, and each reads usage that no concurrent admission can change before it
//! commits. Transactions that fail with a serialization failure or deadlock are retried.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use runwarden_events::{Actor, AuditEvent, Target};
use runwarden_platform::error::{self, ApiError};
use runwarden_tenancy::{OrgId, set_tenant};
use serde::Serialize;
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::error::{QuotasError, QuotasResult};
use crate::rules::{self, Grant, Limits, Overrides, Refusal, Usage};

/// Attempts of one transaction before a retryable failure answers 503.
const ATTEMPTS: u32 = 5;

/// Runs `op` again (with jittered backoff) while it fails with 40001 / 40P01.
pub async fn with_retries<T, F, Fut>(mut op: F) -> QuotasResult<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, TxError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Ok(value) => return Ok(value),
            Err(TxError::Db(e)) if error::is_retryable(&e) && attempt < ATTEMPTS => {
                let jitter = u64::from(Uuid::new_v4().as_bytes()[0]) % 20;
                let delay = Duration::from_millis(10 * u64::from(attempt) + jitter);
                tracing::warn!(attempt, error = %e, "retrying a quota transaction");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(TxError::Db(e)) => return Err(e.into()),
            Err(TxError::Quota(e)) => return Err(e),
        }
    }
}

/// A failure inside a retried transaction: the database's (maybe retryable) or a decision.
#[derive(Debug)]
pub enum TxError {
    Db(sqlx::Error),
    Quota(QuotasError),
}

impl From<sqlx::Error> for TxError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(e)
    }
}

impl From<QuotasError> for TxError {
    fn from(e: QuotasError) -> Self {
        Self::Quota(e)
    }
}

impl From<ApiError> for TxError {
    fn from(e: ApiError) -> Self {
        Self::Quota(e.into())
    }
}

/// An org's plan and the limits it runs under.
#[derive(Debug, Clone, Serialize)]
pub struct OrgLimits {
    pub plan: String,
    pub limits: Limits,
    /// When a trial ends (`None` outside trial): no run is admitted after it.
    pub trial_ends_at: Option<DateTime<Utc>>,
    /// The overrides stored (ignored while on trial).
    pub overrides: Overrides,
}

/// Reads the org's plan, its effective limits (`org_limits` in the migrations, the one place
/// the trial rule lives) and its stored overrides; `None` if no such live org.
pub async fn org_limits(conn: &mut PgConnection, org: OrgId) -> sqlx::Result<Option<OrgLimits>> {
    #[derive(sqlx::FromRow)]
    struct Row {
        plan: String,
        #[sqlx(flatten)]
        limits: Limits,
        trial_ends_at: Option<DateTime<Utc>>,
        o_active_projects: Option<i64>,
        o_runs_per_month: Option<i64>,
        o_parallel_runs: Option<i64>,
        o_wall_clock_cap_secs: Option<i64>,
        o_monthly_budget_cents: Option<i64>,
        o_cost_cents_per_hour: Option<i64>,
        o_requests_per_minute: Option<i64>,
    }
    let row: Option<Row> = sqlx::query_as(
        "SELECT l.plan, l.active_projects, l.runs_per_month, l.parallel_runs,
                l.wall_clock_cap_secs, l.monthly_budget_cents, l.cost_cents_per_hour,
                l.requests_per_minute, l.trial_ends_at,
                v.active_projects AS o_active_projects, v.runs_per_month AS o_runs_per_month,
                v.parallel_runs AS o_parallel_runs, v.wall_clock_cap_secs AS o_wall_clock_cap_secs,
                v.monthly_budget_cents AS o_monthly_budget_cents,
                v.cost_cents_per_hour AS o_cost_cents_per_hour,
                v.requests_per_minute AS o_requests_per_minute
         FROM org_limits($1) l
         LEFT JOIN quota_overrides v ON v.org_id = $1",
    )
    .bind(org)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| OrgLimits {
        plan: r.plan,
        limits: r.limits,
        trial_ends_at: r.trial_ends_at,
        overrides: Overrides {
            active_projects: r.o_active_projects,
            runs_per_month: r.o_runs_per_month,
            parallel_runs: r.o_parallel_runs,
            wall_clock_cap_secs: r.o_wall_clock_cap_secs,
            monthly_budget_cents: r.o_monthly_budget_cents,
            cost_cents_per_hour: r.o_cost_cents_per_hour,
            requests_per_minute: r.o_requests_per_minute,
        },
    }))
}

/// Projects of the org not archived.
pub async fn active_projects(conn: &mut PgConnection, org: OrgId) -> sqlx::Result<i64> {
    sqlx::query_scalar("SELECT count(*) FROM projects WHERE org_id = $1 AND archived_at IS NULL")
        .bind(org)
        .fetch_one(conn)
        .await
}

/// The org's usage this UTC calendar month and its live reservations.
pub async fn usage(conn: &mut PgConnection, org: OrgId) -> sqlx::Result<Usage> {
    let (runs_this_month, parallel_now, spent_cents, reserved_cents): (i64, i64, i64, i64) =
        sqlx::query_as(
            "SELECT
                count(*) FILTER (WHERE admitted_at >= month_start),
                count(*) FILTER (WHERE status = 'reserved'),
                coalesce(sum(actual_cents) FILTER (WHERE admitted_at >= month_start
                                                   AND status <> 'reserved'), 0)::bigint,
                coalesce(sum(reserved_cents) FILTER (WHERE admitted_at >= month_start
                                                     AND status = 'reserved'), 0)::bigint
             FROM quota_admissions,
                  (SELECT date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                          AS month_start) m
             WHERE org_id = $1 AND status <> 'refused'
               AND (admitted_at >= month_start OR status = 'reserved')",
        )
        .bind(org)
        .fetch_one(conn)
        .await?;
    Ok(Usage {
        runs_this_month,
        parallel_now,
        spent_cents,
        reserved_cents,
    })
}

/// One run's recorded decision.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Admission {
    pub run_id: Uuid,
    pub org_id: Uuid,
    pub status: String,
    pub refusal_code: Option<String>,
    pub granted_cap_secs: i64,
    pub cost_cents_per_hour: i64,
    pub reserved_cents: i64,
    pub actual_secs: Option<i64>,
    pub actual_cents: Option<i64>,
    pub admitted_at: DateTime<Utc>,
}

impl Admission {
    /// The decision as the admission route answers it.
    pub fn decision(&self) -> Result<Grant, Refusal> {
        match self.refusal_code.as_deref() {
            Some(code) => Err(Refusal::from_code(code).unwrap_or(Refusal::ParallelRunsExceeded)),
            None => Ok(Grant {
                granted_cap_secs: self.granted_cap_secs,
                reserved_cents: self.reserved_cents,
            }),
        }
    }
}

const ADMISSION_COLUMNS: &str = "run_id, org_id, status, refusal_code, granted_cap_secs, \
     cost_cents_per_hour, reserved_cents, actual_secs, actual_cents, admitted_at";

async fn find_admission(
    conn: &mut PgConnection,
    run: Uuid,
    lock: bool,
) -> sqlx::Result<Option<Admission>> {
    let sql = format!(
        "SELECT {ADMISSION_COLUMNS} FROM quota_admissions WHERE run_id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    sqlx::query_as(&sql).bind(run).fetch_optional(conn).await
}

/// Admits (or refuses) `run` for `org`, once: a second call returns the first decision.
pub async fn admit(
    pool: &PgPool,
    org: OrgId,
    run: Uuid,
    requested_cap_secs: i64,
) -> QuotasResult<Result<Grant, Refusal>> {
    with_retries(|| admit_once(pool, org, run, requested_cap_secs)).await
}

async fn admit_once(
    pool: &PgPool,
    org: OrgId,
    run: Uuid,
    requested_cap_secs: i64,
) -> Result<Result<Grant, Refusal>, TxError> {
    let mut tx = pool.begin().await?;
    set_tenant(&mut tx, Some(org), None).await?;
    if org_limits(&mut tx, org).await?.is_none() {
        return Err(ApiError::NotFound.into());
    }
    sqlx::query("INSERT INTO quota_usage (org_id) VALUES ($1) ON CONFLICT (org_id) DO NOTHING")
        .bind(org)
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT org_id FROM quota_usage WHERE org_id = $1 FOR UPDATE")
        .bind(org)
        .execute(&mut *tx)
        .await?;
    // Under the lock: a concurrent admission of the same run has committed or not begun.
    if let Some(existing) = find_admission(&mut tx, run, false).await? {
        return Ok(existing.decision());
    }
    if sqlx::query_scalar::<_, Option<Uuid>>("SELECT quota_run_org($1)")
        .bind(run)
        .fetch_one(&mut *tx)
        .await?
        .is_some()
    {
        // The run id belongs to another org.
        return Err(ApiError::conflict("run_id_conflict", "run id already used").into());
    }
    // Read under the lock (a plan change may have committed meanwhile).
    let org_limits = org_limits(&mut tx, org).await?.ok_or(ApiError::NotFound)?;
    let limits = org_limits.limits;
    let usage = usage(&mut tx, org).await?;
    let decision = if let Some(refusal) = rules::plan_refusal(&org_limits.plan) {
        Err(refusal)
    } else if rules::trial_over(org_limits.trial_ends_at, Utc::now()) {
        Err(Refusal::TrialExpired)
    } else {
        rules::decide(&limits, &usage, requested_cap_secs)
    };
    match decision {
        Ok(grant) => {
            sqlx::query(
                "INSERT INTO quota_admissions (run_id, org_id, status, requested_cap_secs,
                     granted_cap_secs, cost_cents_per_hour, reserved_cents)
                 VALUES ($1, $2, 'reserved', $3, $4, $5, $6)",
            )
            .bind(run)
            .bind(org)
            .bind(requested_cap_secs)
            .bind(grant.granted_cap_secs)
            .bind(limits.cost_cents_per_hour)
            .bind(grant.reserved_cents)
            .execute(&mut *tx)
            .await
            .map_err(run_id_taken)?;
        }
        Err(refusal) => {
            sqlx::query(
                "INSERT INTO quota_admissions (run_id, org_id, status, refusal_code,
                     requested_cap_secs)
                 VALUES ($1, $2, 'refused', $3, $4)",
            )
            .bind(run)
            .bind(org)
            .bind(refusal.code())
            .bind(requested_cap_secs)
            .execute(&mut *tx)
            .await
            .map_err(run_id_taken)?;
        }
    }
    tx.commit().await?;
    Ok(decision)
}

/// Another org's admission of the same run id committed while this one ran (the org locks
/// serialize one org's admissions, not two orgs'): the run id is taken, not an internal error.
fn run_id_taken(e: sqlx::Error) -> TxError {
    match &e {
        sqlx::Error::Database(db)
            if db.is_unique_violation() && db.constraint() == Some("quota_admissions_pkey") =>
        {
            ApiError::conflict("run_id_conflict", "run id already used").into()
        }
        _ => e.into(),
    }
}

/// A run's settlement as recorded (the body of `POST /internal/settlements`).
pub use runwarden_contracts::quotas::Settlement;

impl From<Admission> for Settlement {
    fn from(a: Admission) -> Self {
        Self {
            run_id: a.run_id.into(),
            status: a.status,
            actual_secs: a.actual_secs,
            actual_cents: a.actual_cents,
        }
    }
}

/// How a run ended, for settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Finished (or failed, or was cancelled) after this many seconds.
    Finished { actual_secs: i64 },
    /// Never reported: settled at its cap.
    TimedOut,
}

/// Replaces `run`'s reservation with its actual cost and frees its parallel slot, once: a
/// run already settled (or refused) is left as it is. `None`: no such run.
pub async fn settle(pool: &PgPool, run: Uuid, ending: Ending) -> QuotasResult<Option<Settlement>> {
    with_retries(|| settle_once(pool, run, ending)).await
}

async fn settle_once(
    pool: &PgPool,
    run: Uuid,
    ending: Ending,
) -> Result<Option<Settlement>, TxError> {
    let mut tx = pool.begin().await?;
    let org: Option<Uuid> = sqlx::query_scalar("SELECT quota_run_org($1)")
        .bind(run)
        .fetch_one(&mut *tx)
        .await?;
    let Some(org) = org else {
        return Ok(None);
    };
    set_tenant(&mut tx, Some(OrgId::from(org)), None).await?;
    let Some(admission) = find_admission(&mut tx, run, true).await? else {
        return Ok(None);
    };
    if admission.status != "reserved" {
        return Ok(Some(admission.into()));
    }
    let (status, actual_secs) = match ending {
        Ending::Finished { actual_secs } => {
            ("settled", actual_secs.clamp(0, admission.granted_cap_secs))
        }
        Ending::TimedOut => ("timed_out", admission.granted_cap_secs),
    };
    let actual_cents = rules::settled_cents(
        actual_secs,
        admission.granted_cap_secs,
        admission.cost_cents_per_hour,
    );
    sqlx::query(
        "UPDATE quota_admissions
         SET status = $2, actual_secs = $3, actual_cents = $4, settled_at = now()
         WHERE run_id = $1",
    )
    .bind(run)
    .bind(status)
    .bind(actual_secs)
    .bind(actual_cents)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(Settlement {
        run_id: run.into(),
        status: status.into(),
        actual_secs: Some(actual_secs),
        actual_cents: Some(actual_cents),
    }))
}

/// Settles every reservation past its cap plus `grace` as timed out at its cap. Returns
/// how many were settled.
pub async fn reap_expired(pool: &PgPool, grace: Duration) -> QuotasResult<u64> {
    let grace_secs = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
    let expired: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT run_id, org_id FROM quota_expired_reservations($1)")
            .bind(grace_secs)
            .fetch_all(pool)
            .await?;
    let mut settled = 0;
    for (run, org) in expired {
        if let Some(s) = settle(pool, run, Ending::TimedOut).await?
            && s.status == "timed_out"
        {
            tracing::warn!(run.id = %run, org.id = %org, "reservation past its cap settled as timed out");
            settled += 1;
        }
    }
    Ok(settled)
}

/// Changes the org's plan, audited in the same transaction. Returns the new limits.
pub async fn set_plan(pool: &PgPool, org: OrgId, plan: &str) -> QuotasResult<OrgLimits> {
    let mut tx = pool.begin().await?;
    set_tenant(&mut tx, Some(org), None).await?;
    let known: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM plans WHERE name = $1)")
        .bind(plan)
        .fetch_one(&mut *tx)
        .await?;
    if !known {
        return Err(ApiError::invalid("unknown_plan", "no such plan").into());
    }
    let previous: Option<String> = sqlx::query_scalar(
        "SELECT plan FROM orgs WHERE id = $1 AND terminated_at IS NULL FOR UPDATE",
    )
    .bind(org)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(previous) = previous else {
        return Err(ApiError::NotFound.into());
    };
    sqlx::query("UPDATE orgs SET plan = $2, updated_at = now() WHERE id = $1")
        .bind(org)
        .bind(plan)
        .execute(&mut *tx)
        .await?;
    AuditEvent::new(
        org,
        Actor::system(),
        "quota.plan_change",
        Target::new("org", org),
    )
    .with_details(json!({"from": previous, "to": plan}))
    .record(&mut tx)
    .await?;
    let limits = org_limits(&mut tx, org).await?.ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(limits)
}

/// Replaces the org's overrides (every field; `None` keeps the plan's value), audited in the
/// same transaction. Refused on trial: its caps are hard.
pub async fn set_overrides(
    pool: &PgPool,
    org: OrgId,
    overrides: &Overrides,
) -> QuotasResult<OrgLimits> {
    if let Some(field) = overrides.invalid_field() {
        return Err(
            ApiError::invalid("invalid_override", format!("{field} is out of range")).into(),
        );
    }
    let mut tx = pool.begin().await?;
    set_tenant(&mut tx, Some(org), None).await?;
    let plan: Option<String> = sqlx::query_scalar(
        "SELECT plan FROM orgs WHERE id = $1 AND terminated_at IS NULL FOR UPDATE",
    )
    .bind(org)
    .fetch_optional(&mut *tx)
    .await?;
    match plan.as_deref() {
        None => return Err(ApiError::NotFound.into()),
        Some(rules::TRIAL) => {
            return Err(ApiError::conflict(
                "trial_caps_fixed",
                "trial caps are hard and cannot be overridden",
            )
            .into());
        }
        Some(_) => {}
    }
    sqlx::query(
        "INSERT INTO quota_overrides (org_id, active_projects, runs_per_month, parallel_runs,
             wall_clock_cap_secs, monthly_budget_cents, cost_cents_per_hour, requests_per_minute)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (org_id) DO UPDATE SET
             active_projects = EXCLUDED.active_projects,
             runs_per_month = EXCLUDED.runs_per_month,
             parallel_runs = EXCLUDED.parallel_runs,
             wall_clock_cap_secs = EXCLUDED.wall_clock_cap_secs,
             monthly_budget_cents = EXCLUDED.monthly_budget_cents,
             cost_cents_per_hour = EXCLUDED.cost_cents_per_hour,
             requests_per_minute = EXCLUDED.requests_per_minute,
             updated_at = now()",
    )
    .bind(org)
    .bind(overrides.active_projects)
    .bind(overrides.runs_per_month)
    .bind(overrides.parallel_runs)
    .bind(overrides.wall_clock_cap_secs)
    .bind(overrides.monthly_budget_cents)
    .bind(overrides.cost_cents_per_hour)
    .bind(overrides.requests_per_minute)
    .execute(&mut *tx)
    .await?;
    AuditEvent::new(
        org,
        Actor::system(),
        "quota.overrides_change",
        Target::new("org", org),
    )
    .with_details(serde_json::to_value(overrides).unwrap_or_default())
    .record(&mut tx)
    .await?;
    let limits = org_limits(&mut tx, org).await?.ok_or(ApiError::NotFound)?;
    tx.commit().await?;
    Ok(limits)
}
