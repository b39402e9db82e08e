//! runs' integration tests: one binary, one module per concern.

mod helpers;

mod openapi;
mod projects;
mod runs;
