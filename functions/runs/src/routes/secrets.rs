//! `PUT|GET|DELETE /v1/orgs/{org}/projects/{project}/secrets[/{name}]`. Viewers read
//! metadata; Members create, add versions and delete. No route ever answers a value. Thin:
//! parse, authorize, call `secrets`, commit, answer.

use axum::Json as AxumJson;
use axum::extract::State;
use axum::http::StatusCode;
use runwarden_platform::extract::{Json, Path};
use runwarden_platform::page::{ListQuery, Page};
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::Role;
use secrecy::SecretString;
use serde::Deserialize;

use crate::AppState;
use crate::error::{RunsError, RunsResult};
use crate::extract::OrgAccess;
use crate::routes::paths::{ProjectPath, SecretPath};
use crate::secrets::{self, SecretMeta, SecretName, SecretValue};

/// The body of `PUT .../secrets/{name}`. `Debug` shows the value as `[REDACTED]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    pub kind: String,
    pub value: SecretString,
}

/// 201 with the metadata of a new secret, 200 with that of its new version.
pub async fn put(
    State(state): State<AppState>,
    mut access: OrgAccess,
    meta: RequestMeta,
    Path(SecretPath { project, name }): Path<SecretPath>,
    Json(req): Json<PutSecret>,
) -> RunsResult<(StatusCode, AxumJson<SecretMeta>)> {
    access.require(Role::Member)?;
    let name = secrets::parse_name(&name)?;
    let kind = secrets::parse_kind(&req.kind)?;
    let value = SecretValue::parse(req.value)?;
    let (secret, created) = secrets::put(
        &mut access.tx,
        &state.vault,
        &meta,
        &access.ctx,
        project,
        &name,
        kind,
        &value,
    )
    .await?;
    access.tx.commit().await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, AxumJson(secret)))
}

/// Secrets in name order; the cursor is the last name of the previous page.
pub async fn list(
    mut access: OrgAccess,
    Path(ProjectPath { project }): Path<ProjectPath>,
    query: ListQuery<SecretName>,
) -> RunsResult<Page<SecretMeta>> {
    access.require(Role::Viewer)?;
    let org = access.ctx.org_id;
    let cursor = query.cursor.as_ref();
    let rows = secrets::list(&mut access.tx, org, project, cursor, query.fetch_limit()).await?;
    access.tx.commit().await?;
    Ok(query.page(rows, |s| s.name.clone()))
}

/// The secret's metadata. A name that could not exist names no secret (404).
pub async fn get(
    mut access: OrgAccess,
    Path(SecretPath { project, name }): Path<SecretPath>,
) -> RunsResult<AxumJson<SecretMeta>> {
    access.require(Role::Viewer)?;
    let name = SecretName::parse(&name).map_err(|_| RunsError::not_found())?;
    let secret = secrets::get(&mut access.tx, access.ctx.org_id, project, &name).await?;
    access.tx.commit().await?;
    Ok(AxumJson(secret))
}

pub async fn delete(
    mut access: OrgAccess,
    meta: RequestMeta,
    Path(SecretPath { project, name }): Path<SecretPath>,
) -> RunsResult<StatusCode> {
    access.require(Role::Member)?;
    let name = SecretName::parse(&name).map_err(|_| RunsError::not_found())?;
    secrets::delete(&mut access.tx, &meta, &access.ctx, project, &name).await?;
    access.tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use runwarden_platform::page::{DEFAULT_LIMIT, MAX_LIMIT};

    use super::*;

    fn parse(raw: &str) -> Result<ListQuery<SecretName>, runwarden_platform::error::ApiError> {
        ListQuery::parse(Some(raw))
    }

    #[test]
    fn list_query_takes_a_secret_name_cursor_clamps_limit_and_refuses_the_unknown() {
        assert_eq!(
            ListQuery::<SecretName>::parse(None).unwrap().limit(),
            DEFAULT_LIMIT
        );
        assert_eq!(parse("limit=100000").unwrap().limit(), MAX_LIMIT);
        assert_eq!(parse("limit=0").unwrap().limit(), 1);
        assert!(parse("limit=ten").is_err());
        assert!(parse("cursor=lower").is_err());
        assert!(parse("offset=1").is_err());
        let q = parse("cursor=API_KEY&limit=5").unwrap();
        assert_eq!(
            (q.limit(), q.cursor),
            (5, Some(SecretName::parse("API_KEY").unwrap()))
        );
    }
}
