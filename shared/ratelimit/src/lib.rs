//! Request rate limits shared by every instance of every function (API4-01 in
//! docs/security.md: the request rate per org of each plan).
//!
//! The algorithm is GCRA (generic cell rate algorithm): each key holds one timestamp, its
//! *theoretical arrival time* (tat), in the `rate_limits` table. The decision is made by the
//! database in one statement (`rate_limit_check`, migration `20261125000009_rate_limits`),
//! which locks the key's row, so concurrent requests to any instance serialize on it and the
//! limit holds exactly. A refused request does not move the tat: it consumes nothing.
//!
//! With `T = period / per_period` and `tau = T * burst`:
//! `tat' = max(tat, now) + T`; the request is allowed iff `tat' - tau <= now`, and then
//! `tat := tat'`. So `burst` requests are accepted at once, then one every `T`.
//!
//! Besides [`check`] (which consumes a cell when it allows), callers that count something
//! other than requests can [`peek`] (would one more cell be allowed? consumes nothing) and
//! [`reset`] a key. auth's login throttling works that way: a failed login consumes, a
//! login attempt first peeks, and a success resets the account's key.
//!
//! Response headers follow draft-ietf-httpapi-ratelimit-headers in its current
//! structured-field form (not the older `RateLimit-Limit`/`-Remaining`/`-Reset` trio):
//!
//! ```text
//! RateLimit-Policy: "org";q=<per_period>;w=<period seconds>
//! RateLimit: "org";r=<remaining>;t=<seconds until the bucket is full again>
//! ```
//!
//! plus `Retry-After: <seconds>` on a 429, whose body is problem+json with code
//! `rate_limited`.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use runwarden_platform::Problem;
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::access::{AccessError, Charge, Charging, OrgBudget, bearer_principal};
use runwarden_tenancy::routes::{Access, Route};
use runwarden_tenancy::{OrgId, Principal};
use runwarden_tokens::TokenVerifier;
use sqlx::{PgExecutor, PgPool};

pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");

/// How many requests a key may make: `per_period` per `period` on average, up to `burst`
/// at once. Zero `per_period` or `burst` is treated as 1, a zero period as 1 µs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub per_period: u32,
    pub period: Duration,
    pub burst: u32,
}

impl Quota {
    /// `n` requests per minute, all of which may come at once.
    pub fn per_minute(n: u32) -> Self {
        Self {
            per_period: n,
            period: Duration::from_secs(60),
            burst: n,
        }
    }

    /// The emission interval `T`, in microseconds (at least 1).
    pub fn interval_us(&self) -> i64 {
        let period = i64::try_from(self.period.as_micros()).unwrap_or(i64::MAX);
        (period / i64::from(self.per_period.max(1))).max(1)
    }

    /// The burst tolerance `tau = T * burst`, in microseconds.
    pub fn tolerance_us(&self) -> i64 {
        self.interval_us()
            .saturating_mul(i64::from(self.burst.max(1)))
    }

    /// The pure GCRA step the SQL function performs. `tat_offset_us` is the stored tat minus
    /// now (`None` for a key never seen); returns whether the request is allowed and the tat
    /// after the decision, minus now (never negative).
    pub fn step(&self, tat_offset_us: Option<i64>) -> (bool, i64) {
        let tat = tat_offset_us.unwrap_or(i64::MIN).max(0);
        let new_tat = tat.saturating_add(self.interval_us());
        if new_tat - self.tolerance_us() <= 0 {
            (true, new_tat)
        } else {
            (false, tat)
        }
    }

    /// The pure decision the SQL peek makes: whether one more request would be allowed
    /// (exactly when [`Quota::step`] would allow it) and the current tat minus now (never
    /// negative), which a peek leaves as it is.
    pub fn peek(&self, tat_offset_us: Option<i64>) -> (bool, i64) {
        let (allowed, _) = self.step(tat_offset_us);
        (allowed, tat_offset_us.unwrap_or(0).max(0))
    }

    /// The decision a caller sees, from the step's outcome. Given a peek's outcome (the tat
    /// before consuming) `remaining` counts the request peeked at too.
    pub fn decision(&self, allowed: bool, tat_offset_us: i64) -> Decision {
        let tat = tat_offset_us.max(0);
        let interval = self.interval_us();
        let tolerance = self.tolerance_us();
        let limit = self.burst.max(1);
        if allowed {
            let remaining = ((tolerance - tat).max(0) / interval).min(i64::from(limit));
            Decision {
                allowed: true,
                limit,
                remaining: u32::try_from(remaining).unwrap_or(0),
                reset_after: micros(tat),
                retry_after: None,
            }
        } else {
            Decision {
                allowed: false,
                limit,
                remaining: 0,
                reset_after: micros(tat),
                retry_after: Some(micros((tat + interval - tolerance).max(1))),
            }
        }
    }
}

fn micros(us: i64) -> Duration {
    Duration::from_micros(u64::try_from(us).unwrap_or(0))
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The most requests the key may make at once (`burst`).
    pub limit: u32,
    /// Requests that may still be made right now.
    pub remaining: u32,
    /// Time until the key is back to its full burst.
    pub reset_after: Duration,
    /// On refusal, the time until one request would be allowed.
    pub retry_after: Option<Duration>,
}

impl Decision {
    /// `Retry-After` in whole seconds, rounded up (at least 1), when refused.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after.map(|d| ceil_secs(d).max(1))
    }

    /// Sets `RateLimit-Policy` and `RateLimit` (and `Retry-After` when refused).
    pub fn write_headers(&self, quota: &Quota, policy: &str, headers: &mut HeaderMap) {
        let window = ceil_secs(quota.period).max(1);
        let q = quota.per_period.max(1);
        if let Ok(v) = HeaderValue::from_str(&format!("\"{policy}\";q={q};w={window}")) {
            headers.insert(RATELIMIT_POLICY, v);
        }
        let t = ceil_secs(self.reset_after);
        if let Ok(v) = HeaderValue::from_str(&format!("\"{policy}\";r={};t={t}", self.remaining)) {
            headers.insert(RATELIMIT, v);
        }
        if let Some(seconds) = self.retry_after_secs() {
            headers.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
    }
}

/// One GCRA decision for `key`, made and recorded by the database in one statement: an
/// allowed request consumes one cell, a refused one consumes nothing. Works on a pool, a
/// connection or inside a transaction (then the row stays locked until the transaction
/// ends).
pub async fn check<'e, E: PgExecutor<'e>>(
    executor: E,
    key: &str,
    quota: Quota,
) -> Result<Decision, sqlx::Error> {
    decide(
        executor,
        "SELECT allowed, tat_offset_us FROM rate_limit_check($1, $2, $3)",
        key,
        quota,
    )
    .await
}

/// Whether one more request for `key` would be allowed right now, without consuming
/// anything or creating the key (`rate_limit_peek`, one read-only statement that takes no
/// lock). It is refused exactly when [`check`] would be, with the same `retry_after`;
/// when allowed, `remaining` includes the request peeked at.
///
/// A peek and a later [`check`] are two decisions: requests racing between them may all
/// see "allowed"; the later checks still never let the key past its limit.
pub async fn peek<'e, E: PgExecutor<'e>>(
    executor: E,
    key: &str,
    quota: Quota,
) -> Result<Decision, sqlx::Error> {
    decide(
        executor,
        "SELECT allowed, tat_offset_us FROM rate_limit_peek($1, $2, $3)",
        key,
        quota,
    )
    .await
}

/// Runs one of the two GCRA statements (`rate_limit_check` or `rate_limit_peek`, which take
/// the same arguments and answer the same columns) and reads its answer as a [`Decision`].
async fn decide<'e, E: PgExecutor<'e>>(
    executor: E,
    statement: &'static str,
    key: &str,
    quota: Quota,
) -> Result<Decision, sqlx::Error> {
    let (allowed, tat_offset_us): (bool, i64) = sqlx::query_as(statement)
        .bind(key)
        .bind(quota.interval_us())
        .bind(quota.tolerance_us())
        .fetch_one(executor)
        .await?;
    Ok(quota.decision(allowed, tat_offset_us))
}

/// Forgets `key`: its next request starts with the full burst. Returns whether the key
/// had a row.
pub async fn reset<'e, E: PgExecutor<'e>>(executor: E, key: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM rate_limits WHERE key = $1")
        .bind(key)
        .execute(executor)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Deletes keys whose tat has passed: such a key is indistinguishable from one never seen.
/// Safe against concurrent checks (a row a check has just advanced no longer matches).
pub async fn purge_idle<'e, E: PgExecutor<'e>>(executor: E) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM rate_limits WHERE tat < now()")
        .execute(executor)
        .await?;
    Ok(done.rows_affected())
}

/// The key of an org's API request rate.
pub fn org_api_key(org: OrgId) -> String {
    format!("org:{org}:api")
}

/// How long a process keeps an org's plan rate before reading it again.
pub const RATE_CACHE_TTL: Duration = Duration::from_secs(10);
/// Past this many orgs the cache starts over (a bound on memory, not an eviction policy).
const RATE_CACHE_MAX: usize = 100_000;

/// Orgs' plan rates as last read, with when they were read.
#[derive(Default)]
struct RateCache(std::sync::Mutex<std::collections::HashMap<OrgId, (Quota, std::time::Instant)>>);

impl RateCache {
    fn get(&self, org: OrgId) -> Option<Quota> {
        let map = self.0.lock().ok()?;
        map.get(&org)
            .filter(|(_, at)| at.elapsed() < RATE_CACHE_TTL)
            .map(|(quota, _)| *quota)
    }

    fn put(&self, org: OrgId, quota: Quota) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= RATE_CACHE_MAX {
                map.clear();
            }
            map.insert(org, (quota, std::time::Instant::now()));
        }
    }
}

/// The request rate for an org the plans table cannot name.
pub const UNKNOWN_ORG_PER_MINUTE: u32 = 60;

/// Requests without a valid credential, per client IP: 60 a minute, all of which may come
/// at once (`anon:ip:<ip>`).
pub const ANONYMOUS: Quota = Quota {
    per_period: 60,
    period: Duration::from_secs(60),
    burst: 60,
};

/// The key of a client IP's requests without a valid credential; an IPv4-mapped IPv6
/// address is written as the IPv4 address it is (`unknown` when the address is not known).
pub fn anon_ip_key(ip: Option<IpAddr>) -> String {
    match ip {
        Some(ip) => format!("anon:ip:{}", ip.to_canonical()),
        None => "anon:ip:unknown".to_owned(),
    }
}

type Lookup = dyn Fn(OrgId) -> Pin<Box<dyn Future<Output = Quota> + Send>> + Send + Sync;

/// Per-org request rate limiting, charged only once the caller is known to belong to the
/// org (issue 10: an anonymous request must never spend a victim org's budget):
///
/// - the layer ([`OrgRateLimit::apply`]) puts an [`OrgBudget`] in each request's
///   extensions; tenancy's `OrgAccess` extractor charges the org's key through it, in the
///   same statement that checks the caller's live membership
///   (`rate_limit_charge_member`), before the handler's transaction begins; runs charges a
///   media token's org after checking the holder's membership;
/// - the decision's `RateLimit` headers are written on the response after the handler;
///   a spent budget is answered 429 `rate_limited` with `Retry-After` (the handler never
///   runs);
/// - requests without a valid credential (a public route, an unmatched path, or an org or
///   user route without a verifying access token) are limited per client IP instead
///   ([`ANONYMOUS`], `anon:ip:<ip>`), before the handler runs. Internal, runner, push and
///   task routes carry their own credentials and pass untouched, as does `/healthz`.
///
/// Fails closed: if the database cannot decide, the request is answered 503 `unavailable`
/// (REL-09 / AZ-10) rather than served unlimited.
#[derive(Clone)]
pub struct OrgRateLimit {
    pool: PgPool,
    lookup: Arc<Lookup>,
    anonymous: Quota,
    /// The function's route table and access-token verifier: which requests carry a valid
    /// credential. Without them (unit tests of the org budget) no request is anonymous.
    callers: Option<(&'static [Route], TokenVerifier)>,
}

impl OrgRateLimit {
    pub fn new<F, Fut>(pool: PgPool, lookup: F) -> Self
    where
        F: Fn(OrgId) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Quota> + Send + 'static,
    {
        Self {
            pool,
            lookup: Arc::new(move |org| Box::pin(lookup(org))),
            anonymous: ANONYMOUS,
            callers: None,
        }
    }

    /// Each org's plan rate (`org_requests_per_minute` in the migrations: the plan's
    /// requests per minute, or its override outside trial). An org the database does not
    /// know gets [`UNKNOWN_ORG_PER_MINUTE`]; it will be a 404 anyway. A lookup that fails
    /// uses the same small quota rather than none.
    ///
    /// A rate read from the database is kept for [`RATE_CACHE_TTL`] in this process, so a
    /// request pays one round trip (the decision), not two; a plan change takes effect
    /// within that time. Failed lookups are not kept.
    pub fn from_plans(pool: PgPool) -> Self {
        let lookup_pool = pool.clone();
        let cache = Arc::new(RateCache::default());
        Self::new(pool, move |org: OrgId| {
            let pool = lookup_pool.clone();
            let cache = cache.clone();
            async move {
                if let Some(quota) = cache.get(org) {
                    return quota;
                }
                match sqlx::query_scalar::<_, Option<i64>>("SELECT org_requests_per_minute($1)")
                    .bind(org)
                    .fetch_one(&pool)
                    .await
                {
                    Ok(per_minute) => {
                        let quota = Quota::per_minute(
                            per_minute
                                .and_then(|n| u32::try_from(n).ok())
                                .unwrap_or(UNKNOWN_ORG_PER_MINUTE),
                        );
                        cache.put(org, quota);
                        quota
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "org request rate unavailable; using the minimum");
                        Quota::per_minute(UNKNOWN_ORG_PER_MINUTE)
                    }
                }
            }
        })
    }

    /// Every org gets the same quota.
    pub fn fixed(pool: PgPool, quota: Quota) -> Self {
        Self::new(pool, move |_| async move { quota })
    }

    /// Limits requests without a valid credential per client IP: those to a `Public` route
    /// of `routes` or to no route, and those to a `User` or `Org` route whose access token
    /// `verifier` does not accept.
    pub fn with_anonymous(
        mut self,
        routes: &'static [Route],
        verifier: TokenVerifier,
        quota: Quota,
    ) -> Self {
        self.callers = Some((routes, verifier));
        self.anonymous = quota;
        self
    }

    /// Layers the limit onto `router`'s routes. It must wrap the router that holds the
    /// routes (it runs after routing, reading the matched route).
    pub fn apply<S: Clone + Send + Sync + 'static>(self, router: Router<S>) -> Router<S> {
        router.layer(axum::middleware::from_fn_with_state(self, middleware))
    }

    /// Charges `org`'s key and records the decision in `slot`.
    async fn charge(
        &self,
        org: OrgId,
        member: Option<Principal>,
        slot: &Slot,
    ) -> Result<(), AccessError> {
        let quota = (self.lookup)(org).await;
        let key = org_api_key(org);
        let decided = match member {
            None => check(&self.pool, &key, quota).await.map(Some),
            Some(principal) => {
                let row: Result<(bool, Option<bool>, Option<i64>), sqlx::Error> = sqlx::query_as(
                    "SELECT member, allowed, tat_offset_us \
                         FROM rate_limit_charge_member($1, $2, $3, $4, $5, $6)",
                )
                .bind(principal.session_id)
                .bind(principal.user_id)
                .bind(org)
                .bind(&key)
                .bind(quota.interval_us())
                .bind(quota.tolerance_us())
                .fetch_one(&self.pool)
                .await;
                row.map(|(member, allowed, tat)| match (member, allowed, tat) {
                    (true, Some(allowed), Some(tat)) => Some(quota.decision(allowed, tat)),
                    _ => None,
                })
            }
        };
        match decided {
            // Not a member: nothing charged; the extractor answers 404.
            Ok(None) => Ok(()),
            Ok(Some(decision)) => {
                if let Ok(mut slot) = slot.0.lock() {
                    *slot = Some((decision, quota));
                }
                match decision.retry_after_secs() {
                    None => Ok(()),
                    Some(retry_after_secs) => Err(AccessError::RateLimited { retry_after_secs }),
                }
            }
            Err(error) => {
                tracing::error!(%error, %org, "rate limit check failed; refusing (fail closed)");
                Err(AccessError::Database(error))
            }
        }
    }
}

/// Where a request's org charge leaves its decision, for the response's headers.
#[derive(Clone, Default)]
struct Slot(Arc<std::sync::Mutex<Option<(Decision, Quota)>>>);

/// The [`Charge`] a request's [`OrgBudget`] holds.
struct RequestBudget {
    limit: OrgRateLimit,
    slot: Slot,
}

impl Charge for RequestBudget {
    fn charge_member(&self, principal: Principal, org: OrgId) -> Charging {
        let (limit, slot) = (self.limit.clone(), self.slot.clone());
        Box::pin(async move { limit.charge(org, Some(principal), &slot).await })
    }

    fn charge_checked(&self, org: OrgId) -> Charging {
        let (limit, slot) = (self.limit.clone(), self.slot.clone());
        Box::pin(async move { limit.charge(org, None, &slot).await })
    }
}

/// A function's routes as served: under the per-org request rate of each org's plan,
/// charged once the caller is known to be a member (shared with every instance of every
/// function through the database), with requests that carry no valid credential limited
/// per client IP ([`ANONYMOUS`]; `routes` is the function's route table, `verifier` its
/// access-token verifier), inside the platform's layers (body and time limits, request ids,
/// security headers, trusted proxy hops).
pub fn served(
    pool: PgPool,
    router: Router,
    limits: &runwarden_platform::server::Limits,
    hops: runwarden_platform::request::TrustedProxyHops,
    routes: &'static [Route],
    verifier: TokenVerifier,
) -> Router {
    let limit = OrgRateLimit::from_plans(pool).with_anonymous(routes, verifier, ANONYMOUS);
    runwarden_platform::server::app(limit.apply(router), limits, hops)
}

/// Whether a request carries no valid credential, by its route's access: `None` for routes
/// that carry their own credential (or when the limiter has no route table).
fn is_anonymous(limit: &OrgRateLimit, parts: &Parts) -> Option<bool> {
    let (routes, verifier) = limit.callers.as_ref()?;
    let Some(matched) = parts.extensions.get::<MatchedPath>() else {
        return Some(true);
    };
    let path = matched.as_str();
    if path == "/healthz" {
        return None;
    }
    let method = parts.method.as_str();
    let access = routes
        .iter()
        .find(|r| r.path == path && r.method == method)
        .map(|r| r.access);
    match access {
        None | Some(Access::Public) => Some(true),
        Some(Access::User | Access::Org(_)) => {
            Some(bearer_principal(&parts.headers, verifier).is_err())
        }
        Some(Access::Media | Access::Internal | Access::Runner | Access::Push | Access::Task) => {
            None
        }
    }
}

/// The middleware [`OrgRateLimit::apply`] installs.
pub async fn middleware(
    State(limit): State<OrgRateLimit>,
    request: Request,
    next: Next,
) -> Response {
    let (mut parts, body) = request.into_parts();
    if is_anonymous(&limit, &parts) == Some(true) {
        let ip = RequestMeta::from_request_parts(&mut parts, &())
            .await
            .map_or(None, |meta| meta.ip);
        match check(&limit.pool, &anon_ip_key(ip), limit.anonymous).await {
            Ok(decision) if decision.allowed => {}
            Ok(decision) => {
                let seconds = decision.retry_after_secs().unwrap_or(1);
                let mut response = Problem::too_many_requests(seconds)
                    .detail("request rate limit for unauthenticated clients exceeded; retry later")
                    .into_response();
                decision.write_headers(&limit.anonymous, "anonymous", response.headers_mut());
                return response;
            }
            Err(error) => {
                tracing::error!(%error, "rate limit check failed; refusing (fail closed)");
                return Problem::unavailable().into_response();
            }
        }
    }
    let slot = Slot::default();
    parts
        .extensions
        .insert(OrgBudget::new(Arc::new(RequestBudget {
            limit,
            slot: slot.clone(),
        })));
    let mut response = next.run(Request::from_parts(parts, body)).await;
    let decided = slot.0.lock().ok().and_then(|slot| *slot);
    if let Some((decision, quota)) = decided {
        decision.write_headers(&quota, "org", response.headers_mut());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_cache_keeps_a_rate_for_its_ttl_only() {
        let cache = RateCache::default();
        let (a, b) = (OrgId::new(), OrgId::new());
        assert_eq!(cache.get(a), None);
        cache.put(a, Quota::per_minute(5));
        assert_eq!(cache.get(a), Some(Quota::per_minute(5)));
        assert_eq!(cache.get(b), None, "per org");
        let stale = std::time::Instant::now()
            .checked_sub(RATE_CACHE_TTL + Duration::from_millis(1))
            .unwrap();
        cache
            .0
            .lock()
            .unwrap()
            .insert(b, (Quota::per_minute(7), stale));
        assert_eq!(cache.get(b), None, "read again after the TTL");
    }

    const SEC: i64 = 1_000_000;

    fn q(per_period: u32, secs: u64, burst: u32) -> Quota {
        Quota {
            per_period,
            period: Duration::from_secs(secs),
            burst,
        }
    }

    /// Runs `n` requests at the same instant from `tat`, returning how many were allowed.
    fn burst_at_once(quota: &Quota, mut tat: Option<i64>, n: u32) -> (u32, Option<i64>) {
        let mut allowed = 0;
        for _ in 0..n {
            let (ok, next) = quota.step(tat);
            if ok {
                allowed += 1;
            }
            tat = Some(next);
        }
        (allowed, tat)
    }

    #[test]
    fn interval_and_tolerance() {
        let quota = q(20, 60, 20);
        assert_eq!(quota.interval_us(), 3 * SEC);
        assert_eq!(quota.tolerance_us(), 60 * SEC);
        let zeroes = Quota {
            per_period: 0,
            period: Duration::ZERO,
            burst: 0,
        };
        assert_eq!(zeroes.interval_us(), 1);
        assert_eq!(zeroes.tolerance_us(), 1);
    }

    #[test]
    fn a_fresh_key_allows_exactly_burst_at_once() {
        let quota = q(20, 60, 20);
        let (allowed, _) = burst_at_once(&quota, None, 21);
        assert_eq!(allowed, 20);
        let quota = q(20, 60, 5);
        assert_eq!(burst_at_once(&quota, None, 100).0, 5);
    }

    #[test]
    fn remaining_counts_down_and_the_last_refusal_says_when() {
        let quota = q(20, 60, 20);
        let mut tat = None;
        for i in 0..20u32 {
            let (ok, next) = quota.step(tat);
            assert!(ok);
            let d = quota.decision(ok, next);
            assert_eq!(d.remaining, 19 - i);
            assert_eq!(d.limit, 20);
            assert_eq!(d.reset_after, Duration::from_secs(3 * u64::from(i + 1)));
            tat = Some(next);
        }
        let (ok, same) = quota.step(tat);
        assert!(!ok);
        assert_eq!(Some(same), tat, "a refusal does not move the tat");
        let d = quota.decision(ok, same);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after, Some(Duration::from_secs(3)));
        assert_eq!(d.retry_after_secs(), Some(3));
        assert_eq!(d.reset_after, Duration::from_secs(60));
    }

    #[test]
    fn refusals_consume_nothing() {
        let quota = q(2, 10, 2);
        let (_, tat) = burst_at_once(&quota, None, 2);
        let (allowed, after) = burst_at_once(&quota, tat, 50);
        assert_eq!(allowed, 0);
        assert_eq!(after, tat);
    }

    #[test]
    fn capacity_returns_one_interval_at_a_time() {
        let quota = q(20, 60, 20);
        let (_, tat) = burst_at_once(&quota, None, 20);
        let tat = tat.unwrap();
        // 2.9 s later: still nothing; 3 s later: exactly one more.
        assert!(!quota.step(Some(tat - 29 * SEC / 10)).0);
        let later = Some(tat - 3 * SEC);
        assert_eq!(burst_at_once(&quota, later, 5).0, 1);
        // A full period later the whole burst is back, and no more.
        assert_eq!(burst_at_once(&quota, Some(tat - 60 * SEC), 30).0, 20);
        // Long idle does not bank more than the burst.
        assert_eq!(burst_at_once(&quota, Some(-3600 * SEC), 30).0, 20);
    }

    #[test]
    fn a_steady_rate_at_the_limit_is_never_refused() {
        let quota = q(10, 1, 1);
        let mut tat: Option<i64> = None;
        for _ in 0..100 {
            let (ok, next) = quota.step(tat);
            assert!(ok);
            // 100 ms pass between requests: shift the offset by the elapsed time.
            tat = Some(next - SEC / 10);
        }
    }

    #[test]
    fn peek_is_refused_exactly_when_step_is_and_moves_nothing() {
        // Login's account quota: 5 at once, then one every 3 minutes.
        let quota = q(5, 900, 5);
        let mut tat = None;
        for consumed in 0..8u32 {
            let (would, next) = quota.step(tat);
            let (ok, offset) = quota.peek(tat);
            assert_eq!(ok, would, "after {consumed} consumed");
            assert_eq!(offset, tat.unwrap_or(0).max(0), "a peek leaves the tat");
            let peeked = quota.decision(ok, offset);
            if ok {
                // The peek counts the cell it asked about; the consume has used it.
                assert_eq!(peeked.remaining, 5 - consumed);
                assert_eq!(peeked.remaining, quota.decision(true, next).remaining + 1);
                assert_eq!(peeked.retry_after, None);
            } else {
                assert!(consumed >= 5);
                // Refused: the same answer as the consume's refusal, to the microsecond.
                assert_eq!(peeked, quota.decision(false, next));
                assert_eq!(peeked.retry_after, Some(Duration::from_secs(180)));
            }
            tat = Some(next);
        }
        // An idle key (tat in the past) peeks like a fresh one.
        assert_eq!(quota.peek(Some(-SEC)), quota.peek(None));
        assert_eq!(quota.peek(None), (true, 0));
        // One interval after the burst, exactly one more would be allowed.
        let full = tat.unwrap();
        assert!(!quota.peek(Some(full - 180 * SEC + 1)).0);
        assert!(quota.peek(Some(full - 180 * SEC)).0);
    }

    #[test]
    fn headers_follow_the_draft() {
        let quota = q(20, 60, 20);
        let allowed = quota.decision(true, 3 * SEC);
        let mut headers = HeaderMap::new();
        allowed.write_headers(&quota, "org", &mut headers);
        assert_eq!(headers[RATELIMIT_POLICY], "\"org\";q=20;w=60");
        assert_eq!(headers[RATELIMIT], "\"org\";r=19;t=3");
        assert!(headers.get("retry-after").is_none());

        let refused = quota.decision(false, 60 * SEC + 1);
        let mut headers = HeaderMap::new();
        refused.write_headers(&quota, "org", &mut headers);
        assert_eq!(headers[RATELIMIT], "\"org\";r=0;t=61");
        assert_eq!(headers["retry-after"], "4", "3.000001 s rounds up");
    }

    #[test]
    fn org_keys_are_canonical() {
        let id: uuid::Uuid = "6f9619ff-8b86-d011-b42d-00cf4fc964ff".parse().unwrap();
        assert_eq!(
            org_api_key(OrgId::from(id)),
            "org:6f9619ff-8b86-d011-b42d-00cf4fc964ff:api"
        );
    }
}
