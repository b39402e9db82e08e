//! Memberships: listing an org's members, changing a member's role, removing a member, each
//! checked against the role rules in [`crate::orgs`] and audited in the caller's transaction.

use chrono::{DateTime, Utc};
use runwarden_events::{AuditEvent, Target};
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::{OrgContext, OrgId, Role, UserId};
use serde::Serialize;
use sqlx::PgConnection;

use crate::orgs::{self, Refusal};
use crate::sessions::{self, SessionError};

#[derive(Debug, thiserror::Error)]
pub enum MemberError {
    /// The target is not a member of the caller's org.
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Granting, changing or removing the Owner role needs a recent sign-in (SES-08).
    #[error("this change needs a recent sign-in: re-authenticate first")]
    ReauthRequired,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<SessionError> for MemberError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::ReauthRequired => Self::ReauthRequired,
            SessionError::Database(e) => Self::Database(e),
            // Nothing here signs tokens.
            SessionError::Signing(_) => Self::ReauthRequired,
        }
    }
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Member {
    pub user_id: UserId,
    pub email: String,
    pub role: Role,
    pub joined_at: DateTime<Utc>,
}

/// Up to `limit` members of `org` ordered by user id, after the member `after`.
pub async fn list(
    tx: &mut PgConnection,
    org: OrgId,
    after: Option<UserId>,
    limit: i64,
) -> Result<Vec<Member>, sqlx::Error> {
    sqlx::query_as(
        "SELECT m.user_id, u.email, m.role, m.created_at AS joined_at
           FROM memberships m JOIN users u ON u.id = m.user_id
          WHERE m.org_id = $1 AND ($2::uuid IS NULL OR m.user_id > $2)
          ORDER BY m.user_id
          LIMIT $3",
    )
    .bind(org)
    .bind(after)
    .bind(limit)
    .fetch_all(tx)
    .await
}

/// Locks the org's owner rows and counts them, so two concurrent demotions cannot both
/// see "another owner remains".
async fn lock_owners(tx: &mut PgConnection, org: OrgId) -> Result<i64, sqlx::Error> {
    let owners: Vec<(UserId,)> = sqlx::query_as(
        "SELECT user_id FROM memberships WHERE org_id = $1 AND role = 'owner' FOR UPDATE",
    )
    .bind(org)
    .fetch_all(tx)
    .await?;
    Ok(owners.len() as i64)
}

async fn member_role(tx: &mut PgConnection, org: OrgId, user: UserId) -> Result<Role, MemberError> {
    sqlx::query_scalar("SELECT role FROM memberships WHERE org_id = $1 AND user_id = $2 FOR UPDATE")
        .bind(org)
        .bind(user)
        .fetch_optional(tx)
        .await?
        .ok_or(MemberError::NotFound)
}

/// Gives `target` the role `new` in the caller's org, audited as `member.role_change` when
/// it changes anything.
pub async fn change_role(
    tx: &mut PgConnection,
    meta: &RequestMeta,
    ctx: &OrgContext,
    target: UserId,
    new: Role,
) -> Result<(), MemberError> {
    let owners = lock_owners(tx, ctx.org_id).await?;
    let current = member_role(tx, ctx.org_id, target).await?;
    orgs::check_role_change(ctx.role, current, new)?;
    orgs::check_owners_remain(owners, current == Role::Owner, new == Role::Owner)?;
    if current == new {
        return Ok(());
    }
    if current == Role::Owner || new == Role::Owner {
        // Ownership transfer: the caller proves who they are again first.
        sessions::require_recent(tx, ctx.principal.session_id).await?;
    }
    sqlx::query(
        "UPDATE memberships SET role = $3, updated_at = now() WHERE org_id = $1 AND user_id = $2",
    )
    .bind(ctx.org_id)
    .bind(target)
    .bind(new)
    .execute(&mut *tx)
    .await?;
    AuditEvent::by_user(
        meta,
        ctx.org_id,
        ctx.principal.user_id,
        "member.role_change",
        Target::new("user", target),
    )
    .with_details(serde_json::json!({"from": current, "to": new}))
    .record(tx)
    .await?;
    Ok(())
}

/// Removes `target` from the caller's org (or the caller themself: anyone may leave),
/// audited as `member.remove`.
pub async fn remove(
    tx: &mut PgConnection,
    meta: &RequestMeta,
    ctx: &OrgContext,
    target: UserId,
) -> Result<(), MemberError> {
    let is_self = target == ctx.principal.user_id;
    let owners = lock_owners(tx, ctx.org_id).await?;
    let current = member_role(tx, ctx.org_id, target).await?;
    orgs::check_removal(ctx.role, is_self, current)?;
    orgs::check_owners_remain(owners, current == Role::Owner, false)?;
    if current == Role::Owner && !is_self {
        // Removing another Owner changes who owns the org.
        sessions::require_recent(tx, ctx.principal.session_id).await?;
    }
    sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
        .bind(ctx.org_id)
        .bind(target)
        .execute(&mut *tx)
        .await?;
    AuditEvent::by_user(
        meta,
        ctx.org_id,
        ctx.principal.user_id,
        "member.remove",
        Target::new("user", target),
    )
    .with_details(serde_json::json!({"role": current}))
    .record(tx)
    .await?;
    Ok(())
}

/// SES-07: revokes every live session of `target`, a member of the caller's org, under the
/// rules of removing them (Admin or higher; only an Owner for an Owner). Their access
/// tokens fail at their next request. Audited in the org as `member.sessions_revoke`.
/// Answers how many sessions were revoked.
pub async fn revoke_sessions(
    tx: &mut PgConnection,
    meta: &RequestMeta,
    ctx: &OrgContext,
    target: UserId,
) -> Result<u64, MemberError> {
    let current = member_role(tx, ctx.org_id, target).await?;
    orgs::check_removal(ctx.role, false, current)?;
    let revoked = sessions::revoke_all(tx, target, None, "revoked_by_org_admin").await?;
    AuditEvent::by_user(
        meta,
        ctx.org_id,
        ctx.principal.user_id,
        "member.sessions_revoke",
        Target::new("user", target),
    )
    .with_details(serde_json::json!({"role": current, "sessions_revoked": revoked}))
    .record(tx)
    .await?;
    tracing::info!(
        security_event = "sessions_revoked",
        user.id = %target,
        org.id = %ctx.org_id,
        sessions_revoked = revoked,
        "a member's sessions were revoked by an org admin"
    );
    Ok(revoked)
}
