//! One sync at a time per home, across handles and processes.
//!
//! Sealing, re-stamping, pushing, acknowledging and taking back batches after a restore
//! read the outbox and the device's chain, talk to the server, then write what the server
//! said. Two handles on one home (an app and the CLI, or two [`crate::Core`]s of one
//! app) interleaving these steps could pair an acknowledgement with a batch re-sealed in
//! between, or re-seal a batch that is being pushed. A SQLite transaction cannot span the
//! network calls, so [`Core::sync`](crate::Core::sync) holds an advisory exclusive
//! lock on the file `sync.lock` in the home for its whole run (`std::fs::File::try_lock`:
//! `flock` on Unix, `LockFileEx` on Windows; released when the file is closed, also when
//! the process dies or the sync future is dropped). A second sync polls for the lock and
//! waits up to [`SYNC_LOCK_WAIT`], then fails with [`ClientError::SyncBusy`] having done
//! nothing. Local edits (`put`, `delete`, ...) never take the lock: they only add unsent
//! versions, each in its own transaction.
//!
//! Acknowledgements are also matched by batch hash (`store::seal`), so even without the lock
//! an acknowledgement can only mark the exact batch that was sent.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::ClientError;

/// Lock file name inside the replica's home directory.
pub(crate) const SYNC_LOCK_FILE: &str = "sync.lock";
/// How long a sync waits for another sync of the same home to finish.
pub const SYNC_LOCK_WAIT: Duration = Duration::from_secs(120);
/// How often a waiting sync tries the lock again.
const POLL: Duration = Duration::from_millis(25);

/// Held for the length of one sync; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct SyncLock {
    _file: File,
}

/// Takes the sync lock of `home`, waiting up to `wait` for another holder to release it.
pub(crate) async fn lock_sync(home: &Path, wait: Duration) -> Result<SyncLock, ClientError> {
    let path = home.join(SYNC_LOCK_FILE);
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let file = options
        .open(&path)
        .map_err(|e| ClientError::io(format!("cannot open {}", path.display()), e))?;
    let started = Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(SyncLock { _file: file }),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => {
                return Err(ClientError::io(
                    format!("cannot lock {}", path.display()),
                    e,
                ));
            }
        }
        if started.elapsed() >= wait {
            return Err(ClientError::SyncBusy {
                waited_secs: wait.as_secs(),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_holder_waits_then_gets_a_clear_error() {
        // Two handles of one process open the lock file separately: the lock excludes them.
        let home = tempfile::tempdir().unwrap();
        let first = lock_sync(home.path(), Duration::ZERO).await.unwrap();
        let err = lock_sync(home.path(), Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::SyncBusy { .. }), "{err}");
        assert!(err.to_string().contains("another sync"), "{err}");
        drop(first);
        lock_sync(home.path(), Duration::ZERO).await.unwrap();
    }
}
