//! The runner: a Cloud Run job execution (locally, a child process of runs) that executes one
//! agent for one run within the run's wall-clock cap.
//!
//! It exchanges its single-use ticket for a runner token bound to the run, fetches the run's
//! secrets, starts the agent with a cleared environment holding only those secrets and the
//! run's variables (in a process group of its own), turns every output line into a
//! redacted event, kills the group at the cap, uploads the files left in the artifacts
//! folder through signed URLs, and reports the outcome. When runs refuses it (the run was
//! cancelled or its token died) it kills the agent and stops without reporting.

pub mod agent;
pub mod artifacts;
pub mod client;
pub mod config;
pub mod events;
pub mod output;
pub mod redact;
pub mod run;

pub use config::Config;
pub use run::{Report, RunnerError, run};
pub use runwarden_contracts::runner_api::Outcome;
