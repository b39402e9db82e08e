//! The paths of runs' routes, parsed once at the edge by `runwarden_platform::extract::Path`:
//! a malformed id names nothing and answers 404 `not_found`, like a missing resource. The
//! `{org}` parameter is `OrgAccess`'s (it enters the org); these read the rest.

use runwarden_contracts::{ProjectId, RunId};
use serde::Deserialize;

/// `.../projects/{project}[/...]`.
#[derive(Debug, Deserialize)]
pub struct ProjectPath {
    pub project: ProjectId,
}

/// `.../runs/{run}[/...]`.
#[derive(Debug, Deserialize)]
pub struct RunPath {
    pub run: RunId,
}

/// `.../projects/{project}/secrets/{name}`. The name stays raw: how a bad one answers
/// depends on the route (400 when writing, 404 when reading).
#[derive(Debug, Deserialize)]
pub struct SecretPath {
    pub project: ProjectId,
    pub name: String,
}

/// `.../runs/{run}/artifacts/{name}` (media and runner routes).
#[derive(Debug, Deserialize)]
pub struct ArtifactPath {
    pub run: RunId,
    pub name: String,
}
