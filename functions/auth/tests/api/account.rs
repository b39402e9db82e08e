//! Sign-up, login, passwords, enumeration, throttling.

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;

use crate::helpers::{PASSWORD, spawn_app, unique_email};

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn signup_creates_user_trial_org_owner_membership_and_audit_events(
    _: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let email = unique_email("alice");
    let (status, body) = app
        .post(
            "/v1/auth/signup",
            None,
            json!({"email": email.to_uppercase(), "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["refresh_expires_in"], 86400);
    assert!(body["refresh_token"].as_str().unwrap().starts_with("rt_"));
    let org = body["org_id"].as_str().unwrap();
    let user = body["user_id"].as_str().unwrap();

    let (plan, role): (String, String) = sqlx::query_as(
        "SELECT o.plan, m.role FROM orgs o JOIN memberships m ON m.org_id = o.id WHERE o.id = $1::uuid AND m.user_id = $2::uuid",
    )
    .bind(org)
    .bind(user)
    .fetch_one(&app.admin)
    .await
    .unwrap();
    assert_eq!((plan.as_str(), role.as_str()), ("trial", "owner"));
    let stored_email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1::uuid")
        .bind(user)
        .fetch_one(&app.admin)
        .await
        .unwrap();
    assert_eq!(stored_email, email, "stored lower-cased");

    let events = app.outbox(org).await;
    let actions: Vec<&str> = events.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(actions, ["org.create"]);
    assert_eq!(events[0].1["actor"]["id"], user);
    let dump = serde_json::to_string(&events).unwrap();
    assert!(!dump.contains(PASSWORD) && !dump.contains("argon2") && !dump.contains("rt_"));

    // The access token works at once.
    let (status, me) = app
        .get("/v1/me", body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["email"], email);
    assert_eq!(me["orgs"][0]["org_id"], org);
    assert_eq!(me["orgs"][0]["role"], "owner");
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn auth01_hashes_are_argon2id_owasp_and_salted(
    _: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let a = app.signup("a").await;
    let b = app.signup("b").await;
    let hashes: Vec<String> =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE id = ANY($1::uuid[])")
            .bind(vec![a.user_id.clone(), b.user_id.clone()])
            .fetch_all(&app.admin)
            .await
            .unwrap();
    assert_eq!(hashes.len(), 2);
    for h in &hashes {
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
    }
    assert_ne!(hashes[0], hashes[1]);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn auth02_auth03_password_rules(_: sqlx::postgres::PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let cases = [
        ("elevenchars", StatusCode::BAD_REQUEST),
        ("twelve chars", StatusCode::CREATED),
        (&"é".repeat(11), StatusCode::BAD_REQUEST),
        ("q1w2e3r4t5y6", StatusCode::BAD_REQUEST),
        ("passwordpassword", StatusCode::BAD_REQUEST),
        ("Runwarden2026!", StatusCode::BAD_REQUEST),
        ("🦀 spaces and emoji 🦀", StatusCode::CREATED),
    ];
    for (password, expected) in cases {
        let (status, body) = app
            .post(
                "/v1/auth/signup",
                None,
                json!({"email": unique_email("p"), "password": password}),
            )
            .await;
        assert_eq!(status, expected, "{password}: {body}");
        if expected == StatusCode::BAD_REQUEST {
            assert_eq!(body["code"], "weak_password");
        }
    }
    let long: String = (0..129)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect();
    let (status, _) = app
        .post(
            "/v1/auth/signup",
            None,
            json!({"email": unique_email("p"), "password": long}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A 1 MB password is refused by the body limit before Argon2 could run.
    let huge = "x".repeat(1024 * 1024);
    let (status, headers, _) = app
        .call_raw(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": "a@b.co", "password": huge})),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(headers["content-type"], "application/problem+json");

    // No truncation: only the exact password logs in.
    let email = unique_email("exact");
    let hundred: String = (0..100)
        .map(|i| char::from(b'a' + (i * 11 % 26) as u8))
        .collect();
    let (status, _) = app
        .post(
            "/v1/auth/signup",
            None,
            json!({"email": email, "password": hundred}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        app.login(&email, &hundred[..72]).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login(&email, &hundred.to_uppercase()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.login(&email, &hundred).await.0, StatusCode::OK);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn login_returns_the_same_token_fields(
    _: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let s = app.signup("login").await;
    let (status, body) = app.login(&s.email.to_uppercase(), PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], s.user_id);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["refresh_expires_in"], 86400);
    assert!(body["access_token"].as_str().unwrap().starts_with("eyJ"));
    assert_ne!(body["refresh_token"], s.refresh);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn auth07_unknown_email_and_wrong_password_answer_identically(
    _: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let s = app.signup("enum").await;
    let (_, _, wrong) = app
        .call_raw(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": s.email, "password": "wrong password here"})),
        )
        .await;
    let (status, _, unknown) = app
        .call_raw(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(json!({"email": unique_email("nobody"), "password": "wrong password here"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong, unknown);
    let (status, body) = app.login("not-an-email", "whatever whatever").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_credentials"))
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn auth09_sso_only_user_cannot_password_login(
    _: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let email = unique_email("sso");
    sqlx::query("INSERT INTO users (id, email) VALUES (gen_random_uuid(), $1)")
        .bind(&email)
        .execute(&app.admin)
        .await
        .unwrap();
    let (status, body) = app.login(&email, PASSWORD).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn signup_with_a_taken_email_conflicts(
    _: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let s = app.signup("dup").await;
    let (status, body) = app
        .post(
            "/v1/auth/signup",
            None,
            json!({"email": s.email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("email_taken"))
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn bad_bodies_are_problem_json_4xx(
    _: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let (status, headers, _) = app
        .client
        .post(app.url("/v1/auth/signup"))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .map(|r| (r.status(), r.headers().clone(), ()))
        .unwrap();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers["content-type"], "application/problem+json");
    let (status, body) = app
        .post(
            "/v1/auth/signup",
            None,
            json!({"email": unique_email("x"), "password": PASSWORD, "role": "owner"}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_body"))
    );
    let (status, body) = app
        .post(
            "/v1/auth/signup",
            None,
            json!({"email": "nope", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_email"))
    );
    let (status, _, _) = app
        .call_raw(Method::PUT, "/v1/auth/login", None, None)
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, headers, _) = app.call_raw(Method::GET, "/nope", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert!(headers.contains_key("x-request-id"));
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn auth05_repeated_failures_throttle_the_account_with_retry_after(
    _: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let s = app.signup("brute").await;
    for _ in 0..5 {
        assert_eq!(
            app.login(&s.email, "wrong password here").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    // From rotating IPs too: the account counter is what blocks.
    let response = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("x-forwarded-for", "203.0.113.77")
        .json(&json!({"email": s.email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=30).contains(&retry), "{retry}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "rate_limited");

    // The block ends by itself (no permanent lockout): move the clock past it.
    sqlx::query("UPDATE auth_throttle SET blocked_until = now() - interval '1 second'")
        .execute(&app.admin)
        .await
        .unwrap();
    assert_eq!(app.login(&s.email, PASSWORD).await.0, StatusCode::OK);
    // A success clears the account's counter.
    let left: i64 =
        sqlx::query_scalar("SELECT count(*) FROM auth_throttle WHERE key LIKE 'account:%'")
            .fetch_one(&app.admin)
            .await
            .unwrap();
    assert_eq!(left, 0);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn auth06_one_ip_trying_many_accounts_is_throttled(
    _: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let victim = app.signup("victim").await;
    let attempt = |email: String| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/v1/auth/login"))
                .header("x-forwarded-for", "198.51.100.9")
                .json(&json!({"email": email, "password": "guessing password"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    for _ in 0..50 {
        assert_eq!(
            attempt(unique_email("stuffed")).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        attempt(unique_email("stuffed")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The same IP is blocked even for a correct password; another client IP is not.
    let blocked = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("x-forwarded-for", "198.51.100.9")
        .json(&json!({"email": victim.email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(blocked.status(), StatusCode::TOO_MANY_REQUESTS);
    let other = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("x-forwarded-for", "192.0.2.10")
        .json(&json!({"email": victim.email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
}
