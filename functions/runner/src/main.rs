use std::process::ExitCode;

use runwarden_runner::{Config, run};
use tracing::Instrument;

/// 0: the run was reported (whatever the agent did). 1: the runner could not do its job.
/// 2: its configuration is wrong.
#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("runner: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    runwarden_platform::telemetry::init(config.project.clone());
    let span = tracing::info_span!("run", run.id = %config.run_id);
    match run(config).instrument(span).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(
                error = format!("{e:#}"),
                "the runner could not finish the run"
            );
            ExitCode::FAILURE
        }
    }
}
