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

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::response::sse::Event;
use futures::Stream;
use runwarden_contracts::RunId;
use runwarden_tenancy::{OrgId, set_tenant};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::{Notify, OnceCell, broadcast, watch};

use super::Grant;
use super::events::{CHANNEL, Item, PAGE, check_access, page, sse_event};
use crate::error::{RunsError, RunsResult};

/// A feed re-reads its run this often even without a NOTIFY (and retires when unwatched).
pub const FEED_POLL: Duration = Duration::from_secs(5);
/// Events a feed keeps for watchers that are behind; further behind, they re-read.
pub const BROADCAST_CAPACITY: usize = 1024;
/// SSE keep-alive comments, well under proxies' idle timeouts.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

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
