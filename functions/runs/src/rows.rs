//! Reading one org's rows of a table that has `id` and `org_id`: one row by id, and pages
//! newest first (ids are UUIDv7, so id order is creation order). Callers run these in a
//! transaction scoped to the org by row-level security; the `org_id` condition says the
//! same in the query itself.

use runwarden_tenancy::OrgId;
use sqlx::postgres::PgRow;
use sqlx::{Encode, FromRow, PgConnection, Postgres, Type};

use crate::error::{RunsError, RunsResult};

/// The row `id` of `table`, locked for the rest of the transaction when `lock`; another
/// org's (or none) is 404.
pub(crate) async fn by_id<T, I>(
    tx: &mut PgConnection,
    table: &'static str,
    columns: &'static str,
    org: OrgId,
    id: I,
    lock: bool,
) -> RunsResult<T>
where
    T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
    I: for<'q> Encode<'q, Postgres> + Type<Postgres> + Send,
{
    sqlx::query_as(&format!(
        "SELECT {columns} FROM {table} WHERE org_id = $1 AND id = $2{}",
        if lock { " FOR UPDATE" } else { "" }
    ))
    .bind(org)
    .bind(id)
    .fetch_optional(tx)
    .await?
    .ok_or(RunsError::not_found())
}

/// One page of `table`, newest first; `before` is the last id of the previous page.
pub(crate) async fn newest_first<T, I>(
    tx: &mut PgConnection,
    table: &'static str,
    columns: &'static str,
    org: OrgId,
    before: Option<I>,
    limit: i64,
) -> RunsResult<Vec<T>>
where
    T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
    I: for<'q> Encode<'q, Postgres> + Type<Postgres> + Send,
{
    Ok(sqlx::query_as(&format!(
        "SELECT {columns} FROM {table}
         WHERE org_id = $1 AND ($2::uuid IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3"
    ))
    .bind(org)
    .bind(before)
    .bind(limit)
    .fetch_all(tx)
    .await?)
}
