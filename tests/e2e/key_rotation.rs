//! auth's signing key rotates while a verifying function keeps running: the real `auth` and
//! `audit` binaries. auth is restarted for each step of the rotation (as a deploy would),
//! audit never is: it learns the new key from auth's JWKS at the first token signed by it,
//! keeps accepting the old key's tokens while auth still publishes it, and refuses them
//! once it is retired. A forged `kid` stays 401 throughout.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use runwarden_e2e::{
    AUTH_ROLE, Api, PASSWORD, Proc, TestDb, auth_command, command, free_port,
    generate_signing_key_pem, unique_email,
};
use serde_json::{Value, json};

const AUDIT_ROLE: &str = "runwarden_audit";
/// audit's least time between two refetches caused by unknown `kid`s, in this test.
const MIN_REFETCH: Duration = Duration::from_secs(1);

async fn start_auth_on(port: u16, db: &TestDb, keys: &[(&str, &str)]) -> Proc {
    let mut auth = Proc::spawn("auth", auth_command(&db.url_as(AUTH_ROLE), port, keys));
    auth.port = Some(port);
    auth.wait_healthy().await;
    auth
}

async fn stop(mut proc: Proc) {
    proc.terminate();
    assert!(
        proc.wait_exit(Duration::from_secs(30)).await.is_some(),
        "{} did not stop",
        proc.name()
    );
}

fn kid_of(token: &str) -> String {
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

/// `token` with its header's `kid` replaced: a key nobody publishes.
fn with_kid(token: &str, kid: &str) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[0]).unwrap()).unwrap();
    header["kid"] = json!(kid);
    parts[0] = URL_SAFE_NO_PAD.encode(header.to_string());
    parts.join(".")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_key_rotates_without_downtime_then_retires() {
    let db = TestDb::create().await;
    let (pem_a, pem_b) = (generate_signing_key_pem(), generate_signing_key_pem());
    let auth_port = free_port();
    let auth = start_auth_on(
        auth_port,
        &db,
        &[
            ("AUTH_SIGNING_KEY", &pem_a),
            ("AUTH_SIGNING_KEY_ID", "e2e-a"),
        ],
    )
    .await;
    let auth_api = Api::new(auth.base_url());

    let audit_port = free_port();
    let mut cmd = command("audit");
    cmd.env("RUNWARDEN_ENV", "development")
        .env("PORT", audit_port.to_string())
        .env("DATABASE_URL", db.url_as(AUDIT_ROLE))
        .env(
            "AUTH_JWKS_URL",
            format!("{}/.well-known/jwks.json", auth.base_url()),
        )
        .env(
            "AUTH_JWKS_MIN_REFETCH_SECS",
            MIN_REFETCH.as_secs().to_string(),
        )
        // Only unknown kids refetch here, so each step below is deterministic.
        .env("AUTH_JWKS_MAX_AGE_SECS", "3600")
        .env("PUSH_SECRET", uuid::Uuid::new_v4().simple().to_string())
        .env("RUST_LOG", "info");
    let mut audit = Proc::spawn("audit", cmd);
    audit.port = Some(audit_port);
    audit.wait_healthy().await;
    let audit_api = Api::new(audit.base_url());

    let email = unique_email("rotation");
    // Sign-up, then the mailed verification link: its 200 carries the first tokens.
    let signup = auth_api.signup(&email, PASSWORD).await;
    assert_eq!(signup.status, 200, "{}", signup.text);
    let org = signup.str("org_id");
    let events = format!("/v1/orgs/{org}/audit-events");
    let token_a = signup.str("access_token");
    assert_eq!(kid_of(&token_a), "e2e-a");
    let reply = audit_api.get(&events, Some(&token_a)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    // Promote: auth restarts signing with B and still publishing A (its public JWK, as
    // copied from the JWKS before the deploy). audit is not restarted.
    let jwks = auth_api.get("/.well-known/jwks.json", None).await.json;
    let previous = json!({"keys": jwks["keys"]}).to_string();
    stop(auth).await;
    tokio::time::sleep(MIN_REFETCH).await;
    let auth = start_auth_on(
        auth_port,
        &db,
        &[
            ("AUTH_SIGNING_KEY", &pem_b),
            ("AUTH_SIGNING_KEY_ID", "e2e-b"),
            ("AUTH_PREVIOUS_JWKS", &previous),
        ],
    )
    .await;
    let login = auth_api.login(&email, PASSWORD).await;
    assert_eq!(login.status, 200, "{}", login.text);
    let token_b = login.str("access_token");
    assert_eq!(kid_of(&token_b), "e2e-b", "the new key signs");
    let reply = audit_api.get(&events, Some(&token_b)).await;
    assert_eq!(
        reply.status, 200,
        "a new key is learnt on its first token: {}",
        reply.text
    );
    let reply = audit_api.get(&events, Some(&token_a)).await;
    assert_eq!(
        reply.status, 200,
        "the old key's tokens still verify: {}",
        reply.text
    );
    assert_eq!(auth_api.get("/v1/me", Some(&token_a)).await.status, 200);
    let forged = with_kid(&token_b, "e2e-forged");
    assert_eq!(audit_api.get(&events, Some(&forged)).await.status, 401);

    // Retire: auth restarts publishing B alone. audit drops A at its next fetch (here the
    // one a forged kid causes once the interval has passed); then A's tokens are refused.
    stop(auth).await;
    let auth = start_auth_on(
        auth_port,
        &db,
        &[
            ("AUTH_SIGNING_KEY", &pem_b),
            ("AUTH_SIGNING_KEY_ID", "e2e-b"),
        ],
    )
    .await;
    assert_eq!(auth_api.get("/v1/me", Some(&token_a)).await.status, 401);
    tokio::time::sleep(MIN_REFETCH + Duration::from_millis(200)).await;
    assert_eq!(audit_api.get(&events, Some(&forged)).await.status, 401);
    let reply = audit_api.get(&events, Some(&token_a)).await;
    assert_eq!(
        reply.status, 401,
        "the retired key is refused: {}",
        reply.text
    );
    let reply = audit_api.get(&events, Some(&token_b)).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    for proc in [auth, audit] {
        stop(proc).await;
    }
}
