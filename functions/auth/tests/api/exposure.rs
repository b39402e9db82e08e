//! AZ-08 (no internal or secret field in any response) and AZ-10 (fail closed).

use reqwest::StatusCode;
use runwarden_auth::AppState;
use runwarden_platform::request::TrustedProxyHops;
use runwarden_platform::server::{Limits, serve};
use runwarden_tokens::{AccessClaims, TokenSigner};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{PASSWORD, Team, generate_key_der, spawn_app};

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn az08_responses_never_carry_hashes_or_internal_fields(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let team = Team::new(&app, "x").await;
    let org = team.org();
    let mut bodies = vec![
        app.get("/v1/me", &team.owner.access).await.1,
        app.get(&format!("/v1/orgs/{org}"), &team.owner.access)
            .await
            .1,
        app.get(&format!("/v1/orgs/{org}/members"), &team.owner.access)
            .await
            .1,
        app.login(&team.owner.email, PASSWORD).await.1,
    ];
    bodies.push(
        app.post(
            &format!("/v1/orgs/{org}/invitations"),
            Some(&team.owner.access),
            json!({"email": "n@example.com", "role": "viewer"}),
        )
        .await
        .1,
    );
    for body in bodies {
        let text = body.to_string();
        for forbidden in [
            "password",
            "$argon2",
            "token_hash",
            "hash",
            "revoked",
            "code_verifier",
        ] {
            assert!(!text.contains(forbidden), "{forbidden} in {text}");
        }
    }
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn az10_database_outage_fails_closed_with_503(_: PgPoolOptions, options: PgConnectOptions) {
    // A pool that cannot reach any database, behind a signer whose tokens are valid.
    let dead = PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(300))
        .connect_lazy_with(options.port(1));
    let der = generate_key_der();
    let signer = TokenSigner::from_pkcs8_der("k", &der).unwrap();
    let token = signer
        .sign(&AccessClaims::new(
            uuid::Uuid::now_v7(),
            uuid::Uuid::now_v7(),
            chrono::Utc::now().timestamp(),
        ))
        .unwrap();
    let limits = Limits::default();
    let router = runwarden_auth::router(
        AppState::new(dead, signer, 1, None),
        TrustedProxyHops(0),
        &limits,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { serve(listener, router, &limits, std::future::pending()).await });
    let client = reqwest::Client::new();
    for path in ["/v1/me", &format!("/v1/orgs/{}", uuid::Uuid::now_v7())] {
        let r = client
            .get(format!("{base}{path}"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert!(r.headers().contains_key("retry-after"));
    }
    let r = client
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"email": "a@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
}
