//! auth during a key rotation: it publishes its current, next and previous keys, signs with
//! the current one only, and accepts the previous key's tokens until that key is retired
//! (the end-to-end rotation across functions is `runwarden-e2e::signing_key_rotates_...`).

use reqwest::StatusCode;
use runwarden_tokens::{AccessClaims, SigningKeys, TokenSigner, TokenVerifier};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::helpers::*;

fn kid_of(token: &str) -> String {
    use base64::Engine;
    let header = token.split('.').next().unwrap();
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
    )
    .unwrap();
    header["kid"].as_str().unwrap().to_owned()
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn jwks_serves_current_next_and_previous_and_only_current_signs(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let (old_der, current_der, next_der) =
        (generate_key_der(), generate_key_der(), generate_key_der());
    let old = TokenSigner::from_pkcs8_der("auth-1", &old_der).unwrap();
    let current = TokenSigner::from_pkcs8_der("auth-2", &current_der).unwrap();
    let next = TokenSigner::from_pkcs8_der("auth-3", &next_der).unwrap();
    let keys = SigningKeys::new(
        TokenSigner::from_pkcs8_der("auth-2", &current_der).unwrap(),
        Some(TokenSigner::from_pkcs8_der("auth-3", &next_der).unwrap()),
        vec![old.jwk()],
    )
    .unwrap();
    let app = spawn_app_with_keys(options, current_der, keys).await;

    let jwks: Value = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, ["auth-2", "auth-3", "auth-1"]);
    assert!(
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k.get("d").is_none()),
        "public halves only"
    );

    // Sign-in and refresh mint with the current key only.
    let s = app.signup("rotation").await;
    assert_eq!(kid_of(&s.access), "auth-2");
    let (status, refreshed) = app
        .post(
            "/v1/auth/refresh",
            None,
            serde_json::json!({"refresh_token": s.refresh}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let access = refreshed["access_token"].as_str().unwrap();
    assert_eq!(kid_of(access), "auth-2");

    // The same session under the previous key (a token issued before the promotion) and
    // under the next key: both published, both accepted; an unpublished key is not.
    let verifier = TokenVerifier::from_jwks(&serde_json::from_value(jwks).unwrap()).unwrap();
    let claims: AccessClaims = verifier.verify(access).unwrap();
    let now = chrono::Utc::now().timestamp();
    let same_session = AccessClaims::new(&claims.sub, &claims.sid, now);
    for (signer, expected) in [
        (&old, StatusCode::OK),
        (&current, StatusCode::OK),
        (&next, StatusCode::OK),
        (&TokenSigner::generate("auth-4"), StatusCode::UNAUTHORIZED),
        (&TokenSigner::generate("auth-1"), StatusCode::UNAUTHORIZED),
    ] {
        let token = signer.sign(&same_session).unwrap();
        let (status, body) = app.get("/v1/me", &token).await;
        assert_eq!(status, expected, "{}: {body}", signer.kid());
    }
}
