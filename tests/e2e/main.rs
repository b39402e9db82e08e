//! End-to-end tests: the real `auth`, `migrate` and `frontdoor` binaries as child processes
//! against a real PostgreSQL server, one fresh database per test.
//!
//! ```sh
//! cargo build --workspace --bins
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo test -p runwarden-e2e
//! ```

mod audit_pipeline;
mod config;
mod frontdoor;
mod key_rotation;
mod logs;
mod run_path;
mod shutdown;
mod unix_socket;
