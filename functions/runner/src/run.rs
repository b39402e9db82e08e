//! One run, start to end: exchange the dispatch ticket, fetch the secrets, start the agent, stream
//! its output, enforce the cap, upload its artifacts, report the outcome.

use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::Signal;
use runwarden_contracts::runner_api::{ArtifactRequest, CompleteRequest, EventsRequest, Outcome};
use secrecy::ExposeSecret;
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use crate::agent::{self, ChildEnv, WorkDir};
use crate::artifacts;
use crate::client::{CallError, Retry, RunsClient};
use crate::config::Config;
use crate::events::{Batch, RunnerEvent, Stream};
use crate::output::forward_lines;
use crate::redact::Redactor;

/// Time between SIGTERM and SIGKILL at the cap.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long the output of an ended agent is still read (a process that left the group
/// could hold the pipes open forever).
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// Lines waiting for the event sender; a full queue slows the agent's writes down.
const EVENT_QUEUE: usize = 1024;

/// What the runner reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    pub actual_secs: i64,
    pub artifacts: usize,
}

/// Why the runner stopped without reporting an outcome.
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("runs refused the runner ({0}); the run was cancelled or its credential died")]
    Refused(CallError),
    #[error("stopped by SIGTERM")]
    Terminated,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

fn refused_or(e: CallError, what: &'static str) -> RunnerError {
    if e.is_refused() {
        RunnerError::Refused(e)
    } else {
        RunnerError::Other(anyhow::Error::new(e).context(what))
    }
}

/// Runs the run. `Ok` once the outcome is reported (whatever the agent did).
pub async fn run(config: Config) -> Result<Report, RunnerError> {
    run_with(config, Retry::default()).await
}

pub async fn run_with(config: Config, retry: Retry) -> Result<Report, RunnerError> {
    // SIGTERM (a cancelled job execution, or runs' local executor) at any point: the agent's
    // group is killed and the runner stops without reporting.
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let agent_group = Arc::new(AtomicU32::new(0));
    tokio::select! {
        result = run_inner(config, retry, agent_group.clone()) => result,
        _ = sigterm.recv() => {
            let pgid = agent_group.load(Ordering::SeqCst);
            if pgid != 0 {
                agent::signal_group(pgid, Signal::SIGKILL);
            }
            tracing::warn!("stopped by SIGTERM; the run is not reported");
            Err(RunnerError::Terminated)
        }
    }
}

async fn run_inner(
    config: Config,
    retry: Retry,
    agent_group: Arc<AtomicU32>,
) -> Result<Report, RunnerError> {
    let client = RunsClient::new(
        &config.runs_url,
        config.run_id,
        &config.internal_secret,
        retry,
    )?;
    let exchanged = client
        .exchange(&config.ticket)
        .await
        .map_err(|e| refused_or(e, "exchanging the dispatch ticket"))?;
    let client = client.with_token(&exchanged.runner_token)?;
    tracing::info!(agent = %exchanged.agent, cap_secs = exchanged.cap_secs, "dispatch ticket exchanged");

    let secrets = client
        .secrets()
        .await
        .map_err(|e| refused_or(e, "fetching the run's secrets"))?;
    let redactor = Redactor::new(secrets.iter().map(|s| s.value.expose_secret()));
    let work = WorkDir::prepare(config.work_dir.as_deref(), config.run_id)
        .context("preparing the work folder")?;
    let env = ChildEnv::new(config.run_id, &exchanged.input, &work, &secrets);
    drop(secrets);
    let mut notes: Vec<RunnerEvent> = env
        .skipped
        .iter()
        .map(|(name, why)| {
            tracing::warn!(variable = %name, why, "a secret is not passed to the agent");
            runner_line(format!(
                "runner: secret {name} not passed to the agent: {why}"
            ))
        })
        .collect();

    // Runs that end before any agent starts.
    let Some(argv) = config.agents.get(&exchanged.agent) else {
        tracing::warn!(agent = %exchanged.agent, "no such agent");
        notes.push(runner_line(format!(
            "runner: no agent named {:?} is installed",
            exchanged.agent
        )));
        return report_unstarted(&client, notes, Outcome::Failed).await;
    };
    if exchanged.cap_secs <= 0 {
        notes.push(runner_line("runner: the run has no time left".into()));
        return report_unstarted(&client, notes, Outcome::TimedOut).await;
    }

    // Before the agent starts: a refusal here means it never does.
    notes.push(RunnerEvent::status("started"));
    send_now(&client, notes).await?;

    let started = Instant::now();
    let mut child = match agent::spawn(argv, &env, &work) {
        Ok(child) => child,
        Err(e) => {
            tracing::warn!(agent = %exchanged.agent, error = %e, "the agent could not start");
            let line = runner_line(format!("runner: the agent could not start: {e}"));
            return report_unstarted(&client, vec![line], Outcome::Failed).await;
        }
    };
    drop(env);
    let pgid = child.id().context("the agent has no pid")?;
    agent_group.store(pgid, Ordering::SeqCst);
    tracing::info!(agent = %exchanged.agent, agent.pid = pgid, "agent started");

    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let mut readers: Vec<JoinHandle<()>> = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        readers.push(tokio::spawn(
            forward_lines(stdout, Stream::Stdout, redactor.clone(), events_tx.clone())
                .in_current_span(),
        ));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(tokio::spawn(
            forward_lines(stderr, Stream::Stderr, redactor.clone(), events_tx.clone())
                .in_current_span(),
        ));
    }
    let mut sender = tokio::spawn(send_events(client.clone(), events_rx).in_current_span());

    let cap = Duration::from_secs(exchanged.cap_secs.unsigned_abs());
    let ended = supervise(&mut child, pgid, started + cap, &mut sender).await;
    // Whatever happened, nothing the agent started outlives it.
    agent::signal_group(pgid, Signal::SIGKILL);
    agent_group.store(0, Ordering::SeqCst);
    let (status, timed_out) = match ended {
        Ok(ended) => ended,
        Err(error) => {
            readers.iter().for_each(JoinHandle::abort);
            sender.abort();
            tracing::warn!(error = %error, "agent killed; the run is not reported");
            return Err(error);
        }
    };
    let elapsed = started.elapsed();
    let exit_code = status.code();
    let outcome = if timed_out {
        Outcome::TimedOut
    } else if status.success() {
        Outcome::Succeeded
    } else {
        Outcome::Failed
    };
    tracing::info!(
        outcome = outcome.as_str(),
        exit_code,
        duration_ms = elapsed.as_millis() as u64,
        "agent ended"
    );

    // The rest of its output, then the last event.
    drain(readers).await;
    let _ = events_tx.send(RunnerEvent::status(outcome.as_str())).await;
    drop(events_tx);
    match sender.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(RunnerError::Refused(e)),
        Err(e) => return Err(anyhow::anyhow!("the event sender failed: {e}").into()),
    }

    let artifacts = upload_artifacts(&client, &work, &redactor).await?;
    let report = Report {
        outcome,
        exit_code,
        actual_secs: actual_secs(elapsed, exchanged.cap_secs),
        artifacts,
    };
    complete(&client, &report).await?;
    Ok(report)
}

/// Waits for the agent to end. At the deadline its group gets SIGTERM, and SIGKILL
/// `KILL_GRACE` later. Returns its exit status and whether the cap ended it; an error when
/// the event sender stopped because runs refused the runner (the caller kills the group).
async fn supervise(
    child: &mut Child,
    pgid: u32,
    deadline: Instant,
    sender: &mut JoinHandle<Result<(), CallError>>,
) -> Result<(ExitStatus, bool), RunnerError> {
    let mut term_sent_at: Option<Instant> = None;
    let mut kill_sent = false;
    loop {
        tokio::select! {
            biased;
            status = child.wait() => {
                let status = status.context("waiting for the agent")?;
                return Ok((status, term_sent_at.is_some()));
            }
            _ = sleep_until(deadline), if term_sent_at.is_none() => {
                tracing::warn!("the cap passed; stopping the agent");
                agent::signal_group(pgid, Signal::SIGTERM);
                term_sent_at = Some(Instant::now());
            }
            _ = sleep_until(term_sent_at.unwrap_or(deadline) + KILL_GRACE),
                if term_sent_at.is_some() && !kill_sent => {
                agent::signal_group(pgid, Signal::SIGKILL);
                kill_sent = true;
            }
            result = &mut *sender => {
                // The sender ends early only when runs refuses the runner.
                return Err(match result {
                    Ok(Err(e)) => RunnerError::Refused(e),
                    Ok(Ok(())) => anyhow::anyhow!("the event sender stopped early").into(),
                    Err(e) => anyhow::anyhow!("the event sender failed: {e}").into(),
                });
            }
        }
    }
}

/// Lets the output readers finish, for at most `DRAIN_GRACE`: a process that left the
/// agent's group could hold the pipes open forever.
async fn drain(readers: Vec<JoinHandle<()>>) {
    let until = Instant::now() + DRAIN_GRACE;
    for reader in readers {
        let abort = reader.abort_handle();
        if tokio::time::timeout_at(until, reader).await.is_err() {
            tracing::warn!("the agent's output stayed open after it ended; stopped reading");
            abort.abort();
        }
    }
}

/// Whole seconds used, rounded up, never more than the cap (the kill grace is not billed).
pub fn actual_secs(elapsed: Duration, cap_secs: i64) -> i64 {
    let secs = elapsed.as_secs() + u64::from(elapsed.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX).min(cap_secs.max(0))
}

/// A line from the runner itself, shown with the agent's stderr.
fn runner_line(message: String) -> RunnerEvent {
    RunnerEvent::Log {
        stream: Stream::Stderr,
        message,
    }
}

/// Sends `events` at once; only a refusal is an error.
async fn send_now(client: &RunsClient, events: Vec<RunnerEvent>) -> Result<(), RunnerError> {
    let mut batch = Batch::default();
    for event in events {
        batch.push(event, Instant::now());
    }
    flush(client, &mut batch)
        .await
        .map_err(RunnerError::Refused)
}

/// For runs that end before an agent started: the notes, then the outcome.
async fn report_unstarted(
    client: &RunsClient,
    notes: Vec<RunnerEvent>,
    outcome: Outcome,
) -> Result<Report, RunnerError> {
    send_now(client, notes).await?;
    let report = Report {
        outcome,
        exit_code: None,
        actual_secs: 0,
        artifacts: 0,
    };
    complete(client, &report).await?;
    Ok(report)
}

async fn complete(client: &RunsClient, report: &Report) -> Result<(), RunnerError> {
    client
        .complete(&CompleteRequest {
            outcome: report.outcome,
            exit_code: report.exit_code,
            actual_secs: report.actual_secs,
        })
        .await
        .map_err(|e| refused_or(e, "reporting the outcome"))?;
    tracing::info!(
        outcome = report.outcome.as_str(),
        exit_code = report.exit_code,
        actual_secs = report.actual_secs,
        artifacts = report.artifacts,
        "run reported"
    );
    Ok(())
}

/// Batches events from `events` and sends them until the channel closes. Only a refusal
/// (401/404) ends it early, as an error; other failures drop the batch with a warning.
async fn send_events(
    client: RunsClient,
    mut events: mpsc::Receiver<RunnerEvent>,
) -> Result<(), CallError> {
    let mut batch = Batch::default();
    loop {
        let deadline = batch.deadline();
        let full = tokio::select! {
            event = events.recv() => match event {
                Some(event) => batch.push(event, Instant::now()),
                None => {
                    flush(&client, &mut batch).await?;
                    return Ok(());
                }
            },
            _ = sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => true,
        };
        if full {
            flush(&client, &mut batch).await?;
        }
    }
}

async fn flush(client: &RunsClient, batch: &mut Batch) -> Result<(), CallError> {
    if batch.is_empty() {
        return Ok(());
    }
    let request = EventsRequest {
        events: batch.take(),
    };
    match client.send_events(&request).await {
        Ok(()) => Ok(()),
        Err(e) if e.is_refused() => Err(e),
        Err(e) => {
            tracing::warn!(error = %e, dropped = request.events.len(), "sending events failed; they are dropped");
            Ok(())
        }
    }
}

async fn upload_artifacts(
    client: &RunsClient,
    work: &WorkDir,
    redactor: &Redactor,
) -> Result<usize, RunnerError> {
    let (found, skipped) = match artifacts::collect(&work.artifacts, redactor) {
        Ok(listing) => listing,
        Err(e) => {
            tracing::warn!(error = %e, "the artifacts folder could not be read; nothing uploaded");
            return Ok(0);
        }
    };
    for skip in &skipped {
        tracing::warn!(reason = skip.reason(), "an artifact was left out");
    }
    let mut uploaded = 0;
    for artifact in found {
        let registration = ArtifactRequest {
            name: artifact.name.clone(),
            content_type: artifacts::content_type(&artifact.name).to_owned(),
            size: artifact.size,
        };
        let target = match client.register_artifact(&registration).await {
            Ok(target) => target,
            Err(e) if e.is_refused() => return Err(RunnerError::Refused(e)),
            Err(e) => {
                tracing::warn!(artifact = %artifact.name, error = %e, "runs did not take the artifact");
                continue;
            }
        };
        match client.upload(&target, &artifact.path, artifact.size).await {
            Ok(()) => {
                uploaded += 1;
                tracing::info!(artifact = %artifact.name, size_bytes = artifact.size, content_type = registration.content_type.as_str(), "artifact uploaded");
            }
            Err(e) => {
                tracing::warn!(artifact = %artifact.name, error = %e, "uploading the artifact failed")
            }
        }
    }
    Ok(uploaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actual_seconds_round_up_and_stop_at_the_cap() {
        assert_eq!(actual_secs(Duration::ZERO, 60), 0);
        assert_eq!(actual_secs(Duration::from_millis(1), 60), 1);
        assert_eq!(actual_secs(Duration::from_secs(3), 60), 3);
        assert_eq!(actual_secs(Duration::from_millis(3_200), 60), 4);
        // Killed at a 2 s cap, ended after the 2 s grace: 2 s used.
        assert_eq!(actual_secs(Duration::from_millis(4_100), 2), 2);
    }
}
