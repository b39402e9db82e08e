//! Sign-up, email verification, login, refresh, logout, `/v1/me` and the JWKS.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use runwarden_platform::extract::Json as Body;
use runwarden_platform::request::RequestMeta;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::AppState;
use crate::accounts;
use crate::email::Email;
use crate::error::{AuthError, AuthResult};
use crate::extract::{AccessToken, LiveUser};
use crate::orgs::OrgName;
use crate::password::{self, NewPassword};
use crate::sessions::{self, Rotation};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    email: String,
    password: SecretString,
    #[serde(default)]
    org_name: Option<String>,
}

/// What sign-up and resend answer, whoever has the address.
const ACCEPTED: &str = "verification_sent";

pub async fn signup(
    State(state): State<AppState>,
    meta: RequestMeta,
    Body(body): Body<SignupRequest>,
) -> AuthResult<impl IntoResponse> {
    let email = Email::parse(&body.email)?;
    let password = NewPassword::parse(body.password, &[email.local_part()])?;
    let org_name = match body.org_name.as_deref() {
        Some(name) => OrgName::parse(name)?,
        None => OrgName::personal(email.local_part()),
    };
    accounts::sign_up(
        &state.pool,
        &state.hasher,
        &state.mailer,
        meta.ip,
        &email,
        &password,
        &org_name,
    )
    .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"status": ACCEPTED})),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    token: SecretString,
}

pub async fn verify_email(
    State(state): State<AppState>,
    meta: RequestMeta,
    Body(body): Body<VerifyRequest>,
) -> AuthResult<impl IntoResponse> {
    let tokens = accounts::verify_email(
        &state.pool,
        &state.signer,
        &meta,
        body.token.expose_secret(),
    )
    .await?;
    Ok(Json(tokens))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResendRequest {
    email: String,
}

pub async fn resend_verification(
    State(state): State<AppState>,
    meta: RequestMeta,
    Body(body): Body<ResendRequest>,
) -> AuthResult<impl IntoResponse> {
    let email = Email::parse(&body.email)?;
    accounts::resend_verification(&state.pool, &state.mailer, meta.ip, &email).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({"status": ACCEPTED})),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: SecretString,
}

pub async fn login(
    State(state): State<AppState>,
    meta: RequestMeta,
    Body(body): Body<LoginRequest>,
) -> AuthResult<impl IntoResponse> {
    // Malformed input is refused before any lookup or hashing, the same way for every account.
    let email = Email::parse(&body.email).map_err(|_| AuthError::InvalidCredentials)?;
    if body.password.expose_secret().chars().count() > password::MAX_CHARS {
        return Err(AuthError::InvalidCredentials);
    }
    let tokens = accounts::log_in(
        &state.pool,
        &state.hasher,
        &state.signer,
        &meta,
        &email,
        &body.password,
    )
    .await?;
    Ok(Json(tokens))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: SecretString,
}

pub async fn refresh(
    State(state): State<AppState>,
    meta: RequestMeta,
    Body(body): Body<RefreshRequest>,
) -> AuthResult<impl IntoResponse> {
    let presented = body.refresh_token.expose_secret();
    if !presented.starts_with("rt_") || presented.len() > 128 {
        return Err(AuthError::unauthenticated());
    }
    match sessions::refresh(&state.pool, &state.signer, &meta, presented).await? {
        Rotation::Rotated(tokens) => Ok(Json(tokens)),
        Rotation::ReuseDetected { session, user } => {
            tracing::warn!(
                security_event = "refresh_reuse_detected",
                user.id = %user,
                session.id = %session,
                "a used refresh token was presented again; its session is revoked"
            );
            Err(AuthError::unauthenticated())
        }
        Rotation::Invalid => Err(AuthError::unauthenticated()),
    }
}

pub async fn logout(
    State(_): State<AppState>,
    meta: RequestMeta,
    user: LiveUser,
) -> AuthResult<StatusCode> {
    let LiveUser { principal, mut tx } = user;
    sessions::logout(&mut tx, &meta, principal).await?;
    tx.commit().await?;
    tracing::info!(user.id = %principal.user_id, "logged out");
    Ok(StatusCode::NO_CONTENT)
}

pub async fn me(
    State(state): State<AppState>,
    AccessToken(principal): AccessToken,
) -> AuthResult<impl IntoResponse> {
    let me = accounts::me(&state.pool, principal)
        .await?
        .ok_or_else(AuthError::unauthenticated)?;
    Ok(Json(me))
}

pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    Json(state.jwks.as_ref().clone())
}
