//! Google sign-in that works: a new user gets a user, an org and an identity, a returning
//! one signs in, a password account with the same verified email is linked, the code is
//! redeemed with the PKCE verifier, and without configuration the routes are 404.

use super::*;

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn google_sign_in_creates_user_org_and_identity_then_signs_the_same_user_in(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let (app, idp) = setup(options).await;
    let email = unique_email("gina");
    let subject = "110169484474386276334";
    idp.will_issue(IdToken::new(subject, &email));

    // The redirect to the provider.
    let started = start(&app).await;
    let url = &started.authorize_url;
    assert_eq!(url.origin(), idp.base.origin());
    assert_eq!(url.path(), "/authorize");
    let q = &started.params;
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], REDIRECT_URI);
    let scopes: Vec<&str> = q["scope"].split(' ').collect();
    assert!(
        scopes.contains(&"openid") && scopes.contains(&"email"),
        "{scopes:?}"
    );
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43, "base64url of a SHA-256");
    assert!(q["state"].len() >= 43 && q["nonce"].len() >= 43);
    assert_ne!(q["state"], q["nonce"]);
    assert!(
        !url.as_str().to_ascii_lowercase().contains("plain"),
        "{url}"
    );

    // The pre-authentication cookie binding the attempt to this browser.
    let attributes: Vec<String> = started
        .set_cookie
        .split(';')
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    for required in ["httponly", "secure", "path=/v1/auth/google"] {
        assert!(
            attributes.iter().any(|a| a == required),
            "{required} missing: {}",
            started.set_cookie
        );
    }
    assert!(
        attributes
            .iter()
            .any(|a| a == "samesite=lax" || a == "samesite=strict"),
        "{}",
        started.set_cookie
    );
    let binding = started.cookie.trim_start_matches("rw_sso=");
    assert_ne!(binding, started.state);
    // Only hashes of the state and the binding are stored.
    let (state_hash, binding_hash, nonce): (Vec<u8>, Vec<u8>, String) =
        sqlx::query_as("SELECT state_hash, browser_binding_hash, nonce FROM oidc_login_flows")
            .fetch_one(&app.admin)
            .await
            .unwrap();
    assert_eq!(state_hash, sha256(started.state.as_bytes()));
    assert_eq!(binding_hash, sha256(binding.as_bytes()));
    assert_eq!(nonce, q["nonce"]);

    // Consent at the provider, which saw exactly what the app asked for.
    let path = authorize(&app, &started).await;
    let seen = idp.authorizations();
    assert_eq!(seen.len(), 1);
    for name in [
        "client_id",
        "redirect_uri",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    ] {
        assert_eq!(seen[0][name], q[name], "{name}");
    }

    // The callback signs the new user up.
    let (status, headers, body) = callback(&app, &path, Some(&started.cookie)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["refresh_expires_in"], 86400);
    assert!(body["access_token"].as_str().unwrap().starts_with("eyJ"));
    assert!(body["refresh_token"].as_str().unwrap().starts_with("rt_"));
    let user = body["user_id"].as_str().unwrap();
    let org = body["org_id"].as_str().unwrap();
    let cleared = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cleared.starts_with("rw_sso=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    // The code was exchanged with the verifier of the challenge (the provider checked it).
    let exchanges = idp.token_requests();
    assert_eq!(exchanges.len(), 1);
    assert_eq!(exchanges[0].status, StatusCode::OK);
    let form = &exchanges[0].form;
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["code"], query_param(&path, "code"));
    assert_eq!(form["client_id"], CLIENT_ID);
    assert_eq!(form["client_secret"], CLIENT_SECRET);
    assert_eq!(form["redirect_uri"], REDIRECT_URI);
    assert_eq!(s256(&form["code_verifier"]), q["code_challenge"]);

    // The rows behind it.
    let (stored_email, no_password): (String, bool) =
        sqlx::query_as("SELECT email, password_hash IS NULL FROM users WHERE id = $1::uuid")
            .bind(user)
            .fetch_one(&app.admin)
            .await
            .unwrap();
    assert_eq!((stored_email.as_str(), no_password), (email.as_str(), true));
    let (plan, role): (String, String) = sqlx::query_as(
        "SELECT o.plan, m.role FROM orgs o JOIN memberships m ON m.org_id = o.id WHERE o.id = $1::uuid AND m.user_id = $2::uuid",
    )
    .bind(org)
    .bind(user)
    .fetch_one(&app.admin)
    .await
    .unwrap();
    assert_eq!((plan.as_str(), role.as_str()), ("trial", "owner"));
    let identity: (String, String, String) = sqlx::query_as(
        "SELECT issuer, subject, email FROM user_identities WHERE user_id = $1::uuid",
    )
    .bind(user)
    .fetch_one(&app.admin)
    .await
    .unwrap();
    assert_eq!(
        identity,
        (ISSUER.to_owned(), subject.to_owned(), email.clone())
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM oidc_login_flows").await,
        0,
        "the attempt is spent"
    );
    let actions: Vec<String> = app.outbox(org).await.into_iter().map(|(a, _)| a).collect();
    assert_eq!(actions, ["org.create"]);

    // The access token works.
    let (status, me) = app
        .get("/v1/me", body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user_id"], user);
    assert_eq!(me["email"], email);
    assert_eq!(me["orgs"][0]["org_id"], org);
    assert_eq!(me["orgs"][0]["role"], "owner");

    // The same Google account again: the same user, signed in, nothing new created.
    let (status, again) = sign_in(&app, &idp, IdToken::new(subject, &email)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["user_id"], user);
    assert!(again.get("org_id").is_none(), "{again}");
    assert_ne!(again["refresh_token"], body["refresh_token"]);
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM orgs").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM user_identities").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM sessions").await, 2);
    assert_eq!(idp.jwks_fetches(), 1, "the provider's keys are cached");
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn google_sign_in_links_a_verified_password_account_with_the_same_verified_email(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let (app, idp) = setup(options).await;
    let owner = app.signup("linda").await;

    // Google may report the address in another case: it is the same account.
    let (status, body) = sign_in(
        &app,
        &idp,
        IdToken::new("sub-linda", &owner.email.to_uppercase()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], owner.user_id);
    assert!(body.get("org_id").is_none(), "{body}");

    let linked: (String, String, String) =
        sqlx::query_as("SELECT issuer, subject, user_id::text FROM user_identities")
            .fetch_one(&app.admin)
            .await
            .unwrap();
    assert_eq!(
        linked,
        (
            ISSUER.to_owned(),
            "sub-linda".to_owned(),
            owner.user_id.clone()
        )
    );
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 1);
    assert_eq!(
        count(&app, "SELECT count(*) FROM orgs").await,
        1,
        "no second personal org"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM memberships").await, 1);
    let actions: Vec<String> = app
        .outbox(&owner.org_id)
        .await
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    assert_eq!(
        actions.last().map(String::as_str),
        Some("user.google_linked"),
        "{actions:?}"
    );

    let (status, me) = app
        .get("/v1/me", body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["email"], owner.email);
    assert_eq!(me["orgs"][0]["org_id"], owner.org_id);
    // The password still works, and the identity now signs in by (issuer, subject).
    assert_eq!(app.login(&owner.email, PASSWORD).await.0, StatusCode::OK);
    let (status, again) = sign_in(&app, &idp, IdToken::new("sub-linda", &owner.email)).await;
    assert_eq!(
        (status, &again["user_id"]),
        (StatusCode::OK, &json!(owner.user_id))
    );
    assert_eq!(count(&app, "SELECT count(*) FROM user_identities").await, 1);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn pkce_the_app_redeems_the_code_with_the_verifier_of_its_s256_challenge(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let (app, idp) = setup(options).await;
    let email = unique_email("pkce");
    idp.will_issue(IdToken::new("sub-pkce", &email));

    // The provider is strict: the attempt's verifier swapped for another well-formed one
    // makes it refuse the code, and the app signs nobody in.
    let tampered = start(&app).await;
    let path = authorize(&app, &tampered).await;
    sqlx::query("UPDATE oidc_login_flows SET code_verifier = $1")
        .bind(random_b64(48))
        .execute(&app.admin)
        .await
        .unwrap();
    let (status, _, body) = callback(&app, &path, Some(&tampered.cookie)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let exchanges = idp.token_requests();
    assert_eq!(exchanges.len(), 1);
    assert_eq!(exchanges[0].status, StatusCode::BAD_REQUEST);
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 0);

    // The app's own verifier passes the same provider.
    let started = start(&app).await;
    let path = authorize(&app, &started).await;
    let (status, _, body) = callback(&app, &path, Some(&started.cookie)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let exchange = &idp.token_requests()[1];
    assert_eq!(exchange.status, StatusCode::OK);
    let verifier = &exchange.form["code_verifier"];
    assert!(
        is_pkce_verifier(verifier),
        "43..128 unreserved characters: {verifier}"
    );
    assert_eq!(s256(verifier), started.params["code_challenge"]);
    assert_ne!(
        verifier, &started.params["code_challenge"],
        "never the plain method"
    );
    assert!(
        !started.authorize_url.as_str().contains(verifier.as_str()),
        "the verifier never leaves the server"
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn google_sign_in_without_configuration_is_404_not_configured(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    for path in [
        "/v1/auth/google/start",
        "/v1/auth/google/callback?code=c&state=s",
    ] {
        let (status, headers, body) = app.call_raw(reqwest::Method::GET, path, None, None).await;
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_problem(
            status,
            &headers,
            &body,
            StatusCode::NOT_FOUND,
            "not_configured",
            path,
        );
        assert!(headers.get(header::SET_COOKIE).is_none(), "{path}");
    }
    assert_eq!(
        count(&app, "SELECT count(*) FROM oidc_login_flows").await,
        0
    );
}

/// Attack 1 of issue 10, account takeover by pre-registration: an attacker signs up with the
/// victim's address and waits; the victim signs in with Google. Google's proof of the
/// address wins: the account is the victim's, the attacker's password never signs in and
/// the link the sign-up mailed is dead.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn sso04_pre_registration_then_google_sign_in_leaves_the_attacker_nothing(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let (app, idp) = setup(options).await;
    let victim = unique_email("victim");
    let attacker_password = "attacker chose this one";
    let (status, _) = app
        .post(
            "/v1/auth/signup",
            None,
            json!({"email": victim, "password": attacker_password}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let attackers_link = app.mailed_token(&victim).await;

    let (status, body) = sign_in(&app, &idp, IdToken::new("sub-victim", &victim)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let org = body["org_id"]
        .as_str()
        .expect("the personal org is created now");
    let user = body["user_id"].as_str().unwrap();

    // The attacker's password is gone and their link is dead.
    assert_eq!(
        app.login(&victim, attacker_password).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, refused) = app.verify(&attackers_link).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_token"))
    );
    let (hash, verified): (Option<String>, bool) = sqlx::query_as(
        "SELECT password_hash, email_verified_at IS NOT NULL FROM users WHERE id = $1::uuid",
    )
    .bind(user)
    .fetch_one(&app.admin)
    .await
    .unwrap();
    assert_eq!((hash, verified), (None, true));
    assert_eq!(
        count(&app, "SELECT count(*) FROM email_tokens").await,
        0,
        "the pending sign-up's links are discarded"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 1);

    // The victim owns the account: their org, their identity, audited.
    let (status, me) = app
        .get("/v1/me", body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["orgs"][0]["org_id"], org);
    assert_eq!(me["orgs"][0]["role"], "owner");
    let actions: Vec<String> = app.outbox(org).await.into_iter().map(|(a, _)| a).collect();
    assert_eq!(actions, ["org.create", "user.google_linked"]);
    let (status, again) = sign_in(&app, &idp, IdToken::new("sub-victim", &victim)).await;
    assert_eq!((status, &again["user_id"]), (StatusCode::OK, &json!(user)));
}
