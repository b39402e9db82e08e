use runwarden_frontdoor::{Config, FrontDoor, init_tracing, shutdown_signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let door = FrontDoor::bind(Config::from_env()?).await?;
    door.serve(shutdown_signal()).await
}
