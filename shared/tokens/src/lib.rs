//! Typed JWTs. Each kind of token says what it is (`typ` header) and for whom (`aud`
//! claim), and a verifier for one kind rejects every other kind (RFC 8725 §3.11-3.12).
//!
//! Only auth holds the Ed25519 signing keys ([`TokenSigner`], [`SigningKeys`]); every other
//! function holds a [`TokenVerifier`] built from auth's published JWKS. Verification pins the
//! algorithm to EdDSA, looks `kid` up in an in-memory map, requires `exp`, `iat`, `iss`, `aud`
//! and `sub`, checks `nbf` and refuses an `iat` in the future.
//!
//! # Key rotation
//! auth publishes its current key, an optional next key (published ahead, not signing yet)
//! and optional previous keys (published, not signing, until the tokens they signed have
//! expired): [`SigningKeys`]. A verifier fetched from the JWKS ([`fetch_verifier`]) keeps the
//! URL: a known `kid` is a synchronous map lookup ([`TokenVerifier::verify`]); an unknown one,
//! through [`TokenVerifier::verify_or_refetch`], refetches the JWKS at most once per
//! [`JwksRefresh::min_refetch_interval`] with one fetch in flight at a time, then verifies
//! once more. Keys older than [`JwksRefresh::max_age`] are refreshed in the background. A key
//! no longer in the JWKS is dropped at the next fetch: that is its retirement.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

pub mod keys;
pub mod oidc;
pub mod opaque;

pub use keys::SigningKeys;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, JwkSet, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use jsonwebtoken::jwk::Jwk;
pub use jsonwebtoken::jwk::JwkSet as Jwks;

/// The `iss` of every token auth signs.
pub const ISSUER: &str = "runwarden-auth";
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
pub const LEEWAY: Duration = Duration::from_secs(30);

/// A kind of token: its `typ` header, its audience, and how long it lives.
pub trait TokenKind: Serialize + DeserializeOwned {
    const TYP: &'static str;
    const AUDIENCE: &'static str;
    const LIFETIME: Duration;
}

/// The login JWT sent as `Authorization: Bearer`. It names its session (`sid`), which is
/// checked on every request, so logout and revocation take effect immediately.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub sid: String,
}

impl TokenKind for AccessClaims {
    const TYP: &'static str = "at+jwt";
    const AUDIENCE: &'static str = "runwarden-api";
    const LIFETIME: Duration = Duration::from_secs(3600);
}

impl AccessClaims {
    pub fn new(user_id: impl ToString, session_id: impl ToString, now: i64) -> Self {
        Self {
            iss: ISSUER.into(),
            sub: user_id.to_string(),
            aud: Self::AUDIENCE.into(),
            exp: now + Self::LIFETIME.as_secs() as i64,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            sid: session_id.to_string(),
        }
    }
}

/// A 5-minute token for media and SSE URLs, bound to one run and one scope. It names the
/// session of the access token that minted it (`sid`): every use checks that session is
/// still live, so logout or a session revocation ends the media token too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub sid: String,
    pub org: String,
    pub run: String,
    pub scope: String,
}

impl TokenKind for MediaClaims {
    const TYP: &'static str = "media+jwt";
    const AUDIENCE: &'static str = "runwarden-media";
    const LIFETIME: Duration = Duration::from_secs(300);
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token algorithm is not accepted")]
    Algorithm,
    #[error("token type is not accepted here")]
    WrongType,
    #[error("token carries key material or references in its header")]
    HeaderKeys,
    #[error("token key id is unknown")]
    UnknownKey,
    #[error("token is expired")]
    Expired,
    #[error("token is invalid")]
    Invalid,
    #[error("signing key is invalid: {0}")]
    BadKey(String),
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The private half: auth only.
pub struct TokenSigner {
    kid: String,
    key: EncodingKey,
    public: [u8; 32],
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// From a PKCS#8 PEM Ed25519 private key (`openssl genpkey -algorithm ed25519`).
    pub fn from_pem(kid: &str, pem: &str) -> Result<Self, TokenError> {
        let der =
            pem_to_der(pem).ok_or_else(|| TokenError::BadKey("not a PEM private key".into()))?;
        Self::from_pkcs8_der(kid, &der)
    }

    pub fn from_pkcs8_der(kid: &str, der: &[u8]) -> Result<Self, TokenError> {
        use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
        if kid.is_empty() || kid.len() > 64 {
            return Err(TokenError::BadKey(
                "key id must be 1 to 64 characters".into(),
            ));
        }
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|_| TokenError::BadKey("not an Ed25519 PKCS#8 key".into()))?;
        let public: [u8; 32] = pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| TokenError::BadKey("unexpected public key length".into()))?;
        Ok(Self {
            kid: kid.into(),
            key: EncodingKey::from_ed_der(der),
            public,
        })
    }

    /// A fresh random key, for development and tests only.
    pub fn generate(kid: &str) -> Self {
        use aws_lc_rs::signature::Ed25519KeyPair;
        let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .expect("the system random generator works");
        Self::from_pkcs8_der(kid, doc.as_ref()).expect("a generated key is valid")
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn sign<K: TokenKind>(&self, claims: &K) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(K::TYP.into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|_| TokenError::Invalid)
    }

    pub fn jwk(&self) -> Jwk {
        Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(KeyAlgorithm::EdDSA),
                key_id: Some(self.kid.clone()),
                ..Default::default()
            },
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x: URL_SAFE_NO_PAD.encode(self.public),
            }),
        }
    }

    /// The JWKS auth publishes at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.jwk()],
        }
    }

    /// A verifier that trusts exactly this signer's public key.
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier::from_jwks(&self.jwks()).expect("own JWK is valid")
    }
}

fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("-----BEGIN PRIVATE KEY-----"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    if body.is_empty() {
        return None;
    }
    STANDARD.decode(body).ok()
}

/// How a verifier fetched from a JWKS URL keeps its keys current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwksRefresh {
    /// An unknown `kid` refetches the JWKS at most once per this interval (default 30 s), so
    /// a flood of forged `kid`s cannot turn into a flood of fetches.
    pub min_refetch_interval: Duration,
    /// Keys fetched longer ago than this are refreshed in the background by the next
    /// request (default 5 minutes): a next key is learnt, a retired key dropped.
    pub max_age: Duration,
}

impl Default for JwksRefresh {
    fn default() -> Self {
        Self {
            min_refetch_interval: Duration::from_secs(30),
            max_age: Duration::from_secs(300),
        }
    }
}

/// The longest `kid` auth gives a key ([`TokenSigner`] refuses longer ones): a longer one
/// is unknown without a fetch.
const MAX_KID_LEN: usize = 64;
const MAX_JWKS_BYTES: usize = 64 * 1024;

type KeyMap = HashMap<String, Arc<DecodingKey>>;

/// The public half: every function that accepts tokens. Cheap to clone; clones share the
/// key map (and, when fetched from a URL, the refetch state).
#[derive(Clone)]
pub struct TokenVerifier {
    inner: Arc<VerifierInner>,
}

struct VerifierInner {
    /// Read on every request (an `Arc` clone under a read lock), written only to swap in a
    /// fetched map.
    keys: RwLock<Arc<KeyMap>>,
    source: Option<JwksSource>,
}

/// Where a fetched verifier's keys come from, and when it last asked.
struct JwksSource {
    url: String,
    client: reqwest::Client,
    refresh: JwksRefresh,
    /// Held for the duration of one fetch: at most one fetch in flight.
    gate: tokio::sync::Mutex<()>,
    /// When the last fetch was attempted and when one last succeeded.
    times: Mutex<FetchTimes>,
    /// Completed fetch attempts: a waiter that sees it move knows a fetch ran meanwhile.
    attempts: AtomicU64,
    /// A background refresh is running.
    refreshing: AtomicBool,
}

#[derive(Clone, Copy)]
struct FetchTimes {
    attempted_at: Instant,
    fetched_at: Instant,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys = self.keys();
        let mut kids: Vec<&String> = keys.keys().collect();
        kids.sort();
        f.debug_struct("TokenVerifier")
            .field("kids", &kids)
            .field("jwks_url", &self.inner.source.as_ref().map(|s| &s.url))
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TokenVerifier {
    /// A verifier of exactly the keys in `jwks`, never refetched. Accepts only EdDSA keys
    /// with a `kid`; anything else in the set is ignored.
    pub fn from_jwks(jwks: &JwkSet) -> Result<Self, TokenError> {
        Ok(Self::with_keys(parse_jwks(jwks)?, None))
    }

    fn with_keys(keys: KeyMap, source: Option<JwksSource>) -> Self {
        Self {
            inner: Arc::new(VerifierInner {
                keys: RwLock::new(Arc::new(keys)),
                source,
            }),
        }
    }

    /// The `kid`s this verifier trusts now, sorted.
    pub fn kids(&self) -> Vec<String> {
        let mut kids: Vec<String> = self.keys().keys().cloned().collect();
        kids.sort();
        kids
    }

    fn keys(&self) -> Arc<KeyMap> {
        self.inner
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Verifies with the keys held now: a `kid` not among them is [`TokenError::UnknownKey`]
    /// (no fetch, no await). Functions that accept auth's tokens call
    /// [`Self::verify_or_refetch`], which also learns keys published since.
    pub fn verify<K: TokenKind>(&self, token: &str) -> Result<K, TokenError> {
        self.verify_at(token, now())
    }

    /// [`Self::verify`]; for a well-formed token whose `kid` is not known, refetches the
    /// JWKS (bounded: see [`JwksRefresh`]) and verifies once more. A known `kid` takes the
    /// synchronous path; when the keys are older than [`JwksRefresh::max_age`], a refresh
    /// starts in the background without delaying this request.
    pub async fn verify_or_refetch<K: TokenKind>(&self, token: &str) -> Result<K, TokenError> {
        let Some(source) = &self.inner.source else {
            return self.verify(token);
        };
        let kid = check_header::<K>(token)?;
        if self.keys().contains_key(kid.as_str()) {
            self.refresh_in_background_if_old(source);
            return self.verify(token);
        }
        if kid.len() > MAX_KID_LEN {
            return Err(TokenError::UnknownKey);
        }
        self.refetch_for_unknown_kid(source).await;
        self.verify(token)
    }

    /// Fetches the JWKS now, whatever the interval (start-up, tests). A verifier without a
    /// URL has nothing to fetch.
    pub async fn refresh(&self) -> Result<(), TokenError> {
        let Some(source) = &self.inner.source else {
            return Ok(());
        };
        let _gate = source.gate.lock().await;
        self.fetch_and_store(source).await
    }

    async fn refetch_for_unknown_kid(&self, source: &JwksSource) {
        let seen = source.attempts.load(Ordering::SeqCst);
        let _gate = source.gate.lock().await;
        // A fetch finished while this request waited for the gate: its keys are the answer.
        if source.attempts.load(Ordering::SeqCst) != seen {
            return;
        }
        let last = lock(&source.times).attempted_at;
        if last.elapsed() < source.refresh.min_refetch_interval {
            return;
        }
        // Failures are logged in fetch_and_store; the token is then unknown (401), and the
        // keys held keep verifying.
        let _ = self.fetch_and_store(source).await;
    }

    fn refresh_in_background_if_old(&self, source: &JwksSource) {
        let times = *lock(&source.times);
        if times.fetched_at.elapsed() < source.refresh.max_age
            || times.attempted_at.elapsed() < source.refresh.min_refetch_interval
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if source.refreshing.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = self.clone();
        runtime.spawn(async move {
            if let Some(source) = &this.inner.source {
                let _gate = source.gate.lock().await;
                let last = lock(&source.times).attempted_at;
                if last.elapsed() >= source.refresh.min_refetch_interval {
                    let _ = this.fetch_and_store(source).await;
                }
                source.refreshing.store(false, Ordering::SeqCst);
            }
        });
    }

    /// Fetches and swaps in the key set. The caller holds the gate.
    async fn fetch_and_store(&self, source: &JwksSource) -> Result<(), TokenError> {
        let fetched = fetch_keys(&source.client, &source.url).await;
        let now = Instant::now();
        {
            let mut times = lock(&source.times);
            times.attempted_at = now;
            if fetched.is_ok() {
                times.fetched_at = now;
            }
        }
        source.attempts.fetch_add(1, Ordering::SeqCst);
        match fetched {
            Ok(keys) => {
                let mut kids: Vec<&String> = keys.keys().collect();
                kids.sort();
                tracing::debug!(?kids, "auth's signing keys fetched");
                *self
                    .inner
                    .keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "auth's JWKS could not be refetched; keeping the keys held");
                Err(e)
            }
        }
    }

    fn verify_at<K: TokenKind>(&self, token: &str, now: i64) -> Result<K, TokenError> {
        let kid = check_header::<K>(token)?;
        let keys = self.keys();
        let key = keys.get(kid.as_str()).ok_or(TokenError::UnknownKey)?;

        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.algorithms = vec![Algorithm::EdDSA];
        validation.leeway = LEEWAY.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.set_audience(&[K::AUDIENCE]);
        validation.set_issuer(&[ISSUER]);
        let data = jsonwebtoken::decode::<serde_json::Value>(token, key, &validation).map_err(
            |e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            },
        )?;
        // jsonwebtoken never checks `iat`; a token from the future is forged or mis-clocked.
        let iat = data
            .claims
            .get("iat")
            .and_then(serde_json::Value::as_i64)
            .ok_or(TokenError::Invalid)?;
        if iat > now + LEEWAY.as_secs() as i64 {
            return Err(TokenError::Invalid);
        }
        serde_json::from_value(data.claims).map_err(|_| TokenError::Invalid)
    }
}

/// The header checks made before any key is looked up; returns the `kid`.
fn check_header<K: TokenKind>(token: &str) -> Result<String, TokenError> {
    if token.len() > 4096 {
        return Err(TokenError::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
    if header.alg != Algorithm::EdDSA {
        return Err(TokenError::Algorithm);
    }
    if header.typ.as_deref() != Some(K::TYP) {
        return Err(TokenError::WrongType);
    }
    if header.jku.is_some() || header.jwk.is_some() || header.x5u.is_some() {
        return Err(TokenError::HeaderKeys);
    }
    header
        .kid
        .filter(|k| !k.is_empty())
        .ok_or(TokenError::UnknownKey)
}

/// The Ed25519 keys of a JWKS, by `kid`; a set without one is an error.
fn parse_jwks(jwks: &JwkSet) -> Result<KeyMap, TokenError> {
    let mut keys = HashMap::new();
    for jwk in &jwks.keys {
        let (Some(kid), AlgorithmParameters::OctetKeyPair(p)) =
            (&jwk.common.key_id, &jwk.algorithm)
        else {
            continue;
        };
        if p.curve != EllipticCurve::Ed25519 {
            continue;
        }
        let key = DecodingKey::from_jwk(jwk).map_err(|e| TokenError::BadKey(e.to_string()))?;
        keys.insert(kid.clone(), Arc::new(key));
    }
    if keys.is_empty() {
        return Err(TokenError::BadKey("the JWKS holds no Ed25519 key".into()));
    }
    Ok(keys)
}

async fn fetch_keys(client: &reqwest::Client, jwks_url: &str) -> Result<KeyMap, TokenError> {
    let response = client
        .get(jwks_url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| TokenError::BadKey(format!("JWKS unreachable: {}", e.without_url())))?;
    if response
        .content_length()
        .is_some_and(|n| n > MAX_JWKS_BYTES as u64)
    {
        return Err(TokenError::BadKey("JWKS is too large".into()));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| TokenError::BadKey(format!("JWKS unreadable: {}", e.without_url())))?;
    if body.len() > MAX_JWKS_BYTES {
        return Err(TokenError::BadKey("JWKS is too large".into()));
    }
    let jwks: JwkSet = serde_json::from_slice(&body)
        .map_err(|_| TokenError::BadKey("JWKS is not a JSON key set".into()))?;
    parse_jwks(&jwks)
}

#[cfg(test)]
mod refetch_tests;
#[cfg(test)]
mod tests;

/// Builds a verifier from auth's published JWKS (`{AUTH_URL}/.well-known/jwks.json`): how
/// every function other than auth learns the public keys. The verifier keeps the URL and
/// refetches as [`JwksRefresh::default`] says.
pub async fn fetch_verifier(
    client: &reqwest::Client,
    jwks_url: &str,
) -> Result<TokenVerifier, TokenError> {
    fetch_verifier_with(client, jwks_url, JwksRefresh::default()).await
}

/// [`fetch_verifier`] with its refresh settings.
pub async fn fetch_verifier_with(
    client: &reqwest::Client,
    jwks_url: &str,
    refresh: JwksRefresh,
) -> Result<TokenVerifier, TokenError> {
    let keys = fetch_keys(client, jwks_url).await?;
    let now = Instant::now();
    Ok(TokenVerifier::with_keys(
        keys,
        Some(JwksSource {
            url: jwks_url.to_owned(),
            client: client.clone(),
            refresh,
            gate: tokio::sync::Mutex::new(()),
            times: Mutex::new(FetchTimes {
                attempted_at: now,
                fetched_at: now,
            }),
            attempts: AtomicU64::new(1),
            refreshing: AtomicBool::new(false),
        }),
    ))
}

/// [`fetch_verifier_with`], retrying with backoff (250 ms doubling to 5 s) while auth is
/// still starting: how a function that reads access tokens gets auth's keys at start-up.
pub async fn fetch_verifier_retrying(
    jwks_url: &str,
    refresh: JwksRefresh,
    attempts: u32,
) -> Result<TokenVerifier, TokenError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|_| TokenError::BadKey("cannot build an HTTP client".into()))?;
    let mut delay = Duration::from_millis(250);
    let mut attempt = 1;
    loop {
        match fetch_verifier_with(&client, jwks_url, refresh).await {
            Ok(verifier) => return Ok(verifier),
            Err(e) if attempt >= attempts => return Err(e),
            Err(e) => {
                tracing::warn!(attempt, error = %e, "auth's JWKS not available yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
        }
    }
}
