//! Invitations: an Admin invites an email address into their org with a role; the signed-in
//! user with that email accepts it and becomes a member.
//!
//! The invitation token is shown once, to the Admin who created it (no mail sender is
//! configured, so they deliver it), stored only as a hash, valid for 7 days, single use,
//! and accepted only by a signed-in user with the invited email.

use chrono::{DateTime, Duration, Utc};
use runwarden_events::{AuditEvent, Target};
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::{OrgContext, OrgId, Principal, Role, set_tenant};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::abuse_limits::{self, LimitError, Limited};
use crate::email::Email;
use crate::secret_token;

pub const INVITATION_LIFETIME: Duration = Duration::days(7);

const TOKEN_PREFIX: &str = "inv_";

#[derive(Debug, thiserror::Error)]
pub enum InvitationError {
    /// Unknown, expired or already used: the caller cannot tell which.
    #[error("not found")]
    NotFound,
    #[error("this invitation is for another email address")]
    OtherEmail,
    #[error("you are already a member of this organization")]
    AlreadyMember,
    /// The org has sent as many invitations as it may today (429 `invitation_rate_limited`).
    #[error("invitation rate limited")]
    Limited(Box<Limited>),
    /// The invitee has not verified their email address yet.
    #[error("verify your email address first")]
    EmailUnverified,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// An invitation token as presented: the shape only (prefix and length); whether it names
/// an invitation is the database's answer.
pub struct InvitationToken(String);

impl InvitationToken {
    /// None for anything that cannot be a token: it is answered like an unknown one.
    pub fn parse(raw: &str) -> Option<Self> {
        (raw.starts_with(TOKEN_PREFIX) && raw.len() <= 128).then(|| Self(raw.to_owned()))
    }
}

/// A new invitation, with its token: shown once, to the Admin who created it.
#[derive(Serialize)]
pub struct Invitation {
    pub id: Uuid,
    pub org_id: OrgId,
    pub email: Email,
    pub role: Role,
    pub expires_at: DateTime<Utc>,
    pub token: String,
}

impl From<LimitError> for InvitationError {
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::Limited(limited) => Self::Limited(limited),
            LimitError::Database(e) => Self::Database(e),
        }
    }
}

/// Invites `email` as `role` into the caller's org, audited as `invitation.create`, within
/// the org's daily limit ([`abuse_limits::INVITATIONS`]). The caller's right to invite as
/// `role` is checked by the handler ([`crate::orgs::check_invitation`]).
pub async fn create(
    tx: &mut PgConnection,
    meta: &RequestMeta,
    ctx: &OrgContext,
    email: Email,
    role: Role,
) -> Result<Invitation, InvitationError> {
    abuse_limits::invitation(tx, ctx.org_id, ctx.principal.user_id).await?;
    let id = Uuid::now_v7();
    let token = secret_token::generate(TOKEN_PREFIX);
    let expires_at: DateTime<Utc> = sqlx::query_scalar(
        "INSERT INTO invitations (id, org_id, email, role, token_hash, invited_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, now() + $7) RETURNING expires_at",
    )
    .bind(id)
    .bind(ctx.org_id)
    .bind(email.as_str())
    .bind(role)
    .bind(secret_token::hash(&token))
    .bind(ctx.principal.user_id)
    .bind(INVITATION_LIFETIME)
    .fetch_one(&mut *tx)
    .await?;
    AuditEvent::by_user(
        meta,
        ctx.org_id,
        ctx.principal.user_id,
        "invitation.create",
        Target::new("invitation", id),
    )
    .with_details(serde_json::json!({"email": email.as_str(), "role": role}))
    .record(tx)
    .await?;
    Ok(Invitation {
        id,
        org_id: ctx.org_id,
        email,
        role,
        expires_at,
        token,
    })
}

/// Accepts an invitation for the signed-in `principal`: marks it used and adds the
/// membership, audited as `member.add`, in the caller's transaction. On an error the
/// caller drops the transaction, which rolls back: the invitation stays usable by its
/// invitee. Answers the org joined and the role held there.
pub async fn accept(
    tx: &mut PgConnection,
    meta: &RequestMeta,
    principal: Principal,
    token: &InvitationToken,
) -> Result<(OrgId, Role), InvitationError> {
    let hash = secret_token::hash(&token.0);
    let org: Option<OrgId> = sqlx::query_scalar("SELECT invitation_org_id($1)")
        .bind(&hash)
        .fetch_one(&mut *tx)
        .await?;
    let org = org.ok_or(InvitationError::NotFound)?;
    set_tenant(tx, Some(org), Some(principal.user_id)).await?;
    let invitation: Option<(Uuid, String, Role)> = sqlx::query_as(
        "UPDATE invitations SET accepted_at = now(), accepted_by = $2, updated_at = now()
          WHERE token_hash = $1 AND accepted_at IS NULL AND expires_at > now()
      RETURNING id, email, role",
    )
    .bind(&hash)
    .bind(principal.user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let (id, invited_email, role) = invitation.ok_or(InvitationError::NotFound)?;
    let (email, verified): (String, bool) =
        sqlx::query_as("SELECT email, email_verified_at IS NOT NULL FROM users WHERE id = $1")
            .bind(principal.user_id)
            .fetch_one(&mut *tx)
            .await?;
    if email != invited_email {
        return Err(InvitationError::OtherEmail);
    }
    // Only an address its holder proved joins an org (an invitation names an address).
    if !verified {
        return Err(InvitationError::EmailUnverified);
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
        return Err(InvitationError::AlreadyMember);
    }
    AuditEvent::by_user(
        meta,
        org,
        principal.user_id,
        "member.add",
        Target::new("user", principal.user_id),
    )
    .with_details(serde_json::json!({"role": role, "invitation": id}))
    .record(tx)
    .await?;
    Ok((org, role))
}
