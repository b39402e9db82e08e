//! `GET /v1/auth/google/start` and `GET /v1/auth/google/callback`.
//!
//! `start` creates a single-use login attempt bound to this browser by a random cookie, and
//! redirects to the provider. `callback` consumes the attempt only when state and cookie
//! both match, exchanges the code, verifies the ID token, then signs in the user (see
//! [`crate::google`] and [`crate::accounts::sign_in_with_google`]).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use runwarden_platform::request::RequestMeta;
use serde::Deserialize;

use crate::AppState;
use crate::accounts;
use crate::error::{AuthError, AuthResult};
use crate::google::{self, FLOW_LIFETIME_SECS, GoogleSignIn};

const COOKIE: &str = "rw_sso";
const COOKIE_PATH: &str = "/v1/auth/google";

fn invalid_state() -> AuthError {
    AuthError::invalid(
        "invalid_state",
        "the sign-in attempt is unknown, expired or already used",
    )
}

fn configured(state: &AppState) -> AuthResult<&GoogleSignIn> {
    state
        .google
        .as_deref()
        .ok_or(AuthError::NotConfigured("Google sign-in"))
}

fn set_cookie(response: &mut Response, cookie: &str) -> AuthResult<()> {
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(cookie).map_err(anyhow::Error::new)?,
    );
    Ok(())
}

pub async fn start(State(state): State<AppState>) -> AuthResult<Response> {
    let started = configured(&state)?.start(&state.pool).await?;
    let mut response = Redirect::to(started.redirect.as_str()).into_response();
    set_cookie(
        &mut response,
        &format!(
            "{COOKIE}={}; Path={COOKIE_PATH}; Max-Age={FLOW_LIFETIME_SECS}; HttpOnly; Secure; SameSite=Lax",
            started.browser_binding
        ),
    )?;
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
    let google = configured(&state)?;
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
    let attempt = google::consume_attempt(&state.pool, &flow_state, &binding)
        .await?
        .ok_or_else(invalid_state)?;

    let id_token = google.exchange(&code, &attempt.code_verifier).await?;
    let identity = google.verify_id_token(&id_token, &attempt.nonce).await?;
    let (tokens, created) =
        accounts::sign_in_with_google(&state.pool, &state.signer, &meta, &identity).await?;

    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (status, Json(tokens)).into_response();
    set_cookie(
        &mut response,
        &format!("{COOKIE}=; Path={COOKIE_PATH}; Max-Age=0; HttpOnly; Secure; SameSite=Lax"),
    )?;
    Ok(response)
}
