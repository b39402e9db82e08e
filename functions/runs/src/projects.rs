//! Projects: the rules (names, the active-project quota) and their database work. Every
//! function here runs in the caller's transaction, scoped to one org by row-level security,
//! and records its audit event in that same transaction.
//!
//! The active-project quota holds exactly under concurrency: creating or unarchiving first
//! claims a slot with `quota_project_slot` (migration `20261125000012_projects`), which takes
//! the org's quota lock until the transaction ends and answers the active count and the
//! plan's limit (`org_limits`, the one place plan, overrides and trial caps combine).

use chrono::{DateTime, Utc};
use runwarden_contracts::ProjectId;
use runwarden_events::{AuditEvent, Target};
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::{OrgContext, OrgId};
use serde::Serialize;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::{RunsError, RunsResult};
use crate::rows;

/// A project name: trimmed, 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectName(String);

impl ProjectName {
    pub fn parse(raw: &str) -> RunsResult<Self> {
        let name = raw.trim();
        let chars = name.chars().count();
        if !(1..=100).contains(&chars) {
            return Err(RunsError::invalid(
                "invalid_name",
                "name must be 1 to 100 characters",
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(RunsError::invalid(
                "invalid_name",
                "name must not contain control characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Project {
    pub id: ProjectId,
    pub org_id: Uuid,
    pub name: String,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub archived_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, org_id, name, created_by, created_at, updated_at, archived_at";

/// The refusal when the org already has as many active projects as its plan allows.
fn limit_reached(limit: i64) -> RunsError {
    RunsError::QuotaExceeded {
        code: "active_projects_exceeded",
        detail: format!("the organization's plan allows {limit} active projects"),
    }
}

/// Claims room for one more active project (see the module comment), or refuses.
async fn claim_slot(tx: &mut PgConnection, org: OrgId) -> RunsResult<()> {
    let slot: Option<(i64, i64)> =
        sqlx::query_as("SELECT active, active_limit FROM quota_project_slot($1)")
            .bind(org)
            .fetch_optional(&mut *tx)
            .await?;
    let (active, limit) = slot.ok_or(RunsError::not_found())?;
    if active >= limit {
        return Err(limit_reached(limit));
    }
    Ok(())
}

/// A name taken in the org (case-insensitively) is a conflict, not an internal error.
fn name_taken(e: sqlx::Error) -> RunsError {
    match &e {
        sqlx::Error::Database(db)
            if db.is_unique_violation() && db.constraint() == Some("projects_org_name_key") =>
        {
            RunsError::conflict("name_taken", "a project with this name exists")
        }
        _ => e.into(),
    }
}

fn event(meta: &RequestMeta, ctx: &OrgContext, action: &str, project: ProjectId) -> AuditEvent {
    AuditEvent::by_user(
        meta,
        ctx.org_id,
        ctx.principal.user_id,
        action,
        Target::new("project", project),
    )
}

pub async fn create(
    tx: &mut PgConnection,
    meta: &RequestMeta,
    ctx: &OrgContext,
    name: &ProjectName,
) -> RunsResult<Project> {
    claim_slot(tx, ctx.org_id).await?;
    let project: Project = sqlx::query_as(&format!(
        "INSERT INTO projects (id, org_id, name, created_by) VALUES ($1, $2, $3, $4)
         RETURNING {COLUMNS}"
    ))
    .bind(ProjectId::new())
    .bind(ctx.org_id)
    .bind(name.as_str())
    .bind(ctx.principal.user_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(name_taken)?;
    event(meta, ctx, "project.create", project.id)
        .with_details(json!({"name": project.name}))
        .record(tx)
        .await?;
    Ok(project)
}

/// One page, newest first; `before` is the last id of the previous page.
pub async fn list(
    tx: &mut PgConnection,
    org: OrgId,
    before: Option<ProjectId>,
    limit: i64,
) -> RunsResult<Vec<Project>> {
    rows::newest_first(tx, "projects", COLUMNS, org, before, limit).await
}

/// The project, locked for the rest of the transaction when `lock`; another org's (or none)
/// is 404.
pub async fn get(
    tx: &mut PgConnection,
    org: OrgId,
    id: ProjectId,
    lock: bool,
) -> RunsResult<Project> {
    rows::by_id(tx, "projects", COLUMNS, org, id, lock).await
}

/// A change to a project: a new name, archiving or unarchiving (any of them).
#[derive(Debug, Default)]
pub struct Change {
    pub name: Option<ProjectName>,
    pub archived: Option<bool>,
}

/// Applies `change`, recording one audit event per effective change. Unarchiving claims an
/// active-project slot first.
pub async fn update(
    tx: &mut PgConnection,
    meta: &RequestMeta,
    ctx: &OrgContext,
    id: ProjectId,
    change: Change,
) -> RunsResult<Project> {
    let org = ctx.org_id;
    let mut project = get(tx, org, id, true).await?;
    if let Some(name) = change.name.filter(|n| n.as_str() != project.name) {
        let from = std::mem::take(&mut project.name);
        project = sqlx::query_as(&format!(
            "UPDATE projects SET name = $3, updated_at = now() WHERE org_id = $1 AND id = $2
             RETURNING {COLUMNS}"
        ))
        .bind(org)
        .bind(id)
        .bind(name.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(name_taken)?;
        event(meta, ctx, "project.rename", id)
            .with_details(json!({"from": from, "to": project.name}))
            .record(tx)
            .await?;
    }
    match (change.archived, project.archived_at.is_some()) {
        (Some(true), false) => {
            project = set_archived(tx, org, id, true).await?;
            event(meta, ctx, "project.archive", id).record(tx).await?;
        }
        (Some(false), true) => {
            claim_slot(tx, org).await?;
            project = set_archived(tx, org, id, false).await?;
            event(meta, ctx, "project.unarchive", id).record(tx).await?;
        }
        _ => {}
    }
    Ok(project)
}

async fn set_archived(
    tx: &mut PgConnection,
    org: OrgId,
    id: ProjectId,
    archived: bool,
) -> RunsResult<Project> {
    Ok(sqlx::query_as(&format!(
        "UPDATE projects
         SET archived_at = CASE WHEN $3 THEN now() END, updated_at = now()
         WHERE org_id = $1 AND id = $2
         RETURNING {COLUMNS}"
    ))
    .bind(org)
    .bind(id)
    .bind(archived)
    .fetch_one(tx)
    .await?)
}

pub async fn delete(
    tx: &mut PgConnection,
    meta: &RequestMeta,
    ctx: &OrgContext,
    id: ProjectId,
) -> RunsResult<()> {
    let project = get(tx, ctx.org_id, id, true).await?;
    sqlx::query("DELETE FROM projects WHERE org_id = $1 AND id = $2")
        .bind(ctx.org_id)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    event(meta, ctx, "project.delete", id)
        .with_details(json!({"name": project.name}))
        .record(tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            ProjectName::parse("  checkout ").unwrap().as_str(),
            "checkout"
        );
        assert_eq!(
            ProjectName::parse(&"é".repeat(100))
                .unwrap()
                .as_str()
                .chars()
                .count(),
            100
        );
        for bad in ["", "   ", &"x".repeat(101), "a\nb", "tab\there"] {
            assert!(ProjectName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
