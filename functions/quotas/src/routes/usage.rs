//! `GET /v1/orgs/{org}/usage`: the org's plan, effective limits and this month's usage, for
//! any member (Viewer and up).

use axum::Json;
use chrono::{DateTime, Datelike, TimeZone, Utc};
use runwarden_platform::error::ApiError;
use runwarden_tenancy::Role;
use serde::Serialize;

use crate::error::QuotasResult;
use crate::extract::OrgAccess;
use crate::rules::Limits;
use crate::store;

#[derive(Debug, Serialize)]
pub struct UsageBody {
    pub org_id: runwarden_tenancy::OrgId,
    pub plan: String,
    pub limits: Limits,
    /// When the trial ends (null outside trial).
    pub trial_ends_at: Option<DateTime<Utc>>,
    pub month_start: DateTime<Utc>,
    pub active_projects: i64,
    pub runs_this_month: i64,
    pub parallel_runs: i64,
    pub reserved_cents: i64,
    pub spent_cents: i64,
}

/// The first instant of `now`'s UTC calendar month.
pub fn month_start(now: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0)
        .single()
        .unwrap_or(now)
}

pub async fn get_usage(mut access: OrgAccess) -> QuotasResult<Json<UsageBody>> {
    access.require(Role::Viewer)?;
    let org = access.ctx.org_id;
    let limits = store::org_limits(&mut access.tx, org)
        .await?
        .ok_or(ApiError::NotFound)?;
    let usage = store::usage(&mut access.tx, org).await?;
    let active_projects = store::active_projects(&mut access.tx, org).await?;
    access.tx.commit().await?;
    Ok(Json(UsageBody {
        org_id: org,
        plan: limits.plan,
        limits: limits.limits,
        trial_ends_at: limits.trial_ends_at,
        month_start: month_start(Utc::now()),
        active_projects,
        runs_this_month: usage.runs_this_month,
        parallel_runs: usage.parallel_now,
        reserved_cents: usage.reserved_cents,
        spent_cents: usage.spent_cents,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_starts_on_the_first_at_midnight_utc() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 9, 45, 0).unwrap();
        assert_eq!(
            month_start(now),
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
        );
    }
}
