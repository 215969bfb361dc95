//! Hybrid logical clock.
//!
//! `hlc = (physical_ms << 16) | logical`: physical milliseconds since the Unix epoch in the
//! high 48 bits and a 16-bit counter in the low bits. A device's clock strictly increases, so
//! `(hlc, device_id)` is a unique, totally ordered version id. Remote clocks further ahead of
//! the local wall clock than [`MAX_DRIFT_MS`] are refused, never adopted (CD-08, BI-19).

/// Largest allowed distance (ms) between a remote clock and the local wall clock.
pub const MAX_DRIFT_MS: u64 = 300_000;

/// Largest physical time representable in the 48 high bits.
const MAX_PHYSICAL_MS: u64 = (1 << 48) - 1;

/// A hybrid logical clock value.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Hlc(pub u64);

impl Hlc {
    /// Builds `(physical_ms << 16) | logical`; `physical_ms` is clamped to 48 bits.
    pub fn from_parts(physical_ms: u64, logical: u16) -> Self {
        Hlc((physical_ms.min(MAX_PHYSICAL_MS) << 16) | u64::from(logical))
    }

    /// Physical part, milliseconds since the Unix epoch.
    pub fn physical_ms(self) -> u64 {
        self.0 >> 16
    }

    /// Logical counter.
    pub fn logical(self) -> u16 {
        // The mask keeps 16 bits, so the cast is lossless.
        (self.0 & 0xffff) as u16
    }
}

/// Why a remote clock was not adopted.
#[non_exhaustive]
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ClockError {
    /// The remote clock is more than [`MAX_DRIFT_MS`] ahead of the local wall clock (BI-19).
    #[error(
        "remote clock {remote_ms} ms is more than {MAX_DRIFT_MS} ms ahead of local time {now_ms} ms"
    )]
    Drift {
        /// Physical part of the remote clock.
        remote_ms: u64,
        /// Local wall clock.
        now_ms: u64,
    },
}

/// True when `hlc` is at most [`MAX_DRIFT_MS`] ahead of `now_ms`.
pub fn within_drift(hlc: Hlc, now_ms: u64) -> bool {
    hlc.physical_ms() <= now_ms.saturating_add(MAX_DRIFT_MS)
}

/// One device's clock: remembers the last value it issued or observed.
#[derive(Debug, Clone, Default)]
pub struct HlcClock {
    last: Hlc,
}

impl HlcClock {
    /// A clock that will only issue values above `last` (persisted by the caller).
    pub fn new(last: Hlc) -> Self {
        Self { last }
    }

    /// The last value issued or observed.
    pub fn last(&self) -> Hlc {
        self.last
    }

    /// Issues a new value, `max(now_ms << 16, last + 1)`: strictly increasing across calls,
    /// even if the wall clock goes backwards. (At `u64::MAX`, year 10889, it saturates.)
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        let wall = Hlc::from_parts(now_ms, 0);
        let next = Hlc(self.last.0.saturating_add(1));
        self.last = wall.max(next);
        self.last
    }

    /// Moves the clock to at least `remote`, unless `remote` is beyond the drift bound from
    /// `now_ms`: then returns [`ClockError::Drift`] and leaves the clock unchanged.
    pub fn observe(&mut self, remote: Hlc, now_ms: u64) -> Result<(), ClockError> {
        if !within_drift(remote, now_ms) {
            return Err(ClockError::Drift {
                remote_ms: remote.physical_ms(),
                now_ms,
            });
        }
        self.last = self.last.max(remote);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        let h = Hlc::from_parts(1_700_000_000_000, 7);
        assert_eq!(h.physical_ms(), 1_700_000_000_000);
        assert_eq!(h.logical(), 7);
        assert_eq!(h.0, (1_700_000_000_000 << 16) | 7);
        // Out-of-range physical time is clamped, not wrapped.
        assert_eq!(Hlc::from_parts(u64::MAX, 0).physical_ms(), MAX_PHYSICAL_MS);
    }

    #[test]
    fn tick_is_strictly_monotonic() {
        // BI-19: a wall clock that stalls or jumps backwards never makes the HLC go back.
        let mut c = HlcClock::default();
        let mut prev = Hlc(0);
        for now in [1000, 1000, 999, 5, 2000, 2000, 1500] {
            let h = c.tick(now);
            assert!(h > prev, "{h:?} after {prev:?}");
            prev = h;
        }
        assert_eq!(c.last(), prev);
        assert_eq!(prev, Hlc(Hlc::from_parts(2000, 0).0 + 2));
    }

    #[test]
    fn tick_uses_wall_clock_when_ahead() {
        let mut c = HlcClock::new(Hlc::from_parts(10, 3));
        assert_eq!(c.tick(11), Hlc::from_parts(11, 0));
        assert_eq!(c.tick(11), Hlc::from_parts(11, 1));
    }

    #[test]
    fn tick_saturates_at_max() {
        let mut c = HlcClock::new(Hlc(u64::MAX));
        assert_eq!(c.tick(0), Hlc(u64::MAX));
    }

    #[test]
    fn observe_moves_forward_only() {
        let mut c = HlcClock::new(Hlc::from_parts(100, 0));
        c.observe(Hlc::from_parts(50, 0), 100).unwrap();
        assert_eq!(c.last(), Hlc::from_parts(100, 0));
        c.observe(Hlc::from_parts(200, 4), 100).unwrap();
        assert_eq!(c.last(), Hlc::from_parts(200, 4));
        assert!(c.tick(100) > Hlc::from_parts(200, 4));
    }

    #[test]
    fn observe_refuses_drift() {
        // BI-19 / CD-08: a clock from the far future is refused and not adopted.
        let now = 1_000_000;
        let mut c = HlcClock::new(Hlc::from_parts(now, 0));
        let edge = Hlc::from_parts(now + MAX_DRIFT_MS, u16::MAX);
        assert!(within_drift(edge, now));
        let beyond = Hlc::from_parts(now + MAX_DRIFT_MS + 1, 0);
        assert!(!within_drift(beyond, now));
        assert_eq!(
            c.observe(beyond, now),
            Err(ClockError::Drift {
                remote_ms: now + MAX_DRIFT_MS + 1,
                now_ms: now
            })
        );
        assert_eq!(c.last(), Hlc::from_parts(now, 0), "clock unchanged");
        assert!(!within_drift(Hlc(u64::MAX), now));
        assert!(within_drift(Hlc(u64::MAX), u64::MAX), "no overflow");
        c.observe(edge, now).unwrap();
        assert_eq!(c.last(), edge);
    }
}
