//! The reverse proxy: one fallback handler that routes by `routes.json` and streams the
//! request and response bodies through unchanged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Uri, Version};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::problem;
use crate::routes::{Rejection, RouteTable};

/// How long to wait for an upstream to accept a TCP connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long to wait for an upstream's response headers (Cloud Run's default request
/// timeout). Bodies, e.g. SSE streams, are not limited by it.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(300);

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Hop-by-hop headers (RFC 9110 section 7.6.1, plus the non-standard ones still seen).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A validated upstream base URL (`http://host:port[/prefix]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    scheme_authority: String,
    prefix: String,
}

impl Upstream {
    pub fn parse(url: &str) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "{url:?} must be an http:// URL (the local front door speaks plain HTTP to upstreams)"
            ));
        }
        let Some(authority) = uri.authority() else {
            return Err(format!("{url:?} has no host"));
        };
        if uri.query().is_some() {
            return Err(format!("{url:?} must not have a query"));
        }
        Ok(Self {
            scheme_authority: format!("http://{authority}"),
            prefix: uri.path().trim_end_matches('/').to_owned(),
        })
    }

    fn join(&self, path_and_query: &str) -> Result<Uri, http::uri::InvalidUri> {
        format!("{}{}{}", self.scheme_authority, self.prefix, path_and_query).parse()
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.scheme_authority, self.prefix)
    }
}

#[derive(Clone)]
pub(crate) struct ProxyState {
    table: &'static RouteTable,
    upstreams: Arc<BTreeMap<String, Upstream>>,
    client: Client<HttpConnector, Body>,
}

impl ProxyState {
    pub(crate) fn new(table: &'static RouteTable, upstreams: BTreeMap<String, Upstream>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self {
            table,
            upstreams: Arc::new(upstreams),
            client,
        }
    }
}

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Appends the client IP to `X-Forwarded-For` (folding repeated headers into one) and
/// sets `X-Forwarded-Proto: http`. Locally the front door is the single trusted hop.
pub fn set_forwarded(headers: &mut HeaderMap, client: Option<SocketAddr>) {
    if let Some(client) = client {
        let ip = client.ip().to_canonical().to_string();
        let prior: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        let value = if prior.is_empty() {
            ip
        } else {
            format!("{}, {ip}", prior.join(", "))
        };
        match HeaderValue::from_str(&value) {
            Ok(v) => {
                headers.insert(&X_FORWARDED_FOR, v);
            }
            // A prior value that cannot be re-encoded: start the chain at this hop.
            Err(_) => {
                headers.insert(
                    &X_FORWARDED_FOR,
                    HeaderValue::from_str(&client.ip().to_canonical().to_string())
                        .expect("an IP address is a valid header value"),
                );
            }
        }
    }
    headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("http"));
}

pub(crate) async fn proxy(State(state): State<ProxyState>, req: Request) -> Response {
    let route = match state.table.route(req.uri().path()) {
        Ok(route) => route,
        Err(Rejection::Malformed(why)) => {
            tracing::debug!(reason = why, "refused a malformed path");
            return problem::respond(problem::bad_request(why));
        }
        Err(Rejection::Refused | Rejection::Unmatched) => {
            return problem::respond(problem::not_found());
        }
    };
    let service = route.service();
    let pattern = route.pattern().as_str();
    let Some(upstream) = state.upstreams.get(service) else {
        tracing::error!(service, "no upstream configured for a routed service");
        return problem::respond(problem::bad_gateway());
    };

    let client_addr = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    let (mut parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    parts.uri = match upstream.join(path_and_query) {
        Ok(uri) => uri,
        Err(_) => return problem::respond(problem::bad_request("the request target is not valid")),
    };
    // The upstream leg is HTTP/1.1 whatever the client spoke.
    parts.version = Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers);
    // INT-03: headers only the platform sets are spoofs when they come from outside.
    for name in state.table.strip_request_headers() {
        parts.headers.remove(name);
    }
    set_forwarded(&mut parts.headers, client_addr);
    let method = parts.method.clone();

    let started = Instant::now();
    let outcome = tokio::time::timeout(
        RESPONSE_TIMEOUT,
        state.client.request(Request::from_parts(parts, body)),
    )
    .await;
    let duration_ms = started.elapsed().as_millis() as u64;
    // Only the route pattern is logged: paths and queries carry ids and media tokens.
    match outcome {
        Ok(Ok(res)) => {
            let (mut parts, body) = res.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            tracing::info!(
                http.method = %method,
                route = pattern,
                service,
                http.status = parts.status.as_u16(),
                duration_ms,
                "proxied"
            );
            Response::from_parts(parts, Body::new(body))
        }
        Ok(Err(e)) => {
            tracing::warn!(
                http.method = %method,
                route = pattern,
                service,
                upstream = %upstream,
                connect = e.is_connect(),
                error = %e,
                duration_ms,
                "upstream request failed"
            );
            problem::respond(problem::bad_gateway())
        }
        Err(_) => {
            tracing::warn!(http.method = %method, route = pattern, service, duration_ms, "upstream timed out");
            problem::respond(problem::gateway_timeout())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_urls_are_validated_and_joined() {
        let u = Upstream::parse("http://127.0.0.1:8081").unwrap();
        assert_eq!(
            u.join("/v1/me?x=1").unwrap().to_string(),
            "http://127.0.0.1:8081/v1/me?x=1"
        );
        let u = Upstream::parse("http://svc:9/base/").unwrap();
        assert_eq!(
            u.join("/v1/me").unwrap().to_string(),
            "http://svc:9/base/v1/me"
        );
        assert!(Upstream::parse("https://x").is_err());
        assert!(Upstream::parse("127.0.0.1:8081").is_err());
        assert!(Upstream::parse("http://x/?q=1").is_err());
        assert!(Upstream::parse("not a url").is_err());
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("authorization", HeaderValue::from_static("Bearer t"));
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["authorization", "content-type"]);
    }

    #[test]
    fn forwarded_for_is_appended_and_proto_set() {
        let client: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        let mut h = HeaderMap::new();
        set_forwarded(&mut h, Some(client));
        assert_eq!(h["x-forwarded-for"], "10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "http");

        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("1.1.1.1"));
        h.append(
            "x-forwarded-for",
            HeaderValue::from_static("2.2.2.2, 3.3.3.3"),
        );
        h.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        set_forwarded(&mut h, Some(client));
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 3.3.3.3, 10.1.2.3");
        assert_eq!(h["x-forwarded-proto"], "http");

        let mut h = HeaderMap::new();
        set_forwarded(&mut h, Some("[::ffff:127.0.0.1]:1".parse().unwrap()));
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    }
}
