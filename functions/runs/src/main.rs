use runwarden_runs::{App, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("runs: configuration error: {e}");
            std::process::exit(2);
        }
    };
    runwarden_platform::telemetry::init(config.service.project.clone());
    App::build(config).await?.run_until_stopped().await?;
    Ok(())
}
