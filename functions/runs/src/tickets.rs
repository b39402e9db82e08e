//! Runner credentials: the single-use ticket a dispatch hands to a run's execution, its
//! exchange for the runner token, and the check of that token on every later call. A token
//! opens one run only, only while the run is `running` and before its cap plus grace;
//! everything else is 401, the same whatever failed.
//!
//! (Three things are called "runner": the job that runs an agent (`functions/runner`), the
//! API it calls (`routes::runner_api`, `/internal/runner/...`), and the credentials it holds,
//! here.)

use chrono::{DateTime, Duration, Utc};
use runwarden_contracts::RunId;
use runwarden_events::{Actor, AuditEvent, Outcome, Target};
use runwarden_tenancy::{OrgId, set_tenant};
use runwarden_tokens::opaque;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::error::{RunsError, RunsResult};
use crate::runs::{self, Run, Status};

/// A transaction scoped to the run's org, or 401 for a run id that names no run.
pub async fn enter_run(
    pool: &PgPool,
    run: RunId,
) -> RunsResult<(Transaction<'static, Postgres>, OrgId)> {
    let mut tx = pool.begin().await?;
    let org: Option<Uuid> = sqlx::query_scalar("SELECT run_org($1)")
        .bind(run)
        .fetch_one(&mut *tx)
        .await?;
    let org = OrgId::from(org.ok_or(RunsError::unauthenticated())?);
    set_tenant(&mut tx, Some(org), None).await?;
    Ok((tx, org))
}

/// Whether a ticket was already issued for `run` (its dispatch was delivered before).
pub async fn issued(tx: &mut PgConnection, run: RunId) -> RunsResult<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM runner_credentials WHERE run_id = $1)")
            .bind(run)
            .fetch_one(tx)
            .await?,
    )
}

/// A fresh single-use ticket for `run`; only its hash is stored.
pub async fn issue(tx: &mut PgConnection, org: OrgId, run: RunId) -> RunsResult<String> {
    let ticket = opaque::generate("rtk_");
    sqlx::query("INSERT INTO runner_credentials (run_id, org_id, ticket_hash) VALUES ($1, $2, $3)")
        .bind(run)
        .bind(org)
        .bind(opaque::hash(&ticket))
        .execute(tx)
        .await?;
    Ok(ticket)
}

fn same_hash(stored: &[u8], presented: &str) -> bool {
    stored.ct_eq(&opaque::hash(presented)).into()
}

/// What the runner gets for its ticket.
pub struct Exchanged {
    pub token: String,
    pub run: Run,
}

/// The outcome of presenting a ticket, committed either way: a replay is audited even
/// though the caller gets 401.
pub async fn exchange(
    pool: &PgPool,
    run_id: RunId,
    ticket: &str,
    grace: Duration,
) -> RunsResult<Exchanged> {
    let (mut tx, org) = enter_run(pool, run_id).await?;
    // The run's row first: a dispatch still committing this runner's ticket holds it.
    runs::get(&mut tx, org, run_id, true).await?;
    let creds: Option<(Vec<u8>, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT ticket_hash, ticket_used_at FROM runner_credentials WHERE run_id = $1 FOR UPDATE",
    )
    .bind(run_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((ticket_hash, used_at)) = creds else {
        return Err(RunsError::unauthenticated());
    };
    if !same_hash(&ticket_hash, ticket) {
        return Err(RunsError::unauthenticated());
    }
    let run = runs::get(&mut tx, org, run_id, true).await?;
    if used_at.is_some() || run.status() != Status::Queued {
        tracing::warn!(
            security_event = "runner_ticket_replay",
            run.id = %run_id,
            "a used runner ticket was presented again"
        );
        let mut event = AuditEvent::new(
            org,
            Actor::runner(run_id),
            "run.ticket_replay",
            Target::new("run", run_id),
        );
        event.outcome = Outcome::Failure;
        event.record(&mut tx).await?;
        tx.commit().await?;
        return Err(RunsError::unauthenticated());
    }
    let token = opaque::generate("rnt_");
    let cap = Duration::seconds(run.granted_cap_secs.unwrap_or(0));
    sqlx::query(
        "UPDATE runner_credentials
         SET ticket_used_at = now(), token_hash = $2, token_expires_at = now() + $3
         WHERE run_id = $1",
    )
    .bind(run_id)
    .bind(opaque::hash(&token))
    .bind(cap + grace)
    .execute(&mut *tx)
    .await?;
    let run: Run = sqlx::query_as(&format!(
        "UPDATE runs SET status = 'running', started_at = now() WHERE org_id = $1 AND id = $2
         RETURNING {}",
        runs::COLUMNS
    ))
    .bind(org)
    .bind(run_id)
    .fetch_one(&mut *tx)
    .await?;
    AuditEvent::new(
        org,
        Actor::runner(run_id),
        "run.start",
        Target::new("run", run_id),
    )
    .record(&mut tx)
    .await?;
    runs::insert_event(&mut tx, org, run_id, "status", "running").await?;
    tx.commit().await?;
    Ok(Exchanged { token, run })
}

/// A runner token's stored hash (none once the run ended) and expiry.
type TokenRow = (Option<Vec<u8>>, Option<DateTime<Utc>>);

/// Checks a runner token for `run` inside `tx` (scoped to the run's org); the run, locked.
pub async fn check_token(
    tx: &mut PgConnection,
    org: OrgId,
    run_id: RunId,
    token: &str,
) -> RunsResult<Run> {
    let creds: Option<TokenRow> = sqlx::query_as(
        "SELECT token_hash, token_expires_at FROM runner_credentials WHERE run_id = $1",
    )
    .bind(run_id)
    .fetch_optional(&mut *tx)
    .await?;
    let valid = match creds {
        Some((Some(hash), Some(expires))) => same_hash(&hash, token) && Utc::now() < expires,
        _ => false,
    };
    if !valid {
        return Err(RunsError::unauthenticated());
    }
    let run = runs::get(tx, org, run_id, true).await?;
    if run.status() != Status::Running {
        return Err(RunsError::unauthenticated());
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_compare_in_full() {
        let token = opaque::generate("rnt_");
        assert!(same_hash(&opaque::hash(&token), &token));
        assert!(!same_hash(&opaque::hash(&token), &token[..token.len() - 1]));
        assert!(!same_hash(&[], &token));
    }
}
