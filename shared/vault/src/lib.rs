//! The secrets vault's cryptography: envelope encryption with AES-256-GCM
//! (docs/architecture.md §5, keys and their rotation).
//!
//! - A **key-encryption key** (KEK) comes from configuration, never from the database. The
//!   [`KeyRing`] holds every KEK version still in use (`VAULT_KEKS=v1:<base64>,v2:<base64>`)
//!   and names the **active** one (`VAULT_KEK_ACTIVE=v2`), which wraps new data keys; older
//!   versions only unwrap, until a rotation has re-wrapped everything under the active one.
//! - A **data key** ([`DataKey`], 32 random bytes) per organization encrypts that org's
//!   secrets. It is stored only wrapped ([`KeyRing::wrap`]), with the version of the KEK that
//!   wrapped it. Rotating the KEK re-wraps data keys and never touches a secret's ciphertext.
//! - Every ciphertext is bound by its **associated data** ([`Aad`]) to where it belongs: the
//!   wrapped data key to its org, a secret's value to its org, project, name, kind and
//!   version, each under a context string naming the table and column. A ciphertext copied to
//!   another row, project or org fails to decrypt.
//!
//! Sealed layout (CRY-01): `0x01 || nonce (12 bytes, random) || ciphertext || tag (16 bytes)`.
//! The leading byte is the layout's version; the key's version travels beside the blob (the
//! `kek_version` column for wrapped keys; a secret's data key is its org's one key). Nonces are
//! 96 random bits from the OS: with one data key per org, far fewer than the 2^32 messages
//! per key that random GCM nonces allow are ever sealed under one key.
//!
//! Key material lives in `secrecy` boxes (zeroized on drop, redacted by `Debug`); no error
//! message here ever carries key bytes or plaintext.

use std::collections::BTreeMap;
use std::fmt;

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, ExposeSecretMut, SecretBox, SecretSlice, SecretString};
use uuid::Uuid;
use zeroize::{Zeroize, Zeroizing};

/// AES-256: 32-byte keys.
pub const KEY_LEN: usize = 32;
/// GCM's 96-bit nonce.
pub const NONCE_LEN: usize = 12;
/// GCM's 128-bit tag.
pub const TAG_LEN: usize = 16;
/// The first byte of every sealed blob: the layout version.
pub const FORMAT_V1: u8 = 1;
/// Bytes a sealed blob has beyond its plaintext.
pub const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

/// Context of a wrapped data key: table and column.
const DATA_KEY_CONTEXT: &str = "runwarden.vault.v1/org_data_keys.wrapped_key";
/// Context of a secret's value: table and column.
const SECRET_VALUE_CONTEXT: &str = "runwarden.vault.v1/project_secret_versions.ciphertext";

/// Why a cryptographic operation failed. Deliberately coarse: a wrong key, wrong associated
/// data, a flipped bit and a truncated blob are all [`VaultError::Decrypt`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("decryption failed (wrong key or associated data, or tampered ciphertext)")]
    Decrypt,
    #[error("key-encryption key version {0:?} is not in the key ring")]
    UnknownKek(String),
    #[error("encryption failed")]
    Encrypt,
    #[error("the decrypted value is not UTF-8")]
    NotUtf8,
}

/// Why `VAULT_KEKS` / `VAULT_KEK_ACTIVE` were refused. Never carries key material: entries
/// are named by position or by their (validated) version label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRingError {
    #[error("no key given (expected VERSION:BASE64[,VERSION:BASE64...])")]
    Empty,
    #[error("entry {0}: expected VERSION:BASE64")]
    Entry(usize),
    #[error("entry {0}: a version is 1 to 32 characters of A-Z a-z 0-9 _ -")]
    BadVersion(usize),
    #[error("version {0} is given twice")]
    Duplicate(String),
    #[error("version {0}: the key is not valid base64")]
    NotBase64(String),
    #[error("version {version}: the key is {len} bytes, expected exactly 32")]
    WrongLength { version: String, len: usize },
    #[error("version {0}: the key is one byte repeated; generate 32 random bytes")]
    WeakKey(String),
    #[error("the active version must be one of the ring's versions")]
    ActiveMissing,
}

/// A key-encryption key version label: `v1`, `2026-01`, ...
fn valid_version(version: &str) -> bool {
    (1..=32).contains(&version.len())
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// 32 key bytes, zeroized on drop, never printed.
struct KeyBytes(SecretBox<[u8; KEY_LEN]>);

impl KeyBytes {
    fn random() -> Self {
        let mut key = SecretBox::new(Box::new([0u8; KEY_LEN]));
        OsRng.fill_bytes(key.expose_secret_mut());
        Self(key)
    }

    fn from_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != KEY_LEN {
            return None;
        }
        let mut key = SecretBox::new(Box::new([0u8; KEY_LEN]));
        key.expose_secret_mut().copy_from_slice(bytes);
        Some(Self(key))
    }

    /// A cipher for this key (its key schedule is zeroized when dropped).
    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.0.expose_secret()))
    }
}

/// Associated data: a canonical, unambiguous encoding of where a ciphertext belongs. Every
/// part (the context first) is written as a 4-byte big-endian length and its bytes, so no
/// two different lists of parts encode the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aad(Vec<u8>);

impl Aad {
    /// Associated data under `context` (what is encrypted: table and column).
    pub fn new(context: &str) -> Self {
        Self(Vec::with_capacity(128)).part(context.as_bytes())
    }

    /// Appends one part.
    pub fn part(mut self, bytes: &[u8]) -> Self {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(bytes);
        self
    }

    /// An org's wrapped data key.
    pub fn data_key(org: Uuid) -> Self {
        Self::new(DATA_KEY_CONTEXT).part(org.as_bytes())
    }

    /// One version of one secret's value.
    pub fn secret_value(org: Uuid, project: Uuid, name: &str, kind: &str, version: u32) -> Self {
        Self::new(SECRET_VALUE_CONTEXT)
            .part(org.as_bytes())
            .part(project.as_bytes())
            .part(name.as_bytes())
            .part(kind.as_bytes())
            .part(&version.to_be_bytes())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// `0x01 || nonce || ciphertext || tag`, under a fresh random nonce.
fn seal_with(key: &KeyBytes, aad: &Aad, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let sealed = key
        .cipher()
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| VaultError::Encrypt)?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

fn open_with(key: &KeyBytes, aad: &Aad, blob: &[u8]) -> Result<Vec<u8>, VaultError> {
    if blob.len() < OVERHEAD || blob[0] != FORMAT_V1 {
        return Err(VaultError::Decrypt);
    }
    let (nonce, sealed) = blob[1..].split_at(NONCE_LEN);
    key.cipher()
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| VaultError::Decrypt)
}

/// An org's data key: 32 random bytes that encrypt its secrets. Stored only wrapped.
pub struct DataKey(KeyBytes);

impl DataKey {
    /// A fresh key from the operating system's generator.
    pub fn generate() -> Self {
        Self(KeyBytes::random())
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([REDACTED])")
    }
}

/// Encrypts `plaintext` under `key`, bound to `aad`: `0x01 || nonce || ciphertext || tag`.
pub fn seal(key: &DataKey, aad: &Aad, plaintext: &[u8]) -> Result<Vec<u8>, VaultError> {
    seal_with(&key.0, aad, plaintext)
}

/// Decrypts what [`seal`] made with the same key and associated data; anything else
/// (another key, other associated data, one changed bit) is [`VaultError::Decrypt`].
pub fn open(key: &DataKey, aad: &Aad, sealed: &[u8]) -> Result<SecretSlice<u8>, VaultError> {
    open_with(&key.0, aad, sealed).map(SecretSlice::from)
}

/// [`open`], for a value that is text.
pub fn open_string(key: &DataKey, aad: &Aad, sealed: &[u8]) -> Result<SecretString, VaultError> {
    let bytes = open_with(&key.0, aad, sealed)?;
    match String::from_utf8(bytes) {
        Ok(text) => Ok(SecretString::from(text)),
        Err(e) => {
            e.into_bytes().zeroize();
            Err(VaultError::NotUtf8)
        }
    }
}

/// A data key wrapped by one key-encryption key version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedKey {
    pub kek_version: String,
    /// `0x01 || nonce || encrypted key || tag`.
    pub bytes: Vec<u8>,
}

/// The key-encryption keys, parsed once from configuration. `Debug` names the versions only.
pub struct KeyRing {
    keks: BTreeMap<String, KeyBytes>,
    active: String,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("active", &self.active)
            .field("versions", &self.keks.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// Parses `VERSION:BASE64[,VERSION:BASE64...]` (each key exactly 32 bytes, standard
    /// base64) and the active version, which must be among them.
    pub fn parse(keks: &str, active: &str) -> Result<Self, KeyRingError> {
        let mut ring = BTreeMap::new();
        for (i, entry) in keks.split(',').map(str::trim).enumerate() {
            let position = i + 1;
            if entry.is_empty() {
                continue;
            }
            let (version, encoded) = entry.split_once(':').ok_or(KeyRingError::Entry(position))?;
            let version = version.trim();
            if !valid_version(version) {
                return Err(KeyRingError::BadVersion(position));
            }
            let decoded = Zeroizing::new(
                STANDARD
                    .decode(encoded.trim())
                    .map_err(|_| KeyRingError::NotBase64(version.to_owned()))?,
            );
            let key = KeyBytes::from_slice(&decoded).ok_or(KeyRingError::WrongLength {
                version: version.to_owned(),
                len: decoded.len(),
            })?;
            if decoded.iter().all(|b| *b == decoded[0]) {
                return Err(KeyRingError::WeakKey(version.to_owned()));
            }
            if ring.insert(version.to_owned(), key).is_some() {
                return Err(KeyRingError::Duplicate(version.to_owned()));
            }
        }
        if ring.is_empty() {
            return Err(KeyRingError::Empty);
        }
        let active = active.trim();
        if !ring.contains_key(active) {
            return Err(KeyRingError::ActiveMissing);
        }
        Ok(Self {
            keks: ring,
            active: active.to_owned(),
        })
    }

    /// A ring of one random key: development only (nothing it wraps survives a restart).
    pub fn generate(version: &str) -> Self {
        assert!(valid_version(version), "invalid key version label");
        Self {
            keks: BTreeMap::from([(version.to_owned(), KeyBytes::random())]),
            active: version.to_owned(),
        }
    }

    /// The version that wraps new data keys.
    pub fn active_version(&self) -> &str {
        &self.active
    }

    /// Every version in the ring, in order.
    pub fn versions(&self) -> impl Iterator<Item = &str> {
        self.keks.keys().map(String::as_str)
    }

    /// Wraps `key` under the active version, bound to `aad`.
    pub fn wrap(&self, key: &DataKey, aad: &Aad) -> Result<WrappedKey, VaultError> {
        let kek = self
            .keks
            .get(&self.active)
            .ok_or_else(|| VaultError::UnknownKek(self.active.clone()))?;
        Ok(WrappedKey {
            kek_version: self.active.clone(),
            bytes: seal_with(kek, aad, key.0.0.expose_secret())?,
        })
    }

    /// Unwraps a data key wrapped under `kek_version` (active or not) with the same `aad`.
    pub fn unwrap(
        &self,
        kek_version: &str,
        wrapped: &[u8],
        aad: &Aad,
    ) -> Result<DataKey, VaultError> {
        let kek = self
            .keks
            .get(kek_version)
            .ok_or_else(|| VaultError::UnknownKek(kek_version.to_owned()))?;
        let bytes = Zeroizing::new(open_with(kek, aad, wrapped)?);
        KeyBytes::from_slice(&bytes)
            .map(DataKey)
            .ok_or(VaultError::Decrypt)
    }
}

/// A fresh key-encryption key, standard base64: what an operator puts after `VERSION:` in
/// `VAULT_KEKS` (the same as `openssl rand -base64 32`).
pub fn generate_kek_base64() -> SecretString {
    let key = KeyBytes::random();
    SecretString::from(STANDARD.encode(key.0.expose_secret()))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn b64(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    fn random_b64() -> String {
        generate_kek_base64().expose_secret().to_owned()
    }

    fn secret_aad() -> (Uuid, Uuid, Aad) {
        let (org, project) = (Uuid::now_v7(), Uuid::now_v7());
        let aad = Aad::secret_value(org, project, "DB_PASSWORD", "secret_variable", 1);
        (org, project, aad)
    }

    #[test]
    fn seal_and_open_round_trip_with_the_documented_layout() {
        let key = DataKey::generate();
        let (_, _, aad) = secret_aad();
        for plaintext in [&b""[..], b"hunter2", &[0xffu8; 65536][..]] {
            let sealed = seal(&key, &aad, plaintext).unwrap();
            assert_eq!(sealed.len(), OVERHEAD + plaintext.len());
            assert_eq!(sealed[0], FORMAT_V1);
            if !plaintext.is_empty() {
                assert!(
                    !sealed
                        .windows(plaintext.len().min(7))
                        .any(|w| w == &plaintext[..plaintext.len().min(7)]),
                    "plaintext visible in the ciphertext"
                );
            }
            assert_eq!(
                open(&key, &aad, &sealed).unwrap().expose_secret(),
                plaintext
            );
        }
        let sealed = seal(&key, &aad, "clé secrète".as_bytes()).unwrap();
        assert_eq!(
            open_string(&key, &aad, &sealed).unwrap().expose_secret(),
            "clé secrète"
        );
        let binary = seal(&key, &aad, &[0xff, 0xfe]).unwrap();
        assert_eq!(
            open_string(&key, &aad, &binary).unwrap_err(),
            VaultError::NotUtf8
        );
    }

    #[test]
    fn any_other_associated_data_fails() {
        let key = DataKey::generate();
        let (org, project, aad) = secret_aad();
        let sealed = seal(&key, &aad, b"value").unwrap();
        let others = [
            Aad::secret_value(Uuid::now_v7(), project, "DB_PASSWORD", "secret_variable", 1),
            Aad::secret_value(org, Uuid::now_v7(), "DB_PASSWORD", "secret_variable", 1),
            Aad::secret_value(org, project, "DB_PASSWORD2", "secret_variable", 1),
            Aad::secret_value(org, project, "DB_PASSWORD", "api_key", 1),
            Aad::secret_value(org, project, "DB_PASSWORD", "secret_variable", 2),
            Aad::data_key(org),
            Aad::new("another context"),
        ];
        for other in others {
            assert_eq!(
                open(&key, &other, &sealed).unwrap_err(),
                VaultError::Decrypt,
                "{other:?}"
            );
        }
        assert!(open(&key, &aad, &sealed).is_ok());
        // And a data key of another org cannot open it even with the right data.
        assert_eq!(
            open(&DataKey::generate(), &aad, &sealed).unwrap_err(),
            VaultError::Decrypt
        );
    }

    #[test]
    fn associated_data_is_unambiguous() {
        let a = Aad::new("c").part(b"AB").part(b"C");
        let b = Aad::new("c").part(b"A").part(b"BC");
        let c = Aad::new("cA").part(b"B").part(b"C");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(b, c);
        // Names that concatenate alike still differ.
        let (org, project) = (Uuid::now_v7(), Uuid::now_v7());
        assert_ne!(
            Aad::secret_value(org, project, "A", "B_C", 1),
            Aad::secret_value(org, project, "A_B", "C", 1)
        );
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_fails() {
        let key = DataKey::generate();
        let (_, _, aad) = secret_aad();
        let sealed = seal(&key, &aad, b"a secret worth keeping").unwrap();
        for i in 0..sealed.len() {
            for bit in [0x01u8, 0x80] {
                let mut tampered = sealed.clone();
                tampered[i] ^= bit;
                assert_eq!(
                    open(&key, &aad, &tampered).unwrap_err(),
                    VaultError::Decrypt,
                    "byte {i} bit {bit:#x}"
                );
            }
        }
        for len in 0..sealed.len() {
            assert_eq!(
                open(&key, &aad, &sealed[..len]).unwrap_err(),
                VaultError::Decrypt
            );
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert_eq!(open(&key, &aad, &longer).unwrap_err(), VaultError::Decrypt);
    }

    #[test]
    fn nonces_never_repeat() {
        let key = DataKey::generate();
        let (_, _, aad) = secret_aad();
        let n = 100_000;
        let mut nonces = HashSet::with_capacity(n);
        let mut ciphertexts = HashSet::with_capacity(n);
        for _ in 0..n {
            let sealed = seal(&key, &aad, b"the same plaintext every time").unwrap();
            assert!(nonces.insert(sealed[1..1 + NONCE_LEN].to_vec()));
            assert!(ciphertexts.insert(sealed));
        }
    }

    #[test]
    fn wrap_and_unwrap_are_bound_to_the_org_and_the_kek() {
        let ring = KeyRing::parse(&format!("v1:{}", random_b64()), "v1").unwrap();
        let (org, _, aad) = secret_aad();
        let dek = DataKey::generate();
        let sealed = seal(&dek, &aad, b"value").unwrap();
        let wrapped = ring.wrap(&dek, &Aad::data_key(org)).unwrap();
        assert_eq!(wrapped.kek_version, "v1");
        assert_eq!(wrapped.bytes.len(), OVERHEAD + KEY_LEN);

        let back = ring
            .unwrap("v1", &wrapped.bytes, &Aad::data_key(org))
            .unwrap();
        assert_eq!(
            open(&back, &aad, &sealed).unwrap().expose_secret(),
            b"value"
        );
        // Another org's row.
        assert_eq!(
            ring.unwrap("v1", &wrapped.bytes, &Aad::data_key(Uuid::now_v7()))
                .unwrap_err(),
            VaultError::Decrypt
        );
        // A ring whose v1 is another key.
        let other = KeyRing::parse(&format!("v1:{}", random_b64()), "v1").unwrap();
        assert_eq!(
            other
                .unwrap("v1", &wrapped.bytes, &Aad::data_key(org))
                .unwrap_err(),
            VaultError::Decrypt
        );
        // A version the ring does not have.
        assert_eq!(
            ring.unwrap("v9", &wrapped.bytes, &Aad::data_key(org))
                .unwrap_err(),
            VaultError::UnknownKek("v9".into())
        );
    }

    #[test]
    fn rotation_rewraps_data_keys_and_leaves_ciphertexts_alone() {
        let (k1, k2) = (random_b64(), random_b64());
        let old = KeyRing::parse(&format!("v1:{k1}"), "v1").unwrap();
        let both = KeyRing::parse(&format!("v1:{k1},v2:{k2}"), "v2").unwrap();
        let new = KeyRing::parse(&format!("v2:{k2}"), "v2").unwrap();
        let (org, _, aad) = secret_aad();
        let dek = DataKey::generate();
        let sealed = seal(&dek, &aad, b"value").unwrap();
        let wrapped_v1 = old.wrap(&dek, &Aad::data_key(org)).unwrap();

        // During the rotation: the old version still unwraps; the active one wraps.
        let dek = both
            .unwrap(
                &wrapped_v1.kek_version,
                &wrapped_v1.bytes,
                &Aad::data_key(org),
            )
            .unwrap();
        let wrapped_v2 = both.wrap(&dek, &Aad::data_key(org)).unwrap();
        assert_eq!(wrapped_v2.kek_version, "v2");
        // After it, v1 is gone: what it wrapped is unreadable, the re-wrapped key is fine,
        // and the secret's ciphertext, untouched, opens.
        assert_eq!(
            new.unwrap("v1", &wrapped_v1.bytes, &Aad::data_key(org))
                .unwrap_err(),
            VaultError::UnknownKek("v1".into())
        );
        let dek = new
            .unwrap("v2", &wrapped_v2.bytes, &Aad::data_key(org))
            .unwrap();
        assert_eq!(open(&dek, &aad, &sealed).unwrap().expose_secret(), b"value");
    }

    #[test]
    fn ring_parsing_refuses_bad_keys_without_echoing_them() {
        let good = random_b64();
        let short = b64(&(0..31u8).collect::<Vec<_>>());
        let long = b64(&(0..33u8).collect::<Vec<_>>());
        let zeros = b64(&[0u8; 32]);
        let cases: Vec<(String, &str, KeyRingError)> = vec![
            (String::new(), "v1", KeyRingError::Empty),
            (" , ".into(), "v1", KeyRingError::Empty),
            (good.clone(), "v1", KeyRingError::Entry(1)),
            (format!("v1:{good},{good}"), "v1", KeyRingError::Entry(2)),
            (format!("v 1:{good}"), "v1", KeyRingError::BadVersion(1)),
            (format!(":{good}"), "v1", KeyRingError::BadVersion(1)),
            (
                "v1:not base64!".into(),
                "v1",
                KeyRingError::NotBase64("v1".into()),
            ),
            (
                format!("v1:{short}"),
                "v1",
                KeyRingError::WrongLength {
                    version: "v1".into(),
                    len: 31,
                },
            ),
            (
                format!("v1:{long}"),
                "v1",
                KeyRingError::WrongLength {
                    version: "v1".into(),
                    len: 33,
                },
            ),
            (
                format!("v1:{zeros}"),
                "v1",
                KeyRingError::WeakKey("v1".into()),
            ),
            (
                format!("v1:{good},v1:{}", random_b64()),
                "v1",
                KeyRingError::Duplicate("v1".into()),
            ),
            (format!("v1:{good}"), "v2", KeyRingError::ActiveMissing),
            (format!("v1:{good}"), "", KeyRingError::ActiveMissing),
        ];
        for (keks, active, expected) in cases {
            let err = KeyRing::parse(&keks, active).unwrap_err();
            assert_eq!(err, expected, "{keks:?} {active:?}");
            let message = err.to_string();
            for key in [&good, &short, &long, &zeros] {
                assert!(!message.contains(key.as_str()), "{message}");
            }
        }
        let ring = KeyRing::parse(&format!(" v1:{good} , v2:{} ,", random_b64()), " v2 ").unwrap();
        assert_eq!(ring.active_version(), "v2");
        assert_eq!(ring.versions().collect::<Vec<_>>(), ["v1", "v2"]);
    }

    #[test]
    fn debug_never_prints_key_material() {
        let raw: Vec<u8> = (1..=32u8).collect();
        let encoded = b64(&raw);
        let ring = KeyRing::parse(&format!("v1:{encoded}"), "v1").unwrap();
        let printed = format!("{ring:?} {ring:#?}");
        assert!(printed.contains("v1"), "{printed}");
        assert!(!printed.contains(&encoded), "{printed}");
        assert!(!printed.contains("[1, 2, 3"), "{printed}");
        assert!(!printed.contains("0x01"), "{printed}");

        let dek = DataKey::generate();
        assert_eq!(format!("{dek:?}"), "DataKey([REDACTED])");
        let aad = Aad::new("x");
        let opened = open(&dek, &aad, &seal(&dek, &aad, b"hunter2").unwrap()).unwrap();
        assert!(!format!("{opened:?}").contains("104"), "{opened:?}"); // b'h'
        let text = open_string(&dek, &aad, &seal(&dek, &aad, b"hunter2").unwrap()).unwrap();
        assert!(!format!("{text:?}").contains("hunter2"));
        assert!(!format!("{:?}", generate_kek_base64()).contains('='));
    }

    #[test]
    fn generated_rings_and_keys_are_random() {
        let a = KeyRing::generate("dev");
        let b = KeyRing::generate("dev");
        let org = Uuid::now_v7();
        let wrapped = a.wrap(&DataKey::generate(), &Aad::data_key(org)).unwrap();
        assert!(a.unwrap("dev", &wrapped.bytes, &Aad::data_key(org)).is_ok());
        assert_eq!(
            b.unwrap("dev", &wrapped.bytes, &Aad::data_key(org))
                .unwrap_err(),
            VaultError::Decrypt
        );
        let k1 = generate_kek_base64();
        let k2 = generate_kek_base64();
        assert_ne!(k1.expose_secret(), k2.expose_secret());
        assert_eq!(STANDARD.decode(k1.expose_secret()).unwrap().len(), KEY_LEN);
    }
}
