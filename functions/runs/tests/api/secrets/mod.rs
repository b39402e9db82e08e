//! Secrets: versions and their audit trail, the role matrix, tenant isolation (also as the
//! runtime role under row-level security), input rules, no value in any answer, event or row
//! (CRY-01), the runner's read, ciphertexts moved or tampered with (CRY-03, CRY-04), key
//! rotation (CRY-06) and production refusing to start without its key (CRY-05).

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use runwarden_platform::request::RequestMeta;
use runwarden_runs::error::{ApiError, RunsError, RunsResult};
use runwarden_runs::secrets::{self, PlainSecret, SecretKind, SecretName, SecretValue};
use runwarden_tenancy::{OrgContext, OrgId, Principal, Role, begin_org_tx};
use runwarden_vault::{KeyRing, generate_kek_base64};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::{TestApp, spawn_app};

mod access;
mod ciphertexts;
mod exposure;
mod keys;
mod runner;
mod versions;

const KINDS: [&str; 4] = [
    "client_credential",
    "secret_variable",
    "auth_cookie",
    "api_key",
];

fn secret_path(org: OrgId, project: &str, name: &str) -> String {
    format!("/v1/orgs/{org}/projects/{project}/secrets/{name}")
}

fn list_path(org: OrgId, project: &str) -> String {
    format!("/v1/orgs/{org}/projects/{project}/secrets")
}

/// `PUT .../secrets/{name}`: (status, raw body text, JSON or Null).
async fn put_raw(
    app: &TestApp,
    org: OrgId,
    project: &str,
    token: &str,
    name: &str,
    body: &Value,
) -> (StatusCode, String, Value) {
    let reply = app
        .api
        .call(
            Method::PUT,
            &secret_path(org, project, name),
            Some(token),
            Some(body),
        )
        .await;
    (reply.status, reply.text, reply.body)
}

async fn put(
    app: &TestApp,
    org: OrgId,
    project: &str,
    token: &str,
    name: &str,
    kind: &str,
    value: &str,
) -> (StatusCode, Value) {
    let (status, _, json) = put_raw(
        app,
        org,
        project,
        token,
        name,
        &json!({"kind": kind, "value": value}),
    )
    .await;
    (status, json)
}

/// A `GET`/`DELETE` as raw text (to search it).
async fn text(app: &TestApp, method: Method, path: &str, token: &str) -> (StatusCode, String) {
    let reply = app.api.call(method, path, Some(token), None).await;
    (reply.status, reply.text)
}

/// A run of `project`, inserted as the runtime role (as `POST .../runs` would leave it).
async fn new_run(runtime: &PgPool, org: OrgId, project: &str) -> Uuid {
    let run = Uuid::now_v7();
    let mut tx = begin_org_tx(runtime, org, None).await.unwrap();
    sqlx::query(
        "INSERT INTO runs (id, org_id, project_id, agent, requested_cap_secs, status)
         VALUES ($1, $2, $3::uuid, 'demo', 60, 'running')",
    )
    .bind(run)
    .bind(org)
    .bind(project)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    run
}

/// The runner of `run` reads, as the runtime role in a transaction scoped to `org`, committed
/// when it succeeds (as the runner API would).
async fn read_as(
    runtime: &PgPool,
    ring: &KeyRing,
    org: OrgId,
    project: &str,
    run: Uuid,
) -> RunsResult<Vec<PlainSecret>> {
    let mut tx = begin_org_tx(runtime, org, None).await.unwrap();
    let read =
        secrets::read_for_runner(&mut tx, ring, org, project.parse().unwrap(), run.into()).await?;
    tx.commit().await.unwrap();
    Ok(read)
}

/// The runner of a new run of `project` reads.
async fn runner_read(
    runtime: &PgPool,
    ring: &KeyRing,
    org: OrgId,
    project: &str,
) -> RunsResult<Vec<PlainSecret>> {
    let run = new_run(runtime, org, project).await;
    read_as(runtime, ring, org, project, run).await
}

fn values(read: &[PlainSecret]) -> Vec<(String, i32, String)> {
    read.iter()
        .map(|s| {
            (
                s.name.clone(),
                s.version,
                s.value.expose_secret().to_owned(),
            )
        })
        .collect()
}

/// (version, ciphertext) of every version of one secret, read by the superuser.
async fn ciphertexts(admin: &PgPool, project: &str, name: &str) -> Vec<(i32, Vec<u8>)> {
    sqlx::query_as(
        "SELECT version, ciphertext FROM project_secret_versions
         WHERE project_id = $1::uuid AND name = $2 ORDER BY version",
    )
    .bind(project)
    .bind(name)
    .fetch_all(admin)
    .await
    .unwrap()
}

fn keys_of(value: &Value) -> BTreeSet<String> {
    value.as_object().unwrap().keys().cloned().collect()
}

async fn text_of(app: &TestApp, method: Method, path: &str, token: &str) -> String {
    let (status, body) = text(app, method, path, token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}
