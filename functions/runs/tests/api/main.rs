//! runs' integration tests: one binary, one module per concern.

mod helpers;

mod cloud_run;
mod guarantees;
mod ids;
mod media;
mod openapi;
mod projects;
mod rate_limit;
mod runs;
mod secrets;
