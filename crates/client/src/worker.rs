//! The replica's own threads: a small tokio runtime (two worker threads) that runs
//! everything that touches the network (sync, pairing, the sync driver, live updates) and
//! the change feed. Two, so that a sync's connection I/O (the next page fetched ahead)
//! runs while the current page is verified and applied, and a feed is served while a sync
//! works.
//!
//! The application's async worker threads never run Sealsync's SQLite transactions (with
//! their fsyncs) or the crypto of whole pages: a [`crate::Replica::sync`] called on any
//! executor only waits for a task on this thread. The thread starts on the first network
//! operation of a replica and ends when the last handle of that replica is dropped.
//!
//! Dropping the future returned by [`Worker::run`] aborts its task at its next await point,
//! exactly as dropping the task's future in place would: every step of a sync is one local
//! transaction, so a cancelled sync loses nothing.

use std::future::Future;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::error::ClientError;

/// A running worker thread. Dropping it stops the thread's runtime (its tasks are dropped).
#[derive(Debug)]
pub(crate) struct Worker {
    handle: Handle,
    _stop: oneshot::Sender<()>,
}

impl Worker {
    /// Starts the thread and its runtime.
    pub(crate) fn start() -> Result<Worker, ClientError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("sealsync-replica".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("sealsync-replica-io")
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                if ready_tx.send(Ok(rt.handle().clone())).is_err() {
                    return;
                }
                // Runs the spawned tasks until every handle of the replica is gone.
                let _ = rt.block_on(stop_rx);
            })
            .map_err(|e| ClientError::io("cannot start the replica's thread", e))?;
        let handle = ready_rx
            .recv()
            .map_err(|_| ClientError::Internal("the replica's thread did not start".into()))?
            .map_err(|e| ClientError::io("cannot start the replica's runtime", e))?;
        Ok(Worker {
            handle,
            _stop: stop_tx,
        })
    }

    /// Runs `fut` on the worker thread and waits for it (from any executor). Dropping the
    /// returned future aborts the task.
    pub(crate) fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, ClientError>> + Send + 'static,
    ) -> impl Future<Output = Result<T, ClientError>> + Send + 'static {
        let task = AbortOnDrop(self.handle.spawn(fut));
        async move {
            let mut task = task;
            match (&mut task.0).await {
                Ok(r) => r,
                Err(e) if e.is_panic() => Err(ClientError::Internal(
                    "a replica task panicked; nothing it had not committed was kept".into(),
                )),
                Err(_) => Err(ClientError::Internal("the replica's thread stopped".into())),
            }
        }
    }

    /// Spawns a background task (driver, change feed) on the worker thread.
    pub(crate) fn spawn(
        &self,
        fut: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        self.handle.spawn(fut)
    }
}

/// Aborts the task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
