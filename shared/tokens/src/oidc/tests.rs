//! The OIDC verifier against the key set of the test kit's fake Google (its RSA keys made
//! in each test by aws-lc-rs): the claim checks, the header attacks, the key cache
//! (TTL, one refetch per interval for unknown kids, stale keys while the JWKS is down) and
//! 200 concurrent verifications on a cold and on a warm cache.

use std::sync::atomic::Ordering;

use runwarden_testkit::oidc::{FakeGoogle, RsaKey, b64};
use serde_json::json;

use super::*;

const AUDIENCE: &str = "https://audit.runwarden.test/push/audit-events";
const EMAIL: &str = "pubsub-push@runwarden-test.iam.gserviceaccount.com";

/// Google's push-token claims, valid now for an hour.
fn claims() -> Value {
    let now = unix_now();
    json!({
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "azp": "1234567890",
        "sub": "1234567890",
        "email": EMAIL,
        "email_verified": true,
        "iat": now,
        "exp": now + 3600,
    })
}

fn with(mut claims: Value, patch: Value) -> Value {
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

/// The test kit's fake Google, for its key set (which counts its fetches, can be slowed
/// down, and can fail; through `Deref`), and this crate's configuration pointing at it.
struct Jwks {
    google: FakeGoogle,
    url: String,
}

impl std::ops::Deref for Jwks {
    type Target = runwarden_testkit::oidc::Jwks;

    fn deref(&self) -> &Self::Target {
        self.google.jwks()
    }
}

impl Jwks {
    async fn spawn(keys: &[&RsaKey]) -> Self {
        let google = FakeGoogle::with_keys(keys).await;
        Self {
            url: google.jwks_url().to_string(),
            google,
        }
    }

    fn config(&self) -> OidcConfig {
        OidcConfig::google(&self.url, AUDIENCE).with_email(EMAIL)
    }

    fn verifier(&self) -> OidcVerifier {
        OidcVerifier::new(self.config()).unwrap()
    }
}

#[tokio::test]
async fn a_google_push_token_verifies_and_returns_its_claims() {
    let key = RsaKey::generate("k1");
    let jwks = Jwks::spawn(&[&key]).await;
    let verifier = jwks.verifier();
    let verified = verifier.verify(&key.token(&claims())).await.unwrap();
    assert_eq!(verified["email"], EMAIL);
    assert_eq!(verified["aud"], AUDIENCE);

    #[derive(serde::Deserialize)]
    struct Push {
        email: String,
        sub: String,
    }
    let typed: Push = verifier.verify_as(&key.token(&claims())).await.unwrap();
    assert_eq!(
        (typed.email.as_str(), typed.sub.as_str()),
        (EMAIL, "1234567890")
    );
    // Google's other issuer spelling.
    let other = with(claims(), json!({"iss": "accounts.google.com"}));
    assert!(verifier.verify(&key.token(&other)).await.is_ok());
    assert_eq!(
        jwks.fetches(),
        1,
        "one fetch serves every later verification"
    );
}

#[tokio::test]
async fn issuer_audience_and_email_are_pinned() {
    let key = RsaKey::generate("k1");
    let jwks = Jwks::spawn(&[&key]).await;
    let verifier = jwks.verifier();
    let cases = [
        (json!({"iss": "https://evil.example"}), OidcError::Issuer),
        (
            json!({"aud": "https://other.example/push"}),
            OidcError::Audience,
        ),
        (json!({"aud": [AUDIENCE]}), OidcError::Audience),
        (
            json!({"aud": [AUDIENCE, "https://other.example"]}),
            OidcError::Audience,
        ),
        (
            json!({"email": "someone@runwarden-test.iam.gserviceaccount.com"}),
            OidcError::Email,
        ),
        (json!({"email": EMAIL.to_uppercase()}), OidcError::Email),
        (json!({"email": null}), OidcError::Email),
        (json!({"email_verified": false}), OidcError::Email),
        (json!({"email_verified": "true"}), OidcError::Email),
        (json!({"email_verified": null}), OidcError::Email),
        (json!({"sub": ""}), OidcError::Invalid),
    ];
    for (patch, expected) in cases {
        let token = key.token(&with(claims(), patch.clone()));
        assert_eq!(verifier.verify(&token).await, Err(expected), "{patch}");
    }

    // Without a required email, any verified Google identity for the audience passes.
    let config = OidcConfig::google(&jwks.url, AUDIENCE);
    let anyone = OidcVerifier::new(config).unwrap();
    let token = key.token(&with(
        claims(),
        json!({"email": null, "email_verified": null}),
    ));
    assert!(anyone.verify(&token).await.is_ok());
}

#[tokio::test]
async fn time_claims_are_required_and_checked_with_30s_leeway() {
    let key = RsaKey::generate("k1");
    let jwks = Jwks::spawn(&[&key]).await;
    let verifier = jwks.verifier();
    let now = unix_now();
    let expired = with(claims(), json!({"exp": now - 31, "iat": now - 3631}));
    assert_eq!(
        verifier.verify(&key.token(&expired)).await,
        Err(OidcError::Expired)
    );
    let within_leeway = with(claims(), json!({"exp": now - 29, "iat": now - 3629}));
    assert!(verifier.verify(&key.token(&within_leeway)).await.is_ok());
    let future_iat = with(claims(), json!({"iat": now + 120}));
    assert_eq!(
        verifier.verify(&key.token(&future_iat)).await,
        Err(OidcError::Invalid)
    );
    let future_nbf = with(claims(), json!({"nbf": now + 120}));
    assert_eq!(
        verifier.verify(&key.token(&future_nbf)).await,
        Err(OidcError::Invalid)
    );
    let past_nbf = with(claims(), json!({"nbf": now - 10}));
    assert!(verifier.verify(&key.token(&past_nbf)).await.is_ok());
    let string_exp = with(claims(), json!({"exp": (now + 3600).to_string()}));
    assert!(verifier.verify(&key.token(&string_exp)).await.is_err());
    for claim in ["exp", "iat", "iss", "aud", "sub"] {
        let missing = with(claims(), json!({ claim: null }));
        assert!(
            verifier.verify(&key.token(&missing)).await.is_err(),
            "without {claim}"
        );
    }
}

#[tokio::test]
async fn header_attacks_are_refused() {
    let key = RsaKey::generate("k1");
    let jwks = Jwks::spawn(&[&key]).await;
    let verifier = jwks.verifier();
    let body = b64(&serde_json::to_vec(&claims()).unwrap());

    // alg none, in any case, with an empty signature.
    for alg in ["none", "None", "NONE"] {
        let header = b64(&serde_json::to_vec(&json!({"alg": alg, "kid": "k1"})).unwrap());
        let token = format!("{header}.{body}.");
        assert!(verifier.verify(&token).await.is_err(), "{alg}");
    }
    // HS256 keyed with the public modulus (algorithm confusion).
    let header = b64(&serde_json::to_vec(&json!({"alg": "HS256", "kid": "k1"})).unwrap());
    let input = format!("{header}.{body}");
    let n = key.jwk()["n"].as_str().unwrap().to_owned();
    let hmac = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, n.as_bytes());
    let tag = aws_lc_rs::hmac::sign(&hmac, input.as_bytes());
    let token = format!("{input}.{}", b64(tag.as_ref()));
    assert_eq!(verifier.verify(&token).await, Err(OidcError::Algorithm));
    // Another RSA algorithm.
    let rs512 = key.token_with(&json!({"alg": "RS512", "kid": "k1"}), &claims());
    assert_eq!(verifier.verify(&rs512).await, Err(OidcError::Algorithm));
    // Key material or references in the header, and critical extensions.
    let attacker = RsaKey::generate("k1");
    for extra in [
        json!({"jwk": attacker.jwk()}),
        json!({"jku": "https://attacker.example/jwks"}),
        json!({"x5u": "https://attacker.example/cert"}),
        json!({"x5c": ["MIIB"]}),
        json!({"crit": ["exp"]}),
    ] {
        let mut header = attacker.header();
        header
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let token = attacker.token_with(&header, &claims());
        assert_eq!(
            verifier.verify(&token).await,
            Err(OidcError::HeaderKeys),
            "{extra}"
        );
    }
    // No kid, or a kid that is only ever a map key.
    let no_kid = key.token_with(&json!({"alg": "RS256"}), &claims());
    assert_eq!(verifier.verify(&no_kid).await, Err(OidcError::UnknownKey));
    for kid in ["", "../../etc/passwd", "' OR 1=1 --", &"x".repeat(1000)] {
        let token = key.token_with(&json!({"alg": "RS256", "kid": kid}), &claims());
        assert_eq!(
            verifier.verify(&token).await,
            Err(OidcError::UnknownKey),
            "{kid:.20}"
        );
    }
    // Garbage and oversized tokens.
    for token in ["", "a.b", "a.b.c", "....", &"a".repeat(9000)] {
        assert!(verifier.verify(token).await.is_err(), "{token:.20}");
    }
}

#[tokio::test]
async fn a_wrong_key_or_a_tampered_payload_fails_the_signature() {
    let key = RsaKey::generate("k1");
    let jwks = Jwks::spawn(&[&key]).await;
    let verifier = jwks.verifier();
    // Same kid, another key.
    let impostor = RsaKey::generate("k1");
    assert_eq!(
        verifier.verify(&impostor.token(&claims())).await,
        Err(OidcError::Signature)
    );
    // A genuine signature over other claims.
    let token = key.token(&claims());
    let forged_body = b64(&serde_json::to_vec(&with(claims(), json!({"sub": "9"}))).unwrap());
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!("{}.{forged_body}.{}", parts[0], parts[2]);
    assert_eq!(verifier.verify(&forged).await, Err(OidcError::Signature));
}

#[tokio::test]
async fn an_unknown_kid_refetches_at_most_once_per_interval() {
    let k1 = RsaKey::generate("k1");
    let k2 = RsaKey::generate("k2");
    let jwks = Jwks::spawn(&[&k1]).await;
    let verifier = jwks.verifier();
    assert!(verifier.verify(&k1.token(&claims())).await.is_ok());
    assert_eq!(jwks.fetches(), 1);
    // Google rotates in k2. Within the interval since the last fetch, neither k2 nor a
    // stream of forged kids fetches again.
    jwks.keys.lock().unwrap().push(k2.jwk());
    let forged_kid = k1.token_with(&json!({"alg": "RS256", "kid": "nope"}), &claims());
    for _ in 0..20 {
        assert_eq!(
            verifier.verify(&forged_kid).await,
            Err(OidcError::UnknownKey)
        );
    }
    assert_eq!(
        verifier.verify(&k2.token(&claims())).await,
        Err(OidcError::UnknownKey)
    );
    assert_eq!(
        jwks.fetches(),
        1,
        "no refetch within 60 s of the last fetch"
    );

    // With a short interval (production: 60 s), the first unknown kid after the interval
    // refetches once, however many follow.
    let k3 = RsaKey::generate("k3");
    let quick = OidcVerifier::new(OidcConfig {
        refetch_interval: Duration::from_millis(300),
        ..jwks.config()
    })
    .unwrap();
    assert!(quick.verify(&k1.token(&claims())).await.is_ok());
    assert_eq!(jwks.fetches(), 2);
    tokio::time::sleep(Duration::from_millis(350)).await;
    for _ in 0..20 {
        assert_eq!(quick.verify(&forged_kid).await, Err(OidcError::UnknownKey));
    }
    assert_eq!(jwks.fetches(), 3, "20 unknown kids, one refetch");
    // That refetch brought k2.
    assert!(quick.verify(&k2.token(&claims())).await.is_ok());
    // A key published after it waits for the interval.
    jwks.keys.lock().unwrap().push(k3.jwk());
    assert_eq!(
        quick.verify(&k3.token(&claims())).await,
        Err(OidcError::UnknownKey)
    );
    assert_eq!(jwks.fetches(), 3, "within the interval: no fetch");
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(quick.verify(&k3.token(&claims())).await.is_ok());
    assert_eq!(jwks.fetches(), 4);
}

#[tokio::test]
async fn keys_expire_after_their_ttl_and_survive_a_jwks_outage() {
    let key = RsaKey::generate("k1");
    let jwks = Jwks::spawn(&[&key]).await;
    let verifier = OidcVerifier::new(OidcConfig {
        keys_ttl: Duration::from_millis(150),
        ..jwks.config()
    })
    .unwrap();
    verifier.refresh().await.unwrap();
    assert_eq!(jwks.fetches(), 1);
    assert!(verifier.verify(&key.token(&claims())).await.is_ok());
    assert_eq!(jwks.fetches(), 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(verifier.verify(&key.token(&claims())).await.is_ok());
    assert_eq!(jwks.fetches(), 2, "an expired cache is fetched again");

    // The JWKS goes down: known keys keep working, and fetches back off.
    jwks.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for _ in 0..10 {
        assert!(verifier.verify(&key.token(&claims())).await.is_ok());
    }
    assert_eq!(jwks.fetches(), 3, "one failed attempt, then the back-off");
    // An unknown key during the outage is a transient failure, not an invalid token.
    let other = RsaKey::generate("k2");
    let err = verifier.verify(&other.token(&claims())).await.unwrap_err();
    assert_eq!(err, OidcError::KeysUnavailable);
    assert!(err.is_transient());
}

#[tokio::test]
async fn a_cold_cache_with_the_jwks_down_is_transient() {
    let key = RsaKey::generate("k1");
    let jwks = Jwks::spawn(&[&key]).await;
    jwks.failing.store(true, Ordering::SeqCst);
    let verifier = jwks.verifier();
    let err = verifier.verify(&key.token(&claims())).await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert_eq!(verifier.refresh().await, Err(OidcError::KeysUnavailable));
    // Nobody listening at all.
    let gone = OidcVerifier::new(OidcConfig::google("http://127.0.0.1:9/certs", AUDIENCE)).unwrap();
    assert_eq!(
        gone.verify(&key.token(&claims())).await,
        Err(OidcError::KeysUnavailable)
    );
}

#[tokio::test]
async fn unusable_keys_in_the_set_are_skipped() {
    let key = RsaKey::generate("k1");
    let jwks = Jwks::spawn(&[]).await;
    *jwks.keys.lock().unwrap() = vec![
        json!({"kty": "EC", "crv": "P-256", "kid": "ec", "x": "AA", "y": "AA"}),
        json!({"kty": "weird", "kid": "w"}),
        json!({"kty": "RSA", "use": "enc", "kid": "enc", "n": "AQAB", "e": "AQAB"}),
        with(key.jwk(), json!({"kid": null})),
        key.jwk(),
    ];
    assert!(jwks.verifier().verify(&key.token(&claims())).await.is_ok());

    // A set with no usable key is a failed fetch.
    *jwks.keys.lock().unwrap() = vec![json!({"kty": "oct", "kid": "k1", "k": "c2VjcmV0"})];
    let verifier = jwks.verifier();
    assert_eq!(
        verifier.verify(&key.token(&claims())).await,
        Err(OidcError::KeysUnavailable)
    );
}

#[test]
fn configuration_needs_an_issuer_and_an_audience() {
    let base = OidcConfig::google(GOOGLE_JWKS_URL, AUDIENCE);
    assert!(OidcVerifier::new(base.clone()).is_ok());
    for bad in [
        OidcConfig {
            audiences: vec![],
            ..base.clone()
        },
        OidcConfig {
            audiences: vec![String::new()],
            ..base.clone()
        },
        OidcConfig {
            issuers: vec![],
            ..base.clone()
        },
        base.clone().with_email(""),
    ] {
        assert!(matches!(OidcVerifier::new(bad), Err(OidcError::Config(_))));
    }
}

/// 200 verifications at once on one shared verifier, first with a cold cache (the JWKS
/// answers slowly so every task arrives while the fetch runs), then warm, then while an
/// expired cache is being refreshed: every one succeeds, with one fetch per refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_verifications_all_succeed_cold_and_warm() {
    let key = RsaKey::generate("k1");
    let jwks = Jwks::spawn(&[&key]).await;
    jwks.delay_ms.store(300, Ordering::SeqCst);
    let verifier = OidcVerifier::new(OidcConfig {
        keys_ttl: Duration::from_secs(2),
        ..jwks.config()
    })
    .unwrap();
    let token = key.token(&claims());

    async fn burst(verifier: &OidcVerifier, token: &str) -> Vec<Result<Claims, OidcError>> {
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let verifier = verifier.clone();
                let token = token.to_owned();
                tokio::spawn(async move { verifier.verify(&token).await })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        results
    }

    let cold = burst(&verifier, &token).await;
    let failures: Vec<_> = cold.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "cold: {} failed: {:?}",
        failures.len(),
        failures.first()
    );
    assert_eq!(jwks.fetches(), 1, "cold: exactly one fetch");

    let warm = burst(&verifier, &token).await;
    assert!(warm.iter().all(Result::is_ok), "warm");
    assert_eq!(jwks.fetches(), 1, "warm: no fetch");

    // Let the cache expire: the next burst runs while one slow refresh is in flight.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let refreshing = burst(&verifier, &token).await;
    assert!(refreshing.iter().all(Result::is_ok), "during a refresh");
    assert_eq!(jwks.fetches(), 2, "one refresh");
}
