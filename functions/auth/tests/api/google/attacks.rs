//! Google sign-in refusing what it must (SSO-01..04): a callback without the single-use
//! state bound to the browser, nonce mismatches and replays, ID tokens not from the pinned
//! provider for us, and unverified emails.

use super::*;

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn sso01_callback_needs_the_single_use_state_bound_to_the_browser_cookie(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let (app, idp) = setup(options).await;
    idp.will_issue(IdToken::new("sub-csrf", &unique_email("csrf")));
    let mine = start(&app).await;
    let path = authorize(&app, &mine).await;
    let code = query_param(&path, "code");
    // Another browser's attempt (an attacker's, say).
    let theirs = start(&app).await;

    let forged_state = random_b64(32);
    let cases: [(&str, String, Option<&str>); 8] = [
        (
            "missing state",
            format!("{CALLBACK}?code={code}"),
            Some(&mine.cookie),
        ),
        (
            "missing code",
            format!("{CALLBACK}?state={}", mine.state),
            Some(&mine.cookie),
        ),
        (
            "mismatched state",
            format!("{CALLBACK}?code={code}&state={forged_state}"),
            Some(&mine.cookie),
        ),
        (
            "another attempt's state",
            format!("{CALLBACK}?code={code}&state={}", theirs.state),
            Some(&mine.cookie),
        ),
        ("no cookie", path.clone(), None),
        (
            "another browser's cookie",
            path.clone(),
            Some(&theirs.cookie),
        ),
        ("forged cookie", path.clone(), Some("rw_sso=forged")),
        ("empty cookie", path.clone(), Some("rw_sso=")),
    ];
    for (case, url, cookie) in &cases {
        let (status, headers, body) = callback(&app, url, *cookie).await;
        assert_problem(
            status,
            &headers,
            &body,
            StatusCode::BAD_REQUEST,
            "invalid_state",
            case,
        );
    }
    // None of that reached the provider or created anything.
    assert!(idp.token_requests().is_empty());
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM sessions").await, 0);

    // An expired attempt is refused with its own cookie.
    sqlx::query("UPDATE oidc_login_flows SET expires_at = now() - interval '1 second' WHERE state_hash = $1")
        .bind(sha256(theirs.state.as_bytes()))
        .execute(&app.admin)
        .await
        .unwrap();
    let expired = format!("{CALLBACK}?code={code}&state={}", theirs.state);
    let (status, headers, body) = callback(&app, &expired, Some(&theirs.cookie)).await;
    assert_problem(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_state",
        "expired attempt",
    );

    // The provider's refusal is not a sign-in.
    let denied = format!("{CALLBACK}?error=access_denied&state={}", mine.state);
    let (status, headers, body) = callback(&app, &denied, Some(&mine.cookie)).await;
    assert_problem(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "sso_denied",
        "provider error",
    );

    // The right browser completes once...
    let (status, _, body) = callback(&app, &path, Some(&mine.cookie)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // ...and the same callback replayed is refused: the state is single use.
    let (status, headers, body) = callback(&app, &path, Some(&mine.cookie)).await;
    assert_problem(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_state",
        "replayed state",
    );
    assert_eq!(
        idp.token_requests().len(),
        1,
        "only the good callback exchanged the code"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM sessions").await, 1);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn sso02_nonce_mismatch_is_refused_and_codes_and_callbacks_cannot_be_replayed(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let (app, idp) = setup(options).await;
    let email = unique_email("nonce");

    // An ID token minted for another attempt, and one without a nonce.
    for (case, token) in [
        (
            "nonce of another attempt",
            IdToken::new("sub-nonce", &email).with(json!({"nonce": random_b64(32)})),
        ),
        (
            "no nonce",
            IdToken::new("sub-nonce", &email).with(json!({"nonce": null})),
        ),
    ] {
        let (status, body) = sign_in(&app, &idp, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_eq!(body["code"], "unauthenticated", "{case}");
    }
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM user_identities").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM sessions").await, 0);
    assert_eq!(
        count(&app, "SELECT count(*) FROM oidc_login_flows").await,
        0,
        "refused attempts are spent too"
    );

    // A good sign-in...
    idp.will_issue(IdToken::new("sub-nonce", &email));
    let started = start(&app).await;
    let path = authorize(&app, &started).await;
    let (status, _, body) = callback(&app, &path, Some(&started.cookie)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // ...whose callback (code and state) is replayed: refused before any exchange.
    let (status, headers, body) = callback(&app, &path, Some(&started.cookie)).await;
    assert_problem(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_state",
        "replayed callback",
    );
    assert_eq!(idp.token_requests().len(), 3);

    // The spent code injected into a fresh attempt of the same browser: the provider
    // refuses the second redemption (400) and the app signs nobody in.
    let fresh = start(&app).await;
    let injected = format!(
        "{CALLBACK}?code={}&state={}",
        query_param(&path, "code"),
        fresh.state
    );
    let (status, _, body) = callback(&app, &injected, Some(&fresh.cookie)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let exchanges = idp.token_requests();
    assert_eq!(exchanges.len(), 4);
    assert_eq!(exchanges[3].status, StatusCode::BAD_REQUEST);
    assert_eq!(exchanges[3].form["code"], query_param(&path, "code"));
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM sessions").await, 1);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn sso03_id_tokens_not_issued_by_the_pinned_provider_for_us_are_refused(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let (app, idp) = setup(options).await;
    let email = unique_email("mixup");
    let token = || IdToken::new("sub-mixup", &email);
    // An attacker's key published under the provider's kid, and one under a kid nobody knows.
    let same_kid = RsaKey::generate(KID);
    let unknown_kid = RsaKey::generate("not-in-the-jwks");
    let provider_modulus = {
        let jwk = idp.key().jwk();
        URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap()
    };
    let now = unix_now();

    let cases: Vec<(&str, IdToken)> = vec![
        (
            "signed by another key under the same kid",
            token().signed(Signing::Rs256(same_kid.clone())),
        ),
        (
            "kid not in the JWKS",
            token().signed(Signing::Rs256(unknown_kid)),
        ),
        (
            "key carried in the header (jwk/jku)",
            token().signed(Signing::KeyInHeader(same_kid)),
        ),
        (
            "aud of another client",
            token().with(json!({"aud": "other-app.apps.googleusercontent.com"})),
        ),
        (
            "aud list without us",
            token().with(json!({"aud": ["other-app.apps.googleusercontent.com"]})),
        ),
        ("no aud", token().with(json!({"aud": null}))),
        (
            "iss of another provider",
            token().with(json!({"iss": "https://login.attacker.example"})),
        ),
        (
            "iss over plain http",
            token().with(json!({"iss": "http://accounts.google.com"})),
        ),
        (
            "iss of the local test provider",
            token().with(json!({"iss": idp.base.as_str()})),
        ),
        ("no iss", token().with(json!({"iss": null}))),
        (
            "expired",
            token().with(json!({"iat": now - 7200, "exp": now - 3600})),
        ),
        ("no exp", token().with(json!({"exp": null}))),
        (
            "exp as a string",
            token().with(json!({"exp": (now - 3600).to_string()})),
        ),
        ("not valid yet", token().with(json!({"nbf": now + 3600}))),
        (
            "HS256 with a guessed secret",
            token().signed(Signing::Hs256(b"secret".to_vec())),
        ),
        (
            "HS256 keyed with the provider's public key",
            token().signed(Signing::Hs256(provider_modulus)),
        ),
        (
            "HS256 keyed with the client secret",
            token().signed(Signing::Hs256(CLIENT_SECRET.as_bytes().to_vec())),
        ),
        ("alg none", token().signed(Signing::Unsigned)),
    ];
    for (case, token) in cases {
        let (status, body) = sign_in(&app, &idp, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_eq!(body["code"], "unauthenticated", "{case}: {body}");
    }
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM user_identities").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM sessions").await, 0);
    assert_eq!(
        count(&app, "SELECT count(*) FROM oidc_login_flows").await,
        0
    );
    // Every code was redeemed (the refusals are the app's), and an unknown kid did not make
    // the app hammer the provider's JWKS.
    assert!(
        idp.token_requests()
            .iter()
            .all(|r| r.status == StatusCode::OK)
    );
    assert_eq!(idp.jwks_fetches(), 1);

    // The control: the same app accepts the provider's own token, also with Google's other
    // spelling of its issuer; the identity is stored under the one configured spelling so
    // both spellings name the same identity.
    let (status, body) = sign_in(
        &app,
        &idp,
        token().with(json!({"iss": "accounts.google.com"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let issuer: String =
        sqlx::query_scalar("SELECT issuer FROM user_identities WHERE subject = 'sub-mixup'")
            .fetch_one(&app.admin)
            .await
            .unwrap();
    assert_eq!(issuer, "https://accounts.google.com");
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn sso04_an_unverified_email_never_links_to_or_signs_into_an_existing_account(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let (app, idp) = setup(options).await;
    let victim = app.signup("victim").await;

    for (case, verified) in [
        ("email_verified false", json!(false)),
        ("email_verified \"false\"", json!("false")),
        ("email_verified missing", Value::Null),
        ("email_verified 1", json!(1)),
    ] {
        let token =
            IdToken::new("sub-attacker", &victim.email).with(json!({"email_verified": verified}));
        let (status, body) = sign_in(&app, &idp, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_eq!(body["code"], "unauthenticated", "{case}");
        assert!(body.get("access_token").is_none(), "{case}");
    }
    // No email at all is no better.
    let (status, _) = sign_in(
        &app,
        &idp,
        IdToken::new("sub-attacker", &victim.email).with(json!({"email": null})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // An unverified address nobody uses does not create an account either.
    let stranger = IdToken::new("sub-stranger", &unique_email("stranger"))
        .with(json!({"email_verified": false}));
    assert_eq!(
        sign_in(&app, &idp, stranger).await.0,
        StatusCode::UNAUTHORIZED
    );

    assert_eq!(
        count(&app, "SELECT count(*) FROM user_identities").await,
        0,
        "nothing linked"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 1);
    let sessions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sessions WHERE user_id = $1::uuid")
            .bind(&victim.user_id)
            .fetch_one(&app.admin)
            .await
            .unwrap();
    assert_eq!(sessions, 1, "only the victim's own sign-up session");
    assert_eq!(count(&app, "SELECT count(*) FROM sessions").await, 1);

    // The control: once Google says the address is verified, the same account links.
    let (status, body) = sign_in(&app, &idp, IdToken::new("sub-attacker", &victim.email)).await;
    assert_eq!(
        (status, &body["user_id"]),
        (StatusCode::OK, &json!(victim.user_id)),
        "{body}"
    );
}
