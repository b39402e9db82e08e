//! Forgotten passwords: `POST /v1/auth/password/forgot` mails a single-use reset link,
//! `POST /v1/auth/password/reset` sets a new password with it.
//!
//! - The answer to *forgot* is the same (202, same body) for every address, and so is the
//!   work: one mail is written to the outbox either way (the reset link to a verified
//!   account; to any other address a notice that it has no account here), in the request's
//!   transaction, and sent later by the mail sender, so no answer waits on SMTP.
//! - Requests are limited per client IP and per address (the address only as a SHA-256 in
//!   the rate-limit key), whether or not an account exists: 429 `rate_limited`.
//! - The token (`pr_…`, 256 random bits) lives [`RESET_TTL`], is stored only hashed and is
//!   consumed in one statement ([`crate::email_tokens`]); using it sets the password,
//!   revokes every session of the user and every other reset link, clears the login
//!   failures of the account, and is audited as `user.password_reset`.

use std::fmt::Write as _;
use std::time::Duration as StdDuration;

use aws_lc_rs::digest;
use chrono::Duration;
use runwarden_platform::request::RequestMeta;
use runwarden_ratelimit::Quota;
use runwarden_tenancy::UserId;
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;

use crate::account_audit::AccountEvent;
use crate::email::Email;
use crate::email_tokens::{self, Extra, Purpose};
use crate::mail::{self, Mailer, OutgoingMail};
use crate::password::{self, Hasher, NewPassword, PasswordRejection};
use crate::secret_token;
use crate::sessions;
use crate::throttle::{self, Throttled};

/// How long a reset link works: 30 minutes.
pub const RESET_TTL: Duration = Duration::minutes(30);

/// Reset mails to one address: 3 at once, then one more every 20 minutes.
pub const ADDRESS: Quota = Quota {
    per_period: 3,
    period: StdDuration::from_secs(60 * 60),
    burst: 3,
};

/// Reset requests from one client IP: 10 at once, then one every 3 minutes.
pub const IP: Quota = Quota {
    per_period: 20,
    period: StdDuration::from_secs(60 * 60),
    burst: 10,
};

pub const ADDRESS_POLICY: &str = "password-reset-address";
pub const IP_POLICY: &str = "password-reset-ip";

/// The path of the web page that reads the token from the link and calls
/// `POST /v1/auth/password/reset`.
pub const RESET_PAGE: &str = "/reset-password";

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// 429: too many reset requests for this address or from this client.
    #[error("too many password reset requests")]
    Throttled(Box<Throttled>),
    /// 400 `invalid_token`: unknown, used, expired or not a reset token.
    #[error("the reset link is invalid or has expired")]
    InvalidToken,
    /// 400 `weak_password`.
    #[error(transparent)]
    Rejected(#[from] PasswordRejection),
    #[error("password hashing failed")]
    Hashing(#[source] anyhow::Error),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

fn address_key(email: &Email) -> String {
    let hash = digest::digest(&digest::SHA256, email.as_str().as_bytes());
    let mut key = String::from("pwreset:address:");
    for byte in hash.as_ref() {
        let _ = write!(key, "{byte:02x}");
    }
    key
}

/// Consumes one request on the address key and the IP key; refused when either is spent.
async fn limit(pool: &PgPool, meta: &RequestMeta, email: &Email) -> Result<(), ResetError> {
    let mut keys = vec![(address_key(email), ADDRESS, ADDRESS_POLICY)];
    if let Some(ip) = meta.ip {
        keys.push((format!("pwreset:ip:{}", ip.to_canonical()), IP, IP_POLICY));
    }
    for (key, quota, policy) in keys {
        let decision = runwarden_ratelimit::check(pool, &key, quota).await?;
        if !decision.allowed {
            return Err(ResetError::Throttled(Box::new(Throttled {
                policy,
                quota,
                decision,
            })));
        }
    }
    Ok(())
}

fn reset_mail(to: &Email, link: &str) -> OutgoingMail {
    OutgoingMail {
        to: to.clone(),
        subject: "Reset your Runwarden password".into(),
        body_text: format!(
            "Someone (hopefully you) asked to reset the password of the Runwarden account of \
             this address.\r\n\
             \r\n\
             To choose a new password, open this link within 30 minutes. It works once, and \
             signs out every session of the account:\r\n\
             \r\n\
             {link}\r\n\
             \r\n\
             If it was not you, ignore this message: your password stays as it is.\r\n"
        ),
    }
}

fn no_account_mail(to: &Email) -> OutgoingMail {
    OutgoingMail {
        to: to.clone(),
        subject: "Password reset requested for Runwarden".into(),
        body_text: "Someone asked to reset the password of a Runwarden account with this \
             address, but there is no verified account with it, so nothing was changed.\r\n\
             \r\n\
             If it was you, you may have signed up with another address, or not yet \
             confirmed this one (sign up again to get a new confirmation link).\r\n\
             \r\n\
             If it was not you, you can ignore this message.\r\n"
            .into(),
    }
}

/// `POST /v1/auth/password/forgot`: after the limits, writes one mail for `email` whether
/// or not it has a verified account (see the module doc). Wakes the mail sender after the
/// commit.
pub async fn forgot(
    pool: &PgPool,
    mailer: &Mailer,
    meta: &RequestMeta,
    email: &Email,
) -> Result<(), ResetError> {
    limit(pool, meta, email).await?;
    let mut tx = pool.begin().await?;
    let user: Option<UserId> = sqlx::query_scalar(
        "SELECT id FROM users WHERE email = $1 AND email_verified_at IS NOT NULL",
    )
    .bind(email.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    let mail = match user {
        Some(user) => {
            let token = email_tokens::issue(
                &mut tx,
                user,
                Purpose::PasswordReset,
                RESET_TTL,
                Extra::default(),
            )
            .await?;
            AccountEvent::new(user, "user.password_reset_request")
                .actor(runwarden_events::Actor::system())
                .request(meta)
                .record(&mut tx)
                .await?;
            reset_mail(email, &mailer.link(RESET_PAGE, &token))
        }
        None => no_account_mail(email),
    };
    mail::enqueue(&mut tx, &mail).await?;
    tx.commit().await?;
    mailer.wake();
    tracing::info!(
        security_event = "password_reset_requested",
        known = user.is_some(),
        "password reset requested"
    );
    Ok(())
}

/// `POST /v1/auth/password/reset`: with a live reset token, sets `password` (the sign-up
/// rules), revokes every session of the user and their other reset links, and records
/// `user.password_reset`. The token is used up only when the password is set.
pub async fn reset(
    pool: &PgPool,
    hasher: &Hasher,
    meta: &RequestMeta,
    token: &SecretString,
    password: SecretString,
) -> Result<(), ResetError> {
    let token = token.expose_secret();
    if !Purpose::PasswordReset.accepts_shape(token) {
        return Err(ResetError::InvalidToken);
    }
    password::check_length(password.expose_secret())?;
    // Whose token it is, without using it yet: a weak password leaves the link working, and
    // no hash is computed for a token that is not live.
    let found: Option<(UserId, String)> = sqlx::query_as(
        "SELECT u.id, u.email FROM email_tokens t JOIN users u ON u.id = t.user_id
          WHERE t.token_hash = $1 AND t.purpose = $2 AND t.used_at IS NULL
            AND t.expires_at > now()",
    )
    .bind(secret_token::hash(token))
    .bind(Purpose::PasswordReset.as_str())
    .fetch_optional(pool)
    .await?;
    let (user, email) = found.ok_or(ResetError::InvalidToken)?;
    let email = Email::parse(&email).map_err(|_| ResetError::InvalidToken)?;
    let new = NewPassword::parse(password, &[email.local_part()])?;
    let hash = hasher.hash(&new).await.map_err(ResetError::Hashing)?;

    let mut tx = pool.begin().await?;
    // The single use: of two concurrent resets with one token, exactly one gets here.
    let consumed = email_tokens::consume(&mut tx, Purpose::PasswordReset, token)
        .await?
        .filter(|c| c.user_id == user)
        .ok_or(ResetError::InvalidToken)?;
    sqlx::query("UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1")
        .bind(consumed.user_id)
        .bind(hash)
        .execute(&mut *tx)
        .await?;
    let revoked = sessions::revoke_all(&mut tx, user, None, "password_reset").await?;
    email_tokens::revoke_all(&mut tx, user, Purpose::PasswordReset).await?;
    // The owner proved they read the address's mail: earlier failed logins no longer count.
    throttle::forget_after_reset(&mut tx, &throttle::Keys::new(&email, meta.ip)).await?;
    AccountEvent::new(user, "user.password_reset")
        .request(meta)
        .details(serde_json::json!({"sessions_revoked": revoked}))
        .record(&mut tx)
        .await?;
    tx.commit().await?;
    tracing::info!(
        security_event = "password_reset",
        user.id = %user,
        sessions_revoked = revoked,
        "password reset with a mailed link"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_keys_hide_the_address() {
        let key = address_key(&Email::parse("A@Example.com").unwrap());
        assert!(key.starts_with("pwreset:address:"));
        assert!(!key.to_lowercase().contains("example"));
        assert_eq!(key, address_key(&Email::parse("a@example.com").unwrap()));
    }

    #[test]
    fn the_link_lives_thirty_minutes() {
        assert_eq!(RESET_TTL, Duration::minutes(30));
        assert_eq!(ADDRESS.burst, 3);
    }
}
