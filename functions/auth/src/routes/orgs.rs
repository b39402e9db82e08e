//! `POST /v1/orgs`, `GET|PATCH /v1/orgs/{org}`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use runwarden_events::{AuditEvent, Target};
use runwarden_platform::extract::Json as Body;
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::{OrgId, Role, UserId, set_tenant};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

use crate::AppState;
use crate::error::AuthResult;
use crate::extract::{LiveUser, OrgAccess};
use crate::orgs::parse_org_name;

#[derive(Serialize, sqlx::FromRow)]
pub struct Org {
    id: OrgId,
    name: String,
    plan: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

/// Inserts an org with `owner` as its Owner, and its audit event. The transaction's
/// tenant setting must already be `org`.
pub(crate) async fn insert_org(
    tx: &mut PgConnection,
    meta: &RequestMeta,
    org: OrgId,
    owner: UserId,
    name: &str,
) -> AuthResult<()> {
    sqlx::query("INSERT INTO orgs (id, name) VALUES ($1, $2)")
        .bind(org)
        .bind(name)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3)")
        .bind(org)
        .bind(owner)
        .bind(Role::Owner)
        .execute(&mut *tx)
        .await?;
    // One action, one event: the owner's membership is part of creating the org.
    AuditEvent::by_user(meta, org, owner, "org.create", Target::new("org", org))
        .with_details(serde_json::json!({"plan": "trial", "owner": owner}))
        .record(tx)
        .await?;
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    name: String,
}

pub async fn create(
    State(_): State<AppState>,
    meta: RequestMeta,
    user: LiveUser,
    Body(body): Body<CreateOrg>,
) -> AuthResult<impl IntoResponse> {
    let name = parse_org_name(&body.name)?;
    let LiveUser { principal, mut tx } = user;
    let org = OrgId::new();
    set_tenant(&mut tx, Some(org), Some(principal.user_id)).await?;
    insert_org(&mut tx, &meta, org, principal.user_id, &name).await?;
    let created = fetch(&mut tx, org).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)))
}

async fn fetch(tx: &mut PgConnection, org: OrgId) -> AuthResult<Org> {
    Ok(
        sqlx::query_as("SELECT id, name, plan, created_at, updated_at FROM orgs WHERE id = $1")
            .bind(org)
            .fetch_one(tx)
            .await?,
    )
}

pub async fn show(access: OrgAccess) -> AuthResult<impl IntoResponse> {
    let OrgAccess { ctx, mut tx } = access;
    ctx.require(Role::Viewer)?;
    let org = fetch(&mut tx, ctx.org_id).await?;
    tx.commit().await?;
    Ok(Json(org))
}

/// Only settings an Admin may change are accepted; `plan` and anything else is refused
/// (the plan is the Owner's, through billing).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrg {
    name: String,
}

pub async fn update(
    meta: RequestMeta,
    access: OrgAccess,
    Body(body): Body<UpdateOrg>,
) -> AuthResult<impl IntoResponse> {
    let OrgAccess { ctx, mut tx } = access;
    ctx.require(Role::Admin)?;
    let name = parse_org_name(&body.name)?;
    sqlx::query("UPDATE orgs SET name = $2, updated_at = now() WHERE id = $1")
        .bind(ctx.org_id)
        .bind(&name)
        .execute(&mut *tx)
        .await?;
    AuditEvent::by_user(
        &meta,
        ctx.org_id,
        ctx.principal.user_id,
        "org.update",
        Target::new("org", ctx.org_id),
    )
    .with_details(serde_json::json!({"fields": ["name"]}))
    .record(&mut tx)
    .await?;
    let org = fetch(&mut tx, ctx.org_id).await?;
    tx.commit().await?;
    Ok(Json(org))
}
