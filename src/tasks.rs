//! Tasks: Rust futures run as asyncio tasks, with asyncio's cancellation.
//!
//! asyncio's `Task` (`Lib/asyncio/tasks.py`) drives a coroutine one step at a
//! time: each step is a callback on the ready queue (`__step`), and the task
//! parks on a future between steps (`_fut_waiter`). aioloop does the same with
//! a Rust `Future`: a **step** is one `poll`, run from the loop's run phase
//! like any callback. The task's allocation *is* a [`Handle`], so scheduling
//! a step pushes an `Rc` clone onto the ready queue: no allocation per wake.
//!
//! # States
//!
//! ```text
//!   Pending ──step──► Running ──Pending──► Pending (parked, or scheduled)
//!                        │
//!                        ├──Ready(Ok)──────────────► Finished
//!                        ├──Ready(Err(e))──────────► Failed  (e is the exception)
//!                        ├──Ready(Err(cancelled))──► Cancelled
//!                        ├──panic──────────────────► Failed  (PanicError)
//!                        └──cancel not consumed────► Cancelled (future dropped)
//! ```
//!
//! # Cancellation (asyncio's model; see docs/CANCELLATION.md)
//!
//! - `cancel(msg)` returns `false` on a done task. Otherwise it counts the
//!   request (`cancelling()`), and: if the task is parked on a loop future or
//!   another task (its *fut_waiter*), cancels that, which wakes the task with
//!   `Err(Cancelled)` at its `await`; else sets *must_cancel* and schedules
//!   the task.
//! - *must_cancel* is consumed by the first aioloop awaitable polled in the
//!   task's next step: it returns `Err(CancelledError)` — a **cancellation
//!   point**. The coroutine may propagate it (`?`: the task ends cancelled),
//!   or catch it and go on (the request is refused, as asyncio allows).
//! - A request still unconsumed when the step ends means the task is parked
//!   on something that is no cancellation point (a foreign future): the
//!   future is dropped — its destructors are the `finally` blocks — and the
//!   task ends cancelled. If the step completed the coroutine, the task also
//!   ends cancelled (asyncio's `_must_cancel` at `StopIteration`).
//! - A request made before the first step ends the task without running its
//!   body.
//!
//! # Invariants
//!
//! - A task is on the ready queue at most once (`scheduled`), however many
//!   times it is woken before it runs; a wake of a done task does nothing.
//! - The future is pinned in place inside the task's `Rc` allocation, never
//!   moved, and dropped in place as soon as the task is done.
//! - A done task leaves the loop's slab at once: stale wakers find nothing.

use std::cell::{Cell, UnsafeCell};
use std::fmt;
use std::future::{Future as StdFuture, IntoFuture};
use std::mem::ManuallyDrop;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, Waker};

use crate::errors::{CancelledError, Error, LoopError, PanicError, TaskOutput};
use crate::event_loop::exceptions::report_unretrieved;
use crate::event_loop::handle::{HandleInner, Invoke};
use crate::event_loop::{Handle, LoopCore, LoopRef};
use crate::outcome::OutcomeCell;
use crate::task_slab::{is_borrowed_waker_of, TaskId, WakerSource};
pub use crate::waiters::DoneCallbackId;
use crate::waiters::{
    Completion, Entry, Notify, Registration, WaitKind, WaitList, WaitSite, WaiterKey,
};

/// asyncio numbers tasks per process: `Task-1`, `Task-2`, ...
static TASK_COUNTER: AtomicU32 = AtomicU32::new(1);

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TaskState {
    /// Not running: waiting to be scheduled, or scheduled.
    Pending,
    /// Inside its step.
    Running,
    /// Done with a result.
    Finished,
    /// Done with an exception (an `Err` output or a panic).
    Failed,
    /// Done, cancelled.
    Cancelled,
}

impl TaskState {
    fn is_done(self) -> bool {
        matches!(
            self,
            TaskState::Finished | TaskState::Failed | TaskState::Cancelled
        )
    }
}

/// Something a task can be parked on: a loop future (asyncio's
/// `_fut_waiter`, which `Task::cancel` cancels in turn) or a primitive's
/// wait list (a queue, a lock ...), which the stuck-task check inspects.
pub(crate) trait WaitTarget {
    /// Cancels it; false if it was already done or cannot be cancelled (a
    /// lock is not cancelled because a waiter is: the waiter is woken).
    fn cancel_target(&self, _msg: Option<String>) -> bool {
        false
    }
    /// Calls `f` with each of its wait lists (a queue has three).
    fn for_each_list(&self, f: &mut dyn FnMut(&WaitList));
    /// What it is, for reports: asyncio's repr (`<Queue maxsize=0>`).
    fn describe(&self) -> String;

    /// Waiters in all its lists that were not notified yet: parked tasks.
    fn unnotified(&self) -> usize {
        let mut n = 0;
        self.for_each_list(&mut |l| n += l.unnotified());
        n
    }

    /// Every registration in all its lists.
    fn registrations(&self) -> Vec<Registration> {
        let mut v = Vec::new();
        self.for_each_list(&mut |l| v.extend(l.registrations()));
        v
    }
}

/// The target of an empty [`FutWaiter`]: a `Weak` to it never upgrades.
struct NoTarget;

impl WaitTarget for NoTarget {
    fn for_each_list(&self, _: &mut dyn FnMut(&WaitList)) {}
    fn describe(&self) -> String {
        String::new()
    }
}

/// What a parked task waits on, for `cancel` to cancel it in turn and for
/// the stuck-task check to follow. "Nothing" is a dangling `Weak`, so that
/// the record stays two words (the task header is kept small).
pub(crate) enum FutWaiter {
    /// A loop future or a primitive (held weakly: waiting must not keep it
    /// alive).
    Target(Weak<dyn WaitTarget>),
    /// Another task of the same loop.
    Task(TaskId),
}

impl Default for FutWaiter {
    fn default() -> Self {
        FutWaiter::Target(Weak::<NoTarget>::new())
    }
}

impl FutWaiter {
    /// The target of a primitive registration made by the current task.
    pub(crate) fn of<W: WaitTarget + 'static>(target: &Rc<W>) -> FutWaiter {
        let weak: Weak<W> = Rc::downgrade(target);
        FutWaiter::Target(weak)
    }
}

/// The fields most tasks never use.
#[derive(Default)]
struct TaskExtra {
    name: Option<String>,
    cancel_msg: Option<String>,
    /// Steps run and time spent in them, counted in debug mode.
    steps: u32,
    running_ns: u64,
}

/// The type-independent part of a task.
pub(crate) struct TaskHeader {
    /// `Task-N` (wraps after 2³² tasks: the name is all it is used for).
    number: u32,
    /// Where `create_task` was called.
    site: &'static Location<'static>,
    core: Weak<LoopCore>,
    pub(crate) waker: WakerSource,
    state: Cell<TaskState>,
    pub(crate) scheduled: Cell<bool>,
    started: Cell<bool>,
    /// The future has not been dropped yet (see `TaskCell::future`).
    future_live: Cell<bool>,
    must_cancel: Cell<bool>,
    /// `cancelling()`; saturates (65,535 requests is far past any use).
    cancel_requests: Cell<u16>,
    /// Rarely used fields, allocated on first use.
    extra: Cell<Option<Box<TaskExtra>>>,
    completion: Completion,
    fut_waiter: Cell<FutWaiter>,
    /// Entries of wait lists, and timers of `sleep`, that hold this task
    /// by id (no waker): with the live-waker count, every way to wake the
    /// task is counted.
    pub(crate) id_waits: Cell<u16>,
    /// Set once someone looked at the outcome (await, result, exception).
    pub(crate) retrieved: Cell<bool>,
}

impl TaskHeader {
    pub(crate) fn id(&self) -> TaskId {
        self.waker.id()
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state.get().is_done()
    }

    pub(crate) fn name(&self) -> String {
        match self.with_extra(|x| x.and_then(|x| x.name.clone())) {
            Some(n) => n,
            None => format!("Task-{}", self.number),
        }
    }

    fn unregister(&self, key: WaiterKey) {
        self.completion.unregister_in(key, &self.core);
    }

    pub(crate) fn state(&self) -> TaskState {
        self.state.get()
    }

    /// The stuck-task check's cheap filter: parked, not scheduled, held by
    /// exactly one wait list and by no waker, on a target that has no more
    /// handles than parked waiters (every handle of a dead target is
    /// borrowed by one of its parked waiters). Anything else is alive.
    pub(crate) fn may_be_stuck(&self) -> bool {
        if self.state.get() != TaskState::Pending
            || self.scheduled.get()
            || self.id_waits.get() != 1
            || self.waker.live_wakers() != 0
        {
            return false;
        }
        // SAFETY: a shared look at the cell's content, which nothing below
        // writes: `unnotified` only reads a wait list's counters, and the
        // loop is single-threaded. (Taking it out and putting it back, the
        // safe way, costs two moves and a drop on every park.)
        let fw = unsafe { &*self.fut_waiter.as_ptr() };
        match fw {
            // A notified waiter's task is about to run: its handle is held
            // by a live task, so only parked waiters can account for every
            // handle of a dead target.
            FutWaiter::Target(w) => {
                let strong = w.strong_count();
                // SAFETY: a strong count above zero means the target is
                // alive, and nothing here can drop it (see above), so the
                // pointer is valid for this read: no upgrade, no count
                // traffic.
                strong > 0 && strong <= unsafe { &*w.as_ptr() }.unnotified()
            }
            FutWaiter::Task(_) => true,
        }
    }

    /// A handle of this task is going (`strong`: the task's strong count,
    /// that handle and the slab's included): the task itself, and the tasks
    /// awaiting it, may have lost their last way in.
    fn handle_dropped(&self, strong: usize) {
        let waited = self.completion.waiters() > 0;
        if !waited && !self.may_be_stuck() {
            return;
        }
        if let Some(core) = self.core.upgrade() {
            if self.may_be_stuck() {
                core.suspect(self.id());
            }
            if waited && !self.is_done() {
                core.suspect_waiters(&self.completion, strong.saturating_sub(2));
            }
        }
    }

    /// A copy of what the task is parked on.
    pub(crate) fn fut_waiter_clone(&self) -> FutWaiter {
        let w = self.fut_waiter.take();
        let copy = match &w {
            FutWaiter::Target(t) => FutWaiter::Target(t.clone()),
            FutWaiter::Task(id) => FutWaiter::Task(*id),
        };
        self.fut_waiter.set(w);
        copy
    }

    /// Who awaits this task (registrations in its completion list).
    pub(crate) fn completion_registrations(&self) -> Vec<Registration> {
        self.completion.registrations()
    }

    /// `Task.cancel(msg)`; see the module docs.
    fn cancel(&self, msg: Option<String>) -> bool {
        // asyncio's `cancel` clears `_log_traceback` first, even on a done
        // task: a failure whose task was cancelled afterwards is not
        // reported as never retrieved (checked with CPython 3.11–3.13).
        self.retrieved.set(true);
        if self.is_done() {
            return false;
        }
        self.cancel_requests
            .set(self.cancel_requests.get().saturating_add(1));
        if msg.is_some() || self.with_extra(|x| x.is_some()) {
            self.extra_mut(|x| x.cancel_msg = msg.clone());
        }
        let waiter = self.fut_waiter.take();
        let core = self.core.upgrade();
        let cancelled_target = match waiter {
            FutWaiter::Target(w) => w.upgrade().is_some_and(|w| w.cancel_target(msg)),
            FutWaiter::Task(id) => {
                let target = core
                    .as_ref()
                    .and_then(|c| c.tasks.borrow().get(id).cloned());
                target
                    .and_then(|t| t.task_header().map(|h| h.cancel(msg)))
                    .unwrap_or(false)
            }
        };
        if cancelled_target {
            // The target's cancellation wakes us with Err(Cancelled).
            return true;
        }
        self.must_cancel.set(true);
        if let Some(core) = core {
            core.schedule_task(self.id());
        }
        true
    }

    /// Counts one step of `ns` nanoseconds (debug mode).
    pub(crate) fn record_step(&self, ns: u64) {
        self.extra_mut(|x| {
            x.steps = x.steps.saturating_add(1);
            x.running_ns = x.running_ns.saturating_add(ns);
        });
    }

    /// Steps and running time counted so far (zero outside debug mode).
    pub(crate) fn step_stats(&self) -> (u32, u64) {
        self.with_extra(|x| x.map_or((0, 0), |x| (x.steps, x.running_ns)))
    }

    /// `Task-N`'s number.
    pub(crate) fn number(&self) -> u32 {
        self.number
    }

    /// Where the task was created.
    pub(crate) fn site(&self) -> &'static Location<'static> {
        self.site
    }

    fn extra_mut(&self, f: impl FnOnce(&mut TaskExtra)) {
        let mut x = self.extra.take().unwrap_or_default();
        f(&mut x);
        self.extra.set(Some(x));
    }

    fn with_extra<R>(&self, f: impl FnOnce(Option<&TaskExtra>) -> R) -> R {
        let x = self.extra.take();
        let r = f(x.as_deref());
        self.extra.set(x);
        r
    }

    fn set_name(&self, name: String) {
        self.extra_mut(|x| x.name = Some(name));
    }

    fn uncancel(&self) -> u16 {
        let n = self.cancel_requests.get().saturating_sub(1);
        self.cancel_requests.set(n);
        if n == 0 {
            self.must_cancel.set(false);
        }
        n
    }

    fn cancelled_error(&self) -> CancelledError {
        CancelledError::new(self.with_extra(|x| x.and_then(|x| x.cancel_msg.clone())))
    }

    fn add_done_callback(&self, f: Box<dyn FnOnce()>) -> DoneCallbackId {
        let (id, now) = self.completion.add_callback(self.is_done(), f);
        if let (Some(f), Some(core)) = (now, self.core.upgrade()) {
            // asyncio schedules it at once on a done task.
            let _ = LoopRef::from_core(core).call_soon(f);
        }
        id
    }

    /// Common end of every task: leave the slab, wake the awaiters,
    /// schedule the done callbacks (never inline, in registration order).
    fn complete(&self, state: TaskState) {
        self.state.set(state);
        self.fut_waiter.take();
        let Some(core) = self.core.upgrade() else {
            return;
        };
        let removed = core.tasks.borrow_mut().remove(self.id());
        drop(removed);
        fire_completion(&core, &self.completion);
    }
}

/// Counts one wait-list entry more (`up`) or less holding task `id` of
/// `core` by id. False if the task cannot be reached (then the caller keeps
/// a waker clone instead, which the waker vtable counts).
///
/// The task is nearly always the current one (it registers from its own
/// step), which needs no lookup; otherwise the slab is asked, if it is not
/// borrowed at this moment.
#[inline]
pub(crate) fn count_id_wait(core: &LoopCore, id: TaskId, up: bool) -> bool {
    let current = with_current(|h| {
        (h.id() == id && std::ptr::eq(h.core.as_ptr(), core)).then(|| adjust_id_waits(h, up))
    });
    match current {
        Some(Some(done)) => done,
        _ => count_id_wait_elsewhere(core, id, up),
    }
}

/// The current task's id, when `waker` is its own borrowed waker and it
/// belongs to `core` — counted as one more by-id wait. The usual way a
/// task registers (from its own step), checked without looking anything up.
#[inline]
pub(crate) fn current_waits_by_id(waker: &Waker, core: &LoopCore) -> Option<TaskId> {
    with_current(|h| {
        (is_borrowed_waker_of(waker, &h.waker)
            && std::ptr::eq(h.core.as_ptr(), core)
            && adjust_id_waits(h, true))
        .then(|| h.id())
    })
    .flatten()
}

/// `count_id_wait` for a task other than the current one.
#[inline(never)]
fn count_id_wait_elsewhere(core: &LoopCore, id: TaskId, up: bool) -> bool {
    let Ok(tasks) = core.tasks.try_borrow() else {
        return false;
    };
    match tasks.get(id).and_then(|t| t.task_header()) {
        Some(h) => adjust_id_waits(h, up),
        None => false,
    }
}

/// One more (`up`) or one less by-id entry for `h`; false when saturated
/// (65,535 waits of one task: stop holding it by id).
#[inline]
fn adjust_id_waits(h: &TaskHeader, up: bool) -> bool {
    let n = h.id_waits.get();
    let n = if up {
        n.checked_add(1)
    } else {
        n.checked_sub(1)
    };
    match n {
        Some(n) => {
            h.id_waits.set(n);
            true
        }
        None => false,
    }
}

/// Wakes a task that waited by id in a completed list: one slab lookup
/// both uncounts its entry and schedules its next step.
#[inline]
fn wake_id_waiter(core: &LoopCore, id: TaskId) {
    core.schedule_task_with(id, |h| h.id_waits.set(h.id_waits.get().saturating_sub(1)));
}

/// Wakes the waiters and schedules the done callbacks of something that
/// just completed.
pub(crate) fn fire_completion(core: &Rc<LoopCore>, completion: &Completion) {
    completion.take_each(
        |id| wake_id_waiter(core, id),
        |entry| match entry {
            Entry::Waiter(w) => w.wake(core),
            // On a closed loop the callback cannot run; it is dropped here.
            Entry::Callback(f) => {
                let _ = LoopRef::from_core(core.clone()).call_soon(f);
            }
            // Records and wakes, no user code: safe to run inline.
            Entry::Notify(to, index) => to.notify(index),
        },
    );
}

/// The typed view of a task allocation, independent of its future type.
pub(crate) trait TaskObj<T>: Invoke {
    fn header(&self) -> &TaskHeader;
    fn outcome(&self) -> &OutcomeCell<T>;
}

/// A task's allocation: header, the future (pinned in place), the outcome.
pub(crate) struct TaskCell<F: StdFuture>
where
    F::Output: TaskOutput,
{
    header: TaskHeader,
    /// The future, pinned in place: live while `header.future_live` is
    /// set; accessed only by `step` (never re-entered: the run phase runs
    /// one handle at a time and a nested `run_forever` of any loop on this
    /// thread is refused) and dropped exactly once, by `drop_future` or by
    /// `Drop`. No `RefCell`/`Option`: every task pays for this field.
    future: UnsafeCell<ManuallyDrop<F>>,
    outcome: OutcomeCell<OkOf<F>>,
}

type OkOf<F> = <<F as StdFuture>::Output as TaskOutput>::Ok;

impl<F: StdFuture + 'static> TaskCell<F>
where
    F::Output: TaskOutput,
{
    fn finish(&self, result: Result<OkOf<F>, Error>) {
        let state = match &result {
            Ok(_) => TaskState::Finished,
            Err(e) if e.is_cancelled() => TaskState::Cancelled,
            Err(_) => TaskState::Failed,
        };
        // A task completes once (`step` returns early when done).
        let _ = self.outcome.set(result);
        self.header.complete(state);
    }

    fn finish_cancelled(&self) {
        let err = self.header.cancelled_error();
        self.header.must_cancel.set(false);
        self.finish(Err(err.into()));
    }

    /// Drops the future in place (its destructors run now).
    fn drop_future(&self) {
        // Cleared first, so that a panicking destructor cannot lead to a
        // second drop.
        if self.header.future_live.replace(false) {
            // SAFETY: the future was live and is never used again (the flag
            // is now clear); no reference to it exists, since `step` calls
            // this only after its poll returned, and `step` is never
            // re-entered (see the field's docs).
            unsafe { ManuallyDrop::drop(&mut *self.future.get()) }
        }
    }

    /// One step: poll the future once. See the module docs for the
    /// cancellation rules applied around the poll.
    fn step(&self) {
        let h = &self.header;
        h.scheduled.set(false);
        if h.is_done() {
            return; // a stale schedule
        }
        if h.must_cancel.get() && !h.started.get() {
            // Cancelled before its first step: the body never runs.
            self.drop_future();
            self.finish_cancelled();
            return;
        }
        h.started.set(true);
        h.fut_waiter.take();
        h.state.set(TaskState::Running);
        let _current = CurrentTask::enter(h);
        let waker = h.waker.borrowed();
        let mut cx = Context::from_waker(&waker);
        if !h.future_live.get() {
            return;
        }
        let poll = {
            // SAFETY: exclusive: only `step` touches the future and it is
            // never re-entered (see the field's docs), so this is the one
            // reference for the duration of the poll. Pinned: the future
            // lives in this task's `Rc` allocation, which never moves, and
            // it is never moved out, only dropped in place.
            let fut = unsafe { Pin::new_unchecked(&mut **self.future.get()) };
            catch_unwind(AssertUnwindSafe(|| fut.poll(&mut cx)))
        };
        match poll {
            Ok(Poll::Ready(out)) => {
                self.drop_future();
                let result = match out.into_result() {
                    // Cancelled during the step that returned normally:
                    // asyncio's `_must_cancel` at StopIteration.
                    Ok(_) if h.must_cancel.get() => {
                        self.finish_cancelled();
                        return;
                    }
                    Ok(v) => Ok(v),
                    // A raised exception wins over a pending request, as in
                    // `__step` (`set_exception`); a raised cancellation ends
                    // the task cancelled either way.
                    Err(e) => {
                        h.must_cancel.set(false);
                        Err(e)
                    }
                };
                self.finish(result);
            }
            Ok(Poll::Pending) => {
                h.state.set(TaskState::Pending);
                if h.must_cancel.get() {
                    // Parked on something that is no cancellation point.
                    self.drop_future();
                    self.finish_cancelled();
                } else if h.may_be_stuck() {
                    // Checked by the run phase once this step's handle is
                    // gone (it is one more reference to the task).
                    if let Some(core) = h.core.upgrade() {
                        core.suspect(h.id());
                    }
                }
            }
            Err(payload) => {
                self.drop_future();
                self.finish(Err(PanicError::new(payload).into()));
            }
        }
    }
}

impl<F: StdFuture> Drop for TaskCell<F>
where
    F::Output: TaskOutput,
{
    fn drop(&mut self) {
        if self.header.future_live.replace(false) {
            // SAFETY: live and never used again; `&mut self` is exclusive.
            unsafe { ManuallyDrop::drop(self.future.get_mut()) }
        }
        // The last handle is gone: a failure nobody looked at is reported
        // now, as asyncio's `Task.__del__` does.
        let h = &self.header;
        if h.state.get() == TaskState::Failed && !h.retrieved.get() {
            if let Some(failure) = self.outcome.failure().map(|e| format!("{e:?}")) {
                let repr = format!(
                    "<Task finished name='{}' created at {}:{} exception={failure}>",
                    h.name(),
                    h.site.file(),
                    h.site.line()
                );
                report_unretrieved(h.core.upgrade(), "Task", repr, failure);
            }
        }
    }
}

impl<F: StdFuture + 'static> Invoke for TaskCell<F>
where
    F::Output: TaskOutput,
{
    fn invoke(&self) {
        self.step()
    }
    fn release(&self) {}
    fn name(&self) -> &'static str {
        std::any::type_name::<F>()
    }
    fn task_header(&self) -> Option<&TaskHeader> {
        Some(&self.header)
    }
    fn future_span(&self) -> Option<(usize, usize)> {
        // Only addresses are compared: nothing is read through them.
        self.header
            .future_live
            .get()
            .then(|| (self.future.get() as usize, std::mem::size_of::<F>()))
    }
    fn task_failure(&self, retrieve: bool) -> Option<Error> {
        if retrieve {
            self.header.retrieved.set(true);
        }
        self.outcome.failure()
    }
    fn abandon(&self) {
        // The loop closes with this task pending: drop its future (its
        // destructors are the coroutine's `finally` blocks) and its
        // completion list, whose done callbacks may hold handles to the
        // task itself — a cycle nothing else would break.
        self.drop_future();
        let core = self.header.core.upgrade();
        self.header.completion.take_each(
            |id| {
                if let Some(core) = &core {
                    count_id_wait(core, id, false);
                }
            },
            drop,
        );
    }
}

impl<F: StdFuture + 'static> TaskObj<OkOf<F>> for TaskCell<F>
where
    F::Output: TaskOutput,
{
    fn header(&self) -> &TaskHeader {
        &self.header
    }
    fn outcome(&self) -> &OutcomeCell<OkOf<F>> {
        &self.outcome
    }
}

thread_local! {
    /// The header of the task whose step is running on this thread.
    static CURRENT: Cell<Option<*const TaskHeader>> = const { Cell::new(None) };
}

/// Marks a task as current for the length of its step.
struct CurrentTask {
    prev: Option<*const TaskHeader>,
}

impl CurrentTask {
    fn enter(h: &TaskHeader) -> CurrentTask {
        CurrentTask {
            prev: CURRENT.with(|c| c.replace(Some(h as *const TaskHeader))),
        }
    }
}

impl Drop for CurrentTask {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.prev));
    }
}

/// Runs `f` on the current task's header, if a task step is running.
fn with_current<R>(f: impl FnOnce(&TaskHeader) -> R) -> Option<R> {
    let ptr = CURRENT.with(Cell::get)?;
    // SAFETY: `CURRENT` holds a pointer only while `CurrentTask` is alive,
    // i.e. inside `TaskCell::step`, which holds `&self` (and the run phase an
    // `Rc` of the task) for that whole time: the header is alive. Only
    // shared access is made, and the header is only ever shared (`Cell`s).
    Some(f(unsafe { &*ptr }))
}

/// The cancellation point: if the current task has a cancel request
/// pending, consumes it and returns the `CancelledError` to deliver.
///
/// Every aioloop awaitable calls this first thing in `poll`.
pub(crate) fn take_cancel_request() -> Option<CancelledError> {
    with_current(|h| {
        if h.must_cancel.replace(false) {
            Some(h.cancelled_error())
        } else {
            None
        }
    })
    .flatten()
}

/// Records what the current task is parked on, for `cancel` to cancel.
pub(crate) fn set_fut_waiter(target: FutWaiter) {
    with_current(|h| h.fut_waiter.set(target));
}

/// The current task's id and its loop's remote, if in a task step.
pub(crate) fn current_task_id() -> Option<TaskId> {
    with_current(|h| h.id())
}

/// The current task's repr, if a task step is running and its loop is not
/// `core` (asyncio's `… got Future … attached to a different loop`).
pub(crate) fn current_task_repr_if_other_loop(core: &Rc<LoopCore>) -> Option<String> {
    with_current(|h| (!std::ptr::eq(h.core.as_ptr(), Rc::as_ptr(core))).then(|| header_repr(h)))
        .flatten()
}

/// asyncio's repr of a task, from its header.
fn header_repr(h: &TaskHeader) -> String {
    struct Repr<'a>(&'a TaskHeader);
    impl fmt::Display for Repr<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            describe_task(self.0, self.0.site, None, f)
        }
    }
    Repr(h).to_string()
}

/// A handle to a task (asyncio's `Task`), typed by its result `T`; its
/// exception is an [`Error`].
///
/// Clones share the task. Dropping every handle does not cancel it. A task
/// is a Rust future itself (for `T: Clone`), as asyncio's is awaitable:
/// `task.await`, `(&task).await`, `run_until_complete(task)`, `wait_for(task,
/// d)`, `gather([t, t])`… each get a clone of the result, and `result()` /
/// `exception()` still answer afterwards. For a result that is not `Clone`,
/// [`take`](Task::take) moves it out once.
///
/// ```
/// use aioloop::EventLoop;
///
/// let lp = EventLoop::new().unwrap();
/// let out = lp.run_until_complete(async {
///     let t = aioloop::create_task(async { 6u32 * 7 })?;
///     assert!(t.get_name().starts_with("Task-"));
///     let first = (&t).await?;
///     let again = t.await?;
///     Ok(first + again)
/// });
/// assert_eq!(out.unwrap(), 84);
/// ```
pub struct Task<T> {
    inner: Rc<HandleInner<dyn TaskObj<T>>>,
    /// This handle's registration while a task awaits it.
    key: Option<WaiterKey>,
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        let h = self.inner.callback().header();
        if let Some(k) = self.key.take() {
            h.unregister(k);
        }
        let strong = Rc::strong_count(&self.inner);
        h.handle_dropped(strong);
    }
}

impl<T> Clone for Task<T> {
    /// Another handle to the same task (with no registration of its own).
    fn clone(&self) -> Self {
        Task {
            inner: self.inner.clone(),
            key: None,
        }
    }
}

/// An untyped handle to a task: what [`current_task`] and [`all_tasks`]
/// return, as asyncio's do.
#[derive(Clone)]
pub struct TaskRef {
    handle: Handle,
}

impl Drop for TaskRef {
    fn drop(&mut self) {
        if let Some(h) = self.handle.task_header() {
            h.handle_dropped(self.handle.counts().0);
        }
    }
}

impl LoopRef {
    /// Wraps `fut` in a task scheduled to run on this loop (asyncio's
    /// `loop.create_task`). The task starts on a later iteration.
    #[track_caller]
    pub fn create_task<F>(&self, fut: F) -> Result<Task<OkOf<F>>, LoopError>
    where
        F: StdFuture + 'static,
        F::Output: TaskOutput,
    {
        let core = self.core();
        if self.is_closed() {
            return Err(LoopError::Closed);
        }
        let site = Location::caller();
        let remote = core.remote.clone();
        let weak = Rc::downgrade(core);
        let mut typed = None;
        let id = core.tasks.borrow_mut().insert_with(|id| {
            let cell: Rc<HandleInner<TaskCell<F>>> = Rc::new(HandleInner::new(
                site,
                TaskCell {
                    header: TaskHeader {
                        number: TASK_COUNTER.fetch_add(1, Ordering::Relaxed),
                        site,
                        core: weak,
                        waker: WakerSource::new(id, remote),
                        state: Cell::new(TaskState::Pending),
                        scheduled: Cell::new(false),
                        started: Cell::new(false),
                        future_live: Cell::new(true),
                        must_cancel: Cell::new(false),
                        cancel_requests: Cell::new(0),
                        extra: Cell::new(None),
                        completion: Completion::default(),
                        fut_waiter: Cell::default(),
                        id_waits: Cell::new(0),
                        retrieved: Cell::new(false),
                    },
                    future: UnsafeCell::new(ManuallyDrop::new(fut)),
                    outcome: OutcomeCell::new(),
                },
            ));
            typed = Some(cell.clone() as Rc<HandleInner<dyn TaskObj<OkOf<F>>>>);
            Handle::from_inner(cell)
        });
        core.schedule_task(id);
        Ok(Task {
            inner: typed.expect("insert_with ran the closure"),
            key: None,
        })
    }
}

/// Wraps `fut` in a task on the running loop (asyncio's
/// `asyncio.create_task`). Fails with `no running event loop` outside one.
#[track_caller]
pub fn create_task<F>(fut: F) -> Result<Task<OkOf<F>>, LoopError>
where
    F: StdFuture + 'static,
    F::Output: TaskOutput,
{
    crate::event_loop::get_running_loop()?.create_task(fut)
}

/// The task whose step is running (asyncio's `current_task()`), if any.
pub fn current_task() -> Option<TaskRef> {
    let id = current_task_id()?;
    let lp = crate::event_loop::get_running_loop().ok()?;
    let handle = lp.core().tasks.borrow().get(id).cloned()?;
    Some(TaskRef { handle })
}

/// Every task of the running loop that is not done (asyncio's
/// `all_tasks()`); empty outside a running loop.
pub fn all_tasks() -> Vec<TaskRef> {
    match crate::event_loop::get_running_loop() {
        Ok(lp) => lp.all_tasks(),
        Err(_) => Vec::new(),
    }
}

impl LoopRef {
    /// Every task of this loop that is not done.
    pub fn all_tasks(&self) -> Vec<TaskRef> {
        self.core()
            .tasks
            .borrow()
            .values()
            .map(|h| TaskRef { handle: h.clone() })
            .collect()
    }
}

impl<T: 'static> Task<T> {
    fn header(&self) -> &TaskHeader {
        self.inner.callback().header()
    }

    /// Requests cancellation (asyncio's `cancel()`); false if already done.
    pub fn cancel(&self) -> bool {
        self.header().cancel(None)
    }

    /// True if the task runs on `lp`.
    pub(crate) fn belongs_to(&self, lp: &LoopRef) -> bool {
        std::ptr::eq(self.header().core.as_ptr(), Rc::as_ptr(lp.core()))
    }

    /// Requests cancellation with a message, carried by the
    /// [`CancelledError`] the task sees.
    pub fn cancel_with(&self, msg: impl Into<String>) -> bool {
        self.header().cancel(Some(msg.into()))
    }

    /// Number of cancellation requests not yet withdrawn with `uncancel`.
    pub fn cancelling(&self) -> u16 {
        self.header().cancel_requests.get()
    }

    /// Withdraws one cancellation request; returns the remaining count.
    pub fn uncancel(&self) -> u16 {
        self.header().uncancel()
    }

    /// True if the task ended cancelled.
    pub fn cancelled(&self) -> bool {
        self.header().state.get() == TaskState::Cancelled
    }

    /// True once the task ended, whichever way.
    pub fn done(&self) -> bool {
        self.header().is_done()
    }

    /// True if the task ended with an exception: an `Err` output or a panic
    /// (asyncio: `done() and not cancelled() and exception() is not None`,
    /// asked without retrieving anything).
    pub fn failed(&self) -> bool {
        self.header().state.get() == TaskState::Failed
    }

    /// The task's name; `Task-N` unless set.
    pub fn get_name(&self) -> String {
        self.header().name()
    }

    /// Renames the task.
    pub fn set_name(&self, name: impl Into<String>) {
        self.header().set_name(name.into());
    }

    /// An untyped handle to the same task.
    pub fn as_ref(&self) -> TaskRef {
        TaskRef {
            handle: Handle::from_inner(self.inner.clone() as Rc<HandleInner<dyn Invoke>>),
        }
    }

    /// Calls `f` (via `call_soon`) once the task is done, in registration
    /// order; at once (on the next iteration) if it is already done.
    pub fn add_done_callback(&self, f: impl FnOnce(&Task<T>) + 'static) -> DoneCallbackId {
        let me = self.clone();
        self.header().add_done_callback(Box::new(move || f(&me)))
    }

    /// Tells `to` (`index`) when the pending task completes, inline
    /// rather than through the ready queue (`gather`); removed with
    /// `remove_done_callback`. On a done task it is never told.
    pub(crate) fn notify_when_done(&self, to: &Rc<dyn Notify>, index: usize) -> DoneCallbackId {
        debug_assert!(!self.done(), "a done task is never told");
        self.header().completion.add_notify(to.clone(), index)
    }

    /// Removes a done callback not yet scheduled; true if it was there.
    pub fn remove_done_callback(&self, id: DoneCallbackId) -> bool {
        self.header().completion.remove_callback(id)
    }

    /// The exception (asyncio's `exception()`): `Ok(None)` after a
    /// result, `Ok(Some(e))` after a failure (an `Err` or a panic), `Err`
    /// when cancelled (the `CancelledError`) or pending (`Exception is not
    /// set.`). Answers any number of times.
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let t = lp.create_task(async { Err::<(), _>(aioloop::Error::msg("no")) }).unwrap();
    /// let _ = lp.run_until_complete(t.clone());
    /// assert_eq!(t.exception().unwrap().unwrap().to_string(), "no");
    /// assert_eq!(t.exception().unwrap().unwrap().to_string(), "no");
    /// ```
    pub fn exception(&self) -> Result<Option<Error>, Error> {
        self.header().retrieved.set(true);
        self.inner.callback().outcome().exception()
    }

    /// Waits for the task and moves its result out, for a `T` that is not
    /// `Clone`. Every other reader then gets `Result was already taken.`
    /// from `result()` (a failure stays for all).
    ///
    /// ```
    /// #[derive(Debug)]
    /// struct Conn; // not Clone
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let t = lp.create_task(async { Ok(Conn) }).unwrap();
    /// let conn: Conn = lp.run_until_complete(t.clone().take()).unwrap();
    /// # let _ = conn;
    /// assert!(t.done());
    /// ```
    pub fn take(self) -> TaskAwait<T> {
        TaskAwait {
            task: self,
            retrieve: Task::take_outcome,
        }
    }

    /// Counts the task's failure as looked at (asyncio's `_log_traceback =
    /// False`), as a combinator that owns the child's outcome does.
    pub(crate) fn mark_retrieved(&self) {
        self.header().retrieved.set(true);
    }

    /// Moves a value out of a done task (`take`, and the tasks that
    /// combinators make for a plain future, which nobody else can read).
    pub(crate) fn take_outcome(&self) -> Result<T, Error> {
        self.header().retrieved.set(true);
        self.inner.callback().outcome().take()
    }

    /// The poll of every await of this task: `Ready(Ok(()))` once it is
    /// done, `Ready(Err)` for a refused await (itself, another loop's).
    #[inline]
    fn poll_done(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let h = self.inner.callback().header();
        if !h.is_done() {
            let site = WaitSite::new(WaitKind::Task, self);
            match park_on_task(h, site, &mut self.key, cx) {
                Ok(true) => {}
                Ok(false) => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        if let Some(k) = self.key.take() {
            h.unregister(k);
            // Resumed after parking here: a cancel requested since the
            // awaited task ended is delivered now, as `Future::poll_with`.
            if let Some(c) = take_cancel_request() {
                if h.state.get() != TaskState::Cancelled {
                    // `__wakeup` read the outcome (`future.result()`).
                    h.retrieved.set(true);
                    return Poll::Ready(Err(c.into()));
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

/// Where a pending task is awaited: the refusals (itself, another loop's
/// task), the cancellation point, then the registration. `Ok(true)` once
/// the awaited task is done.
fn park_on_task(
    h: &TaskHeader,
    site: WaitSite,
    key: &mut Option<WaiterKey>,
    cx: &mut Context<'_>,
) -> Result<bool, Error> {
    let refusal = with_current(|me| {
        if std::ptr::eq(me, h) {
            Some(LoopError::AwaitOnItself(header_repr(me)))
        } else if !std::ptr::eq(me.core.as_ptr(), h.core.as_ptr()) {
            Some(LoopError::DifferentLoop(header_repr(me), header_repr(h)))
        } else {
            None
        }
    })
    .flatten();
    if let Some(e) = refusal {
        // asyncio's `__step` throws these into the coroutine: checked with
        // CPython 3.11 and 3.13 (`tests/tasks.rs`).
        return Err(e.into());
    }
    if let Some(c) = take_cancel_request() {
        // asyncio (`__step`: `_fut_waiter.cancel()`): cancel the awaited
        // task and stay parked until it is done; its outcome — cancelled,
        // or a result if it refuses — is what this await returns.
        if !h.cancel(c.message().map(str::to_owned)) {
            if let Some(k) = key.take() {
                h.unregister(k);
            }
            return Err(c.into());
        }
    }
    match poll_task_done(h, site, key, cx) {
        Poll::Ready(_) => Ok(true),
        Poll::Pending => {
            set_fut_waiter(FutWaiter::Task(h.id()));
            Ok(false)
        }
    }
}

impl<T: Clone + 'static> Task<T> {
    /// The result (asyncio's `result()`): a clone of the value, or the
    /// exception / cancellation / panic as an error; `Result is not set.`
    /// if pending. Answers any number of times.
    pub fn result(&self) -> Result<T, Error> {
        self.header().retrieved.set(true);
        self.inner.callback().outcome().result()
    }
}

impl<T> fmt::Debug for Task<T> {
    /// asyncio's repr: `<Task pending name='Task-3' created at src/main.rs:40>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failure = self.inner.callback().outcome().failure();
        describe_task(
            self.inner.callback().header(),
            self.inner.site(),
            failure,
            f,
        )
    }
}

/// asyncio's repr of the task behind a slab handle.
pub(crate) fn task_repr(handle: &Handle) -> String {
    struct Repr<'a>(&'a Handle);
    impl fmt::Display for Repr<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self.0.task_header() {
                Some(h) => {
                    describe_task(h, self.0.source_location(), self.0.task_failure(false), f)
                }
                None => write!(f, "{:?}", self.0),
            }
        }
    }
    Repr(handle).to_string()
}

/// asyncio's `_task_repr_info`: the state (`cancelling` while a request
/// is counted, as `task.cancelling()`, even one handed on to the awaited
/// future), the name, where it was created, and a failure's exception.
// CPython 3.11.7, 3.12.1, 3.13.0: a task parked on a future and cancelled
// is `<Task cancelling ...>`; a failed one `<Task finished ... exception=ValueError('x')>`.
fn describe_task(
    h: &TaskHeader,
    site: &Location<'_>,
    failure: Option<Error>,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    let state = match h.state.get() {
        TaskState::Pending | TaskState::Running if h.cancel_requests.get() > 0 => "cancelling",
        TaskState::Pending | TaskState::Running => "pending",
        TaskState::Finished | TaskState::Failed => "finished",
        TaskState::Cancelled => "cancelled",
    };
    write!(
        f,
        "<Task {state} name='{}' created at {}:{}",
        h.name(),
        site.file(),
        site.line()
    )?;
    match failure {
        Some(e) if h.state.get() == TaskState::Failed => write!(f, " exception={e:?}>"),
        _ => f.write_str(">"),
    }
}

impl TaskRef {
    pub(crate) fn header(&self) -> &TaskHeader {
        self.handle
            .task_header()
            .expect("a TaskRef always holds a task")
    }
    /// See [`Task::cancel`].
    pub fn cancel(&self) -> bool {
        self.header().cancel(None)
    }
    /// See [`Task::cancel_with`].
    pub fn cancel_with(&self, msg: impl Into<String>) -> bool {
        self.header().cancel(Some(msg.into()))
    }
    /// See [`Task::cancelling`].
    pub fn cancelling(&self) -> u16 {
        self.header().cancel_requests.get()
    }
    /// See [`Task::uncancel`].
    pub fn uncancel(&self) -> u16 {
        self.header().uncancel()
    }
    /// See [`Task::done`].
    pub fn done(&self) -> bool {
        self.header().is_done()
    }
    /// See [`Task::cancelled`].
    pub fn cancelled(&self) -> bool {
        self.header().state.get() == TaskState::Cancelled
    }
    /// See [`Task::failed`].
    pub fn failed(&self) -> bool {
        self.header().state.get() == TaskState::Failed
    }
    /// See [`Task::get_name`].
    pub fn get_name(&self) -> String {
        self.header().name()
    }
    /// See [`Task::set_name`].
    pub fn set_name(&self, name: impl Into<String>) {
        self.header().set_name(name.into());
    }
    /// Number of `Waker`s of this task alive anywhere (clones held by
    /// timers, foreign futures, other threads): when it is zero and the task
    /// waits on nothing of aioloop's, nothing can ever wake it.
    pub fn waker_count(&self) -> usize {
        self.header().waker.live_wakers()
    }

    /// The failure of a done task (an `Err` or a panic; not a
    /// cancellation), which then counts as retrieved: what `asyncio.run`
    /// reports of a leftover task.
    pub(crate) fn failure(&self) -> Option<Error> {
        self.handle.task_failure(true)
    }

    /// Waits until the task is done, whichever way, without retrieving its
    /// outcome (what `asyncio.run` does with leftover tasks).
    pub fn wait_done(&self) -> WaitDone<'_> {
        WaitDone {
            header: self.header(),
            site: WaitSite::new(WaitKind::Task, self),
            key: None,
        }
    }
}

impl fmt::Debug for TaskRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        describe_task(
            self.header(),
            self.handle.source_location(),
            self.handle.task_failure(false),
            f,
        )
    }
}

/// Registers the current context on a task's waiter list until it is done.
fn poll_task_done(
    h: &TaskHeader,
    site: WaitSite,
    key: &mut Option<WaiterKey>,
    cx: &mut Context<'_>,
) -> Poll<Result<(), CancelledError>> {
    if let Some(c) = take_cancel_request() {
        if let Some(k) = key.take() {
            h.unregister(k);
        }
        return Poll::Ready(Err(c));
    }
    if h.is_done() {
        *key = None;
        return Poll::Ready(Ok(()));
    }
    let Some(core) = h.core.upgrade() else {
        return Poll::Pending;
    };
    *key = Some(h.completion.register(*key, cx, Some(&core), site));
    Poll::Pending
}

/// The future of [`TaskRef::wait_done`].
pub struct WaitDone<'a> {
    header: &'a TaskHeader,
    site: WaitSite,
    key: Option<WaiterKey>,
}

impl StdFuture for WaitDone<'_> {
    type Output = Result<(), CancelledError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        poll_task_done(this.header, this.site, &mut this.key, cx)
    }
}

impl Drop for WaitDone<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.header.unregister(k);
        }
    }
}

/// Awaiting a [`Task`]: a cancellation point. Cancelling the awaiting task
/// cancels the awaited one too, as asyncio does. Every await gets a clone of
/// the result; the outcome stays for `result()` and the next await.
impl<T: Clone + 'static> StdFuture for Task<T> {
    type Output = Result<T, Error>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match this.poll_done(cx) {
            Poll::Ready(Ok(())) => Poll::Ready(this.result()),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// `(&task).await`: awaits another handle to the same task.
impl<T: Clone + 'static> IntoFuture for &Task<T> {
    type Output = Result<T, Error>;
    type IntoFuture = Task<T>;
    fn into_future(self) -> Task<T> {
        self.clone()
    }
}

/// Awaiting a task and reading its outcome in a given way: the future of
/// [`Task::take`] (which moves the result out), and what the combinators
/// await. A cancellation point, like awaiting the task.
pub struct TaskAwait<T: 'static> {
    task: Task<T>,
    retrieve: fn(&Task<T>) -> Result<T, Error>,
}

impl<T: 'static> TaskAwait<T> {
    /// Awaits `task`, reading its outcome with `retrieve`.
    pub(crate) fn new(task: Task<T>, retrieve: fn(&Task<T>) -> Result<T, Error>) -> Self {
        TaskAwait { task, retrieve }
    }

    /// The task awaited.
    pub fn task(&self) -> &Task<T> {
        &self.task
    }
}

impl<T: 'static> StdFuture for TaskAwait<T> {
    type Output = Result<T, Error>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match this.task.poll_done(cx) {
            Poll::Ready(Ok(())) => Poll::Ready((this.retrieve)(&this.task)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: 'static> fmt::Debug for TaskAwait<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskAwait({:?})", self.task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pending task pays for the header: keep it small (the memory
    /// target is 300 bytes of RSS per parked task, all included; at 128
    /// bytes a task with a small future fits a 224-byte malloc chunk).
    #[test]
    fn the_task_header_stays_compact() {
        assert!(
            std::mem::size_of::<TaskHeader>() <= 128,
            "TaskHeader grew to {} bytes",
            std::mem::size_of::<TaskHeader>()
        );
        assert!(std::mem::size_of::<OutcomeCell<()>>() <= 16);
    }
}
