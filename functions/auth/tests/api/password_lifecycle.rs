//! Password lifecycle and session control (issue 10): AUTH-04 (password change), SES-07
//! (session list and revocation, by the user and by an org Owner/Admin), SES-08 (recent
//! re-authentication for sensitive changes), the Argon2 rehash at login, and the account
//! events of login, logout and refresh-token reuse.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::{PASSWORD, Session, Team, TestApp, spawn_app};

const NEW_PASSWORD: &str = "an entirely new passphrase";

async fn change_password(app: &TestApp, token: &str, body: Value) -> (StatusCode, Value) {
    app.post("/v1/auth/password/change", Some(token), body)
        .await
}

/// Makes the session of `token`'s last sign-in look `minutes` old.
async fn age_session(app: &TestApp, user_id: &str, minutes: i32) {
    sqlx::query(
        "UPDATE sessions SET authenticated_at = now() - make_interval(mins => $2)
          WHERE user_id = $1::uuid",
    )
    .bind(user_id)
    .bind(minutes)
    .execute(&app.admin)
    .await
    .unwrap();
}

async fn stored_hash(app: &TestApp, user_id: &str) -> String {
    sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1::uuid")
        .bind(user_id)
        .fetch_one(&app.admin)
        .await
        .unwrap()
}

/// Audit events of `action` in `org`'s outbox.
async fn events(app: &TestApp, org: &str, action: &str) -> Vec<Value> {
    app.outbox(org)
        .await
        .into_iter()
        .map(|(_, payload)| payload)
        .filter(|p| p["action"] == action)
        .collect()
}

async fn login_session(app: &TestApp, s: &Session) -> (String, String) {
    let (status, body) = app.login(&s.email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

async fn me_status(app: &TestApp, token: &str) -> StatusCode {
    app.get("/v1/me", token).await.0
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn auth04_password_change_needs_the_current_password_and_revokes_other_sessions(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let user = app.signup("pw").await;
    let (other_access, other_refresh) = login_session(&app, &user).await;

    // Missing, empty, then wrong current password.
    let (status, body) =
        change_password(&app, &user.access, json!({"new_password": NEW_PASSWORD})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "current_password_required");
    let (status, body) = change_password(
        &app,
        &user.access,
        json!({"current_password": "", "new_password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = change_password(
        &app,
        &user.access,
        json!({"current_password": "not my password at all", "new_password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "invalid_password");
    // A weak new password is refused with the sign-up rules.
    let (status, body) = change_password(
        &app,
        &user.access,
        json!({"current_password": PASSWORD, "new_password": "password1234"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "weak_password");
    // No token at all.
    let (status, _) = app
        .post(
            "/v1/auth/password/change",
            None,
            json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(me_status(&app, &other_access).await, StatusCode::OK);

    let (status, body) = change_password(
        &app,
        &user.access,
        json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["other_sessions_revoked"], 1);

    // The other session is gone at its next request, its refresh token too; this one stays.
    assert_eq!(
        me_status(&app, &other_access).await,
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = app
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": other_refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(me_status(&app, &user.access).await, StatusCode::OK);
    let revoked: Vec<String> = sqlx::query_scalar(
        "SELECT revoked_reason FROM sessions WHERE user_id = $1::uuid AND revoked_at IS NOT NULL",
    )
    .bind(&user.user_id)
    .fetch_all(&app.admin)
    .await
    .unwrap();
    assert_eq!(revoked, ["password_change"]);

    // Only the new password signs in.
    assert_eq!(
        app.login(&user.email, PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.login(&user.email, NEW_PASSWORD).await.0, StatusCode::OK);

    let recorded = events(&app, &user.org_id, "user.password_change").await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["actor"]["id"], user.user_id.as_str());
    assert_eq!(recorded[0]["details"]["other_sessions_revoked"], 1);
    let dump = serde_json::to_string(&app.outbox(&user.org_id).await).unwrap();
    assert!(!dump.contains(PASSWORD) && !dump.contains(NEW_PASSWORD));
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn auth04_wrong_current_passwords_are_throttled_like_logins(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let user = app.signup("guess").await;
    let mut statuses = Vec::new();
    for i in 0..7 {
        let (status, _) = change_password(
            &app,
            &user.access,
            json!({"current_password": format!("wrong guess number {i}"), "new_password": NEW_PASSWORD}),
        )
        .await;
        statuses.push(status);
    }
    assert_eq!(&statuses[..5], [StatusCode::FORBIDDEN; 5]);
    assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    // The right password is not checked while throttled either.
    let (status, body) = change_password(
        &app,
        &user.access,
        json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], "rate_limited");
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn ses08_sensitive_changes_need_a_sign_in_within_five_minutes(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let team = Team::new(&app, "reauth").await;
    let org = team.org();
    let owner = &team.owner;
    age_session(&app, &owner.user_id, 6).await;

    // Password change and ownership transfer (granting, changing or removing Owner).
    let (status, body) = change_password(
        &app,
        &owner.access,
        json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "reauth_required");
    let promote = format!("/v1/orgs/{org}/members/{}", team.admin.user_id);
    let (status, body) = app
        .call(
            Method::PATCH,
            &promote,
            Some(&owner.access),
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "reauth_required");
    // A change that does not touch ownership needs no re-authentication.
    let demote = format!("/v1/orgs/{org}/members/{}", team.member.user_id);
    let (status, body) = app
        .call(
            Method::PATCH,
            &demote,
            Some(&owner.access),
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Four minutes old is recent enough.
    age_session(&app, &owner.user_id, 4).await;
    let (status, body) = app
        .call(
            Method::PATCH,
            &promote,
            Some(&owner.access),
            Some(json!({"role": "owner"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Removing another Owner is an ownership change too.
    age_session(&app, &owner.user_id, 6).await;
    let (status, body) = app
        .call(Method::DELETE, &promote, Some(&owner.access), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "reauth_required");

    // Re-authenticating: a wrong password is refused, the right one refreshes the session.
    let (status, body) = app
        .post(
            "/v1/auth/reauthenticate",
            Some(&owner.access),
            json!({"password": "not the password at all"}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "invalid_password");
    let (status, _) = app
        .post(
            "/v1/auth/reauthenticate",
            None,
            json!({"password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = app
        .post(
            "/v1/auth/reauthenticate",
            Some(&owner.access),
            json!({"password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = app
        .call(Method::DELETE, &promote, Some(&owner.access), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, body) = change_password(
        &app,
        &owner.access,
        json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Re-authentication is per session: another stale session of the same user still needs it.
    let viewer = &team.viewer;
    let (fresh, _) = login_session(&app, viewer).await;
    age_session(&app, &viewer.user_id, 10).await;
    let (status, _) = app
        .post(
            "/v1/auth/reauthenticate",
            Some(&fresh),
            json!({"password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = change_password(
        &app,
        &viewer.access,
        json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "reauth_required");
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn ses07_users_list_and_revoke_their_own_sessions(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let user = app.signup("lister").await;
    let stranger = app.signup("stranger").await;
    // The second sign-in comes from a browser that names itself.
    let reply = app
        .api
        .client
        .post(app.url("/v1/auth/login"))
        .header("user-agent", "Mozilla/5.0 (X11; Linux) Firefox/140.0")
        .json(&json!({"email": user.email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    let reply: Value = reply.json().await.unwrap();
    let second = reply["access_token"].as_str().unwrap().to_owned();
    let second_refresh = reply["refresh_token"].as_str().unwrap().to_owned();

    let (status, page) = app.get("/v1/me/sessions", &user.access).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{page}");
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(items.iter().filter(|s| s["current"] == true).count(), 1);
    for s in items {
        assert_eq!(s["auth_method"], "password");
        assert_eq!(s["ip"], "127.0.0.1");
        assert!(s["authenticated_at"].is_string() && s["expires_at"].is_string());
    }
    let browser = items.iter().find(|s| s["current"] == false).unwrap();
    assert_eq!(
        browser["user_agent"],
        "Mozilla/5.0 (X11; Linux) Firefox/140.0"
    );
    let text = page.to_string();
    for secret in ["rt_", "hash", "revoked", PASSWORD] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let current = items.iter().find(|s| s["current"] == true).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let other = items.iter().find(|s| s["current"] == false).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Pages of one.
    let (_, first) = app.get("/v1/me/sessions?limit=1", &user.access).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    let cursor = first["next_cursor"].as_str().unwrap();
    let (_, rest) = app
        .get(
            &format!("/v1/me/sessions?limit=1&cursor={cursor}"),
            &user.access,
        )
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["next_cursor"], Value::Null);
    assert_ne!(first["items"][0]["id"], rest["items"][0]["id"]);
    let (status, body) = app.get("/v1/me/sessions?cursor=nope", &user.access).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Another user's session, an unknown and a malformed id: 404 alike, nothing revoked.
    let (_, theirs) = app.get("/v1/me/sessions", &stranger.access).await;
    let theirs = theirs["items"][0]["id"].as_str().unwrap().to_owned();
    let unknown = uuid::Uuid::now_v7().to_string();
    let (_, _, reference) = app
        .call_raw(
            Method::DELETE,
            &format!("/v1/me/sessions/{unknown}"),
            Some(&user.access),
            None,
        )
        .await;
    for id in [theirs.as_str(), unknown.as_str(), "not-a-session"] {
        let (status, _, text) = app
            .call_raw(
                Method::DELETE,
                &format!("/v1/me/sessions/{id}"),
                Some(&user.access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{id}: {text}");
        assert_eq!(text, reference, "{id}");
    }
    assert_eq!(me_status(&app, &stranger.access).await, StatusCode::OK);

    // Revoking the other session: its access token fails at its next request, its refresh
    // token at once; the caller's own session is untouched.
    let (status, _, text) = app
        .call_raw(
            Method::DELETE,
            &format!("/v1/me/sessions/{other}"),
            Some(&user.access),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{text}");
    assert_eq!(me_status(&app, &second).await, StatusCode::UNAUTHORIZED);
    let (status, _) = app
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": second_refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(me_status(&app, &user.access).await, StatusCode::OK);
    let (_, page) = app.get("/v1/me/sessions", &user.access).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    // Twice: already revoked, so not found.
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/me/sessions/{other}"),
            Some(&user.access),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let recorded = events(&app, &user.org_id, "session.revoke").await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["details"]["session_id"], other.as_str());
    assert_eq!(recorded[0]["details"]["current"], false);

    // Revoking the current session signs this client out.
    let (status, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/me/sessions/{current}"),
            Some(&user.access),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        me_status(&app, &user.access).await,
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn ses07_owners_and_admins_revoke_a_members_sessions_and_viewers_cannot(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let team = Team::new(&app, "sess").await;
    let other = Team::new(&app, "elsewhere").await;
    let org = team.org();
    let path = |target: &Session| format!("/v1/orgs/{org}/members/{}/sessions", target.user_id);
    let revoke = |caller: &Session, target: &Session| {
        let (token, path) = (caller.access.clone(), path(target));
        let app = &app;
        async move { app.call(Method::DELETE, &path, Some(&token), None).await.0 }
    };

    // Below Admin, and an Admin against an Owner: 403; nothing revoked.
    assert_eq!(
        revoke(&team.viewer, &team.member).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        revoke(&team.member, &team.viewer).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        revoke(&team.admin, &team.owner).await,
        StatusCode::FORBIDDEN
    );
    // A stranger (another org's owner), and a non-member target: 404.
    assert_eq!(
        revoke(&other.owner, &team.member).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        revoke(&team.owner, &other.member).await,
        StatusCode::NOT_FOUND
    );
    for s in [&team.owner, &team.member, &team.viewer, &other.member] {
        assert_eq!(me_status(&app, &s.access).await, StatusCode::OK);
    }

    // The owner revokes the member's sessions (both of them): the next request is 401, in
    // the org and outside it, and the refresh token is dead.
    let (second, _) = login_session(&app, &team.member).await;
    assert_eq!(
        revoke(&team.owner, &team.member).await,
        StatusCode::NO_CONTENT
    );
    for token in [&team.member.access, &second] {
        assert_eq!(me_status(&app, token).await, StatusCode::UNAUTHORIZED);
        let (status, _) = app.get(&format!("/v1/orgs/{org}"), token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = app
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": team.member.refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // They sign in again as usual.
    assert_eq!(
        app.login(&team.member.email, PASSWORD).await.0,
        StatusCode::OK
    );
    // An Admin may revoke a Viewer's; an Owner an Owner's.
    assert_eq!(
        revoke(&team.admin, &team.viewer).await,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        me_status(&app, &team.viewer.access).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(me_status(&app, &team.owner.access).await, StatusCode::OK);

    let recorded = events(&app, org, "member.sessions_revoke").await;
    assert_eq!(recorded.len(), 2, "{recorded:?}");
    assert_eq!(recorded[0]["actor"]["id"], team.owner.user_id.as_str());
    assert_eq!(
        recorded[0]["target"],
        json!({"type": "user", "id": team.member.user_id})
    );
    assert_eq!(recorded[0]["details"]["sessions_revoked"], 2);
    assert!(
        events(&app, other.org(), "member.sessions_revoke")
            .await
            .is_empty()
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn argon2_hashes_with_weaker_parameters_are_upgraded_at_login(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    let app = spawn_app(options).await;
    let user = app.signup("legacy").await;
    let weak = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(4096, 1, 1, None).unwrap(),
    )
    .hash_password(
        PASSWORD.as_bytes(),
        &SaltString::generate(&mut argon2::password_hash::rand_core::OsRng),
    )
    .unwrap()
    .to_string();
    assert!(weak.starts_with("$argon2id$v=19$m=4096,t=1,p=1$"), "{weak}");
    sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1::uuid")
        .bind(&user.user_id)
        .bind(&weak)
        .execute(&app.admin)
        .await
        .unwrap();

    // A wrong password changes nothing.
    assert_eq!(
        app.login(&user.email, "not the password at all").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(stored_hash(&app, &user.user_id).await, weak);

    assert_eq!(app.login(&user.email, PASSWORD).await.0, StatusCode::OK);
    let upgraded = stored_hash(&app, &user.user_id).await;
    assert!(
        upgraded.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{upgraded}"
    );
    assert_eq!(app.login(&user.email, PASSWORD).await.0, StatusCode::OK);
    // A current hash is left as it is.
    assert_eq!(stored_hash(&app, &user.user_id).await, upgraded);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn login_logout_and_refresh_reuse_are_account_events_in_every_org_of_the_user(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let team = Team::new(&app, "events").await;
    let viewer = &team.viewer;
    // The viewer belongs to two orgs: their own and the team's.
    let orgs = [viewer.org_id.as_str(), team.org()];

    let (access, refresh) = login_session(&app, viewer).await;
    for org in orgs {
        let recorded = events(&app, org, "session.login").await;
        assert_eq!(recorded.len(), 1, "{org}: {recorded:?}");
        assert_eq!(recorded[0]["actor"]["id"], viewer.user_id.as_str());
        assert_eq!(recorded[0]["ip"], "127.0.0.1");
    }
    // A failed login is no event (it is a security log line and a throttle count).
    app.login(&viewer.email, "not the password at all").await;
    assert_eq!(events(&app, team.org(), "session.login").await.len(), 1);

    // Refresh-token reuse: the family is revoked and that is recorded, actor system,
    // although the request answers 401.
    let (status, rotated) = app
        .post("/v1/auth/refresh", None, json!({"refresh_token": refresh}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        events(&app, team.org(), "session.refresh_reuse")
            .await
            .is_empty()
    );
    let (status, _) = app
        .post("/v1/auth/refresh", None, json!({"refresh_token": refresh}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    for org in orgs {
        let recorded = events(&app, org, "session.refresh_reuse").await;
        assert_eq!(recorded.len(), 1, "{org}: {recorded:?}");
        assert_eq!(recorded[0]["actor"]["kind"], "system");
        assert_eq!(
            recorded[0]["target"],
            json!({"type": "user", "id": viewer.user_id})
        );
    }
    let rotated_access = rotated["access_token"].as_str().unwrap();
    assert_eq!(
        me_status(&app, rotated_access).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(me_status(&app, &access).await, StatusCode::UNAUTHORIZED);

    // Logout.
    let (status, _) = app
        .call(Method::POST, "/v1/auth/logout", Some(&viewer.access), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for org in orgs {
        let recorded = events(&app, org, "session.logout").await;
        assert_eq!(recorded.len(), 1, "{org}: {recorded:?}");
        assert_eq!(recorded[0]["actor"]["id"], viewer.user_id.as_str());
    }
    let dump = serde_json::to_string(&app.outbox(team.org()).await).unwrap();
    assert!(!dump.contains(PASSWORD) && !dump.contains("rt_") && !dump.contains("eyJ"));
}

/// Everything the app writes to its log, as Cloud Logging JSON lines (the production layer).
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn log05_passwords_and_tokens_of_the_password_lifecycle_never_reach_the_log(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    use tracing_subscriber::layer::SubscriberExt;
    // A second registered dispatcher, alive while this one captures (see runs' log05).
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info,runwarden=debug"))
        .with(runwarden_platform::telemetry::CloudLoggingLayer::new(
            captured.clone(),
            None,
        ));
    // The test runtime has one thread: the app, its tasks and this test all log here.
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = spawn_app(options).await;
    let user = app.signup("logs").await;
    let (_, refresh) = login_session(&app, &user).await;
    let wrong = "a wrong password for the log test";
    app.post(
        "/v1/auth/reauthenticate",
        Some(&user.access),
        json!({"password": wrong}),
    )
    .await;
    app.post(
        "/v1/auth/reauthenticate",
        Some(&user.access),
        json!({"password": PASSWORD}),
    )
    .await;
    change_password(
        &app,
        &user.access,
        json!({"current_password": wrong, "new_password": NEW_PASSWORD}),
    )
    .await;
    let (status, _) = change_password(
        &app,
        &user.access,
        json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    app.post("/v1/auth/refresh", None, json!({"refresh_token": refresh}))
        .await;
    let (_, page) = app.get("/v1/me/sessions", &user.access).await;
    let id = page["items"][0]["id"].as_str().unwrap().to_owned();
    app.call(
        Method::DELETE,
        &format!("/v1/me/sessions/{id}"),
        Some(&user.access),
        None,
    )
    .await;

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("password_changed"),
        "the change is logged: {log}"
    );
    assert!(log.contains("password_check_failed"));
    let signature = user.access.rsplit('.').next().unwrap().to_owned();
    for secret in [
        PASSWORD,
        NEW_PASSWORD,
        wrong,
        refresh.as_str(),
        "$argon2",
        signature.as_str(),
    ] {
        assert!(!log.contains(secret), "{secret} in the log");
    }
}

/// Marks `user`'s address verified, as following their sign-up link does.
async fn verify(app: &TestApp, user: &Session) {
    sqlx::query("UPDATE users SET email_verified_at = now() WHERE id = $1::uuid")
        .bind(&user.user_id)
        .execute(&app.admin)
        .await
        .unwrap();
}

/// The bodies of the password mails to `to` (reset links and notices; not the sign-up's
/// verification), oldest first: counted in the outbox, which the request wrote before it
/// answered, and read from the local mail sink once the sender has delivered them all.
async fn mails_to(app: &TestApp, to: &str) -> Vec<String> {
    const VERIFICATION: &str = "Confirm your email address";
    let written: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM mail_outbox WHERE to_address = $1 AND subject NOT LIKE $2 || '%'",
    )
    .bind(to)
    .bind(VERIFICATION)
    .fetch_one(&app.admin)
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let delivered: Vec<String> =
            runwarden_testkit::mail::messages_to(&runwarden_testkit::mail::dir(), to)
                .into_iter()
                .filter(|m| !m.subject.starts_with(VERIFICATION))
                .map(|m| m.body)
                .collect();
        if delivered.len() as i64 >= written {
            return delivered;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{written} password mail(s) to {to} written, {} delivered to the sink",
            delivered.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The reset token in a mail's link (`…/reset-password?token=pr_…`).
fn reset_token(body: &str) -> Option<String> {
    let (_, rest) = body.split_once("/reset-password?token=")?;
    Some(
        rest.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
            .collect(),
    )
}

async fn forgot(app: &TestApp, email: &str) -> (StatusCode, Value) {
    app.post("/v1/auth/password/forgot", None, json!({"email": email}))
        .await
}

async fn reset(app: &TestApp, token: &str, password: &str) -> (StatusCode, Value) {
    app.post(
        "/v1/auth/password/reset",
        None,
        json!({"token": token, "password": password}),
    )
    .await
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn password_reset_is_single_use_hashed_at_rest_and_revokes_every_session(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let user = app.signup("forgetful").await;
    verify(&app, &user).await;
    let (second, second_refresh) = login_session(&app, &user).await;

    // Known and unknown addresses: the same answer, and one mail each.
    let unknown = crate::helpers::unique_email("nobody");
    let (status, known_body) = forgot(&app, &user.email).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{known_body}");
    let (status, unknown_body) = forgot(&app, &unknown).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(known_body, unknown_body);
    let nobody = mails_to(&app, &unknown).await;
    assert_eq!(nobody.len(), 1);
    assert_eq!(
        reset_token(&nobody[0]),
        None,
        "no link for an unknown address"
    );
    let mails = mails_to(&app, &user.email).await;
    assert_eq!(mails.len(), 1);
    let token = reset_token(&mails[0]).expect("a reset link");
    assert!(token.starts_with("pr_"), "{token}");
    assert!(mails[0].contains("http://localhost:8080/reset-password?token=pr_"));

    // Hashed at rest: the token appears nowhere in the database but the unsent mail.
    let (rows, hashed): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE token_hash = $1) FROM email_tokens
          WHERE user_id = $2::uuid AND purpose = 'password_reset'",
    )
    .bind(runwarden_auth::secret_token::hash(&token))
    .bind(&user.user_id)
    .fetch_one(&app.admin)
    .await
    .unwrap();
    assert_eq!((rows, hashed), (1, 1));
    let dump: String = sqlx::query_scalar("SELECT string_agg(t::text, ' ') FROM email_tokens t")
        .fetch_one(&app.admin)
        .await
        .unwrap();
    assert!(!dump.contains(&token[3..]));

    // Bad tokens, and a weak password (which leaves the link working).
    for bad in [
        "pr_nope",
        "rt_something",
        "",
        &format!("pr_{}", "a".repeat(200)),
    ] {
        let (status, body) = reset(&app, bad, NEW_PASSWORD).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["code"], "invalid_token", "{bad}");
    }
    let (status, body) = reset(&app, &token, "password1234").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "weak_password");
    assert_eq!(me_status(&app, &user.access).await, StatusCode::OK);

    let (status, body) = reset(&app, &token, NEW_PASSWORD).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    // Every session is gone, refresh tokens too.
    for access in [&user.access, &second] {
        assert_eq!(me_status(&app, access).await, StatusCode::UNAUTHORIZED);
    }
    for refresh in [&user.refresh, &second_refresh] {
        let (status, _) = app
            .post("/v1/auth/refresh", None, json!({"refresh_token": refresh}))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        app.login(&user.email, PASSWORD).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.login(&user.email, NEW_PASSWORD).await.0, StatusCode::OK);

    // Single use.
    let (status, body) = reset(&app, &token, "yet another fine passphrase").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid_token");
    assert_eq!(app.login(&user.email, NEW_PASSWORD).await.0, StatusCode::OK);

    let recorded = events(&app, &user.org_id, "user.password_reset").await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0]["actor"]["id"], user.user_id.as_str());
    assert_eq!(recorded[0]["details"]["sessions_revoked"], 2);
    assert_eq!(
        events(&app, &user.org_id, "user.password_reset_request")
            .await
            .len(),
        1
    );
    let outbox = serde_json::to_string(&app.outbox(&user.org_id).await).unwrap();
    assert!(!outbox.contains(&token) && !outbox.contains(NEW_PASSWORD));
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn password_reset_links_expire_after_thirty_minutes_and_unverified_accounts_get_none(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let user = app.signup("late").await;
    // Not verified (as an account from before verification existed): the same answer, a
    // notice without a link.
    sqlx::query("UPDATE users SET email_verified_at = NULL WHERE id = $1::uuid")
        .bind(&user.user_id)
        .execute(&app.admin)
        .await
        .unwrap();
    let (status, _) = forgot(&app, &user.email).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let mails = mails_to(&app, &user.email).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(reset_token(&mails[0]), None);

    verify(&app, &user).await;
    forgot(&app, &user.email).await;
    let token = reset_token(&mails_to(&app, &user.email).await[1]).unwrap();
    let ttl: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM expires_at - created_at)::float8 FROM email_tokens
          WHERE token_hash = $1",
    )
    .bind(runwarden_auth::secret_token::hash(&token))
    .fetch_one(&app.admin)
    .await
    .unwrap();
    assert!((ttl - 1800.0).abs() < 5.0, "{ttl}");
    sqlx::query("UPDATE email_tokens SET expires_at = now() - interval '1 second'")
        .execute(&app.admin)
        .await
        .unwrap();
    let (status, body) = reset(&app, &token, NEW_PASSWORD).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid_token");
    assert_eq!(app.login(&user.email, PASSWORD).await.0, StatusCode::OK);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn password_reset_requests_are_limited_per_address_and_per_ip_alike_for_unknown_addresses(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let user = app.signup("spammed").await;
    verify(&app, &user).await;
    let unknown = crate::helpers::unique_email("ghost");
    for address in [user.email.as_str(), unknown.as_str()] {
        for _ in 0..3 {
            assert_eq!(forgot(&app, address).await.0, StatusCode::ACCEPTED);
        }
        let (status, headers, text) = app
            .call_raw(
                Method::POST,
                "/v1/auth/password/forgot",
                None,
                Some(json!({"email": address})),
            )
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(body["code"], "rate_limited");
        assert!(headers.contains_key("retry-after"));
        assert!(
            headers["ratelimit-policy"]
                .to_str()
                .unwrap()
                .contains("password-reset-address")
        );
        assert_eq!(mails_to(&app, address).await.len(), 3);
    }
    // The client IP: 10 at once across addresses (6 used above).
    let mut statuses = Vec::new();
    for i in 0..5 {
        let (status, _) = forgot(&app, &crate::helpers::unique_email(&format!("ip{i}"))).await;
        statuses.push(status);
    }
    assert_eq!(&statuses[..4], [StatusCode::ACCEPTED; 4], "{statuses:?}");
    assert_eq!(statuses[4], StatusCode::TOO_MANY_REQUESTS, "{statuses:?}");
    // A malformed address is refused before any limit or lookup.
    let (status, body) = forgot(&app, "not an address").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid_email");
}
