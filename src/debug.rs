//! Debug mode: asyncio's `loop.set_debug(True)`, `PYTHONASYNCIODEBUG=1`.
//!
//! What it turns on, each reported through `log` on target `asyncio`:
//!
//! - every callback and task step is timed; one longer than
//!   `slow_callback_duration` (100 ms by default) logs `Executing <Handle
//!   callback at src/file.rs:12> took 0.123 seconds`;
//! - reactor polls are timed (`poll 12.000 ms took 12.345 ms: 3 events`);
//! - a **watchdog** thread notices a callback or step that is *still*
//!   running past `slow_callback_duration`, and names it while it blocks
//!   (asyncio only reports after the fact);
//! - tasks count their steps and the time spent in them (the task dump);
//! - aioloop awaitables remember where they were created and report
//!   `coroutine 'sleep' was never awaited` when dropped unpolled;
//! - a loop dropped unclosed logs `unclosed event loop`.
//!
//! # Cost
//!
//! Off, each hook is one `Cell<bool>` test on a path that is already hot
//! in cache, and no clock is read. On, a callback pays two reads of the
//! *coarse* monotonic clock (`CLOCK_MONOTONIC_COARSE`: about 8 ns on the
//! reference VM), when it starts and when it ends, and four relaxed atomic
//! stores for the watchdog. Only a callback that the coarse clock puts at
//! half `slow_callback_duration` or more pays a third read, of the precise
//! clock (`CLOCK_MONOTONIC`), which is the one its report uses: read on
//! every callback, it took debug mode from 1.5× to 2–3× the cost of a
//! plain callback chain (run J in `docs/BENCHMARKS.md`).
//!
//! Why one of each: the coarse clock is the precise one as of its last
//! tick (every 4 ms on the reference machine, later when the timekeeping
//! CPU is descheduled), so it is never ahead of it. Started on the coarse
//! clock and ended on the precise one, a measure is never below the true
//! duration, whatever the tick: a callback that ran `slow_callback_duration`
//! is always reported, and never as faster than it was. Ending on the
//! coarse clock too, as aioloop first did, reported a 150 ms callback as
//! `took 0.148 seconds` and could miss one just over the threshold. The
//! price is that a report may overstate a duration by the coarse clock's
//! lag (one tick, usually): a callback a few milliseconds under the
//! threshold may be reported, never one that reached it missed. The
//! half-threshold gate assumes the coarse clock lags by less than half the
//! threshold (50 ms by default) when the callback ends: a tick is 4 ms; only
//! a timekeeping stall ten times as long could hide a slow callback.
//!
//! # Invariants
//!
//! - The watchdog thread reads only atomics and `'static` data (creation
//!   sites), never the loop's `!Send` state: a blocked loop thread cannot
//!   answer, and nothing it owns is touched from elsewhere.
//! - It reports a given blocking callback at most once.

use std::cell::Cell;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// asyncio's default `slow_callback_duration`.
pub(crate) const DEFAULT_SLOW_CALLBACK: Duration = Duration::from_millis(100);

/// True when the environment asks for debug mode (`AIOLOOP_DEBUG=1` or
/// asyncio's own `PYTHONASYNCIODEBUG=1`; any non-empty value other than `0`).
pub(crate) fn env_debug() -> bool {
    ["AIOLOOP_DEBUG", "PYTHONASYNCIODEBUG"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| !v.is_empty() && v != "0"))
}

/// The coarse monotonic clock, in nanoseconds.
#[cfg(target_os = "linux")]
pub(crate) fn coarse_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC_COARSE
    // exists on every Linux since 2.6.32, and the call writes nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    debug_assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The monotonic clock, in nanoseconds (no coarse clock elsewhere).
#[cfg(not(target_os = "linux"))]
pub(crate) fn coarse_now_ns() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static BASE: OnceLock<Instant> = OnceLock::new();
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The precise monotonic clock, in nanoseconds: the clock the coarse one
/// lags behind (and `std::time::Instant`'s on Linux).
#[cfg(target_os = "linux")]
pub(crate) fn precise_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC exists on
    // every Linux, and the call writes nothing else.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The monotonic clock, in nanoseconds: the same as [`coarse_now_ns`] here.
#[cfg(not(target_os = "linux"))]
pub(crate) fn precise_now_ns() -> u64 {
    coarse_now_ns()
}

thread_local! {
    /// Debug mode of the loop running on this thread: awaitables created
    /// here read it without reaching for the loop.
    static DEBUG_HERE: Cell<bool> = const { Cell::new(false) };
}

/// Debug mode of the loop running on this thread (false outside a loop).
#[inline]
pub(crate) fn debug_here() -> bool {
    DEBUG_HERE.with(Cell::get)
}

/// Sets [`debug_here`] for the length of a `run_forever`, restoring the
/// previous value after.
pub(crate) struct DebugHere(bool);

impl DebugHere {
    pub(crate) fn enter(on: bool) -> DebugHere {
        DebugHere(DEBUG_HERE.with(|d| d.replace(on)))
    }
}

impl Drop for DebugHere {
    fn drop(&mut self) {
        DEBUG_HERE.with(|d| d.set(self.0));
    }
}

/// What the loop thread publishes for the watchdog.
struct Shared {
    /// Odd while a callback or step runs; bumped at each start and end.
    seq: AtomicU64,
    /// Coarse clock at the start of the running callback.
    start_ns: AtomicU64,
    /// Where the running callback was scheduled (a `'static` location).
    site: AtomicPtr<Location<'static>>,
    /// The running task's number (`Task-N`), 0 for a plain callback.
    task: AtomicU32,
    slow_ns: AtomicU64,
    stop: AtomicBool,
}

/// The blocking watchdog: a thread that samples what the loop runs.
pub(crate) struct Watchdog {
    shared: Arc<Shared>,
    /// The loop thread's copy of `seq` (it is the only writer).
    seq: Cell<u64>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    /// Starts the thread. `None` if the OS refuses a thread: debug mode
    /// then runs without a watchdog, which is logged once.
    pub(crate) fn start(slow: Duration) -> Option<Watchdog> {
        let shared = Arc::new(Shared {
            seq: AtomicU64::new(0),
            start_ns: AtomicU64::new(0),
            site: AtomicPtr::new(std::ptr::null_mut()),
            task: AtomicU32::new(0),
            slow_ns: AtomicU64::new(slow.as_nanos() as u64),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("aioloop-watchdog".into())
            .spawn(move || watch(&s));
        match thread {
            Ok(t) => Some(Watchdog {
                shared,
                seq: Cell::new(0),
                thread: Some(t),
            }),
            Err(e) => {
                log::warn!(target: "asyncio", "debug mode without a watchdog: cannot start its thread: {e}");
                None
            }
        }
    }

    pub(crate) fn set_slow(&self, slow: Duration) {
        self.shared
            .slow_ns
            .store(slow.as_nanos() as u64, Ordering::Relaxed);
    }

    /// A callback (task number 0) or a task step starts.
    #[inline]
    pub(crate) fn enter(&self, site: &'static Location<'static>, task: u32, start_ns: u64) {
        let sh = &self.shared;
        sh.site.store(
            site as *const Location<'static> as *mut _,
            Ordering::Relaxed,
        );
        sh.task.store(task, Ordering::Relaxed);
        sh.start_ns.store(start_ns, Ordering::Relaxed);
        let s = self.seq.get() + 1;
        self.seq.set(s);
        // Release: the watchdog that sees the odd value sees the fields.
        sh.seq.store(s, Ordering::Release);
    }

    /// It ended.
    #[inline]
    pub(crate) fn leave(&self) {
        let s = self.seq.get() + 1;
        self.seq.set(s);
        self.shared.seq.store(s, Ordering::Release);
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// The watchdog thread: samples often enough to notice a callback within
/// a quarter of the threshold of its crossing it.
fn watch(sh: &Shared) {
    let mut reported = 0u64;
    while !sh.stop.load(Ordering::Relaxed) {
        let slow = sh.slow_ns.load(Ordering::Relaxed).max(1_000_000);
        std::thread::park_timeout(Duration::from_nanos(slow / 4).min(Duration::from_millis(25)));
        let seq = sh.seq.load(Ordering::Acquire);
        if seq % 2 == 0 || seq == reported {
            continue;
        }
        let site = sh.site.load(Ordering::Relaxed);
        let task = sh.task.load(Ordering::Relaxed);
        let start = sh.start_ns.load(Ordering::Relaxed);
        // Still the same callback after reading its fields?
        if sh.seq.load(Ordering::Acquire) != seq {
            continue;
        }
        // Started on the coarse clock: never an underestimate (module docs).
        let running = precise_now_ns().saturating_sub(start);
        if running < slow {
            continue;
        }
        reported = seq;
        // SAFETY: `site` was stored from a `&'static Location` by `enter`
        // (never null once seq is odd): it is valid for the whole program.
        let site: &'static Location<'static> = unsafe { &*site };
        let what = if task == 0 {
            format!("the callback scheduled at {}:{}", site.file(), site.line())
        } else {
            format!(
                "a step of Task-{task} created at {}:{}",
                site.file(),
                site.line()
            )
        };
        log::warn!(
            target: "asyncio",
            "Blocking: {what} has been running for {:.3} seconds and still runs; \
             nothing else on the loop can run until it returns",
            running as f64 / 1e9
        );
    }
}

/// Remembers where an aioloop awaitable was created, in debug mode, to
/// report it if it is dropped without ever being polled (asyncio's
/// `RuntimeWarning: coroutine '...' was never awaited`).
///
/// One word; `None` (nothing to report) outside debug mode and once the
/// awaitable was polled.
pub(crate) struct NeverAwaited {
    site: Option<&'static Location<'static>>,
}

impl NeverAwaited {
    /// Records the caller's location when the loop running here is in
    /// debug mode.
    #[track_caller]
    #[inline]
    pub(crate) fn new() -> NeverAwaited {
        // Read here, not in a closure: `track_caller` does not reach into
        // one.
        let site = Location::caller();
        NeverAwaited {
            site: debug_here().then_some(site),
        }
    }

    /// The awaitable was polled: nothing to report.
    #[inline]
    pub(crate) fn polled(&mut self) {
        self.site = None;
    }

    /// Called from the awaitable's `Drop` with its asyncio name.
    #[inline]
    pub(crate) fn check(&self, name: &str) {
        if let Some(site) = self.site {
            log::warn!(
                target: "asyncio",
                "coroutine '{name}' was never awaited (created at {}:{}): it was \
                 dropped before its first poll, so it did nothing",
                site.file(),
                site.line()
            );
        }
    }
}

/// A loop's debug settings and, while debug mode is on, its watchdog.
#[repr(C)] // `on` first: the run phase reads it for every callback
pub(crate) struct DebugState {
    on: Cell<bool>,
    slow: Cell<Duration>,
    watchdog: std::cell::RefCell<Option<Watchdog>>,
}

impl Default for DebugState {
    fn default() -> Self {
        let state = DebugState {
            on: Cell::new(false),
            slow: Cell::new(DEFAULT_SLOW_CALLBACK),
            watchdog: Default::default(),
        };
        state.set(env_debug());
        state
    }
}

impl DebugState {
    #[inline]
    pub(crate) fn on(&self) -> bool {
        self.on.get()
    }

    pub(crate) fn set(&self, on: bool) {
        self.on.set(on);
        let mut w = self.watchdog.borrow_mut();
        match (on, w.is_some()) {
            (true, false) => *w = Watchdog::start(self.slow.get()),
            (false, true) => *w = None,
            _ => {}
        }
    }

    pub(crate) fn slow(&self) -> Duration {
        self.slow.get()
    }

    pub(crate) fn set_slow(&self, d: Duration) {
        self.slow.set(d);
        if let Some(w) = &*self.watchdog.borrow() {
            w.set_slow(d);
        }
    }

    /// Runs `f` with the watchdog, if there is one.
    #[inline]
    pub(crate) fn with_watchdog(&self, f: impl FnOnce(&Watchdog)) {
        if let Some(w) = &*self.watchdog.borrow() {
            f(w)
        }
    }

    /// Stops the watchdog (the loop is closing).
    pub(crate) fn shutdown(&self) {
        let w = self.watchdog.borrow_mut().take();
        drop(w);
    }
}

impl crate::event_loop::LoopRef {
    /// Turns debug mode on or off (asyncio's `loop.set_debug`). On by
    /// default when `AIOLOOP_DEBUG=1` or `PYTHONASYNCIODEBUG=1` is set. See
    /// the [`debug`](crate::debug) module for what it reports.
    ///
    /// ```
    /// use aioloop::EventLoop;
    ///
    /// let lp = EventLoop::new().unwrap();
    /// lp.set_debug(true);
    /// assert!(lp.get_debug());
    /// ```
    pub fn set_debug(&self, on: bool) {
        self.core().debug.set(on);
        if self.is_running() {
            DEBUG_HERE.with(|d| d.set(on));
        }
    }

    /// True in debug mode (asyncio's `loop.get_debug()`).
    pub fn get_debug(&self) -> bool {
        self.core().debug.on()
    }

    /// The duration past which a callback or task step is reported as slow
    /// in debug mode (asyncio's `slow_callback_duration`, 100 ms by default).
    ///
    /// ```
    /// use aioloop::EventLoop;
    /// use std::time::Duration;
    ///
    /// let lp = EventLoop::new().unwrap();
    /// assert_eq!(lp.slow_callback_duration(), Duration::from_millis(100));
    /// lp.set_slow_callback_duration(Duration::from_millis(20));
    /// assert_eq!(lp.slow_callback_duration(), Duration::from_millis(20));
    /// ```
    pub fn slow_callback_duration(&self) -> Duration {
        self.core().debug.slow()
    }

    /// Sets [`slow_callback_duration`](Self::slow_callback_duration).
    pub fn set_slow_callback_duration(&self, d: Duration) {
        self.core().debug.set_slow(d);
    }
}
