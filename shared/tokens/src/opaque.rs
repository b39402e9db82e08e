//! Opaque bearer secrets (refresh and invitation tokens, OIDC state, runner tickets and
//! tokens): 256 random bits, shown once, stored only as SHA-256.

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A fresh random token with a prefix that says what it is (`rt_`, `inv_`).
pub fn generate(prefix: &str) -> String {
    format!("{prefix}{}", random_b64(32))
}

pub fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).expect("the system random generator works");
    URL_SAFE_NO_PAD.encode(buf)
}

pub fn hash(token: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, token.as_bytes())
        .as_ref()
        .to_vec()
}

/// The PKCE S256 challenge of a verifier (RFC 7636).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_hash_stably() {
        let a = generate("rt_");
        let b = generate("rt_");
        assert!(a.starts_with("rt_") && a.len() == 3 + 43);
        assert_ne!(a, b);
        assert_eq!(hash(&a), hash(&a));
        assert_ne!(hash(&a), hash(&b));
    }

    #[test]
    fn pkce_challenge_is_unpadded_base64url_sha256() {
        // Expected value computed independently with Python's hashlib and base64.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mJ92Z9TAmb7OsWy8rvPMc3Y3FNc98A"),
            "VE_OZ1jynkvTRnXP5fozyIK_iZDYYTKMQtfSC75JZH8"
        );
    }
}
