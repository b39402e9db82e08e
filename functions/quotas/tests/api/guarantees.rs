//! The route-enumerated guarantees of the test kit (`runwarden_testkit::guarantees`) over
//! quotas' `ROUTES`: another org's resources answer like missing ones, the role matrix,
//! and the audit events of every org route. quotas supplies only how to call each route.

use runwarden_quotas::routes::{ROUTES, Route};
use runwarden_testkit::guarantees::{self, Call, Subject};
use runwarden_testkit::{Api, Team};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{TestApp, spawn_app};

impl Subject for TestApp {
    fn api(&self) -> &Api {
        &self.api
    }

    fn admin(&self) -> &PgPool {
        &self.fx.admin
    }

    async fn team(&self) -> Team {
        self.fx.team().await
    }

    async fn call(&self, route: &Route, team: &Team) -> Call {
        let org = team.org;
        match (route.method, route.path) {
            ("GET", "/v1/orgs/{org}/usage") => {
                Call::new(route, format!("/v1/orgs/{org}/usage"), None)
            }
            other => panic!("no recipe for {other:?}: add one here"),
        }
    }
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn every_org_route_answers_another_orgs_ids_like_missing_ones(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    guarantees::tenancy(&spawn_app(options).await, ROUTES).await;
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn role_matrix_of_every_org_route(_: PgPoolOptions, options: PgConnectOptions) {
    guarantees::role_matrix(&spawn_app(options).await, ROUTES).await;
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn every_org_route_writes_exactly_its_declared_audit_events(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    guarantees::audit_trail(&spawn_app(options).await, ROUTES).await;
}
