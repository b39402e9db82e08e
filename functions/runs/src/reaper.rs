//! Cap enforcement without the runner: a run past its cap plus grace (or never dispatched in
//! that time) is ended by the server — `timed_out` if it started, `failed` otherwise — its
//! execution is stopped, and `run-finished` goes out so quotas settles it.

use std::time::Duration;

use runwarden_contracts::RunId;
use runwarden_platform::app::Stop;
use runwarden_tenancy::{OrgId, set_tenant};
use sqlx::PgPool;
use uuid::Uuid;

use crate::dispatch::Executor;
use crate::error::RunsResult;
use crate::runs::{self, EndedBy, Ending, Status};

/// Ends every overdue run; returns how many it ended.
pub async fn reap(pool: &PgPool, executor: &Executor, grace: Duration) -> RunsResult<u64> {
    let grace_secs = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
    let overdue: Vec<(RunId, Uuid)> = sqlx::query_as("SELECT run_id, org_id FROM runs_overdue($1)")
        .bind(grace_secs)
        .fetch_all(pool)
        .await?;
    let mut ended = 0;
    for (run, org) in overdue {
        let org = OrgId::from(org);
        let mut tx = pool.begin().await?;
        set_tenant(&mut tx, Some(org), None).await?;
        let current = runs::get(&mut tx, org, run, true).await?;
        let status = if current.started_at.is_some() {
            Status::TimedOut
        } else {
            Status::Failed
        };
        if let Some(done) = runs::finish(
            &mut tx,
            org,
            run,
            Ending::by_server(status),
            EndedBy::Reaper,
            None,
        )
        .await?
        {
            tx.commit().await?;
            tracing::warn!(run.id = %run, org.id = %org, status = %done.status, "overdue run ended by the reaper");
            if let Some(execution) = &done.execution {
                executor.cancel(execution).await;
            }
            ended += 1;
        }
    }
    Ok(ended)
}

/// The reaper task: [`reap`] every `every` until `stop` fires (a pass in progress is
/// finished). For [`runwarden_platform::app::Service::background`].
pub async fn run(stop: Stop, pool: PgPool, executor: Executor, grace: Duration, every: Duration) {
    runwarden_platform::app::every(stop, "reaper", every, || async {
        reap(&pool, &executor, grace).await?;
        Ok(())
    })
    .await;
}
