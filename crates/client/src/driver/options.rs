//! The driver's options and what it reports: [`SyncOptions`], [`Backoff`],
//! [`SyncStatus`], [`SyncNowError`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::LONGEST;
use crate::errors::SyncError;
use crate::options::Timeouts;
use crate::progress::SyncProgress;
use crate::types::SyncReport;

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

/// What the driver is doing, published on a `watch` channel ([`SyncHandle::status`](super::SyncHandle::status)).
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

/// Why [`SyncHandle::sync_now`](super::SyncHandle::sync_now) returned no report.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_durations_are_cut_so_that_no_deadline_overflows() {
        let b = Backoff::new(Duration::MAX, Duration::MAX);
        let d = b.delay(u32::MAX);
        assert!(d <= LONGEST && d >= LONGEST / 2, "{d:?}");
        // The deadlines the driver computes from it stay representable.
        assert!(tokio::time::Instant::now().checked_add(d).is_some());
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
