//! Email ownership (issue 10): sign-up proves nothing until the mailed link is followed;
//! pre-registration takes nothing over (attack 1); sign-up tells nothing about who has an
//! address (attack 5, AUTH-07); verification tokens are single use, expire and are hashed
//! at rest; unverified accounts cannot sign in, create or join orgs; sign-up and mail are
//! limited (API6-01).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{PASSWORD, TestApp, spawn_app, unique_email};

async fn signup_raw(
    app: &TestApp,
    email: &str,
    password: &str,
) -> (StatusCode, Vec<(String, String)>, String) {
    let (status, headers, body) = app
        .call_raw(
            Method::POST,
            "/v1/auth/signup",
            None,
            Some(json!({"email": email, "password": password})),
        )
        .await;
    // Everything but what differs per request by design (its id and time).
    let mut kept: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "x-request-id" | "date" | "traceparent"))
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    kept.sort();
    (status, kept, body)
}

async fn forget_signup_ip(app: &TestApp) {
    sqlx::query("DELETE FROM rate_limits WHERE key LIKE 'signup:ip:%'")
        .execute(&app.admin)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn auth07_signup_answers_alike_for_free_unverified_and_verified_addresses(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let verified = app.signup("taken").await.email;
    let unverified = unique_email("pending");
    assert_eq!(
        signup_raw(&app, &unverified, PASSWORD).await.0,
        StatusCode::ACCEPTED
    );
    app.mails(&unverified, 1).await;
    let free = unique_email("free");

    let a = signup_raw(&app, &free, PASSWORD).await;
    let b = signup_raw(&app, &unverified, PASSWORD).await;
    let c = signup_raw(&app, &verified, PASSWORD).await;
    assert_eq!(a.0, StatusCode::ACCEPTED);
    assert_eq!(a, b, "free vs unverified");
    assert_eq!(a, c, "free vs verified");
    assert_eq!(a.2, r#"{"status":"verification_sent"}"#);

    // What differs is only what each address's owner reads.
    let to_free = app.mails(&free, 1).await;
    assert!(
        to_free[0]
            .token("token=")
            .is_some_and(|t| t.starts_with("ev_"))
    );
    let to_unverified = app.mails(&unverified, 2).await;
    assert!(to_unverified[1].token("token=").is_some());
    let to_verified = app.mails(&verified, 2).await;
    let notice = &to_verified[1];
    assert!(
        notice.subject.contains("tried to sign up"),
        "{}",
        notice.subject
    );
    assert_eq!(notice.token("token="), None, "a notice carries no token");
    // Never a second account.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE email = $1")
        .bind(&verified)
        .fetch_one(&app.admin)
        .await
        .unwrap();
    assert_eq!(n, 1);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn pre_registration_then_the_owner_signs_up_and_verifies_with_their_own_password(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let email = unique_email("owner");
    let attacker = "the attacker's password";
    let owner = "the owner's own password";
    assert_eq!(
        signup_raw(&app, &email, attacker).await.0,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        signup_raw(&app, &email, owner).await.0,
        StatusCode::ACCEPTED
    );
    // The owner follows the link of their own sign-up (the newest mail).
    let mails = app.mails(&email, 2).await;
    let (status, body) = app.verify(&mails[1].token("token=").unwrap()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["org_id"].is_string());
    assert_eq!(app.login(&email, owner).await.0, StatusCode::OK);
    assert_eq!(
        app.login(&email, attacker).await.0,
        StatusCode::UNAUTHORIZED
    );
    // The attacker's link died with the verification.
    let (status, _) = app.verify(&mails[0].token("token=").unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn verification_tokens_are_single_use_expire_and_are_hashed_at_rest(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let email = unique_email("tok");
    assert_eq!(
        signup_raw(&app, &email, PASSWORD).await.0,
        StatusCode::ACCEPTED
    );
    let token = app.mailed_token(&email).await;

    // Hashed at rest: no row holds the token, its hash is SHA-256, lifetime ≤ 24 h.
    let rows: Vec<(Vec<u8>, String, f64)> = sqlx::query_as(
        "SELECT token_hash, purpose, extract(epoch FROM expires_at - created_at)::float8 FROM email_tokens",
    )
    .fetch_all(&app.admin)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].0, runwarden_auth::secret_token::hash(&token));
    assert_eq!(rows[0].1, "verify_email");
    assert!(rows[0].2 <= 86_400.0);
    let dump: String =
        sqlx::query_scalar("SELECT string_agg(t::text, ' ') FROM (SELECT * FROM email_tokens) t")
            .fetch_one(&app.admin)
            .await
            .unwrap();
    assert!(!dump.contains(&token) && !dump.contains(PASSWORD));
    // The sent mail's body is cleared: the token lives only in the mail itself.
    let bodies: Vec<Option<String>> = sqlx::query_scalar("SELECT body_text FROM mail_outbox")
        .fetch_all(&app.admin)
        .await
        .unwrap();
    assert_eq!(bodies, [None]);

    // Expiry: the same answer as an unknown token.
    sqlx::query("UPDATE email_tokens SET expires_at = now() - interval '1 second'")
        .execute(&app.admin)
        .await
        .unwrap();
    let expired = app.verify(&token).await;
    let unknown = app
        .verify("ev_unknownunknownunknownunknownunknownunknown")
        .await;
    let malformed = app.verify("not-a-token").await;
    assert_eq!(expired.0, StatusCode::BAD_REQUEST);
    assert_eq!(expired.1["code"], "invalid_token");
    assert_eq!(expired, unknown);
    assert_eq!(expired, malformed);

    // Single use: a resend mails a fresh link; it works once.
    let (status, _) = app
        .post(
            "/v1/auth/verify-email/resend",
            None,
            json!({"email": email}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let fresh = app.mails(&email, 2).await[1].token("token=").unwrap();
    assert_ne!(fresh, token);
    let (status, body) = app.verify(&fresh).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(app.verify(&fresh).await, expired, "second use");
    // The resend carried the sign-up's password.
    assert_eq!(app.login(&email, PASSWORD).await.0, StatusCode::OK);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn unverified_accounts_get_403_after_the_right_password_and_401_after_a_wrong_one(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let email = unique_email("unv");
    assert_eq!(
        signup_raw(&app, &email, PASSWORD).await.0,
        StatusCode::ACCEPTED
    );
    let (status, body) = app.login(&email, PASSWORD).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("email_unverified"))
    );
    let (status, body) = app.login(&email, "not the password at all").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_credentials"))
    );
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions")
        .fetch_one(&app.admin)
        .await
        .unwrap();
    assert_eq!(sessions, 0);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn unverified_accounts_cannot_create_or_join_orgs(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let owner = app.signup("owner").await;
    // An account left unverified with a live session (one from before verification existed).
    let legacy = app.signup("legacy").await;
    sqlx::query("UPDATE users SET email_verified_at = NULL WHERE id = $1::uuid")
        .bind(&legacy.user_id)
        .execute(&app.admin)
        .await
        .unwrap();
    let (status, body) = app
        .post("/v1/orgs", Some(&legacy.access), json!({"name": "Farm"}))
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("email_unverified"))
    );
    let (status, inv) = app
        .post(
            &format!("/v1/orgs/{}/invitations", owner.org_id),
            Some(&owner.access),
            json!({"email": legacy.email, "role": "viewer"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{inv}");
    let (status, body) = app
        .post(
            &format!("/v1/invitations/{}/accept", inv["token"].as_str().unwrap()),
            Some(&legacy.access),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("email_unverified"))
    );
    let orgs: i64 = sqlx::query_scalar("SELECT count(*) FROM memberships WHERE user_id = $1::uuid")
        .bind(&legacy.user_id)
        .fetch_one(&app.admin)
        .await
        .unwrap();
    assert_eq!(orgs, 1, "only the personal org it had");
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn api6_01_signups_and_resends_are_limited_per_ip_and_mails_per_address(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    // Mails per address: four sign-ups for one address, three mails; the fourth still 202.
    let email = unique_email("flood");
    for _ in 0..4 {
        assert_eq!(
            signup_raw(&app, &email, PASSWORD).await.0,
            StatusCode::ACCEPTED
        );
    }
    app.mails(&email, 3).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(app.mails(&email, 3).await.len(), 3);

    // Sign-ups per client IP: ten at once, then 429 signup_rate_limited.
    forget_signup_ip(&app).await;
    for _ in 0..10 {
        let (status, _, body) = signup_raw(&app, &unique_email("ip"), PASSWORD).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    let (status, headers, body) = app
        .call_raw(
            Method::POST,
            "/v1/auth/signup",
            None,
            Some(json!({"email": unique_email("ip"), "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "signup_rate_limited");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(headers["content-type"], "application/problem+json");

    // Resends per client IP: ten, then 429 resend_rate_limited (whatever the address).
    for _ in 0..10 {
        let (status, _) = app
            .post(
                "/v1/auth/verify-email/resend",
                None,
                json!({"email": unique_email("nobody")}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    let (status, body) = app
        .post(
            "/v1/auth/verify-email/resend",
            None,
            json!({"email": email}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("resend_rate_limited"))
    );
    // Keys never hold an address in clear.
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM rate_limits")
        .fetch_all(&app.admin)
        .await
        .unwrap();
    assert!(keys.iter().all(|k| !k.contains('@')), "{keys:?}");
}
