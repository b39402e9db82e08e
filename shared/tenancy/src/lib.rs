//! Who is calling and for which organization.
//!
//! Every handler resolves an [`OrgContext`] before it touches tenant data. The rule of the
//! product is that another organization's resource does not exist for the caller: lookups
//! outside the caller's org answer [`TenancyError::NotFound`], never "forbidden".

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod access;
mod rls;
pub mod routes;
pub use rls::{begin_org_tx, set_tenant};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type)]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new time-ordered id (UUIDv7), so index inserts stay local.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// An organization: the tenant boundary.
    OrgId
);
id_type!(
    /// A person who can sign in.
    UserId
);
id_type!(
    /// A sign-in session: the family of refresh tokens born from one login.
    SessionId
);

/// Organization roles, ordered by what they may do: each role may do everything the roles
/// below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads.
    Viewer,
    /// Also creates and changes projects, secrets and runs.
    Member,
    /// Also manages members, invitations and org settings, and reads the audit log.
    Admin,
    /// Also manages owners, plan and termination.
    Owner,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Member, Role::Admin, Role::Owner];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = TenancyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "member" => Ok(Role::Member),
            "admin" => Ok(Role::Admin),
            "owner" => Ok(Role::Owner),
            _ => Err(TenancyError::UnknownRole),
        }
    }
}

// Stored as text (with a CHECK constraint), so the database stays readable by hand.
impl sqlx::Type<sqlx::Postgres> for Role {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <&str as sqlx::Type<sqlx::Postgres>>::type_info()
    }
    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

impl sqlx::Encode<'_, sqlx::Postgres> for Role {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.as_str(), buf)
    }
}

impl<'r> sqlx::Decode<'r, sqlx::Postgres> for Role {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Ok(text.parse()?)
    }
}

/// What kind of caller acted; recorded in audit events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    User,
    ApiKey,
    Runner,
    System,
}

/// An authenticated user acting through one live session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    pub session_id: SessionId,
}

/// A principal resolved against one organization, with the role read from the database
/// on this request (never from a token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrgContext {
    pub principal: Principal,
    pub org_id: OrgId,
    pub role: Role,
}

impl OrgContext {
    /// Resolves the caller's membership: no membership means the org does not exist for them.
    pub fn resolve(
        principal: Principal,
        org_id: OrgId,
        membership: Option<Role>,
    ) -> Result<Self, TenancyError> {
        let role = membership.ok_or(TenancyError::NotFound)?;
        Ok(Self {
            principal,
            org_id,
            role,
        })
    }

    /// Authorization check, visible in each handler: `ctx.require(Role::Admin)?`.
    pub fn require(&self, minimum: Role) -> Result<&Self, TenancyError> {
        if self.role >= minimum {
            Ok(self)
        } else {
            Err(TenancyError::Forbidden { required: minimum })
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TenancyError {
    /// The resource is not in the caller's organization, or does not exist at all: the caller
    /// cannot tell which.
    #[error("not found")]
    NotFound,
    #[error("this action needs the {required} role or higher")]
    Forbidden { required: Role },
    #[error("unknown role")]
    UnknownRole,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_by_power() {
        assert!(Role::Viewer < Role::Member);
        assert!(Role::Member < Role::Admin);
        assert!(Role::Admin < Role::Owner);
    }

    #[test]
    fn role_round_trips_through_text_and_json() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>().unwrap(), role);
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(json, format!("\"{}\"", role.as_str()));
        }
        assert_eq!("Owner".parse::<Role>(), Err(TenancyError::UnknownRole));
        assert_eq!("superuser".parse::<Role>(), Err(TenancyError::UnknownRole));
    }

    fn principal() -> Principal {
        Principal {
            user_id: UserId::new(),
            session_id: SessionId::new(),
        }
    }

    #[test]
    fn non_member_gets_not_found_not_forbidden() {
        let err = OrgContext::resolve(principal(), OrgId::new(), None).unwrap_err();
        assert_eq!(err, TenancyError::NotFound);
    }

    #[test]
    fn require_admits_equal_or_higher_roles_only() {
        for held in Role::ALL {
            let ctx = OrgContext::resolve(principal(), OrgId::new(), Some(held)).unwrap();
            for needed in Role::ALL {
                assert_eq!(
                    ctx.require(needed).is_ok(),
                    held >= needed,
                    "{held} vs {needed}"
                );
            }
        }
    }

    #[test]
    fn ids_parse_only_uuids() {
        assert!("not-a-uuid".parse::<OrgId>().is_err());
        let id = OrgId::new();
        assert_eq!(id.to_string().parse::<OrgId>().unwrap(), id);
    }
}
