//! Verifying Google-signed OpenID Connect ID tokens (Pub/Sub push tokens, Google sign-in).
//!
//! RS256 only (the header's `alg` is pinned, `jku`/`jwk`/`x5u`/`x5c`/`crit` are refused),
//! `kid` required and looked up in a JWKS fetched from a configured URL. `exp`, `iat`, `iss`,
//! `aud` and `sub` are required, `nbf` is checked, 30 s of clock skew are tolerated, `aud`
//! must be one string among the accepted audiences, and when an email is configured the
//! token's `email` must equal it and `email_verified` must be `true`.
//!
//! # The key cache
//! Keys are cached for [`KEYS_TTL`] (1 h). A `kid` not in the cache refetches the JWKS at
//! most once per [`REFETCH_INTERVAL`] (60 s), so a stream of forged `kid`s cannot turn into
//! a stream of fetches. The cache is a `tokio::sync::RwLock` whose write lock is held only to
//! swap in a fetched key map, never across the network fetch: fetches are serialized by a
//! separate mutex (one fetch at a time; waiters re-read the cache when it is their turn, and
//! a request holding an expired but recent key uses it instead of waiting).
//! Readers therefore only ever wait, for microseconds, and never fail because a refresh is
//! running (google-cloud-auth's verifier fails them: see docs/architecture.md §8).
//! When a fetch fails, keys already known keep working for up to [`MAX_STALE`], and the next
//! attempt waits [`FAILURE_BACKOFF`]; a token whose key is not known then is
//! [`OidcError::KeysUnavailable`], a transient error (a push answers 503 so Pub/Sub retries).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{Mutex, RwLock};

/// Google's ID-token signing keys (RS256).
pub const GOOGLE_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
/// Both spellings Google documents for its ID tokens' `iss`.
pub const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];
/// How long fetched keys are trusted before they are fetched again.
pub const KEYS_TTL: Duration = Duration::from_secs(3600);
/// An unknown `kid` refetches the JWKS at most once per this interval.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// After a failed fetch, the next one waits this long.
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(5);
/// Known keys keep verifying this long past their TTL while the JWKS cannot be fetched.
pub const MAX_STALE: Duration = Duration::from_secs(24 * 3600);
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY: Duration = crate::LEEWAY;

/// Longest token accepted (Google's ID tokens are about 1 KiB).
const MAX_TOKEN_BYTES: usize = 8 * 1024;
const MAX_KID_BYTES: usize = 256;
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// The verified claims of a token, as sent.
pub type Claims = serde_json::Map<String, Value>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    #[error("token is malformed")]
    Malformed,
    #[error("token algorithm is not RS256")]
    Algorithm,
    #[error("token carries key material, key references or critical extensions in its header")]
    HeaderKeys,
    #[error("token key id is missing or unknown")]
    UnknownKey,
    #[error("token signature is invalid")]
    Signature,
    #[error("token is expired")]
    Expired,
    #[error("token issuer is not accepted")]
    Issuer,
    #[error("token audience is not accepted")]
    Audience,
    #[error("token email is not the expected, verified email")]
    Email,
    #[error("token claims are invalid")]
    Invalid,
    /// The signing keys could not be fetched: retry later.
    #[error("signing keys are unavailable")]
    KeysUnavailable,
    #[error("verifier configuration is invalid: {0}")]
    Config(&'static str),
}

impl OidcError {
    /// Whether retrying later may succeed (the caller answers 503, not 401).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::KeysUnavailable)
    }
}

/// What a verifier accepts.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    pub jwks_url: String,
    /// Accepted `iss` values (at least one).
    pub issuers: Vec<String>,
    /// Accepted `aud` values (at least one).
    pub audiences: Vec<String>,
    /// When set, `email` must equal this and `email_verified` must be `true`.
    pub email: Option<String>,
    pub keys_ttl: Duration,
    pub refetch_interval: Duration,
}

impl OidcConfig {
    /// Google-signed tokens for `audience`, from `jwks_url` (normally [`GOOGLE_JWKS_URL`]).
    pub fn google(jwks_url: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            jwks_url: jwks_url.into(),
            issuers: GOOGLE_ISSUERS.iter().map(|s| (*s).to_owned()).collect(),
            audiences: vec![audience.into()],
            email: None,
            keys_ttl: KEYS_TTL,
            refetch_interval: REFETCH_INTERVAL,
        }
    }

    pub fn with_email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }
}

/// Verifies ID tokens. Cheap to clone; clones share one key cache.
#[derive(Clone)]
pub struct OidcVerifier {
    inner: Arc<Inner>,
}

struct Inner {
    config: OidcConfig,
    http: reqwest::Client,
    cache: RwLock<KeyCache>,
    /// Held for the duration of one JWKS fetch: at most one fetch at a time.
    fetch_gate: Mutex<()>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, Arc<DecodingKey>>,
    /// Last successful fetch.
    fetched_at: Option<Instant>,
    /// Last fetch attempt, successful or not.
    attempted_at: Option<Instant>,
    last_failed: bool,
}

/// What the cache says about one `kid`.
enum Lookup {
    Hit(Arc<DecodingKey>),
    /// Fetch now; use `stale` if the fetch fails.
    Fetch {
        stale: Option<Arc<DecodingKey>>,
    },
    Unknown,
    Unavailable,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.inner.config;
        f.debug_struct("OidcVerifier")
            .field("jwks_url", &c.jwks_url)
            .field("issuers", &c.issuers)
            .field("audiences", &c.audiences)
            .field("email", &c.email)
            .finish_non_exhaustive()
    }
}

impl OidcVerifier {
    pub fn new(config: OidcConfig) -> Result<Self, OidcError> {
        if config.issuers.is_empty() || config.issuers.iter().any(|i| i.is_empty()) {
            return Err(OidcError::Config(
                "at least one non-empty issuer is required",
            ));
        }
        if config.audiences.is_empty() || config.audiences.iter().any(|a| a.is_empty()) {
            return Err(OidcError::Config(
                "at least one non-empty audience is required",
            ));
        }
        if config.email.as_deref().is_some_and(str::is_empty) {
            return Err(OidcError::Config("the required email is empty"));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| OidcError::Config("the HTTP client cannot be built"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                http,
                cache: RwLock::new(KeyCache::default()),
                fetch_gate: Mutex::new(()),
            }),
        })
    }

    pub fn config(&self) -> &OidcConfig {
        &self.inner.config
    }

    /// Fetches the keys now (e.g. at start-up, so the first request does not wait).
    pub async fn refresh(&self) -> Result<(), OidcError> {
        let _gate = self.inner.fetch_gate.lock().await;
        self.fetch_and_store(None).await.map(|_| ())
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, OidcError> {
        self.verify_at(token, unix_now()).await
    }

    /// Verifies `token` and deserializes its claims into `T`.
    pub async fn verify_as<T: DeserializeOwned>(&self, token: &str) -> Result<T, OidcError> {
        let claims = self.verify(token).await?;
        serde_json::from_value(Value::Object(claims)).map_err(|_| OidcError::Invalid)
    }

    async fn verify_at(&self, token: &str, now: i64) -> Result<Claims, OidcError> {
        if token.is_empty() || token.len() > MAX_TOKEN_BYTES {
            return Err(OidcError::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| OidcError::Malformed)?;
        if header.alg != Algorithm::RS256 {
            return Err(OidcError::Algorithm);
        }
        if header.jku.is_some()
            || header.jwk.is_some()
            || header.x5u.is_some()
            || header.x5c.is_some()
            || header.crit.is_some()
        {
            return Err(OidcError::HeaderKeys);
        }
        let kid = header
            .kid
            .as_deref()
            .filter(|k| !k.is_empty() && k.len() <= MAX_KID_BYTES)
            .ok_or(OidcError::UnknownKey)?;
        let key = self.key(kid).await?;

        let config = &self.inner.config;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = vec![Algorithm::RS256];
        validation.leeway = LEEWAY.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.set_audience(&config.audiences);
        validation.set_issuer(&config.issuers);
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => OidcError::Expired,
                    ErrorKind::InvalidSignature => OidcError::Signature,
                    ErrorKind::InvalidIssuer => OidcError::Issuer,
                    ErrorKind::InvalidAudience => OidcError::Audience,
                    ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Json(_) => {
                        OidcError::Malformed
                    }
                    _ => OidcError::Invalid,
                }
            })?
            .claims;
        check_claims(&claims, config, now)?;
        Ok(claims)
    }

    async fn key(&self, kid: &str) -> Result<Arc<DecodingKey>, OidcError> {
        let stale = match self.lookup(kid).await {
            Lookup::Fetch { stale } => stale,
            settled => return settled.into_result(),
        };
        // One fetch at a time. While one runs, a key we already hold (expired, but within
        // MAX_STALE) is used without waiting; otherwise wait for the fetch and re-read the
        // cache: the fetch that held the gate has usually brought the key.
        let _gate = match (self.inner.fetch_gate.try_lock(), stale) {
            (Ok(gate), _) => gate,
            (Err(_), Some(key)) => return Ok(key),
            (Err(_), None) => self.inner.fetch_gate.lock().await,
        };
        let stale = match self.lookup(kid).await {
            Lookup::Fetch { stale } => stale,
            settled => return settled.into_result(),
        };
        match self.fetch_and_store(Some(kid)).await {
            Ok(found) => found.ok_or(OidcError::UnknownKey),
            Err(e) => stale.ok_or(e),
        }
    }

    async fn lookup(&self, kid: &str) -> Lookup {
        let cache = self.inner.cache.read().await;
        let config = &self.inner.config;
        let now = Instant::now();
        let age = cache.fetched_at.map(|t| now.duration_since(t));
        let fresh = age.is_some_and(|a| a < config.keys_ttl);
        let known = cache.keys.get(kid).cloned();
        if fresh && let Some(key) = &known {
            return Lookup::Hit(key.clone());
        }
        let stale = known.filter(|_| age.is_some_and(|a| a < config.keys_ttl + MAX_STALE));
        let min_gap = if cache.last_failed {
            FAILURE_BACKOFF
        } else if fresh {
            config.refetch_interval
        } else {
            Duration::ZERO
        };
        let may_fetch = cache
            .attempted_at
            .is_none_or(|t| now.duration_since(t) >= min_gap);
        match (may_fetch, stale) {
            (true, stale) => Lookup::Fetch { stale },
            (false, Some(key)) => Lookup::Hit(key),
            (false, None) if cache.last_failed => Lookup::Unavailable,
            (false, None) => Lookup::Unknown,
        }
    }

    /// Fetches the JWKS, swaps it into the cache and returns the key for `kid`, if any. The
    /// caller holds the fetch gate; the cache's write lock is taken only for the swap.
    async fn fetch_and_store(
        &self,
        kid: Option<&str>,
    ) -> Result<Option<Arc<DecodingKey>>, OidcError> {
        let fetched = self.fetch().await;
        let mut cache = self.inner.cache.write().await;
        let now = Instant::now();
        cache.attempted_at = Some(now);
        match fetched {
            Ok(keys) => {
                let found = kid.and_then(|k| keys.get(k).cloned());
                cache.keys = keys;
                cache.fetched_at = Some(now);
                cache.last_failed = false;
                Ok(found)
            }
            Err(reason) => {
                cache.last_failed = true;
                drop(cache);
                tracing::warn!(
                    jwks_url = %self.inner.config.jwks_url,
                    reason,
                    "OIDC signing keys could not be fetched"
                );
                Err(OidcError::KeysUnavailable)
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<DecodingKey>>, String> {
        let response = self
            .inner
            .http
            .get(&self.inner.config.jwks_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("unreachable: {}", e.without_url()))?;
        if response
            .content_length()
            .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
        {
            return Err("too large".into());
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("unreadable: {}", e.without_url()))?;
        if body.len() > MAX_JWKS_BYTES {
            return Err("too large".into());
        }
        parse_jwks(&body)
    }
}

impl Lookup {
    fn into_result(self) -> Result<Arc<DecodingKey>, OidcError> {
        match self {
            Lookup::Hit(key) => Ok(key),
            Lookup::Fetch { .. } | Lookup::Unknown => Err(OidcError::UnknownKey),
            Lookup::Unavailable => Err(OidcError::KeysUnavailable),
        }
    }
}

/// The RS256 signing keys of a JWKS, by `kid`. Keys of other types or algorithms, keys for
/// encryption and keys without a `kid` are skipped; a set with no usable key is an error.
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, Arc<DecodingKey>>, String> {
    #[derive(serde::Deserialize)]
    struct RawSet {
        keys: Vec<Value>,
    }
    let set: RawSet = serde_json::from_slice(body).map_err(|_| "not a JSON key set")?;
    let keys: HashMap<String, Arc<DecodingKey>> = set
        .keys
        .into_iter()
        .filter_map(|raw| serde_json::from_value::<Jwk>(raw).ok())
        .filter(|jwk| matches!(jwk.algorithm, AlgorithmParameters::RSA(_)))
        .filter(|jwk| {
            jwk.common
                .key_algorithm
                .is_none_or(|a| a == KeyAlgorithm::RS256)
        })
        .filter(|jwk| {
            jwk.common
                .public_key_use
                .as_ref()
                .is_none_or(|u| *u == PublicKeyUse::Signature)
        })
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone().filter(|k| !k.is_empty())?;
            Some((kid, Arc::new(DecodingKey::from_jwk(&jwk).ok()?)))
        })
        .collect();
    if keys.is_empty() {
        return Err("the key set holds no RS256 signing key".into());
    }
    Ok(keys)
}

/// The checks jsonwebtoken does not make: `iat` present and not in the future, `aud` a single
/// string, `sub` a non-empty string, and the email when one is required.
fn check_claims(claims: &Claims, config: &OidcConfig, now: i64) -> Result<(), OidcError> {
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or(OidcError::Invalid)?;
    if iat > now + LEEWAY.as_secs() as i64 {
        return Err(OidcError::Invalid);
    }
    let aud = claims
        .get("aud")
        .and_then(Value::as_str)
        .ok_or(OidcError::Audience)?;
    if !config.audiences.iter().any(|a| a == aud) {
        return Err(OidcError::Audience);
    }
    if claims
        .get("sub")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(OidcError::Invalid);
    }
    if let Some(expected) = &config.email {
        let email_ok = claims.get("email").and_then(Value::as_str) == Some(expected.as_str());
        let verified = claims.get("email_verified") == Some(&Value::Bool(true));
        if !(email_ok && verified) {
            return Err(OidcError::Email);
        }
    }
    Ok(())
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests;
