//! auth's integration tests: one binary, one module per concern.

mod helpers;

mod account;
