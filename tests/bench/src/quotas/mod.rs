//! Quotas benchmark (`bench quotas`, driven by `scripts/bench`) against one fresh migrated
//! database, in four parts:
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
//! 3. rate-limit decisions: `runwarden_ratelimit::check` (one `rate_limit_check` statement)
//!    called directly by `CLIENTS` tasks, each on its own connection as `runwarden_quotas`,
//!    over `LIMITER_KEYS` keys and then all on one key (the decisions of one key serialize on
//!    its row) → decisions/s and the latency of one decision. Each decision is a write
//!    transaction that waits for its WAL flush; a what-if row repeats the many-keys run with
//!    `synchronous_commit = off` on those connections, to show what the flush costs (that is
//!    not how the limiter runs).
//! 4. what the per-org rate limiter adds to a request, by A/B: in-process quotas apps on
//!    their own sockets, each with its own pool of the production size
//!    (`PoolSettings::default()`). A is `runwarden_quotas::router` exactly as the binary
//!    serves it (`OrgRateLimit::from_plans` applied); B the same routes under the same
//!    platform layers without the limiter. Each gets `GET /v1/orgs/{org}/usage` (a member's
//!    valid access token) over the spread orgs, all sides *at the same time* and at the same
//!    fixed rate, `OVERHEAD_PER_SEC` each, open loop (requests start on schedule whatever
//!    earlier ones are doing). The limiter's cost is
//!    p99(A) − p99(B) (also p50); target: under 1 ms at p99. A fixed rate below saturation,
//!    not a fixed number of busy clients: with clients that send as fast as answers come,
//!    every side runs at saturation, and latency is then set by queueing (clients /
//!    throughput) rather than by what one request costs. This measures the middleware as it
//!    is: two round trips to the database per request (`org_requests_per_minute`, then
//!    `rate_limit_check`, a write that commits), each on a pooled connection. Every answer of
//!    a limited side must carry the `RateLimit` header and none of B's may, which shows the
//!    limiter ran where it should; the orgs' limits are far above the load, so the limiter
//!    decides (and writes its row) for every request but never refuses. Two what-if sides
//!    run alongside, to show where the cost goes (see [`Side`]): A′, A whose commits do not
//!    wait for the WAL flush, and A″, a limiter that skips the rate lookup. The limited
//!    sides are a third of a round apart in the orgs, so none waits on another's row lock.
//!
//! quotas runs as a release binary on a free port (development mode, a per-run internal and
//! push secret; it fetches `AUTH_JWKS_URL` at start, served here with the key that signs the
//! benchmark's access tokens) and is stopped before parts 3 and 4, which run in this process.
//! Orgs, users, sessions, memberships and overrides are inserted directly as the superuser.
//!
//! Environment: `BENCH_DB_ADMIN_URL` (superuser URL of the fresh migrated database),
//! `BENCH_DB_QUOTAS_URL` (the same database as `runwarden_quotas`); `BENCH_SECONDS_SCALE`
//! shortens every timed phase.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use runwarden_events::push::PushAuth;
use runwarden_platform::internal_auth::InternalSecrets;
use runwarden_platform::request::TrustedProxyHops;
use runwarden_platform::server::{self, Limits};
use runwarden_quotas::AppState;
use runwarden_ratelimit::{OrgRateLimit, Quota};
use runwarden_store::PoolSettings;
use runwarden_tokens::{AccessClaims, TokenSigner};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use runwarden_e2e::Proc;

use crate::harness::{JwksServer, fresh_admin_pool, require_binaries, stop};
use crate::measure::{
    Outcome, Sample, closed_loop, cores, load_average, ms, open_loop, p50_p99, pass, required_env,
    scaled,
};

/// Concurrent clients of the admission and limiter phases.
const CLIENTS: usize = 32;
/// Requests per second to each side of the A/B (well below what either side can serve here).
const OVERHEAD_PER_SEC: f64 = 100.0;
const SPREAD_ORGS: usize = 1000;
const LIMITER_KEYS: usize = 10_000;
const ADMIT_SECS: f64 = 10.0;
const LIMITER_SECS: f64 = 5.0;
const OVERHEAD_SECS: f64 = 20.0;
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
/// Targets from the issue.
const SPREAD_TARGET_PER_SEC: f64 = 1000.0;
const OVERHEAD_P99_TARGET: Duration = Duration::from_millis(1);
const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_GRACE: Duration = Duration::from_secs(10);

/// An org of the benchmark, with one member and their access token (also the runs
/// benchmark's orgs).
#[derive(Clone)]
pub(crate) struct BenchOrg {
    pub(crate) id: Uuid,
    pub(crate) token: String,
}

/// What the rows say after an admission phase.
struct Rows {
    reserved: i64,
    refused: i64,
}

struct Admissions {
    orgs: usize,
    sample: Sample,
    rows: Rows,
}

struct Report {
    /// The 1-minute load average before the benchmark started (other work on the machine).
    load_before: Option<f64>,
    hot: Admissions,
    spread: Admissions,
    keys: Sample,
    one_key: Sample,
    keys_async_commit: Sample,
    overhead_orgs: usize,
    /// Part 4, by side.
    overhead: Vec<(Side, Sample)>,
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
                let base = quotas.base_url();
                // Untimed, on an org of its own: quotas opens its pool's connections.
                admissions(&admin, &base, &internal_secret, &[warm_up.id], WARM_UP).await?;
                eprintln!(
                    "==> quotas: admissions of 1 org, {CLIENTS} clients, {:?}",
                    scaled(ADMIT_SECS)
                );
                let hot = admissions(
                    &admin,
                    &base,
                    &internal_secret,
                    &[hot.id],
                    scaled(ADMIT_SECS),
                )
                .await?;
                let ids: Vec<Uuid> = spread.iter().map(|o| o.id).collect();
                eprintln!(
                    "==> quotas: admissions over {} orgs, {CLIENTS} clients, {:?}",
                    ids.len(),
                    scaled(ADMIT_SECS)
                );
                let spread =
                    admissions(&admin, &base, &internal_secret, &ids, scaled(ADMIT_SECS)).await?;
                anyhow::Ok((hot, spread))
            }
            .await;
            let result = result.map_err(|e| anyhow::anyhow!("{e:#}\n{}", quotas.output_tail()));
            stop(&mut quotas, STOP_GRACE).await;
            result?
        };

        eprintln!(
            "==> quotas: rate_limit_check from {CLIENTS} tasks over {LIMITER_KEYS} keys, {:?}",
            scaled(LIMITER_SECS)
        );
        let keys = limiter_decisions(&quotas_url, LIMITER_KEYS, true).await?;
        eprintln!(
            "==> quotas: rate_limit_check from {CLIENTS} tasks on one key, {:?}",
            scaled(LIMITER_SECS)
        );
        let one_key = limiter_decisions(&quotas_url, 1, true).await?;
        eprintln!(
            "==> quotas: what if: rate_limit_check over {LIMITER_KEYS} keys with \
             synchronous_commit = off, {:?}",
            scaled(LIMITER_SECS)
        );
        let keys_async_commit = limiter_decisions(&quotas_url, LIMITER_KEYS, false).await?;

        let apps = AbApps::start(&quotas_url, &signer, &internal_secret, &push_secret).await?;
        eprintln!(
            "==> quotas: GET /v1/orgs/{{org}}/usage through {} apps (with the limiter, two \
             what-ifs, without it), {OVERHEAD_PER_SEC} req/s each over {} orgs, {:?}",
            Side::ALL.len(),
            spread.len(),
            scaled(OVERHEAD_SECS)
        );
        // Untimed: each app opens its pool's connections.
        apps.compare(&spread, WARM_UP).await?;
        let overhead = apps.compare(&spread, scaled(OVERHEAD_SECS)).await?;
        apps.stop();
        anyhow::Ok(Report {
            load_before,
            hot,
            spread: spread_admissions,
            keys,
            one_key,
            keys_async_commit,
            overhead_orgs: spread.len(),
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

// ---------------------------------------------------------------------------------------
// 1 and 2. admissions

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
            admission_outcome(request)
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

async fn admission_outcome(request: reqwest::RequestBuilder) -> Outcome {
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
        200 if body["admitted"] == true => Outcome::Ok,
        402 | 429 => Outcome::Refused(body["code"].as_str().unwrap_or("?").to_owned()),
        _ => Outcome::Failed(format!("{status} {body}")),
    }
}

// ---------------------------------------------------------------------------------------
// 3. rate-limit decisions

/// `CLIENTS` tasks, each on its own connection as `runwarden_quotas`, making decisions round
/// robin over `keys` keys for `LIMITER_SECS`, with a quota that never refuses (so every
/// decision also writes its row, as an allowed request does). `synchronous_commit`: as the
/// server is set (what the limiter runs with), or off on these connections (a what-if).
async fn limiter_decisions(
    quotas_url: &str,
    keys: usize,
    synchronous_commit: bool,
) -> anyhow::Result<Sample> {
    let settings = PoolSettings {
        max_connections: u32::try_from(CLIENTS)?,
        ..PoolSettings::default()
    };
    let mut options = runwarden_store::connect_options(&SecretString::from(quotas_url))?;
    if !synchronous_commit {
        options = options.options([("synchronous_commit", "off")]);
    }
    let pool = runwarden_store::pool(options, &settings);
    // Open every connection before the clock starts (the pool opens them lazily).
    let mut held = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        held.push(pool.acquire().await?);
    }
    drop(held);
    let run = Uuid::new_v4().simple().to_string();
    let keys: Arc<Vec<String>> = Arc::new(
        (0..keys)
            .map(|i| format!("bench:{run}:{i}"))
            .collect::<Vec<_>>(),
    );
    let quota = Quota::per_minute(u32::try_from(HUGE_RPM)?);
    let next = Arc::new(AtomicUsize::new(0));
    let sample = closed_loop(CLIENTS, scaled(LIMITER_SECS), |_| {
        let (pool, keys, next) = (pool.clone(), keys.clone(), next.clone());
        move || {
            let (pool, keys) = (pool.clone(), keys.clone());
            let i = next.fetch_add(1, Ordering::Relaxed) % keys.len();
            async move {
                match runwarden_ratelimit::check(&pool, &keys[i], quota).await {
                    Ok(d) if d.allowed => Outcome::Ok,
                    Ok(_) => Outcome::Refused("rate_limited".into()),
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
        }
    })
    .await?;
    pool.close().await;
    Ok(sample)
}

// ---------------------------------------------------------------------------------------
// 4. the limiter's cost on a request (A/B)

/// One side of the A/B: an in-process quotas app on its own socket, with its own pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// A: exactly what the binary serves (`runwarden_quotas::router`).
    Limited,
    /// A′ (what-if): A on a pool whose sessions have `synchronous_commit = off`, which
    /// changes only the limiter's commits (the usage read writes nothing).
    AsyncCommit,
    /// A″ (what-if): the limiter with one fixed quota (`OrgRateLimit::fixed`), so without
    /// the lookup of the org's rate: one round trip per request instead of two.
    NoLookup,
    /// B: A without the limiter.
    Bare,
}

impl Side {
    const ALL: [Side; 4] = [Side::Limited, Side::AsyncCommit, Side::NoLookup, Side::Bare];

    fn label(self) -> &'static str {
        match self {
            Side::Limited => "A: with the limiter, as served",
            Side::AsyncCommit => {
                "A′: what if the limiter's commits were asynchronous (synchronous_commit = off)"
            }
            Side::NoLookup => {
                "A″: what if the limiter did not look up the org's rate (a fixed quota: one \
                 round trip instead of two)"
            }
            Side::Bare => "B: without the limiter",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Side::Limited => "A",
            Side::AsyncCommit => "A′",
            Side::NoLookup => "A″",
            Side::Bare => "B",
        }
    }

    fn limited(self) -> bool {
        self != Side::Bare
    }

    /// Where in the orgs' round this side starts, in thirds of a round: the limited sides
    /// write the same kind of rows (one per org), and two of them on the same org at the
    /// same moment would wait for each other's row lock (and, through it, for A's WAL
    /// flush). B only reads, in A's order.
    fn start_third(self) -> usize {
        match self {
            Side::Limited | Side::Bare => 0,
            Side::AsyncCommit => 1,
            Side::NoLookup => 2,
        }
    }
}

/// The A/B's apps, on their own sockets: (side, base URL).
struct AbApps {
    bases: Vec<(Side, String)>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl AbApps {
    async fn start(
        quotas_url: &str,
        signer: &TokenSigner,
        internal: &str,
        push: &str,
    ) -> anyhow::Result<AbApps> {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let hops = TrustedProxyHops(0);
        let limits = Limits::default();
        let options = runwarden_store::connect_options(&SecretString::from(quotas_url))?;
        let async_commit = options.clone().options([("synchronous_commit", "off")]);
        let state = |options: &sqlx::postgres::PgConnectOptions| AppState {
            pool: runwarden_store::pool(options.clone(), &PoolSettings::default()),
            verifier: signer.verifier(),
            reaper_grace: std::time::Duration::from_secs(120),
        };
        let secrets = InternalSecrets::parse(&SecretString::from(internal))?;
        let push_auth =
            PushAuth::shared_secret(SecretString::from(push)).map_err(anyhow::Error::msg)?;
        let routes = |state: AppState| {
            runwarden_quotas::routes::router(state, push_auth.clone(), secrets.clone())
        };
        let mut bases = Vec::new();
        for side in Side::ALL {
            let app = match side {
                Side::Limited => runwarden_quotas::router(
                    state(&options),
                    push_auth.clone(),
                    secrets.clone(),
                    hops,
                    &limits,
                ),
                Side::AsyncCommit => runwarden_quotas::router(
                    state(&async_commit),
                    push_auth.clone(),
                    secrets.clone(),
                    hops,
                    &limits,
                ),
                // As `runwarden_quotas::router` builds it, with `fixed` for `from_plans`.
                Side::NoLookup => {
                    let state = state(&options);
                    let quota = Quota::per_minute(u32::try_from(HUGE_RPM)?);
                    let limiter = OrgRateLimit::fixed(state.pool.clone(), quota);
                    server::app(limiter.apply(routes(state)), &limits, hops)
                }
                Side::Bare => server::app(routes(state(&options)), &limits, hops),
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            bases.push((side, format!("http://{}", listener.local_addr()?)));
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                let shutdown = async move {
                    let _ = stopped.wait_for(|s| *s).await;
                };
                if let Err(e) = server::serve(listener, app, &Limits::default(), shutdown).await {
                    eprintln!("warning: an in-process quotas app failed: {e}");
                }
            });
        }
        Ok(AbApps { bases, stop })
    }

    /// Every side at once, `OVERHEAD_PER_SEC` requests per second each, round robin over
    /// `orgs` (each from its [`Side::start_third`]).
    async fn compare(
        &self,
        orgs: &[BenchOrg],
        duration: Duration,
    ) -> anyhow::Result<Vec<(Side, Sample)>> {
        let mut loads = Vec::new();
        for (side, base) in &self.bases {
            let mut order = orgs.to_vec();
            order.rotate_left(side.start_third() * orgs.len() / 3);
            let (side, base) = (*side, base.clone());
            loads.push((
                side,
                tokio::spawn(
                    async move { usage_load(&base, &order, side.limited(), duration).await },
                ),
            ));
        }
        let mut out = Vec::new();
        for (side, load) in loads {
            out.push((side, load.await??));
        }
        Ok(out)
    }

    fn stop(self) {
        let _ = self.stop.send(true);
    }
}

/// `OVERHEAD_PER_SEC` usage reads per second round robin over `orgs`, open loop; an answer
/// counts only if it is 200 and carries the `RateLimit` header exactly when `limited`.
async fn usage_load(
    base: &str,
    orgs: &[BenchOrg],
    limited: bool,
    duration: Duration,
) -> anyhow::Result<Sample> {
    let client = runwarden_e2e::client();
    let mut next = 0;
    open_loop(OVERHEAD_PER_SEC, duration, || {
        let org = &orgs[next % orgs.len()];
        next += 1;
        let request = client
            .get(format!("{base}/v1/orgs/{}/usage", org.id))
            .bearer_auth(&org.token);
        usage_outcome(request, limited)
    })
    .await
}

async fn usage_outcome(request: reqwest::RequestBuilder, limited: bool) -> Outcome {
    let response = match request.send().await {
        Ok(r) => r,
        Err(e) => return Outcome::Failed(format!("{e:#}")),
    };
    let status = response.status();
    let has_header = response
        .headers()
        .contains_key(runwarden_ratelimit::RATELIMIT);
    let body = match response.bytes().await {
        Ok(b) => b,
        Err(e) => return Outcome::Failed(format!("{e:#}")),
    };
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        Outcome::Refused("rate_limited".into())
    } else if status != reqwest::StatusCode::OK {
        Outcome::Failed(format!("{status} {}", String::from_utf8_lossy(&body)))
    } else if has_header != limited {
        Outcome::Failed(format!(
            "RateLimit header {} on the {} side",
            if has_header { "present" } else { "missing" },
            if limited { "limited" } else { "bare" },
        ))
    } else {
        Outcome::Ok
    }
}

// ---------------------------------------------------------------------------------------
// the table

/// p50 and p99 of `a` minus those of `b`, signed, in milliseconds.
fn delta_p50_p99(a: &Sample, b: &Sample) -> String {
    let delta = |p| (a.percentile(p).as_secs_f64() - b.percentile(p).as_secs_f64()) * 1000.0;
    format!("{:+.2} ms / {:+.2} ms", delta(0.50), delta(0.99))
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

fn print_table(r: &Report) {
    let cores = cores();
    let admit_secs = scaled(ADMIT_SECS).as_secs_f64();
    let limiter_secs = scaled(LIMITER_SECS).as_secs_f64();
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
    for (n, a, target) in [
        (1, &r.hot, "–".to_owned()),
        (
            2,
            &r.spread,
            format!(
                "≥ {SPREAD_TARGET_PER_SEC:.0}/s: {}",
                pass(r.spread.sample.rate() >= SPREAD_TARGET_PER_SEC)
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
    for (n, s, what) in [
        (3, &r.keys, format!("over {LIMITER_KEYS} keys")),
        (4, &r.one_key, "on one key".to_owned()),
        (
            5,
            &r.keys_async_commit,
            format!(
                "over {LIMITER_KEYS} keys, what if: synchronous_commit = off on these \
                 connections (not how the limiter runs)"
            ),
        ),
    ] {
        println!(
            "| {n} | rate_limit_check called directly, {CLIENTS} tasks (a connection each) {what}, {limiter_secs:.0} s | {:.0} decisions/s | {} | {} / {} | – | – |",
            s.rate(),
            p50_p99(s),
            s.refusals(),
            s.failures(),
        );
    }
    let secs = scaled(OVERHEAD_SECS).as_secs_f64();
    let mut bare = None;
    for (side, s) in &r.overhead {
        if *side == Side::Bare {
            bare = Some(s);
        }
        let check = if side.limited() {
            "RateLimit header on every answer"
        } else {
            "no RateLimit header"
        };
        println!(
            "| 6 | GET /v1/orgs/{{org}}/usage, {}; {OVERHEAD_PER_SEC:.0} req/s open loop to each of the {} apps at once, {} orgs, {secs:.0} s | {:.0} req/s | {} | {} / {} | {check} | – |",
            side.label(),
            r.overhead.len(),
            r.overhead_orgs,
            s.rate(),
            p50_p99(s),
            s.refusals(),
            s.failures(),
        );
    }
    let Some(bare) = bare else {
        return;
    };
    for (side, s) in r.overhead.iter().filter(|(side, _)| side.limited()) {
        let (what, target) = if *side == Side::Limited {
            let added = s.percentile(0.99).saturating_sub(bare.percentile(0.99));
            (
                "added by the limiter",
                format!(
                    "p99 < {}: {}",
                    ms(OVERHEAD_P99_TARGET),
                    pass(added < OVERHEAD_P99_TARGET)
                ),
            )
        } else {
            ("what if", "–".to_owned())
        };
        println!(
            "| 6 | {what}: {} − B | – | {} | – | – | {target} |",
            side.name(),
            delta_p50_p99(s, bare),
        );
    }
}
