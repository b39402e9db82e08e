//! The one harness of the functions' integration tests: a served router on a real socket
//! ([`Served`]); the rows a test arranges behind the app's back ([`Fixtures`]: users with
//! sessions, orgs on a plan, memberships with roles, overrides, teams of every role) with
//! the superuser pool of the test's fresh database (`#[sqlx::test]`) and access tokens
//! signed by a test `TokenSigner` whose verifier the app gets; the caller whose every
//! response is checked against the function's OpenAPI document ([`Api`]) and the contract
//! checks of that document ([`contract`]); the route-enumerated guarantees every function
//! runs over its `ROUTES` ([`guarantees`]); the fake Google OpenID provider ([`oidc`]);
//! the messages the local mail sink kept ([`mail`]).
//!
//! The app itself always connects as its runtime role, so every test also runs under that
//! role's grants and row-level security.

mod fixtures;
mod served;

pub mod contract;
pub mod guarantees;
pub mod mail;
pub mod oidc;

pub use contract::{Api, Reply, Spec};
pub use fixtures::{Caller, Fixtures, Team};
pub use served::{App, Served, client};
