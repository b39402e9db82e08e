//! Defence in depth: the agent should never print a secret, but if a line it prints contains
//! a secret's value, the value is replaced by `[REDACTED]` before the line leaves the runner.
//!
//! Every occurrence of every value is found (overlapping ones too) on the original line and
//! the union of those ranges is replaced, so two secrets that overlap, or a value that
//! overlaps itself, cannot leave a visible piece behind.

use std::borrow::Cow;

pub use runwarden_platform::telemetry::REDACTED;

/// Lines of a multi-line value shorter than this are not patterns on their own: a line is
/// printed and read one at a time, so a multi-line value can only show up line by line, and
/// its short lines (`{`, `}`, `-----END KEY-----`'s neighbours) are not secrets by themselves.
const MIN_FRAGMENT_BYTES: usize = 8;

#[derive(Debug, Default, Clone)]
pub struct Redactor {
    patterns: Vec<String>,
}

impl Redactor {
    /// From the run's secret values. Empty values are ignored (they would match everywhere).
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut patterns: Vec<String> = Vec::new();
        for value in values {
            if value.is_empty() {
                continue;
            }
            patterns.push(value.to_owned());
            if value.contains('\n') {
                for line in value.split('\n') {
                    let line = line.strip_suffix('\r').unwrap_or(line);
                    if line.len() >= MIN_FRAGMENT_BYTES {
                        patterns.push(line.to_owned());
                    }
                }
            }
        }
        patterns.sort();
        patterns.dedup();
        Self { patterns }
    }

    /// The longest pattern, in bytes: how far past a cut a value may reach.
    pub fn longest(&self) -> usize {
        self.patterns.iter().map(String::len).max().unwrap_or(0)
    }

    pub fn redact<'a>(&self, line: &'a str) -> Cow<'a, str> {
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for pattern in &self.patterns {
            let mut from = 0;
            while let Some(at) = line[from..].find(pattern.as_str()) {
                let start = from + at;
                ranges.push((start, start + pattern.len()));
                // Next start: one character further, so overlapping occurrences count too.
                from = start + line[start..].chars().next().map_or(1, char::len_utf8);
                if from >= line.len() {
                    break;
                }
            }
        }
        if ranges.is_empty() {
            return Cow::Borrowed(line);
        }
        ranges.sort_unstable();
        let mut out = String::with_capacity(line.len());
        let mut copied = 0;
        let mut iter = ranges.into_iter().peekable();
        while let Some((start, mut end)) = iter.next() {
            while let Some(&(next_start, next_end)) = iter.peek() {
                if next_start > end {
                    break;
                }
                end = end.max(next_end);
                iter.next();
            }
            out.push_str(&line[copied..start]);
            out.push_str(REDACTED);
            copied = end;
        }
        out.push_str(&line[copied..]);
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_every_value_and_leaves_clean_lines_alone() {
        let r = Redactor::new(["s3cr3t-value", "other-key"]);
        assert_eq!(
            r.redact("key=s3cr3t-value and other-key, again s3cr3t-value."),
            "key=[REDACTED] and [REDACTED], again [REDACTED]."
        );
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn overlapping_values_leave_no_piece_visible() {
        let r = Redactor::new(["abcd", "cdef"]);
        assert_eq!(r.redact("xxabcdefyy"), "xx[REDACTED]yy");
        // A value that overlaps itself.
        let r = Redactor::new(["aa"]);
        assert_eq!(r.redact("baaab"), "b[REDACTED]b");
        // One value inside another.
        let r = Redactor::new(["secret", "a-secret-b"]);
        assert_eq!(r.redact("[a-secret-b] secret"), "[[REDACTED]] [REDACTED]");
    }

    #[test]
    fn multi_line_values_are_redacted_line_by_line() {
        let pem = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n}\n-----END KEY-----";
        let r = Redactor::new([pem]);
        assert_eq!(r.redact("MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"), "[REDACTED]");
        // Short lines of a multi-line value are not patterns by themselves.
        assert_eq!(r.redact("}"), "}");
    }

    #[test]
    fn empty_values_are_ignored_and_unicode_is_safe() {
        let r = Redactor::new(["", "ñandú"]);
        assert_eq!(r.redact("é ñandú é"), "é [REDACTED] é");
        assert_eq!(r.redact("ééé"), "ééé");
        assert_eq!(Redactor::new([""]).redact("abc"), "abc");
        assert_eq!(r.longest(), "ñandú".len());
    }
}
