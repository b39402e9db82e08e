//! `POST /v1/orgs`, `GET|PATCH /v1/orgs/{org}`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use runwarden_platform::extract::Json as Body;
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::access::OrgAccess;
use runwarden_tenancy::{OrgId, Role, set_tenant};
use serde::Deserialize;

use crate::AppState;
use crate::accounts;
use crate::error::AuthResult;
use crate::extract::LiveUser;
use crate::orgs::{self, OrgName};

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
    let name = OrgName::parse(&body.name)?;
    let LiveUser { principal, mut tx } = user;
    accounts::ensure_verified(&mut tx, principal.user_id).await?;
    let org = OrgId::new();
    set_tenant(&mut tx, Some(org), Some(principal.user_id)).await?;
    orgs::create(&mut tx, &meta, org, principal.user_id, &name).await?;
    let created = orgs::fetch(&mut tx, org).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(created)))
}

pub async fn show(access: OrgAccess) -> AuthResult<impl IntoResponse> {
    access.require(Role::Viewer)?;
    let OrgAccess { ctx, mut tx } = access;
    let org = orgs::fetch(&mut tx, ctx.org_id).await?;
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
    access.require(Role::Admin)?;
    let name = OrgName::parse(&body.name)?;
    let OrgAccess { ctx, mut tx } = access;
    let org = orgs::rename(&mut tx, &meta, ctx.org_id, ctx.principal.user_id, &name).await?;
    tx.commit().await?;
    Ok(Json(org))
}
