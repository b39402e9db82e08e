//! Who is calling (see `runwarden_tenancy::access`): the access token is verified here, and
//! its session (and, for org routes, the caller's membership through tenancy's
//! `OrgAccess`) is read from the database on every request.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use runwarden_platform::error::ApiError;
use runwarden_tenancy::Principal;
use runwarden_tenancy::access::{AccessState, bearer_principal, enter_as_user};
use runwarden_tokens::TokenVerifier;
use sqlx::{PgPool, Postgres, Transaction};

use crate::AppState;

impl AccessState for AppState {
    fn pool(&self) -> &PgPool {
        &self.pool
    }

    fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }
}

/// A signed-in user whose session is live, with a transaction that sees the user's rows.
pub struct LiveUser {
    pub principal: Principal,
    pub tx: Transaction<'static, Postgres>,
}

impl FromRequestParts<AppState> for LiveUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = bearer_principal(&parts.headers, &state.verifier)?;
        let mut tx = state.pool.begin().await?;
        enter_as_user(&mut tx, principal).await?;
        Ok(Self { principal, tx })
    }
}

/// A verified access token whose session has not been checked yet: for handlers that check
/// it in their own single statement (`GET /v1/me`).
pub struct AccessToken(pub Principal);

impl FromRequestParts<AppState> for AccessToken {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(bearer_principal(&parts.headers, &state.verifier)?))
    }
}
