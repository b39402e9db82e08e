//! Google sign-in (OAuth 2.0 authorization code + OpenID Connect), the provider side:
//! building the authorization URL, exchanging the code with PKCE, and verifying the ID
//! token with the shared OIDC verifier (`runwarden_tokens::oidc`: RS256 pinned, JWKS cache,
//! issuer, audience and expiry) plus the sign-in checks: nonce and `email_verified`. Every
//! endpoint comes from configuration.

use std::time::Duration;

use runwarden_tokens::oidc::{self, OidcConfig, OidcVerifier};
use secrecy::ExposeSecret;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use url::Url;

use crate::config::GoogleConfig;
use crate::email::Email;
use crate::error::{AuthError, AuthResult};

pub struct GoogleSignIn {
    config: GoogleConfig,
    http: reqwest::Client,
    id_tokens: OidcVerifier,
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
        let id_tokens = OidcVerifier::new(OidcConfig {
            jwks_url: config.jwks_url.to_string(),
            issuers: config.accepted_issuers(),
            audiences: vec![config.client_id.clone()],
            email: None,
            keys_ttl: oidc::KEYS_TTL,
            refetch_interval: oidc::REFETCH_INTERVAL,
        })
        .expect("issuers and the client id make a valid verifier configuration");
        Self {
            config,
            http,
            id_tokens,
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
        let claims: IdTokenClaims = self.id_tokens.verify_as(id_token).await.map_err(|e| {
            if e.is_transient() {
                AuthError::Unavailable
            } else {
                tracing::warn!(security_event = "sso_rejected", reason = %e, "Google sign-in rejected");
                AuthError::Unauthenticated
            }
        })?;

        let nonce_ok = claims
            .nonce
            .as_deref()
            .is_some_and(|n| bool::from(n.as_bytes().ct_eq(expected_nonce.as_bytes())));
        if !nonce_ok {
            return Err(rejected("nonce mismatch"));
        }
        let verified = claims.email_verified == Some(serde_json::Value::Bool(true));
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
}
