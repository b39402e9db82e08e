//! `POST /push/run-finished`: Pub/Sub delivers one finished run per message; its
//! reservation is settled exactly as `POST /internal/settlements` would (idempotent by run id,
//! so a redelivery changes nothing).

use runwarden_contracts::messages::RunFinished;
use runwarden_events::push::{Delivery, PushError};
use runwarden_platform::error::ApiError;
use sqlx::PgPool;

use crate::error::QuotasError;
use crate::store::{self, Ending};

pub async fn handle_push(pool: PgPool, delivery: Delivery) -> Result<(), PushError> {
    let event: RunFinished = delivery.json()?;
    if event.actual_secs < 0 {
        return Err(PushError::malformed("actual_secs must not be negative"));
    }
    let ending = Ending::Finished {
        actual_secs: event.actual_secs,
    };
    match store::settle(&pool, event.run_id.as_uuid(), ending).await {
        Ok(Some(s)) => {
            tracing::info!(run.id = %event.run_id, status = %s.status, "run settled");
            Ok(())
        }
        Ok(None) => {
            // Never admitted: a redelivery would not change that.
            tracing::warn!(run.id = %event.run_id, "run-finished for a run never admitted");
            Ok(())
        }
        Err(QuotasError::Api(ApiError::Unavailable)) => {
            Err(PushError::transient("database unavailable"))
        }
        Err(e) => Err(PushError::Internal(anyhow::anyhow!(
            "settlement failed: {e}"
        ))),
    }
}
