//! JSON logs in Cloud Logging's structured format: one object per line with `severity`,
//! `message`, `time`, the fields of the event and of its spans, and
//! `logging.googleapis.com/trace` so lines correlate with the request's trace.
//!
//! Redaction happens here, once, for every line: fields whose names suggest a credential are
//! replaced, and any value that looks like a JWT is replaced too, so a careless
//! `tracing::info!(?request)` cannot leak a token.

use std::fmt::Debug;
use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

pub const REDACTED: &str = "[REDACTED]";

const SENSITIVE_NAME_PARTS: &[&str] = &[
    "password",
    "secret",
    "token",
    "authorization",
    "cookie",
    "api_key",
    "apikey",
    "private_key",
    "signing_key",
    "hash",
    "credential",
];

/// True when a field of this name must never be logged as is.
pub fn is_sensitive_name(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SENSITIVE_NAME_PARTS.iter().any(|part| name.contains(part))
}

/// True for strings shaped like a compact JWS (`eyJ….….…`).
fn looks_like_jwt(value: &str) -> bool {
    value.split_whitespace().any(|word| {
        let parts: Vec<&str> = word.split('.').collect();
        parts.len() == 3 && parts[0].starts_with("eyJ") && parts[1].len() > 8
    })
}

fn redact(name: &str, value: Value) -> Value {
    if is_sensitive_name(name) {
        return Value::String(REDACTED.into());
    }
    match value {
        Value::String(s) if looks_like_jwt(&s) => Value::String(REDACTED.into()),
        other => other,
    }
}

/// Installs the JSON log layer as the global subscriber. `RUST_LOG` filters (default `info`).
/// `project` turns trace ids into the `projects/{p}/traces/{id}` form Cloud Logging links.
pub fn init(project: Option<String>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(CloudLoggingLayer::new(std::io::stdout, project))
        .try_init();
}

/// A `tracing` layer that writes Cloud Logging JSON lines to `writer`.
pub struct CloudLoggingLayer<W> {
    writer: W,
    project: Option<String>,
}

impl<W> CloudLoggingLayer<W> {
    pub fn new(writer: W, project: Option<String>) -> Self {
        Self { writer, project }
    }
}

struct SpanFields(Map<String, Value>);

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl JsonVisitor<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        let name = field.name();
        self.0.insert(name.to_owned(), redact(name, value));
    }
}

impl Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        // The whole cause chain, once, where the error is logged.
        let mut text = value.to_string();
        let mut source = value.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        self.put(field, Value::String(text));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }
}

fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

impl<S, W> Layer<S> for CloudLoggingLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        attrs.record(&mut JsonVisitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id) {
            let mut extensions = span.extensions_mut();
            if let Some(SpanFields(fields)) = extensions.get_mut::<SpanFields>() {
                values.record(&mut JsonVisitor(fields));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = Map::new();
        // Outer spans first so inner fields win.
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>() {
                    for (k, v) in fields {
                        line.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        event.record(&mut JsonVisitor(&mut line));
        let meta = event.metadata();
        line.insert("severity".into(), severity(meta.level()).into());
        line.insert("time".into(), chrono::Utc::now().to_rfc3339().into());
        line.insert("target".into(), meta.target().into());
        if let Some(Value::String(trace)) = line.remove("trace_id") {
            let trace = match &self.project {
                Some(p) => format!("projects/{p}/traces/{trace}"),
                None => trace,
            };
            line.insert("logging.googleapis.com/trace".into(), trace.into());
        }
        if let Some(span_id) = line.remove("span_id") {
            line.insert("logging.googleapis.com/spanId".into(), span_id);
        }
        if !line.contains_key("message") {
            line.insert("message".into(), meta.name().into());
        }
        let mut bytes = serde_json::to_vec(&Value::Object(line)).unwrap_or_default();
        bytes.push(b'\n');
        let _ = self.writer.make_writer().write_all(&bytes);
    }
}

/// Extracts the trace and span ids from `traceparent` or `X-Cloud-Trace-Context`.
pub fn trace_ids(headers: &axum::http::HeaderMap) -> Option<(String, Option<String>)> {
    if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        // version-traceid-spanid-flags
        let mut parts = tp.split('-');
        let (_, trace, span) = (parts.next(), parts.next()?, parts.next());
        if trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Some((trace.to_owned(), span.map(str::to_owned)));
        }
    }
    let ctx = headers.get("x-cloud-trace-context")?.to_str().ok()?;
    let (trace, rest) = ctx.split_once('/').unwrap_or((ctx, ""));
    if trace.is_empty() || !trace.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let span = rest.split(';').next().filter(|s| !s.is_empty());
    Some((trace.to_owned(), span.map(str::to_owned)))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn capture(f: impl FnOnce()) -> Vec<Value> {
        // A second registered dispatcher, alive while this one captures: with a single scoped
        // dispatcher registered, tracing computes a new callsite's interest from the thread that
        // first hits it, so a parallel test thread without a subscriber could cache "never" for
        // a line this capture needs (tracing-core 0.1's `has_just_one` shortcut).
        let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
        let buffer = Buffer::default();
        let subscriber = tracing_subscriber::registry()
            .with(CloudLoggingLayer::new(buffer.clone(), Some("proj".into())));
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buffer.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn writes_cloud_logging_fields_with_trace() {
        let lines = capture(|| {
            let span = tracing::info_span!("request", trace_id = "abc123", request_id = "r-1");
            let _g = span.enter();
            tracing::warn!(org.id = "o-1", duration_ms = 12u64, "slow thing");
        });
        let line = &lines[0];
        assert_eq!(line["severity"], "WARNING");
        assert_eq!(line["message"], "slow thing");
        assert_eq!(line["request_id"], "r-1");
        assert_eq!(line["org.id"], "o-1");
        assert_eq!(line["duration_ms"], 12);
        assert_eq!(
            line["logging.googleapis.com/trace"],
            "projects/proj/traces/abc123"
        );
        assert!(line["time"].as_str().unwrap().contains('T'));
    }

    #[test]
    fn redacts_sensitive_names_and_jwt_shaped_values() {
        let jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl";
        let lines = capture(|| {
            tracing::info!(password = "hunter2hunter2", refresh_token = "rt_x", "login");
            tracing::info!(header = %format!("Bearer {jwt}"), "oops");
            tracing::info!(user.email = "a@b.c", "fine");
        });
        let all = lines.iter().map(Value::to_string).collect::<String>();
        assert!(!all.contains("hunter2"), "{all}");
        assert!(!all.contains("rt_x"), "{all}");
        assert!(!all.contains(jwt), "{all}");
        assert_eq!(lines[0]["password"], REDACTED);
        assert_eq!(lines[1]["header"], REDACTED);
        assert_eq!(lines[2]["user.email"], "a@b.c");
    }

    #[test]
    fn parses_trace_headers() {
        let mut h = axum::http::HeaderMap::new();
        h.insert(
            "x-cloud-trace-context",
            "105445aa7843bc8bf206b12000100000/1;o=1".parse().unwrap(),
        );
        assert_eq!(
            trace_ids(&h),
            Some(("105445aa7843bc8bf206b12000100000".into(), Some("1".into())))
        );
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        assert_eq!(trace_ids(&h).unwrap().0, "4bf92f3577b34da6a3ce929d0e0e4736");
        let mut bad = axum::http::HeaderMap::new();
        bad.insert("x-cloud-trace-context", "<script>/1".parse().unwrap());
        assert_eq!(trace_ids(&bad), None);
    }
}
