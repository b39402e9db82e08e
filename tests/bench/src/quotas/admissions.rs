//! Parts 1 and 2 of the quotas benchmark, admissions:
//!
//! 1. admissions of ONE hot org: `CLIENTS` concurrent clients POST `/internal/admissions` to a
//!    release `quotas` (each admission a new run id) for `ADMIT_SECS`. Every admission of one
//!    org serializes on its `quota_usage` row lock, so this is the per-org ceiling; under
//!    that lock each one also counts the org's admissions of the month, so the ceiling falls
//!    as the org's rows grow (from none at the start of the phase).
//! 2. admissions spread round robin over `SPREAD_ORGS` orgs, the same clients and time.
//!    Target: ≥ 1,000 admissions/s. Every org is on `enterprise` with overrides large enough
//!    (runs per month, parallel runs, budget) that nothing is refused and nothing needs
//!    settling; refusals would be counted apart from errors. Afterwards the rows are counted:
//!    every admission answered 200 must be one `reserved` row.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use super::{BenchOrg, CAP_SECS, CLIENTS, WARM_UP, json_outcome};
use crate::measure::{Sample, closed_loop, p50_p99, pass, scaled};

const ADMIT_SECS: f64 = 10.0;
/// The target from the issue.
const SPREAD_TARGET_PER_SEC: f64 = 1000.0;

/// What the rows say after an admission phase.
struct Rows {
    reserved: i64,
    refused: i64,
}

pub(super) struct Admissions {
    orgs: usize,
    sample: Sample,
    rows: Rows,
}

/// Parts 1 and 2 against the quotas at `base`, with the internal secret `secret`: untimed
/// admissions of `warm_up` first, then those of `hot` alone, then those spread over `spread`.
pub(super) async fn measure(
    admin: &PgPool,
    base: &str,
    secret: &str,
    warm_up: &BenchOrg,
    hot: &BenchOrg,
    spread: &[BenchOrg],
) -> anyhow::Result<(Admissions, Admissions)> {
    // Untimed, on an org of its own: quotas opens its pool's connections.
    admissions(admin, base, secret, &[warm_up.id], WARM_UP).await?;
    eprintln!(
        "==> quotas: admissions of 1 org, {CLIENTS} clients, {:?}",
        scaled(ADMIT_SECS)
    );
    let hot = admissions(admin, base, secret, &[hot.id], scaled(ADMIT_SECS)).await?;
    let ids: Vec<Uuid> = spread.iter().map(|o| o.id).collect();
    eprintln!(
        "==> quotas: admissions over {} orgs, {CLIENTS} clients, {:?}",
        ids.len(),
        scaled(ADMIT_SECS)
    );
    let spread = admissions(admin, base, secret, &ids, scaled(ADMIT_SECS)).await?;
    Ok((hot, spread))
}

/// `CLIENTS` clients admitting new runs round robin over `orgs` for `duration`; then the
/// orgs' rows counted.
async fn admissions(
    admin: &PgPool,
    base: &str,
    secret: &str,
    orgs: &[Uuid],
    duration: Duration,
) -> anyhow::Result<Admissions> {
    let client = runwarden_e2e::client();
    let url = format!("{base}/internal/admissions");
    let orgs_shared: Arc<Vec<Uuid>> = Arc::new(orgs.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let secret: Arc<str> = secret.into();
    let sample = closed_loop(CLIENTS, duration, |_| {
        let (client, url, orgs, next, secret) = (
            client.clone(),
            url.clone(),
            orgs_shared.clone(),
            next.clone(),
            secret.clone(),
        );
        move || {
            let org = orgs[next.fetch_add(1, Ordering::Relaxed) % orgs.len()];
            let request = client
                .post(&url)
                .header(runwarden_platform::internal_auth::HEADER, &*secret)
                .json(&json!({
                    "org_id": org,
                    "run_id": Uuid::now_v7(),
                    "requested_cap_secs": CAP_SECS,
                }));
            json_outcome(request, |status, body| {
                status == 200 && body["admitted"] == true
            })
        }
    })
    .await?;
    let (reserved, refused): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'reserved'),
                count(*) FILTER (WHERE status = 'refused')
           FROM quota_admissions WHERE org_id = ANY($1)",
    )
    .bind(orgs)
    .fetch_one(admin)
    .await?;
    Ok(Admissions {
        orgs: orgs.len(),
        sample,
        rows: Rows { reserved, refused },
    })
}

fn rows_check(a: &Admissions) -> String {
    let refused = a.sample.refused_total() as i64;
    let ok = a.rows.reserved == a.sample.ok as i64 && a.rows.refused == refused;
    format!(
        "{} reserved + {} refused rows {} answers",
        a.rows.reserved,
        a.rows.refused,
        if ok { "=" } else { "≠" }
    )
}

/// Rows 1 and 2 of the table.
pub(super) fn print_rows(hot: &Admissions, spread: &Admissions) {
    let admit_secs = scaled(ADMIT_SECS).as_secs_f64();
    for (n, a, target) in [
        (1, hot, "–".to_owned()),
        (
            2,
            spread,
            format!(
                "≥ {SPREAD_TARGET_PER_SEC:.0}/s: {}",
                pass(spread.sample.rate() >= SPREAD_TARGET_PER_SEC)
            ),
        ),
    ] {
        let orgs = if a.orgs == 1 {
            "1 org".to_owned()
        } else {
            format!("{} orgs round robin", a.orgs)
        };
        println!(
            "| {n} | POST /internal/admissions (new run each), {orgs}, {CLIENTS} clients, {admit_secs:.0} s | {:.0} admissions/s | {} | {} / {} | {} | {target} |",
            a.sample.rate(),
            p50_p99(&a.sample),
            a.sample.refusals(),
            a.sample.failures(),
            rows_check(a),
        );
    }
}
