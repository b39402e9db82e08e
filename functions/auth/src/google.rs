//! Google sign-in (OAuth 2.0 authorization code + OpenID Connect), the provider side:
//! the single-use login attempts (state, nonce, PKCE verifier, bound to one browser),
//! building the authorization URL, exchanging the code with PKCE, and verifying the ID
//! token with the shared OIDC verifier (`runwarden_tokens::oidc`: RS256 pinned, JWKS cache,
//! issuer, audience and expiry) plus the sign-in checks: nonce and `email_verified`. Every
//! endpoint comes from configuration. Who the identity signs in as is
//! [`crate::accounts::sign_in_with_google`].

use std::time::Duration;

use runwarden_tokens::oidc::{self, OidcConfig, OidcVerifier};
use secrecy::ExposeSecret;
use serde::Deserialize;
use sqlx::PgPool;
use subtle::ConstantTimeEq;
use url::Url;

use crate::config::GoogleConfig;
use crate::email::Email;
use crate::orgs::WorkspaceDomain;
use crate::secret_token;

/// How long a login attempt (and its browser cookie) lives.
pub const FLOW_LIFETIME_SECS: i64 = 600;

#[derive(Debug, thiserror::Error)]
pub enum GoogleError {
    /// The provider refused the code, or what it sent does not verify. Logged here as
    /// `sso_rejected`; the caller learns nothing more than 401.
    #[error("Google sign-in rejected")]
    Rejected,
    /// The provider's keys cannot be fetched right now.
    #[error("Google's keys are unavailable")]
    Unavailable,
    /// The token endpoint did not answer.
    #[error(transparent)]
    Unreachable(anyhow::Error),
}

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
    /// The Google Workspace domain of the account (`hd`), None for a consumer account.
    pub hd: Option<WorkspaceDomain>,
}

#[derive(Deserialize)]
struct IdTokenClaims {
    sub: String,
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
    nonce: Option<String>,
    /// The hosted domain: present only for Google Workspace accounts.
    hd: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: String,
}

fn rejected(reason: &'static str) -> GoogleError {
    tracing::warn!(
        security_event = "sso_rejected",
        reason,
        "Google sign-in rejected"
    );
    GoogleError::Rejected
}

/// A login attempt just started: where to send the browser, and the random value its
/// cookie must carry back.
pub struct Started {
    pub redirect: Url,
    pub browser_binding: String,
}

/// The secrets a login attempt kept for its callback.
pub struct Attempt {
    pub nonce: String,
    pub code_verifier: String,
}

/// Consumes the login attempt `state` names, only when `browser_binding` matches and it
/// has not expired: deleted as it is read, so it is single use. None otherwise.
pub async fn consume_attempt(
    pool: &PgPool,
    state: &str,
    browser_binding: &str,
) -> Result<Option<Attempt>, sqlx::Error> {
    let flow: Option<(String, String)> = sqlx::query_as(
        "DELETE FROM oidc_login_flows
          WHERE state_hash = $1 AND browser_binding_hash = $2 AND expires_at > now()
      RETURNING nonce, code_verifier",
    )
    .bind(secret_token::hash(state))
    .bind(secret_token::hash(browser_binding))
    .fetch_optional(pool)
    .await?;
    Ok(flow.map(|(nonce, code_verifier)| Attempt {
        nonce,
        code_verifier,
    }))
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

    /// Stores a new single-use login attempt (only hashes of its state and browser
    /// binding) and answers the provider URL to send the browser to. Expired attempts are
    /// swept on the way.
    pub async fn start(&self, pool: &PgPool) -> Result<Started, sqlx::Error> {
        let flow_state = secret_token::random_b64(32);
        let binding = secret_token::random_b64(32);
        let nonce = secret_token::random_b64(32);
        let verifier = secret_token::random_b64(48);
        let mut conn = pool.acquire().await?;
        sqlx::query("DELETE FROM oidc_login_flows WHERE expires_at < now()")
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "INSERT INTO oidc_login_flows (state_hash, browser_binding_hash, nonce, code_verifier, expires_at)
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))",
        )
        .bind(secret_token::hash(&flow_state))
        .bind(secret_token::hash(&binding))
        .bind(&nonce)
        .bind(&verifier)
        .bind(FLOW_LIFETIME_SECS as f64)
        .execute(&mut *conn)
        .await?;
        Ok(Started {
            redirect: self.authorization_url(
                &flow_state,
                &nonce,
                &secret_token::pkce_challenge(&verifier),
            ),
            browser_binding: binding,
        })
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
    pub async fn exchange(&self, code: &str, code_verifier: &str) -> Result<String, GoogleError> {
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
            .map_err(|e| {
                GoogleError::Unreachable(anyhow::anyhow!(
                    "token endpoint unreachable: {}",
                    e.without_url()
                ))
            })?;
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
    ) -> Result<GoogleIdentity, GoogleError> {
        let claims: IdTokenClaims = self.id_tokens.verify_as(id_token).await.map_err(|e| {
            if e.is_transient() {
                GoogleError::Unavailable
            } else {
                tracing::warn!(security_event = "sso_rejected", reason = %e, "Google sign-in rejected");
                GoogleError::Rejected
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
        let hd = claims
            .hd
            .as_deref()
            .map(WorkspaceDomain::parse)
            .transpose()
            .map_err(|_| rejected("unusable hd"))?;
        Ok(GoogleIdentity {
            // One spelling per provider, whichever Google sent, so (issuer, subject) stays
            // one identity. Validation above already pinned `iss` to the accepted spellings.
            issuer: self.config.issuer.clone(),
            subject: claims.sub,
            email: Email::parse(email).map_err(|_| rejected("unusable email"))?,
            hd,
        })
    }
}
