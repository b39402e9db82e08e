//! Who is calling (see `runwarden_tenancy::access`): the access token is verified here, and
//! its session and the caller's membership are read from the database on every request.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use runwarden_tenancy::access::{bearer_principal, enter_as_user, enter_org};
use runwarden_tenancy::{OrgContext, OrgId, Principal};
use sqlx::{Postgres, Transaction};

use crate::AppState;
use crate::error::{AuthError, AuthResult};

/// A signed-in user whose session is live, with a transaction that sees the user's rows.
pub struct LiveUser {
    pub principal: Principal,
    pub tx: Transaction<'static, Postgres>,
}

impl FromRequestParts<AppState> for LiveUser {
    type Rejection = AuthError;

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
    type Rejection = AuthError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(bearer_principal(&parts.headers, &state.verifier)?))
    }
}

/// A live user acting in `/v1/orgs/{org}`: a member, with their current role, and a
/// transaction scoped to that org for row-level security. Not a member: 404.
pub struct OrgAccess {
    pub ctx: OrgContext,
    pub tx: Transaction<'static, Postgres>,
}

/// Parses an id from the path. A malformed id is just another id that does not exist.
pub fn path_id<T: std::str::FromStr>(raw: &str) -> AuthResult<T> {
    raw.parse().map_err(|_| AuthError::NotFound)
}

impl FromRequestParts<AppState> for OrgAccess {
    type Rejection = AuthError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = bearer_principal(&parts.headers, &state.verifier)?;
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| AuthError::NotFound)?;
        let raw_org = params
            .iter()
            .find(|(name, _)| *name == "org")
            .map(|(_, value)| value)
            .ok_or(AuthError::NotFound)?;
        let org: OrgId = path_id(raw_org)?;
        let mut tx = state.pool.begin().await?;
        let ctx = enter_org(&mut tx, principal, org).await?;
        Ok(Self { ctx, tx })
    }
}
