//! Media: tokens (role matrix, and every confusion between token kinds, runs and scopes:
//! JWT-12, JWT-13, DATA-04), the SSE stream of a run's events (order, resume without gaps or
//! duplicates, end after the final status, close at token expiry, many watchers: REL-21),
//! artifacts through signed Cloud Storage URLs on fake-gcs-server, their row-level security,
//! and no media token in the logs (LOG-05).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use chrono::Utc;
use reqwest::{Method, StatusCode};
use runwarden_runs::media::{MediaKeys, Scope, StreamLimits};
use runwarden_tenancy::{OrgId, Role, SessionId, UserId};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::{TestApp, gcs_emulator, running, spawn_app, spawn_app_with};

mod artifacts;
mod events;
mod logs;
mod sessions;
mod tokens;

/// A 1×1 PNG (a real one: signature, IHDR, IDAT, IEND).
const PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

/// A team org with a member and a project: (org, member token, project id).
async fn setup(app: &TestApp) -> (OrgId, String, String) {
    let org = app.fx.org_on("team").await;
    let member = app.fx.member(org, Role::Member).await;
    let project = app.project(org, &member.token).await;
    (org, member.token, project)
}

async fn mint(app: &TestApp, org: OrgId, run: &str, token: &str) -> (StatusCode, Value) {
    app.call(
        Method::POST,
        &format!("/v1/orgs/{org}/runs/{run}/media-token"),
        token,
        None,
    )
    .await
}

/// The runner appends log lines.
async fn append(app: &TestApp, run: &str, runner_token: &str, lines: &[&str]) {
    let events: Vec<Value> = lines
        .iter()
        .map(|l| json!({"kind": "log", "stream": "stdout", "message": l}))
        .collect();
    let (status, body) = app
        .runner_call(
            &format!("/internal/runner/runs/{run}/events"),
            Some(runner_token),
            &json!({ "events": events }),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
}

async fn complete(app: &TestApp, run: &str, runner_token: &str) {
    let (status, body) = app
        .runner_call(
            &format!("/internal/runner/runs/{run}/complete"),
            Some(runner_token),
            &json!({"outcome": "succeeded", "exit_code": 0, "actual_secs": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// The run's events as stored: (id, kind, message).
async fn stored(app: &TestApp, run: &str) -> Vec<(i64, String, String)> {
    sqlx::query_as("SELECT id, kind, message FROM run_events WHERE run_id = $1::uuid ORDER BY id")
        .bind(run)
        .fetch_all(&app.fx.admin)
        .await
        .unwrap()
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client.get(app.served.url(path)).send().await.unwrap()
}

/// A media token with chosen times, signed by the app's own media key.
fn token_at(app: &TestApp, org: OrgId, run: &str, scope: Scope, iat: i64, exp: i64) -> String {
    let mut claims = MediaKeys::claims(
        org,
        run.parse().unwrap(),
        UserId::new(),
        SessionId::new(),
        scope,
        iat,
    );
    claims.exp = exp;
    app.media.keys.sign(&claims).unwrap()
}

/// One SSE event as received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Frame {
    id: String,
    event: String,
    data: String,
}

impl Frame {
    fn id(&self) -> i64 {
        self.id.parse().unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// Reads an SSE response frame by frame (keep-alive comments skipped).
struct SseReader {
    response: reqwest::Response,
    buf: String,
}

impl SseReader {
    fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Self {
            response,
            buf: String::new(),
        }
    }

    /// The next event, or `None` when the server ended the stream. Fails after 20 s.
    async fn next(&mut self) -> Option<Frame> {
        tokio::time::timeout(Duration::from_secs(20), self.next_inner())
            .await
            .expect("an SSE event or the end of the stream within 20 s")
    }

    async fn next_inner(&mut self) -> Option<Frame> {
        loop {
            if let Some(pos) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..pos + 2).collect();
                let mut frame = Frame::default();
                let mut fields = false;
                for line in block
                    .lines()
                    .filter(|l| !l.is_empty() && !l.starts_with(':'))
                {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
                    match field {
                        "id" => frame.id = value,
                        "event" => frame.event = value,
                        "data" => frame.data.push_str(&value),
                        _ => {}
                    }
                    fields = true;
                }
                if fields {
                    return Some(frame);
                }
                continue;
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buf.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Every event until the server ends the stream.
    async fn rest(mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next().await {
            frames.push(frame);
        }
        frames
    }
}

/// `POST /internal/runner/runs/{run}/artifacts`.
async fn upload_target(
    app: &TestApp,
    run: &str,
    runner_token: Option<&str>,
    body: &Value,
) -> (StatusCode, Value) {
    app.runner_call(
        &format!("/internal/runner/runs/{run}/artifacts"),
        runner_token,
        body,
    )
    .await
}
