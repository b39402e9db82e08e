//! Who is reading. The access token (signed by auth) is verified here, and its session and
//! the caller's membership are read from the database on every request, never trusted from
//! the token, in one round trip (`auth_enter`, shared with auth).

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::header;
use axum::http::request::Parts;
use runwarden_tenancy::{OrgContext, OrgId, Principal, Role};
use runwarden_tokens::AccessClaims;
use sqlx::{Postgres, Transaction};

use crate::AppState;
use crate::error::{AuditError, AuditResult};

/// Verifies the `Authorization: Bearer` access token's signature and claims only.
fn bearer_principal(parts: &Parts, state: &AppState) -> AuditResult<Principal> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AuditError::Unauthenticated)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(AuditError::Unauthenticated)?;
    let claims: AccessClaims = state.verifier.verify(token.trim())?;
    Ok(Principal {
        user_id: claims
            .sub
            .parse()
            .map_err(|_| AuditError::Unauthenticated)?,
        session_id: claims
            .sid
            .parse()
            .map_err(|_| AuditError::Unauthenticated)?,
    })
}

/// A live user acting in `/v1/orgs/{org}`: a member, with their current role, and a
/// transaction scoped to that org for row-level security. Not a member (or a terminated
/// org, or a malformed id): 404, the same as an org that does not exist.
pub struct OrgAccess {
    pub ctx: OrgContext,
    pub tx: Transaction<'static, Postgres>,
}

impl OrgAccess {
    /// Authorization, visible in each handler.
    pub fn require(&self, role: Role) -> AuditResult<()> {
        self.ctx.require(role)?;
        Ok(())
    }
}

impl FromRequestParts<AppState> for OrgAccess {
    type Rejection = AuditError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = bearer_principal(parts, state)?;
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| AuditError::NotFound)?;
        let org: OrgId = params
            .iter()
            .find(|(name, _)| *name == "org")
            .and_then(|(_, value)| value.parse().ok())
            .ok_or(AuditError::NotFound)?;
        let mut tx = state.pool.begin().await?;
        let (live, role): (bool, Option<Role>) =
            sqlx::query_as("SELECT session_live, member_role FROM auth_enter($1, $2, $3)")
                .bind(principal.session_id)
                .bind(principal.user_id)
                .bind(org)
                .fetch_one(&mut *tx)
                .await?;
        if !live {
            return Err(AuditError::Unauthenticated);
        }
        let ctx = OrgContext::resolve(principal, org, role)?;
        Ok(Self { ctx, tx })
    }
}
