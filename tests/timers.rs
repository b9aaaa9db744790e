//! `call_later` / `call_at` and the virtual clock: deadline order, ties,
//! never early, cancelled timers leave at once.

mod util;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use aioloop::{EventLoop, LoopError};
use util::{stopper, Recorder};

/// A small deterministic PRNG (xorshift), so the test needs no dependency
/// and every run sees the same "random" deadlines.
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn timers_fire_in_deadline_order_and_never_early() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let fired = Recorder::new();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut expected = Vec::new();
    for seq in 0..2000u64 {
        // Deadlines from 0 to ~3 hours, many sharing a millisecond tick.
        let delay = Duration::from_micros(rng.next() % 10_000_000_000 / 1000 * 1000);
        let (f, l) = (fired.clone(), lp.loop_ref());
        let t = lp
            .call_later(delay, move || f.push((seq, l.time())))
            .unwrap();
        expected.push((t.when(), seq));
    }
    let last = expected.iter().map(|e| e.0).fold(0.0, f64::max);
    lp.call_at(last + 1.0, stopper(&lp)).unwrap();
    lp.run_forever().unwrap();

    expected.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let got = fired.take();
    let order: Vec<u64> = got.iter().map(|g| g.0).collect();
    let want: Vec<u64> = expected.iter().map(|e| e.1).collect();
    assert_eq!(order, want, "deadline order, ties in scheduling order");
    for ((_, at), (when, _)) in got.iter().zip(&expected) {
        assert!(at >= when, "fired at {at} before its deadline {when}");
    }
}

#[test]
fn equal_deadlines_fire_in_the_order_they_were_scheduled() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    for i in 0..50 {
        let r = rec.clone();
        // Mixed: call_later and call_at naming the same instant.
        if i % 2 == 0 {
            lp.call_later(Duration::from_secs(5), move || r.push(i))
                .unwrap();
        } else {
            lp.call_at(5.0, move || r.push(i)).unwrap();
        }
    }
    lp.call_at(5.0, stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(rec.take(), (0..50).collect::<Vec<_>>());
}

#[test]
fn a_timer_is_not_due_a_nanosecond_early() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    lp.call_later(Duration::from_nanos(1_500_001), move || r.set(true))
        .unwrap();
    lp.advance_time(Duration::from_nanos(1_500_000)).unwrap();
    lp.stop();
    lp.run_forever().unwrap(); // one iteration
    assert!(!ran.get(), "1 ns early");
    lp.advance_time(Duration::from_nanos(1)).unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    assert!(ran.get());
}

#[test]
fn hour_long_timers_run_instantly_on_the_virtual_clock() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let start = std::time::Instant::now();
    for h in [3u64, 1, 2] {
        let (r, l) = (rec.clone(), lp.loop_ref());
        lp.call_later(Duration::from_secs(3600 * h), move || r.push((h, l.time())))
            .unwrap();
    }
    lp.call_later(Duration::from_secs(3600 * 3), stopper(&lp))
        .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(rec.take(), [(1, 3600.0), (2, 7200.0), (3, 10800.0)]);
    assert!(start.elapsed() < Duration::from_secs(10), "no real waiting");
}

#[test]
fn time_in_the_past_runs_on_the_next_iteration_after_ready_callbacks() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    lp.advance_time(Duration::from_secs(10)).unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    lp.call_at(-5.0, move || r.push("past timer")).unwrap();
    let r = rec.clone();
    lp.call_soon(move || r.push("soon")).unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    // asyncio appends due timers after the callbacks already ready.
    assert_eq!(rec.take(), ["soon", "past timer"]);
}

#[test]
fn a_cancelled_timer_leaves_the_wheel_at_once_and_releases_its_closure() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let captured = Rc::new(());
    let mut handles = Vec::new();
    for i in 0..100_000u64 {
        let c = captured.clone();
        let t = lp
            .call_later(Duration::from_millis(i % 5000 + 1), move || drop(c))
            .unwrap();
        handles.push(t);
    }
    assert_eq!(lp.scheduled_timers(), 100_000);
    for t in &handles {
        t.cancel();
        assert!(t.cancelled());
    }
    assert_eq!(lp.scheduled_timers(), 0);
    assert_eq!(Rc::strong_count(&captured), 1, "every closure dropped");
    // Cancelling again, or after the fact, is harmless.
    handles[0].cancel();
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
}

#[test]
fn cancelling_a_timer_that_is_already_due_in_this_iteration_skips_it() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let slot = Rc::new(Cell::new(None::<aioloop::TimerHandle>));
    let s = slot.clone();
    lp.call_at(1.0, move || s.take().unwrap().cancel()).unwrap();
    let r = rec.clone();
    slot.set(Some(
        lp.call_at(1.0, move || r.push("cancelled one")).unwrap(),
    ));
    lp.call_at(1.0, stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert!(rec.take().is_empty());
}

#[test]
fn advance_time_by_hand_and_its_refusal_on_a_real_clock() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    assert_eq!(lp.time(), 0.0);
    lp.advance_time(Duration::from_millis(1500)).unwrap();
    assert_eq!(lp.time(), 1.5);
    let real = EventLoop::new().unwrap();
    let err = real.advance_time(Duration::from_secs(1)).unwrap_err();
    assert!(matches!(err, LoopError::NotVirtualClock));
}

#[test]
fn call_at_refuses_nan_and_accepts_infinity_as_never() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    assert!(matches!(
        lp.call_at(f64::NAN, || {}),
        Err(LoopError::InvalidTime)
    ));
    let t = lp.call_at(f64::INFINITY, || panic!("never")).unwrap();
    let t2 = lp.call_later(Duration::MAX, || panic!("never")).unwrap();
    assert_eq!(t.when(), t2.when());
    lp.call_later(Duration::from_secs(86_400 * 365 * 10), stopper(&lp))
        .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(lp.time(), 86_400.0 * 365.0 * 10.0);
    assert_eq!(lp.scheduled_timers(), 2);
}

#[test]
fn real_clock_timers_wait_for_real_time() {
    // Not a timing assertion: only "not before", with no upper bound.
    let lp = EventLoop::new().unwrap();
    let start = std::time::Instant::now();
    let t = lp
        .call_later(Duration::from_millis(20), stopper(&lp))
        .unwrap();
    lp.run_forever().unwrap();
    assert!(start.elapsed() >= Duration::from_millis(20));
    assert!(lp.time() >= t.when());
}
