//! Ids that cross between functions or appear in a path. Each wraps a UUID behind a private
//! field: built by [`parse`](RunId::parse) / [`FromStr`], by `From<Uuid>` from a value that
//! is already one, or [`new`](RunId::new). On the wire a bare UUID string (serde
//! transparent), in PostgreSQL a `uuid` (sqlx transparent, `sqlx` feature).
//!
//! `OrgId` and `UserId` live in `runwarden-tenancy`, with the rest of the tenancy model.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A string that is not an id. Says nothing about the input (it may be anything a client
/// put in a path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a valid id")]
pub struct InvalidId;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "sqlx", derive(sqlx::Type), sqlx(transparent))]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new time-ordered id (UUIDv7), so index inserts stay local.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            /// The id a string spells (any UUID form `uuid` accepts).
            pub fn parse(raw: &str) -> Result<Self, InvalidId> {
                Uuid::parse_str(raw).map(Self).map_err(|_| InvalidId)
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

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
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
    /// A run: one execution of an agent for a project.
    RunId
);
id_type!(
    /// A project: an org's agent configuration, its secrets and its runs.
    ProjectId
);

/// A secret's name: a valid environment variable name, `^[A-Z_][A-Z0-9_]{0,63}$`, since the
/// runner exposes secrets as environment variables. Deserializing checks the rule too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SecretName(String);

/// A string that breaks [`SecretName`]'s rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a secret name is 1 to 64 characters of A-Z, 0-9 and _, not starting with a digit")]
pub struct InvalidSecretName;

impl SecretName {
    pub fn parse(raw: &str) -> Result<Self, InvalidSecretName> {
        let bytes = raw.as_bytes();
        let valid = (1..=64).contains(&bytes.len())
            && (bytes[0].is_ascii_uppercase() || bytes[0] == b'_')
            && bytes
                .iter()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || *b == b'_');
        if valid {
            Ok(Self(raw.to_owned()))
        } else {
            Err(InvalidSecretName)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SecretName {
    type Error = InvalidSecretName;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(&raw)
    }
}

impl From<SecretName> for String {
    fn from(name: SecretName) -> Self {
        name.0
    }
}

impl FromStr for SecretName {
    type Err = InvalidSecretName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl AsRef<str> for SecretName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_display_and_serialize_as_a_bare_uuid() {
        let raw = "0191e5f2-7b3c-7a00-8000-000000000001";
        let run = RunId::parse(raw).unwrap();
        assert_eq!(run.to_string(), raw);
        assert_eq!(raw.parse::<RunId>().unwrap(), run);
        assert_eq!(serde_json::to_value(run).unwrap(), serde_json::json!(raw));
        let back: RunId = serde_json::from_value(serde_json::json!(raw)).unwrap();
        assert_eq!(back, run);
        assert_eq!(Uuid::from(run), run.as_uuid());
        assert_eq!(ProjectId::from(run.as_uuid()).to_string(), raw);
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in ["", "nope", "0191e5f2-7b3c-7a00-8000", "../etc"] {
            assert_eq!(RunId::parse(bad), Err(InvalidId), "{bad:?}");
            assert!(serde_json::from_value::<ProjectId>(serde_json::json!(bad)).is_err());
        }
        assert_ne!(RunId::new(), RunId::new());
    }

    #[test]
    fn secret_names_follow_the_environment_variable_rule() {
        for good in ["A", "_X", "API_KEY_2", &"A".repeat(64)] {
            assert_eq!(SecretName::parse(good).unwrap().as_str(), good);
        }
        for bad in ["", "1A", "a", "API-KEY", "ÉTÉ", &"A".repeat(65)] {
            assert_eq!(SecretName::parse(bad), Err(InvalidSecretName), "{bad:?}");
        }
        let name: SecretName = serde_json::from_value(serde_json::json!("TOKEN")).unwrap();
        assert_eq!(
            serde_json::to_value(&name).unwrap(),
            serde_json::json!("TOKEN")
        );
        assert!(serde_json::from_value::<SecretName>(serde_json::json!("token")).is_err());
    }
}
