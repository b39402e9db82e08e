//! Resolving a request's caller, the same way in every function: the access token names a
//! user and a session; the database says, on this request, whether that session is live and
//! which role the user holds in the org. Nothing about authorization is trusted from the
//! token itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::{FromRequestParts, RawPathParams};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderMap, header};
use runwarden_tokens::{AccessClaims, TokenVerifier};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::{OrgContext, OrgId, Principal, Role, TenancyError};

#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// No, a bad, or an expired token, or a session that is no longer live.
    #[error("unauthenticated")]
    Unauthenticated,
    /// Not a member: the org does not exist for this caller.
    #[error("not found")]
    NotFound,
    /// 429: the org's request rate is spent (see [`OrgBudget`]).
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    /// A member of an org restricted to a Google Workspace domain, on a session that did not
    /// come from Google sign-in in that domain (`auth_enter`'s `sso_required`).
    #[error("this organization requires Google sign-in from its Workspace domain")]
    SsoRequired,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// As every other API error: the platform's error core answers and writes the one security
/// log line (401 `authn_failed`, a non-member's 404 `tenancy_denied`).
impl IntoResponse for AccessError {
    fn into_response(self) -> Response {
        runwarden_platform::error::ApiError::from(self).into_response()
    }
}

/// A function's state, as far as resolving callers goes.
pub trait AccessState: Send + Sync {
    /// The function's runtime-role pool.
    fn pool(&self) -> &PgPool;
    /// auth's public keys, for access tokens.
    fn verifier(&self) -> &TokenVerifier;
}

/// A live user acting in `/v1/orgs/{org}/...`: a member, with their current role, and a
/// transaction scoped to that org for row-level security. Not a member (or a terminated
/// org, or a malformed id): 404, the same as an org that does not exist.
pub struct OrgAccess {
    pub ctx: OrgContext,
    pub tx: Transaction<'static, Postgres>,
}

impl OrgAccess {
    /// Authorization, visible in each handler.
    pub fn require(&self, role: Role) -> Result<(), TenancyError> {
        self.ctx.require(role).map(|_| ())
    }
}

impl<S: AccessState> FromRequestParts<S> for OrgAccess {
    type Rejection = AccessError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let principal = bearer_principal_refetching(&parts.headers, state.verifier()).await?;
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| AccessError::NotFound)?;
        let org: OrgId = params
            .iter()
            .find(|(name, _)| *name == "org")
            .and_then(|(_, value)| value.parse().ok())
            .ok_or(AccessError::NotFound)?;
        // The org's request budget, charged only for a live member (checked in the same
        // statement), before the transaction begins: never under its row lock.
        if let Some(budget) = parts.extensions.get::<OrgBudget>().cloned() {
            budget.charge_member(principal, org).await?;
        }
        let mut tx = state.pool().begin().await?;
        let ctx = enter_org(&mut tx, principal, org).await?;
        Ok(Self { ctx, tx })
    }
}

/// A boxed charge of an org's request budget.
pub type Charging = Pin<Box<dyn Future<Output = Result<(), AccessError>> + Send>>;

/// How a request charges an org's request budget (the per-org rate of its plan). The
/// rate-limit layer (`runwarden_ratelimit::served`) implements it and puts an
/// [`OrgBudget`] in every request's extensions; tenancy only calls it, once the caller is
/// known to belong to the org.
pub trait Charge: Send + Sync {
    /// Charges `org` one request if `principal` holds a live session of a member of `org`
    /// (read in the same statement as the charge); a non-member charges nothing (the
    /// request is answered 404 later). [`AccessError::RateLimited`] when the budget is
    /// spent, [`AccessError::Database`] when the database cannot decide.
    fn charge_member(&self, principal: Principal, org: OrgId) -> Charging;
    /// Charges `org` one request for a caller whose access to it the caller has already
    /// checked (a media token's holder, after runs has checked the membership).
    fn charge_checked(&self, org: OrgId) -> Charging;
}

/// The request's handle on the org budgets (see [`Charge`]). As an extractor it never
/// fails: without the rate-limit layer (a router under test without it) nothing is charged.
#[derive(Clone)]
pub struct OrgBudget(Option<Arc<dyn Charge>>);

impl OrgBudget {
    pub fn new(charge: Arc<dyn Charge>) -> Self {
        Self(Some(charge))
    }

    /// Charges nothing.
    pub fn none() -> Self {
        Self(None)
    }

    /// See [`Charge::charge_member`].
    pub async fn charge_member(&self, principal: Principal, org: OrgId) -> Result<(), AccessError> {
        match &self.0 {
            Some(charge) => charge.charge_member(principal, org).await,
            None => Ok(()),
        }
    }

    /// See [`Charge::charge_checked`].
    pub async fn charge_checked(&self, org: OrgId) -> Result<(), AccessError> {
        match &self.0 {
            Some(charge) => charge.charge_checked(org).await,
            None => Ok(()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for OrgBudget {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<OrgBudget>()
            .cloned()
            .unwrap_or_else(OrgBudget::none))
    }
}

/// Verifies `Authorization: Bearer <access token>` (signature and claims only) with the keys
/// the verifier holds now: no fetch, no await. auth, whose verifier holds every key it
/// publishes, uses this; the other functions use [`bearer_principal_refetching`].
pub fn bearer_principal(
    headers: &HeaderMap,
    verifier: &TokenVerifier,
) -> Result<Principal, AccessError> {
    principal(verifier.verify(bearer_token(headers)?))
}

/// [`bearer_principal`], and a token signed by a key the verifier does not know yet (auth
/// rotated its key) refetches auth's JWKS first, bounded by the verifier's refresh settings.
/// A known key is the same synchronous lookup.
pub async fn bearer_principal_refetching(
    headers: &HeaderMap,
    verifier: &TokenVerifier,
) -> Result<Principal, AccessError> {
    principal(verifier.verify_or_refetch(bearer_token(headers)?).await)
}

fn bearer_token(headers: &HeaderMap) -> Result<&str, AccessError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(AccessError::Unauthenticated)?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or(AccessError::Unauthenticated)?;
    Ok(token.trim())
}

fn principal(
    verified: Result<AccessClaims, runwarden_tokens::TokenError>,
) -> Result<Principal, AccessError> {
    let claims = verified.map_err(|_| AccessError::Unauthenticated)?;
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
/// the session's liveness, the caller's role in `org` and whether the org's Workspace
/// domain refuses this session, in one round trip (`auth_enter`).
async fn enter(
    conn: &mut PgConnection,
    principal: Principal,
    org: Option<OrgId>,
) -> Result<(bool, Option<Role>, bool), sqlx::Error> {
    sqlx::query_as("SELECT session_live, member_role, sso_required FROM auth_enter($1, $2, $3)")
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
        (true, _, _) => Ok(()),
        (false, _, _) => Err(AccessError::Unauthenticated),
    }
}

/// A live session of a member of `org`, in a transaction scoped to `org`.
pub async fn enter_org(
    conn: &mut PgConnection,
    principal: Principal,
    org: OrgId,
) -> Result<OrgContext, AccessError> {
    let (live, role, sso_required) = enter(conn, principal, Some(org)).await?;
    if !live {
        return Err(AccessError::Unauthenticated);
    }
    if sso_required {
        // A member: telling them how to get in reveals nothing they do not know.
        tracing::info!(
            security_event = "sso_required",
            user.id = %principal.user_id,
            org.id = %org,
            "session did not come from the org's Google Workspace domain"
        );
        return Err(AccessError::SsoRequired);
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
