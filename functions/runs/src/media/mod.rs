//! Media: the 5-minute tokens that open one run's event stream or artifacts
//! ([`tokens`]), the run-event pages they read ([`events`]), the process-wide fan-out of
//! those events to Server-Sent-Events watchers ([`fanout`]), and their configuration
//! ([`config`]). [`issue_tokens`] is the domain side of minting them.

pub mod config;
pub mod events;
pub mod fanout;
pub mod tokens;

use std::sync::Arc;

use chrono::Utc;
use runwarden_contracts::RunId;
use runwarden_events::{AuditEvent, Target};
use runwarden_platform::request::RequestMeta;
use runwarden_tenancy::OrgContext;
use serde_json::json;
use sqlx::{PgConnection, PgPool};

use crate::error::RunsResult;
use crate::runs;
use crate::storage::{self, Artifact, ArtifactStore};

pub use config::MediaConfig;
pub use events::{CHANNEL, Item, PAGE, Page, RunEvent, check_access, page};
pub use fanout::{
    BROADCAST_CAPACITY, EventHub, FEED_POLL, KEEP_ALIVE, SESSION_CHECK, STREAMS_RETRY_AFTER,
    StreamLimits,
};
pub use tokens::{Grant, MediaKeys, Scope, TOKEN_LIFETIME};

/// Everything media: the token keys, the event fan-out and the artifact store.
#[derive(Clone)]
pub struct Media {
    pub keys: Arc<MediaKeys>,
    pub hub: EventHub,
    pub store: ArtifactStore,
}

impl Media {
    pub fn new(keys: MediaKeys, pool: PgPool, store: ArtifactStore) -> Self {
        Self {
            keys: Arc::new(keys),
            hub: EventHub::new(pool),
            store,
        }
    }
}

/// What [`issue_tokens`] hands out.
pub struct IssuedTokens {
    /// Opens the run's event stream.
    pub events: String,
    /// Opens the run's artifacts.
    pub artifacts_token: String,
    /// The run's artifacts now.
    pub artifacts: Vec<Artifact>,
}

/// Two fresh tokens of `run` for the caller, one per scope, naming the caller's session,
/// with the run's artifacts; audited (`run.media_token`) in the caller's transaction. Another org's run (or none): 404.
pub async fn issue_tokens(
    tx: &mut PgConnection,
    keys: &MediaKeys,
    meta: &RequestMeta,
    ctx: &OrgContext,
    run: RunId,
) -> RunsResult<IssuedTokens> {
    let (org, user, session) = (ctx.org_id, ctx.principal.user_id, ctx.principal.session_id);
    runs::get(tx, org, run, false).await?;
    let artifacts = storage::list(tx, org, run).await?;
    let now = Utc::now().timestamp();
    let claims = |scope| MediaKeys::claims(org, run, user, session, scope, now);
    let events = keys.sign(&claims(Scope::Events))?;
    let artifacts_token = keys.sign(&claims(Scope::Artifacts))?;
    AuditEvent::by_user(meta, org, user, "run.media_token", Target::new("run", run))
        .with_details(json!({
            "scopes": [Scope::Events.as_str(), Scope::Artifacts.as_str()],
            "expires_in": TOKEN_LIFETIME.as_secs(),
        }))
        .record(tx)
        .await?;
    Ok(IssuedTokens {
        events,
        artifacts_token,
        artifacts,
    })
}
