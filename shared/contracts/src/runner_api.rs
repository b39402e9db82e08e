//! The runner API: what the runner job (`functions/runner`, one execution per run) sends to
//! and receives from runs under `/internal/runner/`. Every call carries `X-Internal-Auth`;
//! the exchange trades the run's single-use *dispatch ticket* for a *runner token*, which
//! every later call presents as `Authorization: Bearer`.
//!
//! Credentials in these bodies (ticket, runner token, secret values, signed upload URLs)
//! are [`SecretString`]s: redacted by `Debug`, and serialized as plain strings only because
//! carrying them is the point of the call.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;

use crate::{RunId, SecretName};

/// `POST`, [`ExchangeRequest`] → [`ExchangeResponse`].
pub const EXCHANGE_PATH: &str = "/internal/runner/exchange";

/// The path of a call about one run: `rest` is `secrets` (`GET` → [`SecretsResponse`]),
/// `events` (`POST` [`EventsRequest`] → 204), `artifacts` (`POST` [`ArtifactRequest`] →
/// [`UploadTarget`]) or `complete` (`POST` [`CompleteRequest`] → the run).
pub fn run_path(run: RunId, rest: &str) -> String {
    format!("/internal/runner/runs/{run}/{rest}")
}

/// Most events in one [`EventsRequest`].
pub const MAX_EVENTS_PER_CALL: usize = 500;
/// The longest event message kept; runs cuts longer ones, the runner does not send them.
pub const MAX_MESSAGE_BYTES: usize = 4096;

fn expose<S: Serializer>(secret: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose_secret())
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRequest {
    pub run_id: RunId,
    /// The dispatch ticket the runner job was started with; single use.
    #[serde(serialize_with = "expose")]
    pub ticket: SecretString,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct ExchangeResponse {
    /// The bearer credential of every later call, good while the run is live.
    #[serde(serialize_with = "expose")]
    pub runner_token: SecretString,
    /// The agent to start, by name.
    pub agent: String,
    /// The run's input, a JSON object.
    #[serde(default)]
    pub input: Value,
    /// The seconds quotas granted; the runner stops the agent after them.
    pub cap_secs: i64,
}

/// What a secret is for; the runner treats each kind its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretKind {
    /// A client id/secret pair or similar credential of the customer's app.
    ClientCredential,
    /// A value exposed to the agent as an environment variable.
    SecretVariable,
    /// An auth profile: a cookie jar that signs the agent into the customer's app.
    AuthCookie,
    /// An API key.
    ApiKey,
}

impl SecretKind {
    pub const ALL: [Self; 4] = [
        Self::ClientCredential,
        Self::SecretVariable,
        Self::AuthCookie,
        Self::ApiKey,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientCredential => "client_credential",
            Self::SecretVariable => "secret_variable",
            Self::AuthCookie => "auth_cookie",
            Self::ApiKey => "api_key",
        }
    }

    /// The kind `raw` names, if any.
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw)
    }
}

// Stored as text (with a CHECK constraint), like `Role`.
#[cfg(feature = "sqlx")]
impl sqlx::Type<sqlx::Postgres> for SecretKind {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        <&str as sqlx::Type<sqlx::Postgres>>::type_info()
    }
    fn compatible(ty: &sqlx::postgres::PgTypeInfo) -> bool {
        <&str as sqlx::Type<sqlx::Postgres>>::compatible(ty)
    }
}

#[cfg(feature = "sqlx")]
impl sqlx::Encode<'_, sqlx::Postgres> for SecretKind {
    fn encode_by_ref(
        &self,
        buf: &mut sqlx::postgres::PgArgumentBuffer,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.as_str(), buf)
    }
}

#[cfg(feature = "sqlx")]
impl<'r> sqlx::Decode<'r, sqlx::Postgres> for SecretKind {
    fn decode(value: sqlx::postgres::PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
        Self::parse(text).ok_or_else(|| "unknown secret kind stored".into())
    }
}

/// One secret as the runner receives it: the only body that carries a plaintext, and only
/// to the live runner of a run of that project.
#[derive(Debug, Deserialize, Serialize)]
pub struct RunnerSecret {
    pub name: SecretName,
    pub kind: SecretKind,
    #[serde(serialize_with = "expose")]
    pub value: SecretString,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct SecretsResponse {
    pub secrets: Vec<RunnerSecret>,
}

/// One entry of a run's event stream, as the runner reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RunnerEvent {
    /// A line the agent printed (redacted by the runner).
    Log { stream: Stream, message: String },
    /// A change of the run's state as the runner sees it (`started`, `succeeded`, ...).
    Status { message: String },
    /// A `progress: N%` line, 0 to 100.
    Progress {
        percent: u8,
        #[serde(default)]
        message: String,
    },
}

impl RunnerEvent {
    pub fn status(message: impl Into<String>) -> Self {
        Self::Status {
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsRequest {
    /// At most [`MAX_EVENTS_PER_CALL`].
    pub events: Vec<RunnerEvent>,
}

/// How a run ended, as the runner reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    TimedOut,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    /// The seconds the agent ran.
    pub actual_secs: i64,
}

/// Registers one artifact before its upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactRequest {
    pub name: String,
    pub content_type: String,
    /// Bytes.
    pub size: u64,
}

/// Where and how to send one artifact's bytes. The URL is signed: a credential.
#[derive(Debug, Deserialize, Serialize)]
pub struct UploadTarget {
    #[serde(serialize_with = "expose")]
    pub upload_url: SecretString,
    #[serde(default = "put")]
    pub method: String,
    /// Headers the upload must send (signed into the URL).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn put() -> String {
    "PUT".into()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const RUN: &str = "0191e5f2-7b3c-7a00-8000-000000000001";

    fn wire<T: Serialize>(value: &T) -> Value {
        serde_json::to_value(value).unwrap()
    }

    fn parse<T: serde::de::DeserializeOwned>(json: Value) -> T {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn exchange_json_is_pinned() {
        let request = json!({"run_id": RUN, "ticket": "t1"});
        assert_eq!(wire(&parse::<ExchangeRequest>(request.clone())), request);
        let response = json!({"runner_token": "rt", "agent": "demo", "input": {"a": 1},
                              "cap_secs": 60});
        let parsed: ExchangeResponse = parse(response.clone());
        assert_eq!(parsed.runner_token.expose_secret(), "rt");
        assert_eq!(wire(&parsed), response);
        let no_input: ExchangeResponse =
            parse(json!({"runner_token": "rt", "agent": "demo", "cap_secs": 1}));
        assert_eq!(no_input.input, Value::Null);
    }

    #[test]
    fn credentials_are_redacted_in_debug() {
        let request: ExchangeRequest = parse(json!({"run_id": RUN, "ticket": "hunter2"}));
        let secrets: SecretsResponse = parse(json!({"secrets": [
            {"name": "API_KEY", "kind": "api_key", "value": "hunter3"}]}));
        let target: UploadTarget = parse(json!({"upload_url": "https://x/?sig=hunter4"}));
        let debug = format!("{request:?} {secrets:?} {target:?}");
        assert!(!debug.contains("hunter"), "{debug}");
    }

    #[test]
    fn secrets_json_is_pinned() {
        let body = json!({"secrets": [
            {"name": "API_KEY", "kind": "api_key", "value": "v"},
            {"name": "SESSION", "kind": "auth_cookie", "value": "c"}]});
        assert_eq!(wire(&parse::<SecretsResponse>(body.clone())), body);
        for kind in SecretKind::ALL {
            assert_eq!(wire(&kind), json!(kind.as_str()));
            assert_eq!(SecretKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(SecretKind::parse("password"), None);
    }

    #[test]
    fn events_json_is_pinned() {
        let body = json!({"events": [
            {"kind": "log", "stream": "stdout", "message": "hi"},
            {"kind": "log", "stream": "stderr", "message": "oops"},
            {"kind": "status", "message": "started"},
            {"kind": "progress", "percent": 42, "message": "progress: 42%"}]});
        let parsed: EventsRequest = parse(body.clone());
        assert_eq!(parsed.events[2], RunnerEvent::status("started"));
        assert_eq!(wire(&parsed), body);
        let bare: RunnerEvent = parse(json!({"kind": "progress", "percent": 5}));
        assert_eq!(
            bare,
            RunnerEvent::Progress {
                percent: 5,
                message: String::new()
            }
        );
        let unknown = json!({"kind": "status", "message": "x", "extra": 1});
        assert!(serde_json::from_value::<RunnerEvent>(unknown).is_err());
        assert_eq!(Stream::Stderr.as_str(), "stderr");
    }

    #[test]
    fn completion_json_is_pinned() {
        let body = json!({"outcome": "timed_out", "exit_code": null, "actual_secs": 2});
        let parsed: CompleteRequest = parse(body.clone());
        assert_eq!(parsed.outcome, Outcome::TimedOut);
        assert_eq!(wire(&parsed), body);
        for outcome in [Outcome::Succeeded, Outcome::Failed, Outcome::TimedOut] {
            assert_eq!(wire(&outcome), json!(outcome.as_str()));
        }
    }

    #[test]
    fn artifacts_json_is_pinned() {
        let request = json!({"name": "video.mp4", "content_type": "video/mp4", "size": 10});
        assert_eq!(wire(&parse::<ArtifactRequest>(request.clone())), request);
        let target = json!({"upload_url": "https://x/u", "method": "PUT",
                            "headers": {"content-type": "video/mp4"}});
        assert_eq!(wire(&parse::<UploadTarget>(target.clone())), target);
        let bare: UploadTarget = parse(json!({"upload_url": "https://x/u"}));
        assert_eq!((bare.method.as_str(), bare.headers.len()), ("PUT", 0));
    }

    #[test]
    fn paths() {
        let run = RunId::parse(RUN).unwrap();
        assert_eq!(
            run_path(run, "secrets"),
            format!("/internal/runner/runs/{RUN}/secrets")
        );
    }
}
