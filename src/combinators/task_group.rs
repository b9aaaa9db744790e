//! `TaskGroup`: asyncio 3.11's structured concurrency, `async with
//! asyncio.TaskGroup() as tg:`.
//!
//! A group runs a **body** in the current task (the *parent*) and lets it,
//! and the children themselves, start **children** with
//! [`create_task`](TaskGroup::create_task). [`run`](TaskGroup::run) is the
//! `async with` block: it returns only once every child is done.
//!
//! ```text
//! asyncio                                   aioloop
//! async with TaskGroup() as tg:             TaskGroup::new().run(|tg| async move {
//!     tg.create_task(child())                   tg.create_task(child())?;
//!     await body_work()                         body_work().await?;
//!                                               Ok(())
//!                                           }).await
//! ```
//!
//! # Rules (asyncio's `Lib/asyncio/taskgroups.py`, checked against CPython
//! 3.11 in `tests/task_group.rs`)
//!
//! - The group waits for every child, including children still cleaning
//!   up after their cancellation, and children created by other children.
//! - The first child to fail (an exception or a panic) cancels every other
//!   child **and the parent task**, so that the body stops at its next
//!   cancellation point; the group withdraws that cancellation
//!   (`uncancel`) when it is done, so the parent's own code goes on.
//! - Every failure is reported, together, as an [`ExceptionGroup`]
//!   ([`ErrorKind::Group`](crate::ErrorKind::Group); asyncio's
//!   `ExceptionGroup('unhandled errors in a TaskGroup', …)`): children's
//!   failures in the order they happened, then the body's own. The group
//!   retrieves each child's failure, as asyncio's does: none is also
//!   reported as never retrieved.
//! - A child's cancellation is not a failure.
//! - A failure of the body (an `Err` other than a cancellation) cancels the
//!   children too and is reported last.
//! - Cancelling the parent from outside cancels the children; once they
//!   are done, the group returns the `CancelledError` (unless a child
//!   failed: failures win), which `?` propagates as a cancellation.
//! - `create_task` is refused, with asyncio's texts, before `run`
//!   (`has not been entered`), once the group is done (`is finished`) and
//!   while it is cancelling its children (`is shutting down`).
//!
//! # Invariants
//!
//! - A failure is reported by the group *and* stays in the child's handle,
//!   as in asyncio (an [`Error`] is shared, not moved).
//! - A child's result is never touched: await its handle, or read
//!   `result()`, after the group is done.
//! - If the `run` future is dropped before it is done (the parent task was
//!   cancelled while parked on a foreign future, which drops it), the group
//!   cancels its remaining children; it cannot wait for them.
//!
//! Deliberate difference: asyncio 3.11 calls `uncancel()` on the parent
//! when the body ends, so a child failing after that (while the group
//! waits for the others) leaves the parent with `cancelling() == 1` for
//! good; aioloop withdraws it after waiting, as later Pythons do.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::future::{poll_fn, Future as StdFuture};
use std::rc::{Rc, Weak};
use std::task::{Poll, Waker};

use crate::errors::{CancelledError, Error, ExceptionGroup, LoopError, TaskOutput};
use crate::event_loop::{get_running_loop, ExceptionContext, LoopRef};
use crate::tasks::{current_task, take_cancel_request, Task, TaskRef};

/// asyncio's `TaskGroup`: children that the group waits for, and cancels
/// together when one fails. See the [module docs](self) for every rule.
///
/// Clones share the group (the body gets one; pass clones to children
/// that start siblings).
///
/// ```
/// use aioloop::{sleep, Error, EventLoop, TaskGroup};
/// use std::time::Duration;
///
/// let lp = EventLoop::with_virtual_clock().unwrap();
/// let (out, cleaned) = lp.run_until_complete(async {
///     let slow_cancelled = std::rc::Rc::new(std::cell::Cell::new(false));
///     let flag = slow_cancelled.clone();
///     let out = TaskGroup::new().run(|tg| async move {
///         tg.create_task(async move {
///             let r = sleep(Duration::from_secs(60)).await;
///             flag.set(r.is_err());
///             r?;
///             Ok(())
///         })?;
///         tg.create_task(async {
///             sleep(Duration::from_secs(1)).await?;
///             Err::<(), _>(Error::msg("boom"))
///         })?;
///         sleep(Duration::from_secs(3600)).await?; // cancelled by the group at t=1
///         Ok(())
///     }).await;
///     Ok((out, slow_cancelled.get()))
/// }).unwrap();
/// let group = out.unwrap_err();
/// let failures = group.as_group().unwrap().exceptions();
/// assert_eq!(failures.len(), 1);
/// assert_eq!(failures[0].to_string(), "boom");
/// assert!(cleaned, "the first failure cancelled the sibling");
/// assert_eq!(lp.time(), 1.0, "and the body");
/// ```
pub struct TaskGroup {
    inner: Rc<RefCell<State>>,
}

impl Clone for TaskGroup {
    fn clone(&self) -> Self {
        TaskGroup {
            inner: self.inner.clone(),
        }
    }
}

struct State {
    entered: bool,
    exiting: bool,
    aborting: bool,
    lp: Option<LoopRef>,
    parent: Option<TaskRef>,
    /// Set once the group cancelled its parent: it must `uncancel` it.
    parent_cancel_requested: bool,
    /// Children not done yet, in creation order.
    tasks: BTreeMap<u64, TaskRef>,
    next_key: u64,
    errors: Vec<Error>,
    /// The parent waiting in the exit phase (asyncio's `_on_completed_fut`).
    exit_waker: Option<Waker>,
}

impl State {
    /// asyncio's `__repr__`: `<TaskGroup tasks=2 errors=1 cancelling>`.
    fn repr(&self) -> String {
        let mut s = String::from("<TaskGroup");
        if !self.tasks.is_empty() {
            s += &format!(" tasks={}", self.tasks.len());
        }
        if !self.errors.is_empty() {
            s += &format!(" errors={}", self.errors.len());
        }
        if self.aborting {
            s += " cancelling";
        } else if self.entered {
            s += " entered";
        }
        s + ">"
    }

    /// asyncio's `_abort`: marks the group aborting and returns the
    /// children to cancel (cancelled by the caller, with no borrow held).
    #[must_use]
    fn abort(&mut self) -> Vec<TaskRef> {
        self.aborting = true;
        self.tasks.values().filter(|t| !t.done()).cloned().collect()
    }
}

fn cancel_all(tasks: Vec<TaskRef>) {
    for t in tasks {
        t.cancel();
    }
}

impl Default for TaskGroup {
    fn default() -> Self {
        Self::new()
    }
}

impl TaskGroup {
    /// A group not yet entered (asyncio's `TaskGroup()`); start it with
    /// [`run`](TaskGroup::run).
    pub fn new() -> Self {
        TaskGroup {
            inner: Rc::new(RefCell::new(State {
                entered: false,
                exiting: false,
                aborting: false,
                lp: None,
                parent: None,
                parent_cancel_requested: false,
                tasks: BTreeMap::new(),
                next_key: 0,
                errors: Vec::new(),
                exit_waker: None,
            })),
        }
    }

    /// Starts `fut` as a child task of the group (asyncio's
    /// `tg.create_task`), and returns its handle.
    ///
    /// Refused before [`run`](TaskGroup::run) starts, once the group is
    /// finished, and while it cancels its children after a failure, with
    /// asyncio's texts:
    ///
    /// ```
    /// use aioloop::{EventLoop, TaskGroup};
    ///
    /// let lp = EventLoop::with_virtual_clock().unwrap();
    /// lp.run_until_complete(async {
    ///     let tg = TaskGroup::new();
    ///     let err = tg.create_task(async { 1 }).unwrap_err();
    ///     assert_eq!(err.to_string(), "TaskGroup <TaskGroup> has not been entered");
    ///     let child = tg.clone().run(|tg| async move {
    ///         Ok(tg.create_task(async { 6 * 7 }).unwrap())
    ///     }).await.unwrap();
    ///     assert_eq!(child.result().unwrap(), 42, "done when the group is");
    ///     let err = tg.create_task(async { 1 }).unwrap_err();
    ///     assert_eq!(err.to_string(), "TaskGroup <TaskGroup entered> is finished");
    ///     Ok(())
    /// }).unwrap();
    /// ```
    #[track_caller]
    pub fn create_task<F>(
        &self,
        fut: F,
    ) -> Result<Task<<F::Output as TaskOutput>::Ok>, TaskGroupStateError>
    where
        F: StdFuture + 'static,
        F::Output: TaskOutput,
    {
        let lp = {
            let st = self.inner.borrow();
            if !st.entered {
                return Err(TaskGroupStateError::NotEntered(st.repr()));
            }
            if st.exiting && st.tasks.is_empty() {
                return Err(TaskGroupStateError::Finished(st.repr()));
            }
            if st.aborting {
                return Err(TaskGroupStateError::ShuttingDown(st.repr()));
            }
            st.lp.clone().expect("an entered group knows its loop")
        };
        let task = lp.create_task(fut).map_err(TaskGroupStateError::Loop)?;
        let key = {
            let mut st = self.inner.borrow_mut();
            let key = st.next_key;
            st.next_key += 1;
            st.tasks.insert(key, task.as_ref());
            key
        };
        // Weak: the group holds its children, not the other way round.
        let group = Rc::downgrade(&self.inner);
        task.add_done_callback(move |t| {
            // asyncio's `_on_task_done` reads `task.exception()`: the
            // failure counts as retrieved (no never-retrieved report).
            let failure = t.exception().ok().flatten();
            on_task_done(&group, key, t.cancelled(), failure, t.as_ref());
        });
        Ok(task)
    }

    /// Runs `body` in the current task with this group entered, then waits
    /// for every child (asyncio's `async with tg:`), and returns the body's
    /// value, or every failure together.
    ///
    /// The body returns `Result<R, Error>`, so that `?` works on
    /// aioloop's awaitables (`CancelledError`) and on awaited children
    /// (`Error`); its `Err(Cancelled)` is a cancellation, any other
    /// `Err` a failure of the body. Refused if the group was entered before
    /// or if no task is running ([`ErrorKind::TaskGroupState`](crate::ErrorKind::TaskGroupState)).
    ///
    /// ```
    /// use aioloop::{sleep, EventLoop, TaskGroup};
    /// use std::time::Duration;
    ///
    /// let lp = EventLoop::with_virtual_clock().unwrap();
    /// let sum = lp.run_until_complete(async {
    ///     TaskGroup::new().run(|tg| async move {
    ///         let a = tg.create_task(async { sleep(Duration::from_secs(2)).await?; Ok(2) }).unwrap();
    ///         let b = tg.create_task(async { sleep(Duration::from_secs(1)).await?; Ok(1) }).unwrap();
    ///         Ok((a, b))
    ///     }).await.map(|(a, b)| a.result().unwrap() + b.result().unwrap())
    /// }).unwrap();
    /// assert_eq!(sum, 3);
    /// assert_eq!(lp.time(), 2.0, "run returned once both children were done");
    /// ```
    pub async fn run<R, B, Fut>(self, body: B) -> Result<R, Error>
    where
        B: FnOnce(TaskGroup) -> Fut,
        Fut: StdFuture<Output = Result<R, Error>>,
    {
        self.enter()?;
        let mut guard = AbortOnDrop {
            group: self.inner.clone(),
            armed: true,
        };
        let outcome = body(self.clone()).await;
        let result = self.exit(outcome).await;
        guard.armed = false;
        result
    }

    /// asyncio's `__aenter__`.
    fn enter(&self) -> Result<(), TaskGroupStateError> {
        let mut st = self.inner.borrow_mut();
        if st.entered {
            return Err(TaskGroupStateError::AlreadyEntered(st.repr()));
        }
        let lp = get_running_loop().map_err(TaskGroupStateError::Loop)?;
        let Some(parent) = current_task() else {
            return Err(TaskGroupStateError::NoParentTask(st.repr()));
        };
        st.lp = Some(lp);
        st.parent = Some(parent);
        st.entered = true;
        Ok(())
    }

    /// asyncio's `__aexit__`, given how the body ended.
    async fn exit<R>(&self, outcome: Result<R, Error>) -> Result<R, Error> {
        let mut propagate = None;
        let mut body_error = None;
        let mut body_cancel = None;
        let value = match outcome {
            Ok(v) => Some(v),
            Err(e) if e.is_cancelled() => {
                propagate = Some(e.clone());
                body_cancel = Some(e);
                None
            }
            Err(e) => {
                body_error = Some(e);
                None
            }
        };
        let to_cancel = {
            let mut st = self.inner.borrow_mut();
            st.exiting = true;
            if value.is_none() && !st.aborting {
                st.abort()
            } else {
                Vec::new()
            }
        };
        cancel_all(to_cancel);
        // A loop, as asyncio's: the parent may be cancelled again (and
        // again) while the children finish.
        while let Err(c) = self.wait_children().await {
            let to_cancel = {
                let mut st = self.inner.borrow_mut();
                if st.aborting {
                    Vec::new()
                } else {
                    // The parent is cancelled from outside.
                    propagate = Some(c.into());
                    st.abort()
                }
            };
            cancel_all(to_cancel);
        }
        let (mut errors, parent, cancel_requested) = {
            let mut st = self.inner.borrow_mut();
            let errors = std::mem::take(&mut st.errors);
            (errors, st.parent.take(), st.parent_cancel_requested)
        };
        if cancel_requested {
            // Our own cancellation of the parent is withdrawn; if it was
            // the only one, nothing propagates.
            if parent.is_some_and(|p| p.uncancel() == 0) {
                propagate = None;
            }
        }
        if let Some(c) = propagate {
            if errors.is_empty() {
                return Err(c);
            }
        }
        errors.extend(body_error);
        if !errors.is_empty() {
            return Err(ExceptionGroup::new("unhandled errors in a TaskGroup", errors).into());
        }
        match (value, body_cancel) {
            (Some(v), _) => Ok(v),
            (None, Some(c)) => Err(c),
            (None, None) => unreachable!("a body error is reported above"),
        }
    }

    /// Waits until the group has no child left (asyncio's `while
    /// self._tasks: await self._on_completed_fut`); a cancellation point.
    async fn wait_children(&self) -> Result<(), CancelledError> {
        poll_fn(|cx| {
            if self.inner.borrow().tasks.is_empty() {
                return Poll::Ready(Ok(()));
            }
            if let Some(c) = take_cancel_request() {
                return Poll::Ready(Err(c));
            }
            self.inner.borrow_mut().exit_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// asyncio's `_on_task_done`.
fn on_task_done(
    group: &Weak<RefCell<State>>,
    key: u64,
    cancelled: bool,
    failure: Option<Error>,
    child: TaskRef,
) {
    let Some(group) = group.upgrade() else {
        return;
    };
    let mut st = group.borrow_mut();
    st.tasks.remove(&key);
    let waker = if st.tasks.is_empty() {
        st.exit_waker.take()
    } else {
        None
    };
    let mut to_cancel = Vec::new();
    let mut parent_to_cancel = None;
    let mut orphan = None;
    // A child that ended cancelled is no failure, whatever its future
    // returned on the way.
    if let (false, Some(err)) = (cancelled, failure) {
        st.errors.push(err);
        match st.parent.clone() {
            Some(parent) if !parent.done() => {
                if !st.aborting && !st.parent_cancel_requested {
                    to_cancel = st.abort();
                    st.parent_cancel_requested = true;
                    parent_to_cancel = Some(parent);
                }
            }
            parent => orphan = Some((parent, st.lp.clone())),
        }
    }
    drop(st);
    if let Some(w) = waker {
        w.wake();
    }
    cancel_all(to_cancel);
    if let Some(parent) = parent_to_cancel {
        parent.cancel();
    }
    if let Some((parent, Some(lp))) = orphan {
        let parent = parent.map_or_else(|| "None".to_owned(), |p| format!("{p:?}"));
        lp.call_exception_handler(&ExceptionContext::new(format!(
            "Task {child:?} has errored out but its parent task {parent} is already completed"
        )));
    }
}

/// Where a child's future leaves a copy of its failure for the group.
struct AbortOnDrop {
    group: Rc<RefCell<State>>,
    armed: bool,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let to_cancel = {
            let mut st = self.group.borrow_mut();
            st.exiting = true;
            st.parent = None;
            let to_cancel = st.abort();
            st.tasks.clear();
            to_cancel
        };
        cancel_all(to_cancel);
    }
}

impl fmt::Debug for TaskGroup {
    /// asyncio's repr: `<TaskGroup tasks=2 errors=1 cancelling>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.borrow().repr())
    }
}

/// A [`TaskGroup`] refused a request (asyncio's `RuntimeError`); each
/// variant carries the group's repr, and `Display` is asyncio's text.
///
/// ```
/// use aioloop::TaskGroupStateError;
///
/// let e = TaskGroupStateError::Finished("<TaskGroup entered>".into());
/// assert_eq!(e.to_string(), "TaskGroup <TaskGroup entered> is finished");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum TaskGroupStateError {
    /// `create_task` before `run`.
    NotEntered(String),
    /// `run` on a group that was already run.
    AlreadyEntered(String),
    /// `create_task` once the group is done.
    Finished(String),
    /// `create_task` while the group cancels its children.
    ShuttingDown(String),
    /// `run` polled outside any task.
    NoParentTask(String),
    /// The loop refused (no running loop, or closed).
    Loop(LoopError),
}

impl fmt::Display for TaskGroupStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskGroupStateError::NotEntered(g) => write!(f, "TaskGroup {g} has not been entered"),
            TaskGroupStateError::AlreadyEntered(g) => {
                write!(f, "TaskGroup {g} has already been entered")
            }
            TaskGroupStateError::Finished(g) => write!(f, "TaskGroup {g} is finished"),
            TaskGroupStateError::ShuttingDown(g) => write!(f, "TaskGroup {g} is shutting down"),
            TaskGroupStateError::NoParentTask(g) => {
                write!(f, "TaskGroup {g} cannot determine the parent task")
            }
            TaskGroupStateError::Loop(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for TaskGroupStateError {}
