//! `wait(tasks, return_when, timeout)` and `as_completed(tasks, timeout)`:
//! asyncio's `asyncio.wait` and `asyncio.as_completed`.
//!
//! Both watch a set of tasks without owning their fate: neither cancels a
//! task, not even on timeout — the caller decides what to do with the ones
//! still pending. Both add a done callback to each task and, with a
//! timeout, one loop timer, as asyncio's `_wait` and `as_completed` do; both
//! are cancellation points, and cancelling the task that waits leaves the
//! watched tasks untouched.
//!
//! # `wait`
//!
//! Returns `(done, pending)`: the task handles themselves, each `Vec` in the
//! order of the input (asyncio returns two sets; a `Vec` keeps Rust's
//! handles usable without hashing). It returns when [`ReturnWhen`] says so,
//! or when the timeout passes; the split is made when it returns, so a task
//! that completed meanwhile is in `done`. A task that ended cancelled is no
//! exception for `FirstException`.
//!
//! # `as_completed`
//!
//! An async iterator: [`AsCompleted::next`] gives the outcome of the next
//! task to complete, in completion order, and `None` after one item per
//! task. When the timeout passes, every task not yet completed becomes one
//! `Err(Timeout)` item, after the outcomes that completed before it (as
//! asyncio queues a `None` per remaining task). As in asyncio 3.11, whose
//! `as_completed` is a generator, the callbacks and the timer start with the
//! first `next()`.
//!
//! Deliberate differences: `wait` on an empty set returns two empty `Vec`s
//! at once (asyncio raises `ValueError: Set of Tasks/Futures is empty.`; a
//! typed error for it would burden every caller with a second error case
//! that cannot happen with a non-empty set); a `next()` cancelled while
//! waiting does not use up an item (asyncio's cancelled `_wait_for_one()`
//! coroutine does), so iterating to the end still yields one item per task.

use std::collections::VecDeque;
use std::fmt;
use std::future::{poll_fn, Future as StdFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::done_queue::{DoneQueue, Event};
use crate::errors::{CancelledError, Exception, TaskError, TimeoutError};
use crate::tasks::{take_cancel_request, Task};

/// When [`wait`] returns (asyncio's `FIRST_COMPLETED`, `FIRST_EXCEPTION`,
/// `ALL_COMPLETED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReturnWhen {
    /// As soon as any task is done, whichever way.
    FirstCompleted,
    /// As soon as a task fails (an exception or a panic, not a
    /// cancellation); otherwise when all are done.
    FirstException,
    /// When every task is done (asyncio's default).
    AllCompleted,
}

/// Waits for `tasks` until `return_when` is met or `timeout` passes
/// (asyncio's `asyncio.wait`), and returns `(done, pending)`, each in input
/// order. Cancels nothing; see the [module docs](self).
///
/// ```
/// use aioloop::{create_task, sleep, wait, EventLoop, ReturnWhen};
/// use std::time::Duration;
///
/// let lp = EventLoop::with_virtual_clock().unwrap();
/// let (done, pending) = lp.run_until_complete(async {
///     let quick = create_task(sleep(Duration::from_secs(1))).unwrap();
///     let slow = create_task(sleep(Duration::from_secs(5))).unwrap();
///     wait([quick, slow], ReturnWhen::FirstCompleted, None).await
/// }).unwrap().unwrap();
/// assert_eq!((done.len(), pending.len()), (1, 1));
/// assert!(!pending[0].cancelled(), "wait cancels nothing");
/// assert_eq!(lp.time(), 1.0);
/// ```
pub fn wait<T: 'static, E: 'static>(
    tasks: impl IntoIterator<Item = Task<T, E>>,
    return_when: ReturnWhen,
    timeout: Option<Duration>,
) -> Wait<T, E> {
    Wait {
        q: Some(DoneQueue::new(tasks.into_iter().collect())),
        return_when,
        timeout,
        completed: 0,
    }
}

/// The future of [`wait`].
#[must_use = "futures do nothing unless you `.await` them"]
pub struct Wait<T: 'static, E: 'static> {
    /// `None` once it returned.
    q: Option<DoneQueue<T, E>>,
    return_when: ReturnWhen,
    timeout: Option<Duration>,
    /// asyncio's `counter`, counted up.
    completed: usize,
}

/// `(done, pending)`, as [`wait`] returns them.
pub type DonePending<T, E> = (Vec<Task<T, E>>, Vec<Task<T, E>>);

impl<T: 'static, E: 'static> StdFuture for Wait<T, E> {
    type Output = Result<DonePending<T, E>, CancelledError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let q = this.q.as_mut().expect("a wait polled after it completed");
        let n = q.len();
        let mut release = n == 0;
        q.start(this.timeout);
        while let Some(ev) = q.pop() {
            match ev {
                Event::Timeout => release = true,
                Event::Done(i) => {
                    this.completed += 1;
                    release |= this.completed == n
                        || match this.return_when {
                            ReturnWhen::FirstCompleted => true,
                            ReturnWhen::FirstException => q.tasks()[i].failed(),
                            ReturnWhen::AllCompleted => false,
                        };
                }
            }
        }
        if release {
            let tasks = this.q.take().expect("checked above").into_tasks();
            return Poll::Ready(Ok(tasks.into_iter().partition(|t| t.done())));
        }
        if let Some(c) = take_cancel_request() {
            this.q = None;
            return Poll::Ready(Err(c));
        }
        q.park(cx);
        Poll::Pending
    }
}

/// Iterates over `tasks` in completion order (asyncio's
/// `asyncio.as_completed`): each [`next`](AsCompleted::next) gives the
/// next outcome, or `Err(Timeout)` for each task still running when
/// `timeout` passed. Cancels nothing; see the [module docs](self).
///
/// ```
/// use aioloop::{as_completed, create_task, sleep, CancelledError, EventLoop};
/// use std::time::Duration;
///
/// let lp = EventLoop::with_virtual_clock().unwrap();
/// let order = lp.run_until_complete(async {
///     let after = |s: u64| async move {
///         sleep(Duration::from_secs(s)).await?;
///         Ok::<_, CancelledError>(s)
///     };
///     let tasks = vec![create_task(after(3)).unwrap(), create_task(after(1)).unwrap()];
///     let mut it = as_completed(tasks, None);
///     let mut order = Vec::new();
///     while let Some(item) = it.next().await {
///         order.push(item?.unwrap());
///     }
///     Ok::<_, aioloop::AsCompletedError>(order)
/// }).unwrap().unwrap();
/// assert_eq!(order, [1, 3]);
/// ```
pub fn as_completed<T: 'static, E: 'static>(
    tasks: impl IntoIterator<Item = Task<T, E>>,
    timeout: Option<Duration>,
) -> AsCompleted<T, E> {
    let q = DoneQueue::new(tasks.into_iter().collect());
    AsCompleted {
        todo: vec![true; q.len()],
        left: q.len(),
        q,
        timeout,
        ready: VecDeque::new(),
    }
}

/// The async iterator of [`as_completed`].
pub struct AsCompleted<T: 'static, E: 'static> {
    q: DoneQueue<T, E>,
    timeout: Option<Duration>,
    /// Tasks neither completed nor timed out (asyncio's `todo`).
    todo: Vec<bool>,
    /// Items to hand out, in order: a completed task, or `None` for a
    /// timed-out one (asyncio's `done` queue).
    ready: VecDeque<Option<usize>>,
    /// Items not handed out yet.
    left: usize,
}

/// One item of [`AsCompleted`]: the task's own outcome, or why there is none.
pub type CompletedItem<T, E> = Result<Result<T, TaskError<E>>, AsCompletedError>;

impl<T: 'static, E: 'static> AsCompleted<T, E> {
    /// The outcome of the next task to complete, `Err(Timeout)` for a task
    /// still running at the timeout, `Err(Cancelled)` if the awaiting task
    /// is cancelled meanwhile (the item is not lost: the next call gets
    /// it), and `None` once one item per task was given.
    ///
    /// The outcome is taken from the task, as `task.await` by value does.
    pub async fn next(&mut self) -> Option<CompletedItem<T, E>> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// How many items are still to come.
    pub fn len(&self) -> usize {
        self.left
    }

    /// True once every item was given.
    pub fn is_empty(&self) -> bool {
        self.left == 0
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<CompletedItem<T, E>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        self.q.start(self.timeout);
        while let Some(ev) = self.q.pop() {
            match ev {
                Event::Done(i) => {
                    // A completion after the timeout was already counted
                    // as a timeout (asyncio's `if not todo: return`).
                    if std::mem::replace(&mut self.todo[i], false) {
                        self.ready.push_back(Some(i));
                    }
                }
                Event::Timeout => {
                    for i in 0..self.todo.len() {
                        if std::mem::replace(&mut self.todo[i], false) {
                            self.q.forget(i);
                            self.ready.push_back(None);
                        }
                    }
                }
            }
        }
        if !self.todo.contains(&true) {
            // Nothing can time out any more: the timer goes, as asyncio's.
            self.q.stop();
        }
        if let Some(item) = self.ready.pop_front() {
            self.left -= 1;
            return Poll::Ready(Some(match item {
                Some(i) => Ok(self.q.tasks()[i].take_outcome()),
                None => Err(AsCompletedError::Timeout(TimeoutError)),
            }));
        }
        if let Some(c) = take_cancel_request() {
            return Poll::Ready(Some(Err(AsCompletedError::Cancelled(c))));
        }
        self.q.park(cx);
        Poll::Pending
    }
}

/// Why [`AsCompleted::next`] gave no outcome.
///
/// A task whose error type is `AsCompletedError` (or wraps it) ends
/// cancelled when it propagates the `Cancelled` variant with `?`.
///
/// ```
/// use aioloop::{AsCompletedError, Exception, TimeoutError};
///
/// let e = AsCompletedError::Timeout(TimeoutError);
/// assert_eq!(e.to_string(), "timed out");
/// assert!(e.as_cancelled().is_none());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AsCompletedError {
    /// The timeout passed before this task completed (asyncio's
    /// `TimeoutError`). The task goes on running.
    Timeout(TimeoutError),
    /// The task awaiting `next()` was cancelled.
    Cancelled(CancelledError),
}

impl fmt::Display for AsCompletedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AsCompletedError::Timeout(t) => fmt::Display::fmt(t, f),
            AsCompletedError::Cancelled(c) => write!(f, "CancelledError: {c}"),
        }
    }
}

impl std::error::Error for AsCompletedError {}

impl Exception for AsCompletedError {
    fn as_cancelled(&self) -> Option<&CancelledError> {
        match self {
            AsCompletedError::Cancelled(c) => Some(c),
            AsCompletedError::Timeout(_) => None,
        }
    }
}

impl From<CancelledError> for AsCompletedError {
    fn from(c: CancelledError) -> Self {
        AsCompletedError::Cancelled(c)
    }
}

impl From<TimeoutError> for AsCompletedError {
    fn from(t: TimeoutError) -> Self {
        AsCompletedError::Timeout(t)
    }
}
