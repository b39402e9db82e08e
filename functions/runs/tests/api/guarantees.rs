//! The route-enumerated guarantees of the test kit (`runwarden_testkit::guarantees`) over
//! runs' `ROUTES`: another org's resources answer like missing ones, the role matrix, and
//! the audit events of every org route. runs supplies only how to call each route: fresh
//! projects, runs and secrets made by the org's owner, so that every call can succeed.

use reqwest::StatusCode;
use runwarden_runs::routes::{ROUTES, Route};
use runwarden_testkit::guarantees::{Call, Subject};
use runwarden_testkit::{Api, Fixtures, Team};
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app};

impl TestApp {
    /// A run of a new project of `team`'s org, queued: (project, run).
    async fn queued_run(&self, team: &Team) -> (String, String) {
        let project = self.project(team.org, &team.owner.token).await;
        let body = json!({"agent": "demo", "input": {"sleep_seconds": 1}, "max_seconds": 60});
        let (status, _, run) = self
            .start_run(team.org, &project, &team.owner.token, body, None)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{run}");
        (project, run["id"].as_str().unwrap().to_owned())
    }

    /// A secret of a new project of `team`'s org: (project, name).
    async fn secret(&self, team: &Team) -> (String, String) {
        let project = self.project(team.org, &team.owner.token).await;
        let name = fresh_name();
        let path = format!("/v1/orgs/{}/projects/{project}/secrets/{name}", team.org);
        let (status, body) = self
            .call(
                reqwest::Method::PUT,
                &path,
                &team.owner.token,
                Some(&json!({"kind": "secret_variable", "value": "v"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (project, name)
    }
}

fn fresh_name() -> String {
    format!("S_{}", Uuid::now_v7().simple()).to_uppercase()
}

impl Subject for TestApp {
    fn api(&self) -> &Api {
        &self.api
    }

    fn fixtures(&self) -> &Fixtures {
        &self.fx
    }

    /// On a plan whose limits no loop reaches.
    async fn team(&self) -> Team {
        self.fx.team_on("enterprise").await
    }

    async fn call(&self, route: &Route, team: &Team) -> Call {
        let org = team.org;
        let owner = &team.owner.token;
        let (path, body) = match (route.method, route.path) {
            ("POST", "/v1/orgs/{org}/projects") => (
                format!("/v1/orgs/{org}/projects"),
                Some(json!({"name": Uuid::now_v7().to_string()})),
            ),
            ("GET", "/v1/orgs/{org}/projects") => (format!("/v1/orgs/{org}/projects"), None),
            ("GET" | "DELETE", "/v1/orgs/{org}/projects/{project}") => {
                let project = self.project(org, owner).await;
                (format!("/v1/orgs/{org}/projects/{project}"), None)
            }
            ("PATCH", "/v1/orgs/{org}/projects/{project}") => {
                let project = self.project(org, owner).await;
                (
                    format!("/v1/orgs/{org}/projects/{project}"),
                    Some(json!({"name": Uuid::now_v7().to_string()})),
                )
            }
            ("POST", "/v1/orgs/{org}/projects/{project}/runs") => {
                let project = self.project(org, owner).await;
                (
                    format!("/v1/orgs/{org}/projects/{project}/runs"),
                    Some(
                        json!({"agent": "demo", "input": {"sleep_seconds": 1}, "max_seconds": 60}),
                    ),
                )
            }
            ("GET", "/v1/orgs/{org}/runs") => (format!("/v1/orgs/{org}/runs"), None),
            ("GET", "/v1/orgs/{org}/runs/{run}")
            | ("POST", "/v1/orgs/{org}/runs/{run}/cancel")
            | ("POST", "/v1/orgs/{org}/runs/{run}/media-token")
            | ("GET", "/v1/orgs/{org}/runs/{run}/artifacts") => {
                let (_, run) = self.queued_run(team).await;
                (
                    route
                        .path
                        .replace("{org}", &org.to_string())
                        .replace("{run}", &run),
                    None,
                )
            }
            ("GET", "/v1/orgs/{org}/projects/{project}/secrets") => {
                let (project, _) = self.secret(team).await;
                (format!("/v1/orgs/{org}/projects/{project}/secrets"), None)
            }
            ("PUT", "/v1/orgs/{org}/projects/{project}/secrets/{name}") => {
                let project = self.project(org, owner).await;
                (
                    format!("/v1/orgs/{org}/projects/{project}/secrets/{}", fresh_name()),
                    Some(json!({"kind": "secret_variable", "value": "v"})),
                )
            }
            ("GET" | "DELETE", "/v1/orgs/{org}/projects/{project}/secrets/{name}") => {
                let (project, name) = self.secret(team).await;
                (
                    format!("/v1/orgs/{org}/projects/{project}/secrets/{name}"),
                    None,
                )
            }
            other => panic!("no recipe for {other:?}: add one here"),
        };
        Call::new(route, path, body)
    }
}

runwarden_testkit::guarantee_tests!(spawn_app, ROUTES);
