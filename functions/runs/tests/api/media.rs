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
use runwarden_runs::media::{MediaKeys, Scope};
use runwarden_tenancy::{OrgId, Role, UserId};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

use crate::helpers::{TestApp, gcs_emulator, running, spawn_app};

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
    let mut claims = MediaKeys::claims(org, run.parse().unwrap(), UserId::new(), scope, iat);
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

async fn open(app: &TestApp, url: &str, last_event_id: Option<i64>) -> reqwest::Response {
    let mut request = app.client.get(app.served.url(url));
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    request.send().await.unwrap()
}

fn as_stored(frames: &[Frame]) -> Vec<(i64, String, String)> {
    frames
        .iter()
        .map(|f| {
            let data = f.json();
            assert_eq!(data["id"].as_i64(), Some(f.id()), "id: and data agree");
            assert_eq!(data["kind"].as_str(), Some(f.event.as_str()));
            (
                f.id(),
                f.event.clone(),
                data["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn media_tokens_role_matrix_and_token_confusion(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let (org, member, project) = setup(&app).await;
    let (run, _) = running(&app, org, &member, &project, 600).await;
    let (other_run, _) = running(&app, org, &member, &project, 600).await;
    let viewer = app.fx.member(org, Role::Viewer).await;

    // Viewer and up get two tokens (one per scope) with ready URLs; audited as the user.
    let (status, body) = mint(&app, org, &run, &viewer.token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["expires_in"], 300);
    let events = body["events"]["token"].as_str().unwrap().to_owned();
    let artifacts = body["artifacts"]["token"].as_str().unwrap().to_owned();
    assert_ne!(events, artifacts);
    assert_eq!(
        body["events"]["url"],
        format!("/v1/media/runs/{run}/events?token={events}")
    );
    assert_eq!(body["artifacts"]["urls"], json!({}));
    let audited = app.fx.audit_events(org, "run.media_token").await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0]["actor"]["id"], viewer.user_id.to_string());
    assert_eq!(audited[0]["target"]["id"], run);
    assert!(
        !audited[0].to_string().contains(&events),
        "no token in the audit log"
    );
    let header = |token: &str| -> Value {
        let part = token.split('.').next().unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(header(&events)["typ"], "media+jwt");
    assert_eq!(header(&events)["kid"], "test-media-key");
    assert_eq!(mint(&app, org, &run, &member).await.0, StatusCode::OK);

    // Another org's member: 404 through either org's path; no token: 401; a run of another
    // org named under one's own org: 404.
    let other = app.fx.org_on("team").await;
    let stranger = app.fx.member(other, Role::Owner).await;
    for o in [org, other] {
        let (status, body) = mint(&app, o, &run, &stranger.token).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{o}: {body}");
        let (status, _) = app
            .call(
                Method::GET,
                &format!("/v1/orgs/{o}/runs/{run}/artifacts"),
                &stranger.token,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    assert_eq!(
        mint(&app, org, &Uuid::now_v7().to_string(), &member)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(mint(&app, org, &run, "").await.0, StatusCode::UNAUTHORIZED);

    let events_url = |run: &str, token: &str| format!("/v1/media/runs/{run}/events?token={token}");
    let artifact_url =
        |run: &str, token: &str| format!("/v1/media/runs/{run}/artifacts/shot.png?token={token}");

    // JWT-12: a login access token never opens a media URL, and a media token never opens
    // the API (GET or POST).
    for url in [
        events_url(&run, &viewer.token),
        artifact_url(&run, &viewer.token),
    ] {
        assert_eq!(
            get(&app, &url).await.status(),
            StatusCode::UNAUTHORIZED,
            "{url}"
        );
    }
    for token in [&events, &artifacts] {
        for (method, path) in [
            (Method::GET, format!("/v1/orgs/{org}/runs")),
            (Method::GET, format!("/v1/orgs/{org}/runs/{run}")),
            (
                Method::POST,
                format!("/v1/orgs/{org}/runs/{run}/media-token"),
            ),
            (Method::POST, format!("/v1/orgs/{org}/projects")),
        ] {
            let (status, _) = app
                .call(method.clone(), &path, token, Some(&json!({})))
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
        }
    }

    // JWT-13: the scope of the route, the run of the path; tampered; expired (no leeway).
    assert_eq!(
        get(&app, &artifact_url(&run, &events)).await.status(),
        StatusCode::UNAUTHORIZED,
        "an events token on artifacts"
    );
    assert_eq!(
        get(&app, &events_url(&run, &artifacts)).await.status(),
        StatusCode::UNAUTHORIZED,
        "an artifacts token on events"
    );
    for url in [
        events_url(&other_run, &events),
        artifact_url(&other_run, &artifacts),
    ] {
        assert_eq!(
            get(&app, &url).await.status(),
            StatusCode::UNAUTHORIZED,
            "run A's token on run B"
        );
    }
    let mut tampered: Vec<char> = events.chars().collect();
    let middle = events.find('.').unwrap() + 5;
    tampered[middle] = if tampered[middle] == 'A' { 'B' } else { 'A' };
    let tampered: String = tampered.into_iter().collect();
    let mut bad_sig = events.clone();
    bad_sig.pop();
    bad_sig.push(if events.ends_with('A') { 'B' } else { 'A' });
    let now = Utc::now().timestamp();
    let expired = token_at(&app, org, &run, Scope::Events, now - 400, now - 100);
    let just_expired = token_at(&app, org, &run, Scope::Events, now - 299, now - 1);
    let foreign = MediaKeys::new(runwarden_tokens::TokenSigner::generate("test-media-key"))
        .sign(&MediaKeys::claims(
            org,
            run.parse().unwrap(),
            viewer.user_id.into(),
            Scope::Events,
            now,
        ))
        .unwrap();
    for (what, token) in [
        ("tampered payload", tampered.as_str()),
        ("tampered signature", bad_sig.as_str()),
        ("expired", expired.as_str()),
        ("expired a second ago", just_expired.as_str()),
        ("another key, same kid", foreign.as_str()),
        ("garbage", "eyJ.x.y"),
    ] {
        assert_eq!(
            get(&app, &events_url(&run, token)).await.status(),
            StatusCode::UNAUTHORIZED,
            "{what}"
        );
    }

    // DATA-04: only `token=` in the query carries a media token; not a header, not
    // `access_token=`, not twice. Other parameters with a good token: 400.
    for query in [
        String::new(),
        format!("?access_token={events}"),
        format!("?token={events}&token={events}"),
    ] {
        let url = format!("/v1/media/runs/{run}/events{query}");
        assert_eq!(
            get(&app, &url).await.status(),
            StatusCode::UNAUTHORIZED,
            "{url}"
        );
    }
    let in_header = app
        .client
        .get(app.served.url(&format!("/v1/media/runs/{run}/events")))
        .bearer_auth(&events)
        .send()
        .await
        .unwrap();
    assert_eq!(in_header.status(), StatusCode::UNAUTHORIZED);
    let extra = get(&app, &format!("{}&x=1", events_url(&run, &events))).await;
    assert_eq!(extra.status(), StatusCode::BAD_REQUEST);

    // A good token works; a member removed since then: 404 (the org's run is no longer
    // theirs), even with a token that has not expired.
    let ok = get(&app, &events_url(&run, &events)).await;
    assert_eq!(ok.status(), StatusCode::OK);
    drop(ok);
    sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND user_id = $2")
        .bind(org)
        .bind(viewer.user_id)
        .execute(&app.fx.admin)
        .await
        .unwrap();
    assert_eq!(
        get(&app, &events_url(&run, &events)).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, &artifact_url(&run, &artifacts)).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        mint(&app, org, &run, &viewer.token).await.0,
        StatusCode::NOT_FOUND
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn rel21_events_stream_in_order_resume_without_gaps_and_end_with_the_run(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let (org, member, project) = setup(&app).await;
    let (run, runner) = running(&app, org, &member, &project, 600).await;
    append(&app, &run, &runner, &["l1", "l2", "l3"]).await;
    let (_, body) = mint(&app, org, &run, &member).await;
    let url = body["events"]["url"].as_str().unwrap().to_owned();

    let response = open(&app, &url, None).await;
    for (name, value) in [
        ("cache-control", "no-store"),
        ("referrer-policy", "no-referrer"),
    ] {
        assert_eq!(response.headers()[name], value, "{name}");
    }
    let mut first = SseReader::new(response);
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(first.next().await.unwrap());
    }
    assert_eq!(
        as_stored(&seen)
            .iter()
            .map(|(_, k, m)| format!("{k}:{m}"))
            .collect::<Vec<_>>(),
        [
            "status:queued",
            "status:running",
            "log:l1",
            "log:l2",
            "log:l3"
        ]
    );
    assert_eq!(seen[2].json()["stream"], "stdout");
    // Live: what the runner appends now arrives on the open stream.
    append(&app, &run, &runner, &["l4", "l5"]).await;
    seen.push(first.next().await.unwrap());
    assert_eq!(seen.last().unwrap().json()["message"], "l4");
    drop(first); // the connection drops after l4 (l5 is not taken)

    // Reconnect with Last-Event-ID: l5, then what came while away, no repeat, no gap.
    append(&app, &run, &runner, &["l6"]).await;
    let resume_at = seen.last().unwrap().id();
    let mut second = SseReader::new(open(&app, &url, Some(resume_at)).await);
    for _ in 0..2 {
        seen.push(second.next().await.unwrap());
    }
    complete(&app, &run, &runner).await;
    let rest = second.rest().await; // ends by itself after the final status
    assert_eq!(rest.len(), 1, "{rest:?}");
    assert_eq!(
        (rest[0].event.as_str(), rest[0].json()["message"].as_str()),
        ("status", Some("succeeded"))
    );
    seen.extend(rest);
    let all = stored(&app, &run).await;
    assert_eq!(as_stored(&seen), all, "every event once, in order");
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));

    // After the end: from the last id nothing is left (the stream ends at once); from the
    // start, the whole run, then the end.
    let last = all.last().unwrap().0;
    assert!(
        SseReader::new(open(&app, &url, Some(last)).await)
            .rest()
            .await
            .is_empty()
    );
    let replay = SseReader::new(open(&app, &url, None).await).rest().await;
    assert_eq!(as_stored(&replay), all);
    let middle = all[3].0;
    let partial = SseReader::new(open(&app, &url, Some(middle)).await)
        .rest()
        .await;
    assert_eq!(as_stored(&partial), all[4..].to_vec());
    // A Last-Event-ID that is no event id: 400.
    let bad = app
        .client
        .get(app.served.url(&url))
        .header("last-event-id", "abc")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn fifty_watchers_of_one_run_get_every_event_through_one_listen(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let (org, member, project) = setup(&app).await;
    let (run, runner) = running(&app, org, &member, &project, 600).await;
    let (_, body) = mint(&app, org, &run, &member).await;
    let url = body["events"]["url"].as_str().unwrap().to_owned();

    // Each answer's head comes after its subscription, so all 50 are watching here.
    let readers: Vec<SseReader> =
        futures::future::join_all((0..50).map(|_| open(&app, &url, None)))
            .await
            .into_iter()
            .map(SseReader::new)
            .collect();
    assert_eq!(app.media.hub.feeds(), 1, "one feed for the run");
    let listening: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_one(&app.fx.admin)
    .await
    .unwrap();
    assert_eq!(listening, 1, "one LISTEN connection, not one per watcher");

    let watching = tokio::spawn(futures::future::join_all(
        readers.into_iter().map(SseReader::rest),
    ));
    for batch in 0..10 {
        let lines: Vec<String> = (0..5).map(|i| format!("b{batch}-{i}")).collect();
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        append(&app, &run, &runner, &lines).await;
    }
    complete(&app, &run, &runner).await;
    let all = stored(&app, &run).await;
    assert_eq!(all.len(), 2 + 50 + 1);
    let received = watching.await.unwrap();
    for (i, frames) in received.iter().enumerate() {
        assert_eq!(as_stored(frames), all, "watcher {i}");
    }
    // Unwatched, the feed retires.
    for _ in 0..100 {
        if app.media.hub.feeds() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.media.hub.feeds(), 0);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn jwt13_the_stream_closes_when_its_token_expires(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    let (org, member, project) = setup(&app).await;
    let (run, _) = running(&app, org, &member, &project, 600).await;
    let now = Utc::now().timestamp();
    let user = sqlx::query_scalar::<_, Uuid>("SELECT created_by FROM runs WHERE id = $1::uuid")
        .bind(&run)
        .fetch_one(&app.fx.admin)
        .await
        .unwrap();
    let mut claims = MediaKeys::claims(org, run.parse().unwrap(), user.into(), Scope::Events, now);
    claims.exp = now + 3;
    let token = app.media.keys.sign(&claims).unwrap();
    let url = format!("/v1/media/runs/{run}/events?token={token}");
    let started = Instant::now();
    let frames = SseReader::new(open(&app, &url, None).await).rest().await;
    assert_eq!(
        frames.len(),
        2,
        "queued and running, then the token ran out"
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "closed at expiry, though the run goes on"
    );
    assert_eq!(app.run_status(&run).await, "running");
    // REL-21: reconnecting with the expired token: 401.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        open(&app, &url, Some(frames[1].id())).await.status(),
        StatusCode::UNAUTHORIZED
    );
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

fn png() -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(PNG_BASE64)
        .unwrap()
}

fn expires_secs(url: &str) -> u64 {
    reqwest::Url::parse(url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "X-Goog-Expires")
        .map(|(_, v)| v.parse().unwrap())
        .expect("a V4 signed URL")
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn artifacts_go_up_and_down_through_signed_urls(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let gcs = gcs_emulator(&app.client).await;
    let (org, member, project) = setup(&app).await;
    let (run, runner) = running(&app, org, &member, &project, 600).await;
    let bytes = png();
    let meta = json!({"name": "screenshot.png", "content_type": "image/png", "size": bytes.len()});

    // No runner token, a wrong one, another run's, or no X-Internal-Auth: 401.
    let (other_run, other_runner) = running(&app, org, &member, &project, 600).await;
    assert_eq!(
        upload_target(&app, &run, None, &meta).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        upload_target(&app, &run, Some("rnt_forged"), &meta).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        upload_target(&app, &run, Some(&other_runner), &meta)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let viewer_token = app.fx.member(org, Role::Viewer).await.token;
    assert_eq!(
        upload_target(&app, &run, Some(&viewer_token), &meta)
            .await
            .0,
        StatusCode::UNAUTHORIZED,
        "an access token is no runner token"
    );
    let no_secret = app
        .client
        .post(
            app.served
                .url(&format!("/internal/runner/runs/{run}/artifacts")),
        )
        .bearer_auth(&runner)
        .json(&meta)
        .send()
        .await
        .unwrap();
    assert_eq!(no_secret.status(), StatusCode::UNAUTHORIZED);

    // Names with separators or dot segments, and odd content types: 400, nothing recorded.
    for name in [
        "../escape.png",
        "a/b.png",
        "..",
        ".",
        "a\\b.png",
        ".env",
        "",
        "x y.png",
    ] {
        let (status, body) = upload_target(
            &app,
            &run,
            Some(&runner),
            &json!({"name": name, "content_type": "image/png", "size": 1}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{name:?}: {body}");
        assert_eq!(body["code"], "invalid_artifact_name");
    }
    for content_type in ["text/html; charset=utf-8", "image/png\r\nx: y", "PNG"] {
        let (status, _) = upload_target(
            &app,
            &run,
            Some(&runner),
            &json!({"name": "a.png", "content_type": content_type, "size": 1}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{content_type:?}");
    }
    let (status, _) = upload_target(
        &app,
        &run,
        Some(&runner),
        &json!({"name": "a.png", "content_type": "image/png", "size": 1, "bucket": "other"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "unknown fields");
    let recorded: i64 = sqlx::query_scalar("SELECT count(*) FROM run_artifacts")
        .fetch_one(&app.fx.admin)
        .await
        .unwrap();
    assert_eq!(recorded, 0);

    // The upload target: a signed PUT for runs/{org}/{run}/{name}, at most 5 minutes.
    let (status, target) = upload_target(&app, &run, Some(&runner), &meta).await;
    assert_eq!(status, StatusCode::OK, "{target}");
    assert_eq!(target["method"], "PUT");
    assert_eq!(target["headers"], json!({"content-type": "image/png"}));
    let upload_url = target["upload_url"].as_str().unwrap();
    assert!(
        upload_url.starts_with(&format!(
            "{gcs}/runwarden-artifacts-test/runs/{org}/{run}/screenshot.png?"
        )),
        "{upload_url}"
    );
    assert!(expires_secs(upload_url) <= 300);
    let put = app
        .client
        .put(upload_url)
        .header("content-type", "image/png")
        .body(bytes.clone())
        .send()
        .await
        .unwrap();
    assert!(
        put.status().is_success(),
        "PUT to fake-gcs: {}",
        put.status()
    );
    let audited = app.fx.audit_events(org, "run.artifact_upload").await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0]["actor"]["kind"], "runner");
    assert_eq!(audited[0]["details"]["name"], "screenshot.png");
    assert!(!audited[0].to_string().contains("X-Goog-Signature"));

    // Listed for Viewers; the media token's URLs name it.
    let viewer = app.fx.member(org, Role::Viewer).await;
    let (status, list) = app
        .call(
            Method::GET,
            &format!("/v1/orgs/{org}/runs/{run}/artifacts"),
            &viewer.token,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"][0]["name"], "screenshot.png");
    assert_eq!(list["items"][0]["content_type"], "image/png");
    assert_eq!(list["items"][0]["size"], bytes.len());
    let (_, tokens) = mint(&app, org, &run, &viewer.token).await;
    let media_url = tokens["artifacts"]["urls"]["screenshot.png"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = tokens["artifacts"]["token"].as_str().unwrap();
    assert_eq!(
        media_url,
        format!("/v1/media/runs/{run}/artifacts/screenshot.png?token={token}")
    );

    // The media URL: 302 to a signed GET (≤ 5 minutes) that serves the same bytes.
    let redirect = get(&app, &media_url).await;
    assert_eq!(redirect.status(), StatusCode::FOUND);
    assert_eq!(redirect.headers()["referrer-policy"], "no-referrer");
    assert_eq!(redirect.headers()["cache-control"], "no-store");
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&format!(
        "{gcs}/runwarden-artifacts-test/runs/{org}/{run}/screenshot.png?"
    )));
    let expires = expires_secs(&location);
    assert!((1..=300).contains(&expires), "{expires}");
    let fetched = app.client.get(&location).send().await.unwrap();
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(fetched.bytes().await.unwrap().as_ref(), bytes.as_slice());

    // Names that are not one safe segment: 400 (encoded separators included); an unknown
    // artifact: 404; another run's artifact through this run's token: 401.
    for name in [
        "a%2Fb.png",
        "..%2F..%2Fescape",
        "a%5Cb.png",
        ".env",
        "%2Eenv",
    ] {
        let url = format!("/v1/media/runs/{run}/artifacts/{name}?token={token}");
        assert_eq!(
            get(&app, &url).await.status(),
            StatusCode::BAD_REQUEST,
            "{name}"
        );
    }
    // A bare dot segment never reaches the route: URLs resolve it (`.../artifacts/..` is
    // `.../runs/{run}/`), which serves nothing.
    for name in ["..", "%2E%2E"] {
        let url = format!("/v1/media/runs/{run}/artifacts/{name}?token={token}");
        assert_eq!(
            get(&app, &url).await.status(),
            StatusCode::NOT_FOUND,
            "{name}"
        );
    }
    let missing = format!("/v1/media/runs/{run}/artifacts/missing.png?token={token}");
    assert_eq!(get(&app, &missing).await.status(), StatusCode::NOT_FOUND);
    let (status, _) = upload_target(&app, &other_run, Some(&other_runner), &meta).await;
    assert_eq!(status, StatusCode::OK);
    let cross = format!("/v1/media/runs/{other_run}/artifacts/screenshot.png?token={token}");
    assert_eq!(get(&app, &cross).await.status(), StatusCode::UNAUTHORIZED);

    // After the run ends its token uploads nothing more.
    complete(&app, &run, &runner).await;
    assert_eq!(
        upload_target(&app, &run, Some(&runner), &meta).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn run_artifacts_are_under_row_level_security(_: PgPoolOptions, options: PgConnectOptions) {
    let app = spawn_app(options).await;
    let (org, member, project) = setup(&app).await;
    let (run, runner) = running(&app, org, &member, &project, 600).await;
    for name in ["a.png", "b.mp4", "a.png"] {
        let (status, body) = upload_target(
            &app,
            &run,
            Some(&runner),
            &json!({"name": name, "content_type": "video/mp4", "size": 10}),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let runtime = app.fx.pool_as(runwarden_store::roles::RUNS, 2).await;
    let count_as = |org: OrgId| {
        let runtime = runtime.clone();
        async move {
            let mut tx = runtime.begin().await.unwrap();
            runwarden_tenancy::set_tenant(&mut tx, Some(org), None)
                .await
                .unwrap();
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM run_artifacts")
                .fetch_one(&mut *tx)
                .await
                .unwrap();
            n
        }
    };
    assert_eq!(count_as(org).await, 2, "a retry of a name replaces it");
    let other = app.fx.org_on("team").await;
    assert_eq!(count_as(other).await, 0, "another org sees none");
    // Nor can the runtime role write a row for an org other than its transaction's.
    let mut tx = runtime.begin().await.unwrap();
    runwarden_tenancy::set_tenant(&mut tx, Some(other), None)
        .await
        .unwrap();
    let written = sqlx::query(
        "INSERT INTO run_artifacts (run_id, org_id, name, content_type, size)
         VALUES ($1::uuid, $2, 'x.png', 'image/png', 1)",
    )
    .bind(&run)
    .bind(org)
    .execute(&mut *tx)
    .await;
    assert!(written.is_err(), "RLS refuses another org's row");
}

/// Everything the app writes to its log, as Cloud Logging JSON lines (the production layer,
/// at the production level for dependencies and debug for runwarden's own crates).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn log05_media_tokens_and_signed_urls_never_reach_the_log(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    use tracing_subscriber::layer::SubscriberExt;
    let captured = Captured::default();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("info,runwarden=debug"))
        .with(runwarden_platform::telemetry::CloudLoggingLayer::new(
            captured.clone(),
            None,
        ));
    // The test runtime has one thread: the app, its tasks and this test all log here.
    let _guard = tracing::subscriber::set_default(subscriber);

    let app = spawn_app(options).await;
    let (org, member, project) = setup(&app).await;
    let (run, runner) = running(&app, org, &member, &project, 600).await;
    let (status, target) = upload_target(
        &app,
        &run,
        Some(&runner),
        &json!({"name": "shot.png", "content_type": "image/png", "size": 3}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, tokens) = mint(&app, org, &run, &member).await;
    let events = tokens["events"]["token"].as_str().unwrap().to_owned();
    let artifacts = tokens["artifacts"]["token"].as_str().unwrap().to_owned();
    let redirect = get(
        &app,
        tokens["artifacts"]["urls"]["shot.png"].as_str().unwrap(),
    )
    .await;
    assert_eq!(redirect.status(), StatusCode::FOUND);
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    append(&app, &run, &runner, &["hello"]).await;
    complete(&app, &run, &runner).await;
    let frames = SseReader::new(get(&app, tokens["events"]["url"].as_str().unwrap()).await)
        .rest()
        .await;
    assert_eq!(frames.last().unwrap().event, "status");
    // Error paths: the wrong scope, another run, a tampered token, an access token.
    for url in [
        format!("/v1/media/runs/{run}/artifacts/shot.png?token={events}"),
        format!("/v1/media/runs/{}/events?token={events}", Uuid::now_v7()),
        format!("/v1/media/runs/{run}/events?token={events}x"),
        format!("/v1/media/runs/{run}/events?token={}", member),
    ] {
        assert_eq!(get(&app, &url).await.status(), StatusCode::UNAUTHORIZED);
    }

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("/v1/media/runs/{run}/events"),
        "the access log names the route template: {log}"
    );
    assert!(
        log.contains("media_token_refused"),
        "refusals are logged (without the token)"
    );
    let signature = |token: &str| token.rsplit('.').next().unwrap().to_owned();
    let url_signature = |url: &str| {
        reqwest::Url::parse(url)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "X-Goog-Signature")
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    for (what, secret) in [
        ("events token", signature(&events)),
        ("artifacts token", signature(&artifacts)),
        ("access token", signature(&member)),
        ("runner token", runner.clone()),
        ("signed GET", url_signature(&location)),
        (
            "signed PUT",
            url_signature(target["upload_url"].as_str().unwrap()),
        ),
    ] {
        assert!(!log.contains(&secret), "{what} in the log");
    }
    assert!(!log.contains("token="), "no query string in the log");
    assert!(
        !log.contains("X-Goog-Signature"),
        "no signed URL in the log"
    );
}
