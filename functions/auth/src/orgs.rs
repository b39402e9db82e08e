//! The rules of organizations and roles, as plain functions.
//!
//! Viewer reads; Member also changes projects, secrets and runs; Admin also manages
//! members, invitations and org settings; Owner also manages owners, plan and termination.
//! Only an Owner grants or removes Owner, and the last Owner cannot leave, be removed or be
//! demoted.

use runwarden_tenancy::Role;

use crate::error::{AuthError, AuthResult};

fn owner_only() -> AuthError {
    AuthError::Forbidden("only an owner can grant, change or remove the owner role".into())
}

/// May `actor` change a member from `current` to `new`?
pub fn check_role_change(actor: Role, current: Role, new: Role) -> AuthResult<()> {
    if actor < Role::Admin {
        return Err(AuthError::Forbidden(
            "this action needs the admin role or higher".into(),
        ));
    }
    if (current == Role::Owner || new == Role::Owner) && actor != Role::Owner {
        return Err(owner_only());
    }
    Ok(())
}

/// May `actor` remove a member whose role is `target`? Anyone may leave.
pub fn check_removal(actor: Role, is_self: bool, target: Role) -> AuthResult<()> {
    if is_self {
        return Ok(());
    }
    if actor < Role::Admin {
        return Err(AuthError::Forbidden(
            "this action needs the admin role or higher".into(),
        ));
    }
    if target == Role::Owner && actor != Role::Owner {
        return Err(owner_only());
    }
    Ok(())
}

/// May `actor` invite someone as `role`?
pub fn check_invitation(actor: Role, role: Role) -> AuthResult<()> {
    if actor < Role::Admin {
        return Err(AuthError::Forbidden(
            "this action needs the admin role or higher".into(),
        ));
    }
    if role == Role::Owner && actor != Role::Owner {
        return Err(owner_only());
    }
    Ok(())
}

/// Refuses a change that would leave the org with no owner.
pub fn check_owners_remain(
    owners_before: i64,
    target_was_owner: bool,
    target_stays_owner: bool,
) -> AuthResult<()> {
    if target_was_owner && !target_stays_owner && owners_before <= 1 {
        return Err(AuthError::conflict(
            "last_owner",
            "the last owner cannot be removed or demoted",
        ));
    }
    Ok(())
}

pub fn parse_org_name(raw: &str) -> AuthResult<String> {
    let name = raw.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > 100 || name.chars().any(char::is_control) {
        return Err(AuthError::invalid(
            "invalid_name",
            "name must be 1 to 100 printable characters",
        ));
    }
    Ok(name.to_owned())
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
        assert!(check_owners_remain(1, true, false).is_err());
        assert!(check_owners_remain(2, true, false).is_ok());
        assert!(check_owners_remain(1, true, true).is_ok());
        assert!(check_owners_remain(1, false, false).is_ok());
    }

    #[test]
    fn org_names() {
        assert_eq!(parse_org_name("  Acme ").unwrap(), "Acme");
        assert!(parse_org_name("").is_err());
        assert!(parse_org_name(&"x".repeat(101)).is_err());
        assert!(parse_org_name("a\u{0}b").is_err());
    }
}
