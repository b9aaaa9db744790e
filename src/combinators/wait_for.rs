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
//!   the awaiting task ran again, its result wins;
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
//! # The outcome: `Result<T, WaitForError<E>>`
//!
//! [`WaitForError`] flattens what can come out — asyncio's `TimeoutError`,
//! `CancelledError`, the inner exception `E`, a panic — into one enum. It
//! converts from [`TimeoutError`], [`CancelledError`] and [`TaskError`], so
//! in a coroutine returning `Result<_, WaitForError<E>>` every aioloop
//! awaitable works with `?`; and it implements [`Exception`], so a task
//! whose `?` propagates the `Cancelled` variant ends *cancelled*, as
//! asyncio's does, while one propagating `Timeout` ends *failed*.
//!
//! # Invariants
//!
//! - When `wait_for` returns, the inner task is done: never left running.
//! - The awaiting task's `cancelling()` count is unchanged by a timeout.
//!
//! [`timeout`]: crate::timeout

use std::fmt;
use std::future::IntoFuture;
use std::time::Duration;

use crate::combinators::timeout::{self, Exit};
use crate::debug::NeverAwaited;
use crate::errors::{
    CancelledError, Exception, InvalidStateError, LoopError, PanicError, TaskError, TaskOutput,
    TimeoutError,
};
use crate::tasks::{create_task, Task};

/// Something `wait_for` and `shield` can run as a task: a Rust future (spawned
/// on the running loop) or a [`Task`] handle (taken as it is).
///
/// ```
/// use aioloop::{create_task, wait_for, EventLoop};
/// use std::time::Duration;
///
/// let lp = EventLoop::with_virtual_clock().unwrap();
/// let v = lp.run_until_complete(async {
///     let a = wait_for(async { 1u8 }, Duration::from_secs(1)).await?; // a future
///     let t = create_task(async { 2u8 }).unwrap();
///     let b = wait_for(t, Duration::from_secs(1)).await?; // a task
///     Ok::<_, aioloop::WaitForError>(a + b)
/// }).unwrap().unwrap();
/// assert_eq!(v, 3);
/// ```
pub trait IntoTask {
    /// The task's result type.
    type Ok: 'static;
    /// The task's exception type.
    type Err: Exception;
    /// The task: a new one on the running loop for a future (so this fails
    /// with `no running event loop` outside one), the handle itself for a
    /// task.
    fn into_task(self) -> Result<Task<Self::Ok, Self::Err>, LoopError>;
}

impl<T: 'static, E: Exception> IntoTask for Task<T, E> {
    type Ok = T;
    type Err = E;
    fn into_task(self) -> Result<Task<T, E>, LoopError> {
        Ok(self)
    }
}

impl<F> IntoTask for F
where
    F: std::future::Future + 'static,
    F::Output: TaskOutput,
{
    type Ok = <F::Output as TaskOutput>::Ok;
    type Err = <F::Output as TaskOutput>::Err;
    #[track_caller]
    fn into_task(self) -> Result<Task<Self::Ok, Self::Err>, LoopError> {
        create_task(self)
    }
}

/// What [`wait_for`] and [`Timeout::run`](crate::Timeout::run) fail with:
/// asyncio's `TimeoutError`, `CancelledError`, or the inner awaitable's own
/// ending.
///
/// `E` is the inner exception type ([`TaskOutput::Err`]).
///
/// ```
/// use aioloop::{sleep, CancelledError, TimeoutError, WaitForError};
///
/// // `?` converts the errors of aioloop's awaitables:
/// async fn step() -> Result<(), WaitForError> {
///     sleep(std::time::Duration::ZERO).await?;
///     Ok(())
/// }
/// let e: WaitForError = TimeoutError.into();
/// assert!(e.is_timeout());
/// assert_eq!(e.to_string(), "TimeoutError: timed out");
/// assert!(WaitForError::<()>::from(CancelledError::new(None)).is_cancelled());
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum WaitForError<E = std::convert::Infallible> {
    /// The deadline passed; the inner awaitable was cancelled and is done.
    Timeout(TimeoutError),
    /// The awaiting task was cancelled (the inner one was cancelled with
    /// it), or the inner task was cancelled on its own.
    Cancelled(CancelledError),
    /// The inner task panicked (`wait_for` only: inside `Timeout::run` a
    /// panic unwinds through the current task like any other).
    Panicked(PanicError),
    /// The inner awaitable ended with its own error.
    Exception(E),
    /// The inner task's outcome was already taken by another await.
    InvalidState(InvalidStateError),
    /// A `Timeout` misused: entered twice, or outside a task (asyncio
    /// raises `RuntimeError` with the same text).
    State(crate::combinators::timeout::ScopeError),
}

impl<E> WaitForError<E> {
    /// True for [`WaitForError::Timeout`].
    pub fn is_timeout(&self) -> bool {
        matches!(self, WaitForError::Timeout(_))
    }

    /// True for [`WaitForError::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, WaitForError::Cancelled(_))
    }
}

impl<E: Exception> WaitForError<E> {
    /// Classifies an inner error: a cancellation carried by `E` is reported
    /// as one, as the task would have ended cancelled.
    pub(crate) fn from_exception(e: E) -> Self {
        match e.as_cancelled() {
            Some(c) => WaitForError::Cancelled(c.clone()),
            None => WaitForError::Exception(e),
        }
    }
}

impl<E> From<TimeoutError> for WaitForError<E> {
    fn from(t: TimeoutError) -> Self {
        WaitForError::Timeout(t)
    }
}

impl<E> From<CancelledError> for WaitForError<E> {
    fn from(c: CancelledError) -> Self {
        WaitForError::Cancelled(c)
    }
}

impl<E> From<TaskError<E>> for WaitForError<E> {
    fn from(e: TaskError<E>) -> Self {
        match e {
            TaskError::Cancelled(c) => WaitForError::Cancelled(c),
            TaskError::Panicked(p) => WaitForError::Panicked(p),
            TaskError::Exception(e) => WaitForError::Exception(e),
            TaskError::InvalidState(s) => WaitForError::InvalidState(s),
        }
    }
}

/// The inner awaitable of most aioloop code returns `Result<T,
/// CancelledError>`, whose `CancelledError` never reaches
/// [`WaitForError::Exception`] (a cancellation ends the task cancelled):
/// this lets `?` forward such a `WaitForError<CancelledError>` from a
/// coroutine returning `Result<_, WaitForError>`.
impl From<WaitForError<CancelledError>> for WaitForError {
    fn from(e: WaitForError<CancelledError>) -> Self {
        e.map_exception(WaitForError::Cancelled)
    }
}

impl<E> WaitForError<E> {
    /// Converts the inner exception with `f`, keeping the other variants;
    /// `f` may turn it into any variant (a cancellation, say).
    ///
    /// ```
    /// use aioloop::WaitForError;
    ///
    /// let e: WaitForError<std::io::Error> = WaitForError::Exception(std::io::ErrorKind::Other.into());
    /// let e: WaitForError<String> = e.map_exception(|io| WaitForError::Exception(io.to_string()));
    /// assert_eq!(e.to_string(), "other error");
    /// ```
    pub fn map_exception<F>(self, f: impl FnOnce(E) -> WaitForError<F>) -> WaitForError<F> {
        match self {
            WaitForError::Timeout(t) => WaitForError::Timeout(t),
            WaitForError::Cancelled(c) => WaitForError::Cancelled(c),
            WaitForError::Panicked(p) => WaitForError::Panicked(p),
            WaitForError::Exception(e) => f(e),
            WaitForError::InvalidState(s) => WaitForError::InvalidState(s),
            WaitForError::State(s) => WaitForError::State(s),
        }
    }
}

impl<E: fmt::Display> fmt::Display for WaitForError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitForError::Timeout(t) => write!(f, "TimeoutError: {t}"),
            WaitForError::Cancelled(c) => write!(f, "CancelledError: {c}"),
            WaitForError::Panicked(p) => fmt::Display::fmt(p, f),
            WaitForError::Exception(e) => fmt::Display::fmt(e, f),
            WaitForError::InvalidState(s) => write!(f, "InvalidStateError: {s}"),
            WaitForError::State(s) => write!(f, "RuntimeError: {s}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for WaitForError<E> {}

impl<E: Exception> Exception for WaitForError<E> {
    fn as_cancelled(&self) -> Option<&CancelledError> {
        match self {
            WaitForError::Cancelled(c) => Some(c),
            WaitForError::Exception(e) => e.as_cancelled(),
            _ => None,
        }
    }
}

/// Waits for `aw` to finish, at most `timeout` (asyncio's
/// `asyncio.wait_for`); `None` waits for ever. `aw` runs as its own task.
///
/// - On expiry the inner task is cancelled and awaited to its end — its
///   cleanup runs, even one that awaits — then `Err(WaitForError::Timeout)`
///   is returned. An inner task that catches the cancellation and returns a
///   value has that value returned, as does one already done when the
///   expiry comes.
/// - Cancelling the awaiting task cancels the inner one too, and gives
///   `Err(WaitForError::Cancelled)` once it is done.
/// - A zero timeout cancels the inner task before its first step.
///
/// Must be awaited inside an aioloop task.
///
/// ```
/// use aioloop::{sleep, wait_for, EventLoop, WaitForError};
/// use std::time::Duration;
///
/// let lp = EventLoop::with_virtual_clock().unwrap();
/// let out = lp.run_until_complete(async {
///     let slow = sleep(Duration::from_secs(10));
///     match wait_for(slow, Duration::from_secs(1)).await {
///         Err(WaitForError::Timeout(_)) => "timed out",
///         _ => "finished",
///     }
/// }).unwrap().unwrap();
/// assert_eq!(out, "timed out");
/// assert_eq!(lp.time(), 1.0);
/// ```
///
/// # Panics
///
/// When a future (not a task) is given and no aioloop loop is running.
#[track_caller]
pub fn wait_for<I: IntoTask + 'static>(
    aw: I,
    timeout: impl Into<Option<Duration>>,
) -> WaitFor<I::Ok, I::Err> {
    WaitFor {
        inner: Box::pin(wait_for_inner(aw, timeout.into())),
        created: NeverAwaited::new(),
    }
}

/// The future of [`wait_for`]: the awaitable asyncio's `wait_for` coroutine
/// is. Boxed, so that it has a name (and can report, in debug mode, being
/// dropped before it was ever awaited).
#[must_use = "futures do nothing unless awaited"]
pub struct WaitFor<T, E> {
    inner: std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, WaitForError<E>>>>>,
    created: NeverAwaited,
}

impl<T, E> std::future::Future for WaitFor<T, E> {
    type Output = Result<T, WaitForError<E>>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.created.polled();
        self.inner.as_mut().poll(cx)
    }
}

impl<T, E> Drop for WaitFor<T, E> {
    fn drop(&mut self) {
        self.created.check("wait_for");
    }
}

impl<T, E> std::fmt::Debug for WaitFor<T, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WaitFor")
    }
}

async fn wait_for_inner<I: IntoTask>(
    aw: I,
    timeout: Option<Duration>,
) -> Result<I::Ok, WaitForError<I::Err>> {
    let task = aw
        .into_task()
        .expect("wait_for() must be awaited inside a running aioloop loop");
    let Some(delay) = timeout else {
        return task.await.map_err(WaitForError::from);
    };
    if delay.is_zero() {
        return expire_now(task).await;
    }
    let cm = timeout::timeout(delay);
    match cm.run_raw(task.into_future()).await {
        Exit::Output(r) => r.map_err(WaitForError::from),
        Exit::Timeout => Err(WaitForError::Timeout(TimeoutError)),
        Exit::Cancelled(c) => Err(WaitForError::Cancelled(c)),
        Exit::Refused(e) => Err(WaitForError::State(e)),
    }
}

/// A zero timeout, asyncio's `timeout <= 0` branch: no timer, the task is
/// cancelled at once (before its first step if it has not run yet).
async fn expire_now<T: 'static, E: Exception>(task: Task<T, E>) -> Result<T, WaitForError<E>> {
    if task.done() {
        return task.await.map_err(WaitForError::from);
    }
    task.cancel();
    // asyncio's `_cancel_and_wait`: the awaiting task's own cancellation
    // interrupts the wait; the inner task stays cancelled.
    let r = task.as_ref();
    r.wait_done().await?;
    match task.await {
        Err(TaskError::Cancelled(_)) => Err(WaitForError::Timeout(TimeoutError)),
        r => r.map_err(WaitForError::from),
    }
}
