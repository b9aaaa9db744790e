//! `gather(tasks)`: asyncio's `asyncio.gather`, the results of several tasks
//! in the order they were given.
//!
//! asyncio's `gather` wraps its children in a `_GatheringFuture` and adds a
//! done callback (`_done_callback`) to each. aioloop keeps the same rules,
//! with the two modes as two types:
//!
//! | asyncio | aioloop | output |
//! |---|---|---|
//! | `await gather(*tasks)` | `gather(tasks).await` | `Result<Vec<T>, TaskError<E>>` |
//! | `await gather(*tasks, return_exceptions=True)` | `gather(tasks).return_exceptions().await` | `Result<Vec<Result<T, TaskError<E>>>, CancelledError>` |
//!
//! Futures are passed as tasks: [`create_tasks`] wraps an iterator of
//! futures, as `gather` wraps coroutines with `ensure_future`.
//!
//! # Rules (checked against CPython 3.11 in `tests/combinators_gather.rs`)
//!
//! - Results come in the order of the inputs, whatever order the children
//!   finish in.
//! - Default mode: the first child to fail — an exception, a panic, or a
//!   cancellation of its own — ends the gather at once with that error; the
//!   other children **keep running** (asyncio does not cancel them).
//! - `return_exceptions` mode: waits for every child; a failure or a
//!   cancellation is an `Err` in its slot of the result.
//! - Cancelling the task that awaits the gather cancels every child, with
//!   the same message (`_GatheringFuture.cancel`), and the gather goes on
//!   waiting as asyncio's does: in default mode it ends with the first
//!   child that ends cancelled (or fails), in `return_exceptions` mode once
//!   every child is done; either way with `CancelledError` (unless a child
//!   failed first). If no child could be cancelled (all done already), the
//!   `CancelledError` is returned at once.
//! - An empty gather is done at once with an empty `Vec`.
//!
//! # Invariants
//!
//! - A cancellation point, like every aioloop awaitable.
//! - The gather takes each child's outcome (as `task.await` by value does):
//!   a clone of a child's handle then reads `Result was already taken`.
//! - Dropping the gather (or its end) removes its done callbacks from the
//!   children, which go on running untouched.
//!
//! Deliberate differences: a child given twice is not de-duplicated (its
//! second slot reads `Result was already taken`); a child cancelled in
//! `return_exceptions` mode keeps its own `CancelledError` message (asyncio
//! 3.11 rebuilds one with an empty message).

use std::future::Future as StdFuture;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::done_queue::{DoneQueue, Event};
use crate::errors::{CancelledError, LoopError, TaskError, TaskOutput};
use crate::tasks::{create_task, take_cancel_request, Task};

/// Awaits every task and returns their results in the order given
/// (asyncio's `gather`). Fails with the first failure; see the
/// [module docs](self) for every rule, and
/// [`return_exceptions`](Gather::return_exceptions) for the other mode.
///
/// ```
/// use aioloop::{create_task, gather, sleep, CancelledError, EventLoop};
/// use std::time::Duration;
///
/// let lp = EventLoop::with_virtual_clock().unwrap();
/// let out = lp.run_until_complete(async {
///     let after = |s: u64, v: &'static str| async move {
///         sleep(Duration::from_secs(s)).await?;
///         Ok::<_, CancelledError>(v)
///     };
///     let slow = create_task(after(2, "slow")).unwrap();
///     let fast = create_task(after(1, "fast")).unwrap();
///     gather([slow, fast]).await
/// }).unwrap();
/// assert_eq!(out.unwrap(), ["slow", "fast"], "the order of the inputs");
/// ```
pub fn gather<T: 'static, E: 'static>(tasks: impl IntoIterator<Item = Task<T, E>>) -> Gather<T, E> {
    let q = DoneQueue::new(tasks.into_iter().collect());
    Gather {
        core: GatherCore {
            results: (0..q.len()).map(|_| None).collect(),
            q,
            finished: 0,
            cancel: None,
            ended: false,
        },
    }
}

/// Wraps each future in a task on the running loop (asyncio's
/// `ensure_future` inside `gather`), for [`gather`], [`wait`](crate::wait)
/// or [`as_completed`](crate::as_completed). Fails with
/// `no running event loop` outside one.
///
/// ```
/// use aioloop::{create_tasks, gather, EventLoop};
///
/// let lp = EventLoop::with_virtual_clock().unwrap();
/// let squares = lp.run_until_complete(async {
///     let tasks = create_tasks((1..=3u32).map(|i| async move { i * i })).unwrap();
///     gather(tasks).await
/// }).unwrap();
/// assert_eq!(squares.unwrap(), [1, 4, 9]);
/// ```
#[track_caller]
#[allow(clippy::type_complexity)]
pub fn create_tasks<I>(
    futs: I,
) -> Result<
    Vec<
        Task<
            <<I::Item as StdFuture>::Output as TaskOutput>::Ok,
            <<I::Item as StdFuture>::Output as TaskOutput>::Err,
        >,
    >,
    LoopError,
>
where
    I: IntoIterator,
    I::Item: StdFuture + 'static,
    <I::Item as StdFuture>::Output: TaskOutput,
{
    let mut tasks = Vec::new();
    for fut in futs {
        tasks.push(create_task(fut)?);
    }
    Ok(tasks)
}

/// The future of [`gather`] (default mode).
#[must_use = "futures do nothing unless you `.await` them"]
pub struct Gather<T: 'static, E: 'static> {
    core: GatherCore<T, E>,
}

/// The future of [`Gather::return_exceptions`].
#[must_use = "futures do nothing unless you `.await` them"]
pub struct GatherAll<T: 'static, E: 'static> {
    core: GatherCore<T, E>,
}

impl<T: 'static, E: 'static> Gather<T, E> {
    /// asyncio's `return_exceptions=True`: waits for every child and
    /// returns each outcome in its slot; only the cancellation of the
    /// awaiting task makes the whole gather fail.
    ///
    /// ```
    /// use aioloop::{create_task, gather, EventLoop, TaskError};
    ///
    /// let lp = EventLoop::with_virtual_clock().unwrap();
    /// let out = lp.run_until_complete(async {
    ///     let bad = create_task(async { Err::<u8, _>("bad") }).unwrap();
    ///     let good = create_task(async { Ok::<u8, &str>(1) }).unwrap();
    ///     gather([bad, good]).return_exceptions().await
    /// }).unwrap().unwrap();
    /// assert!(matches!(out[0], Err(TaskError::Exception("bad"))));
    /// assert_eq!(out[1].as_ref().ok(), Some(&1));
    /// ```
    pub fn return_exceptions(self) -> GatherAll<T, E> {
        GatherAll { core: self.core }
    }
}

/// How a gather ended.
enum End<T, E> {
    /// Every child is done: one outcome per child, in input order.
    All(Vec<Result<T, TaskError<E>>>),
    /// Default mode: the first failure.
    Failed(TaskError<E>),
    /// The awaiting task was cancelled.
    Cancelled(CancelledError),
}

struct GatherCore<T: 'static, E: 'static> {
    q: DoneQueue<T, E>,
    results: Vec<Option<Result<T, TaskError<E>>>>,
    finished: usize,
    /// Set once the awaiting task's cancellation was passed to the
    /// children (asyncio's `_cancel_requested`).
    cancel: Option<CancelledError>,
    ended: bool,
}

// The results are stored, never pinned: the gather can move whatever `T` is.
impl<T, E> Unpin for GatherCore<T, E> {}

impl<T: 'static, E: 'static> GatherCore<T, E> {
    fn poll(&mut self, cx: &mut Context<'_>, return_exceptions: bool) -> Poll<End<T, E>> {
        assert!(!self.ended, "a gather polled after it completed");
        let end = self.step(cx, return_exceptions);
        if end.is_ready() {
            self.ended = true;
            self.q.stop();
        }
        end
    }

    fn step(&mut self, cx: &mut Context<'_>, return_exceptions: bool) -> Poll<End<T, E>> {
        if self.q.len() == 0 {
            return Poll::Ready(End::All(Vec::new()));
        }
        self.q.start(None);
        // Completions first: an outcome that is already there wins over a
        // cancellation, as when awaiting a done task or future.
        while let Some(ev) = self.q.pop() {
            let Event::Done(i) = ev else { continue };
            self.finished += 1;
            let outcome = self.q.tasks()[i].take_outcome();
            match outcome {
                Err(e) if !return_exceptions => return Poll::Ready(End::Failed(e)),
                outcome => self.results[i] = Some(outcome),
            }
        }
        if self.finished == self.q.len() {
            if let Some(c) = self.cancel.take() {
                return Poll::Ready(End::Cancelled(c));
            }
            let all = self
                .results
                .iter_mut()
                .map(|r| r.take().expect("every child reported"))
                .collect();
            return Poll::Ready(End::All(all));
        }
        if let Some(c) = take_cancel_request() {
            let mut any = false;
            for t in self.q.tasks() {
                // Every child, no short-circuit: asyncio's loop over children.
                any |= match c.message() {
                    Some(m) => t.cancel_with(m),
                    None => t.cancel(),
                };
            }
            if !any {
                return Poll::Ready(End::Cancelled(c));
            }
            self.cancel = Some(c);
        }
        self.q.park(cx);
        Poll::Pending
    }
}

impl<T: 'static, E: 'static> StdFuture for Gather<T, E> {
    type Output = Result<Vec<T>, TaskError<E>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.core.poll(cx, false).map(|end| match end {
            // Default mode only stores successes.
            End::All(all) => all.into_iter().collect(),
            End::Failed(e) => Err(e),
            End::Cancelled(c) => Err(TaskError::Cancelled(c)),
        })
    }
}

impl<T: 'static, E: 'static> StdFuture for GatherAll<T, E> {
    type Output = Result<Vec<Result<T, TaskError<E>>>, CancelledError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.core.poll(cx, true).map(|end| match end {
            End::All(all) => Ok(all),
            End::Cancelled(c) => Err(c),
            End::Failed(_) => unreachable!("return_exceptions mode never ends early"),
        })
    }
}
