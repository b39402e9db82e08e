//! `X-Internal-Auth`: the shared-secret guard on `/internal/` routes. Two secrets are
//! accepted at once so the secret can rotate without downtime. Comparison is constant-time
//! and checks every configured secret, so timing says nothing about which one matched.

use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use crate::Problem;

pub const HEADER: &str = "x-internal-auth";

#[derive(Clone)]
pub struct InternalSecrets(Arc<Vec<SecretString>>);

impl InternalSecrets {
    /// Parses a comma-separated list (current first, previous during a rotation).
    /// Each secret must be at least 32 characters.
    pub fn parse(raw: &SecretString) -> Result<Self, crate::ConfigError> {
        let secrets: Vec<SecretString> = raw
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(SecretString::from)
            .collect();
        if secrets.is_empty() || secrets.len() > 2 {
            return Err(crate::ConfigError::Invalid {
                name: "INTERNAL_AUTH_SECRETS",
                reason: "expected one or two comma-separated secrets".into(),
            });
        }
        if secrets.iter().any(|s| s.expose_secret().len() < 32) {
            return Err(crate::ConfigError::Invalid {
                name: "INTERNAL_AUTH_SECRETS",
                reason: "each secret must be at least 32 characters".into(),
            });
        }
        Ok(Self(Arc::new(secrets)))
    }

    /// The secret to send on outgoing internal calls (the first: the current one).
    pub fn current(&self) -> SecretString {
        self.0[0].clone()
    }

    pub fn accepts(&self, presented: &[u8]) -> bool {
        let mut ok = subtle::Choice::from(0u8);
        for secret in self.0.iter() {
            ok |= secret.expose_secret().as_bytes().ct_eq(presented);
        }
        ok.into()
    }
}

/// Middleware: `.route_layer(axum::middleware::from_fn_with_state(secrets, require_internal_auth))`.
pub async fn require_internal_auth(
    axum::extract::State(secrets): axum::extract::State<InternalSecrets>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if secrets.accepts(presented) {
        next.run(request).await
    } else {
        Problem::unauthorized().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn accepts_either_secret_during_rotation() {
        let s = InternalSecrets::parse(&SecretString::from(format!("{A},{B}"))).unwrap();
        assert!(s.accepts(A.as_bytes()));
        assert!(s.accepts(B.as_bytes()));
        assert!(!s.accepts(b""));
        assert!(!s.accepts(&A.as_bytes()[..31]));
        assert!(!s.accepts(format!("{A}x").as_bytes()));
    }

    #[test]
    fn rejects_short_or_too_many_secrets() {
        assert!(InternalSecrets::parse(&SecretString::from("short")).is_err());
        assert!(InternalSecrets::parse(&SecretString::from(format!("{A},{B},{A}"))).is_err());
        assert!(InternalSecrets::parse(&SecretString::from(" , ")).is_err());
    }
}
