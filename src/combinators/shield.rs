//! `shield(aw)`: asyncio's `asyncio.shield`, protecting an awaitable from
//! the cancellation of whoever awaits it.
//!
//! asyncio's `shield` (`Lib/asyncio/tasks.py`) wraps the inner task in a
//! fresh *outer* future linked to it by done callbacks only. Cancelling the
//! awaiting task cancels that outer future — its `_fut_waiter` — and never
//! reaches the inner task, which goes on running; its result is still
//! there for anyone holding the task.
//!
//! aioloop gets the same effect without the extra future: [`Shield`] waits
//! on the inner task through a done callback and never registers the task
//! as what the awaiting task is parked on (`set_fut_waiter`), so
//! `cancel()` has nothing to cancel in turn; it marks the awaiting task and
//! wakes it, and `Shield` — a cancellation point — returns
//! `Err(Cancelled)` at once.
//!
//! | asyncio | aioloop |
//! |---|---|
//! | `res = await shield(aw)` | `let res = shield(aw).await;` |
//! | the inner task, to get its result later | [`Shield::task`], or the [`Task`] you passed in |
//!
//! # Invariants
//!
//! - The inner task is created when `shield` is called, not when the
//!   `Shield` is first polled: it runs even if nobody awaits (asyncio's
//!   `ensure_future` inside `shield`).
//! - Cancelling the awaiting task never cancels the inner one.
//! - A cancelled inner task is reported as a cancellation without the
//!   inner message: asyncio's `outer.cancel()` carries none (checked with
//!   CPython 3.11).
//! - A `Shield` dropped early leaves no callback behind on the inner task.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::combinators::wait_for::IntoTask;
use crate::errors::{Error, LoopError};
use crate::tasks::{take_cancel_request, DoneCallbackId, Task};

/// Runs `aw` as a task that the cancellation of the awaiting task does not
/// cancel (asyncio's `asyncio.shield`).
///
/// Awaiting the [`Shield`] gives the inner task's outcome, or a
/// `CancelledError` at once if the awaiting task is cancelled — while the
/// inner task goes on. Outside a running loop, a plain future cannot be
/// spawned: awaiting the `Shield` then fails with `no running event loop`.
///
/// ```
/// use aioloop::{current_task, shield, sleep, EventLoop};
/// use std::time::Duration;
///
/// let lp = EventLoop::with_virtual_clock().unwrap();
/// let inner = lp.create_task(async {
///     sleep(Duration::from_secs(2)).await?;
///     Ok(42u32)
/// }).unwrap();
/// let i = inner.clone();
/// lp.run_until_complete(async move {
///     current_task().unwrap().cancel(); // as if someone cancelled us
///     let r = shield(i).await;
///     assert!(r.unwrap_err().is_cancelled(), "at once");
///     current_task().unwrap().uncancel(); // refuse it, as asyncio allows
/// }).unwrap();
/// assert_eq!(lp.time(), 0.0);
/// assert_eq!(lp.run_until_complete(inner).unwrap(), 42, "the inner task went on");
/// ```
#[track_caller]
pub fn shield<I: IntoTask>(aw: I) -> Shield<I::Ok> {
    let (task, refused) = match aw.into_task() {
        Ok(t) => (Some(t), None),
        Err(e) => (None, Some(e)),
    };
    Shield {
        task,
        refused,
        read: I::outcome_of,
        wake: None,
    }
}

/// The future of [`shield`]: a cancellation point that does not pass the
/// cancellation on.
pub struct Shield<T: 'static> {
    task: Option<Task<T>>,
    /// Why there is no task (no running loop), reported when awaited.
    refused: Option<LoopError>,
    read: fn(&Task<T>) -> Result<T, Error>,
    /// The done callback that wakes us, and the waker it will use.
    wake: Option<(DoneCallbackId, Rc<RefCell<Option<Waker>>>)>,
}

impl<T: 'static> Shield<T> {
    /// The inner task (`None` if it could not be made): it keeps running
    /// after the `Shield` returned `Cancelled`, and its outcome stays there
    /// to be awaited.
    pub fn task(&self) -> Option<&Task<T>> {
        self.task.as_ref()
    }

    fn unregister(&mut self) {
        if let (Some((id, _)), Some(task)) = (self.wake.take(), &self.task) {
            task.remove_done_callback(id);
        }
    }
}

impl<T: 'static> Future for Shield<T> {
    type Output = Result<T, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(task) = this.task.clone() else {
            let e = this.refused.take().unwrap_or(LoopError::NoRunningLoop);
            return Poll::Ready(Err(e.into()));
        };
        // Done first: asyncio's `shield` of a done task returns the task
        // itself, whose await does not yield and so cannot be interrupted.
        if task.done() {
            // Resumed after parking here: a cancel requested since the
            // inner task ended is delivered now (asyncio's `__step` with
            // `_must_cancel`; CPython 3.11.7, 3.12.1, 3.13.0). An outer
            // that is itself cancelled keeps its own `CancelledError()`.
            let resumed = this.wake.is_some();
            this.unregister();
            let request = if resumed { take_cancel_request() } else { None };
            if let (Some(c), false) = (request, task.cancelled()) {
                // `_inner_done_callback` read the inner's outcome.
                task.mark_retrieved();
                return Poll::Ready(Err(c.into()));
            }
            if task.cancelled() {
                // asyncio's `outer.cancel()` carries no message.
                return Poll::Ready(Err(Error::cancelled(None)));
            }
            return Poll::Ready((this.read)(&task));
        }
        if let Some(c) = take_cancel_request() {
            this.unregister();
            return Poll::Ready(Err(c.into()));
        }
        match &this.wake {
            Some((_, slot)) => {
                let mut slot = slot.borrow_mut();
                match slot.as_mut() {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *slot = Some(cx.waker().clone()),
                }
            }
            None => {
                let slot = Rc::new(RefCell::new(Some(cx.waker().clone())));
                let s = slot.clone();
                let id = task.add_done_callback(move |_| {
                    if let Some(w) = s.borrow_mut().take() {
                        w.wake();
                    }
                });
                this.wake = Some((id, slot));
            }
        }
        Poll::Pending
    }
}

impl<T: 'static> Drop for Shield<T> {
    fn drop(&mut self) {
        self.unregister();
    }
}
