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

use crate::error::ClientError;
use crate::handle::Replica;
use crate::types::SyncReport;

/// How often the driver looks for writes made by other processes on the home.
const POLL: Duration = Duration::from_millis(250);
/// Longest interval, debounce or backoff delay the driver uses (longer ones are cut to it,
/// so that no deadline overflows the clock).
const LONGEST: Duration = Duration::from_secs(30 * 86_400);

mod live;
mod options;

pub use options::{Backoff, SyncNowError, SyncOptions, SyncStatus};

use live::watch_loop;

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

/// Aborts the task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
