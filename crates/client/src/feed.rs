//! Change feeds: [`Replica::subscribe`](crate::Replica::subscribe) and the stream it returns.
//!
//! A replica runs at most one poller, on its own thread, while anyone is subscribed. It
//! reads the change log (`store::changes`: every version stored, in commit order) through
//! its own read-only connection and broadcasts each change once. It wakes at once when a
//! handle of this replica commits, and every [`POLL`] otherwise, which is how it sees
//! writes by other processes (the CLI) and other handles opened separately on the same
//! home. A subscriber that falls more than [`BUFFER`] changes behind is told how many it
//! missed ([`Lagged`]) and goes on from the newest; it never slows a writer down.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use sealsync_core::{DeviceId, VersionId};
use tokio::sync::{broadcast, watch};

use crate::store::changes::{self, LoggedChange};

/// How often the poller looks for commits made outside this replica's handles.
pub const POLL: Duration = Duration::from_millis(200);
/// Changes a subscriber may fall behind before it is told it lagged.
pub const BUFFER: usize = 4096;
/// Changes read per query.
const PAGE: usize = 512;

/// Who made a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// This device (written through this replica, another handle or process on its home).
    Local,
    /// Another device of the account, applied from a pull.
    Remote(DeviceId),
}

/// One new version of one record, reported after it committed.
///
/// `version` is the version that arrived; it need not be the record's winner (a pulled
/// version can lose to a newer local one). The record's value is what
/// [`Replica::get`](crate::Replica::get) returns now.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Position in this replica's commit order (increasing; gaps are possible).
    pub seq: u64,
    /// Collection name.
    pub collection: String,
    /// Record key.
    pub key: String,
    /// The new version's id.
    pub version: VersionId,
    /// The version is a deletion (tombstone).
    pub deleted: bool,
    /// Who wrote it.
    pub origin: Origin,
}

/// The subscriber fell behind and missed `missed` changes; the stream goes on with newer
/// ones. Re-read what it shows (e.g. [`Replica::list`](crate::Replica::list)) to catch up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the change feed subscriber fell behind and missed {missed} changes")]
pub struct Lagged {
    /// Changes skipped.
    pub missed: u64,
}

/// Which changes a subscriber wants: every collection by default.
#[non_exhaustive]
#[derive(Clone, Debug, Default)]
pub struct ChangeFilter {
    /// Only these collections (`None`: all).
    pub collections: Option<BTreeSet<String>>,
}

impl ChangeFilter {
    /// Every change.
    pub fn all() -> Self {
        Self::default()
    }

    /// Adds `name` to the collections wanted (the first call narrows from "all").
    pub fn collection(mut self, name: impl Into<String>) -> Self {
        self.collections
            .get_or_insert_with(BTreeSet::new)
            .insert(name.into());
        self
    }

    fn wants(&self, c: &Change) -> bool {
        self.collections
            .as_ref()
            .is_none_or(|s| s.contains(&c.collection))
    }
}

type Sender = broadcast::Sender<Arc<Change>>;
type RecvFuture = Pin<
    Box<dyn Future<Output = (Result<Arc<Change>, broadcast::error::RecvError>, Receiver)> + Send>,
>;
type Receiver = broadcast::Receiver<Arc<Change>>;

/// The poller slot of one replica: the sender while a poller runs.
#[derive(Default)]
pub(crate) struct FeedSlot(Arc<Mutex<Option<Sender>>>);

/// Everything a poller needs; it holds no handle on the replica, so dropping the last
/// [`Replica`](crate::Replica) stops it with the replica's thread.
pub(crate) struct PollerSetup {
    pub(crate) db: PathBuf,
    pub(crate) me: DeviceId,
    pub(crate) commits: watch::Receiver<u64>,
    pub(crate) start: u64,
}

use crate::error::ClientError;

impl FeedSlot {
    /// A receiver on the running poller, or on one made by `spawn` if none runs, and the
    /// log position it starts after: the last change committed when it subscribed, read
    /// by `last_seq` under the slot's lock. The poller sends under that lock too, so every
    /// change after that position reaches the receiver, and none before it.
    pub(crate) fn subscribe(
        &self,
        last_seq: impl FnOnce() -> Result<u64, ClientError>,
        setup: impl FnOnce(u64) -> PollerSetup,
        spawn: impl FnOnce(Pin<Box<dyn Future<Output = ()> + Send>>) -> Result<(), ClientError>,
    ) -> Result<(Receiver, u64), ClientError> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let start = last_seq()?;
        if let Some(tx) = slot.as_ref() {
            return Ok((tx.subscribe(), start));
        }
        let (tx, rx) = broadcast::channel(BUFFER);
        spawn(Box::pin(poll_loop(
            setup(start),
            tx.clone(),
            self.0.clone(),
        )))?;
        *slot = Some(tx);
        Ok((rx, start))
    }
}

async fn poll_loop(mut s: PollerSetup, tx: Sender, slot: Arc<Mutex<Option<Sender>>>) {
    let mut cursor = s.start;
    let mut conn = None;
    loop {
        if conn.is_none() {
            match changes::open_reader(&s.db) {
                Ok(c) => conn = Some(c),
                Err(e) => tracing::warn!(error = %e, "change feed: cannot open the database"),
            }
        }
        if let Some(c) = &conn {
            loop {
                match changes::changes_after(c, cursor, PAGE) {
                    Ok(page) => {
                        let full = page.len() == PAGE;
                        let _guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
                        for ch in page {
                            cursor = ch.seq;
                            // No receiver right now is fine: the slot check below ends us.
                            let _ = tx.send(Arc::new(change(ch, s.me)));
                        }
                        if !full {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "change feed: cannot read the change log");
                        conn = None;
                        break;
                    }
                }
            }
        }
        {
            // Under the slot's lock, so that a new subscriber either sees the slot empty
            // (and starts a poller) or gets a receiver before we look.
            let mut guard = slot.lock().unwrap_or_else(PoisonError::into_inner);
            if tx.receiver_count() == 0 {
                *guard = None;
                return;
            }
        }
        tokio::select! {
            changed = s.commits.changed() => {
                if changed.is_err() {
                    // Every handle of the replica is gone.
                    slot.lock().unwrap_or_else(PoisonError::into_inner).take();
                    return;
                }
            }
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

fn change(c: LoggedChange, me: DeviceId) -> Change {
    let author = c.version.device();
    Change {
        seq: c.seq,
        collection: c.collection,
        key: c.key,
        version: c.version,
        deleted: c.deleted,
        origin: if author == me {
            Origin::Local
        } else {
            Origin::Remote(author)
        },
    }
}

/// The stream of [`Change`]s returned by [`Replica::subscribe`](crate::Replica::subscribe):
/// each change committed after the call, exactly once, in commit order, that the filter
/// wants; an `Err(Lagged)` item when this subscriber fell behind. Use it as a
/// `futures_core::Stream` or call [`Changes::next`]. It ends when every handle of the
/// replica is dropped. Dropping it unsubscribes.
pub struct Changes {
    filter: ChangeFilter,
    after: u64,
    recv: Option<RecvFuture>,
}

impl std::fmt::Debug for Changes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Changes")
            .field("filter", &self.filter)
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

fn recv_future(mut rx: Receiver) -> RecvFuture {
    Box::pin(async move {
        let r = rx.recv().await;
        (r, rx)
    })
}

impl Changes {
    pub(crate) fn new(rx: Receiver, filter: ChangeFilter, after: u64) -> Self {
        Self {
            filter,
            after,
            recv: Some(recv_future(rx)),
        }
    }

    /// The next change (or lag notice); `None` once the replica is gone.
    pub async fn next(&mut self) -> Option<Result<Change, Lagged>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next_item(cx)).await
    }

    fn poll_next_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Change, Lagged>>> {
        loop {
            let Some(fut) = self.recv.as_mut() else {
                return Poll::Ready(None);
            };
            let (r, rx) = std::task::ready!(fut.as_mut().poll(cx));
            self.recv = Some(recv_future(rx));
            match r {
                Ok(c) if c.seq <= self.after => {}
                Ok(c) => {
                    self.after = c.seq;
                    if self.filter.wants(&c) {
                        return Poll::Ready(Some(Ok(Arc::unwrap_or_clone(c))));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    return Poll::Ready(Some(Err(Lagged { missed: n })));
                }
                Err(broadcast::error::RecvError::Closed) => {
                    self.recv = None;
                    return Poll::Ready(None);
                }
            }
        }
    }
}

impl futures_core::Stream for Changes {
    type Item = Result<Change, Lagged>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_item(cx)
    }
}
