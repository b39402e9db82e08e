//! `GET /v1/orgs/{org}/members`, `PATCH|DELETE /v1/orgs/{org}/members/{user}`,
//! `DELETE /v1/orgs/{org}/members/{user}/sessions`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use runwarden_platform::extract::{Json as Body, Path};
use runwarden_platform::page::{ListQuery, Page};
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::access::OrgAccess;
use runwarden_tenancy::{OrgId, Role, UserId};
use serde::Deserialize;

use crate::error::{AuthResult, parse_role};
use crate::members;

pub async fn list(
    access: OrgAccess,
    query: ListQuery<UserId>,
) -> AuthResult<Page<members::Member>> {
    access.require(Role::Viewer)?;
    let OrgAccess { ctx, mut tx } = access;
    let rows = members::list(&mut tx, ctx.org_id, query.cursor, query.fetch_limit()).await?;
    tx.commit().await?;
    Ok(query.page(rows, |m| m.user_id))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRole {
    role: String,
}

pub async fn change_role(
    meta: RequestMeta,
    access: OrgAccess,
    // A malformed user id answers 404, like a member that does not exist.
    Path((_, target)): Path<(OrgId, UserId)>,
    Body(body): Body<ChangeRole>,
) -> AuthResult<impl IntoResponse> {
    let role = parse_role(&body.role)?;
    access.require(Role::Admin)?;
    let OrgAccess { ctx, mut tx } = access;
    members::change_role(&mut tx, &meta, &ctx, target, role).await?;
    tx.commit().await?;
    Ok(Json(serde_json::json!({"user_id": target, "role": role})))
}

pub async fn remove(
    meta: RequestMeta,
    access: OrgAccess,
    // A malformed user id answers 404, like a member that does not exist.
    Path((_, target)): Path<(OrgId, UserId)>,
) -> AuthResult<StatusCode> {
    if target != access.ctx.principal.user_id {
        access.require(Role::Admin)?;
    }
    let OrgAccess { ctx, mut tx } = access;
    members::remove(&mut tx, &meta, &ctx, target).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// SES-07: `DELETE /v1/orgs/{org}/members/{user}/sessions`.
pub async fn revoke_sessions(
    meta: RequestMeta,
    access: OrgAccess,
    // A malformed user id answers 404, like a member that does not exist.
    Path((_, target)): Path<(OrgId, UserId)>,
) -> AuthResult<StatusCode> {
    access.require(Role::Admin)?;
    let OrgAccess { ctx, mut tx } = access;
    members::revoke_sessions(&mut tx, &meta, &ctx, target).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
