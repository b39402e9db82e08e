//! Sign-up, login, passwords, enumeration, throttling.

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::postgres::PgConnectOptions;

use crate::helpers::{PASSWORD, TestApp, spawn_app, unique_email};

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
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body, json!({"status": "verification_sent"}));
    // Nothing is owned before the address is proven: no org, no membership, no session.
    let owned: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM orgs) + (SELECT count(*) FROM memberships) + (SELECT count(*) FROM sessions)",
    )
    .fetch_one(&app.admin)
    .await
    .unwrap();
    assert_eq!(owned, 0);
    let token = app.mailed_token(&email).await;
    assert!(token.starts_with("ev_"), "{token}");
    let (status, body) = app.verify(&token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
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
    assert_eq!(actions, ["org.create", "user.email_verified"]);
    assert_eq!(events[0].1["actor"]["id"], user);
    let dump = serde_json::to_string(&events).unwrap();
    assert!(!dump.contains(PASSWORD) && !dump.contains("argon2") && !dump.contains("rt_"));
    assert!(!dump.contains(&token) && !dump.contains("ev_"));

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
        ("twelve chars", StatusCode::ACCEPTED),
        (&"é".repeat(11), StatusCode::BAD_REQUEST),
        ("q1w2e3r4t5y6", StatusCode::BAD_REQUEST),
        ("passwordpassword", StatusCode::BAD_REQUEST),
        ("Runwarden2026!", StatusCode::BAD_REQUEST),
        ("🦀 spaces and emoji 🦀", StatusCode::ACCEPTED),
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
    assert_eq!(status, StatusCode::ACCEPTED);
    let token = app.mailed_token(&email).await;
    assert_eq!(app.verify(&token).await.0, StatusCode::OK);
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

/// A login from `ip` (sent as the client address the one trusted proxy hop reports).
async fn login_from(
    app: &TestApp,
    ip: &str,
    email: &str,
    password: &str,
) -> (StatusCode, reqwest::header::HeaderMap, serde_json::Value) {
    let response = app
        .client
        .post(app.url("/v1/auth/login"))
        .header("x-forwarded-for", ip)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(serde_json::Value::Null);
    (status, headers, body)
}

/// The hex SHA-256 of `email` as PostgreSQL computes it: what every login key holds instead
/// of the address.
async fn email_hash(app: &TestApp, email: &str) -> String {
    sqlx::query_scalar("SELECT encode(sha256(convert_to(lower($1), 'UTF8')), 'hex')")
        .bind(email)
        .fetch_one(&app.admin)
        .await
        .unwrap()
}

/// The account ceiling key of `email`.
async fn account_key(app: &TestApp, email: &str) -> String {
    format!("login:account:{}", email_hash(app, email).await)
}

/// The (account, client IP) keys of `email` from `ip`: the short window and the day.
async fn client_keys(app: &TestApp, email: &str, ip: &str) -> (String, String) {
    let hash = email_hash(app, email).await;
    (
        format!("login:client:{hash}:{ip}"),
        format!("login:client-day:{hash}:{ip}"),
    )
}

/// The tat of a rate-limit key as text (None when the key has no row).
async fn tat(app: &TestApp, key: &str) -> Option<String> {
    sqlx::query_scalar("SELECT tat::text FROM rate_limits WHERE key = $1")
        .bind(key)
        .fetch_optional(&app.admin)
        .await
        .unwrap()
}

/// Moves time forward for one key by `secs`, behind the limiter's back.
async fn pass_time(app: &TestApp, key: &str, secs: u64) {
    let moved =
        sqlx::query("UPDATE rate_limits SET tat = tat - make_interval(secs => $2) WHERE key = $1")
            .bind(key)
            .bind(secs as f64)
            .execute(&app.admin)
            .await
            .unwrap()
            .rows_affected();
    assert_eq!(moved, 1, "{key} has a row");
}

fn retry_after(headers: &reqwest::header::HeaderMap) -> u64 {
    headers["retry-after"].to_str().unwrap().parse().unwrap()
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn auth05_a_failing_client_gets_429_with_a_growing_retry_after_then_the_right_password_works(
    _: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let s = app.signup("brute").await;
    let attacker = "198.51.100.1";
    for i in 0..5 {
        let (status, _, body) = login_from(&app, attacker, &s.email, "wrong password here").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}: {body}");
    }
    // The 6th from the same client, even with the right password: that client's key blocks,
    // before the password is checked.
    let (status, headers, body) = login_from(&app, attacker, &s.email, PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(headers["content-type"], "application/problem+json");
    let first_wait = retry_after(&headers);
    assert!(
        (170..=180).contains(&first_wait),
        "one more failure per 3 minutes: {first_wait}"
    );
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(body["retry_after"], first_wait);
    assert_eq!(headers["ratelimit-policy"], "\"login-client\";q=5;w=900");
    let ratelimit = headers["ratelimit"].to_str().unwrap();
    assert!(
        ratelimit.starts_with("\"login-client\";r=0;t="),
        "{ratelimit}"
    );
    assert!(body.get("access_token").is_none());

    // The owner, on their own address, is not locked out by it.
    let (status, _, body) = login_from(&app, "203.0.113.77", &s.email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The attacker keeps guessing, one try per cooldown: after 20 failures in a day the wait
    // grows to the day key's 72 minutes.
    let (client, client_day) = client_keys(&app, &s.email, attacker).await;
    for i in 5..20 {
        pass_time(&app, &client, 180).await;
        let (status, _, _) = login_from(&app, attacker, &s.email, "still guessing").await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "failure {i} after a cooldown"
        );
    }
    pass_time(&app, &client, 180).await;
    let (status, headers, body) = login_from(&app, attacker, &s.email, PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(
        headers["ratelimit-policy"],
        "\"login-client-day\";q=20;w=86400"
    );
    let grown = retry_after(&headers);
    assert!(
        grown > first_wait && (72 * 60 - 10..=72 * 60).contains(&grown),
        "the wait grew: {grown}"
    );

    // No permanent lockout: once the wait has passed, the right password works, and the
    // success forgets this client's failures.
    pass_time(&app, &client_day, 72 * 60).await;
    let (status, _, body) = login_from(&app, attacker, &s.email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(tat(&app, &client).await, None, "client key forgotten");
    assert_eq!(
        tat(&app, &client_day).await,
        None,
        "client day key forgotten"
    );
}

/// Attack 2 of issue 10: seven wrong passwords for someone else's email used to keep its
/// owner out; now they only keep out the clients that sent them.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn wrong_passwords_from_other_clients_do_not_lock_the_owner_out(
    _: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let s = app.signup("victim").await;
    // From many addresses.
    for i in 0..7 {
        let (status, _, _) = login_from(
            &app,
            &format!("198.51.100.{}", 100 + i),
            &s.email,
            "not yours",
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}");
    }
    let (status, headers, body) = login_from(&app, "203.0.113.5", &s.email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(headers.get("retry-after").is_none());

    // From one address: the attacker's own client is refused, even with the right password;
    // the owner is not.
    let attacker = "198.51.100.66";
    for i in 0..7 {
        let (status, _, _) = login_from(&app, attacker, &s.email, "not yours").await;
        let expected = if i < 5 {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(status, expected, "attempt {i}");
    }
    let (status, headers, _) = login_from(&app, attacker, &s.email, PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(retry_after(&headers) > 0);
    let (status, _, body) = login_from(&app, "203.0.113.5", &s.email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn auth05_fifty_failures_from_one_ip_do_not_stop_the_right_password_from_another(
    _: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let s = app.signup("victim").await;
    let attacker = "198.51.100.50";
    let (client, client_day) = client_keys(&app, &s.email, attacker).await;
    let mut refused = 0;
    for i in 0..50 {
        let (status, _, _) = login_from(&app, attacker, &s.email, "a guess").await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
        } else {
            assert_eq!(status, StatusCode::UNAUTHORIZED, "attempt {i}");
        }
        if i % 5 == 4 {
            // The attacker waits out every cooldown, so all 50 get their password checked.
            pass_time(&app, &client, 900).await;
            pass_time(&app, &client_day, 5 * 72 * 60).await;
        }
    }
    assert_eq!(refused, 0);
    let (status, _, body) = login_from(&app, "192.0.2.44", &s.email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The IP is at its limit: the attacker's own next try is refused.
    let (status, headers, _) = login_from(&app, attacker, &s.email, PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["ratelimit-policy"], "\"login-ip\";q=50;w=900");
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn past_the_account_ceiling_a_fresh_client_is_slowed_never_refused_and_failing_ones_are(
    _: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let s = app.signup("ceiling").await;
    // 100 failures from 20 addresses, 5 each (each client's own limit).
    for ip in 0..20 {
        for _ in 0..5 {
            let (status, _, _) =
                login_from(&app, &format!("198.51.100.{ip}"), &s.email, "distributed").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED);
        }
    }
    let account = account_key(&app, &s.email).await;
    // The ceiling regains a cell every 9 s: pin it full now, however long the loop took.
    sqlx::query("UPDATE rate_limits SET tat = now() + interval '900 seconds' WHERE key = $1")
        .bind(&account)
        .execute(&app.admin)
        .await
        .unwrap();
    let ceiling_tat = tat(&app, &account).await;
    assert!(ceiling_tat.is_some());

    // A client that has not been failing: admitted (slowed by a second), the right password
    // logs in.
    let (status, _, body) = login_from(&app, "203.0.113.9", &s.email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // A fresh client with a wrong password is answered as usual...
    let newcomer = "203.0.113.10";
    let (status, _, _) = login_from(&app, newcomer, &s.email, "one more guess").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // ...but now it has been failing, the ceiling refuses it until it has room again.
    let (status, headers, body) = login_from(&app, newcomer, &s.email, PASSWORD).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(headers["ratelimit-policy"], "\"login-account\";q=100;w=900");
    assert!((1..=9).contains(&retry_after(&headers)));
    // The success did not clear the ceiling: the attack on the account still counts.
    assert_eq!(tat(&app, &account).await, ceiling_tat);
    // Once the ceiling has room, the failing client is admitted again (its own key allows 4
    // more).
    pass_time(&app, &account, 9).await;
    let (status, _, body) = login_from(&app, newcomer, &s.email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn a_throttled_account_does_not_throttle_another_account_from_the_same_ip(
    _: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let victim = app.signup("victim").await;
    let bystander = app.signup("bystander").await;
    let ip = "198.51.100.20";
    for _ in 0..5 {
        assert_eq!(
            login_from(&app, ip, &victim.email, "wrong password here")
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login_from(&app, ip, &victim.email, PASSWORD).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Same IP, another account: its own failures count from zero, and it logs in.
    assert_eq!(
        login_from(&app, ip, &bystander.email, "wrong password here")
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (status, headers, body) = login_from(&app, ip, &bystander.email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(headers.get("retry-after").is_none());
    // The victim is still blocked.
    assert_eq!(
        login_from(&app, ip, &victim.email, PASSWORD).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn unknown_emails_are_throttled_exactly_like_wrong_passwords_and_keys_hide_them(
    _: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let known = app.signup("known").await;
    let unknown = unique_email("ghost");
    let ip_known = "198.51.100.31";
    let ip_unknown = "198.51.100.32";
    let mut answers = Vec::new();
    for _ in 0..6 {
        let k = login_from(&app, ip_known, &known.email, "wrong password here").await;
        let u = login_from(&app, ip_unknown, &unknown, "wrong password here").await;
        assert_eq!(k.0, u.0);
        if u.0 == StatusCode::TOO_MANY_REQUESTS {
            // The wait may differ by the second boundary the clock crossed in between.
            assert_eq!(k.2["code"], u.2["code"]);
            assert_eq!(k.1["ratelimit-policy"], u.1["ratelimit-policy"]);
            assert!(retry_after(&k.1).abs_diff(retry_after(&u.1)) <= 1);
        } else {
            assert_eq!(k.2, u.2, "same problem body");
        }
        answers.push(u.0);
    }
    assert_eq!(
        answers,
        [
            [StatusCode::UNAUTHORIZED; 5].as_slice(),
            &[StatusCode::TOO_MANY_REQUESTS]
        ]
        .concat()
    );

    // The same rows on both sides: an account key, two client keys and an IP key each, and
    // no email anywhere in the keys.
    let keys: Vec<String> =
        sqlx::query_scalar("SELECT key FROM rate_limits WHERE key LIKE 'login:%' ORDER BY key")
            .fetch_all(&app.admin)
            .await
            .unwrap();
    let (known_client, known_day) = client_keys(&app, &known.email, ip_known).await;
    let (unknown_client, unknown_day) = client_keys(&app, &unknown, ip_unknown).await;
    let mut expected = vec![
        account_key(&app, &known.email).await,
        account_key(&app, &unknown).await,
        known_client,
        known_day,
        unknown_client,
        unknown_day,
        format!("login:ip:{ip_known}"),
        format!("login:ip:{ip_unknown}"),
    ];
    expected.sort();
    assert_eq!(keys, expected);
    for key in &keys {
        assert!(!key.contains("example"), "{key}");
    }
    assert!(keys[0].len() == "login:account:".len() + 64);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn auth06_one_ip_trying_many_accounts_is_throttled(
    _: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let victim = app.signup("victim").await;
    let ip = "198.51.100.9";
    for i in 0..50 {
        let (status, _, _) =
            login_from(&app, ip, &unique_email("stuffed"), "guessing password").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "failure {i}");
    }
    let (status, headers, body) =
        login_from(&app, ip, &unique_email("stuffed"), "guessing password").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(headers["ratelimit-policy"], "\"login-ip\";q=50;w=900");
    let retry = retry_after(&headers);
    assert!(
        (1..=18).contains(&retry),
        "one more failure per 18 s: {retry}"
    );
    // The same IP is blocked even for a correct password; another client IP is not.
    assert_eq!(
        login_from(&app, ip, &victim.email, PASSWORD).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login_from(&app, "192.0.2.10", &victim.email, PASSWORD)
            .await
            .0,
        StatusCode::OK
    );
    // Each stuffed account saw one failure only: none of them is blocked on its own.
    let blocked_accounts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM rate_limits WHERE key LIKE 'login:account:%' AND tat > now() + interval '12 minutes'",
    )
    .fetch_one(&app.admin)
    .await
    .unwrap();
    assert_eq!(blocked_accounts, 0);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn a_success_forgets_the_clients_failures_but_not_the_ip_or_the_account_ceiling(
    _: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let s = app.signup("resets").await;
    let ip = "198.51.100.40";
    let ip_key = format!("login:ip:{ip}");
    for _ in 0..3 {
        assert_eq!(
            login_from(&app, ip, &s.email, "wrong password here")
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
    }
    let account = account_key(&app, &s.email).await;
    assert!(tat(&app, &account).await.is_some());
    let ip_tat = tat(&app, &ip_key).await;
    assert!(ip_tat.is_some());

    let (status, _, body) = login_from(&app, ip, &s.email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (client, client_day) = client_keys(&app, &s.email, ip).await;
    assert_eq!(tat(&app, &client).await, None, "client failures forgotten");
    assert_eq!(tat(&app, &client_day).await, None);
    assert_eq!(
        tat(&app, &ip_key).await,
        ip_tat,
        "the IP's failures still count"
    );
    let account_tat = tat(&app, &account).await;
    assert!(account_tat.is_some(), "the account ceiling still counts");

    // A success for a client without failures writes nothing.
    let (status, _, _) = login_from(&app, ip, &s.email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tat(&app, &client).await, None);
    assert_eq!(tat(&app, &ip_key).await, ip_tat);
    assert_eq!(tat(&app, &account).await, account_tat);
}

/// AUTH-08: a fresh deploy has no account at all, so no default login exists to try, and
/// the obvious guesses answer like any unknown account. The migrations are what a fresh
/// deploy runs; none of them writes a user, an identity, a membership or a session.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn auth08_a_fresh_deploy_has_no_account_and_no_default_login_works(
    _: sqlx::postgres::PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    for table in [
        "users",
        "user_identities",
        "memberships",
        "sessions",
        "orgs",
    ] {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&app.admin)
            .await
            .unwrap();
        assert_eq!(rows, 0, "a fresh deploy has rows in {table}");
    }
    for migration in runwarden_store::MIGRATOR.iter() {
        let sql = migration.sql.to_lowercase();
        for table in ["users", "user_identities", "memberships", "sessions"] {
            for spelling in [
                format!("insert into {table}"),
                format!("insert into public.{table}"),
            ] {
                assert!(
                    !sql.contains(&format!("{spelling} "))
                        && !sql.contains(&format!("{spelling}(")),
                    "migration {} seeds {table}",
                    migration.description
                );
            }
        }
    }
    for (email, password) in [
        ("admin", "admin"),
        ("admin@example.com", "admin"),
        ("admin@runwarden.dev", "admin"),
        ("root@localhost.localdomain", "root"),
        ("test@example.com", "password"),
    ] {
        let (status, body) = app.login(email, password).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{email}: {body}");
        assert_eq!(body["code"], "invalid_credentials", "{email}");
    }
}
