//! Quotas benchmark (`bench quotas`, driven by `scripts/bench`) against one fresh migrated
//! database, in four parts:
//!
//! 1. admissions of ONE hot org,
//! 2. admissions spread round robin over many orgs ([`admissions`] for both),
//! 3. rate-limit decisions ([`limiter`]),
//! 4. what the per-org rate limiter adds to a request, by A/B ([`overhead`]).
//!
//! quotas runs as a release binary on a free port (development mode, a per-run internal and
//! push secret; it fetches `AUTH_JWKS_URL` at start, served here with the key that signs the
//! benchmark's access tokens) and is stopped before parts 3 and 4, which run in this process.
//! Orgs, users, sessions, memberships and overrides are inserted directly as the superuser.
//!
//! Environment: `BENCH_DB_ADMIN_URL` (superuser URL of the fresh migrated database),
//! `BENCH_DB_QUOTAS_URL` (the same database as `runwarden_quotas`); `BENCH_SECONDS_SCALE`
//! shortens every timed phase.

mod admissions;
mod limiter;
mod overhead;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use runwarden_store::PoolSettings;
use runwarden_tokens::{AccessClaims, TokenSigner};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use runwarden_e2e::Proc;

use crate::harness::{JwksServer, fresh_admin_pool, require_binaries, stop};
use crate::measure::{Outcome, cores, load_average, required_env};

/// Concurrent clients of the admission and limiter phases.
const CLIENTS: usize = 32;
const SPREAD_ORGS: usize = 1000;
/// Untimed load before the timed phases against a freshly started app, whose pool opens its
/// connections on first use (a few ms each).
const WARM_UP: Duration = Duration::from_secs(2);
/// The wall-clock cap each admission asks for.
const CAP_SECS: i64 = 600;
/// Overrides far above what the benchmark can reach, so nothing is refused.
const HUGE_COUNT: i64 = 1_000_000_000;
const HUGE_BUDGET_CENTS: i64 = 1_000_000_000_000;
/// Requests per minute (fits the limiter's u32): one decision every 1 µs, a burst of 1000 s.
const HUGE_RPM: i64 = 1_000_000_000;
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(10);

/// An org of the benchmark, with one member and their access token (also the runs
/// benchmark's orgs).
#[derive(Clone)]
pub(crate) struct BenchOrg {
    pub(crate) id: Uuid,
    pub(crate) token: String,
}

struct Report {
    /// The 1-minute load average before the benchmark started (other work on the machine).
    load_before: Option<f64>,
    hot: admissions::Admissions,
    spread: admissions::Admissions,
    decisions: limiter::Decisions,
    overhead: overhead::Overhead,
}

pub fn run() -> anyhow::Result<()> {
    let admin_url = required_env("BENCH_DB_ADMIN_URL")?;
    let quotas_url = required_env("BENCH_DB_QUOTAS_URL")?;
    require_binaries(&["quotas"], "cargo build -p runwarden-quotas --bins")?;
    let runtime = crate::measure::runtime()?;
    let load_before = load_average();
    let report = runtime.block_on(async {
        let admin = fresh_admin_pool(&admin_url, "quota_admissions").await?;
        let signer = TokenSigner::generate("bench-1");
        eprintln!("==> quotas: creating {} enterprise orgs", SPREAD_ORGS + 2);
        let mut orgs = create_orgs(&admin, &signer, SPREAD_ORGS + 2, "viewer").await?;
        let warm_up = orgs.remove(0);
        let hot = orgs.remove(0);
        let spread = orgs;

        let internal_secret = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        let push_secret = Uuid::new_v4().simple().to_string();
        let (hot, spread_admissions) = {
            let jwks = JwksServer::start(&signer).await?;
            let mut quotas = start_quotas(&quotas_url, &jwks.url, &internal_secret, &push_secret);
            let result = async {
                quotas.try_wait_healthy(HEALTHY_TIMEOUT).await?;
                admissions::measure(
                    &admin,
                    &quotas.base_url(),
                    &internal_secret,
                    &warm_up,
                    &hot,
                    &spread,
                )
                .await
            }
            .await;
            let result = result.map_err(|e| anyhow::anyhow!("{e:#}\n{}", quotas.output_tail()));
            stop(&mut quotas, STOP_GRACE).await;
            result?
        };

        let decisions = limiter::measure(&quotas_url).await?;
        let overhead = overhead::measure(
            &quotas_url,
            &signer,
            &internal_secret,
            &push_secret,
            &spread,
        )
        .await?;
        anyhow::Ok(Report {
            load_before,
            hot,
            spread: spread_admissions,
            decisions,
            overhead,
        })
    })?;
    print_table(&report);
    Ok(())
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `n` orgs on `enterprise` with huge overrides (nothing refused, no request rate limited),
/// each with one member of `role` whose access token `signer` signs (rows inserted as the
/// superuser, as the quotas tests arrange them). The runs benchmark makes its orgs here too.
pub(crate) async fn create_orgs(
    admin: &PgPool,
    signer: &TokenSigner,
    n: usize,
    role: &str,
) -> anyhow::Result<Vec<BenchOrg>> {
    let orgs: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    let users: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    let sessions: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    let mut tx = admin.begin().await?;
    sqlx::query(
        "INSERT INTO orgs (id, name, plan)
         SELECT id, 'Bench org', 'enterprise' FROM unnest($1::uuid[]) AS id",
    )
    .bind(&orgs)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO quota_overrides (org_id, runs_per_month, parallel_runs,
             monthly_budget_cents, requests_per_minute)
         SELECT id, $2, $2, $3, $4 FROM unnest($1::uuid[]) AS id",
    )
    .bind(&orgs)
    .bind(HUGE_COUNT)
    .bind(HUGE_BUDGET_CENTS)
    .bind(HUGE_RPM)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO users (id, email)
         SELECT id, 'bench-' || id || '@example.com' FROM unnest($1::uuid[]) AS id",
    )
    .bind(&users)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO sessions (id, user_id, expires_at)
         SELECT s, u, now() + interval '1 day' FROM unnest($1::uuid[], $2::uuid[]) AS t(s, u)",
    )
    .bind(&sessions)
    .bind(&users)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO memberships (org_id, user_id, role)
         SELECT o, u, $3 FROM unnest($1::uuid[], $2::uuid[]) AS t(o, u)",
    )
    .bind(&orgs)
    .bind(&users)
    .bind(role)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    let now = unix_now();
    orgs.iter()
        .zip(users.iter().zip(&sessions))
        .map(|(org, (user, session))| {
            let token = signer.sign(&AccessClaims::new(user, session, now))?;
            Ok(BenchOrg { id: *org, token })
        })
        .collect()
}

/// Starts the release quotas on a free port (development mode, warnings only); the runs
/// benchmark admits its runs through one too.
pub(crate) fn start_quotas(database_url: &str, jwks_url: &str, internal: &str, push: &str) -> Proc {
    let port = runwarden_e2e::free_port();
    let mut cmd = runwarden_e2e::command("quotas");
    cmd.env("RUNWARDEN_ENV", "development")
        .env("PORT", port.to_string())
        .env("DATABASE_URL", database_url)
        .env("AUTH_JWKS_URL", jwks_url)
        .env("INTERNAL_AUTH_SECRETS", internal)
        .env("PUSH_SECRET", push)
        .env("TRUSTED_PROXY_HOPS", "0")
        .env("RUST_LOG", "warn");
    let mut quotas = Proc::spawn("quotas", cmd);
    quotas.port = Some(port);
    quotas
}

/// What a request answered with JSON came to: `Ok` when `ok(status, body)` holds, refused
/// (by the problem's `code`) on 402 and 429, failed otherwise. The runs benchmark's creations
/// are judged by it too.
pub(crate) async fn json_outcome(
    request: reqwest::RequestBuilder,
    ok: impl Fn(u16, &Value) -> bool,
) -> Outcome {
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("{e:#}")),
    };
    let status = response.status();
    let body: Value = match response.bytes().await {
        Ok(b) => serde_json::from_slice(&b).unwrap_or(Value::Null),
        Err(e) => return Outcome::Failed(format!("{e:#}")),
    };
    match status.as_u16() {
        s if ok(s, &body) => Outcome::Ok,
        402 | 429 => Outcome::Refused(body["code"].as_str().unwrap_or("?").to_owned()),
        _ => Outcome::Failed(format!("{status} {body}")),
    }
}

// ---------------------------------------------------------------------------------------
// the table

fn print_table(r: &Report) {
    let cores = cores();
    let load = |l: Option<f64>| l.map_or_else(|| "?".into(), |l| format!("{l:.1}"));
    println!(
        "\nquotas benchmark: {cores} cores (1-min load average {} before, {} after); PostgreSQL, \
         {} quotas (RUST_LOG=warn, pool of {} connections) and this client share the \
         machine; every org on enterprise with overrides above the load; admissions ask for a \
         {CAP_SECS} s cap\n",
        load(r.load_before),
        load(load_average()),
        crate::harness::profile(),
        PoolSettings::default().max_connections
    );
    println!(
        "| # | measurement | throughput | latency p50 / p99 | refused / errors | check | target |"
    );
    println!("|---|---|---|---|---|---|---|");
    admissions::print_rows(&r.hot, &r.spread);
    limiter::print_rows(&r.decisions);
    overhead::print_rows(&r.overhead);
}
