//! `POST /v1/orgs/{org}/invitations` and `POST /v1/invitations/{token}/accept`.
//!
//! The invitation token is shown once, to the Admin who created it (no mail sender is
//! configured, so they deliver it), stored only as a hash, valid for 7 days, single use,
//! and accepted only by a signed-in user with the invited email.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Duration, Utc};
use runwarden_events::{AuditEvent, Target};
use runwarden_platform::extract::Json as Body;
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::{OrgId, Role, set_tenant};
use serde::Deserialize;
use uuid::Uuid;

use crate::AppState;
use crate::email::Email;
use crate::error::{AuthError, AuthResult};
use crate::extract::{LiveUser, OrgAccess};
use crate::{orgs, secret_token};

pub const INVITATION_LIFETIME: Duration = Duration::days(7);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitation {
    email: String,
    role: Role,
}

pub async fn create(
    meta: RequestMeta,
    access: OrgAccess,
    Body(body): Body<CreateInvitation>,
) -> AuthResult<impl IntoResponse> {
    let OrgAccess { ctx, mut tx } = access;
    ctx.require(Role::Admin)?;
    orgs::check_invitation(ctx.role, body.role)?;
    let email = Email::parse(&body.email)?;
    let id = Uuid::now_v7();
    let token = secret_token::generate("inv_");
    let expires_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO invitations (id, org_id, email, role, token_hash, invited_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, now() + $7) RETURNING expires_at",
    )
    .bind(id)
    .bind(ctx.org_id)
    .bind(email.as_str())
    .bind(body.role)
    .bind(secret_token::hash(&token))
    .bind(ctx.principal.user_id)
    .bind(INVITATION_LIFETIME)
    .fetch_one(&mut *tx)
    .await?;
    AuditEvent::by_user(
        &meta,
        ctx.org_id,
        ctx.principal.user_id,
        "invitation.create",
        Target::new("invitation", id),
    )
    .with_details(serde_json::json!({"email": email.as_str(), "role": body.role}))
    .record(&mut tx)
    .await?;
    tx.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "id": id,
            "org_id": ctx.org_id,
            "email": email.as_str(),
            "role": body.role,
            "expires_at": expires_at,
            "token": token,
        })),
    ))
}

pub async fn accept(
    State(_): State<AppState>,
    meta: RequestMeta,
    user: LiveUser,
    Path(token): Path<String>,
) -> AuthResult<impl IntoResponse> {
    let LiveUser { principal, mut tx } = user;
    if !token.starts_with("inv_") || token.len() > 128 {
        return Err(AuthError::NotFound);
    }
    let hash = secret_token::hash(&token);
    let org: Option<OrgId> = sqlx::query_scalar("SELECT invitation_org_id($1)")
        .bind(&hash)
        .fetch_one(&mut *tx)
        .await?;
    let org = org.ok_or(AuthError::NotFound)?;
    set_tenant(&mut tx, Some(org), Some(principal.user_id)).await?;
    let invitation: Option<(Uuid, String, Role)> = sqlx::query_as(
        "UPDATE invitations SET accepted_at = now(), accepted_by = $2, updated_at = now()
          WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > now()
      RETURNING id, email, role",
    )
    .bind(&hash)
    .bind(principal.user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let (id, invited_email, role) = invitation.ok_or(AuthError::NotFound)?;
    let email: String = sqlx::query_scalar("SELECT email FROM users WHERE id = $1")
        .bind(principal.user_id)
        .fetch_one(&mut *tx)
        .await?;
    if email != invited_email {
        // Dropping the transaction rolls back: the invitation stays usable by its invitee.
        return Err(AuthError::Forbidden(
            "this invitation is for another email address".into(),
        ));
    }
    let added = sqlx::query(
        "INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3)
         ON CONFLICT ON CONSTRAINT memberships_pkey DO NOTHING",
    )
    .bind(org)
    .bind(principal.user_id)
    .bind(role)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if added == 0 {
        return Err(AuthError::conflict(
            "already_member",
            "you are already a member of this organization",
        ));
    }
    AuditEvent::by_user(
        &meta,
        org,
        principal.user_id,
        "member.add",
        Target::new("user", principal.user_id),
    )
    .with_details(serde_json::json!({"role": role, "invitation": id}))
    .record(&mut tx)
    .await?;
    tx.commit().await?;
    Ok(Json(serde_json::json!({"org_id": org, "role": role})))
}
