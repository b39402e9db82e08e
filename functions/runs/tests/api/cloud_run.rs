//! The production executor against a stand-in for the Cloud Run Admin API (the same wire
//! calls the official client makes to Google): one `jobs/...:run` per start, with only the
//! run id, runs' URL and the single-use ticket as overrides, and a timeout of cap plus grace.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Request, State};
use axum::routing::post;
use runwarden_runs::dispatch::{CloudRunExecutor, Executor, Launch};
use serde_json::{Value, json};
use uuid::Uuid;

type Seen = Arc<Mutex<Vec<(String, Value)>>>;

async fn run_api(State(seen): State<Seen>, request: Request) -> Json<Value> {
    let path = request.uri().path().to_owned();
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    seen.lock().unwrap().push((path.clone(), body));
    let job = path
        .trim_start_matches("/v2/")
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    Json(json!({
        "name": format!("{job}/operations/op-1"),
        "metadata": {
            "@type": "type.googleapis.com/google.cloud.run.v2.Execution",
            "name": format!("{job}/executions/runner-abc12"),
        },
    }))
}

#[tokio::test]
async fn one_execution_per_start_with_only_the_ticket_in_its_overrides() {
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route("/v2/{*name}", post(run_api))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let job = "projects/p/locations/southamerica-west1/jobs/runner";
    let executor = Executor::CloudRun(
        CloudRunExecutor::connect(
            job.into(),
            "https://runs.internal".into(),
            30,
            Some(&format!("http://{addr}")),
        )
        .await
        .unwrap(),
    );
    let run = Uuid::now_v7();
    let execution = executor
        .start(Launch {
            run: run.into(),
            ticket: "rtk_single-use",
            cap_secs: 900,
        })
        .await
        .unwrap();
    assert_eq!(execution, format!("{job}/executions/runner-abc12"));
    executor.cancel(&execution).await;

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (path, body) = &seen[0];
    assert_eq!(path, &format!("/v2/{job}:run"));
    let overrides = &body["overrides"];
    assert_eq!(overrides["taskCount"], 1);
    assert_eq!(overrides["timeout"], "930s", "cap plus grace");
    let env: Vec<(String, String)> = overrides["containerOverrides"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().into(),
                e["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        env,
        [
            ("RUNWARDEN_RUN_ID".to_owned(), run.to_string()),
            ("RUNS_URL".to_owned(), "https://runs.internal".to_owned()),
            ("RUNNER_TICKET".to_owned(), "rtk_single-use".to_owned()),
        ],
        "no runner token and no internal secret travel in overrides"
    );
    assert_eq!(seen[1].0, format!("/v2/{execution}:cancel"));
}
