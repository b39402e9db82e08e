//! Receiving Pub/Sub push deliveries: `POST /push/{topic}` on the consuming function.
//!
//! Pub/Sub acks a delivery on any 2xx and redelivers on anything else, so the answers are:
//! - **204** only after the handler has handled the message durably (committed);
//! - **400** for a malformed envelope or payload (redelivered until the dead-letter topic);
//! - **401** for a missing or invalid credential, before the body is even read: nothing is
//!   handled;
//! - **503** (`Retry-After`) for a transient failure (database down, signing keys
//!   unreachable), so Pub/Sub retries with back-off; 500 for anything unexpected.
//!
//! Who may push ([`PushAuth`]): in production Google's OIDC token (`Authorization: Bearer`,
//! RS256 from Google's keys, for the configured audience and push service account, verified
//! with [`runwarden_tokens::oidc`]); locally the Pub/Sub emulator sends no token, so the push
//! endpoint URL carries a per-stack secret in its `token` query parameter, compared in
//! constant time. Either way an unauthenticated push is refused.
//!
//! The envelope is Pub/Sub's wrapped format ([`PushEnvelope`]). Delivery is at least once:
//! handlers must be idempotent (by event id).
//!
//! ```text
//! let app = routes.merge(push::route(topics::AUDIT_EVENTS, auth, move |delivery: Delivery| {
//!     let pool = pool.clone();
//!     async move { append(&pool, delivery.json()?).await }
//! }));
//! ```

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use runwarden_platform::config::{
    http_url, optional_secret, optional_var, required_secret, required_var,
};
use runwarden_platform::{ConfigError, Environment, Problem};
use runwarden_tokens::oidc::{GOOGLE_JWKS_URL, OidcConfig, OidcError, OidcVerifier};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

/// Largest envelope read (the platform's body limit is usually lower).
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;
/// The query parameter that carries the local shared secret.
pub const TOKEN_PARAM: &str = "token";
/// Shortest shared secret accepted.
pub const MIN_SECRET_LEN: usize = 16;

/// Who may push.
#[derive(Clone)]
pub enum PushAuth {
    /// Local stack and tests: `?token=<secret>` on the push endpoint URL.
    SharedSecret(SecretString),
    /// Production: a Google-signed OIDC token for our audience, from our push service account.
    GoogleOidc { verifier: OidcVerifier },
}

impl std::fmt::Debug for PushAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SharedSecret(_) => f.write_str("PushAuth::SharedSecret(..)"),
            Self::GoogleOidc { verifier } => f
                .debug_struct("PushAuth::GoogleOidc")
                .field("verifier", verifier)
                .finish(),
        }
    }
}

/// Why a push was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credential, or a wrong one: 401.
    Rejected(&'static str),
    /// The credential could not be checked now (signing keys unreachable): 503.
    Unavailable,
}

impl PushAuth {
    /// The shared-secret mode; the secret must be at least [`MIN_SECRET_LEN`] characters.
    pub fn shared_secret(secret: SecretString) -> Result<Self, &'static str> {
        if secret.expose_secret().len() < MIN_SECRET_LEN {
            return Err("the push secret must be at least 16 characters");
        }
        Ok(Self::SharedSecret(secret))
    }

    /// Google's OIDC mode: tokens signed by Google's keys at `jwks_url` (normally
    /// [`GOOGLE_JWKS_URL`]), with `aud == audience`, `email == service_account` and
    /// `email_verified == true`.
    pub fn google_oidc(
        jwks_url: Option<&str>,
        audience: &str,
        service_account: &str,
    ) -> Result<Self, OidcError> {
        let config = OidcConfig::google(jwks_url.unwrap_or(GOOGLE_JWKS_URL), audience)
            .with_email(service_account);
        Ok(Self::GoogleOidc {
            verifier: OidcVerifier::new(config)?,
        })
    }

    /// Decides whether a push with these headers and this query string is authentic.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<(), AuthFailure> {
        match self {
            Self::SharedSecret(secret) => {
                let mut presented = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
                    .filter(|(name, _)| name == TOKEN_PARAM)
                    .map(|(_, value)| value);
                let (Some(token), None) = (presented.next(), presented.next()) else {
                    return Err(AuthFailure::Rejected("missing or repeated push token"));
                };
                if bool::from(secret.expose_secret().as_bytes().ct_eq(token.as_bytes())) {
                    Ok(())
                } else {
                    Err(AuthFailure::Rejected("wrong push token"))
                }
            }
            Self::GoogleOidc { verifier } => {
                let mut values = headers.get_all(header::AUTHORIZATION).iter();
                let (Some(value), None) = (values.next(), values.next()) else {
                    return Err(AuthFailure::Rejected("missing or repeated Authorization"));
                };
                let value = value
                    .to_str()
                    .map_err(|_| AuthFailure::Rejected("unreadable Authorization"))?;
                let token = value
                    .split_once(' ')
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, token)| token.trim())
                    .ok_or(AuthFailure::Rejected("not a bearer token"))?;
                match verifier.verify(token).await {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_transient() => Err(AuthFailure::Unavailable),
                    Err(e) => Err(AuthFailure::Rejected(oidc_reason(&e))),
                }
            }
        }
    }
}

fn oidc_reason(e: &OidcError) -> &'static str {
    match e {
        OidcError::Malformed => "malformed token",
        OidcError::Algorithm => "token algorithm",
        OidcError::HeaderKeys => "token header keys",
        OidcError::UnknownKey => "unknown token key",
        OidcError::Signature => "token signature",
        OidcError::Expired => "token expired",
        OidcError::Issuer => "token issuer",
        OidcError::Audience => "token audience",
        OidcError::Email => "token email",
        OidcError::Invalid => "token claims",
        OidcError::KeysUnavailable => "signing keys unavailable",
        OidcError::Config(_) => "verifier configuration",
    }
}

/// Pub/Sub's wrapped push body. Unknown fields (the snake_case duplicates Pub/Sub also sends,
/// anything added later) are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushEnvelope {
    #[serde(default)]
    pub subscription: String,
    pub message: PubsubMessage,
    /// Sent only when the subscription has a dead-letter policy.
    #[serde(default)]
    pub delivery_attempt: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PubsubMessage {
    /// Base64 (standard alphabet); absent for attribute-only messages.
    #[serde(default)]
    pub data: Option<String>,
    #[serde(default)]
    pub attributes: Option<BTreeMap<String, String>>,
    pub message_id: String,
    #[serde(default)]
    pub publish_time: Option<String>,
    #[serde(default)]
    pub ordering_key: Option<String>,
}

impl PushEnvelope {
    /// Parses a body and decodes its data into a [`Delivery`].
    pub fn parse(body: &[u8]) -> Result<Delivery, PushError> {
        let envelope: PushEnvelope = serde_json::from_slice(body)
            .map_err(|e| PushError::malformed(format!("not a Pub/Sub push envelope: {e}")))?;
        envelope.into_delivery()
    }

    pub fn into_delivery(self) -> Result<Delivery, PushError> {
        let PushEnvelope {
            subscription,
            message,
            delivery_attempt,
        } = self;
        if message.message_id.is_empty() {
            return Err(PushError::malformed("the message has no messageId"));
        }
        let data = match message.data.as_deref() {
            None => None,
            Some(encoded) => Some(
                STANDARD
                    .decode(encoded)
                    .map_err(|_| PushError::malformed("message data is not base64"))?,
            ),
        };
        Ok(Delivery {
            subscription,
            message_id: message.message_id,
            publish_time: message.publish_time,
            attributes: message.attributes.unwrap_or_default(),
            ordering_key: message.ordering_key.filter(|k| !k.is_empty()),
            delivery_attempt: delivery_attempt.filter(|n| *n > 0),
            data,
        })
    }
}

/// One authenticated delivery, data decoded: what a handler receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub subscription: String,
    pub message_id: String,
    pub publish_time: Option<String>,
    pub attributes: BTreeMap<String, String>,
    pub ordering_key: Option<String>,
    pub delivery_attempt: Option<i32>,
    /// The decoded message data; `None` for attribute-only messages.
    pub data: Option<Vec<u8>>,
}

impl Delivery {
    /// The data as JSON of type `T`; a missing or invalid payload is [`PushError::Malformed`].
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, PushError> {
        let data = self
            .data
            .as_deref()
            .ok_or_else(|| PushError::malformed("the message has no data"))?;
        serde_json::from_slice(data)
            .map_err(|e| PushError::malformed(format!("invalid message payload: {e}")))
    }
}

/// How a handler failed, and so what Pub/Sub is told.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The envelope or payload can never be handled: 400 (ends in the dead-letter topic).
    #[error("malformed: {0}")]
    Malformed(String),
    /// Retrying later may succeed (database down): 503.
    #[error("transient: {0}")]
    Transient(String),
    /// Unexpected: 500, logged with its cause.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl PushError {
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::Malformed(detail.into())
    }

    pub fn transient(detail: impl Into<String>) -> Self {
        Self::Transient(detail.into())
    }
}

/// Connection loss, pool exhaustion, shutdown, serialization failures and deadlocks are
/// transient; everything else is internal.
impl From<sqlx::Error> for PushError {
    fn from(e: sqlx::Error) -> Self {
        let transient = match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                code.starts_with("08")
                    || code.starts_with("53")
                    || code.starts_with("57P")
                    || code == "40001"
                    || code == "40P01"
            }),
            _ => false,
        };
        if transient {
            Self::Transient(format!("database: {e}"))
        } else {
            Self::Internal(anyhow::Error::new(e).context("database"))
        }
    }
}

impl IntoResponse for PushError {
    fn into_response(self) -> Response {
        match self {
            Self::Malformed(detail) => {
                tracing::warn!(reason = %detail, "push refused: malformed");
                Problem::bad_request("invalid_push", detail).into_response()
            }
            Self::Transient(cause) => {
                tracing::warn!(cause = %cause, "push failed: transient; Pub/Sub will retry");
                Problem::unavailable().into_response()
            }
            Self::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "push failed");
                Problem::internal().into_response()
            }
        }
    }
}

/// Handles one authenticated delivery. Return `Ok` only once the effect is durable.
/// Implemented for every `Fn(Delivery) -> impl Future<Output = Result<(), PushError>>`.
pub trait PushHandler: Clone + Send + Sync + 'static {
    fn handle(&self, delivery: Delivery) -> impl Future<Output = Result<(), PushError>> + Send;
}

impl<F, Fut> PushHandler for F
where
    F: Fn(Delivery) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<(), PushError>> + Send,
{
    fn handle(&self, delivery: Delivery) -> impl Future<Output = Result<(), PushError>> + Send {
        self(delivery)
    }
}

struct Route<H> {
    topic: String,
    auth: PushAuth,
    handler: H,
}

/// The path a topic is pushed to.
pub fn path(topic: &str) -> String {
    format!("/push/{topic}")
}

/// `POST /push/{topic}` for one topic, with its own state: merge it into the function's
/// router (`routes.merge(push::route(..))`), inside the platform's layers.
pub fn route<H: PushHandler>(topic: &str, auth: PushAuth, handler: H) -> Router {
    let state = Arc::new(Route {
        topic: topic.to_owned(),
        auth,
        handler,
    });
    Router::new()
        .route(&path(topic), post(receive::<H>))
        .with_state(state)
}

async fn receive<H: PushHandler>(State(route): State<Arc<Route<H>>>, request: Request) -> Response {
    // Authenticate first: an unauthenticated push is refused before its body is read.
    let (parts, body) = request.into_parts();
    match route
        .auth
        .authenticate(&parts.headers, parts.uri.query())
        .await
    {
        Ok(()) => {}
        Err(AuthFailure::Rejected(reason)) => {
            tracing::warn!(
                security_event = "push_rejected",
                pubsub.topic = %route.topic,
                reason,
                "push refused: not authenticated"
            );
            return Problem::unauthorized().into_response();
        }
        Err(AuthFailure::Unavailable) => {
            tracing::warn!(pubsub.topic = %route.topic, "push not checked: signing keys unavailable");
            return Problem::unavailable().into_response();
        }
    }
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !is_json {
        return Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            .detail("expected Content-Type: application/json")
            .into_response();
    }
    let bytes = match axum::body::to_bytes(body, MAX_ENVELOPE_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit");
            return if too_large {
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
                    .detail("request body is too large")
                    .into_response()
            } else {
                Problem::bad_request("invalid_push", "the request body could not be read")
                    .into_response()
            };
        }
    };
    let delivery = match PushEnvelope::parse(&bytes) {
        Ok(delivery) => delivery,
        Err(e) => return e.into_response(),
    };
    let span = tracing::info_span!(
        "push",
        pubsub.topic = %route.topic,
        pubsub.message_id = %delivery.message_id,
        pubsub.delivery_attempt = delivery.delivery_attempt,
    );
    match tracing::Instrument::instrument(route.handler.handle(delivery), span).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests;

// ---- configuration, shared by every push consumer ----

/// How pushes are authenticated.
#[derive(Debug, Clone)]
pub enum PushConfig {
    /// Local stack: the secret in the push endpoint URL's `token` parameter.
    SharedSecret(SecretString),
    /// Production: Google's OIDC token for this audience from this service account.
    GoogleOidc {
        audience: String,
        service_account: String,
        jwks_url: url::Url,
    },
}

impl PushConfig {
    /// Production requires Google's OIDC (`PUSH_AUDIENCE`, `PUSH_SERVICE_ACCOUNT`) and refuses
    /// the shared secret; development uses OIDC when `PUSH_AUDIENCE` is set, else requires
    /// `PUSH_SECRET`. Either way pushes are authenticated.
    pub fn from_env(env: Environment) -> Result<Self, ConfigError> {
        let oidc = env.is_production() || optional_var("PUSH_AUDIENCE").is_some();
        if !oidc {
            let secret = required_secret("PUSH_SECRET")?;
            if secret.expose_secret().len() < MIN_SECRET_LEN {
                return Err(ConfigError::Invalid {
                    name: "PUSH_SECRET",
                    reason: "must be at least 16 characters".into(),
                });
            }
            return Ok(Self::SharedSecret(secret));
        }
        if env.is_production() && optional_secret("PUSH_SECRET").is_some() {
            return Err(ConfigError::Invalid {
                name: "PUSH_SECRET",
                reason: "not accepted in production: pushes carry Google's OIDC token".into(),
            });
        }
        let audience = required_var("PUSH_AUDIENCE")?;
        let service_account = required_var("PUSH_SERVICE_ACCOUNT")?;
        if !service_account.contains('@') {
            return Err(ConfigError::Invalid {
                name: "PUSH_SERVICE_ACCOUNT",
                reason: "expected the push service account's email".into(),
            });
        }
        let jwks_url = http_url(
            "GOOGLE_OIDC_JWKS_URL",
            &optional_var("GOOGLE_OIDC_JWKS_URL").unwrap_or_else(|| GOOGLE_JWKS_URL.into()),
        )?;
        Ok(Self::GoogleOidc {
            audience,
            service_account,
            jwks_url,
        })
    }
}

impl PushConfig {
    /// The push authentication the configuration asks for. With Google's OIDC, the keys are
    /// fetched now so the first push does not wait (a failure here is retried on demand).
    pub async fn into_auth(&self) -> anyhow::Result<PushAuth> {
        match self {
            Self::SharedSecret(secret) => PushAuth::shared_secret(secret.clone())
                .map_err(|e| anyhow::anyhow!("PUSH_SECRET: {e}")),
            Self::GoogleOidc {
                audience,
                service_account,
                jwks_url,
            } => {
                let auth =
                    PushAuth::google_oidc(Some(jwks_url.as_str()), audience, service_account)
                        .context("PUSH_AUDIENCE / PUSH_SERVICE_ACCOUNT")?;
                if let PushAuth::GoogleOidc { verifier } = &auth
                    && let Err(e) = verifier.refresh().await
                {
                    tracing::warn!(error = %e, "Google's signing keys not fetched at start");
                }
                Ok(auth)
            }
        }
    }
}
