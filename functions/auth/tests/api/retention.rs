//! The scheduler's daily retention purge (`POST /internal/tasks/retention-purge`): removes
//! what has outlived any use, keeps everything still live, and answers only a caller
//! authenticated like a push.

use reqwest::StatusCode;
use runwarden_auth::{AppState, router_with_tasks};
use runwarden_events::push::PushAuth;
use runwarden_platform::request::TrustedProxyHops;
use runwarden_platform::server::{Limits, serve};
use runwarden_tokens::TokenSigner;
use secrecy::SecretString;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

const SECRET: &str = "retention-test-secret-0123456789";

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn retention_purge_removes_only_what_outlived_any_use(
    admin: PgPoolOptions,
    options: PgConnectOptions,
) {
    let admin = admin.connect_with(options.clone()).await.unwrap();
    let runtime = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(options.username(runwarden_store::roles::AUTH))
        .await
        .unwrap();
    let user = Uuid::now_v7();
    sqlx::query("INSERT INTO users (id, email) VALUES ($1, 'old@example.com')")
        .bind(user)
        .execute(&admin)
        .await
        .unwrap();
    let (old_session, live_session) = (Uuid::now_v7(), Uuid::now_v7());
    for (id, expires) in [
        (old_session, "now() - interval '31 days'"),
        (live_session, "now() + interval '1 day'"),
    ] {
        sqlx::query(&format!(
            "INSERT INTO sessions (id, user_id, expires_at) VALUES ($1, $2, {expires})"
        ))
        .bind(id)
        .bind(user)
        .execute(&admin)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO oidc_login_flows (state_hash, browser_binding_hash, nonce, code_verifier, expires_at)
         VALUES ('\\x01', '\\x01', 'n', 'v', now() - interval '2 days'),
                ('\\x02', '\\x02', 'n', 'v', now() + interval '5 minutes')",
    )
    .execute(&admin)
    .await
    .unwrap();

    let limits = Limits::default();
    let app = router_with_tasks(
        AppState::new(runtime, TokenSigner::generate("k"), 1, None),
        Some(PushAuth::shared_secret(SecretString::from(SECRET)).unwrap()),
        TrustedProxyHops(0),
        &limits,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { serve(listener, app, &limits, std::future::pending()).await });
    let client = reqwest::Client::new();
    let purge = |query: &'static str| {
        let (client, base) = (&client, &base);
        async move {
            let r = client
                .post(format!("{base}/internal/tasks/retention-purge{query}"))
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap_or_default())
        }
    };
    assert_eq!(purge("").await.0, StatusCode::UNAUTHORIZED);
    let (status, report) = purge("?token=retention-test-secret-0123456789").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        (
            report["sessions"].as_i64(),
            report["oidc_login_flows"].as_i64()
        ),
        (Some(1), Some(1)),
        "{report}"
    );
    let sessions: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM sessions")
        .fetch_all(&admin)
        .await
        .unwrap();
    assert_eq!(sessions, [live_session]);
    let flows: Vec<Vec<u8>> = sqlx::query_scalar("SELECT state_hash FROM oidc_login_flows")
        .fetch_all(&admin)
        .await
        .unwrap();
    assert_eq!(flows, [vec![2u8]], "the live sign-in flow stays");
    // Nothing left to remove.
    let (_, report) = purge("?token=retention-test-secret-0123456789").await;
    assert_eq!(report["sessions"], 0);
}
