//! `POST /v1/orgs/{org}/invitations` and `POST /v1/invitations/{token}/accept` (the rules
//! are in [`crate::invitations`]).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use runwarden_platform::extract::{Json as Body, Path};
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::Role;
use runwarden_tenancy::access::OrgAccess;
use serde::Deserialize;

use crate::AppState;
use crate::email::Email;
use crate::error::{AuthError, AuthResult, parse_role};
use crate::extract::LiveUser;
use crate::invitations::{self, InvitationToken};
use crate::orgs;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitation {
    email: String,
    role: String,
}

pub async fn create(
    meta: RequestMeta,
    access: OrgAccess,
    Body(body): Body<CreateInvitation>,
) -> AuthResult<impl IntoResponse> {
    let role = parse_role(&body.role)?;
    access.require(Role::Admin)?;
    orgs::check_invitation(access.ctx.role, role)?;
    let email = Email::parse(&body.email)?;
    let OrgAccess { ctx, mut tx } = access;
    let invitation = invitations::create(&mut tx, &meta, &ctx, email, role).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(invitation)))
}

pub async fn accept(
    State(_): State<AppState>,
    meta: RequestMeta,
    user: LiveUser,
    Path(token): Path<String>,
) -> AuthResult<impl IntoResponse> {
    let token = InvitationToken::parse(&token).ok_or_else(AuthError::not_found)?;
    let LiveUser { principal, mut tx } = user;
    let (org, role) = invitations::accept(&mut tx, &meta, principal, &token).await?;
    tx.commit().await?;
    Ok(Json(serde_json::json!({"org_id": org, "role": role})))
}
