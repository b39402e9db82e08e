//! Reading the agent's stdout and stderr line by line with bounded memory: a line longer
//! than the budget keeps only its beginning, and the rest is read and dropped.

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

use crate::events::{RunnerEvent, Stream, line_events, raw_line_budget};
use crate::redact::Redactor;

/// Reads one line (without its `\n`) into `line`, keeping at most `keep` bytes of it.
/// False at end of input with nothing read.
pub async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    keep: usize,
) -> std::io::Result<bool> {
    line.clear();
    let mut read_any = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(read_any);
        }
        read_any = true;
        let (chunk, consumed, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        let room = keep.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        reader.consume(consumed);
        if done {
            return Ok(true);
        }
    }
}

/// Turns every line of `pipe` into events on `events` until the pipe closes (or the
/// receiver is gone).
pub async fn forward_lines<R: AsyncRead + Unpin>(
    pipe: R,
    stream: Stream,
    redactor: Redactor,
    events: mpsc::Sender<RunnerEvent>,
) {
    let mut reader = BufReader::with_capacity(16 * 1024, pipe);
    let budget = raw_line_budget(&redactor);
    let mut line = Vec::with_capacity(1024);
    loop {
        match read_line_bounded(&mut reader, &mut line, budget).await {
            Ok(true) => {
                for event in line_events(stream, &line, &redactor) {
                    if events.send(event).await.is_err() {
                        return;
                    }
                }
            }
            Ok(false) => return,
            Err(e) => {
                tracing::warn!(error = %e, ?stream, "reading the agent's output failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], keep: usize) -> Vec<Vec<u8>> {
        // A tiny buffer, so lines cross many reads.
        let mut reader = BufReader::with_capacity(3, input);
        let mut out = Vec::new();
        let mut line = Vec::new();
        while read_line_bounded(&mut reader, &mut line, keep)
            .await
            .unwrap()
        {
            out.push(line.clone());
        }
        out
    }

    #[tokio::test]
    async fn splits_lines_and_keeps_a_last_line_without_newline() {
        assert_eq!(
            lines(b"one\ntwo\n\nlast", 100).await,
            [&b"one"[..], b"two", b"", b"last"]
        );
        assert!(lines(b"", 100).await.is_empty());
    }

    #[tokio::test]
    async fn long_lines_keep_their_beginning_and_the_next_line_is_intact() {
        let mut input = vec![b'a'; 10_000];
        input.extend_from_slice(b"\nnext\n");
        assert_eq!(lines(&input, 5).await, [&b"aaaaa"[..], b"next"]);
    }

    #[tokio::test]
    async fn forwards_redacted_events_in_order() {
        let (tx, mut rx) = mpsc::channel(16);
        let redactor = Redactor::new(["topsecret"]);
        forward_lines(
            &b"a topsecret b\nprogress: 10%\n"[..],
            Stream::Stderr,
            redactor,
            tx,
        )
        .await;
        let mut got = Vec::new();
        while let Some(event) = rx.recv().await {
            got.push(event);
        }
        assert_eq!(
            got,
            [
                RunnerEvent::Log {
                    stream: Stream::Stderr,
                    message: "a [REDACTED] b".into()
                },
                RunnerEvent::Log {
                    stream: Stream::Stderr,
                    message: "progress: 10%".into()
                },
                RunnerEvent::Progress {
                    percent: 10,
                    message: "progress: 10%".into()
                },
            ]
        );
    }
}
