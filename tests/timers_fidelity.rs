//! Timers at the edges of time, as CPython's asyncio treats them: deadlines
//! before the loop began, and deadlines at `inf`.
//!
//! The CPython behaviour each test pins was checked by running the same
//! scenario on CPython 3.11.7 and 3.13.0 (the script is quoted in the test).

mod util;

use std::time::Duration;

use aioloop::{EventLoop, LoopRef};
use util::{stopper, Recorder};

/// CPython 3.11.7 and 3.13.0 both print `-3.0` and
/// `['soon', 'later-5', 'later0']` for:
///
/// ```python
/// lp = asyncio.new_event_loop(); order = []; t = lp.time()
/// lp.call_soon(order.append, 'soon')
/// lp.call_at(t + 0, order.append, 'later0')
/// lp.call_at(t - 5, order.append, 'later-5')
/// print(lp.call_at(t - 3, lambda: None).when() - t)
/// lp.call_soon(lp.stop); lp.run_forever(); print(order)
/// ```
///
/// aioloop's `time()` starts at 0.0, so `t - 5` is before the loop began:
/// such a deadline used to be clamped to 0, which tied it with `later0`
/// and fired the two in scheduling order.
#[test]
fn past_deadlines_keep_their_value_and_fire_in_deadline_order_after_ready_callbacks() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let t = lp.time();
    let rec = Recorder::new();
    let r = rec.clone();
    lp.call_soon(move || r.push("soon")).unwrap();
    let r = rec.clone();
    let later0 = lp.call_at(t, move || r.push("later0")).unwrap();
    let r = rec.clone();
    let later_5 = lp.call_at(t - 5.0, move || r.push("later-5")).unwrap();
    let minus_3 = lp.call_at(t - 3.0, || {}).unwrap();
    assert_eq!(minus_3.when(), t - 3.0, "when() keeps a past deadline");
    assert_eq!(later_5.when(), t - 5.0);
    assert_eq!(later0.when(), t);
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(rec.take(), ["soon", "later-5", "later0"]);
    assert_eq!(lp.time(), t, "past timers do not move the clock");
}

/// Many past deadlines, scheduled in a scrambled order with ties: they fire
/// in deadline order, ties in scheduling order (aioloop's promise), each
/// `when()` exactly the time asked for.
#[test]
fn many_past_deadlines_fire_sorted_with_ties_in_scheduling_order() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    lp.advance_time(Duration::from_secs(2)).unwrap();
    let rec = Recorder::new();
    let mut expected = Vec::new();
    for seq in 0..200u32 {
        // Multiples of 1/64 s from -8 s to +2 s (now): exact in f64, and
        // 20 of each value, so ties are common.
        let when = -8.0 + f64::from((seq * 37) % 640) / 64.0;
        let r = rec.clone();
        let h = lp.call_at(when, move || r.push(seq)).unwrap();
        assert_eq!(h.when(), when);
        expected.push((when, seq));
    }
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    expected.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let want: Vec<u32> = expected.iter().map(|e| e.1).collect();
    assert_eq!(rec.take(), want);
}

/// The kernel's view of what thread `tid` is doing: the system call number
/// and the timeout argument of `epoll_wait` / `epoll_pwait`, if it is
/// blocked in one of those. `/proc/<pid>/task/<tid>/syscall` prints the
/// number and the six arguments; the timeout is the fourth (an `int`).
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn epoll_timeout_of(syscall_file: &str) -> Option<i32> {
    #[cfg(target_arch = "x86_64")]
    const EPOLL_WAITS: [&str; 2] = ["232", "281"]; // epoll_wait, epoll_pwait
    #[cfg(target_arch = "aarch64")]
    const EPOLL_WAITS: [&str; 1] = ["22"]; // epoll_pwait
    let line = std::fs::read_to_string(syscall_file).ok()?;
    let mut fields = line.split_whitespace();
    let nr = fields.next()?;
    if !EPOLL_WAITS.contains(&nr) {
        return None;
    }
    let timeout = fields.nth(3)?.trim_start_matches("0x");
    Some(u32::from_str_radix(timeout, 16).ok()? as i32)
}

/// Stops `lp` from another thread once this thread is blocked in an epoll
/// wait with no timeout at all (-1): the state of a loop that has nothing to
/// do. The thread returns true if it saw that state; if it has not after
/// 20 seconds (a loop that spins, or that set a wake-up), it stops the loop
/// anyway and returns false, so a failing test fails rather than hangs.
/// The 20 seconds are a safety net, not a measurement: a passing run sees the
/// state within a few polls.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn stop_once_blocked_forever(lp: &LoopRef) -> std::thread::JoinHandle<bool> {
    let me = std::fs::read_link("/proc/thread-self").unwrap();
    let file = format!("{}/syscall", me.display());
    let file = if file.starts_with('/') {
        file
    } else {
        format!("/proc/{file}")
    };
    let handle = lp.loop_handle();
    std::thread::spawn(move || {
        let give_up = std::time::Instant::now() + Duration::from_secs(20);
        let mut seen = false;
        while !seen && std::time::Instant::now() < give_up {
            seen = epoll_timeout_of(&file) == Some(-1);
            if !seen {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        handle.stop().unwrap();
        seen
    })
}

/// asyncio never fires a timer at `inf` (no clock reading reaches it), and a
/// loop with nothing else to do waits. On the virtual clock the loop used to
/// "sleep" until the inf timer by jumping the clock to the end of time,
/// fire it there, and leave every later timer due at that same instant.
#[test]
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn an_inf_timer_neither_moves_the_virtual_clock_nor_fires() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let inf = lp
        .call_at(f64::INFINITY, move || r.push(("inf", 0.0)))
        .unwrap();
    assert_eq!(
        inf.when(),
        f64::INFINITY,
        "CPython: TimerHandle.when() is inf"
    );

    let waiter = stop_once_blocked_forever(&lp);
    lp.run_forever().unwrap();
    assert!(
        waiter.join().unwrap(),
        "with only an inf timer, the loop waits for I/O with no timeout"
    );
    assert_eq!(lp.time(), 0.0, "the clock did not jump");

    let (r, l) = (rec.clone(), lp.loop_ref());
    lp.call_later(Duration::from_secs(1), move || r.push(("1s", l.time())))
        .unwrap();
    lp.call_later(Duration::from_secs(1), stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(
        rec.take(),
        [("1s", 1.0)],
        "fired at its own time, inf never"
    );
    assert_eq!(lp.scheduled_timers(), 1, "the inf timer is still pending");
    assert!(!inf.cancelled());
}

/// Advancing the virtual clock by hand as far as it goes still leaves an
/// inf timer pending: the clock stops short of `inf`.
#[test]
fn advancing_the_virtual_clock_to_the_end_does_not_fire_an_inf_timer() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    lp.call_at(f64::INFINITY, move || r.push("inf")).unwrap();
    let r = rec.clone();
    lp.call_later(Duration::MAX, move || r.push("Duration::MAX"))
        .unwrap();
    let r = rec.clone();
    lp.call_at(1e9, move || r.push("1e9 s")).unwrap();
    lp.advance_time(Duration::MAX).unwrap();
    assert!(lp.time().is_finite());
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(rec.take(), ["1e9 s"]);
    assert_eq!(lp.scheduled_timers(), 2);
}

/// On the real clock an inf timer must not fire and must not make the loop
/// spin or set a wake-up: the loop blocks in epoll with no timeout (it used
/// to ask for the largest timeout epoll takes, about 24.8 days).
#[test]
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn an_inf_timer_on_the_real_clock_sets_no_wake_up() {
    let lp = EventLoop::new().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    lp.call_at(f64::INFINITY, move || r.push("inf")).unwrap();
    let waiter = stop_once_blocked_forever(&lp);
    lp.run_forever().unwrap();
    assert!(waiter.join().unwrap(), "blocked in epoll_wait(-1)");
    assert!(rec.take().is_empty());
    assert_eq!(lp.scheduled_timers(), 1);
}
