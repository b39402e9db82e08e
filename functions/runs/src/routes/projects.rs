//! `/v1/orgs/{org}/projects[/{project}]`. Viewers read; Members create, rename, archive and
//! unarchive; deleting (with its history) is for Admins. Thin: parse, authorize, call
//! `projects`, commit, answer.

use axum::Json as AxumJson;
use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use runwarden_platform::extract::Json;
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::Role;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{RunsError, RunsResult};
use crate::extract::OrgAccess;
use crate::projects::{self, Change, DEFAULT_LIMIT, MAX_LIMIT, Project, ProjectName};

/// The path's project id; a malformed one names no project (404).
fn project_id(params: &ProjectPath) -> RunsResult<Uuid> {
    params.project.parse().map_err(|_| RunsError::NotFound)
}

#[derive(Debug, Deserialize)]
pub struct ProjectPath {
    #[allow(dead_code)]
    org: String,
    project: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    pub name: String,
}

pub async fn create(
    mut access: OrgAccess,
    meta: RequestMeta,
    Json(req): Json<CreateProject>,
) -> RunsResult<(StatusCode, AxumJson<Project>)> {
    access.require(Role::Member)?;
    let name = ProjectName::parse(&req.name)?;
    let project = projects::create(&mut access.tx, &meta, &access.ctx, &name).await?;
    access.tx.commit().await?;
    Ok((StatusCode::CREATED, AxumJson(project)))
}

#[derive(Debug, Serialize)]
pub struct Page {
    pub items: Vec<Project>,
    /// Pass as `cursor` for the next (older) page; `null` on the last page.
    pub next_cursor: Option<Uuid>,
}

/// `cursor` (a project id) and `limit` (clamped to 1..=100); anything else is refused.
pub fn parse_list_query(raw: Option<&str>) -> RunsResult<(Option<Uuid>, i64)> {
    let (mut cursor, mut limit) = (None, DEFAULT_LIMIT);
    for (name, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match name.as_ref() {
            "cursor" if !value.is_empty() => {
                cursor =
                    Some(value.parse().map_err(|_| {
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

pub async fn list(mut access: OrgAccess, RawQuery(query): RawQuery) -> RunsResult<AxumJson<Page>> {
    access.require(Role::Viewer)?;
    let (cursor, limit) = parse_list_query(query.as_deref())?;
    // One more than asked: whether another page exists, without a count.
    let mut items = projects::list(&mut access.tx, access.ctx.org_id, cursor, limit + 1).await?;
    access.tx.commit().await?;
    let more = items.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    let next_cursor = more.then(|| items.last().map(|p| p.id)).flatten();
    Ok(AxumJson(Page { items, next_cursor }))
}

pub async fn get(
    mut access: OrgAccess,
    Path(params): Path<ProjectPath>,
) -> RunsResult<AxumJson<Project>> {
    access.require(Role::Viewer)?;
    let id = project_id(&params)?;
    let project = projects::get(&mut access.tx, access.ctx.org_id, id, false).await?;
    access.tx.commit().await?;
    Ok(AxumJson(project))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    pub name: Option<String>,
    pub archived: Option<bool>,
}

pub async fn update(
    mut access: OrgAccess,
    meta: RequestMeta,
    Path(params): Path<ProjectPath>,
    Json(req): Json<UpdateProject>,
) -> RunsResult<AxumJson<Project>> {
    access.require(Role::Member)?;
    let id = project_id(&params)?;
    if req.name.is_none() && req.archived.is_none() {
        return Err(RunsError::invalid(
            "empty_change",
            "give a new name, archived, or both",
        ));
    }
    let change = Change {
        name: req.name.as_deref().map(ProjectName::parse).transpose()?,
        archived: req.archived,
    };
    let project = projects::update(&mut access.tx, &meta, &access.ctx, id, change).await?;
    access.tx.commit().await?;
    Ok(AxumJson(project))
}

pub async fn delete(
    mut access: OrgAccess,
    meta: RequestMeta,
    Path(params): Path<ProjectPath>,
) -> RunsResult<StatusCode> {
    access.require(Role::Admin)?;
    let id = project_id(&params)?;
    projects::delete(&mut access.tx, &meta, &access.ctx, id).await?;
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
        assert_eq!(parse_list_query(Some("limit=-1")).unwrap().1, 1);
        assert!(parse_list_query(Some("limit=ten")).is_err());
        assert!(parse_list_query(Some("cursor=nope")).is_err());
        assert!(parse_list_query(Some("offset=100000")).is_err());
        let id = Uuid::now_v7();
        assert_eq!(
            parse_list_query(Some(&format!("cursor={id}&limit=5"))).unwrap(),
            (Some(id), 5)
        );
    }
}
