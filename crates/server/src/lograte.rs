//! Rate limits for log lines that a network peer can trigger at will (refusals, failed
//! handshakes, evictions): a flood must not flood the log too (BI-18).
//!
//! Each kind of line has one [`LogLimit`]: at most `burst` lines per window; the lines
//! beyond are counted, and the next line that is written reports how many were dropped.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A limit for one kind of log line.
#[derive(Debug)]
pub(crate) struct LogLimit {
    burst: u32,
    window: Duration,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    window_start: Option<Instant>,
    written: u32,
    suppressed: u64,
}

impl LogLimit {
    /// At most `burst` lines per `window`.
    pub(crate) const fn new(burst: u32, window: Duration) -> LogLimit {
        LogLimit {
            burst,
            window,
            state: Mutex::new(State {
                window_start: None,
                written: 0,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` when a line may be written now (`n` lines were dropped since the last one
    /// written), `None` when this one must be dropped.
    pub(crate) fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut s = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let expired = s
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.window);
        if expired {
            s.window_start = Some(now);
            s.written = 0;
        }
        if s.written < self.burst {
            s.written += 1;
            Some(std::mem::take(&mut s.suppressed))
        } else {
            s.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_are_cut_and_the_dropped_lines_counted() {
        // BI-18
        let limit = LogLimit::new(3, Duration::from_secs(1));
        let t0 = Instant::now();
        assert_eq!(limit.allow_at(t0), Some(0));
        assert_eq!(limit.allow_at(t0), Some(0));
        assert_eq!(limit.allow_at(t0), Some(0));
        for _ in 0..1000 {
            assert_eq!(limit.allow_at(t0), None);
        }
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(limit.allow_at(t1), Some(1000));
        assert_eq!(limit.allow_at(t1), Some(0));
    }
}
