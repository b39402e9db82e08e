//! The route-enumerated guarantees of the test kit (`runwarden_testkit::guarantees`) over
//! auth's `ROUTES`, beside auth's own richer tests (tenancy.rs, roles.rs, audit_trail.rs).
//! auth's users come through its API, so a team is signed up and invited here, then handed
//! to the kit as ids and tokens; auth supplies only how to call each org route.

use reqwest::{Method, StatusCode};
use runwarden_auth::routes::{ROUTES, Route};
use runwarden_testkit::guarantees::{Call, Subject};
use runwarden_testkit::{Api, Caller, Fixtures, Team};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{self, Session, TestApp, spawn_app, unique_email};

fn caller(session: &Session) -> Caller {
    Caller {
        user_id: session.user_id.parse().unwrap(),
        // The kit's guarantees send the access token only.
        session_id: Uuid::nil(),
        token: session.access.clone(),
    }
}

impl TestApp {
    /// A new user, invited into `team`'s org as `role` by its owner and accepted: their id.
    async fn newcomer(&self, team: &Team, role: &str) -> Uuid {
        let user = self.signup("newcomer").await;
        let (status, invitation) = self
            .post(
                &format!("/v1/orgs/{}/invitations", team.org),
                Some(&team.owner.token),
                json!({"email": user.email, "role": role}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{invitation}");
        let token = invitation["token"].as_str().unwrap();
        let (status, body) = self
            .post(
                &format!("/v1/invitations/{token}/accept"),
                Some(&user.access),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        user.user_id.parse().unwrap()
    }
}

impl Subject for TestApp {
    fn api(&self) -> &Api {
        &self.api
    }

    fn fixtures(&self) -> &Fixtures {
        &self.fx
    }

    async fn team(&self) -> Team {
        let team = helpers::Team::new(self, "kit").await;
        Team {
            org: team.org().parse().unwrap(),
            owner: caller(&team.owner),
            admin: caller(&team.admin),
            member: caller(&team.member),
            viewer: caller(&team.viewer),
        }
    }

    async fn call(&self, route: &Route, team: &Team) -> Call {
        let org = team.org;
        let (path, body) = match (route.method, route.path) {
            ("GET", "/v1/orgs/{org}") | ("GET", "/v1/orgs/{org}/members") => {
                (route.path.replace("{org}", &org.to_string()), None)
            }
            ("PATCH", "/v1/orgs/{org}") => (
                format!("/v1/orgs/{org}"),
                Some(json!({"name": format!("Renamed {}", Uuid::now_v7().simple())})),
            ),
            ("PATCH", "/v1/orgs/{org}/members/{user}") => {
                let user = self.newcomer(team, "member").await;
                (
                    format!("/v1/orgs/{org}/members/{user}"),
                    Some(json!({"role": "viewer"})),
                )
            }
            ("DELETE", "/v1/orgs/{org}/members/{user}") => {
                let user = self.newcomer(team, "viewer").await;
                (format!("/v1/orgs/{org}/members/{user}"), None)
            }
            ("DELETE", "/v1/orgs/{org}/members/{user}/sessions") => {
                let user = self.newcomer(team, "viewer").await;
                (format!("/v1/orgs/{org}/members/{user}/sessions"), None)
            }
            ("POST", "/v1/orgs/{org}/invitations") => (
                format!("/v1/orgs/{org}/invitations"),
                Some(json!({"email": unique_email("kit"), "role": "viewer"})),
            ),
            other => panic!("no recipe for {other:?}: add one here"),
        };
        Call {
            method: Method::from_bytes(route.method.as_bytes()).unwrap(),
            path,
            body,
        }
    }
}

runwarden_testkit::guarantee_tests!(spawn_app, ROUTES);
