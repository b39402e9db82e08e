//! Applies every pending migration to `DATABASE_URL` (an owner/admin connection, TCP or
//! Unix socket), creating the database first when it does not exist.

use anyhow::Context;
use secrecy::SecretString;
use sqlx::{Connection, PgConnection};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .context("missing required environment variable DATABASE_URL")?;
    let options = runwarden_store::connect_options(&SecretString::from(url))?;
    let database = options.get_database().unwrap_or("postgres").to_owned();

    let mut admin = PgConnection::connect_with(&options.clone().database("postgres"))
        .await
        .context("connecting to the server")?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&database)
            .fetch_one(&mut admin)
            .await
            .context("checking the database")?;
    if !exists {
        eprintln!("==> creating database {database}");
        let quoted = database.replace('"', "\"\"");
        sqlx::raw_sql(&format!("CREATE DATABASE \"{quoted}\""))
            .execute(&mut admin)
            .await
            .context("creating the database")?;
    }
    admin.close().await.ok();

    let mut conn = PgConnection::connect_with(&options)
        .await
        .context("connecting to the database")?;
    eprintln!(
        "==> applying migrations ({} known)",
        runwarden_store::MIGRATOR.iter().count()
    );
    runwarden_store::MIGRATOR
        .run(&mut conn)
        .await
        .context("applying migrations")?;
    eprintln!("==> database {database} is up to date");
    Ok(())
}
