//! Media routes (see [`crate::media`] and [`crate::storage`]):
//!
//! - `POST /v1/orgs/{org}/runs/{run}/media-token` (Viewer): one 5-minute token per scope,
//!   with ready URLs;
//! - `GET /v1/orgs/{org}/runs/{run}/artifacts` (Viewer): the run's artifacts;
//! - `GET /v1/media/runs/{run}/events?token=` (events token): the run's events as SSE;
//! - `GET /v1/media/runs/{run}/artifacts/{name}?token=` (artifacts token): 302 to a signed
//!   Cloud Storage URL;
//! - `POST /internal/runner/runs/{run}/artifacts` (runner): a signed upload URL.
//!
//! The media routes take their token from the query string only (the one place a token may
//! be there); the platform's access log names the route template, never the query.

use std::collections::BTreeMap;

use axum::Json as AxumJson;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use runwarden_contracts::RunId;
use runwarden_contracts::runner_api::{ArtifactRequest, UploadTarget};
use runwarden_platform::extract::{Json, Path};
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::Role;
use runwarden_tenancy::access::OrgBudget;
use secrecy::SecretString;
use serde::Serialize;

use crate::AppState;
use crate::error::{RunsError, RunsResult};
use crate::extract::OrgAccess;
use crate::media::{self, Grant, Scope};
use crate::routes::paths::{ArtifactPath, RunPath};
use crate::routes::runner_api::bearer;
use crate::runs;
use crate::storage::{self, Artifact, ArtifactName, ArtifactStore, MAX_URL_LIFETIME};
use crate::tickets;

#[derive(Debug, Serialize)]
pub struct EventsAccess {
    pub token: String,
    pub url: String,
}

#[derive(Debug, Serialize)]
pub struct ArtifactsAccess {
    pub token: String,
    /// Artifact name → its media URL.
    pub urls: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
pub struct MediaTokens {
    pub expires_in: u64,
    pub events: EventsAccess,
    pub artifacts: ArtifactsAccess,
}

/// Two tokens, one per scope, bound to this run, for the caller (audited).
pub async fn mint(
    State(state): State<AppState>,
    mut access: OrgAccess,
    meta: RequestMeta,
    Path(RunPath { run }): Path<RunPath>,
) -> RunsResult<AxumJson<MediaTokens>> {
    access.require(Role::Viewer)?;
    let issued =
        media::issue_tokens(&mut access.tx, &state.media.keys, &meta, &access.ctx, run).await?;
    let media::IssuedTokens {
        events: events_token,
        artifacts_token,
        artifacts,
    } = issued;
    access.tx.commit().await?;
    let urls = artifacts
        .iter()
        .map(|a| {
            (
                a.name.clone(),
                format!(
                    "/v1/media/runs/{run}/artifacts/{}?token={artifacts_token}",
                    a.name
                ),
            )
        })
        .collect();
    Ok(AxumJson(MediaTokens {
        expires_in: media::TOKEN_LIFETIME.as_secs(),
        events: EventsAccess {
            url: format!("/v1/media/runs/{run}/events?token={events_token}"),
            token: events_token,
        },
        artifacts: ArtifactsAccess {
            token: artifacts_token,
            urls,
        },
    }))
}

#[derive(Debug, Serialize)]
pub struct ArtifactList {
    pub items: Vec<Artifact>,
}

pub async fn list_artifacts(
    mut access: OrgAccess,
    Path(RunPath { run }): Path<RunPath>,
) -> RunsResult<AxumJson<ArtifactList>> {
    access.require(Role::Viewer)?;
    let org = access.ctx.org_id;
    runs::get(&mut access.tx, org, run, false).await?;
    let items = storage::list(&mut access.tx, org, run).await?;
    access.tx.commit().await?;
    Ok(AxumJson(ArtifactList { items }))
}

/// The media token of a media URL, checked against the URL's run and scope. Only `token`
/// may be in the query, once; without one (or with `access_token=` and such) it is 401.
/// Other parameters are refused (400) only after the token passed, so anonymous probes
/// learn nothing.
fn grant(state: &AppState, query: Option<&str>, run: RunId, scope: Scope) -> RunsResult<Grant> {
    let mut tokens = Vec::new();
    let mut other = false;
    for (name, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if name == "token" {
            tokens.push(value.into_owned());
        } else {
            other = true;
        }
    }
    let [token] = tokens.as_slice() else {
        return Err(RunsError::unauthenticated());
    };
    let grant = state
        .media
        .keys
        .check(token, run, scope, Utc::now().timestamp())?;
    if other {
        return Err(RunsError::invalid(
            "invalid_query",
            "media URLs take only the token parameter",
        ));
    }
    Ok(grant)
}

/// `Last-Event-ID`: the id of the last event the client has (a non-negative integer).
fn last_event_id(headers: &HeaderMap) -> RunsResult<i64> {
    match headers.get("last-event-id") {
        None => Ok(0),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|id| *id >= 0)
            .ok_or_else(|| {
                RunsError::invalid("invalid_last_event_id", "Last-Event-ID must be an event id")
            }),
    }
}

/// The run's events as Server-Sent Events: `id:` the event id, `event:` its kind, `data:`
/// the event as JSON. Resumes after `Last-Event-ID`; ends after the run's final status, when
/// the token expires, or when the server stops.
pub async fn events(
    State(state): State<AppState>,
    Path(RunPath { run }): Path<RunPath>,
    RawQuery(query): RawQuery,
    budget: OrgBudget,
    headers: HeaderMap,
) -> RunsResult<Response> {
    let grant = grant(&state, query.as_deref(), run, Scope::Events)?;
    let after = last_event_id(&headers)?;
    let org = grant.org;
    let stream = state.media.hub.watch(grant, after).await?;
    // The holder's membership is checked (`watch`): media traffic counts in the org's rate.
    budget.charge_checked(org).await?;
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(media::KEEP_ALIVE))
        .into_response())
}

/// 302 to a signed GET of the artifact, living no longer than the token (and never over
/// 5 minutes).
pub async fn artifact(
    State(state): State<AppState>,
    Path(ArtifactPath { run, name }): Path<ArtifactPath>,
    RawQuery(query): RawQuery,
    budget: OrgBudget,
) -> RunsResult<Response> {
    let grant = grant(&state, query.as_deref(), run, Scope::Artifacts)?;
    let name = ArtifactName::parse(&name).ok_or_else(invalid_name)?;
    storage::find_for(&state.pool, &grant, &name)
        .await?
        .ok_or(RunsError::not_found())?;
    // The holder's membership is checked (`find_for`): media traffic counts in the org's rate.
    budget.charge_checked(grant.org).await?;
    let url = state
        .media
        .store
        .download_url(
            ArtifactStore::object_name(grant.org, grant.run, &name),
            grant.remaining().min(MAX_URL_LIFETIME),
        )
        .await?;
    Ok((StatusCode::FOUND, [(header::LOCATION, url)]).into_response())
}

fn invalid_name() -> RunsError {
    RunsError::invalid(
        "invalid_artifact_name",
        "an artifact name is 1 to 100 of A-Z a-z 0-9 . _ -, starting with a letter or digit",
    )
}

/// The runner's upload target for one artifact of its (running) run: recorded and audited
/// first, then a signed PUT to `runs/{org}/{run}/{name}` (no lock held while signing, which
/// is a network call in production).
pub async fn upload(
    State(state): State<AppState>,
    Path(RunPath { run: run_id }): Path<RunPath>,
    headers: HeaderMap,
    Json(req): Json<ArtifactRequest>,
) -> RunsResult<AxumJson<UploadTarget>> {
    let token = bearer(&headers)?;
    let (mut tx, org) = tickets::enter_run(&state.pool, run_id).await?;
    tickets::check_token(&mut tx, org, run_id, token).await?;
    let name = ArtifactName::parse(&req.name).ok_or_else(invalid_name)?;
    if !storage::valid_content_type(&req.content_type) {
        return Err(RunsError::invalid(
            "invalid_content_type",
            "content_type must be a lower-case type/subtype such as image/png",
        ));
    }
    storage::record(&mut tx, org, run_id, &name, &req.content_type, req.size).await?;
    tx.commit().await?;
    let upload_url = state
        .media
        .store
        .upload_url(
            ArtifactStore::object_name(org, run_id, &name),
            &req.content_type,
            MAX_URL_LIFETIME,
        )
        .await?;
    Ok(AxumJson(UploadTarget {
        upload_url: SecretString::from(upload_url),
        method: "PUT".into(),
        headers: BTreeMap::from([("content-type".to_owned(), req.content_type)]),
    }))
}
