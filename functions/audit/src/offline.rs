//! Verifying an export offline (`audit-verify`): the NDJSON of `GET .../audit-events/export`,
//! one [`Record`] per line in `seq` order, recomputed from scratch with the same
//! [`ChainWalker`] the API uses. Nothing here touches the network or a database.

use std::io::BufRead;

use uuid::Uuid;

use crate::chain::{self, Break, ChainWalker, Hash, Record, Verdict};

/// A head remembered from an earlier export or verification: the record at `seq` must still
/// have this hash. It catches what a chain alone cannot: records removed from the end, or a
/// chain rewritten consistently from some point on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    pub seq: i64,
    pub hash: Hash,
}

impl std::str::FromStr for Anchor {
    type Err = String;

    /// `SEQ:HEX`, e.g. `42:9f86d0...`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (seq, hex) = s.split_once(':').ok_or("expected SEQ:HEX")?;
        Ok(Self {
            seq: seq
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or("SEQ must be a positive integer")?,
            hash: chain::from_hex(hex).ok_or("HEX must be 64 hex digits")?,
        })
    }
}

fn unreadable(line: usize, text: &str, why: String) -> Break {
    // Name the record if the line says which one it is.
    let value: Option<serde_json::Value> = serde_json::from_str(text).ok();
    let field = |name: &str| value.as_ref().and_then(|v| v.get(name).cloned());
    Break {
        seq: field("seq").and_then(|v| v.as_i64()).unwrap_or(0),
        event_id: field("event_id")
            .and_then(|v| v.as_str().and_then(|s| s.parse().ok()))
            .unwrap_or(Uuid::nil()),
        reason: "unreadable",
        detail: format!("line {line}: {why}"),
    }
}

/// Walks an export. Blank lines are skipped; an I/O error is returned as such.
pub fn verify_export<R: BufRead>(reader: R, anchors: &[Anchor]) -> std::io::Result<Verdict> {
    let mut walker = ChainWalker::default();
    let mut seen: Vec<(Anchor, Option<Hash>)> = anchors.iter().map(|a| (*a, None)).collect();
    for (index, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = match serde_json::from_str(&line) {
            Ok(record) => record,
            Err(e) => {
                let at = unreadable(index + 1, &line, format!("not a record: {e}"));
                return Ok(Verdict::broken(&walker, at));
            }
        };
        if let Err(at) = walker.push(&record) {
            return Ok(Verdict::broken(&walker, at));
        }
        for (anchor, found) in &mut seen {
            if anchor.seq == record.seq {
                *found = Some(record.hash);
            }
        }
    }
    for (anchor, found) in seen {
        let failure = match found {
            None => Some((
                "truncated",
                format!(
                    "the chain ends at seq {} but the anchor names seq {}: records were removed",
                    walker.count(),
                    anchor.seq
                ),
            )),
            Some(hash) if hash != anchor.hash => Some((
                "anchor_mismatch",
                "the record at the anchor's seq has another hash: the chain was rewritten".into(),
            )),
            Some(_) => None,
        };
        if let Some((reason, detail)) = failure {
            let at = Break {
                seq: anchor.seq,
                event_id: Uuid::nil(),
                reason,
                detail,
            };
            return Ok(Verdict::broken(&walker, at));
        }
    }
    Ok(Verdict::ok(&walker))
}
