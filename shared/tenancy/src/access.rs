//! Resolving a request's caller, the same way in every function: the access token names a
//! user and a session; the database says, on this request, whether that session is live and
//! which role the user holds in the org. Nothing about authorization is trusted from the
//! token itself.

use http::{HeaderMap, header};
use runwarden_tokens::{AccessClaims, TokenVerifier};
use sqlx::PgConnection;

use crate::{OrgContext, OrgId, Principal, Role};

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// No, a bad, or an expired token, or a session that is no longer live.
    #[error("unauthenticated")]
    Unauthenticated,
    /// Not a member: the org does not exist for this caller.
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Verifies `Authorization: Bearer <access token>` (signature and claims only).
pub fn bearer_principal(
    headers: &HeaderMap,
    verifier: &TokenVerifier,
) -> Result<Principal, AccessError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AccessError::Unauthenticated)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(AccessError::Unauthenticated)?;
    let claims: AccessClaims = verifier
        .verify(token.trim())
        .map_err(|_| AccessError::Unauthenticated)?;
    Ok(Principal {
        user_id: claims
            .sub
            .parse()
            .map_err(|_| AccessError::Unauthenticated)?,
        session_id: claims
            .sid
            .parse()
            .map_err(|_| AccessError::Unauthenticated)?,
    })
}

/// Sets the row-level-security settings for the rest of the caller's transaction and reads
/// the session's liveness and the caller's role in `org`, in one round trip (`auth_enter`).
async fn enter(
    conn: &mut PgConnection,
    principal: Principal,
    org: Option<OrgId>,
) -> Result<(bool, Option<Role>), sqlx::Error> {
    sqlx::query_as("SELECT session_live, member_role FROM auth_enter($1, $2, $3)")
        .bind(principal.session_id)
        .bind(principal.user_id)
        .bind(org)
        .fetch_one(conn)
        .await
}

/// A live session, in a transaction that sees the user's own rows.
pub async fn enter_as_user(
    conn: &mut PgConnection,
    principal: Principal,
) -> Result<(), AccessError> {
    match enter(conn, principal, None).await? {
        (true, _) => Ok(()),
        (false, _) => Err(AccessError::Unauthenticated),
    }
}

/// A live session of a member of `org`, in a transaction scoped to `org`.
pub async fn enter_org(
    conn: &mut PgConnection,
    principal: Principal,
    org: OrgId,
) -> Result<OrgContext, AccessError> {
    let (live, role) = enter(conn, principal, Some(org)).await?;
    if !live {
        return Err(AccessError::Unauthenticated);
    }
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
    OrgContext::resolve(principal, org, role).map_err(|_| AccessError::NotFound)
}
