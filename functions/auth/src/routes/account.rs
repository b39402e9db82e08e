//! Sign-up, login, refresh, logout, `/v1/me` and the JWKS.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use runwarden_platform::extract::Json as Body;
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::{OrgId, UserId, set_tenant};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::email::Email;
use crate::error::{AuthError, AuthResult};
use crate::extract::{AccessToken, LiveUser};
use crate::password::{self, NewPassword};
use crate::sessions::{self, Rotation};
use crate::{AppState, throttle};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    email: String,
    password: SecretString,
    #[serde(default)]
    org_name: Option<String>,
}

pub async fn signup(
    State(state): State<AppState>,
    meta: RequestMeta,
    Body(body): Body<SignupRequest>,
) -> AuthResult<impl IntoResponse> {
    let email = Email::parse(&body.email)?;
    let password = NewPassword::parse(body.password, &[email.local_part()])?;
    let org_name = match body.org_name.as_deref() {
        Some(name) => crate::orgs::parse_org_name(name)?,
        None => format!("{}'s organization", email.local_part()),
    };
    // Hash before looking the email up, so a taken address answers no faster.
    let hash = state.hasher.hash(&password).await?;

    let user = UserId::new();
    let org = OrgId::new();
    let mut tx = state.pool.begin().await?;
    set_tenant(&mut tx, Some(org), Some(user)).await?;
    let inserted = sqlx::query("INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3) ON CONFLICT (email) DO NOTHING")
        .bind(user)
        .bind(email.as_str())
        .bind(&hash)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if inserted == 0 {
        return Err(AuthError::conflict(
            "email_taken",
            "an account with this email already exists",
        ));
    }
    create_personal_org(&mut tx, &meta, org, user, &org_name).await?;
    let mut tokens = sessions::start(&mut tx, &state.signer, user).await?;
    tx.commit().await?;
    tokens.org_id = Some(org);
    tracing::info!(user.id = %user, org.id = %org, "signed up");
    Ok((StatusCode::CREATED, Json(tokens)))
}

/// A new user's own org: trial plan, the user its Owner. Both changes are audited.
pub(crate) async fn create_personal_org(
    tx: &mut sqlx::PgConnection,
    meta: &RequestMeta,
    org: OrgId,
    user: UserId,
    name: &str,
) -> AuthResult<()> {
    super::orgs::insert_org(tx, meta, org, user, name).await
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
    // Throttled attempts are refused before the lookup and the hash, whatever the password.
    let keys = throttle::Keys::new(&email, meta.ip);
    let admitted = throttle::admit(&state.pool, &keys).await?;

    let found = lookup_for_login(&state, &email).await?;
    let (user_id, password_hash) = found.unzip();
    // An unknown email (or an account without a password) is verified against a dummy
    // hash: it costs the same.
    let ok = state
        .hasher
        .verify(&body.password, password_hash.flatten())
        .await?;

    let Some(user) = user_id.filter(|_| ok) else {
        // Counted alike whether the account exists or not, so neither the status nor the
        // timing of later attempts tells them apart.
        throttle::record_failure(&state.pool, &keys).await?;
        let reason = if user_id.is_some() {
            "wrong password"
        } else {
            "unknown account"
        };
        tracing::info!(security_event = "login_failed", reason, "login failed");
        return Err(AuthError::InvalidCredentials);
    };
    let mut conn = state.pool.acquire().await?;
    if admitted.account_has_failures {
        throttle::forget_account(&mut conn, &keys).await?;
    }
    let tokens = sessions::start(&mut conn, &state.signer, user).await?;
    tracing::info!(security_event = "login_succeeded", user.id = %user, "logged in");
    Ok(Json(tokens))
}

/// The user an email names and their password hash (None for a Google-only account).
async fn lookup_for_login(
    state: &AppState,
    email: &Email,
) -> AuthResult<Option<(UserId, Option<String>)>> {
    Ok(
        sqlx::query_as("SELECT id, password_hash FROM users WHERE email = $1")
            .bind(email.as_str())
            .fetch_optional(&state.pool)
            .await?,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    refresh_token: SecretString,
}

pub async fn refresh(
    State(state): State<AppState>,
    Body(body): Body<RefreshRequest>,
) -> AuthResult<impl IntoResponse> {
    let presented = body.refresh_token.expose_secret();
    if !presented.starts_with("rt_") || presented.len() > 128 {
        return Err(AuthError::Unauthenticated);
    }
    let mut tx = state.pool.begin().await?;
    let rotation = sessions::rotate(&mut tx, &state.signer, presented).await?;
    tx.commit().await?;
    match rotation {
        Rotation::Rotated(tokens) => Ok(Json(tokens)),
        Rotation::ReuseDetected { session, user } => {
            tracing::warn!(
                security_event = "refresh_reuse_detected",
                user.id = %user,
                session.id = %session,
                "a used refresh token was presented again; its session is revoked"
            );
            Err(AuthError::Unauthenticated)
        }
        Rotation::Invalid => Err(AuthError::Unauthenticated),
    }
}

pub async fn logout(State(_): State<AppState>, user: LiveUser) -> AuthResult<StatusCode> {
    let LiveUser { principal, mut tx } = user;
    sessions::revoke(&mut tx, principal.session_id, "logout").await?;
    tx.commit().await?;
    tracing::info!(user.id = %principal.user_id, "logged out");
    Ok(StatusCode::NO_CONTENT)
}

/// The hot path: one statement checks the session and reads the user and memberships.
pub async fn me(
    State(state): State<AppState>,
    AccessToken(principal): AccessToken,
) -> AuthResult<impl IntoResponse> {
    let found: Option<(String, sqlx::types::Json<serde_json::Value>)> =
        sqlx::query_as("SELECT email, orgs FROM auth_me($1, $2)")
            .bind(principal.session_id)
            .bind(principal.user_id)
            .fetch_optional(&state.pool)
            .await?;
    let (email, orgs) = found.ok_or(AuthError::Unauthenticated)?;
    Ok(Json(serde_json::json!({
        "user_id": principal.user_id,
        "email": email,
        "orgs": orgs.0,
    })))
}

pub async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    Json(state.signer.jwks())
}
