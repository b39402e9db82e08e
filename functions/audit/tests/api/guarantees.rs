//! The route-enumerated guarantees of the test kit (`runwarden_testkit::guarantees`) over
//! audit' `ROUTES`: another org's resources answer like missing ones, the role matrix,
//! and the audit events of every org route. audit supplies only how to call each route.

use runwarden_audit::routes::{ROUTES, Route};
use runwarden_testkit::guarantees::{Call, Subject};
use runwarden_testkit::{Api, Fixtures, Team};

use crate::helpers::{TestApp, spawn_app};

impl Subject for TestApp {
    fn api(&self) -> &Api {
        &self.api
    }

    fn fixtures(&self) -> &Fixtures {
        &self.fx
    }

    async fn call(&self, route: &Route, team: &Team) -> Call {
        let org = team.org;
        match (route.method, route.path) {
            ("GET", "/v1/orgs/{org}/audit-events") => {
                Call::new(route, format!("/v1/orgs/{org}/audit-events"), None)
            }
            ("GET", "/v1/orgs/{org}/audit-events/export") => {
                Call::new(route, format!("/v1/orgs/{org}/audit-events/export"), None)
            }
            ("GET", "/v1/orgs/{org}/audit-events/verify") => {
                Call::new(route, format!("/v1/orgs/{org}/audit-events/verify"), None)
            }
            other => panic!("no recipe for {other:?}: add one here"),
        }
    }
}

runwarden_testkit::guarantee_tests!(spawn_app, ROUTES);
