//! Google sign-in against a local OpenID provider started by each test (no network, no
//! Google account): the authorization-code flow with PKCE, the single-use `state` bound to
//! a browser cookie, and ID-token verification (SSO-01..04 in the security catalogue).
//!
//! The provider is strict the way Google is: `/authorize` accepts only `response_type=code`
//! with an S256 challenge, `/token` refuses a wrong client, redirect URI or PKCE verifier and
//! spends each code once, and `/jwks` publishes the one RSA key it signs ID tokens with.
//! Each test says which ID token the provider will mint next (claims and signing).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::KeyPair as _;
use axum::extract::{Form, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use runwarden_auth::config::GoogleConfig;
use runwarden_platform::request::TrustedProxyHops;
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use url::Url;

use crate::helpers::{PASSWORD, TestApp, spawn_app, spawn_app_with, unique_email};

const CLIENT_ID: &str = "runwarden-test.apps.googleusercontent.com";
const CLIENT_SECRET: &str = "test-only-client-secret";
/// Where the provider sends the browser back. The tests then call the app's own address
/// with the same path and query, as the front door would.
const REDIRECT_URI: &str = "https://runwarden.test/v1/auth/google/callback";
/// Google's issuer: the app then also accepts its other spelling, `accounts.google.com`.
const ISSUER: &str = "https://accounts.google.com";
const KID: &str = "test-idp-key-1";
const CALLBACK: &str = "/v1/auth/google/callback";

// ---------------------------------------------------------------------------------------
// Tokens and keys
// ---------------------------------------------------------------------------------------

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).unwrap();
    b64(&buf)
}

fn sha256(input: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, input)
        .as_ref()
        .to_vec()
}

/// The PKCE S256 challenge of a verifier (RFC 7636 §4.2), computed independently of the app.
fn s256(verifier: &str) -> String {
    b64(&sha256(verifier.as_bytes()))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An RSA key generated for one test run; it is never written anywhere.
struct RsaKey {
    pair: aws_lc_rs::rsa::KeyPair,
    kid: String,
}

impl RsaKey {
    fn generate(kid: &str) -> Arc<Self> {
        let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        Arc::new(Self {
            pair,
            kid: kid.into(),
        })
    }

    fn jwk(&self) -> Value {
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

    fn sign(&self, signing_input: &str) -> Vec<u8> {
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
}

/// A compact JWS: `b64(header).b64(claims).b64(signature)`.
fn jws(header: &Value, claims: &Value, sign: impl FnOnce(&str) -> Vec<u8>) -> String {
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
enum Signing {
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
struct IdToken {
    subject: String,
    email: String,
    patch: serde_json::Map<String, Value>,
    signing: Option<Signing>,
}

impl IdToken {
    fn new(subject: &str, email: &str) -> Self {
        Self {
            subject: subject.into(),
            email: email.into(),
            patch: serde_json::Map::new(),
            signing: None,
        }
    }

    fn with(mut self, patch: Value) -> Self {
        self.patch.extend(patch.as_object().unwrap().clone());
        self
    }

    fn signed(mut self, signing: Signing) -> Self {
        self.signing = Some(signing);
        self
    }

    fn mint(&self, provider_key: &Arc<RsaKey>, nonce: Option<&str>) -> String {
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

// ---------------------------------------------------------------------------------------
// The local provider
// ---------------------------------------------------------------------------------------

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
struct TokenRequest {
    form: HashMap<String, String>,
    status: StatusCode,
}

#[derive(Default)]
struct Recorded {
    next: Option<IdToken>,
    authorizations: Vec<HashMap<String, String>>,
    grants: HashMap<String, Grant>,
    token_requests: Vec<TokenRequest>,
    jwks_fetches: usize,
}

struct IdpState {
    key: Arc<RsaKey>,
    recorded: Mutex<Recorded>,
}

struct Idp {
    base: Url,
    state: Arc<IdpState>,
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

fn is_pkce_verifier(verifier: &str) -> bool {
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
    idp.recorded.lock().unwrap().jwks_fetches += 1;
    (
        [(
            header::CACHE_CONTROL,
            "public, max-age=21600, must-revalidate",
        )],
        Json(json!({"keys": [idp.key.jwk()]})),
    )
        .into_response()
}

impl Idp {
    async fn spawn() -> Self {
        let state = Arc::new(IdpState {
            key: RsaKey::generate(KID),
            recorded: Mutex::default(),
        });
        let router = Router::new()
            .route("/authorize", get(idp_authorize))
            .route("/token", post(idp_token))
            .route("/jwks", get(idp_jwks))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = Url::parse(&format!("http://{}/", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self { base, state }
    }

    fn config(&self) -> GoogleConfig {
        GoogleConfig {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_url: Url::parse(REDIRECT_URI).unwrap(),
            issuer: ISSUER.into(),
            auth_url: self.base.join("authorize").unwrap(),
            token_url: self.base.join("token").unwrap(),
            jwks_url: self.base.join("jwks").unwrap(),
        }
    }

    /// The ID token the provider mints for the following authorizations.
    fn will_issue(&self, token: IdToken) {
        self.state.recorded.lock().unwrap().next = Some(token);
    }

    fn authorizations(&self) -> Vec<HashMap<String, String>> {
        self.state.recorded.lock().unwrap().authorizations.clone()
    }

    fn token_requests(&self) -> Vec<TokenRequest> {
        self.state.recorded.lock().unwrap().token_requests.clone()
    }

    fn jwks_fetches(&self) -> usize {
        self.state.recorded.lock().unwrap().jwks_fetches
    }
}

// ---------------------------------------------------------------------------------------
// The browser's side of the flow
// ---------------------------------------------------------------------------------------

async fn setup(options: PgConnectOptions) -> (TestApp, Idp) {
    let idp = Idp::spawn().await;
    let app = spawn_app_with(options, Some(idp.config()), TrustedProxyHops(1)).await;
    (app, idp)
}

/// What `GET /v1/auth/google/start` gave the browser.
struct Started {
    authorize_url: Url,
    params: HashMap<String, String>,
    /// The whole `Set-Cookie` header.
    set_cookie: String,
    /// `rw_sso=<binding>`, as the browser sends it back.
    cookie: String,
    state: String,
}

async fn start(app: &TestApp) -> Started {
    let response = app
        .client
        .get(app.url("/v1/auth/google/start"))
        .send()
        .await
        .unwrap();
    // A redirect the browser follows with GET (axum's `Redirect::to` answers 303).
    assert!(
        [StatusCode::FOUND, StatusCode::SEE_OTHER].contains(&response.status()),
        "{}",
        response.status()
    );
    let authorize_url = Url::parse(response.headers()[header::LOCATION].to_str().unwrap()).unwrap();
    let set_cookies: Vec<String> = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(set_cookies.len(), 1, "{set_cookies:?}");
    let set_cookie = set_cookies[0].clone();
    let cookie = set_cookie.split(';').next().unwrap().trim().to_owned();
    assert!(
        cookie.starts_with("rw_sso=") && cookie.len() > "rw_sso=".len() + 40,
        "{cookie}"
    );
    let params: HashMap<String, String> = authorize_url.query_pairs().into_owned().collect();
    let state = params["state"].clone();
    Started {
        authorize_url,
        params,
        set_cookie,
        cookie,
        state,
    }
}

/// The user consents at the provider; returns the callback's path and query.
async fn authorize(app: &TestApp, started: &Started) -> String {
    let response = app
        .client
        .get(started.authorize_url.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FOUND);
    let location = Url::parse(response.headers()[header::LOCATION].to_str().unwrap()).unwrap();
    assert_eq!(location.as_str().split('?').next(), Some(REDIRECT_URI));
    format!("{}?{}", location.path(), location.query().unwrap())
}

fn query_param(path: &str, name: &str) -> String {
    Url::parse("http://x")
        .unwrap()
        .join(path)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == name)
        .unwrap()
        .1
        .into_owned()
}

async fn callback(
    app: &TestApp,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, HeaderMap, Value) {
    let mut request = app.client.get(app.url(path));
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, headers, body)
}

/// A whole sign-in: start, consent, callback with this browser's cookie.
async fn sign_in(app: &TestApp, idp: &Idp, token: IdToken) -> (StatusCode, Value) {
    idp.will_issue(token);
    let started = start(app).await;
    let path = authorize(app, &started).await;
    let (status, _, body) = callback(app, &path, Some(&started.cookie)).await;
    (status, body)
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(&app.admin).await.unwrap()
}

fn assert_problem(
    status: StatusCode,
    headers: &HeaderMap,
    body: &Value,
    expected: StatusCode,
    code: &str,
    case: &str,
) {
    assert_eq!(status, expected, "{case}: {body}");
    assert_eq!(
        headers[header::CONTENT_TYPE],
        "application/problem+json",
        "{case}"
    );
    assert_eq!(body["code"], code, "{case}: {body}");
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn google_sign_in_creates_user_org_and_identity_then_signs_the_same_user_in(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let (app, idp) = setup(options).await;
    let email = unique_email("gina");
    let subject = "110169484474386276334";
    idp.will_issue(IdToken::new(subject, &email));

    // The redirect to the provider.
    let started = start(&app).await;
    let url = &started.authorize_url;
    assert_eq!(url.origin(), idp.base.origin());
    assert_eq!(url.path(), "/authorize");
    let q = &started.params;
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["client_id"], CLIENT_ID);
    assert_eq!(q["redirect_uri"], REDIRECT_URI);
    let scopes: Vec<&str> = q["scope"].split(' ').collect();
    assert!(
        scopes.contains(&"openid") && scopes.contains(&"email"),
        "{scopes:?}"
    );
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43, "base64url of a SHA-256");
    assert!(q["state"].len() >= 43 && q["nonce"].len() >= 43);
    assert_ne!(q["state"], q["nonce"]);
    assert!(
        !url.as_str().to_ascii_lowercase().contains("plain"),
        "{url}"
    );

    // The pre-authentication cookie binding the attempt to this browser.
    let attributes: Vec<String> = started
        .set_cookie
        .split(';')
        .map(|a| a.trim().to_ascii_lowercase())
        .collect();
    for required in ["httponly", "secure", "path=/v1/auth/google"] {
        assert!(
            attributes.iter().any(|a| a == required),
            "{required} missing: {}",
            started.set_cookie
        );
    }
    assert!(
        attributes
            .iter()
            .any(|a| a == "samesite=lax" || a == "samesite=strict"),
        "{}",
        started.set_cookie
    );
    let binding = started.cookie.trim_start_matches("rw_sso=");
    assert_ne!(binding, started.state);
    // Only hashes of the state and the binding are stored.
    let (state_hash, binding_hash, nonce): (Vec<u8>, Vec<u8>, String) =
        sqlx::query_as("SELECT state_hash, browser_binding_hash, nonce FROM oidc_login_flows")
            .fetch_one(&app.admin)
            .await
            .unwrap();
    assert_eq!(state_hash, sha256(started.state.as_bytes()));
    assert_eq!(binding_hash, sha256(binding.as_bytes()));
    assert_eq!(nonce, q["nonce"]);

    // Consent at the provider, which saw exactly what the app asked for.
    let path = authorize(&app, &started).await;
    let seen = idp.authorizations();
    assert_eq!(seen.len(), 1);
    for name in [
        "client_id",
        "redirect_uri",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    ] {
        assert_eq!(seen[0][name], q[name], "{name}");
    }

    // The callback signs the new user up.
    let (status, headers, body) = callback(&app, &path, Some(&started.cookie)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["refresh_expires_in"], 86400);
    assert!(body["access_token"].as_str().unwrap().starts_with("eyJ"));
    assert!(body["refresh_token"].as_str().unwrap().starts_with("rt_"));
    let user = body["user_id"].as_str().unwrap();
    let org = body["org_id"].as_str().unwrap();
    let cleared = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cleared.starts_with("rw_sso=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );

    // The code was exchanged with the verifier of the challenge (the provider checked it).
    let exchanges = idp.token_requests();
    assert_eq!(exchanges.len(), 1);
    assert_eq!(exchanges[0].status, StatusCode::OK);
    let form = &exchanges[0].form;
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["code"], query_param(&path, "code"));
    assert_eq!(form["client_id"], CLIENT_ID);
    assert_eq!(form["client_secret"], CLIENT_SECRET);
    assert_eq!(form["redirect_uri"], REDIRECT_URI);
    assert_eq!(s256(&form["code_verifier"]), q["code_challenge"]);

    // The rows behind it.
    let (stored_email, no_password): (String, bool) =
        sqlx::query_as("SELECT email, password_hash IS NULL FROM users WHERE id = $1::uuid")
            .bind(user)
            .fetch_one(&app.admin)
            .await
            .unwrap();
    assert_eq!((stored_email.as_str(), no_password), (email.as_str(), true));
    let (plan, role): (String, String) = sqlx::query_as(
        "SELECT o.plan, m.role FROM orgs o JOIN memberships m ON m.org_id = o.id WHERE o.id = $1::uuid AND m.user_id = $2::uuid",
    )
    .bind(org)
    .bind(user)
    .fetch_one(&app.admin)
    .await
    .unwrap();
    assert_eq!((plan.as_str(), role.as_str()), ("trial", "owner"));
    let identity: (String, String, String) = sqlx::query_as(
        "SELECT issuer, subject, email FROM user_identities WHERE user_id = $1::uuid",
    )
    .bind(user)
    .fetch_one(&app.admin)
    .await
    .unwrap();
    assert_eq!(
        identity,
        (ISSUER.to_owned(), subject.to_owned(), email.clone())
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM oidc_login_flows").await,
        0,
        "the attempt is spent"
    );
    let actions: Vec<String> = app.outbox(org).await.into_iter().map(|(a, _)| a).collect();
    assert_eq!(actions, ["org.create"]);

    // The access token works.
    let (status, me) = app
        .get("/v1/me", body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user_id"], user);
    assert_eq!(me["email"], email);
    assert_eq!(me["orgs"][0]["org_id"], org);
    assert_eq!(me["orgs"][0]["role"], "owner");

    // The same Google account again: the same user, signed in, nothing new created.
    let (status, again) = sign_in(&app, &idp, IdToken::new(subject, &email)).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["user_id"], user);
    assert!(again.get("org_id").is_none(), "{again}");
    assert_ne!(again["refresh_token"], body["refresh_token"]);
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM orgs").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM user_identities").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM sessions").await, 2);
    assert_eq!(idp.jwks_fetches(), 1, "the provider's keys are cached");
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn google_sign_in_links_a_password_account_with_the_same_verified_email(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let (app, idp) = setup(options).await;
    let owner = app.signup("linda").await;

    // Google may report the address in another case: it is the same account.
    let (status, body) = sign_in(
        &app,
        &idp,
        IdToken::new("sub-linda", &owner.email.to_uppercase()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], owner.user_id);
    assert!(body.get("org_id").is_none(), "{body}");

    let linked: (String, String, String) =
        sqlx::query_as("SELECT issuer, subject, user_id::text FROM user_identities")
            .fetch_one(&app.admin)
            .await
            .unwrap();
    assert_eq!(
        linked,
        (
            ISSUER.to_owned(),
            "sub-linda".to_owned(),
            owner.user_id.clone()
        )
    );
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 1);
    assert_eq!(
        count(&app, "SELECT count(*) FROM orgs").await,
        1,
        "no second personal org"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM memberships").await, 1);

    let (status, me) = app
        .get("/v1/me", body["access_token"].as_str().unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["email"], owner.email);
    assert_eq!(me["orgs"][0]["org_id"], owner.org_id);
    // The password still works, and the identity now signs in by (issuer, subject).
    assert_eq!(app.login(&owner.email, PASSWORD).await.0, StatusCode::OK);
    let (status, again) = sign_in(&app, &idp, IdToken::new("sub-linda", &owner.email)).await;
    assert_eq!(
        (status, &again["user_id"]),
        (StatusCode::OK, &json!(owner.user_id))
    );
    assert_eq!(count(&app, "SELECT count(*) FROM user_identities").await, 1);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn sso01_callback_needs_the_single_use_state_bound_to_the_browser_cookie(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let (app, idp) = setup(options).await;
    idp.will_issue(IdToken::new("sub-csrf", &unique_email("csrf")));
    let mine = start(&app).await;
    let path = authorize(&app, &mine).await;
    let code = query_param(&path, "code");
    // Another browser's attempt (an attacker's, say).
    let theirs = start(&app).await;

    let forged_state = random_b64(32);
    let cases: [(&str, String, Option<&str>); 8] = [
        (
            "missing state",
            format!("{CALLBACK}?code={code}"),
            Some(&mine.cookie),
        ),
        (
            "missing code",
            format!("{CALLBACK}?state={}", mine.state),
            Some(&mine.cookie),
        ),
        (
            "mismatched state",
            format!("{CALLBACK}?code={code}&state={forged_state}"),
            Some(&mine.cookie),
        ),
        (
            "another attempt's state",
            format!("{CALLBACK}?code={code}&state={}", theirs.state),
            Some(&mine.cookie),
        ),
        ("no cookie", path.clone(), None),
        (
            "another browser's cookie",
            path.clone(),
            Some(&theirs.cookie),
        ),
        ("forged cookie", path.clone(), Some("rw_sso=forged")),
        ("empty cookie", path.clone(), Some("rw_sso=")),
    ];
    for (case, url, cookie) in &cases {
        let (status, headers, body) = callback(&app, url, *cookie).await;
        assert_problem(
            status,
            &headers,
            &body,
            StatusCode::BAD_REQUEST,
            "invalid_state",
            case,
        );
    }
    // None of that reached the provider or created anything.
    assert!(idp.token_requests().is_empty());
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM sessions").await, 0);

    // An expired attempt is refused with its own cookie.
    sqlx::query("UPDATE oidc_login_flows SET expires_at = now() - interval '1 second' WHERE state_hash = $1")
        .bind(sha256(theirs.state.as_bytes()))
        .execute(&app.admin)
        .await
        .unwrap();
    let expired = format!("{CALLBACK}?code={code}&state={}", theirs.state);
    let (status, headers, body) = callback(&app, &expired, Some(&theirs.cookie)).await;
    assert_problem(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_state",
        "expired attempt",
    );

    // The provider's refusal is not a sign-in.
    let denied = format!("{CALLBACK}?error=access_denied&state={}", mine.state);
    let (status, headers, body) = callback(&app, &denied, Some(&mine.cookie)).await;
    assert_problem(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "sso_denied",
        "provider error",
    );

    // The right browser completes once...
    let (status, _, body) = callback(&app, &path, Some(&mine.cookie)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // ...and the same callback replayed is refused: the state is single use.
    let (status, headers, body) = callback(&app, &path, Some(&mine.cookie)).await;
    assert_problem(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_state",
        "replayed state",
    );
    assert_eq!(
        idp.token_requests().len(),
        1,
        "only the good callback exchanged the code"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM sessions").await, 1);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn sso02_nonce_mismatch_is_refused_and_codes_and_callbacks_cannot_be_replayed(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let (app, idp) = setup(options).await;
    let email = unique_email("nonce");

    // An ID token minted for another attempt, and one without a nonce.
    for (case, token) in [
        (
            "nonce of another attempt",
            IdToken::new("sub-nonce", &email).with(json!({"nonce": random_b64(32)})),
        ),
        (
            "no nonce",
            IdToken::new("sub-nonce", &email).with(json!({"nonce": null})),
        ),
    ] {
        let (status, body) = sign_in(&app, &idp, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_eq!(body["code"], "unauthenticated", "{case}");
    }
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM user_identities").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM sessions").await, 0);
    assert_eq!(
        count(&app, "SELECT count(*) FROM oidc_login_flows").await,
        0,
        "refused attempts are spent too"
    );

    // A good sign-in...
    idp.will_issue(IdToken::new("sub-nonce", &email));
    let started = start(&app).await;
    let path = authorize(&app, &started).await;
    let (status, _, body) = callback(&app, &path, Some(&started.cookie)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // ...whose callback (code and state) is replayed: refused before any exchange.
    let (status, headers, body) = callback(&app, &path, Some(&started.cookie)).await;
    assert_problem(
        status,
        &headers,
        &body,
        StatusCode::BAD_REQUEST,
        "invalid_state",
        "replayed callback",
    );
    assert_eq!(idp.token_requests().len(), 3);

    // The spent code injected into a fresh attempt of the same browser: the provider
    // refuses the second redemption (400) and the app signs nobody in.
    let fresh = start(&app).await;
    let injected = format!(
        "{CALLBACK}?code={}&state={}",
        query_param(&path, "code"),
        fresh.state
    );
    let (status, _, body) = callback(&app, &injected, Some(&fresh.cookie)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let exchanges = idp.token_requests();
    assert_eq!(exchanges.len(), 4);
    assert_eq!(exchanges[3].status, StatusCode::BAD_REQUEST);
    assert_eq!(exchanges[3].form["code"], query_param(&path, "code"));
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 1);
    assert_eq!(count(&app, "SELECT count(*) FROM sessions").await, 1);
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn sso03_id_tokens_not_issued_by_the_pinned_provider_for_us_are_refused(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let (app, idp) = setup(options).await;
    let email = unique_email("mixup");
    let token = || IdToken::new("sub-mixup", &email);
    // An attacker's key published under the provider's kid, and one under a kid nobody knows.
    let same_kid = RsaKey::generate(KID);
    let unknown_kid = RsaKey::generate("not-in-the-jwks");
    let provider_modulus = {
        let jwk = idp.state.key.jwk();
        URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap()
    };
    let now = unix_now();

    let cases: Vec<(&str, IdToken)> = vec![
        (
            "signed by another key under the same kid",
            token().signed(Signing::Rs256(same_kid.clone())),
        ),
        (
            "kid not in the JWKS",
            token().signed(Signing::Rs256(unknown_kid)),
        ),
        (
            "key carried in the header (jwk/jku)",
            token().signed(Signing::KeyInHeader(same_kid)),
        ),
        (
            "aud of another client",
            token().with(json!({"aud": "other-app.apps.googleusercontent.com"})),
        ),
        (
            "aud list without us",
            token().with(json!({"aud": ["other-app.apps.googleusercontent.com"]})),
        ),
        ("no aud", token().with(json!({"aud": null}))),
        (
            "iss of another provider",
            token().with(json!({"iss": "https://login.attacker.example"})),
        ),
        (
            "iss over plain http",
            token().with(json!({"iss": "http://accounts.google.com"})),
        ),
        (
            "iss of the local test provider",
            token().with(json!({"iss": idp.base.as_str()})),
        ),
        ("no iss", token().with(json!({"iss": null}))),
        (
            "expired",
            token().with(json!({"iat": now - 7200, "exp": now - 3600})),
        ),
        ("no exp", token().with(json!({"exp": null}))),
        (
            "exp as a string",
            token().with(json!({"exp": (now - 3600).to_string()})),
        ),
        ("not valid yet", token().with(json!({"nbf": now + 3600}))),
        (
            "HS256 with a guessed secret",
            token().signed(Signing::Hs256(b"secret".to_vec())),
        ),
        (
            "HS256 keyed with the provider's public key",
            token().signed(Signing::Hs256(provider_modulus)),
        ),
        (
            "HS256 keyed with the client secret",
            token().signed(Signing::Hs256(CLIENT_SECRET.as_bytes().to_vec())),
        ),
        ("alg none", token().signed(Signing::Unsigned)),
    ];
    for (case, token) in cases {
        let (status, body) = sign_in(&app, &idp, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_eq!(body["code"], "unauthenticated", "{case}: {body}");
    }
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM user_identities").await, 0);
    assert_eq!(count(&app, "SELECT count(*) FROM sessions").await, 0);
    assert_eq!(
        count(&app, "SELECT count(*) FROM oidc_login_flows").await,
        0
    );
    // Every code was redeemed (the refusals are the app's), and an unknown kid did not make
    // the app hammer the provider's JWKS.
    assert!(
        idp.token_requests()
            .iter()
            .all(|r| r.status == StatusCode::OK)
    );
    assert_eq!(idp.jwks_fetches(), 1);

    // The control: the same app accepts the provider's own token, also with Google's other
    // spelling of its issuer; the identity is stored under the one configured spelling so
    // both spellings name the same identity.
    let (status, body) = sign_in(
        &app,
        &idp,
        token().with(json!({"iss": "accounts.google.com"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let issuer: String =
        sqlx::query_scalar("SELECT issuer FROM user_identities WHERE subject = 'sub-mixup'")
            .fetch_one(&app.admin)
            .await
            .unwrap();
    assert_eq!(issuer, "https://accounts.google.com");
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn sso04_an_unverified_email_never_links_to_or_signs_into_an_existing_account(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let (app, idp) = setup(options).await;
    let victim = app.signup("victim").await;

    for (case, verified) in [
        ("email_verified false", json!(false)),
        ("email_verified \"false\"", json!("false")),
        ("email_verified missing", Value::Null),
        ("email_verified 1", json!(1)),
    ] {
        let token =
            IdToken::new("sub-attacker", &victim.email).with(json!({"email_verified": verified}));
        let (status, body) = sign_in(&app, &idp, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}: {body}");
        assert_eq!(body["code"], "unauthenticated", "{case}");
        assert!(body.get("access_token").is_none(), "{case}");
    }
    // No email at all is no better.
    let (status, _) = sign_in(
        &app,
        &idp,
        IdToken::new("sub-attacker", &victim.email).with(json!({"email": null})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // An unverified address nobody uses does not create an account either.
    let stranger = IdToken::new("sub-stranger", &unique_email("stranger"))
        .with(json!({"email_verified": false}));
    assert_eq!(
        sign_in(&app, &idp, stranger).await.0,
        StatusCode::UNAUTHORIZED
    );

    assert_eq!(
        count(&app, "SELECT count(*) FROM user_identities").await,
        0,
        "nothing linked"
    );
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 1);
    let sessions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sessions WHERE user_id = $1::uuid")
            .bind(&victim.user_id)
            .fetch_one(&app.admin)
            .await
            .unwrap();
    assert_eq!(sessions, 1, "only the victim's own sign-up session");
    assert_eq!(count(&app, "SELECT count(*) FROM sessions").await, 1);

    // The control: once Google says the address is verified, the same account links.
    let (status, body) = sign_in(&app, &idp, IdToken::new("sub-attacker", &victim.email)).await;
    assert_eq!(
        (status, &body["user_id"]),
        (StatusCode::OK, &json!(victim.user_id)),
        "{body}"
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn pkce_the_app_redeems_the_code_with_the_verifier_of_its_s256_challenge(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let (app, idp) = setup(options).await;
    let email = unique_email("pkce");
    idp.will_issue(IdToken::new("sub-pkce", &email));

    // The provider is strict: the attempt's verifier swapped for another well-formed one
    // makes it refuse the code, and the app signs nobody in.
    let tampered = start(&app).await;
    let path = authorize(&app, &tampered).await;
    sqlx::query("UPDATE oidc_login_flows SET code_verifier = $1")
        .bind(random_b64(48))
        .execute(&app.admin)
        .await
        .unwrap();
    let (status, _, body) = callback(&app, &path, Some(&tampered.cookie)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let exchanges = idp.token_requests();
    assert_eq!(exchanges.len(), 1);
    assert_eq!(exchanges[0].status, StatusCode::BAD_REQUEST);
    assert_eq!(count(&app, "SELECT count(*) FROM users").await, 0);

    // The app's own verifier passes the same provider.
    let started = start(&app).await;
    let path = authorize(&app, &started).await;
    let (status, _, body) = callback(&app, &path, Some(&started.cookie)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let exchange = &idp.token_requests()[1];
    assert_eq!(exchange.status, StatusCode::OK);
    let verifier = &exchange.form["code_verifier"];
    assert!(
        is_pkce_verifier(verifier),
        "43..128 unreserved characters: {verifier}"
    );
    assert_eq!(s256(verifier), started.params["code_challenge"]);
    assert_ne!(
        verifier, &started.params["code_challenge"],
        "never the plain method"
    );
    assert!(
        !started.authorize_url.as_str().contains(verifier.as_str()),
        "the verifier never leaves the server"
    );
}

#[sqlx::test(migrator = "runwarden_store::MIGRATOR")]
async fn google_sign_in_without_configuration_is_404_not_configured(
    _: PgPoolOptions,
    options: PgConnectOptions,
) {
    let app = spawn_app(options).await;
    for path in [
        "/v1/auth/google/start",
        "/v1/auth/google/callback?code=c&state=s",
    ] {
        let (status, headers, body) = app.call_raw(reqwest::Method::GET, path, None, None).await;
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_problem(
            status,
            &headers,
            &body,
            StatusCode::NOT_FOUND,
            "not_configured",
            path,
        );
        assert!(headers.get(header::SET_COOKIE).is_none(), "{path}");
    }
    assert_eq!(
        count(&app, "SELECT count(*) FROM oidc_login_flows").await,
        0
    );
}
