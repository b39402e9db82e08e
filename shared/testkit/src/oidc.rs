//! The one fake Google OpenID provider of the tests (no network, no Google account): RSA
//! keys generated per test, compact JWS minting (RS256, and the attacks: HS256 with a
//! public value, `alg: none`, a key in the header), ID tokens with Google's claims, and a
//! local provider strict the way Google is: `/authorize` accepts only `response_type=code`
//! with an S256 challenge, `/token` refuses a wrong client, redirect URI or PKCE verifier
//! and spends each code once, and `/oauth2/v3/certs` publishes the keys (counting fetches;
//! a test can slow it down or make it fail). Used by auth's Google sign-in tests, audit's
//! and the other functions' push-token tests, and the token crate's verifier tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::KeyPair as _;
use axum::extract::{Form, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use url::Url;

pub const CLIENT_ID: &str = "runwarden-test.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "test-only-client-secret";
/// Where the provider sends the browser back. Tests then call the app's own address with
/// the same path and query, as the front door would.
pub const REDIRECT_URI: &str = "https://runwarden.test/v1/auth/google/callback";
/// Google's issuer (the verifiers also accept its other spelling, `accounts.google.com`).
pub const ISSUER: &str = "https://accounts.google.com";
/// The `kid` of the provider's own signing key.
pub const KID: &str = "test-idp-key-1";

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).unwrap();
    b64(&buf)
}

pub fn sha256(input: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, input)
        .as_ref()
        .to_vec()
}

/// The PKCE S256 challenge of a verifier (RFC 7636 §4.2), computed independently of the app.
pub fn s256(verifier: &str) -> String {
    b64(&sha256(verifier.as_bytes()))
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An RSA key generated for one test run; it is never written anywhere.
pub struct RsaKey {
    pair: aws_lc_rs::rsa::KeyPair,
    pub kid: String,
}

impl RsaKey {
    pub fn generate(kid: &str) -> Arc<Self> {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        Arc::new(Self {
            pair,
            kid: kid.into(),
        })
    }

    pub fn jwk(&self) -> Value {
        let public = self.pair.public_key();
        json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero()),
        })
    }

    pub fn sign(&self, signing_input: &str) -> Vec<u8> {
        let mut signature = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .unwrap();
        signature
    }

    /// The header of an RS256 token by this key.
    pub fn header(&self) -> Value {
        json!({"alg": "RS256", "kid": self.kid, "typ": "JWT"})
    }

    /// An RS256 token by this key with `header`.
    pub fn token_with(&self, header: &Value, claims: &Value) -> String {
        jws(header, claims, |m| self.sign(m))
    }

    /// An RS256 token by this key.
    pub fn token(&self, claims: &Value) -> String {
        self.token_with(&self.header(), claims)
    }
}

/// `claims` with `patch` merged on top (a `null` removes a claim).
pub fn with(mut claims: Value, patch: Value) -> Value {
    let map = claims.as_object_mut().unwrap();
    for (name, value) in patch.as_object().unwrap() {
        if value.is_null() {
            map.remove(name);
        } else {
            map.insert(name.clone(), value.clone());
        }
    }
    claims
}

/// A compact JWS: `b64(header).b64(claims).b64(signature)`.
pub fn jws(header: &Value, claims: &Value, sign: impl FnOnce(&str) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        b64(&serde_json::to_vec(header).unwrap()),
        b64(&serde_json::to_vec(claims).unwrap())
    );
    let signature = b64(&sign(&input));
    format!("{input}.{signature}")
}

/// How the provider signs the next ID token.
#[derive(Clone)]
pub enum Signing {
    /// RS256 with this key, its `kid` in the header.
    Rs256(Arc<RsaKey>),
    /// HS256 with this secret, under the provider's `kid` (algorithm confusion).
    Hs256(Vec<u8>),
    /// `alg: none` and an empty signature.
    Unsigned,
    /// RS256 by this key, which the header itself carries as `jwk` and `jku`.
    KeyInHeader(Arc<RsaKey>),
}

/// The ID token the provider mints for the next authorization: Google's claims for
/// `subject`/`email` (verified, this attempt's nonce, valid for an hour), with `patch`
/// merged on top (a `null` removes a claim).
#[derive(Clone)]
pub struct IdToken {
    subject: String,
    email: String,
    patch: serde_json::Map<String, Value>,
    signing: Option<Signing>,
}

impl IdToken {
    pub fn new(subject: &str, email: &str) -> Self {
        Self {
            subject: subject.into(),
            email: email.into(),
            patch: serde_json::Map::new(),
            signing: None,
        }
    }

    pub fn with(mut self, patch: Value) -> Self {
        self.patch.extend(patch.as_object().unwrap().clone());
        self
    }

    pub fn signed(mut self, signing: Signing) -> Self {
        self.signing = Some(signing);
        self
    }

    pub fn mint(&self, provider_key: &Arc<RsaKey>, nonce: Option<&str>) -> String {
        let now = unix_now();
        let mut claims = json!({
            "iss": ISSUER,
            "azp": CLIENT_ID,
            "aud": CLIENT_ID,
            "sub": self.subject,
            "email": self.email,
            "email_verified": true,
            "iat": now,
            "exp": now + 3600,
        });
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        let map = claims.as_object_mut().unwrap();
        for (name, value) in &self.patch {
            if value.is_null() {
                map.remove(name);
            } else {
                map.insert(name.clone(), value.clone());
            }
        }
        match self
            .signing
            .clone()
            .unwrap_or_else(|| Signing::Rs256(provider_key.clone()))
        {
            Signing::Rs256(key) => jws(
                &json!({"alg": "RS256", "kid": key.kid, "typ": "JWT"}),
                &claims,
                |m| key.sign(m),
            ),
            Signing::Hs256(secret) => jws(
                &json!({"alg": "HS256", "kid": KID, "typ": "JWT"}),
                &claims,
                |m| {
                    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
                    aws_lc_rs::hmac::sign(&key, m.as_bytes()).as_ref().to_vec()
                },
            ),
            Signing::Unsigned => jws(
                &json!({"alg": "none", "kid": KID, "typ": "JWT"}),
                &claims,
                |_| Vec::new(),
            ),
            Signing::KeyInHeader(key) => {
                let header = json!({
                    "alg": "RS256",
                    "kid": key.kid,
                    "typ": "JWT",
                    "jwk": key.jwk(),
                    "jku": "https://attacker.example/jwks",
                });
                jws(&header, &claims, |m| key.sign(m))
            }
        }
    }
}

// The local provider.

struct Grant {
    client_id: String,
    redirect_uri: String,
    nonce: Option<String>,
    challenge: String,
    method: String,
    id_token: IdToken,
}

/// One call to `/token`: the form the app sent and the status the provider answered.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub form: HashMap<String, String>,
    pub status: StatusCode,
}

#[derive(Default)]
struct Recorded {
    next: Option<IdToken>,
    authorizations: Vec<HashMap<String, String>>,
    grants: HashMap<String, Grant>,
    token_requests: Vec<TokenRequest>,
}

/// The provider's key set endpoint: the keys it publishes, how often it was fetched, and
/// what a test makes it do (answer slowly, or fail).
#[derive(Default)]
pub struct Jwks {
    pub keys: Mutex<Vec<Value>>,
    pub fetches: AtomicUsize,
    pub delay_ms: AtomicUsize,
    pub failing: AtomicBool,
}

impl Jwks {
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as usize, Ordering::SeqCst);
    }

    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }
}

struct IdpState {
    key: Arc<RsaKey>,
    recorded: Mutex<Recorded>,
    jwks: Jwks,
}

fn bad_request(error: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": error}))).into_response()
}

async fn idp_authorize(
    State(idp): State<Arc<IdpState>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut recorded = idp.recorded.lock().unwrap();
    recorded.authorizations.push(query.clone());
    let param = |name: &str| query.get(name).map(String::as_str);
    if param("response_type") != Some("code")
        || param("client_id") != Some(CLIENT_ID)
        || param("redirect_uri") != Some(REDIRECT_URI)
        || param("code_challenge_method") != Some("S256")
        || param("code_challenge").is_none_or(|c| c.len() != 43)
        || param("state").is_none_or(str::is_empty)
    {
        return bad_request("invalid_request");
    }
    let Some(id_token) = recorded.next.clone() else {
        return bad_request("the test did not say which ID token to mint");
    };
    let code = format!("4/{}", random_b64(32));
    recorded.grants.insert(
        code.clone(),
        Grant {
            client_id: query["client_id"].clone(),
            redirect_uri: query["redirect_uri"].clone(),
            nonce: query.get("nonce").cloned(),
            challenge: query["code_challenge"].clone(),
            method: query["code_challenge_method"].clone(),
            id_token,
        },
    );
    let mut callback = Url::parse(&query["redirect_uri"]).unwrap();
    callback
        .query_pairs_mut()
        .append_pair("state", &query["state"])
        .append_pair("code", &code)
        .append_pair(
            "scope",
            "email openid https://www.googleapis.com/auth/userinfo.email",
        )
        .append_pair("authuser", "0")
        .append_pair("prompt", "consent");
    (
        StatusCode::FOUND,
        [(header::LOCATION, callback.to_string())],
    )
        .into_response()
}

pub fn is_pkce_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// The checks of a real token endpoint. The code is spent before anything else is checked.
fn redeem(
    idp: &IdpState,
    recorded: &mut Recorded,
    form: &HashMap<String, String>,
) -> Result<String, &'static str> {
    let field = |name: &str| form.get(name).map(String::as_str);
    if field("grant_type") != Some("authorization_code") {
        return Err("unsupported_grant_type");
    }
    if field("client_id") != Some(CLIENT_ID) || field("client_secret") != Some(CLIENT_SECRET) {
        return Err("invalid_client");
    }
    let grant = recorded
        .grants
        .remove(field("code").unwrap_or_default())
        .ok_or("invalid_grant")?;
    if field("client_id") != Some(grant.client_id.as_str())
        || field("redirect_uri") != Some(grant.redirect_uri.as_str())
    {
        return Err("invalid_grant");
    }
    let verifier = field("code_verifier").ok_or("invalid_grant")?;
    if grant.method != "S256" || !is_pkce_verifier(verifier) || s256(verifier) != grant.challenge {
        return Err("invalid_grant");
    }
    Ok(grant.id_token.mint(&idp.key, grant.nonce.as_deref()))
}

async fn idp_token(
    State(idp): State<Arc<IdpState>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut recorded = idp.recorded.lock().unwrap();
    let outcome = redeem(&idp, &mut recorded, &form);
    let status = if outcome.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    recorded.token_requests.push(TokenRequest { form, status });
    match outcome {
        Ok(id_token) => Json(json!({
            "access_token": "ya29.test-access-token",
            "expires_in": 3599,
            "scope": "openid email",
            "token_type": "Bearer",
            "id_token": id_token,
        }))
        .into_response(),
        Err(error) => bad_request(error),
    }
}

async fn idp_jwks(State(idp): State<Arc<IdpState>>) -> Response {
    let jwks = &idp.jwks;
    jwks.fetches.fetch_add(1, Ordering::SeqCst);
    let delay = jwks.delay_ms.load(Ordering::SeqCst) as u64;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if jwks.failing.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let keys = jwks.keys.lock().unwrap().clone();
    (
        [(
            header::CACHE_CONTROL,
            "public, max-age=21600, must-revalidate",
        )],
        Json(json!({ "keys": keys })),
    )
        .into_response()
}

/// A local Google: `/authorize` and `/token` of the authorization-code flow with PKCE, and
/// the key set at `/oauth2/v3/certs`. Served until the test's runtime ends.
pub struct FakeGoogle {
    /// Where it listens (`http://127.0.0.1:port/`).
    pub base: Url,
    state: Arc<IdpState>,
}

impl FakeGoogle {
    /// A provider that signs ID tokens with a key of its own ([`KID`]) and publishes it.
    pub async fn spawn() -> Self {
        let key = RsaKey::generate(KID);
        let google = Self::serve(key.clone()).await;
        google.set_keys(&[&key]);
        google
    }

    /// A provider that publishes exactly `keys` (the test signs its tokens itself).
    pub async fn with_keys(keys: &[&RsaKey]) -> Self {
        let google = Self::serve(RsaKey::generate(KID)).await;
        google.set_keys(keys);
        google
    }

    async fn serve(key: Arc<RsaKey>) -> Self {
        let state = Arc::new(IdpState {
            key,
            recorded: Mutex::default(),
            jwks: Jwks::default(),
        });
        let router = Router::new()
            .route("/authorize", get(idp_authorize))
            .route("/token", post(idp_token))
            .route("/oauth2/v3/certs", get(idp_jwks))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { base, state }
    }

    pub fn authorize_url(&self) -> Url {
        self.base.join("authorize").unwrap()
    }

    pub fn token_url(&self) -> Url {
        self.base.join("token").unwrap()
    }

    pub fn jwks_url(&self) -> Url {
        self.base.join("oauth2/v3/certs").unwrap()
    }

    /// The key it signs ID tokens with.
    pub fn key(&self) -> &Arc<RsaKey> {
        &self.state.key
    }

    pub fn jwks(&self) -> &Jwks {
        &self.state.jwks
    }

    /// Publishes exactly `keys`.
    pub fn set_keys(&self, keys: &[&RsaKey]) {
        *self.state.jwks.keys.lock().unwrap() = keys.iter().map(|k| k.jwk()).collect();
    }

    /// The ID token the provider mints for the following authorizations.
    pub fn will_issue(&self, token: IdToken) {
        self.state.recorded.lock().unwrap().next = Some(token);
    }

    pub fn authorizations(&self) -> Vec<HashMap<String, String>> {
        self.state.recorded.lock().unwrap().authorizations.clone()
    }

    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.state.recorded.lock().unwrap().token_requests.clone()
    }

    pub fn jwks_fetches(&self) -> usize {
        self.state.jwks.fetches()
    }
}

/// What Pub/Sub's push token carries for `audience` from service account `email` (Google's
/// documented shape), valid now for an hour.
pub fn push_claims(audience: &str, email: &str) -> Value {
    let now = unix_now();
    json!({
        "iss": ISSUER,
        "aud": audience,
        "azp": "113774264463038321964",
        "sub": "113774264463038321964",
        "email": email,
        "email_verified": true,
        "iat": now,
        "exp": now + 3600,
    })
}
