//! Refresh rotation, reuse detection, logout, revocation, and token confusion over HTTP.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use runwarden_tokens::{AccessClaims, MediaClaims, TokenKind};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{Session, TestApp, spawn_app};

async fn refresh(app: &TestApp, token: &str) -> (StatusCode, Value) {
    app.post("/v1/auth/refresh", None, json!({"refresh_token": token}))
        .await
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn ses01_refresh_rotates_and_reuse_revokes_the_family(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let s = app.signup("rotate").await;
    let (status, r2) = refresh(&app, &s.refresh).await;
    assert_eq!(status, StatusCode::OK, "{r2}");
    let r2_refresh = r2["refresh_token"].as_str().unwrap();
    let r2_access = r2["access_token"].as_str().unwrap();
    assert_ne!(r2_refresh, s.refresh);
    assert_eq!(r2["expires_in"], 3600);
    assert!(r2["refresh_expires_in"].as_i64().unwrap() <= 86400);

    // Replaying R1: 401, and R2 and its access token die with the family.
    let (status, body) = refresh(&app, &s.refresh).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unauthenticated"))
    );
    assert_eq!(refresh(&app, r2_refresh).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.get("/v1/me", r2_access).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/v1/me", &s.access).await.0,
        StatusCode::UNAUTHORIZED
    );
    let reason: String =
        sqlx::query_scalar("SELECT revoked_reason FROM sessions WHERE user_id = $1::uuid")
            .bind(&s.user_id)
            .fetch_one(&app.admin)
            .await
            .unwrap();
    assert_eq!(reason, "refresh_reuse");
    // Other sessions of the same user are untouched.
    let (status, _) = app.login(&s.email, crate::helpers::PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn refresh_tokens_are_stored_hashed(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let s = app.signup("hashed").await;
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT token_hash FROM refresh_tokens")
        .fetch_all(&app.admin)
        .await
        .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].len(), 32);
    assert!(
        !stored[0]
            .windows(s.refresh.len())
            .any(|w| w == s.refresh.as_bytes())
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn ses02_concurrent_refreshes_of_one_token_exactly_one_succeeds(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let s = app.signup("race").await;
    for n in [2usize, 20] {
        let (_, fresh) = app.login(&s.email, crate::helpers::PASSWORD).await;
        let token = fresh["refresh_token"].as_str().unwrap().to_owned();
        let results = futures::future::join_all((0..n).map(|_| refresh(&app, &token))).await;
        let ok: Vec<&Value> = results
            .iter()
            .filter(|(s, _)| *s == StatusCode::OK)
            .map(|(_, b)| b)
            .collect();
        assert_eq!(ok.len(), 1, "{n} concurrent refreshes");
        assert!(
            results
                .iter()
                .all(|(s, _)| *s == StatusCode::OK || *s == StatusCode::UNAUTHORIZED)
        );
    }
    let _ = s;
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn ses03_rotation_never_extends_the_24_hour_session(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let s = app.signup("absolute").await;
    // Pretend the sign-in happened 23 hours ago.
    sqlx::query("UPDATE sessions SET created_at = now() - interval '23 hours', expires_at = now() + interval '1 hour'")
        .execute(&app.admin)
        .await
        .unwrap();
    let (status, r2) = refresh(&app, &s.refresh).await;
    assert_eq!(status, StatusCode::OK);
    let left = r2["refresh_expires_in"].as_i64().unwrap();
    assert!((3590..=3600).contains(&left), "{left}");
    // Past the absolute limit: refused, and the access token dies with the session.
    sqlx::query("UPDATE sessions SET expires_at = now() - interval '1 second'")
        .execute(&app.admin)
        .await
        .unwrap();
    assert_eq!(
        refresh(&app, r2["refresh_token"].as_str().unwrap()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/v1/me", r2["access_token"].as_str().unwrap())
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn ses04_logout_kills_the_access_token_and_the_refresh_family(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let s = app.signup("logout").await;
    let (_, r2) = refresh(&app, &s.refresh).await;
    let access = r2["access_token"].as_str().unwrap();
    assert_eq!(app.get("/v1/me", access).await.0, StatusCode::OK);
    let (status, _) = app
        .call(reqwest::Method::POST, "/v1/auth/logout", Some(access), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/v1/me", access).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refresh(&app, r2["refresh_token"].as_str().unwrap()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.call(reqwest::Method::POST, "/v1/auth/logout", Some(access), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Signs arbitrary header and claims with the app's own Ed25519 key.
fn forge(app: &TestApp, header: Value, claims: Value) -> String {
    use aws_lc_rs::signature::Ed25519KeyPair;
    let pair = Ed25519KeyPair::from_pkcs8(&app.signing_key_der).unwrap();
    let input = format!("{}.{}", b64(&header), b64(&claims));
    let sig = pair.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

fn claims_for(s: &Session, app_session: &str) -> Value {
    serde_json::to_value(AccessClaims::new(&s.user_id, app_session, now())).unwrap()
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn token_confusion_and_tampering_are_all_401(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let s = app.signup("confused").await;
    let sid: String = sqlx::query_scalar("SELECT id::text FROM sessions WHERE user_id = $1::uuid")
        .bind(&s.user_id)
        .fetch_one(&app.admin)
        .await
        .unwrap();
    let good_header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "test-key"});
    // Control: a forged-by-us token with the real key and the live session is accepted,
    // so each rejection below is caused by the one thing it changes.
    let control = forge(&app, good_header.clone(), claims_for(&s, &sid));
    assert_eq!(app.get("/v1/me", &control).await.0, StatusCode::OK);

    let mut cases: Vec<(&str, String)> = vec![("refresh token as access token", s.refresh.clone())];

    let mut expired = claims_for(&s, &sid);
    expired["iat"] = json!(now() - 7200);
    expired["exp"] = json!(now() - 3600);
    cases.push(("expired", forge(&app, good_header.clone(), expired)));

    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "at+jwt", "kid": "test-key"})),
        b64(&claims_for(&s, &sid))
    );
    cases.push(("alg none", none));

    let jwks: Value = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let public_x = jwks["keys"][0]["x"].as_str().unwrap().to_owned();
    let hs_input = format!(
        "{}.{}",
        b64(&json!({"alg": "HS256", "typ": "at+jwt", "kid": "test-key"})),
        b64(&claims_for(&s, &sid))
    );
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, public_x.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&key, hs_input.as_bytes());
    cases.push((
        "HS256 with the public key",
        format!("{hs_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref())),
    ));

    let mut wrong_aud = claims_for(&s, &sid);
    wrong_aud["aud"] = json!(MediaClaims::AUDIENCE);
    cases.push(("wrong aud", forge(&app, good_header.clone(), wrong_aud)));

    let media_typ = json!({"alg": "EdDSA", "typ": MediaClaims::TYP, "kid": "test-key"});
    cases.push(("wrong typ", forge(&app, media_typ, claims_for(&s, &sid))));

    let mut bad_sig = control.clone();
    bad_sig.replace_range(bad_sig.len() - 6.., "AAAAAA");
    cases.push(("bad signature", bad_sig));

    let unknown_kid = json!({"alg": "EdDSA", "typ": AccessClaims::TYP, "kid": "other-key"});
    cases.push((
        "unknown kid",
        forge(&app, unknown_kid, claims_for(&s, &sid)),
    ));

    let mut other_user = claims_for(&s, &sid);
    other_user["sub"] = json!(uuid::Uuid::now_v7().to_string());
    cases.push((
        "session of another user",
        forge(&app, good_header.clone(), other_user),
    ));

    for (name, token) in cases {
        for path in ["/v1/me", &format!("/v1/orgs/{}", s.org_id)] {
            let (status, body) = app.get(path, &token).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{name} on {path}: {body}");
            assert_eq!(body["code"], "unauthenticated", "{name}");
        }
    }
    // An access token posted as a refresh token issues nothing.
    let (status, _) = refresh(&app, &s.access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // No Authorization header, or another scheme.
    let (status, _) = app.call(reqwest::Method::GET, "/v1/me", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let response = app
        .client
        .get(app.url("/v1/me"))
        .header("authorization", format!("Basic {}", s.access))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn jwks_publishes_the_verifying_key(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let s = app.signup("jwks").await;
    // How every other function learns auth's public key.
    let verifier =
        runwarden_tokens::fetch_verifier(&app.client, &app.url("/.well-known/jwks.json"))
            .await
            .unwrap();
    let claims: AccessClaims = verifier.verify(&s.access).unwrap();
    assert_eq!(claims.sub, s.user_id);
    assert_eq!(
        claims.exp - claims.iat,
        AccessClaims::LIFETIME.as_secs() as i64
    );
    let raw: Value = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(raw["keys"][0].get("d").is_none(), "no private part");
}
