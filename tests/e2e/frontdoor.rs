//! The local front door in front of auth: public auth paths are proxied, internal and
//! Pub/Sub push paths are never routed (404 problem+json), and a route whose function is
//! not running answers 502.

use runwarden_e2e::{
    AUTH_ROLE, Api, PASSWORD, Reply, TestDb, free_port, start_auth, start_frontdoor, unique_email,
};
use serde_json::json;

fn assert_problem(reply: &Reply, status: u16, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.text);
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("application/problem+json"),
        "{what}: content-type {content_type:?}, body {}",
        reply.text
    );
    assert_eq!(reply.json["status"], status, "{what}: {}", reply.text);
    assert!(
        reply.json["code"].is_string(),
        "{what}: a problem carries a machine-readable code: {}",
        reply.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn front_door_routes_public_auth_paths_and_hides_internal_ones() {
    let db = TestDb::create().await;
    // Behind the front door: one trusted proxy hop.
    let auth = start_auth(&db.url_as(AUTH_ROLE), &[("TRUSTED_PROXY_HOPS", "1")]).await;
    // runs, quotas and audit are not running: their URLs point at ports nobody listens on.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let auth_url = auth.base_url();
    let door = start_frontdoor(&[
        ("AUTH_URL", auth_url.as_str()),
        ("RUNS_URL", nowhere.as_str()),
        ("QUOTAS_URL", nowhere.as_str()),
        ("AUDIT_URL", nowhere.as_str()),
    ])
    .await;
    let api = Api::new(door.base_url());

    let email = unique_email("door");
    let signup = api.signup(&email, PASSWORD).await;
    assert_eq!(
        signup.status, 200,
        "signup through the front door: {}",
        signup.text
    );
    let access = signup.str("access_token");
    let org = signup.str("org_id");

    let me = api.get("/v1/me", Some(&access)).await;
    assert_eq!(me.status, 200, "/v1/me through the front door: {}", me.text);
    assert_eq!(me.json["email"], email.as_str());
    assert!(
        me.request_id().is_some(),
        "auth's request id comes back through the front door"
    );

    let login = api.login(&email, PASSWORD).await;
    assert_eq!(
        login.status, 200,
        "login through the front door: {}",
        login.text
    );

    // Never routed, whoever asks and however.
    let internal = api.get("/internal/anything", Some(&access)).await;
    assert_problem(&internal, 404, "GET /internal/anything");
    let internal_post = api.post("/internal/runs/claim", None, &json!({})).await;
    assert_problem(&internal_post, 404, "POST /internal/runs/claim");
    let push = api
        .post(
            "/push/audit-events",
            None,
            &json!({"message": {"data": ""}}),
        )
        .await;
    assert_problem(&push, 404, "POST /push/audit-events");
    let unknown = api.get("/v1/nothing-here", None).await;
    assert_problem(&unknown, 404, "GET /v1/nothing-here");

    // Routed to runs, which is not running.
    let projects = api
        .get(&format!("/v1/orgs/{org}/projects"), Some(&access))
        .await;
    assert_problem(&projects, 502, "GET /v1/orgs/{org}/projects with runs down");
    let random_org = uuid::Uuid::new_v4();
    let projects = api
        .get(&format!("/v1/orgs/{random_org}/projects"), Some(&access))
        .await;
    assert_problem(
        &projects,
        502,
        "GET /v1/orgs/<uuid>/projects with runs down",
    );

    // The refused paths never reached auth: besides its health checks, auth's access log
    // shows exactly the three public requests (sign-up, /v1/me, login), nothing else.
    let auth_log = auth.stdout();
    let mut seen: Vec<String> = auth_log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["message"] == "request")
        .map(|l| {
            let route = l["http.route"]
                .as_str()
                .or(l["http.path"].as_str())
                .unwrap_or("?");
            format!("{} {route}", l["http.method"].as_str().unwrap_or("?"))
        })
        .filter(|r| r != "GET /healthz")
        .collect();
    let mut expected = vec![
        "GET /v1/me",
        "POST /v1/auth/login",
        "POST /v1/auth/signup",
        "POST /v1/auth/verify-email",
    ];
    seen.sort();
    expected.sort();
    assert_eq!(
        seen, expected,
        "auth should have seen only the public requests; the front door forwarded more:\n{auth_log}"
    );
}
