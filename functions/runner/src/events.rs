//! What the runner tells runs about a run while it runs: the agent's output lines (log
//! events), `progress: <n>%` lines (also progress events) and status changes, sent in
//! batches so a chatty agent does not cost one request per line.

use std::time::Duration;

pub use runwarden_contracts::runner_api::{MAX_MESSAGE_BYTES, RunnerEvent, Stream};
use tokio::time::Instant;

use crate::redact::Redactor;

/// A batch is sent when it holds this many events...
pub const BATCH_MAX_EVENTS: usize = 100;
/// ...or this many bytes of JSON (runs accepts request bodies up to 64 KiB, and 100 lines
/// of 4 KiB would not fit; one more event past this, at most ~24 KiB when every byte of it
/// is escaped, still fits)...
pub const BATCH_MAX_BYTES: usize = 32 * 1024;
/// ...or when its first event has waited this long.
pub const BATCH_MAX_WAIT: Duration = Duration::from_millis(250);

/// What an event adds to a request body: its JSON (escaping included) and a comma.
fn weight(event: &RunnerEvent) -> usize {
    serde_json::to_vec(event).map_or(6 * MAX_MESSAGE_BYTES + 64, |json| json.len() + 1)
}

/// `progress: 42%` -> 42 (0..=100, surrounding whitespace allowed).
pub fn parse_progress(line: &str) -> Option<u8> {
    let rest = line.trim().strip_prefix("progress:")?;
    let number = rest.trim().strip_suffix('%')?.trim_end();
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let percent: u8 = number.parse().ok()?;
    (percent <= 100).then_some(percent)
}

/// Cuts `message` to at most `max` bytes, on a character boundary.
pub fn clip(mut message: String, max: usize) -> String {
    if message.len() > max {
        let mut end = max;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    message
}

/// How many raw bytes of a line to keep before redaction, so a secret that starts before
/// the cut is still seen whole (and then redacted) rather than half-shown.
pub fn raw_line_budget(redactor: &Redactor) -> usize {
    MAX_MESSAGE_BYTES + redactor.longest()
}

/// One raw output line (without its newline) -> its events: a log event, and a progress
/// event too when the line says `progress: <n>%`. Secret values are redacted first, then
/// the message is cut to `MAX_MESSAGE_BYTES`.
pub fn line_events(stream: Stream, raw: &[u8], redactor: &Redactor) -> Vec<RunnerEvent> {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let text = String::from_utf8_lossy(raw);
    let message = clip(redactor.redact(&text).into_owned(), MAX_MESSAGE_BYTES);
    let progress = parse_progress(&message);
    let mut events = Vec::with_capacity(2);
    if let Some(percent) = progress {
        events.push(RunnerEvent::Log {
            stream,
            message: message.clone(),
        });
        events.push(RunnerEvent::Progress { percent, message });
    } else {
        events.push(RunnerEvent::Log { stream, message });
    }
    events
}

/// Events waiting to be sent.
#[derive(Debug, Default)]
pub struct Batch {
    events: Vec<RunnerEvent>,
    bytes: usize,
    opened_at: Option<Instant>,
}

impl Batch {
    /// Adds an event; true when the batch is now full and should be sent.
    pub fn push(&mut self, event: RunnerEvent, now: Instant) -> bool {
        self.opened_at.get_or_insert(now);
        self.bytes += weight(&event);
        self.events.push(event);
        self.events.len() >= BATCH_MAX_EVENTS || self.bytes >= BATCH_MAX_BYTES
    }

    /// When the batch must be sent even if it is not full (`None` when empty).
    pub fn deadline(&self) -> Option<Instant> {
        self.opened_at.map(|at| at + BATCH_MAX_WAIT)
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Empties the batch, returning its events.
    pub fn take(&mut self) -> Vec<RunnerEvent> {
        self.bytes = 0;
        self.opened_at = None;
        std::mem::take(&mut self.events)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn progress_lines_parse() {
        assert_eq!(parse_progress("progress: 42%"), Some(42));
        assert_eq!(parse_progress("  progress:0%  "), Some(0));
        assert_eq!(parse_progress("progress: 100 %"), Some(100));
        for no in [
            "progress: 101%",
            "progress: -1%",
            "progress: 4.5%",
            "progress: %",
            "progress: 42",
            "Progress: 42%",
            "my progress: 42%",
            "progress: 999999999999%",
            "progress: +5%",
        ] {
            assert_eq!(parse_progress(no), None, "{no}");
        }
    }

    #[test]
    fn a_progress_line_is_a_log_and_a_progress_event() {
        let events = line_events(Stream::Stdout, b"progress: 50%\r", &Redactor::default());
        assert_eq!(
            serde_json::to_value(&events).unwrap(),
            json!([
                {"kind": "log", "stream": "stdout", "message": "progress: 50%"},
                {"kind": "progress", "percent": 50, "message": "progress: 50%"},
            ])
        );
        let events = line_events(Stream::Stderr, b"hello", &Redactor::default());
        assert_eq!(
            serde_json::to_value(&events).unwrap(),
            json!([{"kind": "log", "stream": "stderr", "message": "hello"}])
        );
        assert_eq!(
            serde_json::to_value(RunnerEvent::status("started")).unwrap(),
            json!({"kind": "status", "message": "started"})
        );
    }

    #[test]
    fn lines_are_lossy_redacted_then_cut() {
        let redactor = Redactor::new(["hunter2hunter2"]);
        let events = line_events(Stream::Stdout, b"pw=hunter2hunter2 \xff!", &redactor);
        assert_eq!(
            events,
            [RunnerEvent::Log {
                stream: Stream::Stdout,
                message: "pw=[REDACTED] \u{fffd}!".into()
            }]
        );
        // A value straddling the cut is redacted before the cut, never half-shown.
        let mut raw = vec![b'x'; MAX_MESSAGE_BYTES - 4];
        raw.extend_from_slice(b"hunter2hunter2");
        assert!(raw.len() <= raw_line_budget(&redactor));
        let RunnerEvent::Log { message, .. } = &line_events(Stream::Stdout, &raw, &redactor)[0]
        else {
            panic!("not a log event");
        };
        assert_eq!(message.len(), MAX_MESSAGE_BYTES);
        assert!(!message.contains("hunt"), "{}", &message[4000..]);
        // Cut on a character boundary.
        let long = "é".repeat(MAX_MESSAGE_BYTES);
        let RunnerEvent::Log { message, .. } =
            &line_events(Stream::Stdout, long.as_bytes(), &Redactor::default())[0]
        else {
            panic!("not a log event");
        };
        assert_eq!(message.len(), MAX_MESSAGE_BYTES);
    }

    #[test]
    fn batches_fill_by_count_bytes_and_time() {
        let now = Instant::now();
        let mut batch = Batch::default();
        assert!(batch.deadline().is_none());
        let line = |n: usize| RunnerEvent::Log {
            stream: Stream::Stdout,
            message: "x".repeat(n),
        };
        for i in 1..BATCH_MAX_EVENTS {
            assert!(!batch.push(line(1), now), "full after {i}");
        }
        assert_eq!(batch.deadline(), Some(now + BATCH_MAX_WAIT));
        assert!(batch.push(line(1), now + Duration::from_secs(1)));
        assert_eq!(batch.take().len(), BATCH_MAX_EVENTS);
        assert!(batch.is_empty() && batch.deadline().is_none());

        // Eight lines of 4 KiB fill it by bytes, and the body stays under runs' 64 KiB.
        let mut full_at = 0;
        for i in 1..=BATCH_MAX_EVENTS {
            if batch.push(line(MAX_MESSAGE_BYTES), now) {
                full_at = i;
                break;
            }
        }
        assert_eq!(full_at, 8);
        let body = serde_json::to_vec(&json!({"events": batch.take()})).unwrap();
        assert!(body.len() < 64 * 1024, "{}", body.len());

        // Worst case: every byte escaped (\u0001 is six), just under the limit, plus one.
        let nasty = || RunnerEvent::Log {
            stream: Stream::Stderr,
            message: "\u{1}".repeat(MAX_MESSAGE_BYTES),
        };
        let mut pushed = 0;
        while !batch.push(nasty(), now) {
            pushed += 1;
        }
        assert!(pushed >= 1);
        let body = serde_json::to_vec(&json!({"events": batch.take()})).unwrap();
        assert!(body.len() < 64 * 1024, "{}", body.len());
    }
}
