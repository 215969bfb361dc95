//! Live updates for the driver: one `POST /v1/watch` long poll at a time, turned into hints,
//! and the short local reads the driver needs of a replica.

use std::sync::Arc;
use std::time::Duration;

use sealsync_core::CollectionId;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{Backoff, SyncStatus};
use crate::error::ClientError;
use crate::handle::Replica;
use crate::net::watch::{Cursor, watch as watch_request};
use crate::options::Timeouts;

/// Least time an honest server holds an empty live-update answer (`WATCH_WAIT_MIN_MS`).
const WATCH_SPACING: Duration = Duration::from_secs(1);
/// How long one live-update request waits on the server.
const WATCH_WAIT: Duration = Duration::from_secs(25);

/// Keeps one live-update request open at a time and turns each answer naming a
/// collection into a hint for the driver. After a hint it waits for the driver's next
/// sync to end (its cursors move), so that it does not ask about what is being pulled.
pub(super) async fn watch_loop(
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
    pub(super) async fn set_timeouts(&self, t: Timeouts) {
        self.local().timeouts = t;
        if let Some(core) = self.shared.engine.lock().await.as_mut() {
            core.timeouts = t;
            // A kept connection has the old request timeout.
            core.kept = None;
        }
    }

    pub(super) fn last_unsent_seq(&self) -> Result<u64, ClientError> {
        self.local().store.last_unsent_seq()
    }

    pub(super) fn pending_work(&self) -> Result<(u64, u64), ClientError> {
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
