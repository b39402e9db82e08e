//! `POST /v1/orgs`, `GET|PATCH /v1/orgs/{org}` (the rules are in [`crate::orgs`]).

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
use crate::error::{AuthError, AuthResult};
use crate::extract::LiveUser;
use crate::orgs::{self, OrgName, OrgUpdate, WorkspaceDomain};

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
    let created = orgs::create_another(&mut tx, &meta, org, principal.user_id, &name).await?;
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

/// The settings `PATCH` may change: the name (Admin) and the Google Workspace domain
/// (Owner; `null` clears it). `plan` and anything else is refused (the plan is the
/// Owner's, through billing).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrg {
    name: Option<String>,
    /// Absent: unchanged; `null`: cleared.
    #[serde(default, deserialize_with = "present")]
    google_workspace_domain: Option<Option<String>>,
}

/// A field that is present, even as `null` (absent stays `None` through `default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

pub async fn update(
    meta: RequestMeta,
    access: OrgAccess,
    Body(body): Body<UpdateOrg>,
) -> AuthResult<impl IntoResponse> {
    access.require(Role::Admin)?;
    if body.name.is_none() && body.google_workspace_domain.is_none() {
        return Err(AuthError::invalid(
            "empty_update",
            "give name or google_workspace_domain",
        ));
    }
    if body.google_workspace_domain.is_some() {
        access.require(Role::Owner)?;
    }
    let update = OrgUpdate {
        name: body.name.as_deref().map(OrgName::parse).transpose()?,
        google_workspace_domain: body
            .google_workspace_domain
            .map(|d| d.as_deref().map(WorkspaceDomain::parse).transpose())
            .transpose()?,
    };
    let OrgAccess { ctx, mut tx } = access;
    let org = orgs::update(&mut tx, &meta, ctx.org_id, ctx.principal, &update).await?;
    tx.commit().await?;
    Ok(Json(org))
}
