//! What audit accepts from the `audit-events` topic: an [`AuditEvent`] (shared/events), and
//! nothing else.
//!
//! Unknown fields are refused, not dropped: the payload schema is `AuditEvent` only, so an
//! unexpected field (a producer bug, or a new field audit does not know how to hash yet)
//! answers 400, which Pub/Sub retries and then parks in the dead-letter topic where it is
//! visible and can be replayed once audit understands it; a silently dropped field would be
//! lost from the record without anyone noticing. The same goes for anything that looks like
//! a secret in `details` (a key named like a password, token, secret, cookie, credential,
//! API key, private key or hash; a value shaped like a JWT, a bearer credential or a PEM
//! block): audit never stores it, and the producer gets fixed.

use chrono::{DateTime, Datelike, Utc};
use runwarden_events::AuditEvent;
use runwarden_events::push::PushError;
use serde_json::Value;

const EVENT_FIELDS: &[&str] = &[
    "id",
    "org_id",
    "actor",
    "action",
    "target",
    "outcome",
    "request_id",
    "ip",
    "user_agent",
    "time",
    "details",
];
const ACTOR_FIELDS: &[&str] = &["kind", "id"];
const TARGET_FIELDS: &[&str] = &["type", "id"];

const MAX_ACTION: usize = 100;
const MAX_TARGET_TYPE: usize = 64;
const MAX_ID: usize = 256;
const MAX_REQUEST_ID: usize = 128;
const MAX_USER_AGENT: usize = 512;
const MAX_DETAILS_BYTES: usize = 16 * 1024;
const MAX_DETAILS_DEPTH: usize = 8;

/// Key names (lowercased, without `_`, `-`, `.` or spaces) that end like these are refused.
const SECRET_KEY_SUFFIXES: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "authorization",
    "cookie",
    "credential",
    "credentials",
    "privatekey",
    "signingkey",
    "plaintext",
    "hash",
];

/// A validated event, ready to be chained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidEvent(pub AuditEvent);

fn malformed(detail: impl Into<String>) -> PushError {
    PushError::malformed(detail)
}

fn check_fields(value: &Value, allowed: &[&str], at: &str) -> Result<(), PushError> {
    let Some(map) = value.as_object() else {
        return Err(malformed(format!("{at} must be an object")));
    };
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(malformed(format!(
            "unknown field {at}{unknown:?}: the payload is an AuditEvent only"
        ))),
        None => Ok(()),
    }
}

fn check_text(
    value: &str,
    name: &str,
    max: usize,
    allow_empty: bool,
    allow_control: bool,
) -> Result<(), PushError> {
    if !allow_empty && value.is_empty() {
        return Err(malformed(format!("{name} is empty")));
    }
    if value.chars().count() > max {
        return Err(malformed(format!("{name} is longer than {max} characters")));
    }
    // PostgreSQL text cannot hold NUL at all; identifiers hold no control characters.
    if value.contains('\0') || (!allow_control && value.chars().any(char::is_control)) {
        return Err(malformed(format!("{name} contains control characters")));
    }
    Ok(())
}

fn is_action(action: &str) -> bool {
    action.contains('.')
        && !action.starts_with('.')
        && !action.ends_with('.')
        && !action.contains("..")
        && action
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
}

fn is_target_type(kind: &str) -> bool {
    kind.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn secret_looking_key(key: &str) -> bool {
    let normalized: String = key
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | '.' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_KEY_SUFFIXES.iter().any(|s| normalized.ends_with(s))
}

fn secret_looking_value(text: &str) -> bool {
    let t = text.trim();
    let jwt = t.starts_with("eyJ") && t.matches('.').count() >= 2;
    let bearer = t.len() > 7 && t[..7].eq_ignore_ascii_case("bearer ");
    jwt || bearer || t.contains("-----BEGIN")
}

fn check_details(value: &Value, path: &str, depth: usize) -> Result<(), PushError> {
    if depth > MAX_DETAILS_DEPTH {
        return Err(malformed("details are nested too deeply"));
    }
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                let at = format!("{path}.{key}");
                if secret_looking_key(key) {
                    return Err(malformed(format!(
                        "details field {at} looks like a secret; audit events never carry secrets"
                    )));
                }
                check_details(item, &at, depth + 1)?;
            }
            Ok(())
        }
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| check_details(item, &format!("{path}[{i}]"), depth + 1)),
        Value::String(text) if secret_looking_value(text) => Err(malformed(format!(
            "details value at {path} looks like a credential; audit events never carry secrets"
        ))),
        _ => Ok(()),
    }
}

fn check_time(time: DateTime<Utc>) -> Result<(), PushError> {
    if (1970..=9999).contains(&time.year()) {
        Ok(())
    } else {
        Err(malformed("time is out of range"))
    }
}

/// Parses and validates a payload.
pub fn parse(payload: &[u8]) -> Result<ValidEvent, PushError> {
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| malformed(format!("the payload is not JSON: {e}")))?;
    check_fields(&value, EVENT_FIELDS, "")?;
    if let Some(actor) = value.get("actor") {
        check_fields(actor, ACTOR_FIELDS, "actor.")?;
    }
    if let Some(target) = value.get("target") {
        check_fields(target, TARGET_FIELDS, "target.")?;
    }
    let event: AuditEvent = serde_json::from_value(value)
        .map_err(|e| malformed(format!("the payload is not an AuditEvent: {e}")))?;
    validate(event)
}

/// Checks an event's values (lengths, formats, no secrets).
pub fn validate(event: AuditEvent) -> Result<ValidEvent, PushError> {
    if event.id.is_nil() {
        return Err(malformed("id is the nil UUID"));
    }
    if event.org_id.as_uuid().is_nil() {
        return Err(malformed("org_id is the nil UUID"));
    }
    check_text(&event.action, "action", MAX_ACTION, false, false)?;
    if !is_action(&event.action) {
        return Err(malformed(
            "action must be <resource>.<verb> in lowercase letters, digits, '_' and '-'",
        ));
    }
    check_text(
        &event.target.kind,
        "target.type",
        MAX_TARGET_TYPE,
        false,
        false,
    )?;
    if !is_target_type(&event.target.kind) {
        return Err(malformed(
            "target.type must be lowercase letters, digits and '_'",
        ));
    }
    check_text(&event.target.id, "target.id", MAX_ID, false, false)?;
    if let Some(id) = &event.actor.id {
        check_text(id, "actor.id", MAX_ID, false, false)?;
    }
    if let Some(id) = &event.request_id {
        check_text(id, "request_id", MAX_REQUEST_ID, false, false)?;
    }
    if let Some(ua) = &event.user_agent {
        check_text(ua, "user_agent", MAX_USER_AGENT, true, true)?;
    }
    check_time(event.time)?;
    match &event.details {
        Value::Null | Value::Object(_) => {}
        _ => return Err(malformed("details must be an object or absent")),
    }
    check_details(&event.details, "details", 0)?;
    let mut canonical = String::new();
    crate::chain::canonical_json(&event.details, &mut canonical);
    if canonical.len() > MAX_DETAILS_BYTES {
        return Err(malformed("details are too large"));
    }
    Ok(ValidEvent(event))
}

#[cfg(test)]
mod tests {
    use runwarden_events::{Actor, Target};
    use runwarden_tenancy::OrgId;
    use serde_json::json;

    use super::*;

    fn event() -> AuditEvent {
        AuditEvent::new(
            OrgId::new(),
            Actor::user("u-1"),
            "member.role_change",
            Target::new("user", "u-2"),
        )
        .with_request(
            Some("req-1".into()),
            Some("10.0.0.1".parse().unwrap()),
            Some("curl/8".into()),
        )
        .with_details(json!({"from": "member", "to": "admin"}))
    }

    fn payload(patch: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut value = serde_json::to_value(event()).unwrap();
        patch(&mut value);
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn every_event_auth_writes_is_accepted() {
        for (action, details) in [
            ("org.create", json!({"plan": "trial", "owner": "u"})),
            ("org.update", json!({"fields": ["name"]})),
            (
                "member.role_change",
                json!({"from": "member", "to": "admin"}),
            ),
            ("member.remove", json!({"role": "viewer"})),
            (
                "invitation.create",
                json!({"email": "a@b.c", "role": "admin"}),
            ),
            ("member.add", json!({"role": "admin", "invitation": "i"})),
        ] {
            let e = AuditEvent::new(
                OrgId::new(),
                Actor::user("u"),
                action,
                Target::new("org", "o"),
            )
            .with_details(details);
            assert!(parse(&serde_json::to_vec(&e).unwrap()).is_ok(), "{action}");
        }
        let no_details = AuditEvent::new(
            OrgId::new(),
            Actor::system(),
            "org.purge",
            Target::new("org", "o"),
        );
        assert!(parse(&serde_json::to_vec(&no_details).unwrap()).is_ok());
    }

    #[test]
    fn unknown_fields_are_refused_everywhere() {
        for patch in [
            (|v: &mut Value| v["password"] = json!("hunter2")) as fn(&mut Value),
            |v| v["actor"]["token"] = json!("x"),
            |v| v["target"]["secret"] = json!("x"),
            |v| v["extra"] = json!(null),
        ] {
            assert!(matches!(
                parse(&payload(patch)),
                Err(PushError::Malformed(_))
            ));
        }
    }

    #[test]
    fn secret_looking_details_are_refused() {
        for details in [
            json!({"password": "hunter2"}),
            json!({"new_password": "x"}),
            json!({"clientSecret": "x"}),
            json!({"refresh_token": "x"}),
            json!({"api-key": "x"}),
            json!({"Authorization": "x"}),
            json!({"session_cookie": "x"}),
            json!({"token_hash": "ab"}),
            json!({"nested": {"deeper": [{"private_key": "x"}]}}),
            json!({"value": "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.sig"}),
            json!({"header": "Bearer abc.def"}),
            json!({"pem": "-----BEGIN PRIVATE KEY-----\nMII"}),
            json!({"list": ["ok", "-----BEGIN RSA PRIVATE KEY-----"]}),
        ] {
            let p = payload(|v| v["details"] = details.clone());
            assert!(
                matches!(parse(&p), Err(PushError::Malformed(_))),
                "{details}"
            );
        }
        // Names that merely mention a secret's name are fine.
        for details in [
            json!({"secret_name": "DB_PASSWORD"}),
            json!({"tokens_revoked": 3}),
        ] {
            assert!(
                parse(&payload(|v| v["details"] = details.clone())).is_ok(),
                "{details}"
            );
        }
    }

    #[test]
    fn values_are_checked() {
        let cases: Vec<fn(&mut Value)> = vec![
            |v| v["action"] = json!(""),
            |v| v["action"] = json!("noverb"),
            |v| v["action"] = json!("Member.Remove"),
            |v| v["action"] = json!("member..remove"),
            |v| v["action"] = json!("x".repeat(101) + ".y"),
            |v| v["target"]["type"] = json!("User"),
            |v| v["target"]["id"] = json!(""),
            |v| v["target"]["id"] = json!("a\u{0}b"),
            |v| v["actor"]["id"] = json!("a\nb"),
            |v| v["actor"]["kind"] = json!("admin"),
            |v| v["outcome"] = json!("maybe"),
            |v| v["ip"] = json!("not-an-ip"),
            |v| v["time"] = json!("yesterday"),
            |v| v["time"] = json!("+10000-01-01T00:00:00Z"),
            |v| v["id"] = json!("00000000-0000-0000-0000-000000000000"),
            |v| v["details"] = json!([1, 2]),
            |v| v["details"] = json!("text"),
            |v| {
                v["details"] =
                    json!({"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}})
            },
            |v| v["details"] = json!({"big": "x".repeat(17 * 1024)}),
            |v| v["user_agent"] = json!("a\u{0}"),
            |v| {
                v.as_object_mut().unwrap().remove("org_id");
            },
        ];
        for (i, patch) in cases.into_iter().enumerate() {
            assert!(
                matches!(parse(&payload(patch)), Err(PushError::Malformed(_))),
                "case {i}"
            );
        }
        assert!(matches!(parse(b"not json"), Err(PushError::Malformed(_))));
        assert!(matches!(parse(b"[]"), Err(PushError::Malformed(_))));
    }
}
