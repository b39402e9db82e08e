//! `GET /v1/orgs/{org}/members`, `PATCH|DELETE /v1/orgs/{org}/members/{user}`.

use axum::Json;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use runwarden_platform::extract::Json as Body;
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::access::OrgAccess;
use runwarden_tenancy::{Role, UserId};
use serde::Deserialize;

use crate::error::{AuthError, AuthResult};
use crate::members;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    limit: Option<i64>,
    cursor: Option<String>,
}

pub async fn list(
    access: OrgAccess,
    page: Result<Query<Page>, axum::extract::rejection::QueryRejection>,
) -> AuthResult<impl IntoResponse> {
    access.require(Role::Viewer)?;
    let Query(page) = page
        .map_err(|_| AuthError::invalid("invalid_query", "unknown or malformed query parameter"))?;
    let limit = page.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let after: Option<UserId> = match page.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(
            c.parse()
                .map_err(|_| AuthError::invalid("invalid_cursor", "cursor is not valid"))?,
        ),
    };
    let OrgAccess { ctx, mut tx } = access;
    let mut items = members::list(&mut tx, ctx.org_id, after, limit + 1).await?;
    tx.commit().await?;
    let next_cursor = if items.len() as i64 > limit {
        items.truncate(limit as usize);
        items.last().map(|m| m.user_id.to_string())
    } else {
        None
    };
    Ok(Json(
        serde_json::json!({"items": items, "next_cursor": next_cursor}),
    ))
}

/// A user id from the path. A malformed id is just another id that does not exist.
fn target(raw: &str) -> AuthResult<UserId> {
    raw.parse().map_err(|_| AuthError::NotFound)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRole {
    role: String,
}

pub async fn change_role(
    meta: RequestMeta,
    access: OrgAccess,
    Path((_, user)): Path<(String, String)>,
    Body(body): Body<ChangeRole>,
) -> AuthResult<impl IntoResponse> {
    let role: Role = body.role.parse()?;
    access.require(Role::Admin)?;
    let target = target(&user)?;
    let OrgAccess { ctx, mut tx } = access;
    members::change_role(&mut tx, &meta, &ctx, target, role).await?;
    tx.commit().await?;
    Ok(Json(serde_json::json!({"user_id": target, "role": role})))
}

pub async fn remove(
    meta: RequestMeta,
    access: OrgAccess,
    Path((_, user)): Path<(String, String)>,
) -> AuthResult<StatusCode> {
    let target = target(&user)?;
    if target != access.ctx.principal.user_id {
        access.require(Role::Admin)?;
    }
    let OrgAccess { ctx, mut tx } = access;
    members::remove(&mut tx, &meta, &ctx, target).await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
