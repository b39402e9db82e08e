//! Accounts: signing up with a password, logging in, and what `/v1/me` shows.
//!
//! Sign-up creates the user, their personal org (they are its Owner) and their first
//! session in one transaction. Login is throttled per (account, client IP) and per client IP,
//! under a per-account ceiling that slows but never refuses a client that has not been
//! failing ([`crate::throttle`]) and costs the same whether the account exists or not.

use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::{OrgId, Principal, UserId, set_tenant};
use runwarden_tokens::TokenSigner;
use secrecy::SecretString;
use serde::Serialize;
use sqlx::PgPool;

use crate::account_audit::AccountEvent;
use crate::email::Email;
use crate::google::GoogleIdentity;
use crate::orgs::{self, OrgName};
use crate::password::{Hasher, NewPassword};
use crate::sessions::{self, AuthMethod, SessionError, TokenPair};
use crate::throttle::{self, Admission, Throttled};

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("an account with this email already exists")]
    EmailTaken,
    /// Wrong password, unknown email, or an account without a password: alike.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Refused before the password was checked.
    #[error("login throttled")]
    Throttled(Box<Throttled>),
    #[error("password hashing failed")]
    Hashing(#[source] anyhow::Error),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Creates the user with their password, their personal org named `org_name`, and their
/// first session. Answers the session's tokens, with the new org's id.
pub async fn sign_up(
    pool: &PgPool,
    hasher: &Hasher,
    signer: &TokenSigner,
    meta: &RequestMeta,
    email: &Email,
    password: &NewPassword,
    org_name: &OrgName,
) -> Result<TokenPair, AccountError> {
    // Hash before looking the email up, so a taken address answers no faster.
    let hash = hasher.hash(password).await.map_err(AccountError::Hashing)?;
    let user = UserId::new();
    let org = OrgId::new();
    let mut tx = pool.begin().await?;
    set_tenant(&mut tx, Some(org), Some(user)).await?;
    let inserted = sqlx::query(
        "INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3) ON CONFLICT (email) DO NOTHING",
    )
    .bind(user)
    .bind(email.as_str())
    .bind(&hash)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Err(AccountError::EmailTaken);
    }
    orgs::create(&mut tx, meta, org, user, org_name).await?;
    let mut tokens =
        sessions::start(&mut tx, signer, user, AuthMethod::Password, meta, None).await?;
    tx.commit().await?;
    tokens.org_id = Some(org);
    tracing::info!(user.id = %user, org.id = %org, "signed up");
    Ok(tokens)
}

/// Checks `email` and `password` and starts a session. Throttled attempts are refused
/// before the lookup and the hash, whatever the password; attempts on an account past its
/// ceiling of failures are answered after [`throttle::SLOWED_BY`]. A stored hash with weaker
/// Argon2 parameters than the current ones is replaced by a current one. Records
/// `session.login` in every org of the user.
pub async fn log_in(
    pool: &PgPool,
    hasher: &Hasher,
    signer: &TokenSigner,
    meta: &RequestMeta,
    email: &Email,
    password: &SecretString,
) -> Result<TokenPair, AccountError> {
    let keys = throttle::Keys::new(email, meta.ip);
    let (client_has_failures, slowed) = match throttle::admit(pool, &keys).await? {
        Admission::Admitted {
            client_has_failures,
            slowed,
        } => (client_has_failures, slowed),
        Admission::Throttled(throttled) => {
            return Err(AccountError::Throttled(Box::new(throttled)));
        }
    };
    if slowed {
        // The account is past its ceiling of failures: every admitted attempt on it waits,
        // right password or not, so the answer's timing tells nothing.
        tokio::time::sleep(throttle::SLOWED_BY).await;
    }

    // The user an email names and their password hash (None for a Google-only account).
    let found: Option<(UserId, Option<String>)> =
        sqlx::query_as("SELECT id, password_hash FROM users WHERE email = $1")
            .bind(email.as_str())
            .fetch_optional(pool)
            .await?;
    let (user_id, password_hash) = found.unzip();
    let password_hash = password_hash.flatten();
    // An unknown email (or an account without a password) is verified against a dummy
    // hash: it costs the same.
    let ok = hasher
        .verify(password, password_hash.clone())
        .await
        .map_err(AccountError::Hashing)?;

    let Some(user) = user_id.filter(|_| ok) else {
        // Counted alike whether the account exists or not, so neither the status nor the
        // timing of later attempts tells them apart.
        throttle::record_failure(pool, &keys).await?;
        let reason = if user_id.is_some() {
            "wrong password"
        } else {
            "unknown account"
        };
        tracing::info!(security_event = "login_failed", reason, "login failed");
        return Err(AccountError::InvalidCredentials);
    };
    // Argon2 parameters only rise: a hash made with weaker ones is upgraded now, while the
    // password is at hand (the hash is computed before the transaction holds a connection).
    let rehashed = match password_hash.as_deref() {
        Some(stored) if hasher.needs_rehash(stored) => Some((
            stored.to_owned(),
            hasher
                .rehash(password)
                .await
                .map_err(AccountError::Hashing)?,
        )),
        _ => None,
    };
    let mut tx = pool.begin().await?;
    if client_has_failures {
        throttle::forget_client(&mut tx, &keys).await?;
    }
    if let Some((old, new)) = rehashed {
        // Only if the hash is still the one verified (a concurrent change wins).
        sqlx::query(
            "UPDATE users SET password_hash = $3, updated_at = now()
              WHERE id = $1 AND password_hash = $2",
        )
        .bind(user)
        .bind(old)
        .bind(new)
        .execute(&mut *tx)
        .await?;
        tracing::info!(user.id = %user, "password hash upgraded to the current parameters");
    }
    let tokens = sessions::start(&mut tx, signer, user, AuthMethod::Password, meta, None).await?;
    AccountEvent::new(user, "session.login")
        .request(meta)
        .details(serde_json::json!({"method": "password"}))
        .record(&mut tx)
        .await?;
    tx.commit().await?;
    tracing::info!(security_event = "login_succeeded", user.id = %user, "logged in");
    Ok(tokens)
}

/// What `/v1/me` shows: the user and their memberships.
#[derive(Debug, Serialize)]
pub struct Me {
    pub user_id: UserId,
    pub email: String,
    pub orgs: serde_json::Value,
}

/// The hot path: one statement checks the session and reads the user and memberships.
/// None when the session is no longer live.
pub async fn me(pool: &PgPool, principal: Principal) -> Result<Option<Me>, sqlx::Error> {
    let found: Option<(String, sqlx::types::Json<serde_json::Value>)> =
        sqlx::query_as("SELECT email, orgs FROM auth_me($1, $2)")
            .bind(principal.session_id)
            .bind(principal.user_id)
            .fetch_optional(pool)
            .await?;
    Ok(found.map(|(email, orgs)| Me {
        user_id: principal.user_id,
        email,
        orgs: orgs.0,
    }))
}

/// Signs in a verified Google identity: by (issuer, subject) if known, else by linking the
/// verified email to an existing account, else by creating one with a personal org.
/// Answers the session's tokens (with the new org's id when one was created) and whether
/// the account was created.
pub async fn sign_in_with_google(
    pool: &PgPool,
    signer: &TokenSigner,
    meta: &RequestMeta,
    identity: &GoogleIdentity,
) -> Result<(TokenPair, bool), AccountError> {
    let mut tx = pool.begin().await?;
    let known: Option<UserId> = sqlx::query_scalar(
        "SELECT user_id FROM user_identities WHERE issuer = $1 AND subject = $2",
    )
    .bind(&identity.issuer)
    .bind(&identity.subject)
    .fetch_optional(&mut *tx)
    .await?;
    let (user, org) = match known {
        Some(user) => (user, None),
        None => {
            let existing: Option<UserId> =
                sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
                    .bind(identity.email.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            let (user, org) = match existing {
                Some(user) => {
                    tracing::info!(security_event = "sso_linked", user.id = %user, "Google identity linked by verified email");
                    (user, None)
                }
                None => {
                    let user = UserId::new();
                    let org = OrgId::new();
                    set_tenant(&mut tx, Some(org), Some(user)).await?;
                    sqlx::query("INSERT INTO users (id, email) VALUES ($1, $2)")
                        .bind(user)
                        .bind(identity.email.as_str())
                        .execute(&mut *tx)
                        .await?;
                    let name = OrgName::personal(identity.email.local_part());
                    orgs::create(&mut tx, meta, org, user, &name).await?;
                    (user, Some(org))
                }
            };
            sqlx::query(
                "INSERT INTO user_identities (issuer, subject, user_id, email) VALUES ($1, $2, $3, $4)",
            )
            .bind(&identity.issuer)
            .bind(&identity.subject)
            .bind(user)
            .bind(identity.email.as_str())
            .execute(&mut *tx)
            .await?;
            (user, org)
        }
    };
    // The session carries the identity's Workspace domain: orgs restricted to a domain
    // admit it only if it matches (a foreign or absent `hd` gets no access there).
    let mut tokens = sessions::start(
        &mut tx,
        signer,
        user,
        AuthMethod::Google,
        meta,
        identity.hd.as_ref().map(|d| d.as_str()),
    )
    .await?;
    tx.commit().await?;
    tokens.org_id = org;
    Ok((tokens, org.is_some()))
}
