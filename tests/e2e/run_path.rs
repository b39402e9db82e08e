//! The platform's core path with every real part: auth signs a user up; runs creates a
//! project and its secrets, asks quotas to admit a run and relays its dispatch through
//! Google's Pub/Sub emulator back to itself, which starts the real runner binary with the
//! demo agent; the runner trades its ticket, reads its project's secrets, streams events and
//! uploads a screenshot and a video to fake-gcs-server; a viewer watches the SSE stream to
//! its end and downloads the screenshot through a media URL; the run's end reaches quotas
//! (settled) and audit (the trail). No secret value appears in any process's output.

use std::time::{Duration, Instant};

use runwarden_e2e::{
    AUTH_ROLE, Api, PASSWORD, Proc, TestDb, command, free_port, generate_signing_key_pem,
    start_auth, unique_email,
};
use serde_json::{Value, json};

const CANARY: &str = "canary-secret-value-7f3a9c";
const OTHER_CANARY: &str = "other-project-canary-41d2e8";

fn reachable(var: &str, default: &str, what: &str) -> String {
    let host = std::env::var(var).unwrap_or_else(|_| default.into());
    let addr = host.trim_start_matches("http://");
    let addr = if addr.contains(':') {
        addr.to_owned()
    } else {
        format!("{addr}:80")
    };
    assert!(
        std::net::TcpStream::connect(&addr).is_ok(),
        "{what} is not reachable at {host}: scripts/test starts it"
    );
    host
}

fn start(name: &str, port: u16, env: &[(&str, String)]) -> Proc {
    let mut cmd = command(name);
    cmd.env("RUNWARDEN_ENV", "development")
        .env("PORT", port.to_string())
        .env("RUST_LOG", "info")
        .env("GCE_METADATA_HOST", "127.0.0.1:9");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut proc = Proc::spawn(name, cmd);
    proc.port = Some(port);
    proc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_up_to_a_watched_settled_audited_run() {
    let pubsub = reachable(
        "PUBSUB_EMULATOR_HOST",
        "127.0.0.1:8085",
        "the Pub/Sub emulator",
    );
    let storage = reachable(
        "STORAGE_EMULATOR_HOST",
        "http://127.0.0.1",
        "fake-gcs-server",
    );
    let project_id = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..20]);
    let push_secret = uuid::Uuid::new_v4().simple().to_string();
    let internal_secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let db = TestDb::create().await;
    let pem = generate_signing_key_pem();

    let auth = start_auth(
        &db.url_as(AUTH_ROLE),
        &[
            ("AUTH_SIGNING_KEY", &pem),
            ("AUTH_SIGNING_KEY_ID", "e2e-runs"),
            ("PUBSUB_EMULATOR_HOST", &pubsub),
            ("PUBSUB_PROJECT", &project_id),
        ],
    )
    .await;
    let jwks = format!("{}/.well-known/jwks.json", auth.base_url());
    let common = |role: &str| {
        vec![
            ("DATABASE_URL", db.url_as(role)),
            ("AUTH_JWKS_URL", jwks.clone()),
            ("PUSH_SECRET", push_secret.clone()),
            ("PUBSUB_EMULATOR_HOST", pubsub.clone()),
            ("PUBSUB_PROJECT", project_id.clone()),
            ("INTERNAL_AUTH_SECRETS", internal_secret.clone()),
            ("STORAGE_EMULATOR_HOST", storage.clone()),
        ]
    };
    let (quotas_port, runs_port, audit_port) = (free_port(), free_port(), free_port());
    let mut quotas = start("quotas", quotas_port, &common("runwarden_quotas"));
    let mut audit = start("audit", audit_port, &common("runwarden_audit"));
    let mut runs_env = common("runwarden_runs");
    runs_env.push(("QUOTAS_URL", format!("http://127.0.0.1:{quotas_port}")));
    let mut runs = start("runs", runs_port, &runs_env);
    for proc in [&mut quotas, &mut audit, &mut runs] {
        proc.wait_healthy().await;
    }
    let setup = command("pubsub-setup")
        .env("PUBSUB_EMULATOR_HOST", &pubsub)
        .env("PUBSUB_PROJECT", &project_id)
        .env("PUSH_SECRET", &push_secret)
        .env("AUDIT_URL", audit.base_url())
        .env("QUOTAS_URL", quotas.base_url())
        .env("RUNS_URL", runs.base_url())
        .output()
        .expect("running pubsub-setup");
    assert!(
        setup.status.success(),
        "pubsub-setup: {}",
        String::from_utf8_lossy(&setup.stderr)
    );

    let auth_api = Api::new(auth.base_url());
    let runs_api = Api::new(runs.base_url());
    let signup = auth_api.signup(&unique_email("run-path"), PASSWORD).await;
    assert_eq!(signup.status, 200, "{}", signup.text);
    let org = signup.str("org_id");
    let token = signup.str("access_token");

    // Two projects, each with a secret; only the run's project's secret reaches the runner.
    let project = runs_api
        .post(
            &format!("/v1/orgs/{org}/projects"),
            Some(&token),
            &json!({"name": "checkout"}),
        )
        .await;
    assert_eq!(project.status, 201, "{}", project.text);
    let project = project.str("id");
    let other = runs_api
        .post(
            &format!("/v1/orgs/{org}/projects"),
            Some(&token),
            &json!({"name": "other"}),
        )
        .await;
    let other = other.str("id");
    for (p, name, value) in [
        (&project, "SHOP_API_KEY", CANARY),
        (&other, "OTHER_KEY", OTHER_CANARY),
    ] {
        let put = runs_api
            .send(
                reqwest::Method::PUT,
                &format!("/v1/orgs/{org}/projects/{p}/secrets/{name}"),
                Some(&token),
                Some(&json!({"kind": "api_key", "value": value})),
            )
            .await;
        assert_eq!(put.status, 201, "{}", put.text);
        assert!(!put.text.contains(value));
    }

    let started = runs_api
        .post(
            &format!("/v1/orgs/{org}/projects/{project}/runs"),
            Some(&token),
            &json!({"agent": "demo", "input": {"sleep_seconds": 2}, "max_seconds": 120}),
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.text);
    let run = started.str("id");

    // Watch it: a media token for the events, then the SSE stream to its end.
    let media = runs_api
        .post(
            &format!("/v1/orgs/{org}/runs/{run}/media-token"),
            Some(&token),
            &json!({}),
        )
        .await;
    assert_eq!(media.status, 200, "{}", media.text);
    let events_url = media.json["events"]["url"].as_str().unwrap().to_owned();
    let response = runs_api
        .client
        .get(runs_api.url(&events_url))
        .timeout(Duration::from_secs(90))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let stream = response
        .text()
        .await
        .expect("the stream ends when the run ends");
    let data: Vec<Value> = stream
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect();
    let messages: Vec<&str> = data.iter().filter_map(|e| e["message"].as_str()).collect();
    assert!(
        messages.contains(&"secrets: SHOP_API_KEY"),
        "{messages:?}\n--- runs ---\n{}",
        runs.output_tail()
    );
    assert!(
        messages.iter().any(|m| m.starts_with("progress:")),
        "{messages:?}"
    );
    assert_eq!(
        messages.last(),
        Some(&"succeeded"),
        "{messages:?}\n--- runs ---\n{}",
        runs.output_tail()
    );

    // The screenshot, through a fresh artifacts media URL: a redirect to a signed URL.
    let media = runs_api
        .post(
            &format!("/v1/orgs/{org}/runs/{run}/media-token"),
            Some(&token),
            &json!({}),
        )
        .await;
    let shot = media.json["artifacts"]["urls"]["screenshot.png"]
        .as_str()
        .unwrap_or_else(|| panic!("no screenshot: {}", media.text))
        .to_owned();
    let redirect = runs_api.get(&shot, None).await;
    assert_eq!(redirect.status, 302, "{}", redirect.text);
    let signed = redirect.header("location").unwrap().to_owned();
    assert!(signed.contains("X-Goog-Signature="), "{signed}");
    let png = reqwest::get(&signed).await.unwrap().bytes().await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    // Settled in quotas, and the trail in audit (both through Pub/Sub pushes).
    let quotas_api = Api::new(quotas.base_url());
    let audit_api = Api::new(audit.base_url());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let usage = quotas_api
            .get(&format!("/v1/orgs/{org}/usage"), Some(&token))
            .await;
        assert_eq!(usage.status, 200, "{}", usage.text);
        let trail = audit_api
            .get(
                &format!("/v1/orgs/{org}/audit-events?limit=100"),
                Some(&token),
            )
            .await;
        let actions: Vec<String> = trail.json["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|e| e["action"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let settled = usage.json["parallel_runs"] == 0 && usage.json["runs_this_month"] == 1;
        let audited = [
            "project.create",
            "secret.create",
            "run.create",
            "run.start",
            "secret.read_by_runner",
            "run.finish",
        ]
        .iter()
        .all(|a| actions.iter().any(|x| x == a));
        if settled && audited {
            assert_eq!(usage.json["reserved_cents"], 0, "{}", usage.text);
            assert!(
                usage.json["spent_cents"].as_i64().unwrap() >= 1,
                "{}",
                usage.text
            );
            assert!(!trail.text.contains(CANARY));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not settled and audited in 60 s: usage {} actions {actions:?}\n--- runs ---\n{}\n--- quotas ---\n{}",
            usage.text,
            runs.output_tail(),
            quotas.output_tail()
        );
        // Slowly: the trial plan allows 60 requests a minute per org.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }

    // No secret value in any process's output (the runner's goes to runs').
    for proc in [&auth, &quotas, &audit, &runs] {
        let output = format!("{}{}", proc.stdout(), proc.stderr());
        assert!(
            !output.contains(CANARY) && !output.contains(OTHER_CANARY),
            "a secret leaked into a log"
        );
    }
    assert!(!stream.contains(CANARY) && !stream.contains(OTHER_CANARY));
}
