//! The rows a test arranges behind the app's back, as the database's superuser: users with
//! live sessions and access tokens, orgs on a plan, memberships with roles, overrides.

use chrono::Utc;
use runwarden_tenancy::{OrgId, Role};
use runwarden_tokens::{AccessClaims, TokenSigner};
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use uuid::Uuid;

/// A signed-in user: their ids and a valid access token.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub token: String,
}

/// The test database as its superuser, and the test's token signer.
pub struct Fixtures {
    pub admin: PgPool,
    pub signer: TokenSigner,
    options: PgConnectOptions,
}

impl Fixtures {
    /// Plans get a request rate no test reaches: tests drive one org far past a plan's
    /// rate, and the limiter has its own tests.
    pub async fn new(options: PgConnectOptions) -> Self {
        let admin = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .unwrap();
        sqlx::query("UPDATE plans SET requests_per_minute = 1000000")
            .execute(&admin)
            .await
            .unwrap();
        Self {
            admin,
            signer: TokenSigner::generate("test-auth-key"),
            options,
        }
    }

    /// A pool on the same database as `role` (a function's runtime role).
    pub async fn pool_as(&self, role: &str, max_connections: u32) -> PgPool {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .connect_with(self.options.clone().username(role))
            .await
            .unwrap()
    }

    pub async fn org_on(&self, plan: &str) -> OrgId {
        let org = OrgId::new();
        sqlx::query("INSERT INTO orgs (id, name, plan) VALUES ($1, 'Test org', $2)")
            .bind(org)
            .bind(plan)
            .execute(&self.admin)
            .await
            .unwrap();
        org
    }

    /// Sets one override column directly (even where the app would refuse it).
    pub async fn override_limit(&self, org: OrgId, column: &str, value: i64) {
        sqlx::query(&format!(
            "INSERT INTO quota_overrides (org_id, {column}) VALUES ($1, $2)
             ON CONFLICT (org_id) DO UPDATE SET {column} = EXCLUDED.{column}"
        ))
        .bind(org)
        .bind(value)
        .execute(&self.admin)
        .await
        .unwrap();
    }

    /// A user with a live session and an access token for it.
    pub async fn user(&self) -> Caller {
        let user_id = Uuid::now_v7();
        let session_id = Uuid::now_v7();
        sqlx::query("INSERT INTO users (id, email) VALUES ($1, $2)")
            .bind(user_id)
            .bind(format!("u-{}@example.com", user_id.simple()))
            .execute(&self.admin)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO sessions (id, user_id, expires_at) VALUES ($1, $2, now() + interval '1 day')",
        )
        .bind(session_id)
        .bind(user_id)
        .execute(&self.admin)
        .await
        .unwrap();
        let claims = AccessClaims::new(user_id, session_id, Utc::now().timestamp());
        Caller {
            user_id,
            session_id,
            token: self.signer.sign(&claims).unwrap(),
        }
    }

    /// An org on the default plan (`trial`).
    pub async fn org(&self) -> OrgId {
        self.org_on("trial").await
    }

    pub async fn add_member(&self, org: OrgId, caller: &Caller, role: Role) {
        sqlx::query("INSERT INTO memberships (org_id, user_id, role) VALUES ($1, $2, $3)")
            .bind(org)
            .bind(caller.user_id)
            .bind(role.as_str())
            .execute(&self.admin)
            .await
            .unwrap();
    }

    /// A new user, a member of `org` with `role`.
    pub async fn member(&self, org: OrgId, role: Role) -> Caller {
        let caller = self.user().await;
        self.add_member(org, &caller, role).await;
        caller
    }

    /// A new org on the default plan with one member of each role.
    pub async fn team(&self) -> Team {
        self.team_on("trial").await
    }

    /// A new org on `plan` with one member of each role.
    pub async fn team_on(&self, plan: &str) -> Team {
        let org = self.org_on(plan).await;
        Team {
            org,
            owner: self.member(org, Role::Owner).await,
            admin: self.member(org, Role::Admin).await,
            member: self.member(org, Role::Member).await,
            viewer: self.member(org, Role::Viewer).await,
        }
    }

    /// The payloads of the outbox's audit events of `org` with `action`, oldest first.
    pub async fn audit_events(&self, org: OrgId, action: &str) -> Vec<Value> {
        sqlx::query_scalar(
            "SELECT payload FROM outbox_events
             WHERE org_id = $1 AND payload->>'action' = $2 ORDER BY created_at",
        )
        .bind(org)
        .bind(action)
        .fetch_all(&self.admin)
        .await
        .unwrap()
    }
}

/// An org with one member of each role.
#[derive(Debug, Clone)]
pub struct Team {
    pub org: OrgId,
    pub owner: Caller,
    pub admin: Caller,
    pub member: Caller,
    pub viewer: Caller,
}

impl Team {
    pub fn by_role(&self, role: Role) -> &Caller {
        match role {
            Role::Owner => &self.owner,
            Role::Admin => &self.admin,
            Role::Member => &self.member,
            Role::Viewer => &self.viewer,
        }
    }
}
