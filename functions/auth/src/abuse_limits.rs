//! Abuse limits on what a signed-in user can multiply (API6-01): orgs created per user and
//! invitations sent per org. Both are GCRA keys of [`runwarden_ratelimit`] (table
//! `rate_limits`), like the login throttle ([`crate::throttle`]), so every instance sees the
//! same state and each limit refills by itself.
//!
//! Each check consumes one cell inside the caller's transaction: a creation that fails
//! afterwards rolls its cell back with it, and a refusal consumes nothing. A refusal is
//! answered 429 problem+json with its own code, `Retry-After` and the `RateLimit` headers,
//! and logged once here as a `security_event` (the alert of API6-01).
//!
//! Keys: `orgs:create:user:<user id>` and `invitations:org:<org id>`.

use std::time::Duration;

use runwarden_ratelimit::{Decision, Quota};
use runwarden_tenancy::{OrgId, UserId};
use sqlx::PgConnection;

const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// Orgs one user may create through `POST /v1/orgs`: 5 at once, then one every 4.8 hours.
/// (A user's personal org, made with their account, is not counted.)
pub const ORG_CREATION: Quota = Quota {
    per_period: 5,
    period: DAY,
    burst: 5,
};

/// Invitations one org may send: 100 at once, then one every 14.4 minutes.
pub const INVITATIONS: Quota = Quota {
    per_period: 100,
    period: DAY,
    burst: 100,
};

/// A request refused by one of these limits: its problem code, the `RateLimit-Policy` name
/// and the decision (for `Retry-After`). A plain value; the edge answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub code: &'static str,
    pub policy: &'static str,
    pub quota: Quota,
    pub decision: Decision,
}

pub fn org_creation_key(user: UserId) -> String {
    format!("orgs:create:user:{user}")
}

pub fn invitations_key(org: OrgId) -> String {
    format!("invitations:org:{org}")
}

/// Counts one org created by `user`; refused past [`ORG_CREATION`].
pub async fn org_creation(conn: &mut PgConnection, user: UserId) -> Result<(), LimitError> {
    let decision =
        runwarden_ratelimit::check(&mut *conn, &org_creation_key(user), ORG_CREATION).await?;
    if decision.allowed {
        return Ok(());
    }
    tracing::warn!(
        security_event = "org_creation_rate_limited",
        user.id = %user,
        retry_after_s = decision.retry_after_secs().unwrap_or(1),
        "org creation refused: per-user limit"
    );
    Err(LimitError::Limited(Box::new(Limited {
        code: "org_creation_rate_limited",
        policy: "org-creation",
        quota: ORG_CREATION,
        decision,
    })))
}

/// Counts one invitation sent by `org` (by `user`); refused past [`INVITATIONS`].
pub async fn invitation(
    conn: &mut PgConnection,
    org: OrgId,
    user: UserId,
) -> Result<(), LimitError> {
    let decision =
        runwarden_ratelimit::check(&mut *conn, &invitations_key(org), INVITATIONS).await?;
    if decision.allowed {
        return Ok(());
    }
    tracing::warn!(
        security_event = "invitation_rate_limited",
        org.id = %org,
        user.id = %user,
        retry_after_s = decision.retry_after_secs().unwrap_or(1),
        "invitation refused: per-org daily limit"
    );
    Err(LimitError::Limited(Box::new(Limited {
        code: "invitation_rate_limited",
        policy: "invitations",
        quota: INVITATIONS,
        decision,
    })))
}

#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("rate limited")]
    Limited(Box<Limited>),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_orgs_at_once_then_one_every_four_point_eight_hours() {
        assert_eq!(ORG_CREATION.interval_us(), 17_280_000_000);
        let mut tat = None;
        for _ in 0..5 {
            let (ok, next) = ORG_CREATION.step(tat);
            assert!(ok);
            tat = Some(next);
        }
        let (ok, after) = ORG_CREATION.peek(tat);
        assert!(!ok);
        assert_eq!(
            ORG_CREATION.decision(ok, after).retry_after_secs(),
            Some(17_280)
        );
    }

    #[test]
    fn a_hundred_invitations_at_once_then_one_every_fourteen_minutes() {
        assert_eq!(INVITATIONS.interval_us(), 864_000_000);
        let mut tat = None;
        for _ in 0..100 {
            let (ok, next) = INVITATIONS.step(tat);
            assert!(ok);
            tat = Some(next);
        }
        assert!(!INVITATIONS.peek(tat).0);
    }

    #[test]
    fn keys_name_the_user_or_the_org() {
        let user = UserId::new();
        let org = OrgId::new();
        assert_eq!(org_creation_key(user), format!("orgs:create:user:{user}"));
        assert_eq!(invitations_key(org), format!("invitations:org:{org}"));
    }
}
