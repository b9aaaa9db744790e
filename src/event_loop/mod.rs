//! The event loop: what it owns, and the asyncio API on top of it.
//!
//! asyncio's `BaseEventLoop` (`Lib/asyncio/base_events.py`) plus the fd part of
//! `BaseSelectorEventLoop`; libuv's `uv_loop_t`. The loop owns four things,
//! each in its own module:
//!
//! | part | module | asyncio |
//! |---|---|---|
//! | ready queue | `ready.rs` | `_ready` |
//! | timer wheel | [`crate::time::wheel`] | `_scheduled` (a heap) |
//! | reactor + fd table | [`crate::reactor`], `io.rs` | `_selector` |
//! | exception handler | `exceptions.rs` | `_exception_handler` |
//!
//! and runs them in `run_once.rs`, one iteration at a time.
//!
//! # Two types: the owner and the references
//!
//! [`EventLoop`] owns the loop: it is neither `Clone` nor `Send`, and
//! dropping it closes the loop. This is what breaks the reference cycles a
//! loop is full of (a pending callback that captured a reference to its
//! loop), which Python's garbage collector breaks for asyncio. [`LoopRef`] is
//! a cheap, clonable reference to the same loop — what a callback captures,
//! and what [`get_running_loop`] returns. `EventLoop` dereferences to
//! `LoopRef`, so the whole API is written once, on `LoopRef`.
//!
//! Neither type is `Send`: the loop is single-threaded, and asyncio's
//! run-time "wrong thread" check becomes a compile error:
//!
//! ```compile_fail
//! let lp = aioloop::EventLoop::new().unwrap();
//! let r = lp.loop_ref();
//! std::thread::spawn(move || {
//!     r.call_soon(|| {}).unwrap(); // error: `Rc<...>` cannot be sent between threads
//! });
//! ```
//!
//! # Invariants
//!
//! - State moves `Idle → Running → Idle` (each `run_forever`) and, once,
//!   `Idle → Closed`. A closed loop refuses all new work with
//!   `Event loop is closed`; a running loop refuses `close` and a second
//!   `run_forever`.
//! - At most one loop runs on a thread at a time; it is the thread's
//!   *running loop* for exactly the duration of `run_forever`.
//! - No user code (callback, destructor of a callback, exception handler)
//!   runs while the loop holds a borrow of its own state, so user code may
//!   call any loop method.

pub(crate) mod exceptions;
pub(crate) mod handle;
pub(crate) mod io;
pub(crate) mod ready;
pub(crate) mod run_once;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::os::fd::RawFd;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::rc::Rc;
use std::time::Duration;

use std::sync::Arc;

use crate::combinators::wait_for::IntoTask;
use crate::errors::{Error, LoopError, PanicError, ValueError};
use crate::reactor::Reactor;
use crate::remote::{Injected, LoopHandle, Remote};
use crate::task_slab::{LocalScheduler, TaskId, TaskSlab, CURRENT_SCHEDULER};
use crate::time::clock::{duration_to_ns, ns_to_secs, secs_to_ns_ceil, Clock};
use crate::time::wheel::{TimerKey, TimerWheel};

pub use exceptions::{ExceptionContext, ExceptionHandler};
pub use handle::{Handle, TimerHandle};
pub(crate) use handle::{Timer, TimerWakes};
use io::{IoRegistry, Side};
use ready::ReadyQueue;

/// Where the loop is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LoopState {
    /// Created, or between two `run_forever` calls: accepts work, can close.
    Idle,
    /// Inside `run_forever`.
    Running,
    /// Closed: accepts nothing; final.
    Closed,
}

/// Everything the loop owns. Shared through `Rc` by [`EventLoop`],
/// [`LoopRef`]s, and (weakly) [`TimerHandle`]s.
/// The loop's state. `repr(C)` with the fields every iteration touches
/// first, on the same cache lines: left to the compiler, their placement
/// changed whenever an unrelated field changed size, and with it the cost
/// of a callback by up to a quarter on the reference VM.
#[repr(C)]
pub(crate) struct LoopCore {
    pub(crate) ready: ReadyQueue,
    state: Cell<LoopState>,
    /// asyncio's `_stopping`: set by `stop()`, read after each iteration.
    pub(crate) stopping: Cell<bool>,
    /// Debug mode and its watchdog.
    pub(crate) debug: crate::debug::DebugState,
    /// Tasks to run the stuck-task check on at the next safe point.
    pub(crate) suspects: crate::stuck::Suspects,
    /// The thread-safe side: injected wakes and the reactor's waker.
    pub(crate) remote: Arc<Remote>,
    pub(crate) clock: Clock,
    pub(crate) reactor: RefCell<Reactor>,
    pub(crate) io: RefCell<IoRegistry>,
    pub(crate) timers: RefCell<TimerWheel<Timer>>,
    /// The wakes of fired timers that hold a task by id, and the one
    /// handle that delivers them from the ready queue (see `handle.rs`).
    pub(crate) timer_wakes: Rc<handle::HandleInner<TimerWakes>>,
    /// Every task not yet done, by id; each entry is the task's step handle.
    pub(crate) tasks: RefCell<TaskSlab<Handle>>,
    exception_handler: RefCell<Option<ExceptionHandler>>,
    /// asyncio's `_default_executor`, created on first `run_in_executor`.
    pub(crate) executor: crate::executor::DefaultExecutor,
}

thread_local! {
    /// The loop inside `run_forever` on this thread, if any.
    static RUNNING_LOOP: RefCell<Option<Rc<LoopCore>>> = const { RefCell::new(None) };
}

/// Returns the loop running on this thread (asyncio's `get_running_loop`).
///
/// Fails with `no running event loop` outside `run_forever`.
///
/// ```
/// use aioloop::{get_running_loop, EventLoop};
///
/// assert_eq!(get_running_loop().unwrap_err().to_string(), "no running event loop");
/// let lp = EventLoop::with_virtual_clock().unwrap();
/// lp.call_soon(|| get_running_loop().unwrap().stop()).unwrap();
/// lp.run_forever().unwrap();
/// ```
pub fn get_running_loop() -> Result<LoopRef, LoopError> {
    RUNNING_LOOP.with(|r| {
        r.borrow()
            .as_ref()
            .map(|core| LoopRef { core: core.clone() })
            .ok_or(LoopError::NoRunningLoop)
    })
}

/// The owner of an event loop. Dropping it closes the loop.
///
/// All the loop's methods are on [`LoopRef`], which this dereferences to.
///
/// ```
/// use aioloop::EventLoop;
/// use std::{cell::RefCell, rc::Rc, time::Duration};
///
/// let lp = EventLoop::with_virtual_clock().unwrap();
/// let log = Rc::new(RefCell::new(Vec::new()));
/// let l = log.clone();
/// lp.call_later(Duration::from_secs(2), move || l.borrow_mut().push("later")).unwrap();
/// let l = log.clone();
/// lp.call_soon(move || l.borrow_mut().push("soon")).unwrap();
/// let r = lp.loop_ref();
/// lp.call_later(Duration::from_secs(3), move || r.stop()).unwrap();
/// lp.run_forever().unwrap();
/// assert_eq!(*log.borrow(), ["soon", "later"]);
/// assert_eq!(lp.time(), 3.0, "the virtual clock jumped straight to each deadline");
/// lp.close().unwrap();
/// ```
pub struct EventLoop {
    lp: LoopRef,
}

/// A reference to an event loop: clonable, not `Send`.
///
/// Obtained from [`EventLoop::loop_ref`] or [`get_running_loop`]. Holding one
/// does not keep the loop open: when the [`EventLoop`] is dropped the loop
/// closes, and a `LoopRef` then gets `Event loop is closed`.
#[derive(Clone)]
pub struct LoopRef {
    core: Rc<LoopCore>,
}

impl EventLoop {
    /// A new loop on the OS monotonic clock.
    pub fn new() -> Result<EventLoop, LoopError> {
        EventLoop::with_clock(Clock::monotonic())
    }

    /// A new loop on a virtual clock, for tests.
    ///
    /// The clock starts at 0 and moves only when the loop would otherwise
    /// wait: when nothing is ready and no fd is ready right now, the loop
    /// jumps straight to the next timer's deadline instead of sleeping, so
    /// hour-long timers run in microseconds. [`LoopRef::advance_time`]
    /// moves it by hand. With no timer pending, the loop waits for I/O as
    /// usual.
    pub fn with_virtual_clock() -> Result<EventLoop, LoopError> {
        EventLoop::with_clock(Clock::virtual_clock())
    }

    fn with_clock(clock: Clock) -> Result<EventLoop, LoopError> {
        let reactor = Reactor::new()?;
        let remote = Arc::new(Remote::new(reactor.waker()));
        let core = move |weak: &std::rc::Weak<LoopCore>| LoopCore {
            ready: ReadyQueue::new(),
            timers: RefCell::new(TimerWheel::starting_at(clock.now_ns(), 0)),
            clock,
            reactor: RefCell::new(reactor),
            io: RefCell::new(IoRegistry::new()),
            tasks: RefCell::new(TaskSlab::new()),
            remote,
            state: Cell::new(LoopState::Idle),
            stopping: Cell::new(false),
            exception_handler: RefCell::new(None),
            executor: Default::default(),
            suspects: Default::default(),
            debug: Default::default(),
            timer_wakes: Rc::new(handle::HandleInner::new(
                Location::caller(),
                TimerWakes::new(weak.clone()),
            )),
        };
        Ok(EventLoop {
            lp: LoopRef {
                core: Rc::new_cyclic(core),
            },
        })
    }

    /// A clonable reference to this loop, for callbacks to capture.
    pub fn loop_ref(&self) -> LoopRef {
        self.lp.clone()
    }
}

impl std::ops::Deref for EventLoop {
    type Target = LoopRef;
    fn deref(&self) -> &LoopRef {
        &self.lp
    }
}

impl Drop for EventLoop {
    fn drop(&mut self) {
        // Closing drops every pending callback, and with them the LoopRefs
        // they captured: the cycles that would otherwise leak the loop. A
        // loop dropped from inside its own run cannot close now; it closes
        // when the last reference goes.
        if self.lp.core.state.get() == LoopState::Idle {
            if self.lp.core.debug.on() {
                // asyncio's `ResourceWarning: unclosed event loop`.
                log::warn!(target: "asyncio", "unclosed event loop {:?}", self.lp);
            }
            let _ = self.lp.close();
        }
    }
}

impl fmt::Debug for EventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.lp, f)
    }
}

impl fmt::Debug for LoopRef {
    /// asyncio's repr: `<EventLoop running=False closed=False debug=False>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<EventLoop running={} closed={} debug={}>",
            py_bool(self.is_running()),
            py_bool(self.is_closed()),
            py_bool(self.get_debug())
        )
    }
}

fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

impl LocalScheduler for LoopCore {
    fn remote(&self) -> &Arc<Remote> {
        &self.remote
    }
    fn schedule(&self, id: TaskId) {
        self.schedule_task(id);
    }
}

impl LoopCore {
    /// Puts a task's next step on the ready queue, unless it is already
    /// there, done, or unknown (a stale id). asyncio's `call_soon(__step)`.
    pub(crate) fn schedule_task(&self, id: TaskId) {
        self.schedule_task_with(id, |_| {});
    }

    /// `schedule_task`, with `found` run on the task's header first (while
    /// it is at hand: waking a task held by id also uncounts that wait).
    #[inline]
    pub(crate) fn schedule_task_with(
        &self,
        id: TaskId,
        found: impl FnOnce(&crate::tasks::TaskHeader),
    ) {
        let tasks = self.tasks.borrow();
        let Some(handle) = tasks.get(id) else { return };
        if let Some(t) = handle.task_header() {
            found(t);
            if t.scheduled.get() || t.is_done() {
                return;
            }
            t.scheduled.set(true);
        }
        // Cloned only once it is sure to be queued (a task woken twice
        // before it runs is the common case of a redundant wake).
        let handle = handle.clone();
        drop(tasks);
        self.ready.push(handle);
    }

    /// Moves injected work to the ready queue, in arrival order. Called
    /// from phase 3b, and by `call_soon` when something is pending, so that
    /// both doors share one FIFO as in asyncio. Consecutive
    /// `call_soon_threadsafe` calls join it as one batch, run from where
    /// they were posted (see `remote/batch.rs`).
    pub(crate) fn drain_remote(&self) {
        self.remote.drain_at_most(usize::MAX, |item| match item {
            Injected::Wake(id) => self.schedule_task(id),
            Injected::Calls(batch) => self.ready.push(batch.into_handle()),
            Injected::Stop => self.stopping.set(true),
        });
    }

    #[inline]
    fn check_open(&self) -> Result<(), LoopError> {
        if self.state.get() == LoopState::Closed {
            Err(LoopError::Closed)
        } else {
            Ok(())
        }
    }

    /// Removes a cancelled timer from the wheel (asyncio's
    /// `_timer_handle_cancelled`, but immediate).
    pub(crate) fn timer_cancelled(&self, key: TimerKey) {
        // The wheel is never borrowed while user code runs, so this borrow
        // succeeds; should that ever change, the entry stays in the wheel
        // cancelled, and is skipped when it comes due.
        let removed = match self.timers.try_borrow_mut() {
            Ok(mut wheel) => wheel.remove(key),
            Err(_) => None,
        };
        drop(removed);
    }

    /// Puts a timer in the wheel, due `delay` from now, and returns its key.
    pub(crate) fn schedule_timer_later(&self, delay: Duration, timer: Timer) -> TimerKey {
        let when = self.clock.now_ns().saturating_add(duration_to_ns(delay));
        self.timers.borrow_mut().insert(when, timer)
    }
}

impl LoopRef {
    pub(crate) fn from_core(core: Rc<LoopCore>) -> LoopRef {
        LoopRef { core }
    }

    pub(crate) fn core(&self) -> &Rc<LoopCore> {
        &self.core
    }

    /// The thread-safe door into this loop (`Clone + Send + Sync`):
    /// `call_soon_threadsafe`, `stop`, `is_closed`.
    pub fn loop_handle(&self) -> LoopHandle {
        LoopHandle::new(self.core.remote.clone())
    }

    /// Runs the loop until `aw` is done, and returns its outcome (asyncio's
    /// `run_until_complete`): a [`Task`](crate::Task) is awaited as it is
    /// (its result, cloned, stays there), a plain future runs as a new
    /// task; the loop stops once it is done, whether it finished, failed or
    /// was cancelled.
    ///
    /// One `Result`: the task's outcome, or the loop's own refusal (`Event
    /// loop is closed`, `This event loop is already running`, and `Event
    /// loop stopped before Future completed.` when someone called `stop()`
    /// first), [`ErrorKind::Loop`](crate::ErrorKind::Loop).
    ///
    /// ```
    /// use aioloop::{sleep, EventLoop};
    /// use std::time::Duration;
    ///
    /// let lp = EventLoop::with_virtual_clock().unwrap();
    /// let v = lp.run_until_complete(async {
    ///     sleep(Duration::from_secs(5)).await?;
    ///     Ok(7)
    /// });
    /// assert_eq!(v.unwrap(), 7);
    /// assert_eq!(lp.time(), 5.0);
    /// ```
    #[track_caller]
    pub fn run_until_complete<I: IntoTask>(&self, aw: I) -> Result<I::Ok, Error> {
        self.run_until_complete_with::<true, I>(aw)
    }

    /// `run_until_complete` with debug mode's hooks compiled out (see
    /// [`run_forever_without_debug_hooks`](Self::run_forever_without_debug_hooks)).
    #[doc(hidden)]
    #[track_caller]
    pub fn run_until_complete_without_debug_hooks<I: IntoTask>(
        &self,
        aw: I,
    ) -> Result<I::Ok, Error> {
        self.run_until_complete_with::<false, I>(aw)
    }

    #[track_caller]
    fn run_until_complete_with<const HOOKS: bool, I: IntoTask>(
        &self,
        aw: I,
    ) -> Result<I::Ok, Error> {
        if self.is_running() {
            return Err(LoopError::AlreadyRunning.into());
        }
        self.core.check_open()?;
        if aw.belongs_elsewhere(self) {
            // asyncio's `ensure_future(future, loop=self)`. CPython 3.11.7,
            // 3.12.1, 3.13.0.
            return Err(ValueError::new(
                "The future belongs to a different loop than the one specified as the loop argument",
            )
            .into());
        }
        let task = aw.into_task_on(self)?;
        let lp = self.clone();
        let stopper = task.add_done_callback(move |_| lp.stop());
        let ran = self.run_forever_with::<HOOKS>();
        if !task.done() {
            // Stopped early (or the run failed): the task is left to a later
            // run, as asyncio does, without the callback that would stop
            // that run (asyncio's `remove_done_callback` in `finally`).
            task.remove_done_callback(stopper);
            ran?;
            return Err(LoopError::StoppedBeforeComplete.into());
        }
        ran?;
        I::outcome_of(&task)
    }

    /// Schedules `f` to run on the next iteration (asyncio's `call_soon`).
    ///
    /// Callbacks run in the order they were scheduled, and never inline: one
    /// scheduled by a running callback runs on the next iteration.
    ///
    /// ```
    /// use aioloop::EventLoop;
    /// use std::{cell::RefCell, rc::Rc};
    ///
    /// let lp = EventLoop::with_virtual_clock().unwrap();
    /// let order = Rc::new(RefCell::new(Vec::new()));
    /// for i in 0..3 {
    ///     let o = order.clone();
    ///     lp.call_soon(move || o.borrow_mut().push(i)).unwrap();
    /// }
    /// lp.call_soon({ let lp = lp.loop_ref(); move || lp.stop() }).unwrap();
    /// lp.run_forever().unwrap();
    /// assert_eq!(*order.borrow(), [0, 1, 2]);
    /// ```
    #[track_caller]
    #[inline]
    pub fn call_soon<F: FnOnce() + 'static>(&self, f: F) -> Result<Handle, LoopError> {
        self.core.check_open()?;
        // One FIFO for both doors: work posted from other threads before
        // this call goes first (a load, not a read-modify-write).
        if self.core.remote.has_injected() {
            self.core.drain_remote();
        }
        let handle = Handle::once(f, Location::caller());
        self.core.ready.push(handle.clone());
        Ok(handle)
    }

    /// Schedules `f` to run `delay` from now (asyncio's `call_later`).
    ///
    /// Never early. Timers due at the same instant run in the order they
    /// were scheduled (asyncio leaves that unspecified; aioloop promises it).
    #[track_caller]
    pub fn call_later<F: FnOnce() + 'static>(
        &self,
        delay: Duration,
        f: F,
    ) -> Result<TimerHandle, LoopError> {
        self.core.check_open()?;
        let when = self
            .core
            .clock
            .now_ns()
            .saturating_add(duration_to_ns(delay));
        Ok(self.schedule_timer(when, f, Location::caller()))
    }

    /// Schedules `f` to run at loop time `when`, in seconds on the clock of
    /// [`time`](LoopRef::time) (asyncio's `call_at`). A time in the past runs
    /// on the next iteration, after the callbacks already ready, and past
    /// timers run in deadline order, as in asyncio: a time before the loop's
    /// creation (negative) is kept as it is, down to 292 years back. `when`
    /// is rounded up to the nanosecond; `inf` (or a time 292 years ahead or
    /// more) is never due.
    ///
    /// ```
    /// use aioloop::{EventLoop, LoopError};
    ///
    /// let lp = EventLoop::with_virtual_clock().unwrap();
    /// let t = lp.call_at(lp.time() + 1.5, || {}).unwrap();
    /// assert_eq!(t.when(), 1.5);
    /// assert!(matches!(lp.call_at(f64::NAN, || {}), Err(LoopError::InvalidTime)));
    /// ```
    #[track_caller]
    pub fn call_at<F: FnOnce() + 'static>(
        &self,
        when: f64,
        f: F,
    ) -> Result<TimerHandle, LoopError> {
        self.core.check_open()?;
        if when.is_nan() {
            return Err(LoopError::InvalidTime);
        }
        Ok(self.schedule_timer(secs_to_ns_ceil(when), f, Location::caller()))
    }

    fn schedule_timer<F: FnOnce() + 'static>(
        &self,
        when_ns: u64,
        f: F,
        site: &'static Location<'static>,
    ) -> TimerHandle {
        let handle = Handle::once(f, site);
        let key = self
            .core
            .timers
            .borrow_mut()
            .insert(when_ns, Timer::Handle(handle.clone()));
        TimerHandle::new(handle, key, when_ns, Rc::downgrade(&self.core))
    }

    /// The loop's clock, in seconds (asyncio's `loop.time()`): monotonic,
    /// counted from the loop's creation; or the virtual clock.
    pub fn time(&self) -> f64 {
        ns_to_secs(self.core.clock.now_ns())
    }

    /// Moves a virtual clock forward by `d`; timers that become due run on
    /// the next iteration (asyncio's `TestLoop.advance_time`).
    ///
    /// Fails with [`LoopError::NotVirtualClock`] on a real clock.
    pub fn advance_time(&self, d: Duration) -> Result<(), LoopError> {
        if !self.core.clock.is_virtual() {
            return Err(LoopError::NotVirtualClock);
        }
        self.core.clock.advance_by(d);
        Ok(())
    }

    /// Number of timers waiting in the wheel (cancelled ones leave at once).
    pub fn scheduled_timers(&self) -> usize {
        self.core.timers.borrow().len()
    }

    /// Number of callbacks waiting in the ready queue.
    pub fn ready_callbacks(&self) -> usize {
        // A drained batch of `call_soon_threadsafe` calls is one entry of
        // the ready queue: count its calls instead.
        let (calls, batches) = self.core.remote.drained_calls();
        (self.core.ready.len() + calls).saturating_sub(batches)
    }

    /// Runs the loop until [`stop`](LoopRef::stop) is called (asyncio's
    /// `run_forever`).
    ///
    /// Errors: `Event loop is closed`, `This event loop is already running`,
    /// `Cannot run the event loop while another loop is running`, or the OS
    /// error of a failed poll.
    pub fn run_forever(&self) -> Result<(), LoopError> {
        self.run_forever_with::<true>()
    }

    /// `run_forever` with debug mode's hooks compiled out: the benchmarks'
    /// baseline for what those hooks cost when debug mode is off. Not for
    /// applications (debug mode does nothing in it).
    #[doc(hidden)]
    pub fn run_forever_without_debug_hooks(&self) -> Result<(), LoopError> {
        self.run_forever_with::<false>()
    }

    fn run_forever_with<const HOOKS: bool>(&self) -> Result<(), LoopError> {
        match self.core.state.get() {
            LoopState::Closed => return Err(LoopError::Closed),
            LoopState::Running => return Err(LoopError::AlreadyRunning),
            LoopState::Idle => {}
        }
        let _running = RunningGuard::enter(&self.core)?;
        let _debug = crate::debug::DebugHere::enter(self.core.debug.on());
        loop {
            self.core.run_once::<HOOKS>()?;
            if self.core.stopping.get() {
                return Ok(());
            }
        }
    }

    /// Asks the loop to stop after the current iteration (asyncio's `stop`).
    ///
    /// The iteration in progress runs to its end; callbacks scheduled
    /// meanwhile stay queued for the next `run_forever`. Called before
    /// `run_forever`, it makes that call run a single iteration.
    pub fn stop(&self) {
        self.core.stopping.set(true);
    }

    /// True inside `run_forever`.
    pub fn is_running(&self) -> bool {
        self.core.state.get() == LoopState::Running
    }

    /// True once [`close`](LoopRef::close) was called.
    pub fn is_closed(&self) -> bool {
        self.core.state.get() == LoopState::Closed
    }

    /// Closes the loop: pending callbacks and timers are dropped without
    /// running, readers and writers are removed. Closing twice is harmless.
    /// A destructor that panics as they drop is reported through the
    /// exception handler (`Exception ignored in the destructor of …`), as a
    /// panicking callback is, and closing goes on.
    ///
    /// Fails with `Cannot close a running event loop` inside `run_forever`.
    pub fn close(&self) -> Result<(), LoopError> {
        match self.core.state.get() {
            LoopState::Running => return Err(LoopError::CloseRunning),
            LoopState::Closed => return Ok(()),
            LoopState::Idle => {}
        }
        self.core.state.set(LoopState::Closed);
        self.core.debug.shutdown();
        // asyncio's close(): executor.shutdown(wait=False).
        self.core.executor.on_loop_close();
        // Posts from now on are refused; what was queued is reported below.
        let injected = self
            .core
            .remote
            .close(&mut |context| self.call_exception_handler(&context));
        let tasks = self.core.tasks.borrow_mut().take_all();
        let ready = self.core.ready.take_all();
        let timers = self.core.timers.borrow_mut().drain();
        // Their handles, in the ready queue, go with it.
        self.core.timer_wakes.callback().clear();
        let timers = timers.into_iter().filter_map(|t| match t {
            Timer::Handle(h) => Some(h),
            // The task is in `tasks`, and goes with them.
            Timer::Task(_) => None,
        });
        let io_handles = {
            let mut reactor = self.core.reactor.borrow_mut();
            self.core.io.borrow_mut().take_all(&mut reactor)
        };
        // Dropped here, with no borrow held: their destructors are user
        // code, and each that panics is reported and the rest go on (see
        // `exceptions.rs`).
        self.core.report_pending_at_close(&tasks);
        for t in &tasks {
            self.abandon_at_close(t);
        }
        for t in tasks {
            self.drop_at_close(t);
        }
        // Callbacks among them report themselves as they drop.
        drop(injected);
        for h in ready.into_iter().chain(timers) {
            self.drop_at_close(h);
        }
        for h in io_handles {
            // `cancel` drops the closure; the handle itself stays to name it.
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| h.cancel())) {
                let what = format!("the reader or writer {}", h.describe());
                self.ignored_at_close(&what, payload, Some(h));
            }
        }
        Ok(())
    }

    /// Drops a pending task's future and done callbacks as the loop
    /// closes. A destructor that panics is reported; the task is then
    /// abandoned again, which releases what the first attempt did not reach
    /// (its future is never dropped twice: `drop_future` clears its flag
    /// first).
    fn abandon_at_close(&self, task: &Handle) {
        for _ in 0..2 {
            match catch_unwind(AssertUnwindSafe(|| task.abandon())) {
                Ok(()) => return,
                Err(payload) => {
                    let what = format!("the pending task {}", crate::tasks::task_repr(task));
                    self.ignored_at_close(&what, payload, None);
                }
            }
        }
    }

    /// Drops one of the loop's references to a callback (a pending one, a
    /// due timer, a task's step) as the loop closes; if it was the last,
    /// the closure's destructor runs, and a panic there is reported.
    fn drop_at_close(&self, handle: Handle) {
        // Read first: the handle is gone when its destructor panics (its
        // allocation is leaked then, as an unwind out of `Rc::drop` does).
        let (name, site) = (handle.callback_name(), handle.source_location());
        if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(handle))) {
            let what = format!(
                "the pending callback {name} at {}:{}",
                site.file(),
                site.line()
            );
            self.ignored_at_close(&what, payload, Some(crate::remote::call_handle(name, site)));
        }
    }

    #[cold]
    fn ignored_at_close(
        &self,
        what: &str,
        payload: Box<dyn std::any::Any + Send>,
        handle: Option<Handle>,
    ) {
        let mut context = ExceptionContext::ignored_at_close(what, PanicError::new(payload));
        context.handle = handle;
        self.call_exception_handler(&context);
    }

    /// Calls `f` whenever `fd` is readable (asyncio's `add_reader`), until
    /// [`remove_reader`](LoopRef::remove_reader). Level-triggered, as
    /// asyncio's selectors are: while unread data remains, `f` runs on every
    /// iteration. A second `add_reader` on the same fd replaces the callback.
    ///
    /// The caller keeps `fd` open while it is registered. Errors:
    /// `Invalid file descriptor: -1` for a negative fd, the OS error for a
    /// closed or unpollable one, `Event loop is closed`.
    ///
    /// ```
    /// use aioloop::EventLoop;
    /// use std::io::{Read, Write};
    /// use std::os::fd::AsRawFd;
    /// use std::os::unix::net::UnixStream;
    /// use std::{cell::RefCell, rc::Rc};
    ///
    /// let lp = EventLoop::new().unwrap();
    /// let (a, mut b) = UnixStream::pair().unwrap();
    /// a.set_nonblocking(true).unwrap();
    /// b.write_all(b"hi").unwrap();
    /// let got = Rc::new(RefCell::new(Vec::new()));
    /// let (g, r, fd) = (got.clone(), lp.loop_ref(), a.as_raw_fd());
    /// lp.add_reader(fd, move || {
    ///     let mut buf = [0u8; 16];
    ///     let n = (&a).read(&mut buf).unwrap();
    ///     g.borrow_mut().extend_from_slice(&buf[..n]);
    ///     r.remove_reader(fd);
    ///     r.stop();
    /// }).unwrap();
    /// lp.run_forever().unwrap();
    /// assert_eq!(*got.borrow(), b"hi");
    /// ```
    #[track_caller]
    pub fn add_reader<F: Fn() + 'static>(&self, fd: RawFd, f: F) -> Result<(), LoopError> {
        self.add_io(fd, Side::Reader, Handle::repeat(f, Location::caller()))
    }

    /// Calls `f` whenever `fd` is writable (asyncio's `add_writer`);
    /// level-triggered like [`add_reader`](LoopRef::add_reader).
    #[track_caller]
    pub fn add_writer<F: Fn() + 'static>(&self, fd: RawFd, f: F) -> Result<(), LoopError> {
        self.add_io(fd, Side::Writer, Handle::repeat(f, Location::caller()))
    }

    fn add_io(&self, fd: RawFd, side: Side, handle: Handle) -> Result<(), LoopError> {
        self.core.check_open()?;
        if fd < 0 {
            return Err(LoopError::InvalidFd(fd));
        }
        let replaced = {
            let mut reactor = self.core.reactor.borrow_mut();
            self.core
                .io
                .borrow_mut()
                .add(&mut reactor, fd, side, handle)?
        };
        for old in replaced {
            old.cancel();
        }
        Ok(())
    }

    /// Stops watching `fd` for reading. Returns whether a reader was
    /// registered (asyncio's `remove_reader`); `false` on a closed loop.
    pub fn remove_reader(&self, fd: RawFd) -> bool {
        self.remove_io(fd, Side::Reader)
    }

    /// Stops watching `fd` for writing. Returns whether a writer was
    /// registered (asyncio's `remove_writer`); `false` on a closed loop.
    pub fn remove_writer(&self, fd: RawFd) -> bool {
        self.remove_io(fd, Side::Writer)
    }

    fn remove_io(&self, fd: RawFd, side: Side) -> bool {
        if self.is_closed() {
            return false;
        }
        let removed = {
            let mut reactor = self.core.reactor.borrow_mut();
            self.core.io.borrow_mut().remove(&mut reactor, fd, side)
        };
        match removed {
            Some(h) => {
                h.cancel();
                true
            }
            None => false,
        }
    }

    /// Sets the handler for errors nobody can raise to a caller, such as a
    /// panic in a callback; `None` restores the default, which logs them on
    /// target `asyncio` (asyncio's `set_exception_handler`).
    ///
    /// ```
    /// use aioloop::{EventLoop, ExceptionHandler};
    /// use std::{cell::RefCell, rc::Rc};
    ///
    /// let lp = EventLoop::with_virtual_clock().unwrap();
    /// let seen = Rc::new(RefCell::new(String::new()));
    /// let s = seen.clone();
    /// let handler: ExceptionHandler = Rc::new(move |lp, ctx| {
    ///     *s.borrow_mut() = ctx.message.clone();
    ///     lp.stop();
    /// });
    /// lp.set_exception_handler(Some(handler));
    /// lp.call_soon(|| panic!("boom")).unwrap();
    /// lp.run_forever().unwrap();
    /// assert!(seen.borrow().starts_with("Exception in callback"));
    /// ```
    pub fn set_exception_handler(&self, handler: Option<ExceptionHandler>) {
        *self.core.exception_handler.borrow_mut() = handler;
    }

    /// The custom exception handler, if one is set.
    pub fn get_exception_handler(&self) -> Option<ExceptionHandler> {
        self.core.exception_handler.borrow().clone()
    }

    /// Reports `context` to the exception handler (asyncio's
    /// `call_exception_handler`). A handler that panics is itself reported
    /// by the default handler; the loop goes on.
    pub fn call_exception_handler(&self, context: &ExceptionContext) {
        let handler = self.get_exception_handler();
        exceptions::call_exception_handler(self, handler, context);
    }

    /// The default handler: logs `context` at error level on target
    /// `asyncio` (asyncio's `default_exception_handler`).
    pub fn default_exception_handler(&self, context: &ExceptionContext) {
        exceptions::default_exception_handler(context);
    }
}

/// Marks a loop as running on this thread for the length of `run_forever`,
/// and undoes it however `run_forever` ends.
struct RunningGuard<'a> {
    core: &'a Rc<LoopCore>,
}

impl<'a> RunningGuard<'a> {
    fn enter(core: &'a Rc<LoopCore>) -> Result<Self, LoopError> {
        RUNNING_LOOP.with(|r| {
            let mut r = r.borrow_mut();
            if r.is_some() {
                return Err(LoopError::AnotherLoopRunning);
            }
            *r = Some(core.clone());
            Ok(())
        })?;
        core.state.set(LoopState::Running);
        let scheduler: Rc<dyn LocalScheduler> = core.clone();
        CURRENT_SCHEDULER.with(|s| *s.borrow_mut() = Some(scheduler));
        Ok(RunningGuard { core })
    }
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.core.stopping.set(false);
        self.core.state.set(LoopState::Idle);
        let prev = RUNNING_LOOP.with(|r| r.borrow_mut().take());
        let sched = CURRENT_SCHEDULER.with(|s| s.borrow_mut().take());
        drop((prev, sched));
    }
}
