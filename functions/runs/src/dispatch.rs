//! Dispatch: the `run-dispatch` push starts one runner execution per run, however often
//! Pub/Sub delivers it. The run's row is locked while the execution starts; a run already
//! dispatched (or no longer queued) is acknowledged and left alone, and a start that fails
//! leaves the run queued and answers 5xx, so Pub/Sub retries.
//!
//! What travels to the execution is a single-use ticket, never the runner token: job
//! overrides are readable by anyone who can read the execution, so the runner exchanges the
//! ticket once for its token ([`crate::tickets`]) and a second exchange fails and is audited.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use runwarden_contracts::RunId;
use runwarden_contracts::messages::RunDispatch;
use runwarden_events::push::{Delivery, PushError};
use runwarden_tenancy::{OrgId, set_tenant};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

use crate::runs::{self, Status};
use crate::tickets;

/// What a runner execution is started with.
pub struct Launch<'a> {
    pub run: RunId,
    pub ticket: &'a str,
    /// The run's granted cap: the execution's own timeout is this plus the grace.
    pub cap_secs: i64,
}

/// Starts runner executions: Cloud Run job executions in production, child processes locally.
#[derive(Clone)]
pub enum Executor {
    CloudRun(CloudRunExecutor),
    Local(LocalExecutor),
}

impl Executor {
    /// Starts the execution; returns its name (for cancel).
    pub async fn start(&self, launch: Launch<'_>) -> anyhow::Result<String> {
        match self {
            Self::CloudRun(cloud) => cloud.start(launch).await,
            Self::Local(local) => local.start(launch),
        }
    }

    /// Stops the execution if it still runs (best effort: the runner's token is already
    /// dead, so at its next call it stops its agent anyway).
    pub async fn cancel(&self, execution: &str) {
        match self {
            Self::CloudRun(cloud) => cloud.cancel(execution).await,
            Self::Local(local) => local.cancel(execution),
        }
    }
}

/// Production: one Cloud Run job execution per run, through the official client. Only the
/// run id, runs' URL and the single-use ticket travel as per-execution overrides (they are
/// readable by whoever can read the execution); the internal secret reaches the job from
/// Secret Manager through the job's own definition.
#[derive(Clone)]
pub struct CloudRunExecutor {
    jobs: google_cloud_run_v2::client::Jobs,
    executions: google_cloud_run_v2::client::Executions,
    /// `projects/P/locations/L/jobs/J`.
    job: String,
    runs_url: String,
    grace_secs: i64,
}

impl CloudRunExecutor {
    /// `endpoint`: the Run API's base URL (tests); `None` is Google's, with ADC.
    pub async fn connect(
        job: String,
        runs_url: String,
        grace_secs: i64,
        endpoint: Option<&str>,
    ) -> anyhow::Result<Self> {
        let mut jobs = google_cloud_run_v2::client::Jobs::builder();
        let mut executions = google_cloud_run_v2::client::Executions::builder();
        if let Some(endpoint) = endpoint {
            let anonymous = || google_cloud_auth::credentials::anonymous::Builder::new().build();
            jobs = jobs.with_endpoint(endpoint).with_credentials(anonymous());
            executions = executions
                .with_endpoint(endpoint)
                .with_credentials(anonymous());
        }
        Ok(Self {
            jobs: jobs.build().await?,
            executions: executions.build().await?,
            job,
            runs_url,
            grace_secs,
        })
    }

    async fn start(&self, launch: Launch<'_>) -> anyhow::Result<String> {
        use google_cloud_run_v2::model::EnvVar;
        use google_cloud_run_v2::model::run_job_request::Overrides;
        use google_cloud_run_v2::model::run_job_request::overrides::ContainerOverride;
        let env = [
            ("RUNWARDEN_RUN_ID", launch.run.to_string()),
            ("RUNS_URL", self.runs_url.clone()),
            ("RUNNER_TICKET", launch.ticket.to_owned()),
        ]
        .map(|(name, value)| EnvVar::new().set_name(name).set_value(value));
        let overrides = Overrides::new()
            .set_container_overrides([ContainerOverride::new().set_env(env)])
            .set_task_count(1)
            .set_timeout(google_cloud_wkt::Duration::clamp(
                launch.cap_secs.saturating_add(self.grace_secs),
                0,
            ));
        let operation = self
            .jobs
            .run_job()
            .set_name(&self.job)
            .set_overrides(overrides)
            .send()
            .await?;
        let execution: google_cloud_run_v2::model::Execution = operation
            .metadata
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the Run API returned no execution"))?
            .to_msg()?;
        Ok(execution.name)
    }

    async fn cancel(&self, execution: &str) {
        if let Err(e) = self
            .executions
            .cancel_execution()
            .set_name(execution)
            .send()
            .await
        {
            tracing::warn!(execution, error = %e, "cancelling the runner execution failed");
        }
    }
}

/// The local stand-in for Cloud Run jobs: the runner binary as a child process with the
/// environment a job execution gets.
#[derive(Clone)]
pub struct LocalExecutor {
    runner: PathBuf,
    runs_url: String,
    internal_secret: SecretString,
    /// Runners still running: execution name → process id (removed when they exit).
    children: Arc<Mutex<HashMap<String, u32>>>,
}

impl LocalExecutor {
    pub fn new(runner: PathBuf, runs_url: String, internal_secret: SecretString) -> Self {
        Self {
            runner,
            runs_url,
            internal_secret,
            children: Arc::default(),
        }
    }

    fn start(&self, launch: Launch<'_>) -> anyhow::Result<String> {
        let mut command = tokio::process::Command::new(&self.runner);
        command
            .env_clear()
            .env("RUNWARDEN_RUN_ID", launch.run.to_string())
            .env("RUNS_URL", &self.runs_url)
            .env("RUNNER_TICKET", launch.ticket)
            .env("INTERNAL_AUTH_SECRET", self.internal_secret.expose_secret())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(false);
        // Unset, not empty, when runs has none: the runner then uses its default PATH.
        for name in [
            "PATH",
            "RUST_LOG",
            "RUNWARDEN_ENV",
            "RUNNER_AGENTS",
            "TMPDIR",
        ] {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        let mut child = command
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {}: {e}", self.runner.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow::anyhow!("the runner exited at once"))?;
        let execution = format!("local-{pid}");
        self.children
            .lock()
            .map_err(|_| anyhow::anyhow!("executor lock poisoned"))?
            .insert(execution.clone(), pid);
        // Reap it when it exits (no zombie stays behind), and forget it then.
        let children = self.children.clone();
        let name = execution.clone();
        tokio::spawn(async move {
            let _ = child.wait().await;
            if let Ok(mut map) = children.lock() {
                map.remove(&name);
            }
        });
        Ok(execution)
    }

    /// SIGTERM, which the runner answers by killing its agent's process group (a SIGKILL
    /// would leave the agent running: it has a group of its own).
    fn cancel(&self, execution: &str) {
        if let Ok(map) = self.children.lock()
            && let Some(pid) = map.get(execution)
            && let Ok(pid) = i32::try_from(*pid)
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

/// `POST /push/run-dispatch`.
pub async fn handle_push(
    pool: PgPool,
    executor: Executor,
    delivery: Delivery,
) -> Result<(), PushError> {
    let message: RunDispatch = delivery.json()?;
    let org = OrgId::from(message.org_id);
    let transient = |e: &dyn std::fmt::Display| {
        tracing::warn!(run.id = %message.run_id, error = %e, "dispatch failed; Pub/Sub retries");
        PushError::transient("dispatch failed")
    };
    let mut tx = pool.begin().await.map_err(|e| transient(&e))?;
    set_tenant(&mut tx, Some(org), None)
        .await
        .map_err(|e| transient(&e))?;
    let run = match runs::get(&mut tx, org, message.run_id, true).await {
        Ok(run) => run,
        // Deleted with its project, or never ours: nothing to start.
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(transient(&e)),
    };
    let already = tickets::issued(&mut tx, run.id)
        .await
        .map_err(|e| transient(&e))?;
    if run.status() != Status::Queued || already {
        tracing::info!(run.id = %run.id, status = %run.status, "dispatch redelivered; nothing to start");
        return Ok(());
    }
    let ticket = tickets::issue(&mut tx, org, run.id)
        .await
        .map_err(|e| transient(&e))?;
    // Started under the row lock: a concurrent redelivery waits, then sees the credentials.
    let execution = executor
        .start(Launch {
            run: run.id,
            ticket: &ticket,
            cap_secs: run.granted_cap_secs.unwrap_or(0),
        })
        .await
        .map_err(|e| transient(&e))?;
    sqlx::query(
        "UPDATE runs SET dispatched_at = now(), execution = $3 WHERE org_id = $1 AND id = $2",
    )
    .bind(org)
    .bind(run.id)
    .bind(&execution)
    .execute(&mut *tx)
    .await
    .map_err(|e| transient(&e))?;
    if let Err(e) = tx.commit().await {
        // The runner holds a ticket the database never recorded: stop it; Pub/Sub retries.
        executor.cancel(&execution).await;
        return Err(transient(&e));
    }
    tracing::info!(run.id = %run.id, execution, "runner started");
    Ok(())
}
