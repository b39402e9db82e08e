//! What crosses between functions, defined once and used by both sides: Pub/Sub topic names
//! and payloads ([`topics`], [`messages`]), the bodies of quotas' internal API that runs calls
//! ([`quotas`]), the bodies of the runner API that the runner job calls on runs
//! ([`runner_api`]), and the ids that travel in them ([`ids`]).
//!
//! The JSON of every type here is a wire format between separately deployed functions: the
//! tests next to each type pin it, and a change to one is a change to both sides (see
//! `docs/architecture.md`). No type here links sqlx unless the `sqlx` feature is on.

pub mod ids;
pub mod messages;
pub mod quotas;
pub mod runner_api;
pub mod topics;

pub use ids::{InvalidId, InvalidSecretName, ProjectId, RunId, SecretName};
