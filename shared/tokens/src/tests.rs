//! The JWT attack catalogue (JWT-01..JWT-15 in docs/security.md) against the verifier.

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

use super::*;

/// Builds and signs arbitrary tokens, including malformed ones, with a raw Ed25519 key.
struct Forger {
    pair: Ed25519KeyPair,
    signer: TokenSigner,
}

impl Forger {
    fn new(kid: &str) -> Self {
        let doc = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
        Self {
            pair: Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap(),
            signer: TokenSigner::from_pkcs8_der(kid, doc.as_ref()).unwrap(),
        }
    }

    fn raw(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self.pair.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    fn header(&self, typ: &str) -> Value {
        json!({"alg": "EdDSA", "typ": typ, "kid": self.signer.kid()})
    }
}

fn access_claims() -> Value {
    serde_json::to_value(AccessClaims::new("user-1", "session-1", now())).unwrap()
}

fn verifier(f: &Forger) -> TokenVerifier {
    f.signer.verifier()
}

#[test]
fn a_genuine_access_token_verifies() {
    let f = Forger::new("k1");
    let claims = AccessClaims::new("user-1", "session-1", now());
    let token = f.signer.sign(&claims).unwrap();
    assert_eq!(verifier(&f).verify::<AccessClaims>(&token).unwrap(), claims);
    // The hand-built path produces the same acceptance, so the negative tests below only
    // differ in what they attack.
    let raw = f.raw(&f.header("at+jwt"), &access_claims());
    assert!(verifier(&f).verify::<AccessClaims>(&raw).is_ok());
}

#[test]
fn access_tokens_live_one_hour_and_media_tokens_five_minutes() {
    let c = AccessClaims::new("u", "s", 1000);
    assert_eq!(c.exp - c.iat, 3600);
    assert_eq!(MediaClaims::LIFETIME, Duration::from_secs(300));
}

#[test]
fn jwt01_alg_none_in_any_case_is_rejected() {
    let f = Forger::new("k1");
    for alg in ["none", "None", "NONE", "nOnE"] {
        let header = json!({"alg": alg, "typ": "at+jwt", "kid": "k1"});
        let token = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(access_claims().to_string())
        );
        assert!(
            verifier(&f).verify::<AccessClaims>(&token).is_err(),
            "{alg}"
        );
    }
}

#[test]
fn jwt02_hs256_keyed_with_the_public_key_is_rejected() {
    let f = Forger::new("k1");
    let jwk = serde_json::to_value(f.signer.jwk()).unwrap();
    let public_x = jwk["x"].as_str().unwrap().to_owned();
    for secret in [
        public_x.as_bytes().to_vec(),
        URL_SAFE_NO_PAD.decode(&public_x).unwrap(),
    ] {
        let header = json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(access_claims().to_string())
        );
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
        let tag = aws_lc_rs::hmac::sign(&key, input.as_bytes());
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()));
        assert_eq!(
            verifier(&f).verify::<AccessClaims>(&token),
            Err(TokenError::Algorithm)
        );
    }
}

#[test]
fn jwt03_tampered_claims_or_a_foreign_key_are_rejected() {
    let f = Forger::new("k1");
    let token = f
        .signer
        .sign(&AccessClaims::new("user-1", "s", now()))
        .unwrap();
    // Swap the payload, keep the signature.
    let mut parts: Vec<&str> = token.split('.').collect();
    let mut claims = access_claims();
    claims["sub"] = json!("someone-else");
    let forged_payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    parts[1] = &forged_payload;
    assert_eq!(
        verifier(&f).verify::<AccessClaims>(&parts.join(".")),
        Err(TokenError::Invalid)
    );

    // Same kid, different key (e.g. the staging key).
    let other = Forger::new("k1");
    let foreign = other
        .signer
        .sign(&AccessClaims::new("user-1", "s", now()))
        .unwrap();
    assert_eq!(
        verifier(&f).verify::<AccessClaims>(&foreign),
        Err(TokenError::Invalid)
    );
}

#[test]
fn jwt03_duplicate_claims_are_rejected() {
    let f = Forger::new("k1");
    let c = access_claims();
    let payload = format!(
        r#"{{"iss":"{}","sub":"user-1","sub":"admin","aud":"{}","exp":{},"iat":{},"jti":"j","sid":"s"}}"#,
        ISSUER,
        AccessClaims::AUDIENCE,
        c["exp"],
        c["iat"]
    );
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(f.header("at+jwt").to_string()),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = f.pair.sign(input.as_bytes());
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
    assert!(verifier(&f).verify::<AccessClaims>(&token).is_err());
}

#[test]
fn jwt05_kid_is_only_a_map_lookup() {
    let f = Forger::new("k1");
    for kid in ["../../dev/null", "' OR 1=1--", &"x".repeat(10_000), "k2"] {
        let header = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": kid});
        let token = f.raw(&header, &access_claims());
        assert!(
            verifier(&f).verify::<AccessClaims>(&token).is_err(),
            "{kid:.20}"
        );
    }
    let no_kid = f.raw(&json!({"alg": "EdDSA", "typ": "at+jwt"}), &access_claims());
    assert_eq!(
        verifier(&f).verify::<AccessClaims>(&no_kid),
        Err(TokenError::UnknownKey)
    );
}

#[test]
fn jwt06_keys_in_the_header_are_refused() {
    let f = Forger::new("k1");
    let attacker = Forger::new("k1");
    let jwk = serde_json::to_value(attacker.signer.jwk()).unwrap();
    let with_jwk = json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1", "jwk": jwk});
    let token = attacker.raw(&with_jwk, &access_claims());
    assert!(verifier(&f).verify::<AccessClaims>(&token).is_err());
    let with_jku =
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "k1", "jku": "http://127.0.0.1:9/jwks"});
    let token = f.raw(&with_jku, &access_claims());
    assert_eq!(
        verifier(&f).verify::<AccessClaims>(&token),
        Err(TokenError::HeaderKeys)
    );
}

#[test]
fn jwt07_missing_or_string_time_claims_are_rejected() {
    let f = Forger::new("k1");
    let mut no_exp = access_claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert!(
        verifier(&f)
            .verify::<AccessClaims>(&f.raw(&f.header("at+jwt"), &no_exp))
            .is_err()
    );

    let mut string_exp = access_claims();
    string_exp["exp"] = json!("9999999999");
    assert!(
        verifier(&f)
            .verify::<AccessClaims>(&f.raw(&f.header("at+jwt"), &string_exp))
            .is_err()
    );

    let mut string_nbf = access_claims();
    string_nbf["nbf"] = json!("99999999999");
    assert!(
        verifier(&f)
            .verify::<AccessClaims>(&f.raw(&f.header("at+jwt"), &string_nbf))
            .is_err()
    );

    for claim in ["iat", "iss", "aud", "sub"] {
        let mut c = access_claims();
        c.as_object_mut().unwrap().remove(claim);
        assert!(
            verifier(&f)
                .verify::<AccessClaims>(&f.raw(&f.header("at+jwt"), &c))
                .is_err(),
            "{claim}"
        );
    }
}

#[test]
fn jwt08_leeway_nbf_and_future_iat() {
    let f = Forger::new("k1");
    let at = |exp_offset: i64, iat_offset: i64| {
        let mut c = access_claims();
        c["exp"] = json!(now() + exp_offset);
        c["iat"] = json!(now() + iat_offset);
        f.raw(&f.header("at+jwt"), &c)
    };
    assert_eq!(
        verifier(&f).verify::<AccessClaims>(&at(-31, -3631)),
        Err(TokenError::Expired)
    );
    assert!(verifier(&f).verify::<AccessClaims>(&at(-29, -3629)).is_ok());
    assert_eq!(
        verifier(&f).verify::<AccessClaims>(&at(3600, 120)),
        Err(TokenError::Invalid)
    );

    let mut future_nbf = access_claims();
    future_nbf["nbf"] = json!(now() + 3600);
    assert!(
        verifier(&f)
            .verify::<AccessClaims>(&f.raw(&f.header("at+jwt"), &future_nbf))
            .is_err()
    );
}

#[test]
fn jwt09_audience_and_issuer_are_pinned() {
    let f = Forger::new("k1");
    let bad_auds = [
        json!("runwarden-media"),
        json!(["runwarden-api", "x"]),
        json!("x"),
    ];
    for aud in bad_auds {
        let mut c = access_claims();
        c["aud"] = aud.clone();
        let result = verifier(&f).verify::<AccessClaims>(&f.raw(&f.header("at+jwt"), &c));
        assert!(result.is_err(), "{aud}");
    }
    let mut c = access_claims();
    c["iss"] = json!("https://evil");
    assert!(
        verifier(&f)
            .verify::<AccessClaims>(&f.raw(&f.header("at+jwt"), &c))
            .is_err()
    );
}

#[test]
fn jwt10_typ_header_must_match_exactly() {
    let f = Forger::new("k1");
    for typ in ["media+jwt", "JWT", "AT+JWT", ""] {
        let token = f.raw(&f.header(typ), &access_claims());
        assert_eq!(
            verifier(&f).verify::<AccessClaims>(&token),
            Err(TokenError::WrongType),
            "{typ}"
        );
    }
    let no_typ = f.raw(&json!({"alg": "EdDSA", "kid": "k1"}), &access_claims());
    assert_eq!(
        verifier(&f).verify::<AccessClaims>(&no_typ),
        Err(TokenError::WrongType)
    );
}

#[test]
fn jwt12_jwt15_each_kind_is_rejected_by_the_other_validator() {
    let f = Forger::new("k1");
    let media = MediaClaims {
        iss: ISSUER.into(),
        sub: "user-1".into(),
        aud: MediaClaims::AUDIENCE.into(),
        exp: now() + 300,
        iat: now(),
        jti: "j".into(),
        sid: "s".into(),
        org: "o".into(),
        run: "r".into(),
        scope: "events".into(),
    };
    let media_token = f.signer.sign(&media).unwrap();
    let access_token = f
        .signer
        .sign(&AccessClaims::new("user-1", "s", now()))
        .unwrap();
    assert!(verifier(&f).verify::<MediaClaims>(&media_token).is_ok());
    assert!(verifier(&f).verify::<AccessClaims>(&media_token).is_err());
    assert!(verifier(&f).verify::<MediaClaims>(&access_token).is_err());

    // Even with the right typ header, the audience of the other kind is refused.
    let mut relabelled = serde_json::to_value(&media).unwrap();
    relabelled["aud"] = json!(MediaClaims::AUDIENCE);
    let token = f.raw(&f.header("at+jwt"), &relabelled);
    assert!(verifier(&f).verify::<AccessClaims>(&token).is_err());
}

#[test]
fn garbage_is_malformed_not_a_panic() {
    let f = Forger::new("k1");
    for token in [
        "",
        "a",
        "a.b",
        "a.b.c",
        "....",
        &"A".repeat(5000),
        "rt_abcdef",
    ] {
        assert!(verifier(&f).verify::<AccessClaims>(token).is_err());
    }
}

#[test]
fn jwks_publishes_only_the_public_key() {
    let f = Forger::new("k1");
    let jwks = serde_json::to_value(f.signer.jwks()).unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["kid"], "k1");
    assert!(key.get("d").is_none());
    assert_eq!(
        URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap(),
        f.pair.public_key().as_ref()
    );
    // A verifier built from the published JSON accepts the signer's tokens.
    let parsed: Jwks = serde_json::from_value(jwks).unwrap();
    let token = f.signer.sign(&AccessClaims::new("u", "s", now())).unwrap();
    assert!(
        TokenVerifier::from_jwks(&parsed)
            .unwrap()
            .verify::<AccessClaims>(&token)
            .is_ok()
    );
}

#[test]
fn pem_keys_from_openssl_load() {
    // `openssl genpkey -algorithm ed25519` output (PKCS#8 v1), a throwaway test key.
    let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIBzvhBpWtAgdQxzPFsIW9bQ5cGxwZBlu8qFyPnfmzYsE\n-----END PRIVATE KEY-----\n";
    let signer = TokenSigner::from_pem("k1", pem).unwrap();
    let token = signer.sign(&AccessClaims::new("u", "s", now())).unwrap();
    assert!(signer.verifier().verify::<AccessClaims>(&token).is_ok());
    assert!(TokenSigner::from_pem("k1", "not a key").is_err());
    assert!(TokenSigner::from_pem("", pem).is_err());
}
