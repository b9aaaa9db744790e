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
//! Returns `(done, pending)`: the task handles themselves (a loop future or
//! a plain Rust future given is awaited by a task of its own, which is
//! what comes back), each `Vec` in the order of the input (asyncio returns two sets; a `Vec` keeps Rust's
//! handles usable without hashing). It returns when [`ReturnWhen`] says so,
//! or when the timeout passes; the split is made when it returns, so a task
//! that completed meanwhile is in `done`. A task that ended cancelled is no
//! exception for `FirstException`.
//!
//! # `as_completed`
//!
//! An async iterator: [`AsCompleted::next`] gives the outcome of the next
//! task to complete, in completion order (a clone of a caller's task's
//! result, which stays there), and `None` after one item per task. When the
//! timeout passes, every task not yet completed becomes one `TimeoutError`
//! item, after the outcomes that completed before it (as
//! asyncio queues a `None` per remaining task). As in asyncio 3.11, whose
//! `as_completed` is a generator, the callbacks and the timer start with the
//! first `next()`.
//!
//! `wait` on an empty set fails with asyncio's `ValueError: Set of
//! Tasks/Futures is empty.` (CPython 3.11–3.13).
//!
//! Deliberate difference: a `next()` cancelled while
//! waiting does not use up an item (asyncio's cancelled `_wait_for_one()`
//! coroutine does), so iterating to the end still yields one item per task.

use std::collections::VecDeque;
use std::future::{poll_fn, Future as StdFuture};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::done_queue::{DoneQueue, Event};
use crate::combinators::wait_for::IntoTask;
use crate::errors::{Error, LoopError, TimeoutError, ValueError};
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
///     let quick = create_task(sleep(Duration::from_secs(1)))?;
///     let slow = create_task(sleep(Duration::from_secs(5)))?;
///     wait([quick, slow], ReturnWhen::FirstCompleted, None).await
/// }).unwrap();
/// assert_eq!((done.len(), pending.len()), (1, 1));
/// assert!(!pending[0].cancelled(), "wait cancels nothing");
/// assert_eq!(lp.time(), 1.0);
/// ```
pub fn wait<I: IntoTask>(
    aws: impl IntoIterator<Item = I>,
    return_when: ReturnWhen,
    timeout: Option<Duration>,
) -> Wait<I::Ok> {
    let (tasks, refused) = into_tasks(aws);
    Wait {
        q: Some(DoneQueue::new(tasks)),
        refused,
        return_when,
        timeout,
        completed: 0,
    }
}

/// Makes every awaitable a task; the first refusal (no running loop) stops.
fn into_tasks<I: IntoTask>(
    aws: impl IntoIterator<Item = I>,
) -> (Vec<Task<I::Ok>>, Option<LoopError>) {
    let mut tasks = Vec::new();
    for aw in aws {
        match aw.into_task() {
            Ok(t) => tasks.push(t),
            Err(e) => return (tasks, Some(e)),
        }
    }
    (tasks, None)
}

/// The future of [`wait`].
#[must_use = "futures do nothing unless you `.await` them"]
pub struct Wait<T: 'static> {
    /// `None` once it returned.
    q: Option<DoneQueue<T>>,
    /// A child that could not be made: reported when awaited.
    refused: Option<LoopError>,
    return_when: ReturnWhen,
    timeout: Option<Duration>,
    /// asyncio's `counter`, counted up.
    completed: usize,
}

/// `(done, pending)`, as [`wait`] returns them.
pub type DonePending<T> = (Vec<Task<T>>, Vec<Task<T>>);

impl<T: 'static> StdFuture for Wait<T> {
    type Output = Result<DonePending<T>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(e) = this.refused.take() {
            this.q = None;
            return Poll::Ready(Err(e.into()));
        }
        let Some(q) = this.q.as_mut() else {
            return Poll::Ready(Err(crate::errors::InvalidStateError::AlreadyDone.into()));
        };
        let n = q.len();
        if n == 0 {
            this.q = None;
            return Poll::Ready(Err(ValueError::new("Set of Tasks/Futures is empty.").into()));
        }
        let mut release = false;
        if let Err(e) = q.start(this.timeout) {
            this.q = None;
            return Poll::Ready(Err(e.into()));
        }
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
            return Poll::Ready(Err(c.into()));
        }
        q.park(cx);
        Poll::Pending
    }
}

/// Iterates over `aws` in completion order (asyncio's
/// `asyncio.as_completed`): each [`next`](AsCompleted::next) gives the
/// next outcome, or a `TimeoutError` for each one still running when
/// `timeout` passed. Cancels nothing; see the [module docs](self).
///
/// ```
/// use aioloop::{as_completed, sleep, EventLoop};
/// use std::time::Duration;
///
/// let lp = EventLoop::with_virtual_clock().unwrap();
/// let order = lp.run_until_complete(async {
///     let after = |s: u64| async move {
///         sleep(Duration::from_secs(s)).await?;
///         Ok(s)
///     };
///     let mut it = as_completed([after(3), after(1)], None);
///     let mut order = Vec::new();
///     while let Some(item) = it.next().await {
///         order.push(item?);
///     }
///     Ok(order)
/// });
/// assert_eq!(order.unwrap(), [1, 3]);
/// ```
pub fn as_completed<I: IntoTask>(
    aws: impl IntoIterator<Item = I>,
    timeout: Option<Duration>,
) -> AsCompleted<I::Ok> {
    let (tasks, refused) = into_tasks(aws);
    let q = DoneQueue::new(tasks);
    AsCompleted {
        read: I::outcome_of,
        refused,
        todo: vec![true; q.len()],
        left: q.len(),
        q,
        timeout,
        ready: VecDeque::new(),
    }
}

/// The async iterator of [`as_completed`].
pub struct AsCompleted<T: 'static> {
    q: DoneQueue<T>,
    /// How a task's outcome is read (a clone for a caller's task).
    read: fn(&Task<T>) -> Result<T, Error>,
    /// A child that could not be made: the first item.
    refused: Option<LoopError>,
    timeout: Option<Duration>,
    /// Tasks neither completed nor timed out (asyncio's `todo`).
    todo: Vec<bool>,
    /// Items to hand out, in order: a completed task, or `None` for a
    /// timed-out one (asyncio's `done` queue).
    ready: VecDeque<Option<usize>>,
    /// Items not handed out yet.
    left: usize,
}

/// One item of [`AsCompleted`]: the task's own outcome, a `TimeoutError`,
/// or the awaiting task's cancellation.
pub type CompletedItem<T> = Result<T, Error>;

impl<T: 'static> AsCompleted<T> {
    /// The outcome of the next task to complete, a `TimeoutError` for a
    /// task still running at the timeout, a `CancelledError` if the
    /// awaiting task is cancelled meanwhile (the item is not lost: the next
    /// call gets it), and `None` once one item per task was given.
    pub async fn next(&mut self) -> Option<CompletedItem<T>> {
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

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<CompletedItem<T>>> {
        if let Some(e) = self.refused.take() {
            return Poll::Ready(Some(Err(e.into())));
        }
        if self.left == 0 {
            return Poll::Ready(None);
        }
        if let Err(e) = self.q.start(self.timeout) {
            // Nothing was registered: the next call tries again.
            return Poll::Ready(Some(Err(e.into())));
        }
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
                Some(i) => (self.read)(&self.q.tasks()[i]),
                None => Err(TimeoutError.into()),
            }));
        }
        if let Some(c) = take_cancel_request() {
            return Poll::Ready(Some(Err(c.into())));
        }
        self.q.park(cx);
        Poll::Pending
    }
}
