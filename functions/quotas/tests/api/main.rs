//! quotas' integration tests: one binary, one module per concern.

mod helpers;

mod access;
mod admission;
mod guarantees;
mod openapi;
mod plans;
mod settlement;
