//! Typed JWTs. Each kind of token says what it is (`typ` header) and for whom (`aud`
//! claim), and a verifier for one kind rejects every other kind (RFC 8725 §3.11-3.12).
//!
//! Only auth holds the Ed25519 signing key ([`TokenSigner`]); every other function holds a
//! [`TokenVerifier`] built from auth's published JWKS. Verification pins the algorithm to
//! EdDSA, looks `kid` up in a fixed in-memory map, requires `exp`, `iat`, `iss`, `aud` and
//! `sub`, checks `nbf` and refuses an `iat` in the future.

use std::collections::HashMap;
use std::time::Duration;

pub mod oidc;
pub mod opaque;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

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

/// The public half: every function that accepts tokens.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: HashMap<String, DecodingKey>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl TokenVerifier {
    /// Accepts only EdDSA keys with a `kid`; anything else in the set is ignored.
    pub fn from_jwks(jwks: &JwkSet) -> Result<Self, TokenError> {
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
            keys.insert(kid.clone(), key);
        }
        if keys.is_empty() {
            return Err(TokenError::BadKey("the JWKS holds no Ed25519 key".into()));
        }
        Ok(Self { keys })
    }

    pub fn verify<K: TokenKind>(&self, token: &str) -> Result<K, TokenError> {
        self.verify_at(token, now())
    }

    fn verify_at<K: TokenKind>(&self, token: &str, now: i64) -> Result<K, TokenError> {
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
        let kid = header.kid.as_deref().ok_or(TokenError::UnknownKey)?;
        let key = self.keys.get(kid).ok_or(TokenError::UnknownKey)?;

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

#[cfg(test)]
mod tests;

/// Builds a verifier from auth's published JWKS (`{AUTH_URL}/.well-known/jwks.json`): how
/// every function other than auth learns the public key, at start-up.
pub async fn fetch_verifier(
    client: &reqwest::Client,
    jwks_url: &str,
) -> Result<TokenVerifier, TokenError> {
    let jwks: JwkSet = client
        .get(jwks_url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| TokenError::BadKey(format!("JWKS unreachable: {}", e.without_url())))?
        .json()
        .await
        .map_err(|_| TokenError::BadKey("JWKS is not a JSON key set".into()))?;
    TokenVerifier::from_jwks(&jwks)
}

/// [`fetch_verifier`], retrying with backoff (250 ms doubling to 5 s) while auth is still
/// starting: how a function that reads access tokens gets auth's keys at start-up.
pub async fn fetch_verifier_retrying(
    jwks_url: &str,
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
        match fetch_verifier(&client, jwks_url).await {
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
