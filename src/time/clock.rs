//! The loop's clock: monotonic for real work, virtual for tests.
//!
//! asyncio's `loop.time()` is `time.monotonic()`; its test suite swaps in a
//! `TestLoop` whose clock only moves when the loop would otherwise block
//! (`Lib/test/test_asyncio/utils.py`). aioloop has both behind one type.
//!
//! Time is kept as whole nanoseconds since the loop was created (`u64`, ~584
//! years of range), the unit the timer wheel works in. Seconds as `f64`, which
//! is what asyncio shows, are derived from it only at the API edge.
//!
//! # Invariants
//!
//! - `now_ns` never goes backwards, on either clock.
//! - The virtual clock moves only when told to (`advance_to` / `advance_by`);
//!   reading it costs no system call.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Nanoseconds in a second, for the `f64` seconds asyncio's API speaks in.
pub(crate) const NANOS_PER_SEC: f64 = 1_000_000_000.0;

/// A monotonic or virtual clock, counting nanoseconds from the loop's birth.
#[derive(Debug)]
pub(crate) enum Clock {
    /// `Instant`-based: the OS monotonic clock (`CLOCK_MONOTONIC` on Linux).
    Monotonic { origin: Instant },
    /// Moves only when the loop (or a test) advances it.
    Virtual { now: Cell<u64> },
}

impl Clock {
    pub(crate) fn monotonic() -> Self {
        Clock::Monotonic {
            origin: Instant::now(),
        }
    }

    pub(crate) fn virtual_clock() -> Self {
        Clock::Virtual { now: Cell::new(0) }
    }

    pub(crate) fn is_virtual(&self) -> bool {
        matches!(self, Clock::Virtual { .. })
    }

    /// Nanoseconds since the loop was created.
    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        match self {
            // `as u64` cannot truncate in practice: u64 nanoseconds last 584 years.
            Clock::Monotonic { origin } => origin.elapsed().as_nanos() as u64,
            Clock::Virtual { now } => now.get(),
        }
    }

    /// Moves a virtual clock forward to `ns` (never backwards). No effect on a
    /// monotonic clock, which the OS moves.
    pub(crate) fn advance_to(&self, ns: u64) {
        if let Clock::Virtual { now } = self {
            if ns > now.get() {
                now.set(ns);
            }
        }
    }

    /// Moves a virtual clock forward by `d`, saturating at the end of time.
    pub(crate) fn advance_by(&self, d: Duration) {
        if let Clock::Virtual { now } = self {
            now.set(now.get().saturating_add(duration_to_ns(d)));
        }
    }
}

/// A `Duration` as nanoseconds, saturating at `u64::MAX` ("never").
#[inline]
pub(crate) fn duration_to_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Loop seconds (asyncio's `float`) to nanoseconds, rounded **up** so that a
/// timer is never due before the instant it names. Negative times are in the
/// past (0); huge ones saturate; NaN is the caller's to refuse.
pub(crate) fn secs_to_ns_ceil(secs: f64) -> u64 {
    if secs <= 0.0 {
        0
    } else {
        let ns = (secs * NANOS_PER_SEC).ceil();
        // `as` saturates float-to-int conversions (and maps +inf to u64::MAX).
        ns as u64
    }
}

/// Nanoseconds to loop seconds. Monotonic in `ns`, so `a <= b` implies
/// `ns_to_secs(a) <= ns_to_secs(b)`: a timer's `when()` is never after the
/// `time()` its callback observes.
#[inline]
pub(crate) fn ns_to_secs(ns: u64) -> f64 {
    ns as f64 / NANOS_PER_SEC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_clock_moves_only_forward_and_only_when_told() {
        let c = Clock::virtual_clock();
        assert_eq!(c.now_ns(), 0);
        c.advance_to(5_000);
        assert_eq!(c.now_ns(), 5_000);
        c.advance_to(1_000);
        assert_eq!(c.now_ns(), 5_000, "time never goes back");
        c.advance_by(Duration::from_micros(1));
        assert_eq!(c.now_ns(), 6_000);
        c.advance_by(Duration::MAX);
        assert_eq!(c.now_ns(), u64::MAX);
    }

    #[test]
    fn monotonic_clock_is_monotonic_and_ignores_advance() {
        let c = Clock::monotonic();
        let a = c.now_ns();
        c.advance_to(u64::MAX);
        let b = c.now_ns();
        assert!(b >= a);
        assert!(
            b < 60 * 1_000_000_000,
            "advance_to must not move a real clock"
        );
    }

    #[test]
    fn seconds_round_up_to_the_nanosecond() {
        assert_eq!(secs_to_ns_ceil(-3.0), 0);
        assert_eq!(secs_to_ns_ceil(0.0), 0);
        assert_eq!(secs_to_ns_ceil(1.5), 1_500_000_000);
        assert_eq!(
            secs_to_ns_ceil(1e-10),
            1,
            "a tiny positive time is not 'now'"
        );
        assert_eq!(secs_to_ns_ceil(f64::INFINITY), u64::MAX);
        assert_eq!(secs_to_ns_ceil(1e300), u64::MAX);
        assert!(ns_to_secs(secs_to_ns_ceil(0.1)) >= 0.1);
    }
}
