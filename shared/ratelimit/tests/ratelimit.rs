//! The limit against a real database, reached as the runtime role `runwarden_auth`; the
//! superuser pool is used only to move time (shift a key's tat) behind the limiter's back.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::RawPathParams;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::BodyExt;
use runwarden_platform::error::ApiError;
use runwarden_ratelimit::{OrgRateLimit, Quota, check, org_api_key, peek, purge_idle, reset};
use runwarden_tenancy::OrgId;
use runwarden_tenancy::access::OrgBudget;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tower::ServiceExt;

async fn runtime_pool(options: &PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(10)
        .connect_with(options.clone().username(runwarden_store::roles::AUTH))
        .await
        .unwrap()
}

async fn admin_pool(options: &PgConnectOptions) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.clone())
        .await
        .unwrap()
}

/// An org route's handler, standing in for one whose caller has been found a member: it
/// charges the path's org through the request's budget (a malformed id charges nothing).
async fn org_route(budget: OrgBudget, params: RawPathParams) -> Response {
    let org = params
        .iter()
        .find(|(name, _)| *name == "org")
        .and_then(|(_, value)| value.parse::<OrgId>().ok());
    if let Some(org) = org
        && let Err(e) = budget.charge_checked(org).await
    {
        return ApiError::from(e).into_response();
    }
    "ok".into_response()
}

fn routes() -> Router {
    Router::new()
        .route("/v1/orgs/{org}/projects", get(org_route))
        .route("/v1/orgs/{org}", get(org_route))
        .route("/v1/me", get(|| async { "me" }))
}

/// One "instance": its own pool and router, limiting every org to `quota`.
async fn instance(options: &PgConnectOptions, quota: Quota) -> Router {
    OrgRateLimit::fixed(runtime_pool(options).await, quota).apply(routes())
}

async fn get_status(app: &Router, path: &str) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
    let response = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, headers, body)
}

fn projects(org: OrgId) -> String {
    format!("/v1/orgs/{org}/projects")
}

async fn shift_back(admin: &PgPool, org: OrgId, by: Duration) {
    sqlx::query("UPDATE rate_limits SET tat = tat - $2 WHERE key = $1")
        .bind(org_api_key(org))
        .bind(by)
        .execute(admin)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn api4_01_limit_plus_one_gets_429_with_retry_after(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = instance(&options, Quota::per_minute(5)).await;
    let org = OrgId::new();
    for i in 0..5u32 {
        let (status, headers, _) = get_status(&app, &projects(org)).await;
        assert_eq!(status, StatusCode::OK, "request {i}");
        assert_eq!(headers["ratelimit-policy"], "\"org\";q=5;w=60");
        let expected = format!("\"org\";r={};t=", 4 - i);
        let got = headers["ratelimit"].to_str().unwrap();
        assert!(got.starts_with(&expected), "{got} vs {expected}");
        assert!(headers.get("retry-after").is_none());
    }
    let (status, headers, body) = get_status(&app, &projects(org)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["content-type"], "application/problem+json");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=12).contains(&retry), "retry-after {retry}");
    assert!(
        headers["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"org\";r=0;")
    );
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["code"], "rate_limited");
    assert_eq!(problem["status"], 429);
    assert_eq!(problem["retry_after"], retry);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn api4_01_two_instances_hit_concurrently_allow_exactly_the_limit(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let quota = Quota::per_minute(20);
    let a = instance(&options, quota).await;
    let b = instance(&options, quota).await;
    let org = OrgId::new();
    let path = projects(org);
    let requests = (0..100).map(|i| {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        let path = path.clone();
        tokio::spawn(async move { get_status(&app, &path).await.0 })
    });
    let statuses = futures::future::join_all(requests).await;
    let ok = statuses
        .iter()
        .filter(|s| *s.as_ref().unwrap() == StatusCode::OK)
        .count();
    let limited = statuses
        .iter()
        .filter(|s| *s.as_ref().unwrap() == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(ok, 20, "allowed across both instances");
    assert_eq!(limited, 80);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn api4_01_an_exhausted_org_does_not_limit_another(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = instance(&options, Quota::per_minute(3)).await;
    let (a, b) = (OrgId::new(), OrgId::new());
    for _ in 0..3 {
        assert_eq!(get_status(&app, &projects(a)).await.0, StatusCode::OK);
    }
    assert_eq!(
        get_status(&app, &projects(a)).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The org's own route shares its budget.
    assert_eq!(
        get_status(&app, &format!("/v1/orgs/{a}")).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..3 {
        assert_eq!(get_status(&app, &projects(b)).await.0, StatusCode::OK);
    }
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn routes_outside_an_org_and_bad_org_ids_pass_through(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = instance(&options, Quota::per_minute(1)).await;
    for _ in 0..5 {
        let (status, headers, _) = get_status(&app, "/v1/me").await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers.get("ratelimit").is_none());
        // Not a UUID: the handler's own extractor decides; no key is created.
        let (status, _, _) = get_status(&app, "/v1/orgs/not-an-id/projects").await;
        assert_eq!(status, StatusCode::OK);
    }
    let admin = admin_pool(&options).await;
    let keys: i64 = sqlx::query_scalar("SELECT count(*) FROM rate_limits")
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_eq!(keys, 0);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn percent_encoded_and_alternate_org_spellings_share_one_budget(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = instance(&options, Quota::per_minute(2)).await;
    let org = OrgId::new();
    let plain = org.to_string();
    let encoded = format!("%{:02X}{}", plain.as_bytes()[0], &plain[1..]);
    let simple = plain.replace('-', "");
    assert_eq!(
        get_status(&app, &format!("/v1/orgs/{encoded}/projects"))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        get_status(&app, &format!("/v1/orgs/{simple}/projects"))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        get_status(&app, &projects(org)).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn refused_requests_do_not_consume(_: PgPoolOptions, options: PgConnectOptions) {
    let pool = runtime_pool(&options).await;
    let admin = admin_pool(&options).await;
    let quota = Quota::per_minute(2);
    let key = "org:test:api";
    assert!(check(&pool, key, quota).await.unwrap().allowed);
    assert!(check(&pool, key, quota).await.unwrap().allowed);
    let tat_before = tat(&admin, key).await;
    for _ in 0..20 {
        let d = check(&pool, key, quota).await.unwrap();
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert!(d.retry_after.unwrap() <= Duration::from_secs(30));
    }
    assert_eq!(
        tat(&admin, key).await,
        tat_before,
        "refusals left the tat alone"
    );
    // One interval (30 s) later exactly one request is allowed, not one per refusal.
    sqlx::query("UPDATE rate_limits SET tat = tat - interval '30 seconds' WHERE key = $1")
        .bind(key)
        .execute(&admin)
        .await
        .unwrap();
    assert!(check(&pool, key, quota).await.unwrap().allowed);
    assert!(!check(&pool, key, quota).await.unwrap().allowed);
}

/// The tat as text, so the test needs no time crate.
async fn tat(admin: &PgPool, key: &str) -> String {
    sqlx::query_scalar("SELECT tat::text FROM rate_limits WHERE key = $1")
        .bind(key)
        .fetch_one(admin)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn allowed_again_once_retry_after_has_passed(_: PgPoolOptions, options: PgConnectOptions) {
    let admin = admin_pool(&options).await;
    let app = instance(&options, Quota::per_minute(4)).await;
    let org = OrgId::new();
    for _ in 0..4 {
        assert_eq!(get_status(&app, &projects(org)).await.0, StatusCode::OK);
    }
    let (status, headers, _) = get_status(&app, &projects(org)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert_eq!(retry, 15);
    // Move time forward by Retry-After: exactly one more request fits.
    shift_back(&admin, org, Duration::from_secs(retry)).await;
    assert_eq!(get_status(&app, &projects(org)).await.0, StatusCode::OK);
    assert_eq!(
        get_status(&app, &projects(org)).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A whole period later the whole burst is back.
    shift_back(&admin, org, Duration::from_secs(60)).await;
    for _ in 0..4 {
        assert_eq!(get_status(&app, &projects(org)).await.0, StatusCode::OK);
    }
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn allowed_again_in_real_time_with_a_short_period(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = runtime_pool(&options).await;
    let quota = Quota {
        per_period: 2,
        period: Duration::from_secs(2),
        burst: 2,
    };
    let key = "org:short:api";
    assert!(check(&pool, key, quota).await.unwrap().allowed);
    assert!(check(&pool, key, quota).await.unwrap().allowed);
    let refused = check(&pool, key, quota).await.unwrap();
    assert!(!refused.allowed);
    let wait = refused.retry_after.unwrap();
    assert!(wait <= Duration::from_secs(1), "{wait:?}");
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    assert!(check(&pool, key, quota).await.unwrap().allowed);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn idle_keys_are_purged_and_live_ones_kept(_: PgPoolOptions, options: PgConnectOptions) {
    let pool = runtime_pool(&options).await;
    let admin = admin_pool(&options).await;
    let quota = Quota::per_minute(10);
    check(&pool, "idle", quota).await.unwrap();
    check(&pool, "live", quota).await.unwrap();
    sqlx::query("UPDATE rate_limits SET tat = now() - interval '1 second' WHERE key = 'idle'")
        .execute(&admin)
        .await
        .unwrap();
    assert_eq!(purge_idle(&pool).await.unwrap(), 1);
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM rate_limits")
        .fetch_all(&admin)
        .await
        .unwrap();
    assert_eq!(keys, vec!["live".to_owned()]);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn a_database_outage_fails_closed_with_503(_: PgPoolOptions, options: PgConnectOptions) {
    let dead = PgPoolOptions::new()
        .acquire_timeout(Duration::from_millis(300))
        .connect_lazy_with(options.port(1));
    let app = OrgRateLimit::fixed(dead, Quota::per_minute(100)).apply(routes());
    let (status, headers, body) = get_status(&app, &projects(OrgId::new())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["content-type"], "application/problem+json");
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["code"], "unavailable");
    // Routes the limiter does not cover are unaffected.
    assert_eq!(get_status(&app, "/v1/me").await.0, StatusCode::OK);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn the_quota_lookup_is_per_org(_: PgPoolOptions, options: PgConnectOptions) {
    let big = OrgId::new();
    let small = OrgId::new();
    let app = OrgRateLimit::new(runtime_pool(&options).await, move |org| async move {
        Quota::per_minute(if org == big { 5 } else { 1 })
    })
    .apply(routes());
    let mut ok_big = 0;
    let mut ok_small = 0;
    for _ in 0..6 {
        ok_big += u32::from(get_status(&app, &projects(big)).await.0 == StatusCode::OK);
        ok_small += u32::from(get_status(&app, &projects(small)).await.0 == StatusCode::OK);
    }
    assert_eq!((ok_big, ok_small), (5, 1));
}

async fn tat_if_any(admin: &PgPool, key: &str) -> Option<String> {
    sqlx::query_scalar("SELECT tat::text FROM rate_limits WHERE key = $1")
        .bind(key)
        .fetch_optional(admin)
        .await
        .unwrap()
}

async fn key_count(admin: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM rate_limits")
        .fetch_one(admin)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn peek_consumes_nothing_and_is_refused_exactly_when_check_would_be(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let pool = runtime_pool(&options).await;
    let admin = admin_pool(&options).await;
    // 3 at once, then one every 20 s.
    let quota = Quota::per_minute(3);
    let key = "login:test";

    // A key never seen: allowed with the whole burst, and no row is created.
    for _ in 0..10 {
        let d = peek(&pool, key, quota).await.unwrap();
        assert!(d.allowed);
        assert_eq!(d.remaining, 3);
        assert_eq!(d.retry_after, None);
    }
    assert_eq!(key_count(&admin).await, 0, "peeking created no row");

    // Step by step, a peek predicts the check that follows it, and moves nothing itself.
    let mut allowed = 0;
    for i in 0..6u32 {
        let tat_before = tat_if_any(&admin, key).await;
        let peeked = peek(&pool, key, quota).await.unwrap();
        let peeked_again = peek(&pool, key, quota).await.unwrap();
        assert_eq!(peeked.allowed, peeked_again.allowed);
        assert_eq!(
            tat_if_any(&admin, key).await,
            tat_before,
            "peek {i} moved the tat"
        );
        let checked = check(&pool, key, quota).await.unwrap();
        assert_eq!(peeked.allowed, checked.allowed, "attempt {i}");
        if checked.allowed {
            allowed += 1;
            assert_eq!(peeked.remaining, checked.remaining + 1, "attempt {i}");
        } else {
            assert_eq!(peeked.remaining, 0);
            let (p, c) = (peeked.retry_after.unwrap(), checked.retry_after.unwrap());
            assert!(p >= c && p - c < Duration::from_secs(1), "{p:?} vs {c:?}");
            assert_eq!(peeked.retry_after_secs(), Some(20));
        }
    }
    assert_eq!(allowed, 3);

    // Once the retry time has passed both allow one more, then both refuse again.
    sqlx::query("UPDATE rate_limits SET tat = tat - interval '20 seconds' WHERE key = $1")
        .bind(key)
        .execute(&admin)
        .await
        .unwrap();
    let peeked = peek(&pool, key, quota).await.unwrap();
    assert!(peeked.allowed);
    assert_eq!(peeked.remaining, 1);
    assert!(check(&pool, key, quota).await.unwrap().allowed);
    assert!(!peek(&pool, key, quota).await.unwrap().allowed);
    assert!(!check(&pool, key, quota).await.unwrap().allowed);

    // Other keys are untouched by all of it.
    assert!(peek(&pool, "login:other", quota).await.unwrap().allowed);
    assert_eq!(key_count(&admin).await, 1);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn reset_gives_a_key_its_whole_burst_back(_: PgPoolOptions, options: PgConnectOptions) {
    let pool = runtime_pool(&options).await;
    let admin = admin_pool(&options).await;
    let quota = Quota::per_minute(2);
    for key in ["login:a", "login:b"] {
        for _ in 0..2 {
            assert!(check(&pool, key, quota).await.unwrap().allowed);
        }
        assert!(!peek(&pool, key, quota).await.unwrap().allowed);
    }
    assert!(reset(&pool, "login:a").await.unwrap());
    assert!(!reset(&pool, "login:a").await.unwrap(), "already gone");
    let d = peek(&pool, "login:a", quota).await.unwrap();
    assert!(d.allowed);
    assert_eq!(d.remaining, 2);
    assert!(check(&pool, "login:a", quota).await.unwrap().allowed);
    assert!(check(&pool, "login:a", quota).await.unwrap().allowed);
    assert!(!check(&pool, "login:a", quota).await.unwrap().allowed);
    // Only that key.
    assert!(!peek(&pool, "login:b", quota).await.unwrap().allowed);
    assert_eq!(key_count(&admin).await, 2);
}

/// Every runtime role may peek; a role that is none of them may not.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn peek_is_granted_to_the_runtime_roles_only(_: PgPoolOptions, options: PgConnectOptions) {
    use runwarden_store::roles;
    for role in [roles::AUTH, roles::RUNS, roles::QUOTAS, roles::AUDIT] {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone().username(role))
            .await
            .unwrap();
        assert!(
            peek(&pool, "k", Quota::per_minute(1))
                .await
                .unwrap()
                .allowed,
            "{role}"
        );
    }
    let admin = admin_pool(&options).await;
    let granted: bool = sqlx::query_scalar(
        "SELECT has_function_privilege('public', 'rate_limit_peek(text, bigint, bigint)', 'EXECUTE')",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(!granted, "PUBLIC may not execute rate_limit_peek");
}

mod anonymous {
    use runwarden_ratelimit::{ANONYMOUS, anon_ip_key};
    use runwarden_tenancy::Role;
    use runwarden_tenancy::routes::{Access, Audit, Route, route};
    use runwarden_tokens::{AccessClaims, TokenSigner};

    use super::*;

    const TABLE: &[Route] = &[
        route("GET", "/healthz", Access::Public, Audit::Read),
        route("GET", "/openapi.json", Access::Public, Audit::Read),
        route("GET", "/v1/me", Access::User, Audit::Read),
        route(
            "GET",
            "/v1/orgs/{org}/projects",
            Access::Org(Role::Viewer),
            Audit::Read,
        ),
        route(
            "GET",
            "/internal/ping",
            Access::Internal,
            Audit::Unaudited("test"),
        ),
    ];

    async fn send(
        app: &Router,
        path: &str,
        token: Option<&str>,
    ) -> (StatusCode, axum::http::HeaderMap) {
        let mut request = Request::get(path);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        (response.status(), response.headers().clone())
    }

    #[test]
    fn the_anonymous_quota_is_sixty_a_minute_per_ip() {
        assert_eq!(ANONYMOUS, Quota::per_minute(60));
        assert_eq!(anon_ip_key(None), "anon:ip:unknown");
        assert_eq!(
            anon_ip_key(Some("::ffff:192.0.2.1".parse().unwrap())),
            "anon:ip:192.0.2.1"
        );
    }

    #[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
    async fn requests_without_a_valid_credential_are_limited_per_client_ip(
        _: PgPoolOptions,
        options: PgConnectOptions,
    ) {
        let signer = TokenSigner::generate("k1");
        let other = TokenSigner::generate("k2");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let claims = AccessClaims::new(uuid::Uuid::now_v7(), uuid::Uuid::now_v7(), now);
        let valid = signer.sign(&claims).unwrap();
        let forged = other.sign(&claims).unwrap();
        let routes = Router::new()
            .route("/healthz", get(|| async { "up" }))
            .route("/openapi.json", get(|| async { "{}" }))
            .route("/v1/me", get(|| async { "me" }))
            .route("/v1/orgs/{org}/projects", get(|| async { "ok" }))
            .route("/internal/ping", get(|| async { "pong" }));
        let app = OrgRateLimit::fixed(runtime_pool(&options).await, Quota::per_minute(100))
            .with_anonymous(TABLE, signer.verifier(), Quota::per_minute(4))
            .apply(routes);
        let org = OrgId::new();
        // No token, a token of another key, a public route and an unmatched path: one
        // client's budget of 4.
        assert_eq!(send(&app, &projects(org), None).await.0, StatusCode::OK);
        assert_eq!(
            send(&app, &projects(org), Some(&forged)).await.0,
            StatusCode::OK
        );
        assert_eq!(send(&app, "/openapi.json", None).await.0, StatusCode::OK);
        assert_eq!(send(&app, "/nope", None).await.0, StatusCode::NOT_FOUND);
        let (status, headers) = send(&app, "/v1/me", Some("garbage")).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers["ratelimit-policy"], "\"anonymous\";q=4;w=60");
        assert!(headers.contains_key("retry-after"));
        assert_eq!(
            send(&app, &projects(org), None).await.0,
            StatusCode::TOO_MANY_REQUESTS
        );
        // A valid token, health and internal routes are not anonymous traffic.
        for _ in 0..6 {
            assert_eq!(send(&app, "/v1/me", Some(&valid)).await.0, StatusCode::OK);
            assert_eq!(
                send(&app, &projects(org), Some(&valid)).await.0,
                StatusCode::OK
            );
            assert_eq!(send(&app, "/healthz", None).await.0, StatusCode::OK);
            assert_eq!(send(&app, "/internal/ping", None).await.0, StatusCode::OK);
        }
        let admin = admin_pool(&options).await;
        let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM rate_limits")
            .fetch_all(&admin)
            .await
            .unwrap();
        assert_eq!(keys, vec![anon_ip_key(None)], "no org was charged");
    }
}
