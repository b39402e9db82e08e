//! What every bench section measures with: phase lengths scaled by `BENCH_SECONDS_SCALE`,
//! a closed-loop load driver, latency percentiles and their formatting.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;

/// The machine's cores (1 if unknown).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A multi-threaded runtime with one worker per core, for a bench section.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores())
        .enable_all()
        .build()?)
}

/// `BENCH_SECONDS_SCALE`: a number in (0, 1]; anything else counts as 1.
fn scale() -> f64 {
    std::env::var("BENCH_SECONDS_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|s: &f64| *s > 0.0 && *s <= 1.0)
        .unwrap_or(1.0)
}

/// `secs` times `BENCH_SECONDS_SCALE`, so `BENCH_SECONDS_SCALE=0.2` makes a smoke run of
/// every timed phase.
pub fn scaled(secs: f64) -> Duration {
    Duration::from_secs_f64(secs * scale())
}

/// `n` repetitions scaled like a timed phase, but never fewer than `min`: for phases counted
/// in operations rather than seconds (each of which takes as long as it takes).
pub fn scaled_count(n: usize, min: usize) -> usize {
    ((n as f64 * scale()).round() as usize).max(min)
}

/// A variable the section cannot run without (set by `scripts/bench`).
pub fn required_env(name: &str) -> anyhow::Result<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .with_context(|| format!("{name} is required"))
}

/// The `p` quantile (0..=1) of `sorted` latencies, nearest rank; zero when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// `1.23 ms`.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A target's verdict in a table.
pub fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "MISS" }
}

/// `1.23 ms / 4.56 ms`: p50 and p99 of a sample.
pub fn p50_p99(s: &Sample) -> String {
    format!("{} / {}", ms(s.percentile(0.50)), ms(s.percentile(0.99)))
}

/// What one operation of a load loop came to.
pub enum Outcome {
    /// Done as asked.
    Ok,
    /// Answered, but refused by a limit (with its code): counted, not an error.
    Refused(String),
    /// Failed (transport error, unexpected status or body).
    Failed(String),
}

/// The result of [`closed_loop`].
#[derive(Default)]
pub struct Sample {
    pub ok: u64,
    /// Refusals by code.
    pub refused: BTreeMap<String, u64>,
    pub failed: u64,
    pub first_failure: Option<String>,
    pub elapsed: Duration,
    /// Latencies of the operations that came to [`Outcome::Ok`], sorted.
    pub latencies: Vec<Duration>,
}

impl Sample {
    /// Successful operations per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }

    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }

    /// `0`, or `3 (first: ...)`, safe inside a Markdown table cell.
    pub fn failures(&self) -> String {
        match &self.first_failure {
            None => self.failed.to_string(),
            Some(e) => {
                let e: String = e.chars().take(80).collect();
                format!("{} (first: {})", self.failed, e.replace('|', "/"))
            }
        }
    }

    /// `0`, or `12 (parallel_runs_exceeded: 12)`.
    pub fn refusals(&self) -> String {
        if self.refused.is_empty() {
            return "0".into();
        }
        let by_code: Vec<String> = self
            .refused
            .iter()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect();
        format!("{} ({})", self.refused_total(), by_code.join(", "))
    }
}

/// `clients` concurrent tasks, each running its own `op` (from `op_for(client index)`) one
/// call after another until `duration` has passed; every call is timed.
pub async fn closed_loop<F, Fut>(
    clients: usize,
    duration: Duration,
    op_for: impl Fn(usize) -> F,
) -> anyhow::Result<Sample>
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Outcome> + Send,
{
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::with_capacity(clients);
    for i in 0..clients {
        let mut op = op_for(i);
        tasks.push(tokio::spawn(async move {
            let mut out = Sample::default();
            while Instant::now() < deadline {
                let sent = Instant::now();
                let outcome = op().await;
                let took = sent.elapsed();
                match outcome {
                    Outcome::Ok => {
                        out.ok += 1;
                        out.latencies.push(took);
                    }
                    Outcome::Refused(code) => *out.refused.entry(code).or_insert(0) += 1,
                    Outcome::Failed(e) => {
                        out.failed += 1;
                        out.first_failure.get_or_insert(e);
                        // Do not spin on a dead server.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            out
        }));
    }
    let mut total = Sample::default();
    for task in tasks {
        let c = task.await?;
        total.ok += c.ok;
        for (code, n) in c.refused {
            *total.refused.entry(code).or_insert(0) += n;
        }
        total.failed += c.failed;
        if total.first_failure.is_none() {
            total.first_failure = c.first_failure;
        }
        total.latencies.extend(c.latencies);
    }
    total.elapsed = started.elapsed();
    total.latencies.sort_unstable();
    Ok(total)
}

/// Open loop: starts one `op` every `1 / per_sec` seconds for `duration`, whatever the
/// earlier ones are doing (a slow answer does not slow the offered load down, as it would
/// with a fixed number of clients, so slow answers cannot hide by delaying the requests
/// behind them), and times each from the moment it was started. (Not from when it was due:
/// the timer wakes up to 1 ms late, which would add up to 1 ms to every sample.) Returns
/// once every operation has finished.
pub async fn open_loop<F, Fut>(
    per_sec: f64,
    duration: Duration,
    mut op: F,
) -> anyhow::Result<Sample>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Outcome> + Send + 'static,
{
    let every = Duration::from_secs_f64(1.0 / per_sec);
    let count = (duration.as_secs_f64() * per_sec).round() as u64;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for k in 0..count {
        let due = started + every.mul_f64(k as f64);
        tokio::time::sleep_until(due.into()).await;
        let operation = op();
        let sent = Instant::now();
        tasks.push(tokio::spawn(async move {
            let outcome = operation.await;
            (outcome, sent.elapsed())
        }));
    }
    let mut total = Sample::default();
    for task in tasks {
        match task.await? {
            (Outcome::Ok, took) => {
                total.ok += 1;
                total.latencies.push(took);
            }
            (Outcome::Refused(code), _) => *total.refused.entry(code).or_insert(0) += 1,
            (Outcome::Failed(e), _) => {
                total.failed += 1;
                total.first_failure.get_or_insert(e);
            }
        }
    }
    total.elapsed = started.elapsed();
    total.latencies.sort_unstable();
    Ok(total)
}

/// The 1-minute load average (`/proc/loadavg`), to print next to results taken on a
/// machine that other work may share.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Linux's `USER_HZ`: the unit of the CPU times in `/proc` (100 on every mainstream kernel).
const TICKS_PER_SEC: u64 = 100;

/// The CPU time (user + system) process `pid` has used so far, from `/proc/<pid>/stat`;
/// `None` when it cannot be read (gone, or not Linux).
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name, which may hold spaces: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SEC))
}

/// The CPU time the whole machine has been busy so far, summed over its cores (`/proc/stat`:
/// everything but idle and I/O wait), whoever used it.
pub fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> = stat
        .lines()
        .next()?
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // Guest time is already counted in user.
    let [user, nice, system, _idle, _iowait, irq, softirq, steal, ..] = ticks[..] else {
        return None;
    };
    let busy = user + nice + system + irq + softirq + steal;
    Some(Duration::from_millis(busy * 1000 / TICKS_PER_SEC))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&sorted, 0.5), Duration::from_millis(51));
        assert_eq!(percentile(&sorted, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&sorted, 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 0.99), Duration::ZERO);
    }

    #[test]
    fn cpu_times_are_read_from_proc() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let busy = machine_busy().expect("/proc/stat parses");
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_millis(50) {
            std::hint::black_box(start.elapsed());
        }
        let own = process_cpu(std::process::id()).expect("/proc/self/stat parses");
        assert!(own > Duration::ZERO);
        assert!(machine_busy().expect("/proc/stat parses") >= busy);
    }
}
