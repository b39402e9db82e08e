//! `PUT|GET|DELETE /v1/orgs/{org}/projects/{project}/secrets[/{name}]`. Viewers read
//! metadata; Members create, add versions and delete. No route ever answers a value. Thin:
//! parse, authorize, call `secrets`, commit, answer.

use axum::Json as AxumJson;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use runwarden_platform::extract::Json;
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::Role;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AppState;
use crate::error::{RunsError, RunsResult};
use crate::extract::OrgAccess;
use crate::secrets::{
    self, DEFAULT_LIMIT, MAX_LIMIT, SecretKind, SecretMeta, SecretName, SecretValue,
};

#[derive(Debug, Deserialize)]
pub struct ProjectPath {
    #[allow(dead_code)]
    org: String,
    project: String,
}

#[derive(Debug, Deserialize)]
pub struct SecretPath {
    #[allow(dead_code)]
    org: String,
    project: String,
    name: String,
}

/// A malformed project id names no project (404).
fn project_id(raw: &str) -> RunsResult<Uuid> {
    raw.parse().map_err(|_| RunsError::NotFound)
}

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
    Path(path): Path<SecretPath>,
    Json(req): Json<PutSecret>,
) -> RunsResult<(StatusCode, AxumJson<SecretMeta>)> {
    access.require(Role::Member)?;
    let project = project_id(&path.project)?;
    let name = SecretName::parse(&path.name)?;
    let kind = SecretKind::parse(&req.kind)?;
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

#[derive(Debug, Serialize)]
pub struct Page {
    pub items: Vec<SecretMeta>,
    /// Pass as `cursor` for the next page (names in order); `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `cursor` (a secret name) and `limit` (clamped to 1..=100); anything else is refused.
pub fn parse_list_query(raw: Option<&str>) -> RunsResult<(Option<SecretName>, i64)> {
    let (mut cursor, mut limit) = (None, DEFAULT_LIMIT);
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "cursor" if !value.is_empty() => {
                cursor =
                    Some(SecretName::parse(&value).map_err(|_| {
                        RunsError::invalid("invalid_cursor", "cursor is not valid")
                    })?);
            }
            "limit" if !value.is_empty() => {
                limit = value
                    .parse::<i64>()
                    .map_err(|_| RunsError::invalid("invalid_limit", "limit must be a number"))?
                    .clamp(1, MAX_LIMIT);
            }
            "cursor" | "limit" => {}
            other => {
                return Err(RunsError::invalid(
                    "invalid_query",
                    format!("unknown query parameter {other}"),
                ));
            }
        }
    }
    Ok((cursor, limit))
}

pub async fn list(
    mut access: OrgAccess,
    Path(path): Path<ProjectPath>,
    RawQuery(query): RawQuery,
) -> RunsResult<AxumJson<Page>> {
    access.require(Role::Viewer)?;
    let project = project_id(&path.project)?;
    let (cursor, limit) = parse_list_query(query.as_deref())?;
    // One more than asked: whether another page exists, without a count.
    let mut items = secrets::list(
        &mut access.tx,
        access.ctx.org_id,
        project,
        cursor.as_ref(),
        limit + 1,
    )
    .await?;
    access.tx.commit().await?;
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let more = items.len() > limit;
    items.truncate(limit);
    let next_cursor = more.then(|| items.last().map(|s| s.name.clone())).flatten();
    Ok(AxumJson(Page { items, next_cursor }))
}

/// The secret's metadata. A name that could not exist names no secret (404).
pub async fn get(
    mut access: OrgAccess,
    Path(path): Path<SecretPath>,
) -> RunsResult<AxumJson<SecretMeta>> {
    access.require(Role::Viewer)?;
    let project = project_id(&path.project)?;
    let name = SecretName::parse(&path.name).map_err(|_| RunsError::NotFound)?;
    let secret = secrets::get(&mut access.tx, access.ctx.org_id, project, &name).await?;
    access.tx.commit().await?;
    Ok(AxumJson(secret))
}

pub async fn delete(
    mut access: OrgAccess,
    meta: RequestMeta,
    Path(path): Path<SecretPath>,
) -> RunsResult<StatusCode> {
    access.require(Role::Member)?;
    let project = project_id(&path.project)?;
    let name = SecretName::parse(&path.name).map_err(|_| RunsError::NotFound)?;
    secrets::delete(&mut access.tx, &meta, &access.ctx, project, &name).await?;
    access.tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_query_clamps_limit_and_refuses_the_unknown() {
        assert_eq!(parse_list_query(None).unwrap(), (None, DEFAULT_LIMIT));
        assert_eq!(parse_list_query(Some("limit=100000")).unwrap().1, MAX_LIMIT);
        assert_eq!(parse_list_query(Some("limit=0")).unwrap().1, 1);
        assert!(parse_list_query(Some("limit=ten")).is_err());
        assert!(parse_list_query(Some("cursor=lower")).is_err());
        assert!(parse_list_query(Some("offset=1")).is_err());
        assert_eq!(
            parse_list_query(Some("cursor=API_KEY&limit=5")).unwrap(),
            (Some(SecretName::parse("API_KEY").unwrap()), 5)
        );
    }
}
