//! The runner: a Cloud Run job execution (locally, a child process of runs) that executes one
//! agent for one run within the run's wall-clock cap.
//!
//! This part: its configuration, and how the agent's output becomes events (bounded line
//! reading, secret redaction, progress lines, batching).

pub mod config;
pub mod events;
pub mod output;
pub mod redact;

pub use config::Config;
