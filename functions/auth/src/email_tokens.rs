//! Single-use tokens sent by mail: email verification (`ev_…`), password reset (`pr_…`)
//! and email change (`ec_…`).
//!
//! A token is 256 random bits with a prefix that says what it is, shown only in the mail
//! and stored only as its SHA-256 ([`crate::secret_token::hash`]). [`consume`] marks it
//! used as it reads it (one statement), so two requests with the same token cannot both
//! succeed; a used, expired, unknown or other-purpose token is `None`, alike.

use chrono::{DateTime, Duration, Utc};
use runwarden_tenancy::UserId;
use sqlx::PgConnection;

use crate::secret_token;

/// What a token is for. Each has its own prefix, so one is never accepted as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    PasswordReset,
    EmailChange,
}

impl Purpose {
    /// The value of `email_tokens.purpose`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::VerifyEmail => "verify_email",
            Self::PasswordReset => "password_reset",
            Self::EmailChange => "email_change",
        }
    }

    pub fn prefix(self) -> &'static str {
        match self {
            Self::VerifyEmail => "ev_",
            Self::PasswordReset => "pr_",
            Self::EmailChange => "ec_",
        }
    }

    /// Does `raw` have the shape of a token of this purpose (prefix, bounded length)?
    /// Anything else is answered like an unknown token, without a lookup.
    pub fn accepts_shape(self, raw: &str) -> bool {
        raw.starts_with(self.prefix()) && raw.len() <= 128
    }
}

/// What a token carries beside its user (all optional; never a password in clear).
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// An Argon2 PHC hash to set when the token is used (a sign-up's password).
    pub password_hash: Option<String>,
    /// The name of the personal org to create when an email is verified.
    pub org_name: Option<String>,
    /// The address an email change moves to.
    pub new_email: Option<String>,
}

/// A token that was just consumed.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Consumed {
    pub user_id: UserId,
    pub password_hash: Option<String>,
    pub org_name: Option<String>,
    pub new_email: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Issues a token for `user` valid for `ttl`, in the caller's transaction, and answers it
/// (to be put in a mail, never logged).
pub async fn issue(
    conn: &mut PgConnection,
    user: UserId,
    purpose: Purpose,
    ttl: Duration,
    extra: Extra,
) -> Result<String, sqlx::Error> {
    let token = secret_token::generate(purpose.prefix());
    sqlx::query(
        "INSERT INTO email_tokens
            (token_hash, user_id, purpose, password_hash, org_name, new_email, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, now() + $7)",
    )
    .bind(secret_token::hash(&token))
    .bind(user)
    .bind(purpose.as_str())
    .bind(extra.password_hash)
    .bind(extra.org_name)
    .bind(extra.new_email)
    .bind(ttl)
    .execute(conn)
    .await?;
    Ok(token)
}

/// Issues a new token of `purpose` for `user` carrying what the newest unused one carries,
/// expired or not (a resend: the link of the latest sign-up, with its pending password), or
/// nothing when the user has no unused token of that purpose.
pub async fn reissue_latest(
    conn: &mut PgConnection,
    user: UserId,
    purpose: Purpose,
    ttl: Duration,
) -> Result<String, sqlx::Error> {
    let latest: Option<(Option<String>, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT password_hash, org_name, new_email FROM email_tokens
          WHERE user_id = $1 AND purpose = $2 AND used_at IS NULL
          ORDER BY created_at DESC LIMIT 1",
    )
    .bind(user)
    .bind(purpose.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let extra = latest
        .map(|(password_hash, org_name, new_email)| Extra {
            password_hash,
            org_name,
            new_email,
        })
        .unwrap_or_default();
    issue(conn, user, purpose, ttl, extra).await
}

/// Marks the token used and answers what it carries; None when it is unknown, already used,
/// expired or of another purpose. Concurrent calls with one token serialize on its row:
/// exactly one gets it.
pub async fn consume(
    conn: &mut PgConnection,
    purpose: Purpose,
    token: &str,
) -> Result<Option<Consumed>, sqlx::Error> {
    if !purpose.accepts_shape(token) {
        return Ok(None);
    }
    sqlx::query_as(
        "UPDATE email_tokens SET used_at = now()
          WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
      RETURNING user_id, password_hash, org_name, new_email, created_at",
    )
    .bind(secret_token::hash(token))
    .bind(purpose.as_str())
    .fetch_optional(conn)
    .await
}

/// Deletes every token of `purpose` that `user` still has (used or not): after a
/// verification, the other links of earlier sign-ups die with their pending passwords.
pub async fn revoke_all(
    conn: &mut PgConnection,
    user: UserId,
    purpose: Purpose,
) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM email_tokens WHERE user_id = $1 AND purpose = $2")
            .bind(user)
            .bind(purpose.as_str())
            .execute(conn)
            .await?
            .rows_affected(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_purpose_has_its_own_prefix() {
        let all = [
            Purpose::VerifyEmail,
            Purpose::PasswordReset,
            Purpose::EmailChange,
        ];
        for p in all {
            for q in all {
                let token = secret_token::generate(p.prefix());
                assert_eq!(q.accepts_shape(&token), p == q, "{p:?} token as {q:?}");
            }
        }
        assert!(!Purpose::VerifyEmail.accepts_shape(&format!("ev_{}", "a".repeat(200))));
    }
}
