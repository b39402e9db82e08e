//! Part 3 of the quotas benchmark, rate-limit decisions: `runwarden_ratelimit::check` (one
//! `rate_limit_check` statement) called directly by `CLIENTS` tasks, each on its own connection as
//! `runwarden_quotas`, over `LIMITER_KEYS` keys and then all on one key (the decisions of one key
//! serialize on its row) → decisions/s and the latency of one decision. Each decision is a write
//! transaction that waits for its WAL flush; a what-if row repeats the many-keys run with
//! `synchronous_commit = off` on those connections, to show what the flush costs (that is not how
//! the limiter runs).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use runwarden_ratelimit::Quota;
use runwarden_store::PoolSettings;
use secrecy::SecretString;
use uuid::Uuid;

use super::{CLIENTS, HUGE_RPM};
use crate::measure::{Outcome, Sample, closed_loop, p50_p99, scaled};

const LIMITER_KEYS: usize = 10_000;
const LIMITER_SECS: f64 = 5.0;

/// Part 3's runs.
pub(super) struct Decisions {
    keys: Sample,
    one_key: Sample,
    /// The what-if: `keys` with `synchronous_commit = off`.
    keys_async_commit: Sample,
}

/// Part 3 on the database at `quotas_url` (as `runwarden_quotas`): over many keys, on one
/// key, then the what-if.
pub(super) async fn measure(quotas_url: &str) -> anyhow::Result<Decisions> {
    eprintln!(
        "==> quotas: rate_limit_check from {CLIENTS} tasks over {LIMITER_KEYS} keys, {:?}",
        scaled(LIMITER_SECS)
    );
    let keys = limiter_decisions(quotas_url, LIMITER_KEYS, true).await?;
    eprintln!(
        "==> quotas: rate_limit_check from {CLIENTS} tasks on one key, {:?}",
        scaled(LIMITER_SECS)
    );
    let one_key = limiter_decisions(quotas_url, 1, true).await?;
    eprintln!(
        "==> quotas: what if: rate_limit_check over {LIMITER_KEYS} keys with \
         synchronous_commit = off, {:?}",
        scaled(LIMITER_SECS)
    );
    let keys_async_commit = limiter_decisions(quotas_url, LIMITER_KEYS, false).await?;
    Ok(Decisions {
        keys,
        one_key,
        keys_async_commit,
    })
}

/// `CLIENTS` tasks, each on its own connection as `runwarden_quotas`, making decisions round
/// robin over `keys` keys for `LIMITER_SECS`, with a quota that never refuses (so every
/// decision also writes its row, as an allowed request does). `synchronous_commit`: as the
/// server is set (what the limiter runs with), or off on these connections (a what-if).
async fn limiter_decisions(
    quotas_url: &str,
    keys: usize,
    synchronous_commit: bool,
) -> anyhow::Result<Sample> {
    let settings = PoolSettings {
        max_connections: u32::try_from(CLIENTS)?,
        ..PoolSettings::default()
    };
    let mut options = runwarden_store::connect_options(&SecretString::from(quotas_url))?;
    if !synchronous_commit {
        options = options.options([("synchronous_commit", "off")]);
    }
    let pool = runwarden_store::pool(options, &settings);
    // Open every connection before the clock starts (the pool opens them lazily).
    let mut held = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        held.push(pool.acquire().await?);
    }
    drop(held);
    let run = Uuid::new_v4().simple().to_string();
    let keys: Arc<Vec<String>> = Arc::new(
        (0..keys)
            .map(|i| format!("bench:{run}:{i}"))
            .collect::<Vec<_>>(),
    );
    let quota = Quota::per_minute(u32::try_from(HUGE_RPM)?);
    let next = Arc::new(AtomicUsize::new(0));
    let sample = closed_loop(CLIENTS, scaled(LIMITER_SECS), |_| {
        let (pool, keys, next) = (pool.clone(), keys.clone(), next.clone());
        move || {
            let (pool, keys) = (pool.clone(), keys.clone());
            let i = next.fetch_add(1, Ordering::Relaxed) % keys.len();
            async move {
                match runwarden_ratelimit::check(&pool, &keys[i], quota).await {
                    Ok(d) if d.allowed => Outcome::Ok,
                    Ok(_) => Outcome::Refused("rate_limited".into()),
                    Err(e) => Outcome::Failed(e.to_string()),
                }
            }
        }
    })
    .await?;
    pool.close().await;
    Ok(sample)
}

/// Rows 3 to 5 of the table.
pub(super) fn print_rows(d: &Decisions) {
    let limiter_secs = scaled(LIMITER_SECS).as_secs_f64();
    for (n, s, what) in [
        (3, &d.keys, format!("over {LIMITER_KEYS} keys")),
        (4, &d.one_key, "on one key".to_owned()),
        (
            5,
            &d.keys_async_commit,
            format!(
                "over {LIMITER_KEYS} keys, what if: synchronous_commit = off on these \
                 connections (not how the limiter runs)"
            ),
        ),
    ] {
        println!(
            "| {n} | rate_limit_check called directly, {CLIENTS} tasks (a connection each) {what}, {limiter_secs:.0} s | {:.0} decisions/s | {} | {} / {} | – | – |",
            s.rate(),
            p50_p99(s),
            s.refusals(),
            s.failures(),
        );
    }
}
