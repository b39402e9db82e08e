//! `/v1/orgs/{org}/projects[/{project}]`. Viewers read; Members create, rename, archive and
//! unarchive; deleting (with its history) is for Admins. Thin: parse, authorize, call
//! `projects`, commit, answer.

use axum::Json as AxumJson;
use axum::http::StatusCode;
use runwarden_contracts::ProjectId;
use runwarden_platform::extract::{Json, Path};
use runwarden_platform::page::{ListQuery, Page};
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::Role;
use serde::Deserialize;

use crate::error::{RunsError, RunsResult};
use crate::extract::OrgAccess;
use crate::projects::{self, Change, Project, ProjectName};
use crate::routes::paths::ProjectPath;

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

pub async fn list(mut access: OrgAccess, query: ListQuery<ProjectId>) -> RunsResult<Page<Project>> {
    access.require(Role::Viewer)?;
    let org = access.ctx.org_id;
    let rows = projects::list(&mut access.tx, org, query.cursor, query.fetch_limit()).await?;
    access.tx.commit().await?;
    Ok(query.page(rows, |p| p.id))
}

pub async fn get(
    mut access: OrgAccess,
    Path(ProjectPath { project: id }): Path<ProjectPath>,
) -> RunsResult<AxumJson<Project>> {
    access.require(Role::Viewer)?;
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
    Path(ProjectPath { project: id }): Path<ProjectPath>,
    Json(req): Json<UpdateProject>,
) -> RunsResult<AxumJson<Project>> {
    access.require(Role::Member)?;
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
    Path(ProjectPath { project: id }): Path<ProjectPath>,
) -> RunsResult<StatusCode> {
    access.require(Role::Admin)?;
    projects::delete(&mut access.tx, &meta, &access.ctx, id).await?;
    access.tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The list policy is the platform's (tested there); the cursor here is a project id.
    #[test]
    fn list_cursor_is_a_project_id() {
        let id = ProjectId::new();
        let q = ListQuery::<ProjectId>::parse(Some(&format!("cursor={id}&limit=5"))).unwrap();
        assert_eq!((q.limit(), q.cursor), (5, Some(id)));
        assert!(ListQuery::<ProjectId>::parse(Some("cursor=nope")).is_err());
        assert!(ListQuery::<ProjectId>::parse(Some("offset=100000")).is_err());
    }
}
