//! Organizations: the rules of roles, as plain functions, and the org rows themselves.
//!
//! Viewer reads; Member also changes projects, secrets and runs; Admin also manages
//! members, invitations and org settings; Owner also manages owners, plan and termination.
//! Only an Owner grants or removes Owner, and the last Owner cannot leave, be removed or be
//! demoted.

use chrono::{DateTime, Utc};
use runwarden_events::{AuditEvent, Target};
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::{OrgId, Role, UserId};
use serde::Serialize;
use sqlx::PgConnection;

/// A change the role rules refuse. The edge answers 403, or 409 for [`Refusal::LastOwner`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this action needs the admin role or higher")]
    NeedsAdmin,
    #[error("only an owner can grant, change or remove the owner role")]
    OwnerOnly,
    #[error("the last owner cannot be removed or demoted")]
    LastOwner,
}

/// May `actor` change a member from `current` to `new`?
pub fn check_role_change(actor: Role, current: Role, new: Role) -> Result<(), Refusal> {
    if actor < Role::Admin {
        return Err(Refusal::NeedsAdmin);
    }
    if (current == Role::Owner || new == Role::Owner) && actor != Role::Owner {
        return Err(Refusal::OwnerOnly);
    }
    Ok(())
}

/// May `actor` remove a member whose role is `target`? Anyone may leave.
pub fn check_removal(actor: Role, is_self: bool, target: Role) -> Result<(), Refusal> {
    if is_self {
        return Ok(());
    }
    if actor < Role::Admin {
        return Err(Refusal::NeedsAdmin);
    }
    if target == Role::Owner && actor != Role::Owner {
        return Err(Refusal::OwnerOnly);
    }
    Ok(())
}

/// May `actor` invite someone as `role`?
pub fn check_invitation(actor: Role, role: Role) -> Result<(), Refusal> {
    if actor < Role::Admin {
        return Err(Refusal::NeedsAdmin);
    }
    if role == Role::Owner && actor != Role::Owner {
        return Err(Refusal::OwnerOnly);
    }
    Ok(())
}

/// Refuses a change that would leave the org with no owner.
pub fn check_owners_remain(
    owners_before: i64,
    target_was_owner: bool,
    target_stays_owner: bool,
) -> Result<(), Refusal> {
    if target_was_owner && !target_stays_owner && owners_before <= 1 {
        return Err(Refusal::LastOwner);
    }
    Ok(())
}

/// A name that is not one; the edge answers it as `invalid_name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("name must be 1 to 100 printable characters")]
pub struct InvalidOrgName;

/// An org's display name: trimmed, 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgName(String);

impl OrgName {
    pub fn parse(raw: &str) -> Result<Self, InvalidOrgName> {
        let name = raw.trim();
        let chars = name.chars().count();
        if chars == 0 || chars > 100 || name.chars().any(char::is_control) {
            return Err(InvalidOrgName);
        }
        Ok(Self(name.to_owned()))
    }

    /// A new user's own org, named after them (never refused: the local part of a valid
    /// email is short enough and printable).
    pub fn personal(local_part: &str) -> Self {
        Self(format!("{local_part}'s organization"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Org {
    pub id: OrgId,
    pub name: String,
    pub plan: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Inserts an org with `owner` as its Owner, and its one audit event (`org.create`). The
/// transaction's tenant setting must already be `org`.
pub async fn create(
    tx: &mut PgConnection,
    meta: &RequestMeta,
    org: OrgId,
    owner: UserId,
    name: &OrgName,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO orgs (id, name) VALUES ($1, $2)")
        .bind(org)
        .bind(name.as_str())
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
        .await
}

/// The org the transaction is scoped to.
pub async fn fetch(tx: &mut PgConnection, org: OrgId) -> Result<Org, sqlx::Error> {
    sqlx::query_as("SELECT id, name, plan, created_at, updated_at FROM orgs WHERE id = $1")
        .bind(org)
        .fetch_one(tx)
        .await
}

/// Renames the org, audited as `org.update` by `actor`, and answers the org as it is now.
pub async fn rename(
    tx: &mut PgConnection,
    meta: &RequestMeta,
    org: OrgId,
    actor: UserId,
    name: &OrgName,
) -> Result<Org, sqlx::Error> {
    sqlx::query("UPDATE orgs SET name = $2, updated_at = now() WHERE id = $1")
        .bind(org)
        .bind(name.as_str())
        .execute(&mut *tx)
        .await?;
    AuditEvent::by_user(meta, org, actor, "org.update", Target::new("org", org))
        .with_details(serde_json::json!({"fields": ["name"]}))
        .record(&mut *tx)
        .await?;
    fetch(tx, org).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use Role::*;

    #[test]
    fn only_owners_touch_the_owner_role() {
        for (actor, current, new, allowed) in [
            (Owner, Member, Owner, true),
            (Admin, Member, Owner, false),
            (Admin, Owner, Member, false),
            (Admin, Admin, Owner, false), // an admin cannot make themself owner
            (Admin, Viewer, Admin, true),
            (Admin, Admin, Viewer, true),
            (Member, Viewer, Member, false),
            (Viewer, Viewer, Viewer, false),
            (Owner, Owner, Admin, true),
        ] {
            assert_eq!(
                check_role_change(actor, current, new).is_ok(),
                allowed,
                "{actor} {current}->{new}"
            );
        }
    }

    #[test]
    fn removal_rules() {
        assert!(check_removal(Viewer, true, Viewer).is_ok());
        assert!(check_removal(Member, false, Viewer).is_err());
        assert!(check_removal(Admin, false, Member).is_ok());
        assert!(check_removal(Admin, false, Owner).is_err());
        assert!(check_removal(Owner, false, Owner).is_ok());
    }

    #[test]
    fn invitations_cannot_escalate() {
        assert!(check_invitation(Member, Viewer).is_err());
        assert!(check_invitation(Admin, Admin).is_ok());
        assert!(check_invitation(Admin, Owner).is_err());
        assert!(check_invitation(Owner, Owner).is_ok());
    }

    #[test]
    fn the_last_owner_stays() {
        assert_eq!(check_owners_remain(1, true, false), Err(Refusal::LastOwner));
        assert!(check_owners_remain(2, true, false).is_ok());
        assert!(check_owners_remain(1, true, true).is_ok());
        assert!(check_owners_remain(1, false, false).is_ok());
    }

    #[test]
    fn org_names() {
        assert_eq!(OrgName::parse("  Acme ").unwrap().as_str(), "Acme");
        assert!(OrgName::parse("").is_err());
        assert!(OrgName::parse(&"x".repeat(101)).is_err());
        assert!(OrgName::parse("a\u{0}b").is_err());
    }
}
