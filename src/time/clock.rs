//! The loop's clock: monotonic for real work, virtual for tests.
//!
//! asyncio's `loop.time()` is `time.monotonic()`; its test suite swaps in a
//! `TestLoop` whose clock only moves when the loop would otherwise block
//! (`Lib/test/test_asyncio/utils.py`). aioloop has both behind one type.
//!
//! Time is kept as whole nanoseconds in a `u64`, the unit the timer wheel
//! works in, counted from [`ORIGIN`] = 2^63, which is loop time 0.0 (the
//! loop's creation). The offset is there for deadlines *before* the loop
//! began: asyncio's `call_at(loop.time() - 3, cb)` keeps `when() == t - 3`
//! and fires past timers in deadline order (CPython's clock is
//! `time.monotonic()`, far from zero, so nothing there is ever clamped). An
//! unsigned scale starting at the loop's birth would clamp them all to 0 and
//! fire them in scheduling order instead. So the range is about ±292 years
//! around the loop's creation. Seconds as `f64`, which is what asyncio shows,
//! are derived from it only at the API edge.
//!
//! `u64::MAX` is [`NEVER`]: the deadline of `call_at(inf)`, of
//! `call_later(Duration::MAX)` and of anything past the range. asyncio never
//! fires a timer at `inf` (no clock reading reaches it), so neither clock
//! ever reaches `NEVER`, and the loop does not wake up for it.
//!
//! # Invariants
//!
//! - `now_ns` never goes backwards, on either clock, starts at [`ORIGIN`],
//!   and stays below [`NEVER`].
//! - The virtual clock moves only when told to (`advance_to` / `advance_by`);
//!   reading it costs no system call.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Nanoseconds in a second, for the `f64` seconds asyncio's API speaks in.
pub(crate) const NANOS_PER_SEC: f64 = 1_000_000_000.0;

/// The clock's reading at loop time 0.0: the middle of the `u64` range, so
/// that deadlines before the loop's creation keep their order (module docs).
pub(crate) const ORIGIN: u64 = 1 << 63;

/// The deadline that is never due (`inf`); no clock reading reaches it.
pub(crate) const NEVER: u64 = u64::MAX;

/// The latest instant a clock can show: one nanosecond short of [`NEVER`].
const END: u64 = NEVER - 1;

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
        Clock::Virtual {
            now: Cell::new(ORIGIN),
        }
    }

    pub(crate) fn is_virtual(&self) -> bool {
        matches!(self, Clock::Virtual { .. })
    }

    /// The current instant: [`ORIGIN`] plus the nanoseconds since the loop
    /// was created.
    #[inline]
    pub(crate) fn now_ns(&self) -> u64 {
        match self {
            // `as u64` cannot truncate in practice: that would take 584 years,
            // and the sum stays below END for the first 292.
            Clock::Monotonic { origin } => ORIGIN + origin.elapsed().as_nanos() as u64,
            Clock::Virtual { now } => now.get(),
        }
    }

    /// Moves a virtual clock forward to `ns` (never backwards, never to
    /// [`NEVER`]). No effect on a monotonic clock, which the OS moves.
    pub(crate) fn advance_to(&self, ns: u64) {
        if let Clock::Virtual { now } = self {
            if ns > now.get() {
                now.set(ns.min(END));
            }
        }
    }

    /// Moves a virtual clock forward by `d`, stopping a nanosecond short of
    /// [`NEVER`]: an `inf` timer never fires.
    pub(crate) fn advance_by(&self, d: Duration) {
        if let Clock::Virtual { now } = self {
            now.set(now.get().saturating_add(duration_to_ns(d)).min(END));
        }
    }
}

/// A `Duration` as nanoseconds, saturating at `u64::MAX` ("never").
#[inline]
pub(crate) fn duration_to_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Loop seconds (asyncio's `float`) to an instant, rounded **up** so that a
/// timer is never due before the instant it names. Negative times are before
/// the loop's creation and keep their order down to 292 years back (earlier
/// ones saturate at 0); huge ones saturate at [`NEVER`]; NaN is the caller's
/// to refuse.
pub(crate) fn secs_to_ns_ceil(secs: f64) -> u64 {
    // `as` saturates float-to-int conversions (and maps ±inf to the bounds).
    let ns = (secs * NANOS_PER_SEC).ceil() as i64;
    (i128::from(ORIGIN) + i128::from(ns)).clamp(0, i128::from(NEVER)) as u64
}

/// An instant to loop seconds. Monotonic in `ns`, so `a <= b` implies
/// `ns_to_secs(a) <= ns_to_secs(b)`: a timer's `when()` is never after the
/// `time()` its callback observes. [`NEVER`] is `inf`, as asyncio shows it.
#[inline]
pub(crate) fn ns_to_secs(ns: u64) -> f64 {
    if ns == NEVER {
        return f64::INFINITY;
    }
    // Subtracting ORIGIN with wrap-around and reading the bits as signed is
    // the signed difference: the whole u64 range maps onto i64 in order.
    ns.wrapping_sub(ORIGIN) as i64 as f64 / NANOS_PER_SEC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_clock_moves_only_forward_and_only_when_told() {
        let c = Clock::virtual_clock();
        assert_eq!(c.now_ns(), ORIGIN);
        c.advance_to(ORIGIN + 5_000);
        assert_eq!(c.now_ns(), ORIGIN + 5_000);
        c.advance_to(ORIGIN + 1_000);
        assert_eq!(c.now_ns(), ORIGIN + 5_000, "time never goes back");
        c.advance_by(Duration::from_micros(1));
        assert_eq!(c.now_ns(), ORIGIN + 6_000);
        c.advance_by(Duration::MAX);
        assert_eq!(c.now_ns(), END, "the clock never reaches NEVER");
        c.advance_to(NEVER);
        assert_eq!(c.now_ns(), END);
    }

    #[test]
    fn monotonic_clock_is_monotonic_and_ignores_advance() {
        let c = Clock::monotonic();
        let a = c.now_ns();
        assert!(a >= ORIGIN);
        c.advance_to(u64::MAX);
        let b = c.now_ns();
        assert!(b >= a);
        assert!(
            b < ORIGIN + 60 * 1_000_000_000,
            "advance_to must not move a real clock"
        );
    }

    #[test]
    fn seconds_round_up_to_the_nanosecond() {
        assert_eq!(secs_to_ns_ceil(-3.0), ORIGIN - 3_000_000_000);
        assert_eq!(secs_to_ns_ceil(0.0), ORIGIN);
        assert_eq!(secs_to_ns_ceil(1.5), ORIGIN + 1_500_000_000);
        assert_eq!(
            secs_to_ns_ceil(1e-10),
            ORIGIN + 1,
            "a tiny positive time is not 'now'"
        );
        assert_eq!(secs_to_ns_ceil(f64::INFINITY), NEVER);
        assert_eq!(secs_to_ns_ceil(1e300), NEVER);
        assert_eq!(secs_to_ns_ceil(f64::NEG_INFINITY), 0);
        assert_eq!(secs_to_ns_ceil(-1e300), 0);
        assert!(ns_to_secs(secs_to_ns_ceil(0.1)) >= 0.1);
    }

    #[test]
    fn seconds_before_the_loop_keep_their_value_and_order() {
        for secs in [-5.0, -3.0, -0.25, 0.0, 0.25, 3.0, 3600.0] {
            assert_eq!(ns_to_secs(secs_to_ns_ceil(secs)), secs);
        }
        assert!(secs_to_ns_ceil(-5.0) < secs_to_ns_ceil(-3.0));
        assert_eq!(ns_to_secs(NEVER), f64::INFINITY);
        assert_eq!(ns_to_secs(0), -(ORIGIN as f64) / NANOS_PER_SEC);
    }
}
