//! Accounts: signing up with a password, verifying the address, logging in, and what
//! `/v1/me` shows.
//!
//! Sign-up proves nothing: it answers 202 alike whether the address is free, unverified or
//! verified, and mails the address. A free address gets an unverified user (no password,
//! no org, no session: an unverified account owns nothing) and a verification link; an
//! unverified one gets another link; a verified one gets a notice ("someone tried to sign
//! up with your address"), never a second account. Each link carries the password hash and
//! org name of *its* sign-up: following it ([`verify_email`]) sets that password, verifies
//! the address, creates the personal org and starts the first session. So a sign-up with
//! someone else's address sets nothing unless the owner opens the link it sent them.
//!
//! Login is throttled per (account, client IP) and per client IP, under a per-account
//! ceiling that slows but never refuses a client that has not been failing
//! ([`crate::throttle`]); it costs the same whether the account exists or not, and refuses
//! an unverified account (403 `email_unverified`) only after its correct password.

use std::net::IpAddr;

use chrono::Duration;
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::{OrgId, Principal, UserId, set_tenant};
use runwarden_tokens::TokenSigner;
use secrecy::SecretString;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::account_audit::AccountEvent;
use crate::email::Email;
use crate::email_tokens::{self, Purpose};
use crate::google::GoogleIdentity;
use crate::mail::{self, Mailer};
use crate::orgs::{self, OrgName};
use crate::password::{Hasher, NewPassword};
use crate::sessions::{self, AuthMethod, SessionError, TokenPair};
use crate::signup_limits;
use crate::throttle::{self, Admission, Throttled};

/// How long a verification link works.
pub const VERIFY_LIFETIME: Duration = Duration::hours(24);

/// Where the links in mails lead (the web app's pages, under `PUBLIC_APP_URL`).
pub const VERIFY_PATH: &str = "/verify-email";
pub const SIGN_IN_PATH: &str = "/sign-in";
pub const RESET_PATH: &str = "/forgot-password";

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// Wrong password, unknown email, or an account without a password: alike.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// Refused before the password was checked.
    #[error("login throttled")]
    Throttled(Box<Throttled>),
    /// A sign-up or resend refused by its per-IP limit (`code` says which).
    #[error("too many requests")]
    Limited {
        code: &'static str,
        throttled: Box<Throttled>,
    },
    /// The account's email is not verified: it cannot sign in, create or join orgs.
    #[error("verify your email address first: follow the link mailed to it")]
    EmailUnverified,
    /// A verification token that is unknown, used or expired: alike.
    #[error("this link is invalid or has expired")]
    InvalidToken,
    #[error("password hashing failed")]
    Hashing(#[source] anyhow::Error),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// A sign-up: the same work and the same answer whoever has the address (see the module
/// docs). The password is hashed first, always; the mail is written to the outbox in the
/// same transaction and sent after the commit.
#[allow(clippy::too_many_arguments)]
pub async fn sign_up(
    pool: &PgPool,
    hasher: &Hasher,
    mailer: &Mailer,
    ip: Option<IpAddr>,
    email: &Email,
    password: &NewPassword,
    org_name: &OrgName,
) -> Result<(), AccountError> {
    {
        let mut conn = pool.acquire().await?;
        if let Some(throttled) = signup_limits::admit_ip(
            &mut conn,
            signup_limits::SIGNUP_IP_POLICY,
            signup_limits::SIGNUP_IP,
            ip,
        )
        .await?
        {
            return Err(AccountError::Limited {
                code: "signup_rate_limited",
                throttled: Box::new(throttled),
            });
        }
    }
    let hash = hasher.hash(password).await.map_err(AccountError::Hashing)?;
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO users (id, email) VALUES ($1, $2) ON CONFLICT (email) DO NOTHING")
        .bind(UserId::new())
        .bind(email.as_str())
        .execute(&mut *tx)
        .await?;
    let (user, verified): (UserId, bool) = sqlx::query_as(
        "SELECT id, email_verified_at IS NOT NULL FROM users WHERE email = $1 FOR UPDATE",
    )
    .bind(email.as_str())
    .fetch_one(&mut *tx)
    .await?;
    let message = if verified {
        mail::templates::already_registered(
            email,
            &mailer.page(SIGN_IN_PATH),
            &mailer.page(RESET_PATH),
        )
    } else {
        let token = email_tokens::issue(
            &mut tx,
            user,
            Purpose::VerifyEmail,
            VERIFY_LIFETIME,
            email_tokens::Extra {
                password_hash: Some(hash),
                org_name: Some(org_name.as_str().to_owned()),
                new_email: None,
            },
        )
        .await?;
        mail::templates::verify_email(email, &mailer.link(VERIFY_PATH, &token))
    };
    let send = signup_limits::admit_mail(&mut tx, email).await?;
    if send {
        mail::enqueue(&mut tx, &message).await?;
    }
    tx.commit().await?;
    if send {
        mailer.wake();
    }
    // Said the same way for every case: the log tells nothing the response does not.
    tracing::info!(security_event = "signup_requested", "sign-up requested");
    Ok(())
}

/// Mails a new verification link to an unverified account (the latest sign-up's, with its
/// pending password). Nothing for an unknown or verified address; the caller answers the
/// same either way.
pub async fn resend_verification(
    pool: &PgPool,
    mailer: &Mailer,
    ip: Option<IpAddr>,
    email: &Email,
) -> Result<(), AccountError> {
    let mut tx = pool.begin().await?;
    if let Some(throttled) = signup_limits::admit_ip(
        &mut tx,
        signup_limits::RESEND_IP_POLICY,
        signup_limits::RESEND_IP,
        ip,
    )
    .await?
    {
        // Keep the consumed cell: commit what the check wrote, then refuse.
        tx.commit().await?;
        return Err(AccountError::Limited {
            code: "resend_rate_limited",
            throttled: Box::new(throttled),
        });
    }
    // The address's mail budget is spent whether or not an account has it.
    let send = signup_limits::admit_mail(&mut tx, email).await?;
    let unverified: Option<UserId> = sqlx::query_scalar(
        "SELECT id FROM users WHERE email = $1 AND email_verified_at IS NULL FOR UPDATE",
    )
    .bind(email.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let mut sent = false;
    if let (Some(user), true) = (unverified, send) {
        let token =
            email_tokens::reissue_latest(&mut tx, user, Purpose::VerifyEmail, VERIFY_LIFETIME)
                .await?;
        let message = mail::templates::verify_email(email, &mailer.link(VERIFY_PATH, &token));
        mail::enqueue(&mut tx, &message).await?;
        sent = true;
    }
    tx.commit().await?;
    if sent {
        mailer.wake();
    }
    Ok(())
}

/// Follows a verification link: sets the password its sign-up chose, marks the address
/// verified, forgets the account's other links, creates the personal org (unless the
/// account already belongs to one: accounts from before verification existed) and starts
/// the first session. Audited as `org.create` and `user.email_verified` in the new org.
pub async fn verify_email(
    pool: &PgPool,
    signer: &TokenSigner,
    meta: &RequestMeta,
    token: &str,
) -> Result<TokenPair, AccountError> {
    let mut tx = pool.begin().await?;
    let consumed = email_tokens::consume(&mut tx, Purpose::VerifyEmail, token)
        .await?
        .ok_or(AccountError::InvalidToken)?;
    let user = consumed.user_id;
    let (email, already): (String, bool) = sqlx::query_as(
        "SELECT email, email_verified_at IS NOT NULL FROM users WHERE id = $1 FOR UPDATE",
    )
    .bind(user)
    .fetch_one(&mut *tx)
    .await?;
    if already {
        // Verified meanwhile (by Google): its links were meant to be gone.
        return Err(AccountError::InvalidToken);
    }
    sqlx::query(
        "UPDATE users SET email_verified_at = now(),
                password_hash = coalesce($2, password_hash), updated_at = now()
          WHERE id = $1",
    )
    .bind(user)
    .bind(&consumed.password_hash)
    .execute(&mut *tx)
    .await?;
    email_tokens::revoke_all(&mut tx, user, Purpose::VerifyEmail).await?;
    let org = create_personal_org_if_none(&mut tx, meta, user, &email, consumed.org_name).await?;
    AccountEvent::new(user, "user.email_verified")
        .request(meta)
        .record(&mut tx)
        .await?;
    let mut tokens =
        sessions::start(&mut tx, signer, user, AuthMethod::Password, meta, None).await?;
    tx.commit().await?;
    tokens.org_id = org;
    tracing::info!(security_event = "email_verified", user.id = %user, "email verified");
    Ok(tokens)
}

/// Creates `user`'s personal org (named `name`, or after the address) unless they already
/// belong to an org. Answers the org created.
async fn create_personal_org_if_none(
    tx: &mut PgConnection,
    meta: &RequestMeta,
    user: UserId,
    email: &str,
    name: Option<String>,
) -> Result<Option<OrgId>, sqlx::Error> {
    set_tenant(tx, None, Some(user)).await?;
    let member: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM memberships WHERE user_id = $1)")
            .bind(user)
            .fetch_one(&mut *tx)
            .await?;
    if member {
        return Ok(None);
    }
    let name = name
        .and_then(|n| OrgName::parse(&n).ok())
        .unwrap_or_else(|| OrgName::personal(email.split('@').next().unwrap_or_default()));
    let org = OrgId::new();
    set_tenant(tx, Some(org), Some(user)).await?;
    orgs::create(tx, meta, org, user, &name).await?;
    Ok(Some(org))
}

/// Refuses an account whose email is not verified: it may not create or join orgs. In the
/// caller's transaction.
pub async fn ensure_verified(conn: &mut PgConnection, user: UserId) -> Result<(), AccountError> {
    let verified: Option<bool> =
        sqlx::query_scalar("SELECT email_verified_at IS NOT NULL FROM users WHERE id = $1")
            .bind(user)
            .fetch_optional(conn)
            .await?;
    match verified {
        Some(true) => Ok(()),
        _ => Err(AccountError::EmailUnverified),
    }
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

    // The user an email names, their password hash (None for a Google-only account; for
    // an unverified sign-up, the pending password of its latest link) and whether the
    // address is verified.
    let found: Option<(UserId, Option<String>, bool)> = sqlx::query_as(
        "SELECT u.id,
                coalesce(u.password_hash,
                         (SELECT t.password_hash FROM email_tokens t
                           WHERE t.user_id = u.id AND t.purpose = 'verify_email'
                             AND t.used_at IS NULL AND t.expires_at > now()
                             AND u.email_verified_at IS NULL
                           ORDER BY t.created_at DESC LIMIT 1)),
                u.email_verified_at IS NOT NULL
           FROM users u WHERE u.email = $1",
    )
    .bind(email.as_str())
    .fetch_optional(pool)
    .await?;
    let (user_id, password_hash, verified) = match found {
        Some((id, hash, verified)) => (Some(id), hash, verified),
        None => (None, None, false),
    };
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
    if !verified {
        tracing::info!(security_event = "login_unverified", user.id = %user, "login refused: email not verified");
        return Err(AccountError::EmailUnverified);
    }
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

/// Signs in a verified Google identity: by (issuer, subject) if known; else, for an email
/// that names a verified account, by linking the identity to it (Google said
/// `email_verified` for this very address); else, for an email that names an unverified
/// account, Google's proof of the address wins: the account's pending password, links and
/// sessions are discarded, it becomes verified, gains the identity and its personal org;
/// else by creating a verified account with a personal org. Linking is audited as
/// `user.google_linked`. Answers the session's tokens (with the new org's id when one was
/// created) and whether an org was created.
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
            let existing: Option<(UserId, bool)> = sqlx::query_as(
                "SELECT id, email_verified_at IS NOT NULL FROM users WHERE email = $1 FOR UPDATE",
            )
            .bind(identity.email.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let (user, org, linked) = match existing {
                Some((user, true)) => {
                    tracing::info!(security_event = "sso_linked", user.id = %user, "Google identity linked to a verified account by its verified email");
                    (user, None, Some("verified_email"))
                }
                Some((user, false)) => {
                    // Whoever signed up with this address never proved it; Google just did.
                    sqlx::query(
                        "UPDATE users SET password_hash = NULL, email_verified_at = now(), updated_at = now()
                          WHERE id = $1",
                    )
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
                    email_tokens::revoke_all(&mut tx, user, Purpose::VerifyEmail).await?;
                    sqlx::query(
                        "UPDATE sessions SET revoked_at = now(), revoked_reason = 'unverified_replaced', updated_at = now()
                          WHERE user_id = $1 AND revoked_at IS NULL",
                    )
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
                    let org = create_personal_org_if_none(
                        &mut tx,
                        meta,
                        user,
                        identity.email.as_str(),
                        None,
                    )
                    .await?;
                    tracing::warn!(security_event = "sso_replaced_unverified", user.id = %user, "Google proved an address an unverified sign-up claimed: its pending password is discarded");
                    (user, org, Some("unverified_account_claimed"))
                }
                None => {
                    let user = UserId::new();
                    let org = OrgId::new();
                    set_tenant(&mut tx, Some(org), Some(user)).await?;
                    sqlx::query(
                        "INSERT INTO users (id, email, email_verified_at) VALUES ($1, $2, now())",
                    )
                    .bind(user)
                    .bind(identity.email.as_str())
                    .execute(&mut *tx)
                    .await?;
                    let name = OrgName::personal(identity.email.local_part());
                    orgs::create(&mut tx, meta, org, user, &name).await?;
                    (user, Some(org), None)
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
            if let Some(how) = linked {
                AccountEvent::new(user, "user.google_linked")
                    .request(meta)
                    .details(serde_json::json!({"provider": "google", "how": how}))
                    .record(&mut tx)
                    .await?;
            }
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
