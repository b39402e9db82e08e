//! The whole audit path with real parts: auth commits a change and its event in one
//! transaction, auth's outbox relay publishes it to Google's Pub/Sub emulator, the emulator
//! pushes it to audit (authenticated by the per-stack secret in the push URL), audit appends
//! it to the org's hash chain, and auth's token reads it back through audit's API. The export
//! passes the offline verifier.

use std::time::{Duration, Instant};

use runwarden_e2e::{
    AUTH_ROLE, Api, PASSWORD, Proc, TestDb, command, free_port, generate_signing_key_pem,
    start_auth, unique_email,
};
use serde_json::{Value, json};

const AUDIT_ROLE: &str = "runwarden_audit";

fn emulator_host() -> String {
    let host = std::env::var("PUBSUB_EMULATOR_HOST").unwrap_or_else(|_| "127.0.0.1:8085".into());
    assert!(
        std::net::TcpStream::connect(&host).is_ok(),
        "the Pub/Sub emulator is not reachable at {host}: scripts/test starts it \
         (package google-cloud-cli-pubsub-emulator)"
    );
    host
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_mutations_reach_the_audit_log_through_the_pubsub_emulator() {
    let emulator = emulator_host();
    // A project of its own on the shared emulator: nothing else publishes or pushes here.
    let project = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..20]);
    let push_secret = uuid::Uuid::new_v4().simple().to_string();
    let db = TestDb::create().await;
    let pem = generate_signing_key_pem();

    let auth = start_auth(
        &db.url_as(AUTH_ROLE),
        &[
            ("AUTH_SIGNING_KEY", &pem),
            ("AUTH_SIGNING_KEY_ID", "e2e-audit"),
            ("PUBSUB_EMULATOR_HOST", &emulator),
            ("PUBSUB_PROJECT", &project),
        ],
    )
    .await;

    let audit_port = free_port();
    let mut cmd = command("audit");
    cmd.env("RUNWARDEN_ENV", "development")
        .env("PORT", audit_port.to_string())
        .env("DATABASE_URL", db.url_as(AUDIT_ROLE))
        .env(
            "AUTH_JWKS_URL",
            format!("{}/.well-known/jwks.json", auth.base_url()),
        )
        .env("PUSH_SECRET", &push_secret)
        .env("RUST_LOG", "info");
    let mut audit = Proc::spawn("audit", cmd);
    audit.port = Some(audit_port);
    audit.wait_healthy().await;

    let setup = command("pubsub-setup")
        .env("PUBSUB_EMULATOR_HOST", &emulator)
        .env("PUBSUB_PROJECT", &project)
        .env("PUSH_SECRET", &push_secret)
        .env("AUDIT_URL", audit.base_url())
        .output()
        .expect("running pubsub-setup");
    assert!(
        setup.status.success(),
        "pubsub-setup: {}",
        String::from_utf8_lossy(&setup.stderr)
    );

    // Three mutations through auth.
    let api = Api::new(auth.base_url());
    let signup = api.signup(&unique_email("pipeline"), PASSWORD).await;
    assert_eq!(signup.status, 200, "{}", signup.text);
    let org = signup.str("org_id");
    let user = signup.str("user_id");
    let token = signup.str("access_token");
    let renamed = api
        .send(
            reqwest::Method::PATCH,
            &format!("/v1/orgs/{org}"),
            Some(&token),
            Some(&json!({"name": "Audited"})),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.text);
    let invited = api
        .post(
            &format!("/v1/orgs/{org}/invitations"),
            Some(&token),
            &json!({"email": unique_email("x"), "role": "viewer"}),
        )
        .await;
    assert_eq!(invited.status, 201, "{}", invited.text);

    // They arrive in audit, read with the same access token.
    let audit_api = Api::new(audit.base_url());
    let deadline = Instant::now() + Duration::from_secs(30);
    let items: Vec<Value> = loop {
        let page = audit_api
            .get(&format!("/v1/orgs/{org}/audit-events"), Some(&token))
            .await;
        assert_eq!(page.status, 200, "{}", page.text);
        let items = page.json["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= 4 {
            break items;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of 4 events reached audit in 30 s\n--- auth ---\n{}\n--- audit ---\n{}",
            items.len(),
            auth.output_tail(),
            audit.output_tail()
        );
        // Once a second: the org is on trial, whose plan allows 60 requests a minute.
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    // The verification (org.create and user.email_verified), then one per mutation.
    assert_eq!(items.len(), 4, "exactly one record per mutation: {items:?}");
    let mut actions: Vec<&str> = items
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    actions.sort_unstable();
    assert_eq!(
        actions,
        [
            "invitation.create",
            "org.create",
            "org.update",
            "user.email_verified"
        ]
    );
    assert!(
        items
            .iter()
            .all(|e| e["actor"]["id"] == user.as_str() && e["org_id"] == org.as_str())
    );

    let verify = audit_api
        .get(&format!("/v1/orgs/{org}/audit-events/verify"), Some(&token))
        .await;
    assert_eq!(verify.status, 200, "{}", verify.text);
    assert_eq!(verify.json["ok"], true);
    assert_eq!(verify.json["count"], 4);

    // The export verifies offline with the standalone verifier.
    let export = audit_api
        .get(&format!("/v1/orgs/{org}/audit-events/export"), Some(&token))
        .await;
    assert_eq!(export.status, 200);
    assert_eq!(export.text.lines().count(), 4);
    let file = std::env::temp_dir().join(format!(
        "audit-export-{}.ndjson",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&file, &export.text).unwrap();
    let offline = command("audit-verify")
        .arg(&file)
        .output()
        .expect("running audit-verify");
    let _ = std::fs::remove_file(&file);
    assert!(
        offline.status.success(),
        "audit-verify: {}",
        String::from_utf8_lossy(&offline.stdout)
    );
    let verdict: Value = serde_json::from_slice(&offline.stdout).expect("audit-verify prints JSON");
    assert_eq!(verdict["head"], verify.json["head"]);
}
