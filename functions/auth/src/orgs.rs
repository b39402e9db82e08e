//! Organizations: the rules of roles, as plain functions, and the org rows themselves.
//!
//! Viewer reads; Member also changes projects, secrets and runs; Admin also manages
//! members, invitations and org settings; Owner also manages owners, plan and termination.
//! Only an Owner grants or removes Owner, and the last Owner cannot leave, be removed or be
//! demoted.

use chrono::{DateTime, Utc};
use runwarden_events::{AuditEvent, Target};
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::{OrgId, Principal, Role, UserId};
use serde::Serialize;
use sqlx::PgConnection;

use crate::abuse_limits::{self, LimitError};

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

/// A domain that is not a Google Workspace domain name; the edge answers it as
/// `invalid_domain`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("google_workspace_domain must be a domain name such as example.com")]
pub struct InvalidDomain;

/// A Google Workspace domain (the `hd` claim of Google's ID tokens): a lower-cased DNS name
/// of at least two labels, each 1 to 63 letters, digits or inner hyphens, the last one not
/// numeric; at most 253 characters. The migration's CHECK constraint says the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct WorkspaceDomain(String);

impl WorkspaceDomain {
    pub fn parse(raw: &str) -> Result<Self, InvalidDomain> {
        let domain = raw.trim().to_ascii_lowercase();
        let labels: Vec<&str> = domain.split('.').collect();
        let label_ok = |l: &&str| {
            (1..=63).contains(&l.len())
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        let last_ok = labels
            .last()
            .is_some_and(|l| l.starts_with(|c: char| c.is_ascii_lowercase()));
        if domain.len() > 253 || labels.len() < 2 || !labels.iter().all(label_ok) || !last_ok {
            return Err(InvalidDomain);
        }
        Ok(Self(domain))
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
    /// When set, members reach the org only through a Google sign-in from this Workspace
    /// domain (`auth_enter` refuses other sessions: 403 `sso_required`).
    pub google_workspace_domain: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A user's first org is on trial; every further org they create starts on this plan, which
/// admits no runs until a paid plan is set (one trial per user, whatever happens to the
/// first org: quotas refuses runs with 402 `plan_required`).
pub const TRIAL: &str = "trial";
pub const UNPAID: &str = "unpaid";

/// Inserts an org with `owner` as its Owner, and its one audit event (`org.create`). The
/// transaction's tenant setting must already be `org`. The org is on trial only if it is
/// the first org `owner` ever created (`users.trial_org_id`, claimed here, never cleared);
/// otherwise on [`UNPAID`]. Concurrent creations by one user serialize on the user's row,
/// so exactly one can claim the trial. Answers the plan.
pub async fn create(
    tx: &mut PgConnection,
    meta: &RequestMeta,
    org: OrgId,
    owner: UserId,
    name: &OrgName,
) -> Result<String, sqlx::Error> {
    let plan: String = sqlx::query_scalar(
        "WITH trial AS (
             UPDATE users SET trial_org_id = $1, updated_at = now()
              WHERE id = $3 AND trial_org_id IS NULL
          RETURNING 1)
         INSERT INTO orgs (id, name, plan)
         VALUES ($1, $2, CASE WHEN EXISTS (SELECT 1 FROM trial) THEN $4 ELSE $5 END)
         RETURNING plan",
    )
    .bind(org)
    .bind(name.as_str())
    .bind(owner)
    .bind(TRIAL)
    .bind(UNPAID)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3)")
        .bind(org)
        .bind(owner)
        .bind(Role::Owner)
        .execute(&mut *tx)
        .await?;
    if plan != TRIAL {
        tracing::info!(
            security_event = "trial_already_used",
            user.id = %owner,
            org.id = %org,
            "org created without a trial: its owner has had one"
        );
    }
    // One action, one event: the owner's membership is part of creating the org.
    AuditEvent::by_user(meta, org, owner, "org.create", Target::new("org", org))
        .with_details(serde_json::json!({"plan": plan, "owner": owner}))
        .record(tx)
        .await?;
    Ok(plan)
}

/// `POST /v1/orgs`: a signed-in user creates another org, within their per-user limit
/// ([`abuse_limits::ORG_CREATION`]); on trial only if it is their first (see [`create`]).
pub async fn create_another(
    tx: &mut PgConnection,
    meta: &RequestMeta,
    org: OrgId,
    owner: UserId,
    name: &OrgName,
) -> Result<Org, LimitError> {
    abuse_limits::org_creation(tx, owner).await?;
    create(tx, meta, org, owner, name).await?;
    Ok(fetch(tx, org).await?)
}

/// The org the transaction is scoped to.
pub async fn fetch(tx: &mut PgConnection, org: OrgId) -> Result<Org, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, name, plan, google_workspace_domain, created_at, updated_at
           FROM orgs WHERE id = $1",
    )
    .bind(org)
    .fetch_one(tx)
    .await
}

/// What `PATCH /v1/orgs/{org}` changes: each field only when given.
#[derive(Debug, Default)]
pub struct OrgUpdate {
    pub name: Option<OrgName>,
    /// `Some(None)` clears the domain.
    pub google_workspace_domain: Option<Option<WorkspaceDomain>>,
}

#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// Setting a domain the caller's own session does not satisfy would lock them (and any
    /// owner like them) out at the next request: refused, 409 `workspace_domain_mismatch`.
    #[error(
        "sign in with Google from this Workspace domain before restricting the organization to it"
    )]
    DomainMismatch,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Applies `update` (the caller has checked the roles: Admin for the name, Owner for the
/// domain), audited as one `org.update` by `actor` naming the fields changed, and answers
/// the org as it is now. A domain is set only from a session that came from Google sign-in
/// in that domain.
pub async fn update(
    tx: &mut PgConnection,
    meta: &RequestMeta,
    org: OrgId,
    actor: Principal,
    update: &OrgUpdate,
) -> Result<Org, UpdateError> {
    let mut fields = Vec::new();
    let mut details = serde_json::Map::new();
    if let Some(name) = &update.name {
        sqlx::query("UPDATE orgs SET name = $2, updated_at = now() WHERE id = $1")
            .bind(org)
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        fields.push("name");
    }
    if let Some(domain) = &update.google_workspace_domain {
        if let Some(domain) = domain {
            let session_hd: Option<String> =
                sqlx::query_scalar("SELECT google_hd FROM sessions WHERE id = $1")
                    .bind(actor.session_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .flatten();
            if session_hd.as_deref() != Some(domain.as_str()) {
                return Err(UpdateError::DomainMismatch);
            }
        }
        let domain = domain.as_ref().map(WorkspaceDomain::as_str);
        sqlx::query(
            "UPDATE orgs SET google_workspace_domain = $2, updated_at = now() WHERE id = $1",
        )
        .bind(org)
        .bind(domain)
        .execute(&mut *tx)
        .await?;
        fields.push("google_workspace_domain");
        details.insert("google_workspace_domain".into(), domain.into());
    }
    details.insert("fields".into(), fields.into());
    AuditEvent::by_user(
        meta,
        org,
        actor.user_id,
        "org.update",
        Target::new("org", org),
    )
    .with_details(serde_json::Value::Object(details))
    .record(&mut *tx)
    .await?;
    Ok(fetch(tx, org).await?)
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
    fn workspace_domains() {
        assert_eq!(
            WorkspaceDomain::parse(" Corp.Example ").unwrap().as_str(),
            "corp.example"
        );
        assert!(WorkspaceDomain::parse("a.b-c.example").is_ok());
        assert!(WorkspaceDomain::parse("xn--bcher-kva.example").is_ok());
        for bad in [
            "",
            "example",
            "corp..example",
            ".corp.example",
            "corp.example.",
            "-corp.example",
            "corp-.example",
            "corp.123",
            "corp_x.example",
            "ex ample.com",
            "user@corp.example",
            "bücher.example",
            &format!("{}.example", "a".repeat(64)),
            &format!("{}example", "abcdefghi.".repeat(25)),
        ] {
            assert_eq!(WorkspaceDomain::parse(bad), Err(InvalidDomain), "{bad}");
        }
    }

    #[test]
    fn org_names() {
        assert_eq!(OrgName::parse("  Acme ").unwrap().as_str(), "Acme");
        assert!(OrgName::parse("").is_err());
        assert!(OrgName::parse(&"x".repeat(101)).is_err());
        assert!(OrgName::parse("a\u{0}b").is_err());
    }
}
