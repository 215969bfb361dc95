//! The sync driver: [`Replica::start_sync`](crate::Replica::start_sync) keeps a replica in
//! sync in the background, so an application never schedules a sync itself.
//!
//! The driver runs on the replica's own threads. It syncs at start, then:
//! - after a local write (by any handle or process on the home): at once when no sync is
//!   running (by default; [`SyncOptions::debounce`] can make it wait for writes to pause),
//!   and writes made while a sync runs go together in the next one;
//! - in `live` mode, as soon as the server says (`POST /v1/watch`) that a collection this
//!   device syncs has new batches; the answer is only a hint, and what is pulled is verified
//!   as in any sync;
//! - every [`SyncOptions::interval`] in any case: a collection another device created is
//!   watched only once a sync has learnt it, so it is first pulled at the next interval (or
//!   the next sync for another reason); a missed hint is caught up the same way;
//! - when [`SyncHandle::sync_now`] asks.
//!
//! A failed sync whose error [`is_retryable`](crate::SyncError::is_retryable) is tried
//! again after an exponential backoff with jitter; any other error stops the driver, and
//! its [`SyncStatus`] says why (`stopped`, `last_error`). Stopping the driver, or dropping
//! its [`SyncHandle`], cancels a running sync at its next step, losing nothing.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use sealsync_core::CollectionId;

use crate::error::ClientError;
use crate::errors::SyncError;
use crate::handle::Replica;
use crate::net::watch::{Cursor, watch as watch_request};
use crate::options::Timeouts;
use crate::progress::SyncProgress;
use crate::types::SyncReport;

/// How often the driver looks for writes made by other processes on the home.
const POLL: Duration = Duration::from_millis(250);
/// Longest interval, debounce or backoff delay the driver uses (longer ones are cut to it,
/// so that no deadline overflows the clock).
const LONGEST: Duration = Duration::from_secs(30 * 86_400);
/// Least time an honest server holds an empty live-update answer (`WATCH_WAIT_MIN_MS`).
const WATCH_SPACING: Duration = Duration::from_secs(1);
/// How long one live-update request waits on the server.
const WATCH_WAIT: Duration = Duration::from_secs(25);

/// Exponential backoff between retries of a failed sync: `initial`, doubling up to `max`,
/// each delay drawn at random from its upper half (jitter, so that devices that failed
/// together do not come back together).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// First delay (default 1 s).
    pub initial: Duration,
    /// Largest delay (default 5 min).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// A backoff from `initial` up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self { initial, max }
    }

    /// The delay before retry number `failures` (1 for the first), jittered.
    pub(crate) fn delay(&self, failures: u32) -> Duration {
        let exp = self
            .initial
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        let ceiling = exp.min(self.max).min(LONGEST).max(Duration::from_millis(1));
        let r = u64::from_be_bytes(sealsync_crypto::random_array::<8>());
        // Uniform in [ceiling / 2, ceiling].
        let half = ceiling / 2;
        half + Duration::from_nanos(r % (ceiling - half).as_nanos().max(1) as u64)
    }
}

/// Options of [`Replica::start_sync`](crate::Replica::start_sync).
#[non_exhaustive]
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Sync at least this often (default 60 s).
    pub interval: Duration,
    /// Retry delays after a retryable failure.
    pub backoff: Backoff,
    /// Network timeouts for the replica's connections from now on (default: those it was
    /// opened with).
    pub timeouts: Option<Timeouts>,
    /// Ask the server to say when other devices push, and pull at once (default on).
    pub live: bool,
    /// After a local write, wait this long for more writes before pushing (default 0: push
    /// at once, and let the writes made meanwhile go together in the next sync).
    pub debounce: Duration,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            backoff: Backoff::default(),
            timeouts: None,
            live: true,
            debounce: Duration::ZERO,
        }
    }
}

impl SyncOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`SyncOptions::interval`].
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets [`SyncOptions::backoff`].
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets [`SyncOptions::timeouts`].
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = Some(timeouts);
        self
    }

    /// Sets [`SyncOptions::live`].
    pub fn live(mut self, live: bool) -> Self {
        self.live = live;
        self
    }

    /// Sets [`SyncOptions::debounce`].
    pub fn debounce(mut self, debounce: Duration) -> Self {
        self.debounce = debounce;
        self
    }
}

/// What the driver is doing, published on a `watch` channel ([`SyncHandle::status`]).
#[non_exhaustive]
#[derive(Clone, Debug, Default)]
pub struct SyncStatus {
    /// The last exchange with the server (a sync or a live-update request) succeeded.
    pub connected: bool,
    /// A sync is running.
    pub syncing: bool,
    /// When the last sync succeeded.
    pub last_synced: Option<SystemTime>,
    /// Why the last sync failed; `None` once one succeeds. Typed: match on it, or ask
    /// [`SyncError::is_retryable`].
    pub last_error: Option<Arc<SyncError>>,
    /// The report of the last sync that succeeded.
    pub last_report: Option<SyncReport>,
    /// Syncs attempted so far (successful or not).
    pub syncs: u64,
    /// Batches sealed and not yet acknowledged by the server.
    pub pending_batches: u64,
    /// Local edits not yet sealed into a batch.
    pub pending_edits: u64,
    /// Progress of the running (or last) sync.
    pub progress: SyncProgress,
    /// When the next retry is due, after a retryable failure.
    pub retry_at: Option<SystemTime>,
    /// The driver stopped: asked to, or on an error that is not retryable
    /// (`last_error` says which).
    pub stopped: bool,
}

/// Why [`SyncHandle::sync_now`] returned no report.
#[non_exhaustive]
#[derive(Clone, Debug, thiserror::Error)]
pub enum SyncNowError {
    /// The sync failed (the driver retries it if retryable).
    #[error("{0}")]
    Failed(Arc<SyncError>),
    /// The driver has stopped.
    #[error("the sync driver has stopped")]
    Stopped,
}

impl SyncNowError {
    /// Whether asking again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Failed(e) if e.is_retryable())
    }
}

enum Command {
    Now(oneshot::Sender<Result<SyncReport, SyncNowError>>),
    Stop,
}

/// The running driver. Dropping it stops the driver (as [`SyncHandle::stop`] does, without
/// waiting).
#[derive(Debug)]
pub struct SyncHandle {
    status: watch::Receiver<SyncStatus>,
    commands: mpsc::UnboundedSender<Command>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Now(_) => "Now",
            Self::Stop => "Stop",
        })
    }
}

impl SyncHandle {
    /// The driver's status; `changed().await` on it to follow along.
    pub fn status(&self) -> watch::Receiver<SyncStatus> {
        self.status.clone()
    }

    /// Syncs now (ignoring a running backoff) and returns that sync's report. If a sync is
    /// running, this waits for it and then for one more.
    pub async fn sync_now(&self) -> Result<SyncReport, SyncNowError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Now(tx))
            .map_err(|_| SyncNowError::Stopped)?;
        rx.await.map_err(|_| SyncNowError::Stopped)?
    }

    /// Stops the driver, cancelling a running sync at its next step (nothing is lost), and
    /// waits until it has stopped.
    pub async fn stop(mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SyncHandle {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
    }
}

/// Starts the driver of `replica` on its thread.
pub(crate) fn start(replica: &Replica, opts: SyncOptions) -> Result<SyncHandle, ClientError> {
    let (status_tx, status) = watch::channel(SyncStatus::default());
    let (commands, rx) = mpsc::unbounded_channel();
    let task = replica
        .shared
        .worker()?
        .spawn(drive(replica.clone(), opts, rx, status_tx));
    Ok(SyncHandle {
        status,
        commands,
        task: Some(task),
    })
}

async fn drive(
    replica: Replica,
    mut opts: SyncOptions,
    mut commands: mpsc::UnboundedReceiver<Command>,
    status: watch::Sender<SyncStatus>,
) {
    opts.interval = opts.interval.min(LONGEST);
    opts.debounce = opts.debounce.min(LONGEST);
    if let Some(t) = opts.timeouts {
        replica.set_timeouts(t).await;
    }
    let status = Arc::new(status);
    let (hint_tx, mut hints) = mpsc::channel::<()>(1);
    let _watcher = opts.live.then(|| {
        AbortOnDrop(tokio::spawn(watch_loop(
            replica.clone(),
            hint_tx,
            status.clone(),
            opts.backoff,
        )))
    });
    let mut commits = replica.shared.commits.subscribe();
    let mut progress = replica.progress();
    let mut seen_unsent = replica.last_unsent_seq().unwrap_or(0);
    let mut due = Some(Instant::now());
    let mut next_interval = Instant::now() + opts.interval;
    let mut retry_at: Option<Instant> = None;
    let mut failures = 0u32;
    // Hints that led nowhere (a sync that pulled nothing, or was refused something) space
    // out the next ones: a server answering every watch at once, or a batch refused at every
    // pull, cannot make the driver sync in a loop.
    let mut fruitless = 0u32;
    let mut hint_floor = Instant::now();
    let mut hinted = false;
    let mut waiters: Vec<oneshot::Sender<Result<SyncReport, SyncNowError>>> = Vec::new();
    publish_pending(&replica, &status);
    loop {
        let mut wake = due.map_or(next_interval, |d| d.min(next_interval));
        if waiters.is_empty()
            && let Some(r) = retry_at
        {
            wake = wake.max(r);
        }
        tokio::select! {
            cmd = commands.recv() => match cmd {
                None | Some(Command::Stop) => break,
                Some(Command::Now(tx)) => {
                    waiters.push(tx);
                    due = Some(Instant::now());
                }
            },
            () = tokio::time::sleep_until(wake) => {
                due = None;
                let for_hint = std::mem::take(&mut hinted);
                let sync = replica.sync();
                tokio::pin!(sync);
                status.send_modify(|s| s.syncing = true);
                let result = loop {
                    tokio::select! {
                        r = &mut sync => break r,
                        cmd = commands.recv() => match cmd {
                            None | Some(Command::Stop) => {
                                status.send_modify(|s| { s.syncing = false; s.stopped = true; });
                                return;
                            }
                            // Answered by the next sync: this one started before the ask.
                            Some(Command::Now(tx)) => {
                                waiters.push(tx);
                                due = Some(Instant::now());
                            }
                        },
                        Ok(()) = progress.changed() => {
                            let p = *progress.borrow_and_update();
                            status.send_modify(|s| s.progress = p);
                        }
                    }
                };
                next_interval = Instant::now() + opts.interval;
                // Published with the outcome, so that a reader sees both at once.
                let pending = replica.pending_work().ok();
                let answered: Vec<_> = std::mem::take(&mut waiters);
                let stop = match result {
                    Ok(report) => {
                        failures = 0;
                        retry_at = None;
                        if !report.errors.is_empty() || (for_hint && report.pulled_batches == 0) {
                            fruitless = fruitless.saturating_add(1);
                            hint_floor = Instant::now() + opts.backoff.delay(fruitless);
                        } else if for_hint {
                            fruitless = 0;
                        }
                        status.send_modify(|s| {
                            s.connected = true;
                            s.syncing = false;
                            s.syncs += 1;
                            s.last_synced = Some(SystemTime::now());
                            s.last_error = None;
                            s.retry_at = None;
                            s.progress = *progress.borrow();
                            s.last_report = Some(report.clone());
                            if let Some((b, e)) = pending {
                                s.pending_batches = b;
                                s.pending_edits = e;
                            }
                        });
                        for w in answered {
                            let _ = w.send(Ok(report.clone()));
                        }
                        false
                    }
                    Err(e) => {
                        let e = Arc::new(e);
                        let retryable = e.is_retryable();
                        if retryable {
                            failures = failures.saturating_add(1);
                            let delay = opts.backoff.delay(failures);
                            retry_at = Some(Instant::now() + delay);
                            due = Some(Instant::now());
                            status.send_modify(|s| s.retry_at = Some(SystemTime::now() + delay));
                        }
                        tracing::info!(error = %e, retryable, "sync failed");
                        status.send_modify(|s| {
                            s.connected = !e.is_unreachable();
                            s.syncing = false;
                            s.syncs += 1;
                            s.progress = *progress.borrow();
                            s.last_error = Some(e.clone());
                            s.stopped = !retryable;
                            if let Some((b, e)) = pending {
                                s.pending_batches = b;
                                s.pending_edits = e;
                            }
                        });
                        for w in answered {
                            let _ = w.send(Err(SyncNowError::Failed(e.clone())));
                        }
                        !retryable
                    }
                };
                publish_pending(&replica, &status);
                if stop {
                    return;
                }
                // Edits written while it ran, that it did not seal.
                on_local_change(&replica, &status, &mut seen_unsent, &mut due, opts.debounce);
            }
            changed = commits.changed() => {
                if changed.is_err() {
                    break;
                }
                on_local_change(&replica, &status, &mut seen_unsent, &mut due, opts.debounce);
            }
            () = tokio::time::sleep(POLL) => {
                on_local_change(&replica, &status, &mut seen_unsent, &mut due, opts.debounce);
            }
            Some(()) = hints.recv() => {
                hinted = true;
                let at = Instant::now().max(hint_floor);
                due = Some(due.map_or(at, |d| d.min(at)));
            }
        }
    }
    status.send_modify(|s| {
        s.syncing = false;
        s.stopped = true;
    });
}

/// A new unsent edit (from any handle or process) schedules a push after the debounce.
fn on_local_change(
    replica: &Replica,
    status: &watch::Sender<SyncStatus>,
    seen_unsent: &mut u64,
    due: &mut Option<Instant>,
    debounce: Duration,
) {
    let Ok(last) = replica.last_unsent_seq() else {
        return;
    };
    if last > *seen_unsent {
        *seen_unsent = last;
        let at = Instant::now() + debounce;
        *due = Some(due.map_or(at, |d| d.max(at)));
        publish_pending(replica, status);
    }
}

fn publish_pending(replica: &Replica, status: &watch::Sender<SyncStatus>) {
    if let Ok((batches, edits)) = replica.pending_work() {
        status.send_if_modified(|s| {
            let changed = s.pending_batches != batches || s.pending_edits != edits;
            s.pending_batches = batches;
            s.pending_edits = edits;
            changed
        });
    }
}

/// Keeps one live-update request open at a time and turns each answer naming a
/// collection into a hint for the driver. After a hint it waits for the driver's next
/// sync to end (its cursors move), so that it does not ask about what is being pulled.
async fn watch_loop(
    replica: Replica,
    hints: mpsc::Sender<()>,
    status: Arc<watch::Sender<SyncStatus>>,
    backoff: Backoff,
) {
    let mut failures = 0u32;
    let mut followed = status.subscribe();
    let mut quick_empty = 0u32;
    loop {
        let connect = replica.connect_for_watch();
        let mut conn = match connect.await {
            Ok(c) => c,
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::debug!(error = %e, "live updates: cannot connect");
                status.send_if_modified(|s| std::mem::replace(&mut s.connected, false));
                tokio::time::sleep(backoff.delay(failures)).await;
                continue;
            }
        };
        loop {
            let cursors: Vec<Cursor> = match replica.watch_cursors() {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "live updates: cannot read the pull cursors");
                    Vec::new()
                }
            };
            if cursors.is_empty() {
                // Nothing to watch yet (a pending device, no synced collection).
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            let sent = Instant::now();
            match watch_request(&mut conn, cursors.clone(), WATCH_WAIT).await {
                Ok(changed) if changed.is_empty() && sent.elapsed() < WATCH_SPACING => {
                    // An honest server holds an empty answer at least WATCH_WAIT_MIN_MS; one
                    // that answers at once must not turn live updates into a busy loop.
                    quick_empty = quick_empty.saturating_add(1);
                    tokio::time::sleep(backoff.delay(quick_empty)).await;
                }
                Ok(changed) => {
                    failures = 0;
                    quick_empty = 0;
                    status.send_if_modified(|s| !std::mem::replace(&mut s.connected, true));
                    if !changed.is_empty() {
                        // A sync running meanwhile (this device's own push wakes its
                        // watch) may have pulled what the answer is about: once it ends,
                        // if every collection named moved past the cursor asked with, ask
                        // again rather than sync (the server answers at once if more came).
                        let _ = tokio::time::timeout(WATCH_WAIT, followed.wait_for(|s| !s.syncing))
                            .await;
                        if replica.cursors_moved(&cursors, &changed) {
                            continue;
                        }
                        let before = followed.borrow_and_update().syncs;
                        if hints.send(()).await.is_err() {
                            return;
                        }
                        let _ = tokio::time::timeout(
                            WATCH_WAIT,
                            followed.wait_for(|s| s.syncs > before && !s.syncing),
                        )
                        .await;
                    }
                }
                Err(ClientError::InvalidInput(why)) => {
                    // The request timeout leaves no room for a long poll.
                    tracing::warn!(why, "live updates are off");
                    return;
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::debug!(error = %e, "live updates: request failed");
                    status.send_if_modified(|s| std::mem::replace(&mut s.connected, false));
                    tokio::time::sleep(backoff.delay(failures)).await;
                    break;
                }
            }
        }
    }
}

/// What the driver needs of a replica, each step one short local read.
impl Replica {
    /// Sets the timeouts of the replica's connections (both cores).
    async fn set_timeouts(&self, t: Timeouts) {
        self.local().timeouts = t;
        if let Some(core) = self.shared.engine.lock().await.as_mut() {
            core.timeouts = t;
            // A kept connection has the old request timeout.
            core.kept = None;
        }
    }

    fn last_unsent_seq(&self) -> Result<u64, ClientError> {
        self.local().store.last_unsent_seq()
    }

    fn pending_work(&self) -> Result<(u64, u64), ClientError> {
        self.local().store.pending_work()
    }

    /// A connection for live updates (its own, so that it never waits behind a sync).
    fn connect_for_watch(
        &self,
    ) -> impl Future<Output = Result<crate::net::Connection, ClientError>> + Send + 'static + use<>
    {
        self.local().connect()
    }

    /// Whether the pull cursor of every collection in `changed` is now past the one in
    /// `asked` (a sync pulled since); false if it cannot tell.
    fn cursors_moved(&self, asked: &[Cursor], changed: &[CollectionId]) -> bool {
        let Ok(now) = self.watch_cursors() else {
            return false;
        };
        changed.iter().all(|cid| {
            let was = asked.iter().find(|c| c.collection == *cid);
            let is = now.iter().find(|c| c.collection == *cid);
            matches!((was, is), (Some(was), Some(is)) if is.after > was.after)
        })
    }

    /// The pull cursor of every collection that syncs.
    fn watch_cursors(&self) -> Result<Vec<Cursor>, ClientError> {
        Ok(self
            .local()
            .store
            .collections()?
            .into_iter()
            .filter(|c| c.pinned)
            .filter_map(|c| {
                c.cid.map(|collection| Cursor {
                    collection,
                    after: c.cursor,
                })
            })
            .collect())
    }
}

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_are_cut_so_that_no_deadline_overflows() {
        let b = Backoff::new(Duration::MAX, Duration::MAX);
        let d = b.delay(u32::MAX);
        assert!(d <= LONGEST && d >= LONGEST / 2, "{d:?}");
        // The deadlines the driver computes from it stay representable.
        assert!(Instant::now().checked_add(d).is_some());
        assert!(SystemTime::now().checked_add(d).is_some());
    }

    #[test]
    fn backoff_doubles_up_to_the_max_with_jitter_in_the_upper_half() {
        let b = Backoff::new(Duration::from_secs(1), Duration::from_secs(10));
        for (n, ceiling) in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (40, 10)] {
            let ceiling = Duration::from_secs(ceiling);
            for _ in 0..50 {
                let d = b.delay(n);
                assert!(d >= ceiling / 2 && d <= ceiling, "{n}: {d:?}");
            }
        }
        // Jitter: not always the same delay.
        let draws: std::collections::BTreeSet<_> = (0..20).map(|_| b.delay(3)).collect();
        assert!(draws.len() > 1);
    }
}
