//! A verifier fetched from a JWKS URL, against a real HTTP server on 127.0.0.1 that serves
//! a key set the test changes: rotation (a new key is learnt on its first token), the
//! bound on refetches (a flood of forged `kid`s is one fetch), retirement (a key gone from
//! the JWKS is refused after the next fetch) and the background refresh of old keys.

use std::sync::atomic::AtomicUsize;

use axum::Json;
use axum::extract::State;
use axum::routing::get;

use super::*;

#[derive(Default)]
struct Served {
    keys: Mutex<Vec<Jwk>>,
    fetches: AtomicUsize,
}

struct JwksServer {
    url: String,
    served: Arc<Served>,
}

impl JwksServer {
    async fn start(signers: &[&TokenSigner]) -> Self {
        let served = Arc::new(Served::default());
        let server = Self {
            url: String::new(),
            served,
        };
        server.publish(signers);
        let app = axum::Router::new()
            .route(
                "/.well-known/jwks.json",
                get(|State(s): State<Arc<Served>>| async move {
                    s.fetches.fetch_add(1, Ordering::SeqCst);
                    Json(JwkSet {
                        keys: s.keys.lock().unwrap().clone(),
                    })
                }),
            )
            .with_state(server.served.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, ..server }
    }

    fn publish(&self, signers: &[&TokenSigner]) {
        *self.served.keys.lock().unwrap() = signers.iter().map(|s| s.jwk()).collect();
    }

    fn fetches(&self) -> usize {
        self.served.fetches.load(Ordering::SeqCst)
    }

    async fn verifier(&self, refresh: JwksRefresh) -> TokenVerifier {
        fetch_verifier_with(&reqwest::Client::new(), &self.url, refresh)
            .await
            .unwrap()
    }
}

fn token(signer: &TokenSigner) -> String {
    signer
        .sign(&AccessClaims::new("user-1", "session-1", now()))
        .unwrap()
}

const NO_WAIT: JwksRefresh = JwksRefresh {
    min_refetch_interval: Duration::ZERO,
    max_age: Duration::from_secs(3600),
};

#[tokio::test]
async fn an_unknown_kid_refetches_the_jwks_and_then_verifies() {
    let k1 = TokenSigner::generate("k1");
    let k2 = TokenSigner::generate("k2");
    let jwks = JwksServer::start(&[&k1]).await;
    let verifier = jwks.verifier(NO_WAIT).await;
    assert_eq!(jwks.fetches(), 1);
    assert!(
        verifier
            .verify_or_refetch::<AccessClaims>(&token(&k1))
            .await
            .is_ok()
    );
    assert_eq!(jwks.fetches(), 1, "a known kid does not fetch");

    // auth publishes k2 and signs with it: the first k2 token teaches the verifier k2.
    jwks.publish(&[&k2, &k1]);
    assert_eq!(
        verifier.verify::<AccessClaims>(&token(&k2)),
        Err(TokenError::UnknownKey),
        "the synchronous path never fetches"
    );
    assert!(
        verifier
            .verify_or_refetch::<AccessClaims>(&token(&k2))
            .await
            .is_ok()
    );
    assert_eq!(jwks.fetches(), 2);
    assert_eq!(verifier.kids(), ["k1", "k2"]);
    // Clones share the keys learnt.
    assert!(verifier.clone().verify::<AccessClaims>(&token(&k2)).is_ok());
    assert!(
        verifier
            .verify_or_refetch::<AccessClaims>(&token(&k1))
            .await
            .is_ok()
    );
    assert_eq!(jwks.fetches(), 2);
}

#[tokio::test]
async fn a_hundred_forged_kids_cost_one_fetch_and_stay_refused() {
    let k1 = TokenSigner::generate("k1");
    let jwks = JwksServer::start(&[&k1]).await;
    let verifier = jwks
        .verifier(JwksRefresh {
            min_refetch_interval: Duration::from_millis(800),
            ..NO_WAIT
        })
        .await;
    // Let the start-up fetch age past the interval: the flood may then cause one fetch.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let forged: Vec<String> = (0..100)
        .map(|i| token(&TokenSigner::generate(&format!("forged-{i}"))))
        .collect();
    let tasks: Vec<_> = forged
        .iter()
        .cloned()
        .map(|t| {
            let verifier = verifier.clone();
            tokio::spawn(async move { verifier.verify_or_refetch::<AccessClaims>(&t).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Err(TokenError::UnknownKey));
    }
    assert_eq!(
        jwks.fetches(),
        2,
        "100 concurrent unknown kids: one refetch"
    );
    for t in &forged {
        assert_eq!(
            verifier.verify_or_refetch::<AccessClaims>(t).await,
            Err(TokenError::UnknownKey)
        );
    }
    assert_eq!(jwks.fetches(), 2, "100 more within the interval: none");
    // A kid longer than any auth gives is unknown without a fetch, whatever the interval.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let long = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(format!(
            r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{}"}}"#,
            "x".repeat(65)
        )),
        URL_SAFE_NO_PAD.encode(serde_json::to_string(&AccessClaims::new("u", "s", now())).unwrap()),
        URL_SAFE_NO_PAD.encode([0u8; 64]),
    );
    assert_eq!(
        verifier.verify_or_refetch::<AccessClaims>(&long).await,
        Err(TokenError::UnknownKey)
    );
    // Malformed, alg=none and wrong-typ tokens are refused before any lookup.
    for bad in ["garbage", "a.b.c"] {
        assert_eq!(
            verifier.verify_or_refetch::<AccessClaims>(bad).await,
            Err(TokenError::Malformed)
        );
    }
    let media = k1
        .sign(&MediaClaims {
            iss: ISSUER.into(),
            sub: "u".into(),
            aud: MediaClaims::AUDIENCE.into(),
            exp: now() + 60,
            iat: now(),
            jti: "j".into(),
            sid: "s".into(),
            org: "o".into(),
            run: "r".into(),
            scope: "events".into(),
        })
        .unwrap();
    assert_eq!(
        verifier.verify_or_refetch::<AccessClaims>(&media).await,
        Err(TokenError::WrongType)
    );
    assert_eq!(jwks.fetches(), 2, "none of these fetch");
}

#[tokio::test]
async fn a_retired_key_is_refused_after_the_next_fetch() {
    let old = TokenSigner::generate("old");
    let new = TokenSigner::generate("new");
    let forged = TokenSigner::generate("forged");
    // Promoted: new signs, old is still published.
    let jwks = JwksServer::start(&[&new, &old]).await;
    let verifier = jwks.verifier(NO_WAIT).await;
    let old_token = token(&old);
    assert!(
        verifier
            .verify_or_refetch::<AccessClaims>(&old_token)
            .await
            .is_ok()
    );
    assert!(
        verifier
            .verify_or_refetch::<AccessClaims>(&token(&new))
            .await
            .is_ok()
    );

    // Retired: gone from the JWKS. Any fetch (here one caused by a forged kid) drops it.
    jwks.publish(&[&new]);
    assert!(
        verifier.verify::<AccessClaims>(&old_token).is_ok(),
        "until a fetch"
    );
    assert_eq!(
        verifier
            .verify_or_refetch::<AccessClaims>(&token(&forged))
            .await,
        Err(TokenError::UnknownKey)
    );
    assert_eq!(verifier.kids(), ["new"]);
    assert_eq!(
        verifier.verify_or_refetch::<AccessClaims>(&old_token).await,
        Err(TokenError::UnknownKey)
    );
    assert!(
        verifier
            .verify_or_refetch::<AccessClaims>(&token(&new))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn old_keys_refresh_in_the_background_and_an_outage_keeps_them() {
    let k1 = TokenSigner::generate("k1");
    let k2 = TokenSigner::generate("k2");
    let jwks = JwksServer::start(&[&k1, &k2]).await;
    let verifier = jwks
        .verifier(JwksRefresh {
            min_refetch_interval: Duration::ZERO,
            max_age: Duration::from_millis(200),
        })
        .await;
    jwks.publish(&[&k2]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A known kid answers at once from the keys held, and starts a refresh.
    assert!(
        verifier
            .verify_or_refetch::<AccessClaims>(&token(&k1))
            .await
            .is_ok()
    );
    for _ in 0..50 {
        if verifier.kids() == ["k2"] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        verifier.kids(),
        ["k2"],
        "k1 retired by the background refresh"
    );
    assert_eq!(jwks.fetches(), 2);

    // The JWKS answers garbage: the keys held keep verifying.
    *jwks.served.keys.lock().unwrap() = Vec::new();
    assert!(verifier.refresh().await.is_err());
    assert!(
        verifier
            .verify_or_refetch::<AccessClaims>(&token(&k2))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn a_static_verifier_never_fetches() {
    let k1 = TokenSigner::generate("k1");
    let verifier = k1.verifier();
    assert!(
        verifier
            .verify_or_refetch::<AccessClaims>(&token(&k1))
            .await
            .is_ok()
    );
    assert_eq!(
        verifier
            .verify_or_refetch::<AccessClaims>(&token(&TokenSigner::generate("k2")))
            .await,
        Err(TokenError::UnknownKey)
    );
    assert!(verifier.refresh().await.is_ok());
}
