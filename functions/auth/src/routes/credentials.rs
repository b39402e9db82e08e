//! A user's own credentials: `POST /v1/auth/reauthenticate`,
//! `POST /v1/auth/password/change`, `GET /v1/me/sessions`, `DELETE /v1/me/sessions/{id}`,
//! and, signed out, `POST /v1/auth/password/forgot` and `POST /v1/auth/password/reset`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use runwarden_platform::extract::{Json as Body, Path};
use runwarden_platform::page::{ListQuery, Page};
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::SessionId;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::AppState;
use crate::credentials;
use crate::email::Email;
use crate::error::{AuthError, AuthResult};
use crate::extract::AccessToken;
use crate::password;
use crate::password_reset;
use crate::sessions::SessionInfo;

/// A password of a signed-in user, given again: an oversized one is refused before any
/// hashing, as at login.
fn bounded(password: &SecretString) -> AuthResult<()> {
    if password.expose_secret().chars().count() > password::MAX_CHARS {
        return Err(AuthError::InvalidPassword);
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReauthenticateRequest {
    password: SecretString,
}

pub async fn reauthenticate(
    State(state): State<AppState>,
    meta: RequestMeta,
    AccessToken(principal): AccessToken,
    Body(body): Body<ReauthenticateRequest>,
) -> AuthResult<StatusCode> {
    bounded(&body.password)?;
    credentials::reauthenticate(&state.pool, &state.hasher, &meta, principal, &body.password)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    #[serde(default)]
    current_password: Option<SecretString>,
    new_password: SecretString,
}

pub async fn change_password(
    State(state): State<AppState>,
    meta: RequestMeta,
    AccessToken(principal): AccessToken,
    Body(body): Body<ChangePasswordRequest>,
) -> AuthResult<Json<serde_json::Value>> {
    let current = body
        .current_password
        .filter(|p| !p.expose_secret().is_empty())
        .ok_or_else(|| {
            AuthError::invalid(
                "current_password_required",
                "current_password is required to change the password",
            )
        })?;
    bounded(&current)?;
    password::check_length(body.new_password.expose_secret())?;
    let revoked = credentials::change_password(
        &state.pool,
        &state.hasher,
        &meta,
        principal,
        &current,
        body.new_password,
    )
    .await?;
    Ok(Json(serde_json::json!({"other_sessions_revoked": revoked})))
}

pub async fn list_sessions(
    State(state): State<AppState>,
    AccessToken(principal): AccessToken,
    query: ListQuery<SessionId>,
) -> AuthResult<Page<SessionInfo>> {
    let rows =
        credentials::list_sessions(&state.pool, principal, query.cursor, query.fetch_limit())
            .await?;
    Ok(query.page(rows, |s| s.id))
}

pub async fn revoke_session(
    State(state): State<AppState>,
    meta: RequestMeta,
    AccessToken(principal): AccessToken,
    // A malformed id answers 404, like a session that does not exist.
    Path(session): Path<SessionId>,
) -> AuthResult<StatusCode> {
    credentials::revoke_session(&state.pool, &meta, principal, session).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForgotRequest {
    email: String,
}

pub async fn forgot_password(
    State(state): State<AppState>,
    meta: RequestMeta,
    Body(body): Body<ForgotRequest>,
) -> AuthResult<(StatusCode, Json<serde_json::Value>)> {
    let email = Email::parse(&body.email)?;
    password_reset::forgot(&state.pool, &state.mailer, &meta, &email).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({
            "status": "accepted",
            "detail": "If this address has a verified account, a link to reset its password is on its way; it works for 30 minutes."
        })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    token: SecretString,
    password: SecretString,
}

pub async fn reset_password(
    State(state): State<AppState>,
    meta: RequestMeta,
    Body(body): Body<ResetRequest>,
) -> AuthResult<StatusCode> {
    password_reset::reset(
        &state.pool,
        &state.hasher,
        &meta,
        &body.token,
        body.password,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
