//! Media tokens. `<video>`, `<img>` and `EventSource` cannot send headers, so media URLs
//! carry a token in the query string (the documented deviation from ASVS 14.2.1, see
//! `docs/security.md`). To keep that token from being worth anything else it is its own
//! kind (`typ: media+jwt`, `aud: runwarden-media`), signed by runs' own Ed25519 key
//! (`MEDIA_SIGNING_KEY`), never by auth's: a login access token cannot pass as a media token
//! (wrong key, type and audience) and a media token cannot pass as an access token. It
//! lives 5 minutes, names one run of one org and one scope (`events` or `artifacts`), and is
//! checked strictly against the URL: another run or scope, a tampered or expired token is
//! 401 (no leeway: runs both signs and checks them). It names the session of the access
//! token that minted it (`sid`); that session's liveness and the holder's membership are
//! read again on every use, in one statement ([`super::check_access`]): after logout or a
//! session revocation the token is 401 (as an expired one), and a removed member's token
//! opens nothing (404, as for another org's run). Open event streams re-check both every
//! few seconds ([`super::fanout`]).

use std::time::Duration;

use chrono::Utc;
use runwarden_contracts::RunId;
use runwarden_tenancy::{OrgId, SessionId, UserId};
use runwarden_tokens::{ISSUER, MediaClaims, TokenKind, TokenSigner, TokenVerifier};
use uuid::Uuid;

use crate::error::{RunsError, RunsResult};

/// How long a media token lives.
pub const TOKEN_LIFETIME: Duration = MediaClaims::LIFETIME;

/// What a media token opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Events,
    Artifacts,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Events => "events",
            Self::Artifacts => "artifacts",
        }
    }
}

/// A checked media token: the run it opens, in which org, for whom (and through which
/// session), until when.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    pub org: OrgId,
    pub user: UserId,
    /// The session of the access token that minted it: it must still be live.
    pub session: SessionId,
    pub run: RunId,
    /// The token's id: what the per-token stream cap counts.
    pub jti: Uuid,
    /// Unix seconds.
    pub expires_at: i64,
}

impl Grant {
    /// Time left, as of now (zero once expired).
    pub fn remaining(&self) -> Duration {
        let left = self.expires_at - Utc::now().timestamp();
        Duration::from_secs(u64::try_from(left).unwrap_or(0))
    }
}

/// runs' media signing key and the verifier that trusts only it.
pub struct MediaKeys {
    signer: TokenSigner,
    verifier: TokenVerifier,
}

impl std::fmt::Debug for MediaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaKeys")
            .field("kid", &self.signer.kid())
            .finish_non_exhaustive()
    }
}

impl MediaKeys {
    pub fn new(signer: TokenSigner) -> Self {
        let verifier = signer.verifier();
        Self { signer, verifier }
    }

    /// The claims of a fresh token for `scope` of `run`, issued at `now` (unix seconds) to
    /// `user` through `session` (the caller's access token's).
    pub fn claims(
        org: OrgId,
        run: RunId,
        user: UserId,
        session: SessionId,
        scope: Scope,
        now: i64,
    ) -> MediaClaims {
        MediaClaims {
            iss: ISSUER.into(),
            sub: user.to_string(),
            aud: MediaClaims::AUDIENCE.into(),
            exp: now + i64::try_from(TOKEN_LIFETIME.as_secs()).unwrap_or(300),
            iat: now,
            jti: Uuid::new_v4().to_string(),
            sid: session.to_string(),
            org: org.to_string(),
            run: run.to_string(),
            scope: scope.as_str().into(),
        }
    }

    pub fn sign(&self, claims: &MediaClaims) -> RunsResult<String> {
        self.signer
            .sign(claims)
            .map_err(|e| RunsError::from(anyhow::anyhow!("signing a media token: {e}")))
    }

    /// Checks `token` for the URL it came with (`run` as in the path, `scope` of the route)
    /// at `now`: any failure is 401, and the reason goes to the log, never the token.
    pub fn check(&self, token: &str, run: RunId, scope: Scope, now: i64) -> RunsResult<Grant> {
        let refuse = |reason: &str| {
            tracing::info!(
                security_event = "media_token_refused",
                reason,
                media.scope = scope.as_str(),
                "media token refused"
            );
            RunsError::unauthenticated()
        };
        let claims: MediaClaims = self
            .verifier
            .verify(token)
            .map_err(|e| refuse(&e.to_string()))?;
        // Signed here, with this clock: no leeway past `exp`, and never longer than 5 minutes.
        if claims.exp <= now {
            return Err(refuse("expired"));
        }
        if claims.exp - claims.iat > i64::try_from(TOKEN_LIFETIME.as_secs()).unwrap_or(300) {
            return Err(refuse("lifetime too long"));
        }
        if claims.scope != scope.as_str() {
            return Err(refuse("another scope"));
        }
        let token_run: RunId = claims.run.parse().map_err(|_| refuse("bad run claim"))?;
        if run != token_run {
            return Err(refuse("another run"));
        }
        Ok(Grant {
            org: claims.org.parse().map_err(|_| refuse("bad org claim"))?,
            user: claims.sub.parse().map_err(|_| refuse("bad subject"))?,
            session: claims
                .sid
                .parse()
                .map_err(|_| refuse("bad session claim"))?,
            run: token_run,
            jti: claims.jti.parse().map_err(|_| refuse("bad token id"))?,
            expires_at: claims.exp,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiError;

    fn keys() -> MediaKeys {
        MediaKeys::new(TokenSigner::generate("media-test"))
    }

    #[test]
    fn a_token_opens_its_run_and_scope_only_until_it_expires() {
        let keys = keys();
        let (org, run, user, session) =
            (OrgId::new(), RunId::new(), UserId::new(), SessionId::new());
        let now = Utc::now().timestamp();
        let token = keys
            .sign(&MediaKeys::claims(
                org,
                run,
                user,
                session,
                Scope::Events,
                now,
            ))
            .unwrap();
        let grant = keys.check(&token, run, Scope::Events, now).unwrap();
        assert_eq!(
            (grant.org, grant.user, grant.session, grant.run),
            (org, user, session, run)
        );
        assert_eq!(grant.expires_at, now + 300);

        let refused = |token: &str, path_run: RunId, scope: Scope, at: i64| {
            matches!(
                keys.check(token, path_run, scope, at),
                Err(RunsError::Api(ApiError::Unauthenticated))
            )
        };
        assert!(refused(&token, run, Scope::Artifacts, now));
        assert!(refused(&token, RunId::new(), Scope::Events, now));
        // A path run that is not an id never gets here: the path extractor answers 404
        // (tests/api/ids.rs).
        // No leeway: at exp it is dead (the verifier's 30 s skew does not apply here).
        assert!(refused(&token, run, Scope::Events, now + 300));
        assert!(!refused(&token, run, Scope::Events, now + 299));
        // Another key's token of the same kind, and a longer-lived one of this key.
        let other = MediaKeys::new(TokenSigner::generate("media-test"));
        let foreign = other
            .sign(&MediaKeys::claims(
                org,
                run,
                user,
                session,
                Scope::Events,
                now,
            ))
            .unwrap();
        assert!(refused(&foreign, run, Scope::Events, now));
        let mut long = MediaKeys::claims(org, run, user, session, Scope::Events, now);
        long.exp = now + 3600;
        let long = keys.sign(&long).unwrap();
        assert!(refused(&long, run, Scope::Events, now));
    }
}
