//! Passwords: the rules a new password must meet, and Argon2id hashing on a bounded pool.
//!
//! The common-password list is Django's `common-passwords.txt` (the 20,000 most common
//! passwords compiled by Royce Williams), lower-cased.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};

use argon2::password_hash::PasswordHash;
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
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
/// instead of exhausting memory. Each hash needs 19 MiB of work memory; those buffers are
/// kept and reused (at most one per permit) rather than allocated per hash, which keeps the
/// process's peak memory at a few buffers and spares every hash 19 MiB of page faults.
#[derive(Clone)]
pub struct Hasher {
    params: Params,
    permits: Arc<Semaphore>,
    scratch: Arc<Mutex<Vec<Vec<Block>>>>,
    /// Verified against when the account does not exist, so unknown emails cost the same.
    dummy_hash: Arc<String>,
}

const SALT_BYTES: usize = 16;
const OUTPUT_BYTES: usize = 32;

fn owasp_params() -> Params {
    Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, Some(OUTPUT_BYTES))
        .expect("valid Argon2 parameters")
}

/// Runs Argon2id into `out`, using `memory` when it has the right size.
fn argon2id(
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut [Block],
) -> anyhow::Result<()> {
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let result = if memory.len() == params.block_count() {
        argon2.hash_password_into_with_memory(password, salt, out, memory)
    } else {
        // A hash stored with other parameters: a one-off buffer, the pool stays uniform.
        argon2.hash_password_into(password, salt, out)
    };
    result.map_err(|e| anyhow::anyhow!("argon2 failed: {e}"))
}

/// The PHC string form (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) that every Argon2
/// implementation reads.
fn phc_string(params: &Params, salt: &[u8], hash: &[u8]) -> String {
    format!(
        "$argon2id$v=19$m={},t={},p={}${}${}",
        params.m_cost(),
        params.t_cost(),
        params.p_cost(),
        STANDARD_NO_PAD.encode(salt),
        STANDARD_NO_PAD.encode(hash)
    )
}

fn hash_with(params: &Params, password: &[u8], memory: &mut [Block]) -> anyhow::Result<String> {
    let mut salt = [0u8; SALT_BYTES];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| anyhow::anyhow!("no system randomness"))?;
    let mut out = [0u8; OUTPUT_BYTES];
    argon2id(params, password, &salt, &mut out, memory)?;
    Ok(phc_string(params, &salt, &out))
}

fn verify_with(stored: &str, password: &[u8], memory: &mut [Block]) -> anyhow::Result<bool> {
    let parsed =
        PasswordHash::new(stored).map_err(|e| anyhow::anyhow!("stored hash unreadable: {e}"))?;
    if parsed.algorithm.as_str() != "argon2id" {
        anyhow::bail!("stored hash is not argon2id");
    }
    let params =
        Params::try_from(&parsed).map_err(|e| anyhow::anyhow!("stored hash parameters: {e}"))?;
    let mut salt_buf = [0u8; 64];
    let salt = parsed
        .salt
        .ok_or_else(|| anyhow::anyhow!("stored hash has no salt"))?
        .decode_b64(&mut salt_buf)
        .map_err(|e| anyhow::anyhow!("stored salt unreadable: {e}"))?;
    let expected = parsed
        .hash
        .ok_or_else(|| anyhow::anyhow!("stored hash has no output"))?;
    let mut out = vec![0u8; expected.len()];
    argon2id(&params, password, salt, &mut out, memory)?;
    Ok(bool::from(out.as_slice().ct_eq(expected.as_bytes())))
}

impl Hasher {
    pub fn new(concurrency: usize) -> Self {
        let params = owasp_params();
        // The start-up hash's buffer is freed, not pooled: an idle instance stays small, and
        // buffers join the pool as the first hashes need them.
        let mut memory = vec![Block::default(); params.block_count()];
        let dummy_hash =
            hash_with(&params, b"runwarden-dummy-password", &mut memory).expect("hashing works");
        drop(memory);
        Self {
            params,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            scratch: Arc::new(Mutex::new(Vec::new())),
            dummy_hash: Arc::new(dummy_hash),
        }
    }

    pub async fn hash(&self, password: &NewPassword) -> anyhow::Result<String> {
        let password = password.secret().clone();
        let params = self.params.clone();
        self.run(move |memory| hash_with(&params, password.expose_secret().as_bytes(), memory))
            .await?
    }

    /// A password that just verified, hashed again with the current parameters (for a
    /// stored hash that [`Self::needs_rehash`]). Not for new passwords: those go through
    /// [`NewPassword`] and [`Self::hash`].
    pub async fn rehash(&self, verified: &SecretString) -> anyhow::Result<String> {
        let password = verified.clone();
        let params = self.params.clone();
        self.run(move |memory| hash_with(&params, password.expose_secret().as_bytes(), memory))
            .await?
    }

    /// Whether `stored` was hashed with weaker parameters than the current ones (less
    /// memory, fewer iterations or lanes, a shorter output, another algorithm or version):
    /// it is rehashed at the next successful login. A hash that does not parse is not
    /// rehashed here (it never verifies).
    pub fn needs_rehash(&self, stored: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(stored) else {
            return false;
        };
        if parsed.algorithm.as_str() != "argon2id" || parsed.version != Some(0x13) {
            return true;
        }
        let Ok(params) = Params::try_from(&parsed) else {
            return false;
        };
        let output = parsed.hash.map_or(0, |h| h.len());
        params.m_cost() < self.params.m_cost()
            || params.t_cost() < self.params.t_cost()
            || params.p_cost() < self.params.p_cost()
            || output < OUTPUT_BYTES
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
        let ok = self
            .run(move |memory| verify_with(&hash, password.expose_secret().as_bytes(), memory))
            .await??;
        Ok(ok && real)
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self.permits.acquire().await?;
        let mut memory = self
            .scratch
            .lock()
            .map_err(|_| anyhow::anyhow!("hash memory pool poisoned"))?
            .pop()
            .unwrap_or_else(|| vec![Block::default(); self.params.block_count()]);
        let span = tracing::Span::current();
        let (result, memory) = tokio::task::spawn_blocking(move || {
            let result = span.in_scope(|| work(&mut memory));
            (result, memory)
        })
        .instrument(tracing::Span::current())
        .await?;
        if let Ok(mut pool) = self.scratch.lock() {
            pool.push(memory);
        }
        Ok(result)
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

    #[tokio::test]
    async fn weaker_hashes_need_a_rehash_and_current_ones_do_not() {
        use argon2::password_hash::{PasswordHasher as _, SaltString};
        let hasher = Hasher::new(1);
        let secret = SecretString::from("a perfectly fine passphrase");
        let current = hasher
            .hash(&parse("a perfectly fine passphrase").unwrap())
            .await
            .unwrap();
        assert!(!hasher.needs_rehash(&current));
        let with = |m, t, p| {
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            Argon2::new(
                Algorithm::Argon2id,
                Version::V0x13,
                Params::new(m, t, p, None).unwrap(),
            )
            .hash_password(b"a perfectly fine passphrase", &salt)
            .unwrap()
            .to_string()
        };
        assert!(hasher.needs_rehash(&with(4096, 1, 1)));
        assert!(hasher.needs_rehash(&with(MEMORY_KIB, 1, 1)));
        assert!(hasher.needs_rehash(&with(8192, 3, 1)));
        assert!(!hasher.needs_rehash(&with(32 * 1024, 3, 1)));
        assert!(!hasher.needs_rehash("not a hash"));
        let rehashed = hasher.rehash(&secret).await.unwrap();
        assert!(rehashed.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(hasher.verify(&secret, Some(rehashed)).await.unwrap());
    }

    #[tokio::test]
    async fn hashes_interoperate_with_the_argon2_crates_own_format() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _, SaltString};
        let hasher = Hasher::new(1);
        let ours = hasher
            .hash(&parse("a perfectly fine passphrase").unwrap())
            .await
            .unwrap();
        let reference = Argon2::new(Algorithm::Argon2id, Version::V0x13, owasp_params());
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            reference
                .verify_password(b"a perfectly fine passphrase", &parsed)
                .is_ok()
        );
        assert!(
            reference
                .verify_password(b"another passphrase!", &parsed)
                .is_err()
        );

        // A hash made elsewhere, with other (stronger) parameters, still verifies.
        let stronger = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(32 * 1024, 3, 1, None).unwrap(),
        );
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let theirs = stronger
            .hash_password(b"legacy passphrase ok", &salt)
            .unwrap()
            .to_string();
        let secret = SecretString::from("legacy passphrase ok");
        assert!(hasher.verify(&secret, Some(theirs.clone())).await.unwrap());
        assert!(
            !hasher
                .verify(&SecretString::from("legacy passphrase no"), Some(theirs))
                .await
                .unwrap()
        );
    }
}
