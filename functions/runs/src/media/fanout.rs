//! The fan-out. One `LISTEN run_events` connection per process ([`EventHub`]); a NOTIFY
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
//!
//! Each open stream holds a *lease*: a row of `media_stream_leases`, taken when it opens
//! (`media_stream_open`, under a lock on the run, so the caps of [`StreamLimits`] hold across
//! every instance: 429 `too_many_streams` beyond) and deleted when it closes. Every
//! [`SESSION_CHECK`] one statement per process (`media_streams_beat`) refreshes the leases of
//! all its open streams and names those whose session was logged out, revoked or expired, or
//! whose holder left the org: those streams end at once. A lease its instance stopped
//! refreshing (a crash) stops counting after 30 s.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use axum::response::sse::Event;
use futures::Stream;
use runwarden_contracts::RunId;
use runwarden_tenancy::{OrgId, set_tenant};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, OnceCell, broadcast, watch};
use uuid::Uuid;

use super::Grant;
use super::events::{CHANNEL, Item, PAGE, check_access_in, page, sse_event};
use crate::error::{RunsError, RunsResult};

/// A feed re-reads its run this often even without a NOTIFY (and retires when unwatched).
pub const FEED_POLL: Duration = Duration::from_secs(5);
/// Events a feed keeps for watchers that are behind; further behind, they re-read.
pub const BROADCAST_CAPACITY: usize = 1024;
/// SSE keep-alive comments, well under proxies' idle timeouts.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// How often a process re-checks the sessions (and memberships) behind its open streams and
/// refreshes their leases: a logout closes a stream within about this long.
pub const SESSION_CHECK: Duration = Duration::from_secs(2);
/// When the re-check has failed (the database does not answer) for this long, the open
/// streams end: none outlives its last successful check by more (clients reconnect).
pub const SESSION_CHECK_GRACE: Duration = Duration::from_secs(10);
/// `Retry-After` of a refused stream: a closed stream frees its slot at once.
pub const STREAMS_RETRY_AFTER: u64 = 5;

/// The caps on concurrent event streams (`MEDIA_STREAMS_PER_TOKEN`,
/// `MEDIA_STREAMS_PER_RUN`), counted in PostgreSQL across every instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Open streams per media token (`jti`): a page, its reconnect and one spare.
    pub per_token: u32,
    /// Open streams of one run across all tokens.
    pub per_run: u32,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            per_token: 3,
            per_run: 20,
        }
    }
}

/// The process's one LISTEN connection and its per-run feeds. Cheap to clone.
#[derive(Clone)]
pub struct EventHub {
    inner: Arc<Hub>,
}

struct Hub {
    pool: PgPool,
    feeds: Mutex<HashMap<RunId, FeedHandle>>,
    listening: OnceCell<()>,
    shutdown: watch::Sender<bool>,
    generations: AtomicU64,
    limits: StreamLimits,
    /// The open streams of this process: lease id → what ends the stream.
    streams: Mutex<HashMap<Uuid, watch::Sender<bool>>>,
    checking: OnceLock<()>,
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
    /// With the default [`StreamLimits`].
    pub fn new(pool: PgPool) -> Self {
        Self::with_limits(pool, StreamLimits::default())
    }

    pub fn with_limits(pool: PgPool, limits: StreamLimits) -> Self {
        Self {
            inner: Arc::new(Hub {
                pool,
                feeds: Mutex::new(HashMap::new()),
                listening: OnceCell::new(),
                shutdown: watch::channel(false).0,
                generations: AtomicU64::new(0),
                limits,
                streams: Mutex::new(HashMap::new()),
                checking: OnceLock::new(),
            }),
        }
    }

    /// The caps this hub enforces.
    pub fn limits(&self) -> StreamLimits {
        self.inner.limits
    }

    /// Streams open in this process now.
    pub fn streams(&self) -> usize {
        self.inner.streams.lock().map_or(0, |s| s.len())
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
    async fn subscribe(
        &self,
        org: OrgId,
        run: RunId,
    ) -> RunsResult<broadcast::Receiver<Arc<Item>>> {
        self.ensure_listening().await?;
        let (rx, mut ready) = {
            let mut feeds = self
                .inner
                .feeds
                .lock()
                .map_err(|_| RunsError::from(anyhow::anyhow!("feed map poisoned")))?;
            let handle = feeds
                .entry(run)
                .or_insert_with(|| self.start_feed(org, run));
            (handle.tx.subscribe(), handle.ready.clone())
        };
        let state = *ready
            .wait_for(|s| *s != FeedState::Starting)
            .await
            .map_err(|_| RunsError::unavailable())?;
        match state {
            FeedState::Ready => Ok(rx),
            _ => Err(RunsError::unavailable()),
        }
    }

    /// Called with the feed map locked.
    fn start_feed(&self, org: OrgId, run: RunId) -> FeedHandle {
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

    fn poke(&self, run: RunId) {
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
    fn retire(&self, run: RunId, generation: u64, only_if_unwatched: bool) -> bool {
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

    /// Checks the grant (live session, member: [`check_access_in`]) and takes a lease for
    /// one more stream, in one transaction; 429 beyond the caps. The lease ends (and its
    /// slot frees) when the returned guard is dropped.
    async fn open_lease(&self, grant: &Grant) -> RunsResult<(Lease, watch::Receiver<bool>)> {
        let limits = self.inner.limits;
        let id = Uuid::now_v7();
        let mut tx = self.inner.pool.begin().await?;
        set_tenant(&mut tx, Some(grant.org), None).await?;
        check_access_in(&mut tx, grant).await?;
        let (opened, token_streams, run_streams): (bool, i32, i32) = sqlx::query_as(
            "SELECT opened, token_streams, run_streams
             FROM media_stream_open($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id)
        .bind(grant.org)
        .bind(grant.run)
        .bind(grant.jti)
        .bind(grant.session)
        .bind(grant.user)
        .bind(i32::try_from(limits.per_token).unwrap_or(i32::MAX))
        .bind(i32::try_from(limits.per_run).unwrap_or(i32::MAX))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        if !opened {
            let detail = if i64::from(token_streams) >= i64::from(limits.per_token) {
                format!(
                    "this media token already has {} open event streams; close one first",
                    limits.per_token
                )
            } else {
                format!(
                    "this run already has {} open event streams; close one first",
                    limits.per_run
                )
            };
            tracing::info!(
                security_event = "media_streams_capped",
                user.id = %grant.user,
                org.id = %grant.org,
                run.id = %grant.run,
                token_streams,
                run_streams,
                "event stream refused"
            );
            return Err(RunsError::TooManyStreams {
                detail,
                retry_after: STREAMS_RETRY_AFTER,
            });
        }
        let (end, ended) = watch::channel(false);
        let lease = Lease {
            hub: self.inner.clone(),
            id,
        };
        self.inner
            .streams
            .lock()
            .map_err(|_| RunsError::from(anyhow::anyhow!("stream map poisoned")))?
            .insert(id, end);
        self.ensure_checking();
        Ok((lease, ended))
    }

    /// The first stream starts the process's session check; later ones find it running.
    fn ensure_checking(&self) {
        self.inner.checking.get_or_init(|| {
            tokio::spawn(check_streams(
                Arc::downgrade(&self.inner),
                self.inner.shutdown.subscribe(),
            ));
        });
    }

    /// A run's events for one watcher, as SSE events: those after `after` (its
    /// `Last-Event-ID`, or 0), then every new one, until the run's final status has been
    /// sent, the token expires, its session ends (logout, revocation) or its holder leaves
    /// the org, or the server stops. Checks first that the token's session is live (401
    /// otherwise) and that its holder may still see the run (404 otherwise), and takes one
    /// of the token's and the run's stream slots (429 `too_many_streams` otherwise).
    pub async fn watch(
        &self,
        grant: Grant,
        after: i64,
    ) -> RunsResult<impl Stream<Item = Result<Event, Infallible>> + Send + 'static> {
        let (lease, ended) = self.open_lease(&grant).await?;
        let rx = self.subscribe(grant.org, grant.run).await?;
        let watcher = Watcher {
            _lease: lease,
            ended,
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

/// A stream's lease: dropped with the stream (whichever way it ends), it stops the stream's
/// session check and deletes its row, freeing the slot.
struct Lease {
    hub: Arc<Hub>,
    id: Uuid,
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Ok(mut streams) = self.hub.streams.lock() {
            streams.remove(&self.id);
        }
        let (pool, id) = (self.hub.pool.clone(), self.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                // Many streams can end at once (a page closing its tabs, a deploy): a close
                // that finds the pool busy tries again rather than leaving its slot taken
                // until the lease goes stale.
                let mut wait = Duration::from_millis(50);
                for attempt in 1..=8 {
                    match sqlx::query("SELECT media_stream_close($1)")
                        .bind(id)
                        .execute(&pool)
                        .await
                    {
                        Ok(_) => return,
                        Err(e) if attempt == 8 => {
                            // The lease stops counting 30 s after its last heartbeat anyway.
                            tracing::warn!(error = %e, "releasing an event stream's lease failed");
                        }
                        Err(_) => {
                            tokio::time::sleep(wait).await;
                            wait = (wait * 4).min(Duration::from_secs(2));
                        }
                    }
                }
            });
        }
    }
}

/// The session check of a process's open streams: every [`SESSION_CHECK`], one statement
/// refreshes their leases and names those to end (session or membership gone, lease lost).
/// If it keeps failing for [`SESSION_CHECK_GRACE`], every stream ends.
async fn check_streams(hub: Weak<Hub>, mut shutdown: watch::Receiver<bool>) {
    let mut last_ok = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = tokio::time::sleep(SESSION_CHECK) => {}
        }
        let Some(hub) = hub.upgrade() else {
            return;
        };
        let open: Vec<Uuid> = hub
            .streams
            .lock()
            .map(|s| s.keys().copied().collect())
            .unwrap_or_default();
        if open.is_empty() {
            last_ok = tokio::time::Instant::now();
            continue;
        }
        let checked: Result<Vec<Uuid>, sqlx::Error> =
            sqlx::query_scalar("SELECT lease_id FROM media_streams_beat($1)")
                .bind(&open)
                .fetch_all(&hub.pool)
                .await;
        let ending = match checked {
            Ok(ending) => {
                last_ok = tokio::time::Instant::now();
                ending
            }
            Err(e) if last_ok.elapsed() >= SESSION_CHECK_GRACE => {
                tracing::warn!(error = %e, "event streams cannot be re-checked; ending them");
                open
            }
            Err(e) => {
                tracing::warn!(error = %e, "re-checking event streams failed; retrying");
                continue;
            }
        };
        if ending.is_empty() {
            continue;
        }
        if let Ok(mut streams) = hub.streams.lock() {
            for id in &ending {
                if let Some(end) = streams.remove(id) {
                    end.send_replace(true);
                }
            }
        }
        tracing::info!(
            security_event = "media_streams_ended",
            streams = ending.len(),
            "event streams ended: session or membership gone"
        );
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
    run: RunId,
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
    /// Its slot; freed when the watcher is dropped.
    _lease: Lease,
    /// Set (or closed) when its session or membership ended.
    ended: watch::Receiver<bool>,
    pool: PgPool,
    org: OrgId,
    run: RunId,
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
            if self.done || tokio::time::Instant::now() >= self.expires || *self.ended.borrow() {
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
                _ = self.ended.wait_for(|ended| *ended) => return None,
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
