//! `GET /v1/orgs/{org}/members`, `PATCH|DELETE /v1/orgs/{org}/members/{user}`.

use axum::Json;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use runwarden_events::{AuditEvent, Target};
use runwarden_platform::extract::Json as Body;
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::{OrgId, Role, UserId};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use crate::error::{AuthError, AuthResult};
use crate::extract::{OrgAccess, path_id};
use crate::orgs;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

#[derive(Serialize, sqlx::FromRow)]
pub struct Member {
    user_id: UserId,
    email: String,
    role: Role,
    joined_at: DateTime<Utc>,
}

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
    let OrgAccess { ctx, mut tx } = access;
    ctx.require(Role::Viewer)?;
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
    let mut items: Vec<Member> = sqlx::query_as(
        "SELECT m.user_id, u.email, m.role, m.created_at AS joined_at
           FROM memberships m JOIN users u ON u.id = m.user_id
          WHERE m.org_id = $1 AND ($2::uuid IS NULL OR m.user_id > $2)
          ORDER BY m.user_id
          LIMIT $3",
    )
    .bind(ctx.org_id)
    .bind(after)
    .bind(limit + 1)
    .fetch_all(&mut *tx)
    .await?;
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

/// Locks the org's owner rows and counts them, so two concurrent demotions cannot both
/// see "another owner remains".
async fn lock_owners(tx: &mut PgConnection, org: OrgId) -> AuthResult<i64> {
    let owners: Vec<(UserId,)> = sqlx::query_as(
        "SELECT user_id FROM memberships WHERE org_id = $1 AND role = 'owner' FOR UPDATE",
    )
    .bind(org)
    .fetch_all(tx)
    .await?;
    Ok(owners.len() as i64)
}

async fn member_role(tx: &mut PgConnection, org: OrgId, user: UserId) -> AuthResult<Role> {
    sqlx::query_scalar("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2 FOR UPDATE")
        .bind(org)
        .bind(user)
        .fetch_optional(tx)
        .await?
        .ok_or(AuthError::NotFound)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRole {
    role: Role,
}

pub async fn change_role(
    meta: RequestMeta,
    access: OrgAccess,
    Path((_, user)): Path<(String, String)>,
    Body(body): Body<ChangeRole>,
) -> AuthResult<impl IntoResponse> {
    let OrgAccess { ctx, mut tx } = access;
    ctx.require(Role::Admin)?;
    let target: UserId = path_id(&user)?;
    let owners = lock_owners(&mut tx, ctx.org_id).await?;
    let current = member_role(&mut tx, ctx.org_id, target).await?;
    orgs::check_role_change(ctx.role, current, body.role)?;
    orgs::check_owners_remain(owners, current == Role::Owner, body.role == Role::Owner)?;
    if current != body.role {
        sqlx::query("UPDATE memberships SET role = $3, updated_at = now() WHERE org_id = $1 AND user_id = $2")
            .bind(ctx.org_id)
            .bind(target)
            .bind(body.role)
            .execute(&mut *tx)
            .await?;
        AuditEvent::by_user(
            &meta,
            ctx.org_id,
            ctx.principal.user_id,
            "member.role_change",
            Target::new("user", target),
        )
        .with_details(serde_json::json!({"from": current, "to": body.role}))
        .record(&mut tx)
        .await?;
    }
    tx.commit().await?;
    Ok(Json(
        serde_json::json!({"user_id": target, "role": body.role}),
    ))
}

pub async fn remove(
    meta: RequestMeta,
    access: OrgAccess,
    Path((_, user)): Path<(String, String)>,
) -> AuthResult<StatusCode> {
    let OrgAccess { ctx, mut tx } = access;
    let target: UserId = path_id(&user)?;
    let is_self = target == ctx.principal.user_id;
    if !is_self {
        ctx.require(Role::Admin)?;
    }
    let owners = lock_owners(&mut tx, ctx.org_id).await?;
    let current = member_role(&mut tx, ctx.org_id, target).await?;
    orgs::check_removal(ctx.role, is_self, current)?;
    orgs::check_owners_remain(owners, current == Role::Owner, false)?;
    sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
        .bind(ctx.org_id)
        .bind(target)
        .execute(&mut *tx)
        .await?;
    AuditEvent::by_user(
        &meta,
        ctx.org_id,
        ctx.principal.user_id,
        "member.remove",
        Target::new("user", target),
    )
    .with_details(serde_json::json!({"role": current}))
    .record(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
