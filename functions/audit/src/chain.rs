//! The per-org hash chain: what a record is, how it is hashed, and how a chain is checked.
//! Plain functions with no I/O, shared by the API (`/verify`), the appender and the offline
//! verifier (`audit-verify`).
//!
//! # Canonical encoding (version 1)
//! `hash = SHA-256(prev_hash || canonical)`, where `prev_hash` is the previous record's hash
//! (32 zero bytes for an org's first record, seq 1) and `canonical` is this UTF-8 JSON text,
//! with exactly these keys in exactly this order and no whitespace:
//!
//! ```text
//! {"v":1,"org_id":S,"seq":N,"event_id":S,"time":T,"created_at":T,
//!  "actor":{"kind":S,"id":S|null},"action":S,"target":{"type":S,"id":S},"outcome":S,
//!  "request_id":S|null,"ip":S|null,"user_agent":S|null,"details":J}
//! ```
//!
//! - `S` is a JSON string as serde_json writes it: `"` and `\` escaped, control characters as
//!   `\n`, `\t`, `\r`, `\b`, `\f` or `\u00XX` (lowercase hex), everything else (including
//!   non-ASCII and `/`) written as is.
//! - ids (`org_id`, `event_id`) are lowercase hyphenated UUIDs; `seq` a decimal integer.
//! - `T` is UTC with exactly six fractional digits: `2026-11-25T09:30:00.123456Z` (times are
//!   truncated to microseconds before they are hashed or stored).
//! - `actor.kind` is `user|api_key|runner|system`, `outcome` `success|denied|failure`; `ip`
//!   is the address as Rust's `IpAddr` displays it.
//! - `J` is `details` in canonical JSON: object keys sorted by their UTF-8 bytes, arrays in
//!   order, no whitespace, strings as above, numbers as serde_json writes them; `null` when
//!   the event has no details.
//!
//! An export (`GET .../audit-events/export`) is one [`Record`] per line in `seq` order; its
//! `prev_hash` and `hash` are lowercase hex. Anyone can recompute the chain from it.
//!
//! The chain proves integrity relative to a known head: whoever can write the table as its
//! owner could rewrite the whole chain consistently, so keep exported heads (`count`, `head`)
//! somewhere else and check them later (`audit-verify --anchor SEQ:HEX`).

use std::fmt::Write as _;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use runwarden_tenancy::OrgId;

pub type Hash = [u8; 32];

/// The `prev_hash` of an org's first record.
pub const GENESIS: Hash = [0; 32];
/// The version of the canonical encoding, hashed as `"v"`.
pub const ENCODING_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordActor {
    pub kind: String,
    pub id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordTarget {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// One link of an org's chain: an audit event, its place, and its hashes. This is also the
/// shape of every item the API returns and of every line of an export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub org_id: OrgId,
    pub seq: i64,
    pub event_id: Uuid,
    /// When the action happened (the event's `time`).
    #[serde(with = "micros")]
    pub time: DateTime<Utc>,
    /// When audit appended it.
    #[serde(with = "micros")]
    pub created_at: DateTime<Utc>,
    pub actor: RecordActor,
    pub action: String,
    pub target: RecordTarget,
    pub outcome: String,
    pub request_id: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub details: Value,
    #[serde(with = "hex_hash")]
    pub prev_hash: Hash,
    #[serde(with = "hex_hash")]
    pub hash: Hash,
}

/// Truncates a time to what PostgreSQL stores (microseconds), so what is hashed is what is
/// read back.
pub fn to_micros(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(6)
}

fn format_time(time: &DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

fn push_str(out: &mut String, s: &str) {
    // serde_json's string escaping; writing to a String cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

fn push_opt_str(out: &mut String, s: Option<&str>) {
    match s {
        Some(s) => push_str(out, s),
        None => out.push_str("null"),
    }
}

/// `value` as canonical JSON (keys sorted by their UTF-8 bytes, no whitespace).
pub fn canonical_json(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => push_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_str(out, key);
                out.push(':');
                canonical_json(item, out);
            }
            out.push('}');
        }
    }
}

impl Record {
    /// The canonical encoding of this record's fields (everything but its hashes).
    pub fn canonical(&self) -> String {
        let mut out = String::with_capacity(512);
        let _ = write!(
            out,
            r#"{{"v":{ENCODING_VERSION},"org_id":"{}","seq":{},"event_id":"{}","time":"{}","created_at":"{}","actor":{{"kind":"#,
            self.org_id,
            self.seq,
            self.event_id,
            format_time(&self.time),
            format_time(&self.created_at),
        );
        push_str(&mut out, &self.actor.kind);
        out.push_str(r#","id":"#);
        push_opt_str(&mut out, self.actor.id.as_deref());
        out.push_str(r#"},"action":"#);
        push_str(&mut out, &self.action);
        out.push_str(r#","target":{"type":"#);
        push_str(&mut out, &self.target.kind);
        out.push_str(r#","id":"#);
        push_str(&mut out, &self.target.id);
        out.push_str(r#"},"outcome":"#);
        push_str(&mut out, &self.outcome);
        out.push_str(r#","request_id":"#);
        push_opt_str(&mut out, self.request_id.as_deref());
        out.push_str(r#","ip":"#);
        push_opt_str(&mut out, self.ip.as_deref());
        out.push_str(r#","user_agent":"#);
        push_opt_str(&mut out, self.user_agent.as_deref());
        out.push_str(r#","details":"#);
        canonical_json(&self.details, &mut out);
        out.push('}');
        out
    }

    /// SHA-256(prev_hash || canonical), over this record's own `prev_hash`.
    pub fn compute_hash(&self) -> Hash {
        link_hash(&self.prev_hash, &self.canonical())
    }

    /// Sets `hash` from the fields and `prev_hash`.
    pub fn seal(mut self) -> Self {
        self.hash = self.compute_hash();
        self
    }
}

pub fn link_hash(prev: &Hash, canonical: &str) -> Hash {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    ctx.update(prev);
    ctx.update(canonical.as_bytes());
    let digest = ctx.finish();
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

pub fn to_hex(hash: &Hash) -> String {
    let mut out = String::with_capacity(64);
    for byte in hash {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

pub fn from_hex(text: &str) -> Option<Hash> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in text.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// Where and why a chain stops verifying.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Break {
    pub seq: i64,
    pub event_id: Uuid,
    /// `seq_gap` (a record is missing or out of place), `prev_hash_mismatch` (the record
    /// does not link to the one before it), `hash_mismatch` (its fields were changed),
    /// `org_mismatch` (a record of another org), `unreadable` (a stored value is corrupt).
    pub reason: &'static str,
    pub detail: String,
}

/// Walks a chain record by record, in `seq` order.
#[derive(Debug, Clone)]
pub struct ChainWalker {
    org: Option<OrgId>,
    prev: Hash,
    next_seq: i64,
    count: u64,
}

impl Default for ChainWalker {
    fn default() -> Self {
        Self::new(None)
    }
}

impl ChainWalker {
    /// A walker for `org`'s chain (or for the org of the first record it sees).
    pub fn new(org: Option<OrgId>) -> Self {
        Self {
            org,
            prev: GENESIS,
            next_seq: 1,
            count: 0,
        }
    }

    /// Checks the next record; on success it becomes the head.
    pub fn push(&mut self, record: &Record) -> Result<(), Break> {
        let broken = |reason: &'static str, detail: String| Break {
            seq: record.seq,
            event_id: record.event_id,
            reason,
            detail,
        };
        let org = *self.org.get_or_insert(record.org_id);
        if record.org_id != org {
            return Err(broken(
                "org_mismatch",
                format!("record of org {} in the chain of org {org}", record.org_id),
            ));
        }
        if record.seq != self.next_seq {
            return Err(broken(
                "seq_gap",
                format!(
                    "expected seq {}, found {}: a record is missing or out of place",
                    self.next_seq, record.seq
                ),
            ));
        }
        if record.prev_hash != self.prev {
            return Err(broken(
                "prev_hash_mismatch",
                "prev_hash is not the hash of the record before it".into(),
            ));
        }
        if record.compute_hash() != record.hash {
            return Err(broken(
                "hash_mismatch",
                "the record's fields do not match its hash: it was changed".into(),
            ));
        }
        self.prev = record.hash;
        self.next_seq += 1;
        self.count += 1;
        Ok(())
    }

    /// Records verified so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The hash of the last verified record (`GENESIS` for an empty chain).
    pub fn head(&self) -> Hash {
        self.prev
    }
}

/// The answer of `/verify` and of `audit-verify --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Verdict {
    Ok {
        ok: bool,
        count: u64,
        head: String,
    },
    Broken {
        ok: bool,
        count: u64,
        broken_at: Break,
    },
}

impl Verdict {
    pub fn ok(walker: &ChainWalker) -> Self {
        Self::Ok {
            ok: true,
            count: walker.count(),
            head: to_hex(&walker.head()),
        }
    }

    pub fn broken(walker: &ChainWalker, at: Break) -> Self {
        Self::Broken {
            ok: false,
            count: walker.count(),
            broken_at: at,
        }
    }

    pub fn is_ok(&self) -> bool {
        matches!(self, Self::Ok { .. })
    }
}

mod micros {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_time(time))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hash: &super::Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::to_hex(hash))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<super::Hash, D::Error> {
        let text = String::deserialize(d)?;
        super::from_hex(&text).ok_or_else(|| serde::de::Error::custom("expected 64 hex digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(seq: i64, prev: Hash) -> Record {
        Record {
            org_id: "0193a5b0-0000-7000-8000-000000000001".parse().unwrap(),
            seq,
            event_id: Uuid::from_u128(seq as u128),
            time: "2026-11-25T09:30:00.123456Z".parse().unwrap(),
            created_at: "2026-11-25T09:30:01Z".parse().unwrap(),
            actor: RecordActor {
                kind: "user".into(),
                id: Some("u-1".into()),
            },
            action: "member.role_change".into(),
            target: RecordTarget {
                kind: "user".into(),
                id: "u-2".into(),
            },
            outcome: "success".into(),
            request_id: None,
            ip: Some("2001:db8::1".into()),
            user_agent: Some("curl/8 \"quoted\" \u{1}".into()),
            details: json!({"to": "admin", "from": "member", "n": [1, 2.5, {"b": 1, "a": null}]}),
            prev_hash: prev,
            hash: GENESIS,
        }
        .seal()
    }

    #[test]
    fn the_canonical_encoding_is_exactly_the_documented_one() {
        let r = record(1, GENESIS);
        assert_eq!(
            r.canonical(),
            concat!(
                r#"{"v":1,"org_id":"0193a5b0-0000-7000-8000-000000000001","seq":1,"#,
                r#""event_id":"00000000-0000-0000-0000-000000000001","#,
                r#""time":"2026-11-25T09:30:00.123456Z","created_at":"2026-11-25T09:30:01.000000Z","#,
                r#""actor":{"kind":"user","id":"u-1"},"action":"member.role_change","#,
                r#""target":{"type":"user","id":"u-2"},"outcome":"success","request_id":null,"#,
                r#""ip":"2001:db8::1","user_agent":"curl/8 \"quoted\" \u0001","#,
                r#""details":{"from":"member","n":[1,2.5,{"a":null,"b":1}],"to":"admin"}}"#
            )
        );
        // Independently: SHA-256 over 32 zero bytes and the text.
        let mut input = vec![0u8; 32];
        input.extend_from_slice(r.canonical().as_bytes());
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &input);
        assert_eq!(r.hash.as_slice(), digest.as_ref());
    }

    #[test]
    fn a_chain_verifies_and_every_kind_of_edit_is_caught() {
        let r1 = record(1, GENESIS);
        let r2 = record(2, r1.hash);
        let r3 = record(3, r2.hash);
        let mut w = ChainWalker::default();
        for r in [&r1, &r2, &r3] {
            w.push(r).unwrap();
        }
        assert_eq!((w.count(), w.head()), (3, r3.hash));

        let walk = |records: &[&Record]| {
            let mut w = ChainWalker::default();
            for r in records {
                if let Err(b) = w.push(r) {
                    return Err((w.count(), b));
                }
            }
            Ok(w.count())
        };
        let mut edited = r2.clone();
        edited.action = "member.remove".into();
        let (count, b) = walk(&[&r1, &edited, &r3]).unwrap_err();
        assert_eq!((count, b.seq, b.reason), (1, 2, "hash_mismatch"));

        let (count, b) = walk(&[&r1, &r3]).unwrap_err();
        assert_eq!((count, b.seq, b.reason), (1, 3, "seq_gap"));

        let (_, b) = walk(&[&r2, &r3]).unwrap_err();
        assert_eq!((b.seq, b.reason), (2, "seq_gap"));

        let forged = record(4, GENESIS);
        let (count, b) = walk(&[&r1, &r2, &r3, &forged]).unwrap_err();
        assert_eq!((count, b.seq, b.reason), (3, 4, "prev_hash_mismatch"));

        let mut other_org = record(4, r3.hash);
        other_org.org_id = OrgId::new();
        let other_org = other_org.seal();
        let (_, b) = walk(&[&r1, &r2, &r3, &other_org]).unwrap_err();
        assert_eq!(b.reason, "org_mismatch");

        // Re-sealing an edited record does not help: the next link breaks.
        let resealed = edited.clone().seal();
        let (_, b) = walk(&[&r1, &resealed, &r3]).unwrap_err();
        assert_eq!((b.seq, b.reason), (3, "prev_hash_mismatch"));
    }

    #[test]
    fn records_round_trip_through_their_json_line() {
        let r = record(1, GENESIS);
        let line = serde_json::to_string(&r).unwrap();
        assert!(line.contains(
            r#""prev_hash":"0000000000000000000000000000000000000000000000000000000000000000""#
        ));
        let back: Record = serde_json::from_str(&line).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.compute_hash(), r.hash);
        assert!(
            serde_json::from_str::<Record>(&line.replace(r#""seq":1"#, r#""seq":1,"extra":1"#))
                .is_err()
        );
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        let h = link_hash(&GENESIS, "x");
        assert_eq!(from_hex(&to_hex(&h)), Some(h));
        assert_eq!(from_hex("00"), None);
        assert_eq!(from_hex(&"zz".repeat(32)), None);
        assert_eq!(from_hex(&"é".repeat(32)), None);
    }

    #[test]
    fn times_are_truncated_to_microseconds() {
        let t: DateTime<Utc> = "2026-11-25T09:30:00.123456789Z".parse().unwrap();
        assert_eq!(format_time(&to_micros(t)), "2026-11-25T09:30:00.123456Z");
    }
}
