//! `GET /v1/auth/google/start` and `GET /v1/auth/google/callback`.
//!
//! `start` creates a single-use login attempt (state, nonce, PKCE verifier) bound to this
//! browser by a random cookie, and redirects to the provider. `callback` consumes the
//! attempt only when state and cookie both match, exchanges the code, verifies the ID
//! token, then signs in the user: by (issuer, subject) if known, else by linking the
//! verified email to an existing account, else by creating one with a personal org.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::{OrgId, UserId, set_tenant};
use serde::Deserialize;

use crate::AppState;
use crate::error::{AuthError, AuthResult};
use crate::google::GoogleIdentity;
use crate::{secret_token, sessions};

const COOKIE: &str = "rw_sso";
const COOKIE_PATH: &str = "/v1/auth/google";
const FLOW_LIFETIME_SECS: i64 = 600;

fn invalid_state() -> AuthError {
    AuthError::invalid(
        "invalid_state",
        "the sign-in attempt is unknown, expired or already used",
    )
}

pub async fn start(State(state): State<AppState>) -> AuthResult<Response> {
    let google = state
        .google
        .as_ref()
        .ok_or(AuthError::NotConfigured("Google sign-in"))?;
    let flow_state = secret_token::random_b64(32);
    let binding = secret_token::random_b64(32);
    let nonce = secret_token::random_b64(32);
    let verifier = secret_token::random_b64(48);
    let mut conn = state.pool.acquire().await?;
    sqlx::query("DELETE FROM oidc_login_flows WHERE expires_at < now()")
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO oidc_login_flows (state_hash, browser_binding_hash, nonce, code_verifier, expires_at)
         VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
    )
    .bind(secret_token::hash(&flow_state))
    .bind(secret_token::hash(&binding))
    .bind(&nonce)
    .bind(&verifier)
    .bind(FLOW_LIFETIME_SECS as f64)
    .execute(&mut *conn)
    .await?;
    let url = google.authorization_url(
        &flow_state,
        &nonce,
        &secret_token::pkce_challenge(&verifier),
    );
    let cookie = format!(
        "{COOKIE}={binding}; Path={COOKIE_PATH}; Max-Age={FLOW_LIFETIME_SECS}; HttpOnly; Secure; SameSite=Lax"
    );
    let mut response = Redirect::to(url.as_str()).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(anyhow::Error::new)?,
    );
    Ok(response)
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

pub async fn callback(
    State(state): State<AppState>,
    meta: RequestMeta,
    headers: HeaderMap,
    query: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> AuthResult<Response> {
    let google = state
        .google
        .as_ref()
        .ok_or(AuthError::NotConfigured("Google sign-in"))?;
    let Query(query) = query.map_err(|_| invalid_state())?;
    if query.error.is_some() {
        return Err(AuthError::invalid(
            "sso_denied",
            "the provider did not authorize the sign-in",
        ));
    }
    let (Some(code), Some(flow_state), Some(binding)) =
        (query.code, query.state, cookie_value(&headers))
    else {
        return Err(invalid_state());
    };
    // Single use: the attempt is deleted as it is read, and only with the matching cookie.
    let flow: Option<(String, String)> = sqlx::query_as(
        "DELETE FROM oidc_login_flows
          WHERE state_hash = $1 AND browser_binding_hash = $2 AND expires_at > now()
      RETURNING nonce, code_verifier",
    )
    .bind(secret_token::hash(&flow_state))
    .bind(secret_token::hash(&binding))
    .fetch_optional(&state.pool)
    .await?;
    let (nonce, verifier) = flow.ok_or_else(invalid_state)?;

    let id_token = google.exchange(&code, &verifier).await?;
    let identity = google.verify_id_token(&id_token, &nonce).await?;
    let (tokens, created) = sign_in(&state, &meta, &identity).await?;

    let clear = format!("{COOKIE}=; Path={COOKIE_PATH}; Max-Age=0; HttpOnly; Secure; SameSite=Lax");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (status, Json(tokens)).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&clear).map_err(anyhow::Error::new)?,
    );
    Ok(response)
}

async fn sign_in(
    state: &AppState,
    meta: &RequestMeta,
    identity: &GoogleIdentity,
) -> AuthResult<(sessions::TokenPair, bool)> {
    let mut tx = state.pool.begin().await?;
    let known: Option<UserId> = sqlx::query_scalar(
        "SELECT user_id FROM user_identities WHERE issuer = $1 AND subject = $2",
    )
    .bind(&identity.issuer)
    .bind(&identity.subject)
    .fetch_optional(&mut *tx)
    .await?;
    let (user, org, created) = match known {
        Some(user) => (user, None, false),
        None => {
            let existing: Option<UserId> =
                sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
                    .bind(identity.email.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            let (user, org, created) = match existing {
                Some(user) => {
                    tracing::info!(security_event = "sso_linked", user.id = %user, "Google identity linked by verified email");
                    (user, None, false)
                }
                None => {
                    let user = UserId::new();
                    let org = OrgId::new();
                    set_tenant(&mut tx, Some(org), Some(user)).await?;
                    sqlx::query("INSERT INTO users (id, email) VALUES ($1, $2)")
                        .bind(user)
                        .bind(identity.email.as_str())
                        .execute(&mut *tx)
                        .await?;
                    let name = format!("{}'s organization", identity.email.local_part());
                    super::account::create_personal_org(&mut tx, meta, org, user, &name).await?;
                    (user, Some(org), true)
                }
            };
            sqlx::query(
                "INSERT INTO user_identities (issuer, subject, user_id, email) VALUES ($1, $2, $3, $4)",
            )
            .bind(&identity.issuer)
            .bind(&identity.subject)
            .bind(user)
            .bind(identity.email.as_str())
            .execute(&mut *tx)
            .await?;
            (user, org, created)
        }
    };
    let mut tokens = sessions::start(&mut tx, &state.signer, user).await?;
    tx.commit().await?;
    tokens.org_id = org;
    Ok((tokens, created))
}
