//! The front door against a real upstream on a real socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use runwarden_frontdoor::{Config, FrontDoor};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const SERVICES: [&str; 4] = ["auth", "runs", "quotas", "audit"];

#[derive(Clone, Default)]
struct Hits {
    internal: Arc<AtomicUsize>,
}

fn header(h: &HeaderMap, name: &str) -> Value {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map_or(Value::Null, |v| Value::String(v.to_owned()))
}

async fn echo(req: Request) -> Response {
    let h = req.headers();
    let body = json!({
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "x_test": header(h, "x-test"),
        "x_forwarded_for": header(h, "x-forwarded-for"),
        "x_forwarded_proto": header(h, "x-forwarded-proto"),
        "host": header(h, "host"),
        "connection_named": header(h, "x-hop"),
        "platform_only": (["x-internal-auth", "x-user-id", "x-org-id"]
            .iter()
            .filter(|name| h.contains_key(**name))
            .collect::<Vec<_>>()),
    });
    (
        StatusCode::CREATED,
        [("x-upstream", "yes"), ("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn echo_body(Path(org): Path<String>, body: Bytes) -> String {
    format!("{org}:{}", String::from_utf8_lossy(&body))
}

async fn sse(Path(run): Path<String>) -> Response {
    // One event, then the stream stays open: the client must see the event without the
    // stream ending, or the front door is buffering.
    let first = futures::stream::once(async move {
        Ok::<_, std::convert::Infallible>(Bytes::from(format!("data: {run}-one\n\n")))
    });
    let stream = futures::StreamExt::chain(first, futures::stream::pending());
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn internal(State(hits): State<Hits>) -> &'static str {
    hits.internal.fetch_add(1, Ordering::SeqCst);
    "internal"
}

async fn start_upstream() -> (SocketAddr, Hits) {
    let hits = Hits::default();
    let app = Router::new()
        .route("/v1/me", any(echo))
        .route("/v1/orgs/{org}/members", post(echo_body))
        .route("/v1/media/runs/{run}/events", get(sse))
        .route("/internal/{*rest}", any(internal))
        .route("/push/{*rest}", any(internal))
        .fallback(any(internal))
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, hits)
}

struct Door {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

async fn start_door(upstream: &str) -> Door {
    let mut config = Config::local("127.0.0.1:0".parse().unwrap());
    for s in SERVICES {
        config = config.with_upstream(s, upstream).unwrap();
    }
    let door = FrontDoor::bind(config).await.unwrap();
    let addr = door.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(door.serve(async move {
        let _ = stopped.await;
    }));
    Door {
        addr,
        stop: Some(stop),
        task,
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

async fn send(
    door: &Door,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, HeaderMap, Bytes) {
    let mut req = http::Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", door.addr));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let res = tokio::time::timeout(Duration::from_secs(20), client().request(req))
        .await
        .expect("front door answered in time")
        .unwrap();
    let (parts, body) = res.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

fn assert_problem(status: StatusCode, headers: &HeaderMap, body: &[u8], want: u16, code: &str) {
    assert_eq!(status.as_u16(), want, "{}", String::from_utf8_lossy(body));
    assert_eq!(headers["content-type"], "application/problem+json");
    let v: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["type"], "about:blank");
    assert_eq!(v["status"], want);
    assert_eq!(v["code"], code);
    assert!(v["title"].is_string() && v["detail"].is_string(), "{v}");
}

#[tokio::test]
async fn proxies_method_path_query_headers_and_forwarded_for() {
    let (up, _) = start_upstream().await;
    let door = start_door(&format!("http://{up}")).await;

    let (status, headers, body) = send(
        &door,
        "GET",
        "/v1/me?a=1&b=two%20words",
        &[
            ("x-test", "hello"),
            ("x-forwarded-for", "203.0.113.9"),
            ("x-forwarded-proto", "https"),
            ("connection", "x-hop"),
            ("x-hop", "must-not-pass"),
            // INT-03: identity and internal headers from the outside are spoofs.
            ("x-internal-auth", "guessed-secret"),
            ("x-user-id", "00000000-0000-0000-0000-000000000001"),
            ("x-org-id", "00000000-0000-0000-0000-000000000002"),
        ],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(headers["x-upstream"], "yes");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/v1/me");
    assert_eq!(v["query"], "a=1&b=two%20words");
    assert_eq!(v["x_test"], "hello");
    assert_eq!(v["x_forwarded_for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(v["x_forwarded_proto"], "http");
    assert_eq!(v["connection_named"], Value::Null);
    assert_eq!(
        v["platform_only"],
        json!([]),
        "spoofable headers are stripped"
    );
    assert_eq!(
        v["host"],
        door.addr.to_string(),
        "the client's Host is kept"
    );
}

#[tokio::test]
async fn streams_request_bodies_up_and_sse_down() {
    let (up, _) = start_upstream().await;
    let door = start_door(&format!("http://{up}")).await;

    let (status, _, body) = send(&door, "POST", "/v1/orgs/o1/members", &[], "payload").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"o1:payload");

    let req = http::Request::get(format!(
        "http://{}/v1/media/runs/r1/events?token=t",
        door.addr
    ))
    .body(Full::new(Bytes::new()))
    .unwrap();
    let res = client().request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.into_body();
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("the first SSE event arrives while the stream is still open")
        .unwrap()
        .unwrap();
    assert_eq!(
        frame.into_data().unwrap(),
        Bytes::from_static(b"data: r1-one\n\n")
    );
}

#[tokio::test]
async fn internal_push_unknown_and_malformed_paths_never_reach_an_upstream() {
    let (up, hits) = start_upstream().await;
    let door = start_door(&format!("http://{up}")).await;

    for path in [
        "/internal/x",
        "/internal",
        "/push/audit-events",
        "/v1/unknown",
        "/openapi.json",
    ] {
        let (status, headers, body) = send(&door, "POST", path, &[], "{}").await;
        assert_problem(status, &headers, &body, 404, "not_found");
    }
    for path in [
        "/v1/orgs/x/members/../../internal/x",
        "/v1/orgs/x/members/%2e%2e/%2e%2e/internal/x",
        "/v1//me",
        "//internal/x",
    ] {
        let (status, headers, body) = send(&door, "GET", path, &[], "").await;
        assert_problem(status, &headers, &body, 400, "bad_request");
    }
    assert_eq!(hits.internal.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_service_that_is_down_is_a_502() {
    // A port that was free a moment ago: nothing listens there now.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = free.local_addr().unwrap();
    drop(free);
    let door = start_door(&format!("http://{dead}")).await;

    let (status, headers, body) = send(&door, "GET", "/v1/me", &[], "").await;
    assert_problem(status, &headers, &body, 502, "bad_gateway");
}

#[tokio::test]
async fn healthz_is_answered_and_shutdown_is_graceful() {
    let (up, _) = start_upstream().await;
    let mut door = start_door(&format!("http://{up}")).await;

    let (status, _, body) = send(&door, "GET", "/healthz", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], br#"{"status":"ok"}"#);

    door.stop.take().unwrap().send(()).unwrap();
    let served = tokio::time::timeout(Duration::from_secs(15), &mut door.task)
        .await
        .expect("serve returns after the shutdown signal")
        .unwrap();
    served.unwrap();
    assert!(tokio::net::TcpStream::connect(door.addr).await.is_err());
}
