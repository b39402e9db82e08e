//! The load benchmarks (driven by `scripts/bench`, which builds the binaries, prepares the
//! databases and the emulators and starts auth): one section per subcommand, each printing
//! a Markdown table. The binaries a section starts are found next to this one
//! (`target/<profile>/`), through the end-to-end harness (`runwarden_e2e`).
//!
//! ```text
//! bench run                      auth (see auth.rs); env BENCH_AUTH_URL (http://127.0.0.1:PORT), BENCH_AUTH_PID
//! bench relay                    outbox relay throughput through the Pub/Sub emulator; env
//!                                BENCH_DB_ADMIN_URL, BENCH_DB_RELAY_URL, PUBSUB_EMULATOR_HOST
//!                                (see relay.rs)
//! bench audit                    audit ingestion: COPY baseline, push ingestion, end to end
//!                                through outbox, relay, emulator and a release audit; env
//!                                BENCH_DB_ADMIN_URL, BENCH_DB_RELAY_URL, BENCH_DB_AUDIT_URL,
//!                                PUBSUB_EMULATOR_HOST (see audit.rs)
//! bench quotas                   quotas: admissions/s for one hot org and over 1,000 orgs
//!                                against a release quotas, rate-limit decisions/s, and the
//!                                latency the per-org rate limiter adds to a request; env
//!                                BENCH_DB_ADMIN_URL, BENCH_DB_QUOTAS_URL (see quotas/mod.rs)
//! bench runs                     runs: run creations/s through a release runs and quotas,
//!                                SSE fan-out of one run to 500 watchers, and the time from
//!                                POST .../runs to the runner's first event; env
//!                                BENCH_DB_ADMIN_URL, BENCH_DB_RUNS_URL, BENCH_DB_QUOTAS_URL,
//!                                PUBSUB_EMULATOR_HOST, STORAGE_EMULATOR_HOST,
//!                                BENCH_ARTIFACTS_BUCKET (see runs/mod.rs)
//! bench free-port                print a free TCP port on 127.0.0.1
//! bench db-url URL DB [USER]     print URL pointed at database DB (and login role USER)
//! bench drop-db ADMIN_URL DB     drop database DB (WITH (FORCE)), best-effort helper
//! ```
//!
//! Every phase runs for a fixed time and only talks to 127.0.0.1. Durations can be
//! shortened with `BENCH_SECONDS_SCALE` (e.g. `0.2` for a smoke run).

mod audit;
mod auth;
mod harness;
mod measure;
mod quotas;
mod relay;
mod runs;

use anyhow::{Context, bail};
use runwarden_e2e::drop_database;
use url::Url;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["free-port"] => {
            println!("{}", runwarden_e2e::free_port());
            Ok(())
        }
        ["db-url", url, db] => print_db_url(url, db, None),
        ["db-url", url, db, user] => print_db_url(url, db, Some(user)),
        ["drop-db", url, db] => drop_database(&Url::parse(url).context("admin URL")?, db),
        ["run"] => auth::run(),
        ["relay"] => relay::run(),
        ["audit"] => audit::run(),
        ["quotas"] => quotas::run(),
        ["runs"] => runs::run(),
        _ => bail!(
            "usage: bench run | relay | audit | quotas | runs | free-port | db-url URL DB [USER] \
             | drop-db ADMIN_URL DB"
        ),
    }
}

fn print_db_url(url: &str, db: &str, user: Option<&str>) -> anyhow::Result<()> {
    let base = Url::parse(url).context("not a URL")?;
    println!("{}", runwarden_e2e::database_url(&base, db, user));
    Ok(())
}
