//! Part 4 of the quotas benchmark, what the per-org rate limiter adds to a request, by A/B:
//! in-process quotas apps on their own sockets, each with its own pool of the production size
//! (`PoolSettings::default()`). A is `runwarden_quotas::router` exactly as the binary serves it
//! (`OrgRateLimit::from_plans` applied); B the same routes under the same platform layers without
//! the limiter. Each gets `GET /v1/orgs/{org}/usage` (a member's valid access token) over the
//! spread orgs, all sides *at the same time* and at the same fixed rate, `OVERHEAD_PER_SEC` each,
//! open loop (requests start on schedule whatever earlier ones are doing). The limiter's cost is
//! p99(A) − p99(B) (also p50); target: under 1 ms at p99. A fixed rate below saturation, not a
//! fixed number of busy clients: with clients that send as fast as answers come, every side runs at
//! saturation, and latency is then set by queueing (clients / throughput) rather than by what one
//! request costs. This measures the middleware as it is: two round trips to the database per
//! request (`org_requests_per_minute`, then `rate_limit_check`, a write that commits), each on a
//! pooled connection. Every answer of a limited side must carry the `RateLimit` header and none of
//! B's may, which shows the limiter ran where it should; the orgs' limits are far above the load,
//! so the limiter decides (and writes its row) for every request but never refuses. Two what-if
//! sides run alongside, to show where the cost goes (see [`Side`]): A′, A whose commits do not wait
//! for the WAL flush, and A″, a limiter that skips the rate lookup. The limited sides are a third
//! of a round apart in the orgs, so none waits on another's row lock.

use std::time::Duration;

use runwarden_events::push::PushAuth;
use runwarden_platform::internal_auth::InternalSecrets;
use runwarden_platform::request::TrustedProxyHops;
use runwarden_platform::server::{self, Limits};
use runwarden_quotas::AppState;
use runwarden_ratelimit::{OrgRateLimit, Quota};
use runwarden_store::PoolSettings;
use runwarden_tokens::TokenSigner;
use secrecy::SecretString;

use super::{BenchOrg, HUGE_RPM, WARM_UP};
use crate::measure::{Outcome, Sample, ms, open_loop, p50_p99, pass, scaled};

/// Requests per second to each side of the A/B (well below what either side can serve here).
const OVERHEAD_PER_SEC: f64 = 100.0;
const OVERHEAD_SECS: f64 = 20.0;
/// The target from the issue.
const OVERHEAD_P99_TARGET: Duration = Duration::from_millis(1);

/// Part 4's samples, by side.
pub(super) struct Overhead {
    orgs: usize,
    sides: Vec<(Side, Sample)>,
}

/// Part 4: the A/B apps on the database at `quotas_url` (as `runwarden_quotas`), their tokens
/// verified with `signer`'s key, each side's usage reads round robin over `orgs`.
pub(super) async fn measure(
    quotas_url: &str,
    signer: &TokenSigner,
    internal: &str,
    push: &str,
    orgs: &[BenchOrg],
) -> anyhow::Result<Overhead> {
    let apps = AbApps::start(quotas_url, signer, internal, push).await?;
    eprintln!(
        "==> quotas: GET /v1/orgs/{{org}}/usage through {} apps (with the limiter, two \
         what-ifs, without it), {OVERHEAD_PER_SEC} req/s each over {} orgs, {:?}",
        Side::ALL.len(),
        orgs.len(),
        scaled(OVERHEAD_SECS)
    );
    // Untimed: each app opens its pool's connections.
    apps.compare(orgs, WARM_UP).await?;
    let sides = apps.compare(orgs, scaled(OVERHEAD_SECS)).await?;
    apps.stop();
    Ok(Overhead {
        orgs: orgs.len(),
        sides,
    })
}

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

/// p50 and p99 of `a` minus those of `b`, signed, in milliseconds.
fn delta_p50_p99(a: &Sample, b: &Sample) -> String {
    let delta = |p| (a.percentile(p).as_secs_f64() - b.percentile(p).as_secs_f64()) * 1000.0;
    format!("{:+.2} ms / {:+.2} ms", delta(0.50), delta(0.99))
}

/// Row 6 of the table: each side, then each limited side against B.
pub(super) fn print_rows(o: &Overhead) {
    let secs = scaled(OVERHEAD_SECS).as_secs_f64();
    let mut bare = None;
    for (side, s) in &o.sides {
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
            o.sides.len(),
            o.orgs,
            s.rate(),
            p50_p99(s),
            s.refusals(),
            s.failures(),
        );
    }
    let Some(bare) = bare else {
        return;
    };
    for (side, s) in o.sides.iter().filter(|(side, _)| side.limited()) {
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
