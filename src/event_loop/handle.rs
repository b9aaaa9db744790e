//! `Handle` and `TimerHandle`: a scheduled callback, and the means to cancel it.
//!
//! asyncio's `call_soon` returns an `asyncio.Handle`, `call_later`/`call_at` a
//! `TimerHandle` (`Lib/asyncio/events.py`). A handle is shared by the loop
//! (which will run it) and the caller (who may cancel it), so here it is an
//! `Rc` around one allocation that holds the cancel flag, the creation site
//! and the closure itself: scheduling a callback costs exactly one allocation.
//!
//! # Invariants
//!
//! - A cancelled handle never runs: the loop checks `cancelled` right before
//!   invoking, and `cancel` drops the closure at once (asyncio sets
//!   `_callback = None`), so whatever it captured is released immediately.
//! - A one-shot callback runs at most once: invoking takes it out of its slot.
//! - Dropping a closure (on cancel, or when a loop closes) runs user
//!   destructors, so the loop never does it while it holds a borrow of its
//!   own state.
//! - Cancelling a `TimerHandle` removes its entry from the timer wheel at
//!   once, so memory does not grow with cancelled timers (asyncio only
//!   compacts its heap when cancelled timers pass half of it).
//!
//! # Timers that hold a task by id
//!
//! A wheel entry is a [`Timer`]: a handle, or, for a `sleep` polled by its
//! task's own waker, just the task's id — no handle, no waker clone, no
//! allocation per sleep. Such a timer must still wake the task at the point
//! of the iteration where a handle would have run (phase 5, in firing
//! order), not when it fires (phase 4), so that the task's next step runs on
//! the following iteration as before. So a fired `Timer::Task` goes to
//! [`TimerWakes`]: its id joins a FIFO there, and one shared handle, pushed
//! onto the ready queue once per fired timer, wakes the oldest when it runs.
//! Until then the wake is *pending*: the sleep that owns it can still see
//! that it has not been delivered, or cancel it.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::panic::Location;
use std::rc::{Rc, Weak};

use crate::event_loop::LoopCore;
use crate::task_slab::TaskId;
use crate::time::clock::ns_to_secs;
use crate::time::wheel::TimerKey;

/// What a handle can do with its closure, whatever the closure's type.
pub(crate) trait Invoke {
    /// Runs the callback (a one-shot callback is consumed).
    fn invoke(&self);
    /// Drops the callback without running it.
    fn release(&self);
    /// The callback's Rust type name, e.g. `tour::main::{{closure}}`: the
    /// closest thing Rust has to asyncio's `callback.__qualname__`.
    fn name(&self) -> &'static str;
    /// The task behind this handle, when the handle is a task's step.
    fn task_header(&self) -> Option<&crate::tasks::TaskHeader> {
        None
    }
    /// The loop is closing with this task pending: release what it holds.
    fn abandon(&self) {}
    /// A done task's failure (not its cancellation), marked retrieved if
    /// `retrieve` (a repr only looks).
    fn task_failure(&self, _retrieve: bool) -> Option<crate::errors::Error> {
        None
    }
    /// Where a task's future lies (address, size), while it is alive.
    fn future_span(&self) -> Option<(usize, usize)> {
        None
    }
    /// The `call_soon_threadsafe` calls behind this handle, when it is a
    /// drained batch of them: the run phase treats each as a callback.
    fn remote_batch(&self) -> Option<&crate::remote::RemoteBatch> {
        None
    }
}

/// A callback that runs once (`call_soon`, `call_later`).
pub(crate) struct Once<F>(Cell<Option<F>>);

impl<F: FnOnce() + 'static> Invoke for Once<F> {
    #[inline]
    fn invoke(&self) {
        if let Some(f) = self.0.take() {
            f()
        }
    }
    fn release(&self) {
        drop(self.0.take());
    }
    fn name(&self) -> &'static str {
        std::any::type_name::<F>()
    }
}

/// A callback that runs every time its fd is ready (`add_reader`, `add_writer`).
///
/// The closure sits behind its own `Rc` so that the callback may remove its
/// own reader while it runs: `release` then only drops the slot's reference,
/// and the running invocation keeps the closure alive until it returns.
pub(crate) struct Repeat<F>(RefCell<Option<Rc<F>>>);

impl<F: Fn() + 'static> Invoke for Repeat<F> {
    fn invoke(&self) {
        let f = self.0.borrow().clone();
        if let Some(f) = f {
            f()
        }
    }
    fn release(&self) {
        let f = self.0.borrow_mut().take();
        drop(f);
    }
    fn name(&self) -> &'static str {
        std::any::type_name::<F>()
    }
}

/// The shared allocation: a fixed header, then the closure (unsized).
/// A task's allocation is one too: its step is the callback.
pub(crate) struct HandleInner<C: ?Sized> {
    cancelled: Cell<bool>,
    site: &'static Location<'static>,
    callback: C,
}

impl<C> HandleInner<C> {
    pub(crate) fn new(site: &'static Location<'static>, callback: C) -> Self {
        HandleInner {
            cancelled: Cell::new(false),
            site,
            callback,
        }
    }
}

impl<C: ?Sized> HandleInner<C> {
    pub(crate) fn callback(&self) -> &C {
        &self.callback
    }

    pub(crate) fn site(&self) -> &'static Location<'static> {
        self.site
    }
}

/// A callback scheduled on the loop (asyncio's `Handle`).
///
/// Cloning a `Handle` is cheap and shares the same callback: cancelling any
/// clone cancels it.
///
/// ```
/// use aioloop::EventLoop;
/// use std::{cell::Cell, rc::Rc};
///
/// let lp = EventLoop::with_virtual_clock().unwrap();
/// let ran = Rc::new(Cell::new(false));
/// let r = ran.clone();
/// let h = lp.call_soon(move || r.set(true)).unwrap();
/// h.cancel();
/// assert!(h.cancelled());
/// lp.call_soon({ let lp = lp.loop_ref(); move || lp.stop() }).unwrap();
/// lp.run_forever().unwrap();
/// assert!(!ran.get(), "a cancelled handle never runs");
/// ```
#[derive(Clone)]
pub struct Handle {
    inner: Rc<HandleInner<dyn Invoke>>,
}

impl Handle {
    pub(crate) fn from_inner(inner: Rc<HandleInner<dyn Invoke>>) -> Handle {
        Handle { inner }
    }

    /// The task behind this handle, if it is a task's step.
    #[inline]
    pub(crate) fn task_header(&self) -> Option<&crate::tasks::TaskHeader> {
        self.inner.callback.task_header()
    }

    #[inline]
    pub(crate) fn once<F: FnOnce() + 'static>(f: F, site: &'static Location<'static>) -> Handle {
        Handle {
            inner: Rc::new(HandleInner {
                cancelled: Cell::new(false),
                site,
                callback: Once(Cell::new(Some(f))),
            }),
        }
    }

    pub(crate) fn repeat<F: Fn() + 'static>(f: F, site: &'static Location<'static>) -> Handle {
        Handle {
            inner: Rc::new(HandleInner {
                cancelled: Cell::new(false),
                site,
                callback: Repeat(RefCell::new(Some(Rc::new(f)))),
            }),
        }
    }

    /// Cancels the callback: it will not run, and what it captured is
    /// dropped now. Cancelling twice, or after it ran, does nothing.
    pub fn cancel(&self) {
        if !self.inner.cancelled.replace(true) {
            self.inner.callback.release();
        }
    }

    /// True once [`cancel`](Handle::cancel) was called.
    #[inline]
    pub fn cancelled(&self) -> bool {
        self.inner.cancelled.get()
    }

    /// Strong and weak counts of the shared allocation.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (Rc::strong_count(&self.inner), Rc::weak_count(&self.inner))
    }

    /// See [`Invoke::remote_batch`].
    #[inline]
    pub(crate) fn remote_batch(&self) -> Option<&crate::remote::RemoteBatch> {
        self.inner.callback.remote_batch()
    }

    /// See [`Invoke::future_span`].
    pub(crate) fn future_span(&self) -> Option<(usize, usize)> {
        self.inner.callback.future_span()
    }

    /// A done task's failure, marked retrieved if `retrieve`.
    pub(crate) fn task_failure(&self, retrieve: bool) -> Option<crate::errors::Error> {
        self.inner.callback.task_failure(retrieve)
    }

    /// Releases a pending task's future and callbacks (the loop is closing).
    pub(crate) fn abandon(&self) {
        self.inner.callback.abandon()
    }

    /// Where the callback was scheduled (`call_soon`'s caller).
    pub fn source_location(&self) -> &'static Location<'static> {
        self.inner.site
    }

    /// The callback's Rust type name (for a closure: the enclosing function
    /// path followed by `{{closure}}`).
    pub fn callback_name(&self) -> &'static str {
        self.inner.callback.name()
    }

    /// Runs the callback. Only the loop's run phase calls this (see
    /// `run_once::run_handle`), so there is one place where user callbacks
    /// are entered.
    #[inline]
    pub(crate) fn invoke(&self) {
        self.inner.callback.invoke()
    }

    /// `name at file:line`, the text asyncio puts after `Exception in callback`.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} at {}:{}",
            self.callback_name(),
            self.inner.site.file(),
            self.inner.site.line()
        )
    }
}

impl fmt::Debug for Handle {
    /// asyncio's repr: `<Handle tick at src/main.rs:12>`, with `cancelled`
    /// after the class name once cancelled. Unlike asyncio we keep naming
    /// the callback after it is cancelled: it is a static string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.cancelled() { " cancelled" } else { "" };
        write!(f, "<Handle{state} {}>", self.describe())
    }
}

/// A callback scheduled for a point in time (asyncio's `TimerHandle`).
///
/// ```
/// use aioloop::EventLoop;
/// use std::time::Duration;
///
/// let lp = EventLoop::with_virtual_clock().unwrap();
/// let t = lp.call_later(Duration::from_secs(3600), || unreachable!()).unwrap();
/// assert_eq!(t.when(), 3600.0);
/// assert_eq!(lp.scheduled_timers(), 1);
/// t.cancel();
/// assert_eq!(lp.scheduled_timers(), 0, "a cancelled timer leaves the wheel at once");
/// ```
#[derive(Clone)]
pub struct TimerHandle {
    handle: Handle,
    key: TimerKey,
    when_ns: u64,
    core: Weak<LoopCore>,
}

impl TimerHandle {
    pub(crate) fn new(handle: Handle, key: TimerKey, when_ns: u64, core: Weak<LoopCore>) -> Self {
        TimerHandle {
            handle,
            key,
            when_ns,
            core,
        }
    }

    /// Cancels the timer and removes it from the loop's timer wheel at once.
    pub fn cancel(&self) {
        self.handle.cancel();
        if let Some(core) = self.core.upgrade() {
            core.timer_cancelled(self.key);
        }
    }

    /// True once [`cancel`](TimerHandle::cancel) was called.
    pub fn cancelled(&self) -> bool {
        self.handle.cancelled()
    }

    /// The loop time (seconds, as [`time`](crate::LoopRef::time)) at which the
    /// callback is due, as asked: negative for a time before the loop's
    /// creation, `inf` for never (asyncio's `TimerHandle.when()`).
    pub fn when(&self) -> f64 {
        ns_to_secs(self.when_ns)
    }

    /// The underlying [`Handle`].
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl fmt::Debug for TimerHandle {
    /// asyncio's repr: `<TimerHandle when=3.000 tick at src/main.rs:12>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.cancelled() { " cancelled" } else { "" };
        write!(
            f,
            "<TimerHandle{state} when={:.3} {}>",
            self.when(),
            self.handle.describe()
        )
    }
}

/// What a timer wheel entry holds.
pub(crate) enum Timer {
    /// A callback to put on the ready queue when due (`call_later`, or a
    /// `sleep` woken through a waker clone).
    Handle(Handle),
    /// A task to wake when due, through [`TimerWakes`]: a `sleep` polled
    /// by its own task. The task counts this as one by-id wait
    /// (`TaskHeader::id_waits`), so the stuck-task check knows a timer can
    /// still wake it; the count is taken back when the wake is delivered or
    /// cancelled.
    Task(TaskId),
}

/// A cheap hash for wheel keys, which are unique counters: FxHash's step.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The wakes of fired `Timer::Task` entries, waiting for their turn in the
/// run phase (see the module docs).
///
/// # Invariants
///
/// - `order` lists the keys of fired task timers in firing order, and the
///   ready queue holds one clone of the loop's `TimerWakes` handle per
///   entry of `order`, in the same order: each run of the handle takes the
///   front. Both empty out within the iteration in which they fired (phase 5
///   runs everything phase 4 queued), or when the loop closes.
/// - `pending` maps each key of `order` whose wake is still to be delivered
///   to its task; a cancelled wake leaves `pending` at once and its key is
///   skipped when it reaches the front. So a key is pending exactly while
///   its timer has fired and its task has not been woken by it.
#[derive(Default)]
pub(crate) struct TimerWakes {
    order: RefCell<VecDeque<TimerKey>>,
    pending: RefCell<HashMap<TimerKey, TaskId, BuildHasherDefault<KeyHasher>>>,
    core: Weak<LoopCore>,
}

impl TimerWakes {
    pub(crate) fn new(core: Weak<LoopCore>) -> Self {
        TimerWakes {
            core,
            ..Default::default()
        }
    }

    /// A task timer fired: its wake joins the queue (the caller pushes the
    /// shared handle onto the ready queue).
    #[inline]
    pub(crate) fn fired(&self, key: TimerKey, task: TaskId) {
        self.order.borrow_mut().push_back(key);
        self.pending.borrow_mut().insert(key, task);
    }

    /// The task whose wake of `key` is pending: the timer has fired and
    /// the wake waits in the ready queue.
    #[inline]
    pub(crate) fn pending_task(&self, key: TimerKey) -> Option<TaskId> {
        if self.order.borrow().is_empty() {
            return None;
        }
        self.pending.borrow().get(&key).copied()
    }

    /// Cancels the pending wake of `key`, returning its task.
    #[inline]
    pub(crate) fn cancel(&self, key: TimerKey) -> Option<TaskId> {
        if self.order.borrow().is_empty() {
            return None;
        }
        self.pending.borrow_mut().remove(&key)
    }

    /// Forgets every pending wake (the loop is closing; its tasks go too).
    pub(crate) fn clear(&self) {
        self.order.borrow_mut().clear();
        self.pending.borrow_mut().clear();
    }
}

impl Invoke for TimerWakes {
    #[inline]
    fn invoke(&self) {
        let Some(key) = self.order.borrow_mut().pop_front() else {
            return;
        };
        let Some(task) = self.pending.borrow_mut().remove(&key) else {
            return; // cancelled
        };
        if let Some(core) = self.core.upgrade() {
            // One slab lookup uncounts the timer's by-id wait and schedules
            // the task, as a completed wait list does.
            core.schedule_task_with(task, |h| h.id_waits.set(h.id_waits.get().saturating_sub(1)));
        }
    }
    fn release(&self) {}
    fn name(&self) -> &'static str {
        "aioloop::sleep"
    }
}
