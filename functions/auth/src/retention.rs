//! The daily purge of what has outlived any use (`retention_purge` in the migrations):
//! old sessions, sign-in flows, unaccepted invitations, published outbox rows.

use sqlx::PgPool;

/// Runs the purge and answers how many of each went.
pub async fn purge(pool: PgPool) -> anyhow::Result<serde_json::Value> {
    let removed: Vec<(String, i64)> = sqlx::query_as("SELECT what, removed FROM retention_purge()")
        .fetch_all(&pool)
        .await?;
    Ok(serde_json::Value::Object(
        removed
            .into_iter()
            .map(|(what, n)| (what, serde_json::Value::from(n)))
            .collect(),
    ))
}
