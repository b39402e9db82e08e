//! Google sign-in (OAuth 2.0 authorization code + OpenID Connect), the provider side:
//! building the authorization URL, exchanging the code with PKCE, and verifying the ID
//! token against the provider's JWKS (algorithm pinned to RS256; issuer, audience, expiry,
//! nonce and `email_verified` checked). Every endpoint comes from configuration.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::ExposeSecret;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use tokio::sync::RwLock;
use url::Url;

use crate::config::GoogleConfig;
use crate::email::Email;
use crate::error::{AuthError, AuthResult};

const KEYS_TTL: Duration = Duration::from_secs(3600);
/// An unknown `kid` triggers at most one JWKS refetch per this interval.
const REFETCH_INTERVAL: Duration = Duration::from_secs(60);

pub struct GoogleSignIn {
    config: GoogleConfig,
    http: reqwest::Client,
    keys: RwLock<KeyCache>,
}

#[derive(Default)]
struct KeyCache {
    fetched_at: Option<Instant>,
    keys: HashMap<String, DecodingKey>,
}

/// A verified Google identity. The identity key is (issuer, subject), never the email.
#[derive(Debug, Clone)]
pub struct GoogleIdentity {
    pub issuer: String,
    pub subject: String,
    pub email: Email,
}

#[derive(Deserialize)]
struct IdTokenClaims {
    sub: String,
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
    nonce: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: String,
}

fn rejected(reason: &'static str) -> AuthError {
    tracing::warn!(
        security_event = "sso_rejected",
        reason,
        "Google sign-in rejected"
    );
    AuthError::Unauthenticated
}

impl GoogleSignIn {
    pub fn new(config: GoogleConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the HTTP client builds");
        Self {
            config,
            http,
            keys: RwLock::new(KeyCache::default()),
        }
    }

    pub fn authorization_url(&self, state: &str, nonce: &str, code_challenge: &str) -> Url {
        let mut url = self.config.auth_url.clone();
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", self.config.redirect_url.as_str())
            .append_pair("scope", "openid email profile")
            .append_pair("state", state)
            .append_pair("nonce", nonce)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        url
    }

    /// Exchanges the authorization code (with its PKCE verifier) for an ID token.
    pub async fn exchange(&self, code: &str, code_verifier: &str) -> AuthResult<String> {
        let response = self
            .http
            .post(self.config.token_url.clone())
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("code_verifier", code_verifier),
                ("client_id", &self.config.client_id),
                ("client_secret", self.config.client_secret.expose_secret()),
                ("redirect_uri", self.config.redirect_url.as_str()),
            ])
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("token endpoint unreachable: {}", e.without_url()))?;
        if !response.status().is_success() {
            return Err(rejected("code exchange refused"));
        }
        let body: TokenResponse = response
            .json()
            .await
            .map_err(|_| rejected("token response unreadable"))?;
        Ok(body.id_token)
    }

    pub async fn verify_id_token(
        &self,
        id_token: &str,
        expected_nonce: &str,
    ) -> AuthResult<GoogleIdentity> {
        let header =
            jsonwebtoken::decode_header(id_token).map_err(|_| rejected("malformed id token"))?;
        if header.alg != Algorithm::RS256 {
            return Err(rejected("id token algorithm"));
        }
        if header.jku.is_some() || header.jwk.is_some() || header.x5u.is_some() {
            return Err(rejected("id token header keys"));
        }
        let kid = header.kid.ok_or_else(|| rejected("id token without kid"))?;
        let key = self.key(&kid).await?;

        let mut validation = Validation::new(Algorithm::RS256);
        validation.algorithms = vec![Algorithm::RS256];
        validation.leeway = runwarden_tokens::LEEWAY.as_secs();
        validation.validate_nbf = true;
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.set_audience(&[&self.config.client_id]);
        validation.set_issuer(&self.config.accepted_issuers());
        let claims = jsonwebtoken::decode::<IdTokenClaims>(id_token, &key, &validation)
            .map_err(|_| rejected("id token invalid"))?
            .claims;

        let nonce_ok = claims
            .nonce
            .as_deref()
            .is_some_and(|n| bool::from(n.as_bytes().ct_eq(expected_nonce.as_bytes())));
        if !nonce_ok {
            return Err(rejected("nonce mismatch"));
        }
        let verified = matches!(claims.email_verified, Some(serde_json::Value::Bool(true)))
            || matches!(&claims.email_verified, Some(serde_json::Value::String(s)) if s == "true");
        if !verified {
            return Err(rejected("email not verified"));
        }
        let email = claims
            .email
            .as_deref()
            .ok_or_else(|| rejected("no email"))?;
        Ok(GoogleIdentity {
            // One spelling per provider, whichever Google sent, so (issuer, subject) stays
            // one identity. Validation above already pinned `iss` to the accepted spellings.
            issuer: self.config.issuer.clone(),
            subject: claims.sub,
            email: Email::parse(email).map_err(|_| rejected("unusable email"))?,
        })
    }

    async fn key(&self, kid: &str) -> AuthResult<DecodingKey> {
        {
            let cache = self.keys.read().await;
            let fresh = cache.fetched_at.is_some_and(|t| t.elapsed() < KEYS_TTL);
            if let Some(key) = cache.keys.get(kid).filter(|_| fresh) {
                return Ok(key.clone());
            }
            if cache
                .fetched_at
                .is_some_and(|t| t.elapsed() < REFETCH_INTERVAL)
            {
                return Err(rejected("unknown kid"));
            }
        }
        let mut cache = self.keys.write().await;
        // Another request may have refreshed the cache while we waited for the lock.
        if cache
            .fetched_at
            .is_none_or(|t| t.elapsed() >= REFETCH_INTERVAL)
        {
            let jwks: JwkSet = self
                .http
                .get(self.config.jwks_url.clone())
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| anyhow::anyhow!("provider JWKS unreachable: {}", e.without_url()))?
                .json()
                .await
                .map_err(|e| anyhow::anyhow!("provider JWKS unreadable: {e}"))?;
            cache.keys = jwks
                .keys
                .iter()
                .filter_map(|jwk| {
                    Some((jwk.common.key_id.clone()?, DecodingKey::from_jwk(jwk).ok()?))
                })
                .collect();
            cache.fetched_at = Some(Instant::now());
        }
        cache
            .keys
            .get(kid)
            .cloned()
            .ok_or_else(|| rejected("unknown kid"))
    }
}
