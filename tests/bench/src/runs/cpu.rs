//! Where the time goes: parts 1 and 2 also report the CPU time runs, quotas, the PostgreSQL
//! backends of the benchmark's database and this program used (from `/proc`), per run created
//! or per event appended, and how busy the whole machine was meanwhile (other work on it
//! included); part 1 also the transactions the database ended per run created
//! (`pg_stat_database`, the relay's included).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use crate::measure::{cores, machine_busy, ms, process_cpu};

/// The processes whose CPU time the benchmark accounts for.
#[derive(Clone, Copy)]
pub(super) struct Pids {
    pub(super) runs: u32,
    pub(super) quotas: u32,
}

/// CPU time used so far (see [`CpuMark::take`]).
pub(super) struct CpuMark {
    at: Instant,
    runs: Duration,
    quotas: Duration,
    bench: Duration,
    /// By backend pid.
    backends: HashMap<i32, Duration>,
    machine: Duration,
}

/// The CPU time used between two marks.
#[derive(Default)]
pub(super) struct CpuUse {
    wall: Duration,
    runs: Duration,
    quotas: Duration,
    /// This program: the clients (watchers, appender), not a server.
    bench: Duration,
    /// The PostgreSQL backends of the benchmark's database (not the WAL writer and the
    /// server's other background processes).
    postgres: Duration,
    /// The whole machine, whoever used it.
    machine: Duration,
}

impl CpuMark {
    /// runs' and quotas' CPU time (runs' without its runners), this program's, that of every
    /// PostgreSQL backend connected to the benchmark's database, and the machine's.
    pub(super) async fn take(admin: &PgPool, pids: Pids) -> anyhow::Result<CpuMark> {
        let backends: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity
              WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        .fetch_all(admin)
        .await?;
        let cpu = |pid: u32| process_cpu(pid).unwrap_or_default();
        Ok(CpuMark {
            at: Instant::now(),
            runs: cpu(pids.runs),
            quotas: cpu(pids.quotas),
            bench: cpu(std::process::id()),
            backends: backends
                .into_iter()
                .map(|pid| (pid, u32::try_from(pid).map(cpu).unwrap_or_default()))
                .collect(),
            machine: machine_busy().unwrap_or_default(),
        })
    }

    /// What was used from `self` to `later` (a backend that connected in between counts in
    /// full; one that disconnected is lost, which pools do not do within a phase).
    pub(super) fn until(&self, later: &CpuMark) -> CpuUse {
        CpuUse {
            wall: later.at - self.at,
            runs: later.runs.saturating_sub(self.runs),
            quotas: later.quotas.saturating_sub(self.quotas),
            bench: later.bench.saturating_sub(self.bench),
            postgres: later
                .backends
                .iter()
                .map(|(pid, t)| {
                    t.saturating_sub(self.backends.get(pid).copied().unwrap_or_default())
                })
                .sum(),
            machine: later.machine.saturating_sub(self.machine),
        }
    }
}

impl CpuUse {
    fn ours(&self) -> Duration {
        self.runs + self.quotas + self.bench + self.postgres
    }

    /// `runs 1.20 ms + quotas ... = 4.00 ms`, each divided by `n`.
    pub(super) fn per(&self, n: u64) -> String {
        let per = |d: Duration| ms(d / u32::try_from(n.max(1)).unwrap_or(u32::MAX));
        format!(
            "runs {} + quotas {} + PostgreSQL backends {} + this client {} = {}",
            per(self.runs),
            per(self.quotas),
            per(self.postgres),
            per(self.bench),
            per(self.ours())
        )
    }

    /// Busy shares of the machine's cores over the wall time.
    pub(super) fn shares(&self) -> String {
        let share = |d: Duration| {
            100.0 * d.as_secs_f64() / (self.wall.as_secs_f64() * cores() as f64).max(f64::EPSILON)
        };
        format!(
            "machine busy {:.0} % of {} cores, of which this stack {:.0} % (runs {:.0} %, \
             quotas {:.0} %, PostgreSQL backends {:.0} %, this client {:.0} %)",
            share(self.machine),
            cores(),
            share(self.ours()),
            share(self.runs),
            share(self.quotas),
            share(self.postgres),
            share(self.bench),
        )
    }
}
