//! Sessions and refresh-token rotation.
//!
//! A session lives at most 24 hours from sign-in; rotation never extends it. Every refresh
//! marks the presented token used and issues its successor. Presenting a used token means
//! it was stolen or replayed: the whole session (the token family) is revoked.

use chrono::{Duration, Utc};
use runwarden_tenancy::{SessionId, UserId};
use runwarden_tokens::{AccessClaims, TokenKind, TokenSigner};
use serde::Serialize;
use sqlx::PgConnection;

use crate::secret_token;

pub const SESSION_LIFETIME: Duration = Duration::hours(24);

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Signing an access token failed: a fault of this deployment, never of the caller.
    #[error("signing an access token failed")]
    Signing(#[from] runwarden_tokens::TokenError),
}

/// What sign-up, login, refresh and Google sign-in return.
#[derive(Debug, Serialize)]
pub struct TokenPair {
    pub user_id: UserId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<runwarden_tenancy::OrgId>,
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub refresh_expires_in: i64,
}

fn pair(
    signer: &TokenSigner,
    user: UserId,
    session: SessionId,
    refresh_token: String,
    refresh_expires_in: i64,
) -> Result<TokenPair, SessionError> {
    let access_token = signer.sign(&AccessClaims::new(user, session, Utc::now().timestamp()))?;
    Ok(TokenPair {
        user_id: user,
        org_id: None,
        access_token,
        refresh_token,
        token_type: "Bearer",
        expires_in: AccessClaims::LIFETIME.as_secs(),
        refresh_expires_in: refresh_expires_in.max(0),
    })
}

async fn insert_refresh_token(
    conn: &mut PgConnection,
    session: SessionId,
) -> Result<String, sqlx::Error> {
    let token = secret_token::generate("rt_");
    sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id) VALUES ($1, $2)")
        .bind(secret_token::hash(&token))
        .bind(session)
        .execute(conn)
        .await?;
    Ok(token)
}

/// Starts a session for a user who just proved who they are: the session and its first
/// refresh token in one statement. `google_hd`: the Workspace domain of the Google identity
/// the user signed in with (None for a password), which orgs restricted to a domain check
/// on every request (`auth_enter`).
pub async fn start(
    conn: &mut PgConnection,
    signer: &TokenSigner,
    user: UserId,
    google_hd: Option<&str>,
) -> Result<TokenPair, SessionError> {
    let session = SessionId::new();
    let refresh = secret_token::generate("rt_");
    sqlx::query(
        "WITH s AS (INSERT INTO sessions (id, user_id, expires_at, google_hd)
                    VALUES ($1, $2, now() + $3, $5) RETURNING id)
         INSERT INTO refresh_tokens (token_hash, session_id) SELECT $4, s.id FROM s",
    )
    .bind(session)
    .bind(user)
    .bind(SESSION_LIFETIME)
    .bind(secret_token::hash(&refresh))
    .bind(google_hd)
    .execute(conn)
    .await?;
    pair(
        signer,
        user,
        session,
        refresh,
        SESSION_LIFETIME.num_seconds(),
    )
}

pub enum Rotation {
    Rotated(TokenPair),
    /// A used token came back: the family is now revoked.
    ReuseDetected {
        session: SessionId,
        user: UserId,
    },
    Invalid,
}

pub async fn rotate(
    conn: &mut PgConnection,
    signer: &TokenSigner,
    presented: &str,
) -> Result<Rotation, SessionError> {
    let hash = secret_token::hash(presented);
    // Concurrent rotations of one token serialize on its row: exactly one sees `used_at IS NULL`.
    let live: Option<(SessionId, UserId, i64)> = sqlx::query_as(
        "UPDATE refresh_tokens rt SET used_at = now()
           FROM sessions s
          WHERE rt.token_hash = $1 AND rt.used_at IS NULL
            AND s.id = rt.session_id AND s.revoked_at IS NULL AND s.expires_at > now()
      RETURNING s.id, s.user_id, floor(extract(epoch FROM s.expires_at - now()))::int8",
    )
    .bind(&hash)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some((session, user, remaining_secs)) = live {
        let refresh = insert_refresh_token(conn, session).await?;
        return Ok(Rotation::Rotated(pair(
            signer,
            user,
            session,
            refresh,
            remaining_secs,
        )?));
    }
    let reused: Option<(SessionId, UserId)> = sqlx::query_as(
        "UPDATE sessions s SET revoked_at = coalesce(s.revoked_at, now()),
                revoked_reason = coalesce(s.revoked_reason, 'refresh_reuse'), updated_at = now()
           FROM refresh_tokens rt
          WHERE rt.token_hash = $1 AND rt.used_at IS NOT NULL AND s.id = rt.session_id
      RETURNING s.id, s.user_id",
    )
    .bind(&hash)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(match reused {
        Some((session, user)) => Rotation::ReuseDetected { session, user },
        None => Rotation::Invalid,
    })
}

pub async fn revoke(
    conn: &mut PgConnection,
    session: SessionId,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sessions SET revoked_at = now(), revoked_reason = $2, updated_at = now()
          WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(session)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// [`rotate`] in a transaction of its own.
pub async fn refresh(
    pool: &sqlx::PgPool,
    signer: &TokenSigner,
    presented: &str,
) -> Result<Rotation, SessionError> {
    let mut tx = pool.begin().await?;
    let rotation = rotate(&mut tx, signer, presented).await?;
    tx.commit().await?;
    Ok(rotation)
}
