//! Who is reading usage (see `runwarden_tenancy::access`, shared with auth): the access token is
//! verified, and its session and the caller's membership are read from the database on
//! every request, never trusted from the token.

use axum::extract::{FromRequestParts, RawPathParams};
use axum::http::request::Parts;
use runwarden_tenancy::access::{bearer_principal, enter_org};
use runwarden_tenancy::{OrgContext, OrgId, Role};
use sqlx::{Postgres, Transaction};

use crate::AppState;
use crate::error::{QuotaError, QuotaResult};

/// A live user acting in `/v1/orgs/{org}`: a member, with their current role, and a
/// transaction scoped to that org for row-level security. Not a member (or a terminated
/// org, or a malformed id): 404, the same as an org that does not exist.
pub struct OrgAccess {
    pub ctx: OrgContext,
    pub tx: Transaction<'static, Postgres>,
}

impl OrgAccess {
    /// Authorization, visible in each handler.
    pub fn require(&self, role: Role) -> QuotaResult<()> {
        self.ctx.require(role)?;
        Ok(())
    }
}

impl FromRequestParts<AppState> for OrgAccess {
    type Rejection = QuotaError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let principal = bearer_principal(&parts.headers, &state.verifier)?;
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| QuotaError::NotFound)?;
        let org: OrgId = params
            .iter()
            .find(|(name, _)| *name == "org")
            .and_then(|(_, value)| value.parse().ok())
            .ok_or(QuotaError::NotFound)?;
        let mut tx = state.pool.begin().await?;
        let ctx = enter_org(&mut tx, principal, org).await?;
        Ok(Self { ctx, tx })
    }
}
