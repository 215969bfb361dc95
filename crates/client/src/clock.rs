//! Trusted time for the device's hybrid logical clock (NA-10, CD-08).
//!
//! The server refuses batches whose `hlc_max` is more than `MAX_DRIFT_MS` ahead of its own
//! clock, so a device whose wall clock runs fast would have every push refused. The device
//! therefore learns the server's clock (`EnrollResponse.server_time_ms` at enrollment, then
//! `StatusResponse.server_time_ms` at the start of every sync), keeps the offset
//! `server − local` durably, and stamps its edits with [`trusted_now`]:
//! `min(local_now, local_now + offset + MAX_DRIFT_MS / 2)`. A fast clock is pulled back to at
//! most half the drift bound ahead of the server; a slow clock is left alone; the HLC itself
//! still never goes backwards (`HlcClock::tick` takes the maximum with its last value).
//!
//! Security: the offset comes from the server, and a malicious server can report any time.
//! Because of the `min` with the local clock, a lying server can only slow this device's
//! clock (its edits then lose last-writer-wins races), never speed it up: it cannot make the
//! device stamp edits in the future. It could already refuse the device's pushes outright.

use sealsync_core::MAX_DRIFT_MS;

/// The time HLC ticks use: `min(local_ms, local_ms + offset_ms + MAX_DRIFT_MS / 2)`, or
/// `local_ms` while no offset is known. Never later than `local_ms`, never below 0.
pub(crate) fn trusted_now(local_ms: u64, offset_ms: Option<i64>) -> u64 {
    let Some(offset) = offset_ms else {
        return local_ms;
    };
    let bound = i128::from(local_ms) + i128::from(offset) + i128::from(MAX_DRIFT_MS / 2);
    let clamped = bound.clamp(0, i128::from(local_ms));
    // `clamped` lies in 0..=local_ms, so it always fits a u64.
    u64::try_from(clamped).unwrap_or(local_ms)
}

/// `server − local` in ms, with the local reading taken halfway through the request that
/// returned `server_ms` (sent at `sent_ms`, answered at `received_ms`). Saturates at the
/// `i64` range.
pub(crate) fn clock_offset(server_ms: u64, sent_ms: u64, received_ms: u64) -> i64 {
    let local_mid = (i128::from(sent_ms) + i128::from(received_ms)) / 2;
    let offset = i128::from(server_ms) - local_mid;
    i64::try_from(offset).unwrap_or(if offset < 0 { i64::MIN } else { i64::MAX })
}

/// The device's view of time: the system clock, an optional test skew, and the offset to
/// the server's clock once learned.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DeviceClock {
    /// `server − local` in ms, once learned (persisted in the `meta` table).
    pub(crate) offset_ms: Option<i64>,
    /// Fixed amount added to the system clock reading (tests only; 0 otherwise).
    pub(crate) skew_ms: i64,
}

impl DeviceClock {
    /// The local wall clock in ms since the Unix epoch (system clock plus the test skew).
    pub(crate) fn local_now(&self) -> u64 {
        let system = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        system.saturating_add_signed(self.skew_ms)
    }

    /// The time HLC ticks use: [`trusted_now`] of [`DeviceClock::local_now`].
    pub(crate) fn now(&self) -> u64 {
        trusted_now(self.local_now(), self.offset_ms)
    }

    /// The latest stamp an edit may carry now: the server's clock (estimated from the
    /// offset) plus half the drift bound, as its last tick of that millisecond. An edit
    /// stamped later was stamped by a clock that ran fast (and the server would refuse it
    /// once the server's clock is that far behind); `None` while the offset is unknown.
    pub(crate) fn stamp_limit(&self) -> Option<sealsync_core::Hlc> {
        let offset = self.offset_ms?;
        let server = i128::from(self.local_now()) + i128::from(offset);
        let limit = (server + i128::from(MAX_DRIFT_MS / 2)).clamp(0, i128::from(u64::MAX));
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        Some(sealsync_core::Hlc::from_parts(limit, u16::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HALF: u64 = MAX_DRIFT_MS / 2;
    const NOW: u64 = 1_800_000_000_000;
    const HOUR: i64 = 3_600_000;

    #[test]
    fn fast_clocks_are_pulled_back_to_half_the_drift_bound() {
        // NA-10, CD-08: a device one hour fast stamps at most HALF ahead of the server.
        let local = NOW + HOUR as u64;
        assert_eq!(trusted_now(local, Some(-HOUR)), NOW + HALF);
        // A day and a month fast: the same.
        for ahead in [24 * HOUR, 30 * 24 * HOUR] {
            assert_eq!(trusted_now(NOW + ahead as u64, Some(-ahead)), NOW + HALF);
        }
        // Fast by less than HALF: unchanged.
        assert_eq!(trusted_now(NOW + 1000, Some(-1000)), NOW + 1000);
        // Exactly at the bound.
        let at = NOW + HALF;
        assert_eq!(trusted_now(at, Some(-(HALF as i64))), at);
        assert_eq!(trusted_now(at + 1, Some(-(HALF as i64) - 1)), at);
    }

    #[test]
    fn slow_clocks_and_unknown_offsets_are_left_alone() {
        // NA-10
        assert_eq!(trusted_now(NOW, None), NOW);
        assert_eq!(trusted_now(NOW, Some(0)), NOW);
        assert_eq!(
            trusted_now(NOW - HOUR as u64, Some(HOUR)),
            NOW - HOUR as u64
        );
        assert_eq!(trusted_now(NOW, Some(i64::MAX)), NOW);
    }

    #[test]
    fn a_lying_server_can_only_slow_the_clock() {
        // CD-08: whatever offset the server causes, the result is never after local time.
        for offset in [i64::MIN, -HOUR, -1, 0, 1, HOUR, i64::MAX] {
            for local in [0, 1, NOW, u64::MAX] {
                assert!(
                    trusted_now(local, Some(offset)) <= local,
                    "{offset} {local}"
                );
            }
        }
        assert_eq!(trusted_now(NOW, Some(i64::MIN)), 0);
        assert_eq!(trusted_now(NOW, Some(-(NOW as i64))), HALF);
    }

    #[test]
    fn offset_uses_the_middle_of_the_request_and_saturates() {
        assert_eq!(clock_offset(NOW, NOW, NOW), 0);
        assert_eq!(
            clock_offset(NOW, NOW + HOUR as u64, NOW + HOUR as u64 + 200),
            -HOUR - 100
        );
        assert_eq!(clock_offset(NOW + 50, NOW, NOW + 100), 0);
        assert_eq!(clock_offset(u64::MAX, 0, 0), i64::MAX);
        assert_eq!(clock_offset(0, u64::MAX, u64::MAX), i64::MIN);
    }

    #[test]
    fn the_stamp_limit_follows_the_server_clock() {
        // NA-10, CD-08: edits stamped after the limit are re-stamped at the next sync.
        let unknown = DeviceClock::default();
        assert_eq!(unknown.stamp_limit(), None);
        let fast = DeviceClock {
            offset_ms: Some(-HOUR),
            skew_ms: HOUR,
        };
        let right = DeviceClock {
            offset_ms: Some(0),
            skew_ms: 0,
        };
        // What the device stamps now is read before the limits, which only move forward: a
        // fast clock stamps exactly at the limit's millisecond.
        let (fast_now, right_now) = (fast.now(), right.now());
        let (Some(a), Some(b)) = (fast.stamp_limit(), right.stamp_limit()) else {
            panic!("limits");
        };
        // Both near the server's clock plus HALF, whatever the local clock says.
        assert!(a.physical_ms().abs_diff(b.physical_ms()) < 1000);
        assert!(b.physical_ms() >= right.local_now() + HALF - 1000);
        assert_eq!(b.logical(), u16::MAX);
        // What the device stamps now is within the limit.
        assert!(sealsync_core::Hlc::from_parts(right_now, 0) <= b);
        assert!(sealsync_core::Hlc::from_parts(fast_now, 0) <= a);
    }

    #[test]
    fn skew_moves_the_local_reading() {
        let plain = DeviceClock::default();
        let fast = DeviceClock {
            offset_ms: None,
            skew_ms: HOUR,
        };
        let diff = fast.local_now() as i64 - plain.local_now() as i64;
        assert!((HOUR - 1000..=HOUR + 1000).contains(&diff), "{diff}");
        // Learning the offset under that skew pulls it back near the real time.
        let learned = DeviceClock {
            offset_ms: Some(-HOUR),
            skew_ms: HOUR,
        };
        let ahead = learned.now() as i64 - plain.local_now() as i64;
        assert!(ahead <= HALF as i64 + 1000, "{ahead}");
    }
}
