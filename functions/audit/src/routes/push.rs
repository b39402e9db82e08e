//! `POST /push/audit-events`: Pub/Sub delivers one AuditEvent per message; it is appended to
//! its org's chain (or recognized as a redelivery) and committed before the 204.

use runwarden_events::push::{Delivery, PushError};
use sqlx::PgPool;

use crate::ingest;
use crate::store::{self, Appended};

pub async fn handle_push(pool: PgPool, delivery: Delivery) -> Result<(), PushError> {
    let data = delivery
        .data
        .as_deref()
        .ok_or_else(|| PushError::malformed("the message has no data"))?;
    let event = ingest::parse(data)?;
    match store::append(&pool, &event).await? {
        Appended::New { seq, .. } => tracing::info!(
            org.id = %event.0.org_id,
            event.id = %event.0.id,
            audit.seq = seq,
            audit.action = %event.0.action,
            "audit event appended"
        ),
        Appended::Duplicate => tracing::info!(
            org.id = %event.0.org_id,
            event.id = %event.0.id,
            "audit event already recorded: redelivery acknowledged"
        ),
    }
    Ok(())
}
