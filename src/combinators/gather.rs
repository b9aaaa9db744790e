//! `gather(tasks)`: asyncio's `asyncio.gather`, the results of several tasks
//! in the order they were given.
//!
//! asyncio's `gather` wraps its children in a `_GatheringFuture` and adds a
//! done callback (`_done_callback`) to each. aioloop keeps the same rules,
//! but a child reports its completion inline, through an entry in its
//! completion list, rather than through a callback one iteration later (see
//! `done_queue`: the callback hop made a gather cost twice as much as
//! awaiting the children one by one). The two modes are two types:
//!
//! | asyncio | aioloop | output |
//! |---|---|---|
//! | `await gather(*aws)` | `gather(aws).await` | `Result<Vec<T>, Error>` |
//! | `await gather(*aws, return_exceptions=True)` | `gather(aws).return_exceptions().await` | `Result<Vec<Result<T, Error>>, Error>` |
//!
//! The children are anything [`IntoTask`]: tasks (read by clone: their
//! results stay for their other handles, and a task given twice fills both
//! slots and runs once, as in asyncio), loop futures, or plain Rust
//! futures, each spawned as a task as `gather` wraps coroutines with
//! `ensure_future`. [`create_tasks`] spawns an iterator of futures.
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
//! - Dropping the gather (or its end) removes its entries from the
//!   children's completion lists; the children go on running untouched.
//! - Once the gather has ended, its children's failures count as retrieved
//!   (asyncio's `_done_callback` calls `fut.exception()` on each child that
//!   completes after the outer future is done): none is reported as never
//!   retrieved.
//!
//! Deliberate difference: a child cancelled in `return_exceptions` mode
//! keeps its own `CancelledError` message (asyncio 3.11 rebuilds one with
//! an empty message).

use std::future::Future as StdFuture;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::done_queue::{DoneQueue, Event};
use crate::combinators::wait_for::IntoTask;
use crate::errors::{CancelledError, Error, LoopError, TaskOutput};
use crate::tasks::{create_task, take_cancel_request, Task};

/// Awaits every child and returns their results in the order given
/// (asyncio's `gather`). Fails with the first failure; see the
/// [module docs](self) for every rule, and
/// [`return_exceptions`](Gather::return_exceptions) for the other mode.
///
/// ```
/// use aioloop::{create_task, gather, sleep, EventLoop};
/// use std::time::Duration;
///
/// let lp = EventLoop::with_virtual_clock().unwrap();
/// let out = lp.run_until_complete(async {
///     let after = |s: u64, v: &'static str| async move {
///         sleep(Duration::from_secs(s)).await?;
///         Ok(v)
///     };
///     let slow = create_task(after(2, "slow"))?;
///     let fast = create_task(after(1, "fast"))?;
///     gather([&slow, &fast, &slow]).await
/// });
/// assert_eq!(out.unwrap(), ["slow", "fast", "slow"], "the order of the inputs");
/// ```
pub fn gather<I: IntoTask>(aws: impl IntoIterator<Item = I>) -> Gather<I::Ok> {
    let mut tasks = Vec::new();
    let mut refused = None;
    for aw in aws {
        match aw.into_task() {
            Ok(t) => tasks.push(t),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let q = DoneQueue::inline(tasks);
    Gather {
        core: GatherCore {
            results: (0..q.len()).map(|_| None).collect(),
            q,
            read: I::outcome_of,
            refused,
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
///     let tasks = create_tasks((1..=3u32).map(|i| async move { i * i }))?;
///     gather(tasks).await
/// });
/// assert_eq!(squares.unwrap(), [1, 4, 9]);
/// ```
#[track_caller]
#[allow(clippy::type_complexity)]
pub fn create_tasks<I>(
    futs: I,
) -> Result<Vec<Task<<<I::Item as StdFuture>::Output as TaskOutput>::Ok>>, LoopError>
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
pub struct Gather<T: 'static> {
    core: GatherCore<T>,
}

/// The future of [`Gather::return_exceptions`].
#[must_use = "futures do nothing unless you `.await` them"]
pub struct GatherAll<T: 'static> {
    core: GatherCore<T>,
}

impl<T: 'static> Gather<T> {
    /// asyncio's `return_exceptions=True`: waits for every child and
    /// returns each outcome in its slot; only the cancellation of the
    /// awaiting task makes the whole gather fail.
    ///
    /// ```
    /// use aioloop::{create_task, gather, Error, EventLoop};
    ///
    /// let lp = EventLoop::with_virtual_clock().unwrap();
    /// let out = lp.run_until_complete(async {
    ///     let bad = create_task(async { Err::<u8, _>(Error::msg("bad")) })?;
    ///     let good = create_task(async { Ok(1u8) })?;
    ///     gather([bad, good]).return_exceptions().await
    /// }).unwrap();
    /// assert_eq!(out[0].as_ref().unwrap_err().to_string(), "bad");
    /// assert_eq!(out[1].as_ref().ok(), Some(&1));
    /// ```
    pub fn return_exceptions(self) -> GatherAll<T> {
        GatherAll { core: self.core }
    }
}

/// How a gather ended.
enum End<T> {
    /// Every child is done: one outcome per child, in input order.
    All(Vec<Result<T, Error>>),
    /// Default mode: the first failure.
    Failed(Error),
    /// The awaiting task was cancelled.
    Cancelled(CancelledError),
}

struct GatherCore<T: 'static> {
    q: DoneQueue<T>,
    results: Vec<Option<Result<T, Error>>>,
    /// How a child's outcome is read (a clone for a caller's task).
    read: fn(&Task<T>) -> Result<T, Error>,
    /// A child that could not be made (no running loop): the gather fails
    /// with it when awaited.
    refused: Option<LoopError>,
    finished: usize,
    /// Set once the awaiting task's cancellation was passed to the
    /// children (asyncio's `_cancel_requested`).
    cancel: Option<CancelledError>,
    ended: bool,
}

// The results are stored, never pinned: the gather can move whatever `T` is.
impl<T> Unpin for GatherCore<T> {}

impl<T: 'static> GatherCore<T> {
    fn poll(&mut self, cx: &mut Context<'_>, return_exceptions: bool) -> Poll<End<T>> {
        assert!(!self.ended, "a gather polled after it completed");
        let end = self.step(cx, return_exceptions);
        if end.is_ready() {
            self.ended = true;
            self.q.stop();
            // asyncio's `_done_callback` retrieves the exception of every
            // child that completes once the gather is done. A child read
            // already counts as retrieved, so the pass is needed only when
            // some were not (a pass over every child costs a cache miss
            // each at 100,000 children).
            if self.finished < self.q.len() {
                for t in self.q.tasks() {
                    t.mark_retrieved();
                }
            }
        }
        end
    }

    fn step(&mut self, cx: &mut Context<'_>, return_exceptions: bool) -> Poll<End<T>> {
        if let Some(e) = self.refused.take() {
            return Poll::Ready(End::Failed(e.into()));
        }
        if self.q.len() == 0 {
            return Poll::Ready(End::All(Vec::new()));
        }
        // No timeout: needs no running loop, cannot fail.
        let _ = self.q.start(None);
        // Completions first: an outcome that is already there wins over a
        // cancellation, as when awaiting a done task or future.
        while let Some(ev) = self.q.pop() {
            let Event::Done(i) = ev else { continue };
            self.finished += 1;
            let outcome = (self.read)(&self.q.tasks()[i]);
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

impl<T: 'static> StdFuture for Gather<T> {
    type Output = Result<Vec<T>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.core.poll(cx, false).map(|end| match end {
            // Default mode only stores successes.
            End::All(all) => all.into_iter().collect(),
            End::Failed(e) => Err(e),
            End::Cancelled(c) => Err(c.into()),
        })
    }
}

impl<T: 'static> StdFuture for GatherAll<T> {
    type Output = Result<Vec<Result<T, Error>>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.core.poll(cx, true).map(|end| match end {
            End::All(all) => Ok(all),
            End::Cancelled(c) => Err(c.into()),
            // Only a refusal: a child's failure is kept in its slot.
            End::Failed(e) => Err(e),
        })
    }
}
