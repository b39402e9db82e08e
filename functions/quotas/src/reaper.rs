//! The reaper: settles reservations past their cap plus grace as timed out, and purges idle
//! rate-limit keys. The binary runs it every [`INTERVAL`] as a background task of its
//! service; the scheduler's `reap` task (`POST /internal/tasks/reap`) runs the same pass,
//! which keeps it going while Cloud Run throttles an idle instance.

use std::time::Duration;

use runwarden_platform::app::{self, Stop};
use sqlx::PgPool;

use crate::store;

/// How often the binary's reaper looks for reservations past their cap.
pub const INTERVAL: Duration = Duration::from_secs(30);

/// One reaper pass: settles reservations past their cap plus `grace` as timed out, and
/// purges idle rate-limit keys (every instance of every function writes them; one sweeper
/// is enough). Answers what it did.
pub async fn reap(pool: &PgPool, grace: Duration) -> anyhow::Result<serde_json::Value> {
    let settled = store::reap_expired(pool, grace)
        .await
        .map_err(|e| anyhow::anyhow!("reaping reservations: {e}"))?;
    let purged = runwarden_ratelimit::purge_idle(pool).await?;
    Ok(serde_json::json!({"settled": settled, "rate_limit_keys_purged": purged}))
}

/// Runs [`reap`] every `every` until `stop` fires; a pass in progress is finished.
pub async fn run(stop: Stop, pool: PgPool, grace: Duration, every: Duration) {
    app::every(stop, "reaper", every, move || {
        let pool = pool.clone();
        async move { reap(&pool, grace).await.map(drop) }
    })
    .await;
}
