//! The shared server over a real socket: limits, headers, internal auth, shutdown.

use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use runwarden_platform::internal_auth::{InternalSecrets, require_internal_auth};
use runwarden_platform::request::TrustedProxyHops;
use runwarden_platform::server::{Limits, app, serve};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "0123456789abcdef0123456789abcdef-current";

struct Server {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
}

async fn start(limits: Limits) -> Server {
    let secrets = InternalSecrets::parse(&SecretString::from(SECRET)).unwrap();
    let internal = Router::new()
        .route("/internal/ping", get(|| async { "pong" }))
        .route_layer(axum::middleware::from_fn_with_state(
            secrets,
            require_internal_auth,
        ));
    let routes = Router::new()
        .route("/echo", post(|body: String| async move { body }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(700)).await;
                "finished"
            }),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("boom");
                }
                "never"
            }),
        )
        .merge(internal);
    let router = app(routes, &limits, TrustedProxyHops(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        serve(listener, router, &limits, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Server {
        base,
        stop: Some(stop),
        done,
    }
}

fn small_limits() -> Limits {
    Limits {
        body_bytes: 1024,
        request_timeout: Duration::from_millis(300),
        header_read_timeout: Duration::from_millis(300),
        shutdown_grace: Duration::from_secs(3),
    }
}

#[tokio::test]
async fn healthz_and_security_headers_on_every_response() {
    let s = start(Limits::default()).await;
    for path in ["/healthz", "/missing"] {
        let r = reqwest::get(format!("{}{path}", s.base)).await.unwrap();
        let h = r.headers();
        assert_eq!(h["cache-control"], "no-store", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert!(h.contains_key("x-request-id"));
    }
    let r = reqwest::get(format!("{}/healthz", s.base)).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = reqwest::get(format!("{}/missing", s.base)).await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "not_found");
}

#[tokio::test]
async fn an_incoming_request_id_is_kept() {
    let s = start(Limits::default()).await;
    let r = reqwest::Client::new()
        .get(format!("{}/healthz", s.base))
        .header("x-request-id", "req-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "req-123");
}

#[tokio::test]
async fn oversized_bodies_are_413_problem_json() {
    let s = start(small_limits()).await;
    let client = reqwest::Client::new();
    let ok = client
        .post(format!("{}/echo", s.base))
        .body("x".repeat(1000))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let big = client
        .post(format!("{}/echo", s.base))
        .body("x".repeat(1025))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413);
    assert_eq!(big.headers()["content-type"], "application/problem+json");
    // Chunked, without a Content-Length: the limit still holds.
    let streamed = client
        .post(format!("{}/echo", s.base))
        .body(chunked(4096))
        .send()
        .await
        .unwrap();
    assert_eq!(streamed.status(), 413);
}

/// A body sent in 64-byte chunks with no Content-Length.
fn chunked(bytes: usize) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..bytes / 64).map(|_| Ok(vec![b'x'; 64])).collect();
    reqwest::Body::wrap_stream(futures::stream::iter(chunks))
}

#[tokio::test]
async fn slow_handlers_time_out_with_a_problem() {
    let s = start(small_limits()).await;
    let r = reqwest::get(format!("{}/slow", s.base)).await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "timeout");
}

#[tokio::test]
async fn panics_become_500_problem_json_without_details() {
    let s = start(Limits::default()).await;
    let r = reqwest::get(format!("{}/panic", s.base)).await.unwrap();
    assert_eq!(r.status(), 500);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("\"code\":\"internal\"") && !text.contains("boom"),
        "{text}"
    );
    // The server keeps serving.
    assert_eq!(
        reqwest::get(format!("{}/healthz", s.base))
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn internal_routes_need_the_shared_secret() {
    let s = start(Limits::default()).await;
    let client = reqwest::Client::new();
    let url = format!("{}/internal/ping", s.base);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        client
            .get(&url)
            .header("x-internal-auth", "wrong")
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let ok = client
        .get(&url)
        .header("x-internal-auth", SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn slowloris_connections_are_closed_at_the_header_timeout() {
    let s = start(small_limits()).await;
    let addr = s.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Never finish the head; the server must hang up by itself.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "connection still open after 3 s");
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let limits = Limits {
        request_timeout: Duration::from_secs(5),
        ..small_limits()
    };
    let mut s = start(limits).await;
    let url = format!("{}/slow", s.base);
    let in_flight =
        tokio::spawn(async move { reqwest::get(url).await.unwrap().text().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(150)).await;
    s.stop.take().unwrap().send(()).unwrap();
    assert_eq!(in_flight.await.unwrap(), "finished");
    tokio::time::timeout(Duration::from_secs(3), s.done)
        .await
        .expect("server stopped")
        .unwrap();
}
