//! `/v1/orgs/{org}/projects[/{project}]`. Viewers read; Members create, rename, archive and
//! unarchive; deleting (with its history) is for Admins. Thin: parse, authorize, call
//! `projects`, commit, answer.

use axum::Json as AxumJson;
use axum::extract::{Path, RawQuery};
use axum::http::StatusCode;
use runwarden_platform::extract::Json;
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::Role;
use serde::Deserialize;
use uuid::Uuid;

use crate::error::{RunsError, RunsResult};
use crate::extract::OrgAccess;
use crate::projects::{self, Change, Project, ProjectName};
use crate::routes::list::{ListQuery, Page};

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

pub async fn list(
    mut access: OrgAccess,
    RawQuery(query): RawQuery,
) -> RunsResult<AxumJson<Page<Project, Uuid>>> {
    access.require(Role::Viewer)?;
    let query = ListQuery::parse(query.as_deref(), |c| c.parse().ok())?;
    let items = projects::list(
        &mut access.tx,
        access.ctx.org_id,
        query.cursor,
        query.fetch_limit(),
    )
    .await?;
    access.tx.commit().await?;
    Ok(AxumJson(Page::new(items, query.limit, |p| p.id)))
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
