//! Google sign-in against a local OpenID provider started by each test (no network, no
//! Google account): the authorization-code flow with PKCE, the single-use `state` bound to
//! a browser cookie, and ID-token verification (SSO-01..04 in the security catalogue).
//!
//! The provider is strict the way Google is: `/authorize` accepts only `response_type=code`
//! with an S256 challenge, `/token` refuses a wrong client, redirect URI or PKCE verifier and
//! spends each code once, and its key set publishes the one RSA key it signs ID tokens with
//! (the test kit's one fake Google, `runwarden_testkit::oidc`).
//! Each test says which ID token the provider will mint next (claims and signing).

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use runwarden_auth::config::GoogleConfig;
use runwarden_platform::request::TrustedProxyHops;
use runwarden_testkit::oidc::{
    CLIENT_ID, CLIENT_SECRET, FakeGoogle as Idp, ISSUER, IdToken, KID, REDIRECT_URI, RsaKey,
    Signing, is_pkce_verifier, random_b64, s256, sha256, unix_now,
};
use serde_json::{Value, json};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use url::Url;

use crate::helpers::{PASSWORD, TestApp, spawn_app, spawn_app_with, unique_email};

mod attacks;
mod sign_in;
mod workspace;

const CALLBACK: &str = "/v1/auth/google/callback";

/// The app's Google configuration for the local provider.
fn config(idp: &Idp) -> GoogleConfig {
    GoogleConfig {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        redirect_url: Url::parse(REDIRECT_URI).unwrap(),
        issuer: ISSUER.into(),
        auth_url: idp.authorize_url(),
        token_url: idp.token_url(),
        jwks_url: idp.jwks_url(),
    }
}

// ---------------------------------------------------------------------------------------
// The browser's side of the flow
// ---------------------------------------------------------------------------------------

async fn setup(options: PgConnectOptions) -> (TestApp, Idp) {
    let idp = Idp::spawn().await;
    let app = spawn_app_with(options, Some(config(&idp)), TrustedProxyHops(1)).await;
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
