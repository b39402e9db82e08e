//! Media: the 5-minute tokens that open one run's event stream or artifacts
//! ([`tokens`]), the run-event pages they read ([`events`]), the process-wide fan-out of
//! those events to Server-Sent-Events watchers ([`fanout`]), and their configuration
//! ([`config`]).

pub mod config;
pub mod events;
pub mod fanout;
pub mod tokens;

use std::sync::Arc;

use sqlx::PgPool;

use crate::storage::ArtifactStore;

pub use config::MediaConfig;
pub use events::{CHANNEL, Item, PAGE, Page, RunEvent, check_access, page};
pub use fanout::{BROADCAST_CAPACITY, EventHub, FEED_POLL, KEEP_ALIVE};
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
