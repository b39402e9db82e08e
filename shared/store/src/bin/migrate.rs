//! Applies every pending migration to `DATABASE_URL` (an owner/admin connection), creating
//! the database first when it does not exist.

use anyhow::Context;
use secrecy::SecretString;
use sqlx::migrate::MigrateDatabase;
use sqlx::{Connection, PgConnection, Postgres};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .context("missing required environment variable DATABASE_URL")?;
    runwarden_store::connect_options(&SecretString::from(url.clone()))?;
    if !Postgres::database_exists(&url)
        .await
        .context("checking the database")?
    {
        println!("==> creating database");
        Postgres::create_database(&url)
            .await
            .context("creating the database")?;
    }
    let mut conn = PgConnection::connect(&url)
        .await
        .context("connecting to the database")?;
    let pending = runwarden_store::MIGRATOR.iter().count();
    println!("==> applying migrations ({pending} known)");
    runwarden_store::MIGRATOR
        .run(&mut conn)
        .await
        .context("applying migrations")?;
    println!("==> database is up to date");
    Ok(())
}
