//! A signed-in user's own credentials: re-authenticating in the current session, changing
//! the password, and their sessions (list, revoke).
//!
//! Checking a password here is throttled exactly like login ([`crate::throttle`], the same
//! account and IP keys): a stolen access token does not give an attacker a faster password
//! oracle than the login form. Hashing runs outside any transaction, so a slow hash never
//! holds a database connection.

use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::access::{AccessError, enter_as_user};
use runwarden_tenancy::{Principal, SessionId, UserId};
use secrecy::SecretString;
use sqlx::{PgConnection, PgPool};

use crate::account_audit::AccountEvent;
use crate::email::Email;
use crate::password::{Hasher, NewPassword, PasswordRejection};
use crate::sessions::{self, SessionError, SessionInfo};
use crate::throttle::{self, Admission, Throttled};

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The access token's session is no longer live.
    #[error("unauthenticated")]
    Unauthenticated,
    /// 403 `reauth_required` (SES-08).
    #[error("this change needs a recent sign-in: re-authenticate first")]
    ReauthRequired,
    /// 403 `invalid_password`: the password the caller gave for themself is wrong (or
    /// they have none: a Google-only account).
    #[error("the password is incorrect")]
    WrongPassword,
    /// 400 `weak_password`.
    #[error(transparent)]
    Rejected(#[from] PasswordRejection),
    /// 429: too many wrong passwords for this account or from this client.
    #[error("throttled")]
    Throttled(Box<Throttled>),
    /// Any other refusal of the access check, answered as the platform answers it.
    #[error(transparent)]
    Access(AccessError),
    /// 404: not one of the caller's live sessions.
    #[error("not found")]
    NotFound,
    #[error("password hashing failed")]
    Hashing(#[source] anyhow::Error),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<AccessError> for CredentialError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::Database(e) => Self::Database(e),
            AccessError::Unauthenticated | AccessError::NotFound => Self::Unauthenticated,
            other => Self::Access(other),
        }
    }
}

impl From<SessionError> for CredentialError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Database(e) => Self::Database(e),
            SessionError::ReauthRequired => Self::ReauthRequired,
            SessionError::Signing(e) => Self::Hashing(anyhow::Error::new(e)),
        }
    }
}

/// The caller's email and password hash, in a transaction that checked their session.
async fn account(
    conn: &mut PgConnection,
    user: UserId,
) -> Result<(Email, Option<String>), CredentialError> {
    let (email, hash): (String, Option<String>) =
        sqlx::query_as("SELECT email, password_hash FROM users WHERE id = $1")
            .bind(user)
            .fetch_one(&mut *conn)
            .await?;
    let email = Email::parse(&email).map_err(|_| CredentialError::Unauthenticated)?;
    Ok((email, hash))
}

/// Checks `password` against `hash` under the login throttle of `email` and the client.
/// Answers the (unchanged) hash when it matches.
async fn check_password(
    pool: &PgPool,
    hasher: &Hasher,
    meta: &RequestMeta,
    user: UserId,
    email: &Email,
    hash: Option<String>,
    password: &SecretString,
) -> Result<Option<String>, CredentialError> {
    let keys = throttle::Keys::new(email, meta.ip);
    if let Admission::Throttled(throttled) = throttle::admit(pool, &keys).await? {
        return Err(CredentialError::Throttled(Box::new(throttled)));
    }
    let ok = hasher
        .verify(password, hash.clone())
        .await
        .map_err(CredentialError::Hashing)?;
    if !ok {
        throttle::record_failure(pool, &keys).await?;
        tracing::info!(security_event = "password_check_failed", user.id = %user, "wrong password for a signed-in user");
        return Err(CredentialError::WrongPassword);
    }
    Ok(hash)
}

/// `POST /v1/auth/reauthenticate`: the caller proves who they are again with their
/// password; their current session counts as freshly authenticated from now on.
pub async fn reauthenticate(
    pool: &PgPool,
    hasher: &Hasher,
    meta: &RequestMeta,
    principal: Principal,
    password: &SecretString,
) -> Result<(), CredentialError> {
    let mut tx = pool.begin().await?;
    enter_as_user(&mut tx, principal).await?;
    let (email, hash) = account(&mut tx, principal.user_id).await?;
    tx.commit().await?;
    check_password(
        pool,
        hasher,
        meta,
        principal.user_id,
        &email,
        hash,
        password,
    )
    .await?;
    let mut tx = pool.begin().await?;
    enter_as_user(&mut tx, principal).await?;
    sessions::reauthenticated(&mut tx, principal.session_id).await?;
    tx.commit().await?;
    tracing::info!(security_event = "reauthenticated", user.id = %principal.user_id, session.id = %principal.session_id, "re-authenticated");
    Ok(())
}

/// `POST /v1/auth/password/change` (AUTH-04): needs a recent sign-in in this session
/// (SES-08) and the current password; sets `new` and revokes every other session of the
/// user (reason `password_change`), the current one staying. Audited as
/// `user.password_change`. Answers how many sessions were revoked.
pub async fn change_password(
    pool: &PgPool,
    hasher: &Hasher,
    meta: &RequestMeta,
    principal: Principal,
    current: &SecretString,
    new: SecretString,
) -> Result<u64, CredentialError> {
    let mut tx = pool.begin().await?;
    enter_as_user(&mut tx, principal).await?;
    sessions::require_recent(&mut tx, principal.session_id).await?;
    let (email, hash) = account(&mut tx, principal.user_id).await?;
    tx.commit().await?;
    let new = NewPassword::parse(new, &[email.local_part()])?;
    let old_hash =
        check_password(pool, hasher, meta, principal.user_id, &email, hash, current).await?;
    let new_hash = hasher.hash(&new).await.map_err(CredentialError::Hashing)?;

    let mut tx = pool.begin().await?;
    enter_as_user(&mut tx, principal).await?;
    // Only over the hash just checked: a concurrent change (or reset) wins, and this one
    // answers as a wrong current password.
    let updated = sqlx::query(
        "UPDATE users SET password_hash = $3, updated_at = now()
          WHERE id = $1 AND password_hash IS NOT DISTINCT FROM $2",
    )
    .bind(principal.user_id)
    .bind(old_hash)
    .bind(new_hash)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if updated != 1 {
        return Err(CredentialError::WrongPassword);
    }
    let revoked = sessions::revoke_all(
        &mut tx,
        principal.user_id,
        Some(principal.session_id),
        "password_change",
    )
    .await?;
    AccountEvent::new(principal.user_id, "user.password_change")
        .request(meta)
        .details(serde_json::json!({"other_sessions_revoked": revoked}))
        .record(&mut tx)
        .await?;
    tx.commit().await?;
    tracing::info!(security_event = "password_changed", user.id = %principal.user_id, sessions_revoked = revoked, "password changed");
    Ok(revoked)
}

/// `GET /v1/me/sessions`: a page of the caller's live sessions.
pub async fn list_sessions(
    pool: &PgPool,
    principal: Principal,
    after: Option<SessionId>,
    limit: i64,
) -> Result<Vec<SessionInfo>, CredentialError> {
    let mut tx = pool.begin().await?;
    enter_as_user(&mut tx, principal).await?;
    let rows = sessions::list(
        &mut tx,
        principal.user_id,
        principal.session_id,
        after,
        limit,
    )
    .await?;
    tx.commit().await?;
    Ok(rows)
}

/// `DELETE /v1/me/sessions/{id}`: revokes one of the caller's own live sessions (their
/// current one too: that is a logout). Another user's session, or one that is not live, is
/// not found. Audited as `session.revoke`.
pub async fn revoke_session(
    pool: &PgPool,
    meta: &RequestMeta,
    principal: Principal,
    session: SessionId,
) -> Result<(), CredentialError> {
    let mut tx = pool.begin().await?;
    enter_as_user(&mut tx, principal).await?;
    if !sessions::revoke_own(&mut tx, principal.user_id, session, "user_revoked").await? {
        return Err(CredentialError::NotFound);
    }
    AccountEvent::new(principal.user_id, "session.revoke")
        .request(meta)
        .details(serde_json::json!({
            "session_id": session,
            "current": session == principal.session_id,
        }))
        .record(&mut tx)
        .await?;
    tx.commit().await?;
    tracing::info!(security_event = "session_revoked", user.id = %principal.user_id, session.id = %session, "session revoked by its user");
    Ok(())
}
