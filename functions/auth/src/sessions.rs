//! Sessions and refresh-token rotation.
//!
//! A session lives at most 24 hours from sign-in; rotation never extends it. Every refresh
//! marks the presented token used and issues its successor. Presenting a used token means
//! it was stolen or replayed: the whole session (the token family) is revoked.
//!
//! A session also remembers when its user last proved who they are in it
//! (`authenticated_at`: the sign-in, or a re-authentication with the password). Sensitive
//! changes (password change, ownership transfer, org termination) need that to be recent:
//! [`require_recent`], within [`RECENT_AUTH`].

use chrono::{DateTime, Duration, Utc};
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::{SessionId, UserId};
use runwarden_tokens::{AccessClaims, TokenKind, TokenSigner};
use serde::Serialize;
use sqlx::PgConnection;

use crate::account_audit::AccountEvent;
use crate::secret_token;
use runwarden_events::Actor;

pub const SESSION_LIFETIME: Duration = Duration::hours(24);

/// How recent a proof of identity a sensitive change needs (SES-08): 5 minutes.
pub const RECENT_AUTH: Duration = Duration::minutes(5);

/// How the user proved who they are when the session started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Password,
    Google,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::Google => "google",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// Signing an access token failed: a fault of this deployment, never of the caller.
    #[error("signing an access token failed")]
    Signing(#[from] runwarden_tokens::TokenError),
    /// The session's last proof of identity is older than [`RECENT_AUTH`] (or the session
    /// is no longer live): the edge answers 403 `reauth_required`.
    #[error("this change needs a recent sign-in: re-authenticate first")]
    ReauthRequired,
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

/// Starts a session for a user who just proved who they are (by `method`): the session
/// and its first refresh token in one statement. The request's client address and user
/// agent are kept with the session, for the user's session list. `google_hd`: the
/// Workspace domain of the Google identity the user signed in with (None for a password),
/// which orgs restricted to a domain check on every request (`auth_enter`).
pub async fn start(
    conn: &mut PgConnection,
    signer: &TokenSigner,
    user: UserId,
    method: AuthMethod,
    meta: &RequestMeta,
    google_hd: Option<&str>,
) -> Result<TokenPair, SessionError> {
    let session = SessionId::new();
    let refresh = secret_token::generate("rt_");
    let ip = meta.ip.map(|ip| ip.to_canonical().to_string());
    let user_agent: Option<String> = meta
        .user_agent
        .as_deref()
        .map(|ua| ua.chars().take(256).collect());
    sqlx::query(
        "WITH s AS (INSERT INTO sessions (id, user_id, expires_at, auth_method, ip, user_agent, google_hd)
                    VALUES ($1, $2, now() + $3, $5, $6::inet, $7, $8) RETURNING id)
         INSERT INTO refresh_tokens (token_hash, session_id) SELECT $4, s.id FROM s",
    )
    .bind(session)
    .bind(user)
    .bind(SESSION_LIFETIME)
    .bind(secret_token::hash(&refresh))
    .bind(method.as_str())
    .bind(ip)
    .bind(user_agent)
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

/// Rotates a live refresh token. A used one that comes back revokes its whole session and
/// records `session.refresh_reuse` (actor: the system) in every org of the user, in the
/// caller's transaction: the caller commits it even though the request answers 401.
pub async fn rotate(
    conn: &mut PgConnection,
    signer: &TokenSigner,
    meta: &RequestMeta,
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
        Some((session, user)) => {
            AccountEvent::new(user, "session.refresh_reuse")
                .actor(Actor::system())
                .request(meta)
                .details(serde_json::json!({"session_id": session, "revoked": "session"}))
                .record(conn)
                .await?;
            Rotation::ReuseDetected { session, user }
        }
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

/// Ends the caller's own session (logout), audited as `session.logout` in every org of
/// the user.
pub async fn logout(
    conn: &mut PgConnection,
    meta: &RequestMeta,
    principal: runwarden_tenancy::Principal,
) -> Result<(), sqlx::Error> {
    revoke(conn, principal.session_id, "logout").await?;
    AccountEvent::new(principal.user_id, "session.logout")
        .request(meta)
        .details(serde_json::json!({"session_id": principal.session_id}))
        .record(conn)
        .await?;
    Ok(())
}

/// Revokes `session` if it is a live session of `user`. False when it is not (another
/// user's, unknown, expired or already revoked): the edge answers 404.
pub async fn revoke_own(
    conn: &mut PgConnection,
    user: UserId,
    session: SessionId,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let revoked = sqlx::query(
        "UPDATE sessions SET revoked_at = now(), revoked_reason = $3, updated_at = now()
          WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND expires_at > now()",
    )
    .bind(session)
    .bind(user)
    .bind(reason)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(revoked == 1)
}

/// Revokes every live session of `user` but `except` (the caller's own, when it stays).
/// Answers how many were revoked. Their access tokens die at their next request (every
/// request checks its session), their refresh tokens at once.
pub async fn revoke_all(
    conn: &mut PgConnection,
    user: UserId,
    except: Option<SessionId>,
    reason: &str,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE sessions SET revoked_at = now(), revoked_reason = $3, updated_at = now()
          WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
            AND ($2::uuid IS NULL OR id <> $2)",
    )
    .bind(user)
    .bind(except)
    .bind(reason)
    .execute(conn)
    .await?
    .rows_affected())
}

/// SES-08: refuses unless `session`'s user proved who they are within [`RECENT_AUTH`]
/// (signed in, or re-authenticated with [`reauthenticated`]). For password and email
/// change, ownership transfer and org termination: call it inside the change's
/// transaction, after authorization.
pub async fn require_recent(
    conn: &mut PgConnection,
    session: SessionId,
) -> Result<(), SessionError> {
    let recent: Option<bool> = sqlx::query_scalar(
        "SELECT authenticated_at > now() - $2 FROM sessions
          WHERE id = $1 AND revoked_at IS NULL AND expires_at > now()",
    )
    .bind(session)
    .bind(RECENT_AUTH)
    .fetch_optional(conn)
    .await?;
    if recent == Some(true) {
        Ok(())
    } else {
        tracing::info!(security_event = "reauth_required", session.id = %session, "a sensitive change needs a recent sign-in");
        Err(SessionError::ReauthRequired)
    }
}

/// Records that the user just proved who they are again in `session` (the password, at
/// `POST /v1/auth/reauthenticate`).
pub async fn reauthenticated(
    conn: &mut PgConnection,
    session: SessionId,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sessions SET authenticated_at = now(), updated_at = now()
          WHERE id = $1 AND revoked_at IS NULL",
    )
    .bind(session)
    .execute(conn)
    .await?;
    Ok(())
}

/// One of the user's live sessions, as their session list shows it. `ip` and
/// `user_agent` are those of the sign-in.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct SessionInfo {
    pub id: SessionId,
    pub created_at: DateTime<Utc>,
    pub authenticated_at: DateTime<Utc>,
    pub auth_method: Option<String>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub expires_at: DateTime<Utc>,
    /// The session of the request's own access token.
    pub current: bool,
}

/// Up to `limit` live sessions of `user` ordered by id (oldest first), after `after`.
pub async fn list(
    conn: &mut PgConnection,
    user: UserId,
    current: SessionId,
    after: Option<SessionId>,
    limit: i64,
) -> Result<Vec<SessionInfo>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, created_at, authenticated_at, auth_method, host(ip) AS ip, user_agent,
                expires_at, id = $2 AS current
           FROM sessions
          WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > now()
            AND ($3::uuid IS NULL OR id > $3)
          ORDER BY id
          LIMIT $4",
    )
    .bind(user)
    .bind(current)
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// [`rotate`] in a transaction of its own.
pub async fn refresh(
    pool: &sqlx::PgPool,
    signer: &TokenSigner,
    meta: &RequestMeta,
    presented: &str,
) -> Result<Rotation, SessionError> {
    let mut tx = pool.begin().await?;
    let rotation = rotate(&mut tx, signer, meta, presented).await?;
    tx.commit().await?;
    Ok(rotation)
}
