//! Who is calling. The access token is verified here, and its session and the caller's
//! membership are read from the database on every request, never trusted from the token.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::header;
use axum::http::request::Parts;
use runwarden_tenancy::{OrgContext, OrgId, Principal, Role};
use runwarden_tokens::AccessClaims;
use sqlx::{Postgres, Transaction};

use crate::AppState;
use crate::error::{AuthError, AuthResult};

/// Verifies the `Authorization: Bearer` access token's signature and claims only.
fn bearer_principal(parts: &Parts, state: &AppState) -> AuthResult<Principal> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuthError::Unauthenticated)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(AuthError::Unauthenticated)?;
    let claims: AccessClaims = state.verifier.verify(token.trim())?;
    Ok(Principal {
        user_id: claims.sub.parse().map_err(|_| AuthError::Unauthenticated)?,
        session_id: claims.sid.parse().map_err(|_| AuthError::Unauthenticated)?,
    })
}

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
        let principal = bearer_principal(parts, state)?;
        let mut tx = state.pool.begin().await?;
        let (live, _) = enter(&mut tx, principal, None).await?;
        crate::sessions::require_live(live)?;
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
        bearer_principal(parts, state).map(Self)
    }
}

/// Sets the tenant settings for this transaction and reads the session's liveness and the
/// caller's role in `org`, in one round trip (`auth_enter` in the migrations).
async fn enter(
    tx: &mut sqlx::PgConnection,
    principal: Principal,
    org: Option<OrgId>,
) -> AuthResult<(bool, Option<Role>)> {
    Ok(
        sqlx::query_as("SELECT session_live, member_role FROM auth_enter($1, $2, $3)")
            .bind(principal.session_id)
            .bind(principal.user_id)
            .bind(org)
            .fetch_one(tx)
            .await?,
    )
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
        let principal = bearer_principal(parts, state)?;
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
        let (live, role) = enter(&mut tx, principal, Some(org)).await?;
        crate::sessions::require_live(live)?;
        if role.is_none() {
            // The caller sees a plain 404; operators see who probed which org.
            tracing::info!(
                security_event = "authz_denied",
                reason = "not a member",
                user.id = %principal.user_id,
                org.id = %org,
                "org not visible to caller"
            );
        }
        let ctx = OrgContext::resolve(principal, org, role)?;
        Ok(Self { ctx, tx })
    }
}
