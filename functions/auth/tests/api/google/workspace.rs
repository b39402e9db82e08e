//! An org restricted to a Google Workspace domain (SSO-04, "Linking without takeover"):
//! only an Owner sets it, only from a Google session in that domain; then members reach the
//! org only through a session whose Google `hd` is that domain. A password session, a
//! consumer Google account or a foreign `hd` linked to a member's email get 403
//! `sso_required`; a stranger still gets 404.

use reqwest::Method;

use super::*;
use crate::helpers::Session;

const DOMAIN: &str = "corp.example";

fn corp_email(prefix: &str) -> String {
    format!("{prefix}-{}@{DOMAIN}", uuid::Uuid::new_v4().simple())
}

async fn signup_as(app: &TestApp, email: &str) -> Session {
    app.signup_email(email).await
}

async fn patch_org(app: &TestApp, org: &str, token: &str, body: Value) -> (StatusCode, Value) {
    app.call(
        Method::PATCH,
        &format!("/v1/orgs/{org}"),
        Some(token),
        Some(body),
    )
    .await
}

fn access(body: &Value) -> String {
    body["access_token"].as_str().unwrap().to_owned()
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn sso04_a_workspace_domain_org_admits_only_google_sessions_from_that_domain(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let (app, idp) = setup(options).await;

    // The Owner signs up with Google from the Workspace.
    let owner_email = corp_email("owner");
    let (status, owner) = sign_in(
        &app,
        &idp,
        IdToken::new("sub-owner", &owner_email).with(json!({"hd": DOMAIN})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{owner}");
    let org = owner["org_id"].as_str().unwrap().to_owned();
    let owner_token = access(&owner);
    let hd: Option<String> = sqlx::query_scalar("SELECT google_hd FROM sessions")
        .fetch_one(&app.admin)
        .await
        .unwrap();
    assert_eq!(hd.as_deref(), Some(DOMAIN), "the session keeps its hd");

    // A member and an Admin with company addresses but password sessions.
    let owner_session = Session {
        user_id: owner["user_id"].as_str().unwrap().into(),
        org_id: org.clone(),
        email: owner_email.clone(),
        access: owner_token.clone(),
        refresh: owner["refresh_token"].as_str().unwrap().into(),
    };
    let member = signup_as(&app, &corp_email("member")).await;
    let admin = signup_as(&app, &corp_email("admin")).await;
    app.add_member(&owner_session, &member, "member").await;
    app.add_member(&owner_session, &admin, "admin").await;
    let stranger = app.signup("stranger").await;

    // Only an Owner sets the domain; it must be a domain; and the Owner's own session
    // must come from it (else they would lock themself out).
    let (status, body) = patch_org(
        &app,
        &org,
        &admin.access,
        json!({"google_workspace_domain": DOMAIN}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden")),
        "{body}"
    );
    let (status, body) = patch_org(
        &app,
        &org,
        &owner_token,
        json!({"google_workspace_domain": "not a domain"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_domain")),
        "{body}"
    );
    let (status, body) = patch_org(
        &app,
        &org,
        &owner_token,
        json!({"google_workspace_domain": "other.example"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::CONFLICT, Some("workspace_domain_mismatch")),
        "{body}"
    );
    let (status, body) = patch_org(&app, &org, &owner_token, json!({})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("empty_update")),
        "{body}"
    );
    let (status, body) = patch_org(
        &app,
        &org,
        &owner_token,
        json!({"google_workspace_domain": "Corp.Example"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["google_workspace_domain"], DOMAIN);
    let (action, event) = app.outbox(&org).await.pop().unwrap();
    assert_eq!(action, "org.update");
    assert_eq!(
        event["details"],
        json!({"fields": ["google_workspace_domain"], "google_workspace_domain": DOMAIN})
    );

    // Password sessions of members: 403 sso_required, on reads and writes alike.
    let org_path = format!("/v1/orgs/{org}");
    for (who, token) in [("member", &member.access), ("admin", &admin.access)] {
        for path in [org_path.clone(), format!("{org_path}/members")] {
            let (status, body) = app.get(&path, token).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (StatusCode::FORBIDDEN, Some("sso_required")),
                "{who} {path}: {body}"
            );
        }
    }
    let (status, body) = patch_org(&app, &org, &admin.access, json!({"name": "Hijacked"})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("sso_required")),
        "{body}"
    );
    // A stranger learns nothing: 404, as for any org they are not in.
    let (status, body) = app.get(&org_path, &stranger.access).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_found")),
        "{body}"
    );
    // The Owner's Google session from the domain is admitted.
    let (status, body) = app.get(&org_path, &owner_token).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // The member signs in with Google from the Workspace: admitted, and still after a
    // refresh (the session keeps its hd).
    let (status, signed_in) = sign_in(
        &app,
        &idp,
        IdToken::new("sub-member", &member.email).with(json!({"hd": DOMAIN})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{signed_in}");
    assert_eq!(signed_in["user_id"], member.user_id);
    let (status, body) = app.get(&org_path, &access(&signed_in)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, refreshed) = app
        .post(
            "/v1/auth/refresh",
            None,
            json!({"refresh_token": signed_in["refresh_token"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let (status, body) = app.get(&org_path, &access(&refreshed)).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A Google account with the Admin's address from a foreign domain, or a consumer
    // account (no hd): linked or not, no access to the org.
    for (subject, token) in [
        (
            "sub-foreign",
            IdToken::new("sub-foreign", &admin.email).with(json!({"hd": "evil.example"})),
        ),
        ("sub-consumer", IdToken::new("sub-consumer", &admin.email)),
    ] {
        let (status, body) = sign_in(&app, &idp, token).await;
        assert!(status.is_success(), "{subject}: {status} {body}");
        let (status, body) = app.get(&org_path, &access(&body)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("sso_required")),
            "{subject}: {body}"
        );
    }

    // The Owner lifts the restriction: password sessions are members again.
    let (status, body) = patch_org(
        &app,
        &org,
        &owner_token,
        json!({"google_workspace_domain": null}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["google_workspace_domain"], Value::Null);
    let (status, body) = app.get(&org_path, &member.access).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The `hd` claim is a domain or the ID token is refused; a Google session never carries
/// anything else.
#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn sso04_an_unusable_hd_claim_is_rejected(_: PgPoolOptions, options: PgConnectOptions) {
    let (app, idp) = setup(options).await;
    let (status, body) = sign_in(
        &app,
        &idp,
        IdToken::new("sub-odd", &corp_email("odd")).with(json!({"hd": "not a domain"})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(count(&app, "SELECT count(*) FROM sessions").await, 0);
}
