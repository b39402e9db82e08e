//! auth's key set for rotation without downtime: the current key signs; the next key (if
//! any) is published ahead so that verifiers know it before it signs; previous keys (if any)
//! are published, public halves only, until the tokens they signed have expired.
//!
//! The rotation, one deploy of auth per step (docs/architecture.md §5, terraform/README.md):
//! 1. **add next**: `AUTH_NEXT_SIGNING_KEY` (+ `_ID`). Verifiers learn it within
//!    [`crate::JwksRefresh::max_age`] (or at their first token signed by it).
//! 2. **promote**: the next key becomes `AUTH_SIGNING_KEY` (+ `_ID`); the former current
//!    key's public JWK goes to `AUTH_PREVIOUS_JWKS`.
//! 3. **retire**: after an access token's lifetime (1 h) plus the leeway, drop it from
//!    `AUTH_PREVIOUS_JWKS`; verifiers drop it at their next fetch.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};

use crate::{TokenError, TokenSigner, TokenVerifier};

/// The keys auth publishes, and the one it signs with.
#[derive(Debug)]
pub struct SigningKeys {
    current: TokenSigner,
    next: Option<TokenSigner>,
    previous: Vec<Jwk>,
}

impl SigningKeys {
    /// One key, nothing else published.
    pub fn single(current: TokenSigner) -> Self {
        Self {
            current,
            next: None,
            previous: Vec::new(),
        }
    }

    /// `previous` holds public JWKs (e.g. copied from the JWKS published before the
    /// promotion). Every key must be Ed25519 with a `kid`, and no `kid` may repeat: a `kid`
    /// names one key, or a verifier could hold the wrong one.
    pub fn new(
        current: TokenSigner,
        next: Option<TokenSigner>,
        previous: Vec<Jwk>,
    ) -> Result<Self, TokenError> {
        let mut kids = vec![current.kid().to_owned()];
        if let Some(next) = &next {
            kids.push(next.kid().to_owned());
        }
        for jwk in &previous {
            let kid = jwk
                .common
                .key_id
                .clone()
                .filter(|k| !k.is_empty() && k.len() <= 64)
                .ok_or_else(|| TokenError::BadKey("a previous key has no valid kid".into()))?;
            match &jwk.algorithm {
                AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {}
                _ => {
                    return Err(TokenError::BadKey(format!(
                        "previous key {kid} is not an Ed25519 public key"
                    )));
                }
            }
            // Parses, or the published set would be refused by every verifier.
            jsonwebtoken::DecodingKey::from_jwk(jwk)
                .map_err(|_| TokenError::BadKey(format!("previous key {kid} is invalid")))?;
            kids.push(kid);
        }
        let mut sorted = kids.clone();
        sorted.sort();
        if let Some(dup) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(TokenError::BadKey(format!(
                "key id {} names more than one key",
                dup[0]
            )));
        }
        Ok(Self {
            current,
            next,
            previous,
        })
    }

    /// Previous keys from a JSON key set (`{"keys": [...]}`) or a bare array of JWKs.
    pub fn parse_previous(json: &str) -> Result<Vec<Jwk>, TokenError> {
        let bad = |_| TokenError::BadKey("not a JSON key set or array of JWKs".into());
        let json = json.trim();
        if json.is_empty() {
            return Ok(Vec::new());
        }
        if json.starts_with('[') {
            return serde_json::from_str(json).map_err(bad);
        }
        serde_json::from_str::<JwkSet>(json)
            .map(|set| set.keys)
            .map_err(bad)
    }

    /// The key that signs.
    pub fn current(&self) -> &TokenSigner {
        &self.current
    }

    /// The signing key, once the set has been published.
    pub fn into_current(self) -> TokenSigner {
        self.current
    }

    pub fn next(&self) -> Option<&TokenSigner> {
        self.next.as_ref()
    }

    /// What auth publishes at `/.well-known/jwks.json`: current, next, previous.
    pub fn jwks(&self) -> JwkSet {
        let mut keys = vec![self.current.jwk()];
        keys.extend(self.next.iter().map(TokenSigner::jwk));
        keys.extend(self.previous.iter().cloned());
        JwkSet { keys }
    }

    /// A verifier of every published key: auth accepts the tokens of its previous key
    /// as every other function does, until it is retired.
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier::from_jwks(&self.jwks()).expect("own JWKs are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AccessClaims;

    #[test]
    fn publishes_current_next_and_previous_and_signs_with_current() {
        let old = TokenSigner::generate("k1");
        let current = TokenSigner::generate("k2");
        let next = TokenSigner::generate("k3");
        let keys = SigningKeys::new(current, Some(next), vec![old.jwk()]).unwrap();
        let kids: Vec<_> = keys
            .jwks()
            .keys
            .iter()
            .map(|k| k.common.key_id.clone().unwrap())
            .collect();
        assert_eq!(kids, ["k2", "k3", "k1"]);
        assert_eq!(keys.current().kid(), "k2");
        let verifier = keys.verifier();
        let claims = AccessClaims::new("u", "s", chrono::Utc::now().timestamp());
        assert!(
            verifier
                .verify::<AccessClaims>(&old.sign(&claims).unwrap())
                .is_ok()
        );
        assert!(
            verifier
                .verify::<AccessClaims>(&keys.current().sign(&claims).unwrap())
                .is_ok()
        );
    }

    #[test]
    fn a_kid_names_one_key() {
        let a = TokenSigner::generate("same");
        let b = TokenSigner::generate("same");
        assert!(SigningKeys::new(a, Some(b), vec![]).is_err());
        let a = TokenSigner::generate("same");
        let old = TokenSigner::generate("same");
        assert!(SigningKeys::new(a, None, vec![old.jwk()]).is_err());
    }

    #[test]
    fn previous_keys_parse_from_a_set_or_an_array_and_must_be_ed25519() {
        let old = TokenSigner::generate("k1");
        let set = serde_json::to_string(&old.jwks()).unwrap();
        let array = serde_json::to_string(&vec![old.jwk()]).unwrap();
        assert_eq!(SigningKeys::parse_previous(&set).unwrap().len(), 1);
        assert_eq!(SigningKeys::parse_previous(&array).unwrap().len(), 1);
        assert!(SigningKeys::parse_previous("  ").unwrap().is_empty());
        assert!(SigningKeys::parse_previous("-----BEGIN PRIVATE KEY-----").is_err());
        let rsa: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "RSA", "kid": "r1", "n": "AQAB", "e": "AQAB"
        }))
        .unwrap();
        let current = TokenSigner::generate("k2");
        assert!(SigningKeys::new(current, None, vec![rsa]).is_err());
    }
}
