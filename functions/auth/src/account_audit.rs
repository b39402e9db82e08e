//! Account events: what happens to a user's own account (login, logout, refresh-token
//! reuse, Google linking, email verification, password change and reset, session
//! revocation) is recorded in the audit log of **every org the user belongs to**, in the
//! caller's transaction, so each org's Admins see what happened to their members'
//! credentials. A user who belongs to no org yet (an unverified sign-up) has no audit log
//! to write to; their account events are the security log lines alone.
//!
//! The audit log is per org (its hash chain is per org): an account event is one
//! `AuditEvent` per membership, each with the same action, target (`user`, the user's id)
//! and details, the actor being the user themself unless the caller says otherwise.

use runwarden_events::{Actor, AuditEvent, Target};
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::{OrgId, UserId, set_tenant};
use sqlx::PgConnection;

/// One account event to record. Build it with [`AccountEvent::new`].
pub struct AccountEvent<'a> {
    user: UserId,
    action: &'a str,
    actor: Actor,
    meta: Option<&'a RequestMeta>,
    details: serde_json::Value,
}

impl<'a> AccountEvent<'a> {
    /// `action` is `<resource>.<verb>`, e.g. `session.login`, `user.password_change`.
    /// The actor is the user themself.
    pub fn new(user: UserId, action: &'a str) -> Self {
        Self {
            user,
            action,
            actor: Actor::user(user),
            meta: None,
            details: serde_json::Value::Null,
        }
    }

    /// The request's id, client address and user agent.
    pub fn request(mut self, meta: &'a RequestMeta) -> Self {
        self.meta = Some(meta);
        self
    }

    /// Someone other than the user acted (an org Owner revoking a member's sessions, the
    /// system detecting refresh-token reuse).
    pub fn actor(mut self, actor: Actor) -> Self {
        self.actor = actor;
        self
    }

    /// Non-secret facts (a session id, a reason). Never a token, hash or password.
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// Appends the event to the outbox once per org the user belongs to, in the caller's
    /// transaction. Leaves the transaction's tenant settings as "the user, no org".
    /// Returns how many orgs it was recorded in.
    pub async fn record(self, conn: &mut PgConnection) -> Result<usize, sqlx::Error> {
        set_tenant(conn, None, Some(self.user)).await?;
        // Row-level security shows a user their own memberships without an org setting.
        let orgs: Vec<OrgId> =
            sqlx::query_scalar("SELECT org_id FROM memberships WHERE user_id = $1")
                .bind(self.user)
                .fetch_all(&mut *conn)
                .await?;
        for &org in &orgs {
            set_tenant(conn, Some(org), Some(self.user)).await?;
            let mut event = AuditEvent::new(
                org,
                self.actor.clone(),
                self.action,
                Target::new("user", self.user),
            )
            .with_details(self.details.clone());
            if let Some(meta) = self.meta {
                event =
                    event.with_request(meta.request_id.clone(), meta.ip, meta.user_agent.clone());
            }
            event.record(conn).await?;
        }
        set_tenant(conn, None, Some(self.user)).await?;
        Ok(orgs.len())
    }
}
