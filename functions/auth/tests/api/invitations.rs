//! Invitations: single use, hashed, 7 days, only for the invited email.

use reqwest::StatusCode;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::spawn_app;

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn invitations_are_single_use_hashed_expiring_and_bound_to_the_email(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let owner = app.signup("owner").await;
    let invitee = app.signup("invitee").await;
    let stranger = app.signup("stranger").await;
    let (status, inv) = app
        .post(
            &format!("/v1/orgs/{}/invitations", owner.org_id),
            Some(&owner.access),
            json!({"email": invitee.email.to_uppercase(), "role": "member"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{inv}");
    let token = inv["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("inv_"));
    let days: f64 = sqlx::query_scalar(
        "SELECT extract(epoch FROM expires_at - created_at)::float8 / 86400 FROM invitations",
    )
    .fetch_one(&app.admin)
    .await
    .unwrap();
    assert!((days - 7.0).abs() < 0.01, "{days}");
    let stored: Vec<u8> = sqlx::query_scalar("SELECT token_hash FROM invitations")
        .fetch_one(&app.admin)
        .await
        .unwrap();
    assert_eq!(stored.len(), 32);
    let outbox = serde_json::to_string(&app.outbox(&owner.org_id).await).unwrap();
    assert!(!outbox.contains(&token), "the token never enters an event");

    let accept = format!("/v1/invitations/{token}/accept");
    // Another signed-in user cannot use it, and their attempt does not burn it.
    let (status, _) = app.post(&accept, Some(&stranger.access), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.post(&accept, None, json!({})).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, body) = app.post(&accept, Some(&invitee.access), json!({})).await;
    assert_eq!(
        (status, body["role"].as_str()),
        (StatusCode::OK, Some("member"))
    );
    assert_eq!(
        app.get(&format!("/v1/orgs/{}", owner.org_id), &invitee.access)
            .await
            .0,
        StatusCode::OK
    );
    // Single use.
    assert_eq!(
        app.post(&accept, Some(&invitee.access), json!({})).await.0,
        StatusCode::NOT_FOUND
    );
    let actions: Vec<String> = app
        .outbox(&owner.org_id)
        .await
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    assert!(
        actions.ends_with(&["invitation.create".into(), "member.add".into()]),
        "{actions:?}"
    );

    // Expired invitations are dead; unknown and malformed tokens look the same.
    let (_, inv2) = app
        .post(
            &format!("/v1/orgs/{}/invitations", owner.org_id),
            Some(&owner.access),
            json!({"email": stranger.email, "role": "viewer"}),
        )
        .await;
    sqlx::query(
        "UPDATE invitations SET expires_at = now() - interval '1 second' WHERE accepted_at IS NULL",
    )
    .execute(&app.admin)
    .await
    .unwrap();
    let expired = app
        .post(
            &format!("/v1/invitations/{}/accept", inv2["token"].as_str().unwrap()),
            Some(&stranger.access),
            json!({}),
        )
        .await;
    let unknown = app
        .post(
            "/v1/invitations/inv_nope/accept",
            Some(&stranger.access),
            json!({}),
        )
        .await;
    let malformed = app
        .post(
            "/v1/invitations/garbage/accept",
            Some(&stranger.access),
            json!({}),
        )
        .await;
    assert_eq!(expired.0, StatusCode::NOT_FOUND);
    assert_eq!(expired, unknown);
    assert_eq!(unknown, malformed);
}
