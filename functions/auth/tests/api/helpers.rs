//! Test harness: the real auth router on a real socket, backed by a fresh database per test
//! (`#[sqlx::test]`) that the app reaches as its runtime role `runwarden_auth`, so every
//! test also runs under row-level security.

use reqwest::{Method, StatusCode};
use runwarden_auth::config::GoogleConfig;
use runwarden_auth::{AppState, router_with_tasks};
use runwarden_events::push::PushAuth;
use runwarden_platform::request::TrustedProxyHops;
use runwarden_platform::server::Limits;
use runwarden_testkit::{App, Fixtures, mail};
use runwarden_tokens::TokenSigner;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::postgres::PgConnectOptions;

pub const PASSWORD: &str = "correct horse battery staple";
/// The scheduler's shared secret in the test app (`?token=`), as on the local stack.
pub const TASK_SECRET: &str = "auth-task-test-secret-0123456789";

pub struct TestApp {
    /// Served, with its checked caller; `app.admin` (the superuser pool, to inspect rows
    /// behind the app's back) through `Deref`. auth's users come through its API
    /// (`signup`), not the kit's fixtures.
    pub app: App,
    /// The app's own Ed25519 private key (PKCS#8), to forge tokens it would accept.
    pub signing_key_der: Vec<u8>,
}

impl std::ops::Deref for TestApp {
    type Target = App;

    fn deref(&self) -> &App {
        &self.app
    }
}

/// A signed-in user as the API returned them.
#[derive(Debug, Clone)]
pub struct Session {
    pub user_id: String,
    pub org_id: String,
    pub email: String,
    pub access: String,
    pub refresh: String,
}

pub fn generate_key_der() -> Vec<u8> {
    use aws_lc_rs::signature::Ed25519KeyPair;
    Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
        .unwrap()
        .as_ref()
        .to_vec()
}

pub async fn spawn_app(options: PgConnectOptions) -> TestApp {
    spawn_app_with(options, None, TrustedProxyHops(1)).await
}

pub async fn spawn_app_with(
    options: PgConnectOptions,
    google: Option<GoogleConfig>,
    hops: TrustedProxyHops,
) -> TestApp {
    spawn_instance(options, google, hops, generate_key_der()).await
}

/// Another instance of the same deployment: same database, same signing key.
pub async fn spawn_second_instance(options: PgConnectOptions, first: &TestApp) -> TestApp {
    spawn_instance(
        options,
        None,
        TrustedProxyHops(1),
        first.signing_key_der.clone(),
    )
    .await
}

async fn spawn_instance(
    options: PgConnectOptions,
    google: Option<GoogleConfig>,
    hops: TrustedProxyHops,
    der: Vec<u8>,
) -> TestApp {
    let fx = Fixtures::new(options).await;
    let runtime = fx.pool_as(runwarden_store::roles::AUTH, 20).await;
    let app_signer = TokenSigner::from_pkcs8_der("test-key", &der).unwrap();
    let mailer = mail_sender(&runtime);
    let state = AppState::new(runtime, app_signer, 4, google).with_mailer(mailer);
    let limits = Limits::default();
    // The scheduler's task too, so the served routes are all of `ROUTES`.
    let tasks = PushAuth::shared_secret(SecretString::from(TASK_SECRET)).unwrap();
    let router = router_with_tasks(state, Some(tasks), hops, &limits);
    let app = App::start(fx, router, limits, runwarden_auth::routes::OPENAPI).await;
    TestApp {
        app,
        signing_key_der: der,
    }
}

/// Mail goes out as in production: through the outbox and the sender, to the local sink.
fn mail_sender(runtime: &sqlx::PgPool) -> runwarden_auth::mail::Mailer {
    let mail_config = runwarden_auth::mail::MailConfig::local();
    let mailer = runwarden_auth::mail::Mailer::new(&mail_config.public_app_url);
    let sender = runwarden_auth::mail::Sender::new(runtime.clone(), &mail_config, &mailer).unwrap();
    tokio::spawn(sender.run(std::future::pending()));
    mailer
}

/// An app whose key set is being rotated (`keys.current()` signs; every key is published).
/// `signing_key_der` is the current key's, as in [`spawn_app`].
pub async fn spawn_app_with_keys(
    options: PgConnectOptions,
    current_der: Vec<u8>,
    keys: runwarden_tokens::SigningKeys,
) -> TestApp {
    let fx = Fixtures::new(options).await;
    let runtime = fx.pool_as(runwarden_store::roles::AUTH, 20).await;
    let mailer = mail_sender(&runtime);
    let state = AppState::with_keys(runtime, keys, 4, None).with_mailer(mailer);
    let limits = Limits::default();
    let tasks = PushAuth::shared_secret(SecretString::from(TASK_SECRET)).unwrap();
    let router = router_with_tasks(state, Some(tasks), TrustedProxyHops(1), &limits);
    let app = App::start(fx, router, limits, runwarden_auth::routes::OPENAPI).await;
    TestApp {
        app,
        signing_key_der: current_der,
    }
}

pub fn unique_email(prefix: &str) -> String {
    format!("{prefix}-{}@example.com", uuid::Uuid::new_v4().simple())
}

impl TestApp {
    /// Sends a request and returns status and JSON body (Null when empty or not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, body) = self.call_raw(method, path, token, body).await;
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let reply = self.api.call(method, path, token, body.as_ref()).await;
        (reply.status, reply.headers, reply.text)
    }

    pub async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    /// Signs up as a person does: the sign-up, the link from the mail, the verification.
    pub async fn signup(&self, prefix: &str) -> Session {
        self.signup_email(&unique_email(prefix)).await
    }

    /// Signs `email` up and follows the mailed verification link: a verified user with
    /// their personal org and a session.
    pub async fn signup_email(&self, email: &str) -> Session {
        let (status, body) = self
            .post(
                "/v1/auth/signup",
                None,
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        // Fixtures sign many users up from one client IP; the per-IP sign-up limit has its
        // own tests (email_ownership.rs), so the harness forgets what it counted.
        sqlx::query("DELETE FROM rate_limits WHERE key LIKE 'signup:ip:%'")
            .execute(&self.admin)
            .await
            .unwrap();
        let token = self.mailed_token(email).await;
        let (status, body) = self.verify(&token).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        Session {
            user_id: body["user_id"].as_str().unwrap().into(),
            org_id: body["org_id"].as_str().unwrap().into(),
            email: email.into(),
            access: body["access_token"].as_str().unwrap().into(),
            refresh: body["refresh_token"].as_str().unwrap().into(),
        }
    }

    /// The token in the newest mail to `email` (waits for it, up to 10 s).
    pub async fn mailed_token(&self, email: &str) -> String {
        mail::wait_for_token(&mail::dir(), email, "token=").await
    }

    /// Every mail to `email` so far, once there are at least `n`.
    pub async fn mails(&self, email: &str, n: usize) -> Vec<mail::Mail> {
        mail::wait_for_messages(&mail::dir(), email, n).await
    }

    pub async fn verify(&self, token: &str) -> (StatusCode, Value) {
        self.post("/v1/auth/verify-email", None, json!({"token": token}))
            .await
    }

    pub async fn login(&self, email: &str, password: &str) -> (StatusCode, Value) {
        self.post(
            "/v1/auth/login",
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    /// Invites `member` into `owner`'s org with `role` and accepts as `member`.
    pub async fn add_member(&self, owner: &Session, member: &Session, role: &str) {
        let (status, body) = self
            .post(
                &format!("/v1/orgs/{}/invitations", owner.org_id),
                Some(&owner.access),
                json!({"email": member.email, "role": role}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let token = body["token"].as_str().unwrap();
        let (status, body) = self
            .post(
                &format!("/v1/invitations/{token}/accept"),
                Some(&member.access),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Audit events written to the outbox for an org, oldest first: (action, payload).
    pub async fn outbox(&self, org: &str) -> Vec<(String, Value)> {
        sqlx::query_as::<_, (String, Value)>(
            "SELECT kind, payload FROM outbox_events WHERE org_id = $1::uuid ORDER BY created_at, id",
        )
        .bind(org)
        .fetch_all(&self.admin)
        .await
        .unwrap()
    }
}

/// An org fixture: an owner and one member of each other role in the owner's org.
pub struct Team {
    pub owner: Session,
    pub admin: Session,
    pub member: Session,
    pub viewer: Session,
}

impl Team {
    pub async fn new(app: &TestApp, name: &str) -> Team {
        let owner = app.signup(&format!("{name}-owner")).await;
        let admin = app.signup(&format!("{name}-admin")).await;
        let member = app.signup(&format!("{name}-member")).await;
        let viewer = app.signup(&format!("{name}-viewer")).await;
        app.add_member(&owner, &admin, "admin").await;
        app.add_member(&owner, &member, "member").await;
        app.add_member(&owner, &viewer, "viewer").await;
        Team {
            owner,
            admin,
            member,
            viewer,
        }
    }

    pub fn org(&self) -> &str {
        &self.owner.org_id
    }

    pub fn by_role(&self, role: &str) -> &Session {
        match role {
            "owner" => &self.owner,
            "admin" => &self.admin,
            "member" => &self.member,
            "viewer" => &self.viewer,
            other => panic!("no such role {other}"),
        }
    }
}
