//! Production push authentication (INT-05), offline: the app verifies Google-style RS256 ID
//! tokens against a JWKS served by the test. Only a token for the configured audience from
//! the configured push service account (verified email) appends; everything else is 401 and
//! writes nothing; unreachable keys are 503. 200 concurrent pushes on a cold key cache all
//! succeed.

use std::time::Duration;

use futures::future::join_all;
use reqwest::StatusCode;
use runwarden_events::push::PushAuth;
use runwarden_tenancy::{OrgId, Role};
use runwarden_testkit::oidc::{self, FakeGoogle, RsaKey, b64};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{PUSH_PATH, PUSH_SECRET, TestApp, event, event_envelope, spawn_app_with};

const AUDIENCE: &str = "https://audit-abc123-tl.a.run.app/push/audit-events";
const PUSH_SA: &str = "pubsub-push@runwarden-prod.iam.gserviceaccount.com";

fn now() -> i64 {
    oidc::unix_now()
}

/// What Pub/Sub's push token carries (Google's documented example shape).
fn push_claims() -> Value {
    oidc::push_claims(AUDIENCE, PUSH_SA)
}

fn patched(patch: Value) -> Value {
    oidc::with(push_claims(), patch)
}

/// Google's key set, slow enough that a burst of pushes all arrive while the first fetch
/// runs.
async fn serve_jwks(keys: &[&RsaKey]) -> FakeGoogle {
    let google = FakeGoogle::with_keys(keys).await;
    google.jwks().set_delay(Duration::from_millis(200));
    google
}

async fn spawn_oidc_app(options: PgConnectOptions, google: &FakeGoogle) -> TestApp {
    let auth = PushAuth::google_oidc(Some(google.jwks_url().as_str()), AUDIENCE, PUSH_SA).unwrap();
    spawn_app_with(options, auth).await
}

async fn push_with(app: &TestApp, bearer: Option<&str>, org: OrgId) -> (StatusCode, String) {
    app.post_json(
        &app.url(PUSH_PATH),
        bearer,
        &event_envelope(&event(org, "org.update")),
    )
    .await
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn only_the_push_service_accounts_token_for_our_audience_appends(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let key = RsaKey::generate("google-key-1");
    let jwks = serve_jwks(&[&key]).await;
    let app = spawn_oidc_app(options, &jwks).await;
    let org = app.org().await;
    let admin = app.member(org, Role::Admin).await;

    let (status, body) = push_with(&app, Some(&key.token(&push_claims())), org).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(app.seqs(org).await.len(), 1);

    let impostor = RsaKey::generate("google-key-1");
    let t = now();
    let hs256 = {
        let header = b64(br#"{"alg":"HS256","kid":"google-key-1","typ":"JWT"}"#);
        let payload = b64(&serde_json::to_vec(&push_claims()).unwrap());
        let input = format!("{header}.{payload}");
        let mac_key = aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            key.jwk()["n"].as_str().unwrap().as_bytes(),
        );
        let tag = aws_lc_rs::hmac::sign(&mac_key, input.as_bytes());
        format!("{input}.{}", b64(tag.as_ref()))
    };
    let alg_none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","kid":"google-key-1"}"#),
        b64(&serde_json::to_vec(&push_claims()).unwrap())
    );
    let refused: Vec<(&str, Option<String>)> = vec![
        ("no token", None),
        (
            "wrong audience",
            Some(key.token(&patched(
                json!({"aud": "https://other-service.a.run.app/push"}),
            ))),
        ),
        (
            "audience of the push URL with another path",
            Some(key.token(&patched(json!({"aud": format!("{AUDIENCE}/x")})))),
        ),
        (
            "wrong service account",
            Some(key.token(&patched(
                json!({"email": "attacker@evil-project.iam.gserviceaccount.com"}),
            ))),
        ),
        (
            "unverified email",
            Some(key.token(&patched(json!({"email_verified": false})))),
        ),
        (
            "wrong issuer",
            Some(key.token(&patched(json!({"iss": "https://evil.example"})))),
        ),
        (
            "expired",
            Some(key.token(&patched(json!({"exp": t - 120, "iat": t - 3720})))),
        ),
        ("wrong key, same kid", Some(impostor.token(&push_claims()))),
        ("alg none", Some(alg_none)),
        ("HS256 with the public key", Some(hs256)),
        ("not a JWT", Some("not-a-jwt".into())),
        // The local shared secret means nothing in OIDC mode.
        ("the local secret as bearer", Some(PUSH_SECRET.into())),
    ];
    for (what, token) in refused {
        let (status, body) = push_with(&app, token.as_deref(), org).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
    }
    let (status, _) = app
        .post_json(
            &app.url(&format!("{PUSH_PATH}?token={PUSH_SECRET}")),
            None,
            &event_envelope(&event(org, "org.update")),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the secret in the query");
    assert_eq!(app.seqs(org).await.len(), 1, "nothing else was written");
    assert_eq!(app.verify(org, &admin.token).await["ok"], true);
    assert_eq!(jwks.jwks_fetches(), 1);
}

/// 200 pushes at once on a cold key cache (the JWKS answers after 200 ms, so all of them
/// wait on the one fetch): all 204, 200 records in valid chains, one JWKS fetch.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn two_hundred_concurrent_oidc_pushes_all_succeed(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let key = RsaKey::generate("google-key-1");
    let jwks = serve_jwks(&[&key]).await;
    let app = spawn_oidc_app(options, &jwks).await;
    let mut orgs = Vec::new();
    for _ in 0..8 {
        let org = app.org().await;
        orgs.push((org, app.member(org, Role::Admin).await));
    }
    let token = key.token(&push_claims());
    let statuses =
        join_all((0..200).map(|i| push_with(&app, Some(&token), orgs[i % orgs.len()].0))).await;
    let failed: Vec<_> = statuses
        .iter()
        .filter(|(s, _)| *s != StatusCode::NO_CONTENT)
        .collect();
    assert!(
        failed.is_empty(),
        "{} failed, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    assert_eq!(app.count().await, 200);
    for (org, admin) in &orgs {
        let verdict = app.verify(*org, &admin.token).await;
        assert_eq!(
            (&verdict["ok"], &verdict["count"]),
            (&true.into(), &25.into())
        );
    }
    assert_eq!(jwks.jwks_fetches(), 1);

    // Warm: 200 more, no further fetch.
    let statuses =
        join_all((0..200).map(|i| push_with(&app, Some(&token), orgs[i % orgs.len()].0))).await;
    assert!(statuses.iter().all(|(s, _)| *s == StatusCode::NO_CONTENT));
    assert_eq!(app.count().await, 400);
    assert_eq!(jwks.jwks_fetches(), 1);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn unreachable_google_keys_are_503_and_write_nothing(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let key = RsaKey::generate("google-key-1");
    let jwks = serve_jwks(&[&key]).await;
    jwks.jwks().set_failing(true);
    let app = spawn_oidc_app(options, &jwks).await;
    let org = app.org().await;
    let (status, body) = push_with(&app, Some(&key.token(&push_claims())), org).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(body.contains("unavailable"));
    // A token that is invalid on its face is still 401, keys or not.
    let (status, _) = push_with(&app, Some("garbage"), org).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.count().await, 0);
}
