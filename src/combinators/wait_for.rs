//! `wait_for(aw, timeout)`: asyncio's `asyncio.wait_for`, and the error type
//! shared by everything that can time out.
//!
//! asyncio 3.12 rewrote `wait_for` as `async with timeout(t): return await
//! fut` (`Lib/asyncio/tasks.py`), so its rules are those of [`timeout`]:
//!
//! - on expiry the inner awaitable is cancelled, and `wait_for` **waits for
//!   it to finish** (its cleanup may await) before returning `TimeoutError`;
//! - a cancellation of the awaiting task cancels the inner one too and comes
//!   out as `CancelledError`;
//! - an inner awaitable that catches the cancellation and returns a value
//!   has its value returned, timeout or not (3.11's `wait_for` does the
//!   same; checked with CPython 3.11);
//! - when the inner one finishes in the same iteration as the expiry, before
//!   the awaiting task ran again, the result is lost and `TimeoutError`
//!   returned (CPython 3.12.1 and 3.13.0; 3.11.7's `wait_for` returned
//!   the result);
//! - a zero timeout cancels the inner task before its first step, waits for
//!   it and returns `TimeoutError` (or the result if it was already done).
//!
//! The awaitable runs as its own task, as in 3.11 (3.12 awaits a coroutine
//! in the current task): anything [`IntoTask`] — a Rust future, which is
//! spawned with `create_task`, or a [`Task`] handle, awaited as it is.
//! Its own task gives it asyncio's fallback for free: a foreign future that
//! is no cancellation point is dropped when cancelled, and a panic stays
//! inside it.
//!
//! # The outcome: `Result<T, Error>`
//!
//! A timeout is [`ErrorKind::Timeout`](crate::ErrorKind::Timeout), a
//! cancellation of the awaiting task [`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled),
//! and the inner awaitable's own failure comes out as it is.
//!
//! # Invariants
//!
//! - When `wait_for` returns, the inner task is done: never left running.
//! - The awaiting task's `cancelling()` count is unchanged by a timeout.
//!
//! [`timeout`]: crate::timeout

use std::time::Duration;

use crate::combinators::timeout::{self, Exit};
use crate::debug::NeverAwaited;
use crate::errors::{Error, InvalidStateError, LoopError, TaskOutput, TimeoutError};
use crate::event_loop::{get_running_loop, LoopRef};
use crate::futures::Future;
use crate::tasks::{Task, TaskAwait};

/// Something the combinators (`wait_for`, `shield`, `gather`, `wait`,
/// `as_completed`, `run_until_complete`) can run as a task: a Rust future
/// (spawned on the running loop), a [`Task`] handle (taken as it is) or a
/// loop [`Future`] (awaited by a task of its own, so that cancelling it
/// cancels the future, as asyncio's `ensure_future` does).
///
/// A task or future given by the caller is read by clone, so its result
/// stays there for the caller (`T: Clone`); a task the combinator made for
/// a plain future has no other reader, and its result is moved out.
///
/// ```
/// use aioloop::{create_task, get_running_loop, wait_for, EventLoop};
/// use std::time::Duration;
///
/// let lp = EventLoop::with_virtual_clock().unwrap();
/// let v = lp.run_until_complete(async {
///     let a = wait_for(async { 1u8 }, Duration::from_secs(1)).await?; // a future
///     let t = create_task(async { 2u8 })?;
///     let b = wait_for(&t, Duration::from_secs(1)).await?; // a task
///     let f = get_running_loop()?.create_future();
///     f.set_result(3u8)?;
///     let c = wait_for(f, Duration::from_secs(1)).await?; // a loop future
///     Ok(a + b + c + t.result()?)
/// });
/// assert_eq!(v.unwrap(), 8);
/// ```
pub trait IntoTask {
    /// The task's result type.
    type Ok: 'static;
    /// The task: a new one on `lp` for a future, the handle itself for a
    /// task.
    fn into_task_on(self, lp: &LoopRef) -> Result<Task<Self::Ok>, LoopError>;
    /// [`into_task_on`](Self::into_task_on) the running loop (so a plain
    /// future fails with `no running event loop` outside one; a task does
    /// not need one).
    #[track_caller]
    fn into_task(self) -> Result<Task<Self::Ok>, LoopError>
    where
        Self: Sized,
    {
        match get_running_loop() {
            Ok(lp) => self.into_task_on(&lp),
            Err(e) => self.into_task_without_loop(e),
        }
    }
    /// What [`into_task`](Self::into_task) does outside a running loop: a
    /// task is still itself; anything else is refused with `e`.
    #[doc(hidden)]
    fn into_task_without_loop(self, e: LoopError) -> Result<Task<Self::Ok>, LoopError>;
    /// Reads the done task's outcome: a clone for the caller's own task,
    /// a move for one made here.
    #[doc(hidden)]
    fn outcome_of(task: &Task<Self::Ok>) -> Result<Self::Ok, Error>;

    /// True for a loop future or task attached to a loop other than `lp`
    /// (what `run_until_complete` refuses, as asyncio's `ensure_future`).
    #[doc(hidden)]
    fn belongs_elsewhere(&self, _lp: &LoopRef) -> bool {
        false
    }
}

/// `&task`: the same task, read by clone.
impl<T: Clone + 'static> IntoTask for &Task<T> {
    type Ok = T;
    fn into_task_on(self, _: &LoopRef) -> Result<Task<T>, LoopError> {
        Ok(self.clone())
    }
    fn into_task_without_loop(self, _: LoopError) -> Result<Task<T>, LoopError> {
        Ok(self.clone())
    }
    fn outcome_of(task: &Task<T>) -> Result<T, Error> {
        task.result()
    }
    fn belongs_elsewhere(&self, lp: &LoopRef) -> bool {
        !self.belongs_to(lp)
    }
}

/// `&fut`: another handle to the same loop future, awaited by a task of
/// its own.
impl<T: Clone + 'static> IntoTask for &Future<T> {
    type Ok = T;
    #[track_caller]
    fn into_task_on(self, lp: &LoopRef) -> Result<Task<T>, LoopError> {
        lp.create_task(self.clone())
    }
    fn into_task_without_loop(self, e: LoopError) -> Result<Task<T>, LoopError> {
        Err(e)
    }
    fn outcome_of(task: &Task<T>) -> Result<T, Error> {
        task.take_outcome()
    }
    fn belongs_elsewhere(&self, lp: &LoopRef) -> bool {
        !self.belongs_to(lp)
    }
}

/// Any Rust future: a [`Task`] is taken as it is; anything else (a loop
/// [`Future`] included) is spawned as a task of its own, asyncio's
/// `ensure_future`.
///
/// Rust has no specialization, so this one implementation serves tasks
/// too, telling them apart by type (`Any`; the test folds away at compile
/// time).
impl<F> IntoTask for F
where
    F: std::future::Future + 'static,
    F::Output: TaskOutput,
{
    type Ok = <F::Output as TaskOutput>::Ok;
    #[track_caller]
    fn into_task_on(self, lp: &LoopRef) -> Result<Task<Self::Ok>, LoopError> {
        let mut me = Some(self);
        if let Some(task) = take_as::<Task<Self::Ok>, F>(&mut me) {
            return Ok(task);
        }
        match me {
            Some(fut) => lp.create_task(fut),
            None => unreachable!("`take_as` takes only when it returns Some"),
        }
    }
    fn into_task_without_loop(self, e: LoopError) -> Result<Task<Self::Ok>, LoopError> {
        let mut me = Some(self);
        take_as::<Task<Self::Ok>, F>(&mut me).ok_or(e)
    }
    fn outcome_of(task: &Task<Self::Ok>) -> Result<Self::Ok, Error> {
        // A task of the caller's: the result stays for its other readers,
        // so it is read by clone — through the task's own `Future` impl
        // (which exists, `F` being that task's type), since the bound
        // `T: Clone` cannot be named here. The task is done: one poll
        // answers, and registers nothing.
        let mut handle = Some(task.clone());
        if let Some(own) = take_as::<F, Task<Self::Ok>>(&mut handle) {
            let mut own = std::pin::pin!(own);
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            return match own.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(out) => out.into_result(),
                std::task::Poll::Pending => Err(InvalidStateError::ResultNotSet.into()),
            };
        }
        // A task made here for a plain future: nobody else can read it.
        task.take_outcome()
    }
    fn belongs_elsewhere(&self, lp: &LoopRef) -> bool {
        let any = self as &dyn std::any::Any;
        if let Some(t) = any.downcast_ref::<Task<Self::Ok>>() {
            return !t.belongs_to(lp);
        }
        any.downcast_ref::<Future<Self::Ok>>()
            .is_some_and(|f| !f.belongs_to(lp))
    }
}

/// Takes `v` as a `T`, if it is one (a type test resolved at compile time).
fn take_as<T: 'static, V: 'static>(v: &mut Option<V>) -> Option<T> {
    (v as &mut dyn std::any::Any)
        .downcast_mut::<Option<T>>()?
        .take()
}

/// Waits for `aw` to finish, at most `timeout` (asyncio's
/// `asyncio.wait_for`); `None` waits for ever. `aw` runs as its own task.
///
/// - On expiry the inner task is cancelled and awaited to its end — its
///   cleanup runs, even one that awaits — then a `TimeoutError` is
///   returned. An inner task that catches the cancellation and returns a
///   value has that value returned, as does one already done when the
///   expiry comes.
/// - Cancelling the awaiting task cancels the inner one too, and gives
///   `CancelledError` once it is done.
/// - A zero timeout cancels the inner task before its first step.
///
/// Outside a running loop, awaiting it fails with `no running event loop`.
///
/// ```
/// use aioloop::{sleep, wait_for, EventLoop};
/// use std::time::Duration;
///
/// let lp = EventLoop::with_virtual_clock().unwrap();
/// let out = lp.run_until_complete(async {
///     let slow = sleep(Duration::from_secs(10));
///     match wait_for(slow, Duration::from_secs(1)).await {
///         Err(e) if e.is_timeout() => "timed out",
///         _ => "finished",
///     }
/// });
/// assert_eq!(out.unwrap(), "timed out");
/// assert_eq!(lp.time(), 1.0);
/// ```
#[track_caller]
pub fn wait_for<I: IntoTask>(aw: I, timeout: impl Into<Option<Duration>>) -> WaitFor<I::Ok> {
    // The task starts now, as asyncio's `ensure_future` inside `wait_for`
    // would on the first step; a refusal waits to be awaited.
    let task = aw.into_task();
    WaitFor {
        inner: Box::pin(wait_for_inner(task, timeout.into(), I::outcome_of)),
        created: NeverAwaited::new(),
    }
}

/// The future of [`wait_for`]: the awaitable asyncio's `wait_for` coroutine
/// is. Boxed, so that it has a name (and can report, in debug mode, being
/// dropped before it was ever awaited).
#[must_use = "futures do nothing unless awaited"]
pub struct WaitFor<T> {
    inner: std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, Error>>>>,
    created: NeverAwaited,
}

impl<T> std::future::Future for WaitFor<T> {
    type Output = Result<T, Error>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.created.polled();
        self.inner.as_mut().poll(cx)
    }
}

impl<T> Drop for WaitFor<T> {
    fn drop(&mut self) {
        self.created.check("wait_for");
    }
}

impl<T> std::fmt::Debug for WaitFor<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WaitFor")
    }
}

/// `read`: how the task's outcome is read ([`IntoTask::outcome_of`]); a
/// function pointer, so that this future does not borrow what `aw` was.
async fn wait_for_inner<T: 'static>(
    task: Result<Task<T>, LoopError>,
    timeout: Option<Duration>,
    read: fn(&Task<T>) -> Result<T, Error>,
) -> Result<T, Error> {
    let task = task?;
    let Some(delay) = timeout else {
        return TaskAwait::new(task, read).await;
    };
    if delay.is_zero() {
        return expire_now(task, read).await;
    }
    let cm = timeout::timeout(delay)?;
    match cm.run_raw(TaskAwait::new(task, read)).await {
        Exit::Output(r) => r,
        Exit::Timeout => Err(TimeoutError.into()),
        Exit::Cancelled(c) => Err(c.into()),
        Exit::Refused(e) => Err(e.into()),
    }
}

/// A zero timeout, asyncio's `timeout <= 0` branch: no timer, the task is
/// cancelled at once (before its first step if it has not run yet).
async fn expire_now<T: 'static>(
    task: Task<T>,
    read: fn(&Task<T>) -> Result<T, Error>,
) -> Result<T, Error> {
    if task.done() {
        return read(&task);
    }
    task.cancel();
    // asyncio's `_cancel_and_wait`: the awaiting task's own cancellation
    // interrupts the wait; the inner task stays cancelled.
    task.as_ref().wait_done().await?;
    match read(&task) {
        Err(e) if e.is_cancelled() => Err(TimeoutError.into()),
        r => r,
    }
}
