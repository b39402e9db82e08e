//! The route-enumerated guarantees, the same for every HTTP function, looping over its
//! `ROUTES` (`runwarden_tenancy::routes`): another org's resource answers exactly like a
//! missing one on every org-scoped route ([`tenancy`]); the role matrix ([`role_matrix`]);
//! every mutating route writes exactly one audit event of its declared action, in the same
//! transaction as its change ([`audit_trail`]). A function supplies only a [`Subject`]: its
//! served app and how to make one valid call of each route (a body, existing ids).

use std::collections::BTreeMap;

use reqwest::{Method, StatusCode};
use runwarden_tenancy::Role;
use runwarden_tenancy::routes::{Access, Audit, Route};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{Api, Caller, Fixtures, Reply, Team};

/// One request, as a route's recipe makes it.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    /// Concrete: `/v1/orgs/<id>/projects/<id>`.
    pub path: String,
    pub body: Option<Value>,
}

impl Call {
    pub fn new(route: &Route, path: String, body: Option<Value>) -> Self {
        Self {
            method: Method::from_bytes(route.method.as_bytes()).unwrap(),
            path,
            body,
        }
    }

    pub async fn send(&self, api: &Api, caller: &Caller) -> Reply {
        api.call(
            self.method.clone(),
            &self.path,
            Some(&caller.token),
            self.body.as_ref(),
        )
        .await
    }
}

/// What a function gives the guarantees: its app, and a valid call of each org route.
/// (Tests await these on one task; no `Send` bound is needed.)
#[allow(async_fn_in_trait)]
pub trait Subject {
    fn api(&self) -> &Api;
    /// The test's fixtures (the superuser pool reads the outbox).
    fn fixtures(&self) -> &Fixtures;
    /// A new org with one member of each role (by default, on the default plan).
    async fn team(&self) -> Team {
        self.fixtures().team().await
    }
    /// A call of `route` in `team`'s org that succeeds for a caller allowed to make it:
    /// existing ids (made fresh when the call consumes them), a valid body.
    async fn call(&self, route: &Route, team: &Team) -> Call;
    /// What a caller below the route's least role gets (403 unless documented otherwise).
    fn refused(&self, _route: &Route) -> StatusCode {
        StatusCode::FORBIDDEN
    }
}

fn org_routes(routes: &[Route]) -> Vec<&Route> {
    let org: Vec<&Route> = routes
        .iter()
        .filter(|r| matches!(r.access, Access::Org(_)))
        .collect();
    assert!(!org.is_empty(), "the function has org-scoped routes");
    org
}

/// The values of `route`'s path parameters in `path`.
fn params(route: &Route, path: &str) -> Vec<(String, String)> {
    let path = path.split('?').next().unwrap_or_default();
    route
        .path
        .split('/')
        .zip(path.split('/'))
        .filter_map(|(t, v)| {
            let name = t.strip_prefix('{')?.strip_suffix('}')?;
            Some((name.to_owned(), v.to_owned()))
        })
        .collect()
}

fn fill(route: &Route, values: &BTreeMap<String, String>) -> String {
    route
        .path
        .split('/')
        .map(
            |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => values[name].clone(),
                None => s.to_owned(),
            },
        )
        .collect::<Vec<_>>()
        .join("/")
}

/// An id of the same kind as `value` that exists nowhere (names stay as they are: they are
/// only found inside a resource that exists).
fn missing_like(value: &str) -> String {
    match value.parse::<Uuid>() {
        Ok(_) => Uuid::now_v7().to_string(),
        Err(_) => value.to_owned(),
    }
}

async fn audit_rows(admin: &PgPool, org: runwarden_tenancy::OrgId) -> Vec<Value> {
    sqlx::query_scalar(
        "SELECT payload FROM outbox_events WHERE org_id = $1 AND topic = 'audit-events'
         ORDER BY created_at, id",
    )
    .bind(org)
    .fetch_all(admin)
    .await
    .unwrap()
}

/// AZ-01/02 on every org-scoped route: the owner of org A using org B's ids (B's org, or
/// A's org with B's resource ids) gets exactly what ids that exist nowhere get: 404, the
/// same body, the same media type; and nothing of B is written.
pub async fn tenancy(subject: &impl Subject, routes: &[Route]) {
    let api = subject.api();
    let a = subject.team().await;
    let b = subject.team().await;
    for route in org_routes(routes) {
        let call = subject.call(route, &b).await;
        let before = audit_rows(&subject.fixtures().admin, b.org).await.len();
        let theirs: BTreeMap<String, String> = params(route, &call.path).into_iter().collect();
        let query = call
            .path
            .split_once('?')
            .map(|(_, q)| format!("?{q}"))
            .unwrap_or_default();
        let missing: BTreeMap<String, String> = theirs
            .iter()
            .map(|(k, v)| (k.clone(), missing_like(v)))
            .collect();
        let mut cases = vec![(theirs.clone(), missing.clone())];
        if theirs.len() > 1 {
            let with_ours = |m: &BTreeMap<String, String>| {
                let mut m = m.clone();
                m.insert("org".into(), a.org.to_string());
                m
            };
            cases.push((with_ours(&theirs), with_ours(&missing)));
        }
        for (probe, reference) in cases {
            let send = |values: &BTreeMap<String, String>| Call {
                path: format!("{}{query}", fill(route, values)),
                ..call.clone()
            };
            let (probe, reference) = (send(&probe), send(&reference));
            let got = probe.send(api, &a.owner).await;
            let want = reference.send(api, &a.owner).await;
            let what = format!(
                "{} {}: {} {}",
                route.method, probe.path, got.status, got.text
            );
            assert_eq!(got.status, StatusCode::NOT_FOUND, "{what}");
            assert_eq!(
                (got.status, &got.text),
                (want.status, &want.text),
                "{what} vs {}",
                reference.path
            );
            assert_eq!(
                got.headers.get("content-type"),
                want.headers.get("content-type"),
                "{what}"
            );
        }
        assert_eq!(
            audit_rows(&subject.fixtures().admin, b.org).await.len(),
            before,
            "{} {}: nothing written in the other org",
            route.method,
            route.path
        );
    }
}

/// AZ-05 on every org-scoped route with `Access::Org(least)`: each role below `least`
/// gets the refusal (403 unless the function documents otherwise) and `least` and above
/// pass authorization (neither 401, 403 nor 404), each with a fresh valid call.
pub async fn role_matrix(subject: &impl Subject, routes: &[Route]) {
    let api = subject.api();
    let team = subject.team().await;
    for route in org_routes(routes) {
        let Access::Org(least) = route.access else {
            unreachable!()
        };
        for role in Role::ALL {
            let call = subject.call(route, &team).await;
            let reply = call.send(api, team.by_role(role)).await;
            let what = format!(
                "{} {} as {}: {} {}",
                route.method,
                route.path,
                role.as_str(),
                reply.status,
                reply.text
            );
            if role < least {
                assert_eq!(reply.status, subject.refused(route), "{what}");
            } else {
                assert!(
                    ![
                        StatusCode::UNAUTHORIZED,
                        StatusCode::FORBIDDEN,
                        StatusCode::NOT_FOUND
                    ]
                    .contains(&reply.status),
                    "{what}"
                );
            }
        }
    }
}

/// LOG-01 on every org-scoped route: a successful call by its least role writes exactly one
/// audit event of its declared action (`Audit::Event`, or one of `Audit::OneOf`), with the
/// caller as actor, in the outbox of the org, and a read writes none. The row is there when
/// the answer is: it was written in the transaction of the change.
pub async fn audit_trail(subject: &impl Subject, routes: &[Route]) {
    let api = subject.api();
    let team = subject.team().await;
    for route in org_routes(routes) {
        let Access::Org(least) = route.access else {
            unreachable!()
        };
        let caller = team.by_role(least);
        let call = subject.call(route, &team).await;
        let before = audit_rows(&subject.fixtures().admin, team.org).await.len();
        let reply = call.send(api, caller).await;
        let what = format!(
            "{} {}: {} {}",
            route.method, route.path, reply.status, reply.text
        );
        assert!(reply.status.is_success(), "{what}");
        let rows = audit_rows(&subject.fixtures().admin, team.org).await;
        let new = &rows[before..];
        let declared: &[&str] = match &route.audit {
            Audit::Read => &[],
            Audit::Event(action) => std::slice::from_ref(action),
            Audit::OneOf(actions) => actions,
            // Zero or more events, each of these actions.
            Audit::PerChange(actions) => {
                for event in new {
                    assert!(
                        actions.contains(&event["action"].as_str().unwrap()),
                        "{what}"
                    );
                }
                continue;
            }
            Audit::PerItem(action) => {
                for event in new {
                    assert_eq!(event["action"], *action, "{what}");
                }
                continue;
            }
            other => panic!("{what}: an org route with audit {other:?}"),
        };
        if declared.is_empty() {
            assert!(new.is_empty(), "{what}: a read writes no event: {new:?}");
            continue;
        }
        assert_eq!(new.len(), 1, "{what}: exactly one event: {new:#?}");
        let event = &new[0];
        assert!(
            declared.contains(&event["action"].as_str().unwrap_or_default()),
            "{what}: {} is one of {declared:?}",
            event["action"]
        );
        assert_eq!(event["org_id"], team.org.to_string(), "{what}");
        assert_eq!(
            event["actor"]["id"],
            caller.user_id.to_string(),
            "{what}: the caller is the actor"
        );
    }
}

/// The three guarantees as `#[sqlx::test]`s of a function's API test binary, given its
/// `spawn_app(PgConnectOptions)` (whose app is a [`Subject`]) and its `ROUTES`.
#[macro_export]
macro_rules! guarantee_tests {
    ($spawn_app:path, $routes:expr) => {
        #[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
        async fn every_org_route_answers_another_orgs_ids_like_missing_ones(
            _: sqlx::postgres::PgPoolOptions,
            options: sqlx::postgres::PgConnectOptions,
        ) {
            $crate::guarantees::tenancy(&$spawn_app(options).await, $routes).await;
        }

        #[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
        async fn role_matrix_of_every_org_route(
            _: sqlx::postgres::PgPoolOptions,
            options: sqlx::postgres::PgConnectOptions,
        ) {
            $crate::guarantees::role_matrix(&$spawn_app(options).await, $routes).await;
        }

        #[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
        async fn every_org_route_writes_exactly_its_declared_audit_events(
            _: sqlx::postgres::PgPoolOptions,
            options: sqlx::postgres::PgConnectOptions,
        ) {
            $crate::guarantees::audit_trail(&$spawn_app(options).await, $routes).await;
        }
    };
}
