//! Start-up configuration: production refuses to start without its signing key and key id
//! (and says which variable is missing); development starts without a key.

use std::time::Duration;

use runwarden_e2e::{
    AUTH_ROLE, Api, TestDb, command, free_port, generate_signing_key_pem, start_auth,
};

/// Runs auth with exactly `env` and expects a configuration error naming `variable`.
async fn refuses_to_start(env: &[(&str, &str)], variable: &str) {
    let mut cmd = command("auth");
    cmd.env("PORT", free_port().to_string());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut auth = runwarden_e2e::Proc::spawn("auth", cmd);
    let status = auth
        .wait_exit(Duration::from_secs(5))
        .await
        .unwrap_or_else(|| {
            panic!("auth with {env:?} was still running after 5 s; it must refuse to start")
        });
    let stderr = auth.stderr();
    assert!(
        !status.success(),
        "auth with {env:?} exited successfully; stderr: {stderr}"
    );
    assert_eq!(
        status.code(),
        Some(2),
        "configuration errors exit with 2; stderr: {stderr}"
    );
    assert!(
        names_missing(&stderr, variable),
        "stderr should say `missing required environment variable {variable}`, got: {stderr}"
    );
}

/// True when `stderr` reports `variable` itself missing (not merely a longer name that
/// starts with it: AUTH_SIGNING_KEY is a prefix of AUTH_SIGNING_KEY_ID).
fn names_missing(stderr: &str, variable: &str) -> bool {
    let needle = format!("missing required environment variable {variable}");
    stderr.match_indices(&needle).any(|(at, _)| {
        stderr[at + needle.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'))
    })
}

#[tokio::test]
async fn production_refuses_to_start_without_its_signing_key() {
    let db = TestDb::create().await;
    let url = db.url_as(AUTH_ROLE);
    let pem = generate_signing_key_pem();

    refuses_to_start(
        &[("RUNWARDEN_ENV", "production"), ("DATABASE_URL", &url)],
        "AUTH_SIGNING_KEY",
    )
    .await;
    refuses_to_start(
        &[
            ("RUNWARDEN_ENV", "production"),
            ("DATABASE_URL", &url),
            ("AUTH_SIGNING_KEY", &pem),
        ],
        "AUTH_SIGNING_KEY_ID",
    )
    .await;
    // An empty key is as good as none.
    refuses_to_start(
        &[
            ("RUNWARDEN_ENV", "production"),
            ("DATABASE_URL", &url),
            ("AUTH_SIGNING_KEY", ""),
        ],
        "AUTH_SIGNING_KEY",
    )
    .await;
    // Nothing but production: the first missing variable is named.
    refuses_to_start(&[("RUNWARDEN_ENV", "production")], "AUTH_SIGNING_KEY").await;
    // Nothing at all (development by default): the database URL is still required.
    refuses_to_start(&[], "DATABASE_URL").await;
}

#[tokio::test]
async fn production_with_key_and_development_without_key_both_start() {
    let db = TestDb::create().await;
    let url = db.url_as(AUTH_ROLE);

    // wait_healthy panics (with auth's output) unless /healthz answers 200.
    let dev = start_auth(&url, &[("RUNWARDEN_ENV", "development")]).await;
    let reply = Api::new(dev.base_url()).get("/healthz", None).await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    drop(dev);

    let pem = generate_signing_key_pem();
    let prod = start_auth(
        &url,
        &[
            ("RUNWARDEN_ENV", "production"),
            // The scheduler's tasks are authenticated like pushes (no network: a dead JWKS URL).
            ("PUSH_AUDIENCE", "https://auth.example/internal/tasks"),
            (
                "PUSH_SERVICE_ACCOUNT",
                "push@example.iam.gserviceaccount.com",
            ),
            ("GOOGLE_OIDC_JWKS_URL", "http://127.0.0.1:9/certs"),
            ("AUTH_SIGNING_KEY", &pem),
            ("AUTH_SIGNING_KEY_ID", "e2e-1"),
            // Production requires the mail settings (SMTP_URL: the local sink).
            ("MAIL_FROM", "Runwarden e2e <no-reply@runwarden.localhost>"),
            ("PUBLIC_APP_URL", "https://app.example"),
        ],
    )
    .await;
    let reply = Api::new(prod.base_url())
        .get("/.well-known/jwks.json", None)
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.json["keys"][0]["kid"], "e2e-1", "{}", reply.text);
}
