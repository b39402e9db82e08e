//! Passwords: the rules a new password must meet, and Argon2id hashing on a bounded pool.
//!
//! The common-password list is Django's `common-passwords.txt` (the 20,000 most common
//! passwords compiled by Royce Williams), lower-cased.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock};

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;
use tracing::Instrument;

pub const MIN_CHARS: usize = 12;
pub const MAX_CHARS: usize = 128;

/// OWASP's minimum for Argon2id: 19 MiB, 2 iterations, 1 lane.
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;

static COMMON: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("common_passwords.txt").lines().collect());

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejection {
    #[error("password must be at least {MIN_CHARS} characters")]
    TooShort,
    #[error("password must be at most {MAX_CHARS} characters")]
    TooLong,
    #[error("password is too common or too easy to guess")]
    Weak,
}

/// A candidate new password that met the rules. Any characters are allowed (no composition
/// rules); length is counted in characters, not bytes, and nothing is truncated.
pub struct NewPassword(SecretString);

impl NewPassword {
    /// `context` holds words the password must not be built from (the email's local part).
    pub fn parse(raw: SecretString, context: &[&str]) -> Result<Self, PasswordRejection> {
        check_length(raw.expose_secret())?;
        if is_weak(raw.expose_secret(), context) {
            return Err(PasswordRejection::Weak);
        }
        Ok(Self(raw))
    }

    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

/// Length rules, cheap, so that oversized input never reaches Argon2.
pub fn check_length(raw: &str) -> Result<(), PasswordRejection> {
    let chars = raw.chars().count();
    if chars < MIN_CHARS {
        Err(PasswordRejection::TooShort)
    } else if chars > MAX_CHARS {
        Err(PasswordRejection::TooLong)
    } else {
        Ok(())
    }
}

fn is_weak(raw: &str, context: &[&str]) -> bool {
    let lower = raw.to_lowercase();
    if COMMON.contains(lower.as_str()) {
        return true;
    }
    // A common password with a short suffix of digits or symbols ("qwertyuiop123!").
    let stem = lower.trim_end_matches(|c: char| !c.is_alphabetic());
    if stem.len() + 4 >= lower.len() && COMMON.contains(stem) {
        return true;
    }
    // One short unit repeated ("abcabcabcabc", "passwordpassword").
    let chars: Vec<char> = lower.chars().collect();
    for unit in 1..=chars.len() / 2 {
        if chars.len().is_multiple_of(unit) && chars.chunks(unit).all(|c| c == &chars[..unit]) {
            return true;
        }
    }
    // Runs along the digits, the alphabet or a keyboard row, either way ("123456789012").
    const RUNS: &[&str] = &[
        "012345678901234567890123456789",
        "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz",
        "qwertyuiopasdfghjklzxcvbnmqwertyuiopasdfghjklzxcvbnm",
    ];
    let reversed: String = lower.chars().rev().collect();
    if RUNS
        .iter()
        .any(|run| run.contains(lower.as_str()) || run.contains(reversed.as_str()))
    {
        return true;
    }
    // Built from the product's or the user's own name.
    let mut words = vec!["runwarden"];
    words.extend(context.iter().copied().filter(|w| w.chars().count() >= 4));
    words.iter().any(|w| lower.contains(&w.to_lowercase()))
}

/// Argon2id with at most as many hashes in flight as cores, so a login storm queues
/// instead of exhausting memory (each hash holds 19 MiB).
#[derive(Clone)]
pub struct Hasher {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// Verified against when the account does not exist, so unknown emails cost the same.
    dummy_hash: Arc<String>,
}

impl Hasher {
    pub fn new(concurrency: usize) -> Self {
        let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
            .expect("valid Argon2 parameters");
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let dummy_hash = argon2
            .hash_password(b"runwarden-dummy-password", &salt)
            .expect("hashing works")
            .to_string();
        Self {
            argon2,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy_hash: Arc::new(dummy_hash),
        }
    }

    pub async fn hash(&self, password: &NewPassword) -> anyhow::Result<String> {
        let password = password.secret().clone();
        self.run(move |argon2| {
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            argon2
                .hash_password(password.expose_secret().as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("argon2 hash failed: {e}"))
        })
        .await?
    }

    /// True only when `hash` exists and matches. Runs a full verification either way.
    pub async fn verify(
        &self,
        password: &SecretString,
        hash: Option<String>,
    ) -> anyhow::Result<bool> {
        let password = password.clone();
        let (hash, real) = match hash {
            Some(h) => (h, true),
            None => (self.dummy_hash.as_ref().clone(), false),
        };
        self.run(move |argon2| {
            let parsed = PasswordHash::new(&hash)
                .map_err(|e| anyhow::anyhow!("stored hash unreadable: {e}"))?;
            let ok = argon2
                .verify_password(password.expose_secret().as_bytes(), &parsed)
                .is_ok();
            Ok(ok && real)
        })
        .await?
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Argon2<'static>) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self.permits.acquire().await?;
        let argon2 = self.argon2.clone();
        let span = tracing::Span::current();
        Ok(
            tokio::task::spawn_blocking(move || span.in_scope(|| work(&argon2)))
                .instrument(tracing::Span::current())
                .await?,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(p: &str) -> Result<NewPassword, PasswordRejection> {
        NewPassword::parse(SecretString::from(p), &["alice"])
    }

    #[test]
    fn length_is_counted_in_characters() {
        assert_eq!(
            parse("elevenchars").err(),
            Some(PasswordRejection::TooShort)
        );
        assert!(parse("twelve-chars").is_ok());
        assert!(parse(&"ñ".repeat(12)).is_err_and(|e| e == PasswordRejection::Weak));
        assert!(parse("correct horse battery").is_ok());
        assert!(parse("🦀 crabs are 🦀 great").is_ok());
        assert_eq!(
            parse(&"ab1".repeat(43)).err(),
            Some(PasswordRejection::TooLong)
        );
        let max: String = (0..128)
            .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
            .collect();
        assert!(parse(&max).is_ok());
        let over = format!("{max}x");
        assert_eq!(parse(&over).err(), Some(PasswordRejection::TooLong));
    }

    #[test]
    fn common_and_derived_passwords_are_weak() {
        for weak in [
            "q1w2e3r4t5y6",
            "1qaz2wsx3edc",
            "Q1W2E3R4T5Y6",
            "passwordpassword",
            "abcabcabcabc",
            "aaaaaaaaaaaa",
            "123456789012",
            "abcdefghijkl",
            "lkjhgfdsapoiuytrewq",
            "098765432109",
            "qwertyuiop123!",
            "runwarden2026!",
            "alice-is-the-best",
        ] {
            assert_eq!(parse(weak).err(), Some(PasswordRejection::Weak), "{weak}");
        }
    }

    #[tokio::test]
    async fn hashes_are_argon2id_with_owasp_parameters_and_unique_salts() {
        let hasher = Hasher::new(2);
        let pw = parse("a perfectly fine passphrase").unwrap();
        let h1 = hasher.hash(&pw).await.unwrap();
        let h2 = hasher.hash(&pw).await.unwrap();
        assert!(h1.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h1}");
        assert_ne!(h1, h2);
        let salt_b64 = h1.split('$').nth(4).unwrap();
        assert!(salt_b64.len() >= 22, "salt is at least 16 bytes");
        let secret = SecretString::from("a perfectly fine passphrase");
        assert!(hasher.verify(&secret, Some(h1.clone())).await.unwrap());
        assert!(
            !hasher
                .verify(&SecretString::from("A perfectly fine passphrase"), Some(h1))
                .await
                .unwrap()
        );
        assert!(!hasher.verify(&secret, None).await.unwrap());
    }
}
