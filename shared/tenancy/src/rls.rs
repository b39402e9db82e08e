//! The second wall: PostgreSQL row-level security policies read `app.org_id` and
//! `app.user_id`, set here for the current transaction only (`set_config(.., true)`), so a
//! pooled connection never carries one tenant's setting into another request.

use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::{OrgId, UserId};

/// Sets both tenant settings for the rest of the current transaction in one round trip.
pub async fn set_tenant(
    conn: &mut PgConnection,
    org: Option<OrgId>,
    user: Option<UserId>,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('app.org_id', $1, true), set_config('app.user_id', $2, true)")
        .bind(org.map(|o| o.to_string()).unwrap_or_default())
        .bind(user.map(|u| u.to_string()).unwrap_or_default())
        .execute(conn)
        .await?;
    Ok(())
}

/// Begins a transaction that sees one organization's rows (and the caller's own memberships).
pub async fn begin_org_tx(
    pool: &PgPool,
    org: OrgId,
    user: Option<UserId>,
) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    set_tenant(&mut tx, Some(org), user).await?;
    Ok(tx)
}
