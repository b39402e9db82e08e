//! The runner job: a Cloud Run job execution (locally, a child process of runs) that executes
//! one agent for one run within the run's wall-clock cap.
//!
//! Three things carry "runner" in their names; each keeps its own:
//! - the **runner job**: this crate, one execution per run;
//! - the **runner API**: the routes runs serves for it under `/internal/runner/` (bodies in
//!   `runwarden_contracts::runner_api`), which this job calls through [`client::RunsClient`];
//! - its credentials: the **dispatch ticket** it is started with (`RUNNER_TICKET`, single use)
//!   and the **runner token** the exchange trades it for (the bearer of every later call).
//!
//! It exchanges its dispatch ticket for a runner token bound to the run, fetches the run's
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
