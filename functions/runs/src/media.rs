//! Media: the 5-minute tokens that open one run's event stream or artifacts, and the
//! process-wide fan-out of run events to Server-Sent-Events watchers.
//!
//! **Tokens.** `<video>`, `<img>` and `EventSource` cannot send headers, so media URLs carry
//! a token in the query string (the documented deviation from ASVS 14.2.1, see
//! notes/security-tests.md). To keep that token from being worth anything else it is its own
//! kind (`typ: media+jwt`, `aud: runwarden-media`), signed by runs' own Ed25519 key
//! (`MEDIA_SIGNING_KEY`), never by auth's: a login access token cannot pass as a media token
//! (wrong key, type and audience) and a media token cannot pass as an access token. It
//! lives 5 minutes, names one run of one org and one scope (`events` or `artifacts`), and is
//! checked strictly against the URL: another run or scope, a tampered or expired token is
//! 401 (no leeway: runs both signs and checks them). The holder's membership is read again
//! on every use, so a removed member's token opens nothing (404, as for another org's run).
//!
//! **Fan-out.** One `LISTEN run_events` connection per process ([`EventHub`]); a NOTIFY
//! carries a run id. For each run that has watchers there is one *feed*: a task that, when
//! poked (or every [`FEED_POLL`] as a safety net, and after the LISTEN connection was
//! re-established), reads the run's new events once and broadcasts them
//! (`tokio::sync::broadcast`) to every watcher of that run. 500 watchers of one run cost one
//! query per NOTIFY, not 500. A watcher subscribes first, then replays from the database what
//! follows its `Last-Event-ID`, then takes the broadcast, dropping ids it already sent: no
//! gap, no duplicate. A watcher that falls behind the broadcast buffer re-reads from the
//! database. Ids are in commit order per run because every insert into `run_events` of a
//! run happens under that run's row lock (`runs::get(.., lock = true)` or an `UPDATE runs`
//! first), which is what makes `id > last` a complete resume point.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use anyhow::Context;
use axum::response::sse::Event;
use chrono::{DateTime, Utc};
use futures::Stream;
use runwarden_platform::config::{http_url, optional_secret, optional_var, required_secret};
use runwarden_platform::{ConfigError, Environment};
use runwarden_tenancy::{OrgId, UserId, set_tenant};
use runwarden_tokens::{ISSUER, MediaClaims, TokenKind, TokenSigner, TokenVerifier};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, OnceCell, broadcast, watch};
use uuid::Uuid;

use crate::error::{RunsError, RunsResult};
use crate::storage::{ArtifactStore, SigningKey};

/// The NOTIFY channel `runs::notify_events` signals (payload: the run id).
pub const CHANNEL: &str = "run_events";
/// How long a media token lives.
pub const TOKEN_LIFETIME: Duration = MediaClaims::LIFETIME;
/// A feed re-reads its run this often even without a NOTIFY (and retires when unwatched).
pub const FEED_POLL: Duration = Duration::from_secs(5);
/// Events read per query, in a replay and in a feed.
pub const PAGE: i64 = 500;
/// Events a feed keeps for watchers that are behind; further behind, they re-read.
pub const BROADCAST_CAPACITY: usize = 1024;
/// SSE keep-alive comments, well under proxies' idle timeouts.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

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

    /// From configuration. Outside production a missing media key or storage key is
    /// replaced by a throwaway one, with a warning (tokens and URLs then die with the
    /// process); production refuses to start without its media key (see [`MediaConfig`]).
    pub async fn build(config: MediaConfig, pool: PgPool) -> anyhow::Result<Self> {
        let signer = match &config.signing_key {
            Some(pem) => TokenSigner::from_pem(&config.signing_key_id, pem.expose_secret())
                .context("MEDIA_SIGNING_KEY is not a valid Ed25519 PKCS#8 PEM key")?,
            None => {
                tracing::warn!(
                    "MEDIA_SIGNING_KEY is not set: using a throwaway key (development only)"
                );
                TokenSigner::generate(&config.signing_key_id)
            }
        };
        let key = match (&config.storage_signing_key_file, config.env.is_production()) {
            (Some(path), _) => {
                let raw = std::fs::read_to_string(path).with_context(|| {
                    format!("STORAGE_SIGNING_KEY_FILE: cannot read {}", path.display())
                })?;
                SigningKey::ServiceAccount(
                    serde_json::from_str(&raw)
                        .context("STORAGE_SIGNING_KEY_FILE is not a JSON key file")?,
                )
            }
            (None, true) => SigningKey::Adc,
            (None, false) => {
                tracing::warn!(
                    "STORAGE_SIGNING_KEY_FILE is not set: signing storage URLs with a throwaway \
                     key (development only; the emulator ignores signatures)"
                );
                SigningKey::ServiceAccount(crate::storage::throwaway_service_account_key(
                    "runs-dev@runwarden-local.iam.gserviceaccount.com",
                )?)
            }
        };
        let store = ArtifactStore::new(
            &config.artifacts_bucket,
            key,
            config.storage_emulator_host.clone(),
        )
        .await?;
        Ok(Self::new(MediaKeys::new(signer), pool, store))
    }
}

/// Media configuration (documented in `.env.example`). Not `Debug`: it holds the key.
pub struct MediaConfig {
    pub env: Environment,
    /// Ed25519 PKCS#8 PEM signing media tokens (`MEDIA_SIGNING_KEY`; required in production).
    pub signing_key: Option<SecretString>,
    /// Its key id (`MEDIA_SIGNING_KEY_ID`, default `media-1`).
    pub signing_key_id: String,
    /// The bucket artifacts go to (`ARTIFACTS_BUCKET`, default `runwarden-artifacts`).
    pub artifacts_bucket: String,
    /// A service-account key JSON that signs storage URLs offline
    /// (`STORAGE_SIGNING_KEY_FILE`); unset in production: ADC's signer.
    pub storage_signing_key_file: Option<std::path::PathBuf>,
    /// The Cloud Storage emulator (`STORAGE_EMULATOR_HOST`, e.g. `http://127.0.0.1`);
    /// refused in production.
    pub storage_emulator_host: Option<String>,
}

impl MediaConfig {
    pub fn from_env(env: Environment) -> Result<Self, ConfigError> {
        let signing_key = if env.is_production() {
            Some(required_secret("MEDIA_SIGNING_KEY")?)
        } else {
            optional_secret("MEDIA_SIGNING_KEY")
        };
        let artifacts_bucket =
            optional_var("ARTIFACTS_BUCKET").unwrap_or_else(|| "runwarden-artifacts".into());
        let bucket_ok = (3..=63).contains(&artifacts_bucket.len())
            && artifacts_bucket.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            });
        if !bucket_ok {
            return Err(ConfigError::Invalid {
                name: "ARTIFACTS_BUCKET",
                reason: "expected a bucket name: 3 to 63 of a-z, 0-9, -, _ and .".into(),
            });
        }
        let storage_emulator_host = match optional_var("STORAGE_EMULATOR_HOST") {
            Some(_) if env.is_production() => {
                return Err(ConfigError::Invalid {
                    name: "STORAGE_EMULATOR_HOST",
                    reason: "the storage emulator is for the local stack only".into(),
                });
            }
            Some(raw) => Some(http_url("STORAGE_EMULATOR_HOST", &raw)?.to_string()),
            None => None,
        };
        Ok(Self {
            env,
            signing_key,
            signing_key_id: optional_var("MEDIA_SIGNING_KEY_ID")
                .unwrap_or_else(|| "media-1".into()),
            artifacts_bucket,
            storage_signing_key_file: optional_var("STORAGE_SIGNING_KEY_FILE")
                .map(std::path::PathBuf::from),
            storage_emulator_host,
        })
    }
}

/// A checked media token: the run it opens, in which org, for whom, until when.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    pub org: OrgId,
    pub user: UserId,
    pub run: Uuid,
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

    /// The claims of a fresh token for `scope` of `run`, issued at `now` (unix seconds).
    pub fn claims(org: OrgId, run: Uuid, user: UserId, scope: Scope, now: i64) -> MediaClaims {
        MediaClaims {
            iss: ISSUER.into(),
            sub: user.to_string(),
            aud: MediaClaims::AUDIENCE.into(),
            exp: now + i64::try_from(TOKEN_LIFETIME.as_secs()).unwrap_or(300),
            iat: now,
            jti: Uuid::new_v4().to_string(),
            org: org.to_string(),
            run: run.to_string(),
            scope: scope.as_str().into(),
        }
    }

    pub fn sign(&self, claims: &MediaClaims) -> RunsResult<String> {
        self.signer
            .sign(claims)
            .map_err(|e| RunsError::Internal(anyhow::anyhow!("signing a media token: {e}")))
    }

    /// Checks `token` for the URL it came with (`run` as in the path, `scope` of the route)
    /// at `now`: any failure is 401, and the reason goes to the log, never the token.
    pub fn check(&self, token: &str, run: &str, scope: Scope, now: i64) -> RunsResult<Grant> {
        let refuse = |reason: &str| {
            tracing::info!(
                security_event = "media_token_refused",
                reason,
                media.scope = scope.as_str(),
                "media token refused"
            );
            RunsError::Unauthenticated
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
        let token_run: Uuid = claims.run.parse().map_err(|_| refuse("bad run claim"))?;
        if run.parse::<Uuid>().ok() != Some(token_run) {
            return Err(refuse("another run"));
        }
        Ok(Grant {
            org: claims.org.parse().map_err(|_| refuse("bad org claim"))?,
            user: claims.sub.parse().map_err(|_| refuse("bad subject"))?,
            run: token_run,
            expires_at: claims.exp,
        })
    }
}

/// One event of a run's stream, as sent in an SSE `data:` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct RunEvent {
    pub id: i64,
    pub kind: String,
    pub stream: Option<String>,
    pub message: String,
    pub percent: Option<i16>,
    pub created_at: DateTime<Utc>,
}

/// An event, and whether it is the run's last (the final status of an ended run).
#[derive(Debug, Clone)]
pub struct Item {
    pub event: RunEvent,
    pub last: bool,
}

/// A page of a run's events after some id.
#[derive(Debug)]
pub struct Page {
    pub items: Vec<Item>,
    /// As many as asked: there may be more.
    pub full: bool,
    /// The run has ended: no event will follow its last.
    pub ended: bool,
    /// The run's newest event id, if any.
    pub max_id: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct PageRow {
    id: Option<i64>,
    kind: Option<String>,
    stream: Option<String>,
    message: Option<String>,
    percent: Option<i16>,
    created_at: Option<DateTime<Utc>>,
    ended: bool,
    max_id: Option<i64>,
}

/// Up to `limit` events of `run` after `after`, in id order, with the run's state, read in
/// one statement (one snapshot) in a transaction scoped to `org`; `None` when the org has
/// no such run.
pub async fn page(
    pool: &PgPool,
    org: OrgId,
    run: Uuid,
    after: i64,
    limit: i64,
) -> RunsResult<Option<Page>> {
    let mut tx = pool.begin().await?;
    set_tenant(&mut tx, Some(org), None).await?;
    let rows: Vec<PageRow> = sqlx::query_as(
        "SELECT e.id, e.kind, e.stream, e.message, e.percent, e.created_at,
                r.status NOT IN ('admitting', 'queued', 'running') AS ended,
                (SELECT max(m.id) FROM run_events m WHERE m.run_id = r.id) AS max_id
         FROM runs r
         LEFT JOIN LATERAL (
             SELECT id, kind, stream, message, percent, created_at FROM run_events
             WHERE run_id = r.id AND id > $3 ORDER BY id LIMIT $4
         ) e ON true
         WHERE r.org_id = $1 AND r.id = $2
         ORDER BY e.id",
    )
    .bind(org)
    .bind(run)
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let (ended, max_id) = (first.ended, first.max_id);
    let items: Vec<Item> = rows
        .into_iter()
        .filter_map(|row| {
            Some(RunEvent {
                id: row.id?,
                kind: row.kind?,
                stream: row.stream,
                message: row.message?,
                percent: row.percent,
                created_at: row.created_at?,
            })
        })
        .map(|event| Item {
            last: ended && Some(event.id) == max_id,
            event,
        })
        .collect();
    Ok(Some(Page {
        full: items.len() as i64 >= limit,
        items,
        ended,
        max_id,
    }))
}

/// The caller of a media URL may still see the run: it is a run of the grant's org and the
/// holder is still a member of that (live) org. Another org's run, or a former member: 404.
pub async fn check_access(pool: &PgPool, grant: &Grant) -> RunsResult<()> {
    let mut tx = pool.begin().await?;
    set_tenant(&mut tx, Some(grant.org), None).await?;
    let member: Option<bool> = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM memberships m JOIN orgs o ON o.id = m.org_id
                        WHERE m.org_id = r.org_id AND m.user_id = $3
                          AND o.terminated_at IS NULL)
         FROM runs r WHERE r.org_id = $1 AND r.id = $2",
    )
    .bind(grant.org)
    .bind(grant.run)
    .bind(grant.user)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    match member {
        Some(true) => Ok(()),
        Some(false) => {
            tracing::info!(
                security_event = "authz_denied",
                reason = "media token of a former member",
                user.id = %grant.user,
                org.id = %grant.org,
                run.id = %grant.run,
                "media token refused"
            );
            Err(RunsError::NotFound)
        }
        None => Err(RunsError::NotFound),
    }
}

// ---------------------------------------------------------------------------------------
// the hub

/// The process's one LISTEN connection and its per-run feeds. Cheap to clone.
#[derive(Clone)]
pub struct EventHub {
    inner: Arc<Hub>,
}

struct Hub {
    pool: PgPool,
    feeds: Mutex<HashMap<Uuid, FeedHandle>>,
    listening: OnceCell<()>,
    shutdown: watch::Sender<bool>,
    generations: AtomicU64,
}

struct FeedHandle {
    tx: broadcast::Sender<Arc<Item>>,
    poke: Arc<Notify>,
    ready: watch::Receiver<FeedState>,
    generation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FeedState {
    Starting,
    Ready,
    Failed,
}

impl EventHub {
    pub fn new(pool: PgPool) -> Self {
        Self {
            inner: Arc::new(Hub {
                pool,
                feeds: Mutex::new(HashMap::new()),
                listening: OnceCell::new(),
                shutdown: watch::channel(false).0,
                generations: AtomicU64::new(0),
            }),
        }
    }

    /// Ends every stream and the LISTEN task (graceful shutdown: open streams would
    /// otherwise hold the server's drain until its grace period ends).
    pub fn close(&self) {
        self.inner.shutdown.send_replace(true);
    }

    /// Runs with a feed now (watched, or not yet retired).
    pub fn feeds(&self) -> usize {
        self.inner.feeds.lock().map_or(0, |f| f.len())
    }

    /// The first watcher starts the LISTEN task; later ones find it running. LISTEN is in
    /// place before any watcher reads the database, so no NOTIFY after that read is missed.
    async fn ensure_listening(&self) -> RunsResult<()> {
        self.inner
            .listening
            .get_or_try_init(|| async {
                let mut listener = PgListener::connect_with(&self.inner.pool).await?;
                listener.listen(CHANNEL).await?;
                tokio::spawn(listen(
                    Arc::downgrade(&self.inner),
                    listener,
                    self.inner.shutdown.subscribe(),
                ));
                Ok::<_, sqlx::Error>(())
            })
            .await?;
        Ok(())
    }

    /// A receiver of `run`'s feed (started if none), once the feed knows where it begins.
    async fn subscribe(&self, org: OrgId, run: Uuid) -> RunsResult<broadcast::Receiver<Arc<Item>>> {
        self.ensure_listening().await?;
        let (rx, mut ready) = {
            let mut feeds = self
                .inner
                .feeds
                .lock()
                .map_err(|_| RunsError::Internal(anyhow::anyhow!("feed map poisoned")))?;
            let handle = feeds
                .entry(run)
                .or_insert_with(|| self.start_feed(org, run));
            (handle.tx.subscribe(), handle.ready.clone())
        };
        let state = *ready
            .wait_for(|s| *s != FeedState::Starting)
            .await
            .map_err(|_| RunsError::Unavailable)?;
        match state {
            FeedState::Ready => Ok(rx),
            _ => Err(RunsError::Unavailable),
        }
    }

    /// Called with the feed map locked.
    fn start_feed(&self, org: OrgId, run: Uuid) -> FeedHandle {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        let poke = Arc::new(Notify::new());
        let (ready_tx, ready) = watch::channel(FeedState::Starting);
        let generation = self.inner.generations.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(feed(
            self.clone(),
            org,
            run,
            generation,
            tx.clone(),
            poke.clone(),
            ready_tx,
        ));
        FeedHandle {
            tx,
            poke,
            ready,
            generation,
        }
    }

    fn poke(&self, run: Uuid) {
        if let Ok(feeds) = self.inner.feeds.lock()
            && let Some(handle) = feeds.get(&run)
        {
            handle.poke.notify_one();
        }
    }

    fn poke_all(&self) {
        if let Ok(feeds) = self.inner.feeds.lock() {
            feeds.values().for_each(|h| h.poke.notify_one());
        }
    }

    /// Removes the feed when nobody watches it any more; under the map lock, so a watcher
    /// either subscribed before (and the feed stays) or finds no feed and starts a new one.
    fn retire(&self, run: Uuid, generation: u64, only_if_unwatched: bool) -> bool {
        let Ok(mut feeds) = self.inner.feeds.lock() else {
            return true;
        };
        match feeds.get(&run) {
            Some(h) if h.generation == generation => {
                if only_if_unwatched && h.tx.receiver_count() > 0 {
                    return false;
                }
                feeds.remove(&run);
                true
            }
            _ => true,
        }
    }

    /// A run's events for one watcher, as SSE events: those after `after` (its
    /// `Last-Event-ID`, or 0), then every new one, until the run's final status has been
    /// sent, the token expires, or the server stops. Checks that the grant's holder may
    /// still see the run first (404 otherwise).
    pub async fn watch(
        &self,
        grant: Grant,
        after: i64,
    ) -> RunsResult<impl Stream<Item = Result<Event, Infallible>> + Send + 'static> {
        check_access(&self.inner.pool, &grant).await?;
        let rx = self.subscribe(grant.org, grant.run).await?;
        let watcher = Watcher {
            pool: self.inner.pool.clone(),
            org: grant.org,
            run: grant.run,
            rx,
            pending: VecDeque::new(),
            last: after,
            catching_up: true,
            done: false,
            expires: tokio::time::Instant::now() + grant.remaining(),
            shutdown: self.inner.shutdown.subscribe(),
        };
        Ok(futures::stream::unfold(watcher, |mut w| async move {
            w.next().await.map(|event| (Ok(event), w))
        }))
    }
}

/// The LISTEN loop: each NOTIFY pokes its run's feed; after a lost connection (NOTIFYs may
/// have been missed) every feed re-reads.
async fn listen(hub: Weak<Hub>, mut listener: PgListener, mut shutdown: watch::Receiver<bool>) {
    loop {
        let received = tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            received = listener.try_recv() => received,
        };
        let Some(hub) = hub.upgrade().map(|inner| EventHub { inner }) else {
            return;
        };
        match received {
            Ok(Some(notification)) => {
                if let Ok(run) = notification.payload().parse() {
                    hub.poke(run);
                }
            }
            Ok(None) => {
                tracing::warn!("the LISTEN connection for run events was lost and re-opened");
                hub.poke_all();
            }
            Err(e) => {
                tracing::warn!(error = %e, "listening for run events failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                hub.poke_all();
            }
        }
    }
}

/// One run's feed: starts at the run's newest event, then on every poke (and every
/// [`FEED_POLL`]) reads what is new once and broadcasts it; retires when unwatched.
async fn feed(
    hub: EventHub,
    org: OrgId,
    run: Uuid,
    generation: u64,
    tx: broadcast::Sender<Arc<Item>>,
    poke: Arc<Notify>,
    ready: watch::Sender<FeedState>,
) {
    let pool = hub.inner.pool.clone();
    let mut shutdown = hub.inner.shutdown.subscribe();
    let start = async {
        let mut tx = pool.begin().await?;
        set_tenant(&mut tx, Some(org), None).await?;
        let max: Option<i64> =
            sqlx::query_scalar("SELECT max(id) FROM run_events WHERE org_id = $1 AND run_id = $2")
                .bind(org)
                .bind(run)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(max.unwrap_or(0))
    };
    let mut last = match start.await {
        Ok(last) => last,
        Err(e) => {
            tracing::warn!(error = %e, run.id = %run, "starting a run's event feed failed");
            hub.retire(run, generation, false);
            ready.send_replace(FeedState::Failed);
            return;
        }
    };
    ready.send_replace(FeedState::Ready);
    loop {
        tokio::select! {
            _ = poke.notified() => {}
            _ = tokio::time::sleep(FEED_POLL) => {}
            _ = shutdown.wait_for(|stop| *stop) => {
                hub.retire(run, generation, false);
                return;
            }
        }
        if hub.retire(run, generation, true) {
            return;
        }
        loop {
            match page(&pool, org, run, last, PAGE).await {
                Ok(Some(page)) => {
                    for item in page.items {
                        last = item.event.id;
                        let _ = tx.send(Arc::new(item));
                    }
                    if !page.full {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    // The next poke or poll tries again from the same point.
                    tracing::warn!(error = %e, run.id = %run, "reading a run's new events failed");
                    break;
                }
            }
        }
    }
}

/// One SSE client's position in a run's stream.
struct Watcher {
    pool: PgPool,
    org: OrgId,
    run: Uuid,
    rx: broadcast::Receiver<Arc<Item>>,
    pending: VecDeque<Item>,
    /// The last id sent (or the client's `Last-Event-ID`).
    last: i64,
    /// Reading from the database: at the start, and after falling behind the broadcast.
    catching_up: bool,
    done: bool,
    expires: tokio::time::Instant,
    shutdown: watch::Receiver<bool>,
}

impl Watcher {
    async fn next(&mut self) -> Option<Event> {
        loop {
            if self.done || tokio::time::Instant::now() >= self.expires {
                return None;
            }
            if let Some(item) = self.pending.pop_front() {
                if item.event.id <= self.last {
                    continue;
                }
                self.last = item.event.id;
                self.done = item.last;
                return Some(sse_event(&item.event));
            }
            if self.catching_up {
                match page(&self.pool, self.org, self.run, self.last, PAGE).await {
                    Ok(Some(page)) => {
                        self.catching_up = page.full;
                        // An ended run with nothing after the client's position: done.
                        if page.ended && page.items.is_empty() {
                            return None;
                        }
                        self.pending.extend(page.items);
                        continue;
                    }
                    Ok(None) => return None,
                    Err(e) => {
                        // The client reconnects with its Last-Event-ID.
                        tracing::warn!(error = %e, run.id = %self.run, "replaying run events failed");
                        return None;
                    }
                }
            }
            tokio::select! {
                biased;
                _ = self.shutdown.wait_for(|stop| *stop) => return None,
                _ = tokio::time::sleep_until(self.expires) => return None,
                received = self.rx.recv() => match received {
                    Ok(item) => self.pending.push_back(Item::clone(&item)),
                    Err(broadcast::error::RecvError::Lagged(_)) => self.catching_up = true,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    }
}

fn sse_event(event: &RunEvent) -> Event {
    Event::default()
        .id(event.id.to_string())
        .event(event.kind.as_str())
        .data(serde_json::to_string(event).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> MediaKeys {
        MediaKeys::new(TokenSigner::generate("media-test"))
    }

    #[test]
    fn a_token_opens_its_run_and_scope_only_until_it_expires() {
        let keys = keys();
        let (org, run, user) = (OrgId::new(), Uuid::now_v7(), UserId::new());
        let now = Utc::now().timestamp();
        let token = keys
            .sign(&MediaKeys::claims(org, run, user, Scope::Events, now))
            .unwrap();
        let grant = keys
            .check(&token, &run.to_string(), Scope::Events, now)
            .unwrap();
        assert_eq!((grant.org, grant.user, grant.run), (org, user, run));
        assert_eq!(grant.expires_at, now + 300);

        let refused = |token: &str, path_run: &str, scope: Scope, at: i64| {
            matches!(
                keys.check(token, path_run, scope, at),
                Err(RunsError::Unauthenticated)
            )
        };
        assert!(refused(&token, &run.to_string(), Scope::Artifacts, now));
        assert!(refused(
            &token,
            &Uuid::now_v7().to_string(),
            Scope::Events,
            now
        ));
        assert!(refused(&token, "not-a-uuid", Scope::Events, now));
        // No leeway: at exp it is dead (the verifier's 30 s skew does not apply here).
        assert!(refused(&token, &run.to_string(), Scope::Events, now + 300));
        assert!(!refused(&token, &run.to_string(), Scope::Events, now + 299));
        // Another key's token of the same kind, and a longer-lived one of this key.
        let other = MediaKeys::new(TokenSigner::generate("media-test"));
        let foreign = other
            .sign(&MediaKeys::claims(org, run, user, Scope::Events, now))
            .unwrap();
        assert!(refused(&foreign, &run.to_string(), Scope::Events, now));
        let mut long = MediaKeys::claims(org, run, user, Scope::Events, now);
        long.exp = now + 3600;
        let long = keys.sign(&long).unwrap();
        assert!(refused(&long, &run.to_string(), Scope::Events, now));
    }
}
