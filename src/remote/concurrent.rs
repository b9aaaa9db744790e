//! `run_coroutine_threadsafe` and its `ConcurrentFuture`.
//!
//! asyncio's `run_coroutine_threadsafe(coro, loop)` schedules the coroutine
//! as a task on `loop` from another thread and returns a
//! `concurrent.futures.Future`: blocking `result(timeout)`, `done()`,
//! `cancel()`, done callbacks. Its outcome mirrors the task's, and
//! cancelling it cancels the task.
//!
//! Here the posted future runs inside a `Bridge` task. The bridge polls
//! it, catches a panic, and hands the outcome to the shared state, which a
//! mutex and a condition variable make waitable from any thread.
//!
//! # Invariants
//!
//! - The concurrent future completes exactly once, whatever happens: with
//!   the task's outcome, with `Cancelled` when `cancel()` wins, or with
//!   `Cancelled` if the bridge is dropped unfinished (the loop closed before
//!   running it, or dropped the task): no thread waits forever on it.
//! - `cancel()` completes it at once (as `concurrent.futures` does) and
//!   forwards the request to the task through the task's `Send` waker; the
//!   task sees asyncio's cancellation at its next aioloop await.
//! - Done callbacks run once, on the thread that completes the future (the
//!   loop's), or at once on the caller's thread if it is already done.

use std::fmt;
use std::future::Future as StdFuture;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::LoopHandle;
use crate::errors::{Error, InvalidStateError, LoopError, PanicError, TaskOutput, TimeoutError};

type ConcurrentCallback<T> = Box<dyn FnOnce(&ConcurrentFuture<T>) + Send>;

enum CState<T> {
    Pending(Vec<ConcurrentCallback<T>>),
    Done(Result<T, Error>),
    Taken,
}

struct Shared<T> {
    state: Mutex<CState<T>>,
    done: Condvar,
    cancel_requested: AtomicBool,
    /// The bridge task's waker, to forward a cancel to it.
    task_waker: Mutex<Option<Waker>>,
}

impl<T> Shared<T> {
    /// Pending → done; false if it was already done. Runs the callbacks.
    fn complete(self: &Arc<Self>, outcome: Result<T, Error>) -> bool {
        let callbacks = {
            let mut st = self.state.lock();
            match std::mem::replace(&mut *st, CState::Done(outcome)) {
                CState::Pending(cbs) => cbs,
                other => {
                    *st = other;
                    return false;
                }
            }
        };
        self.done.notify_all();
        let me = ConcurrentFuture {
            shared: self.clone(),
        };
        for cb in callbacks {
            cb(&me);
        }
        true
    }
}

/// asyncio's `concurrent.futures.Future` as returned by
/// `run_coroutine_threadsafe`: `Send + Sync`, waitable from any thread.
///
/// ```
/// use aioloop::{sleep, EventLoop};
/// use std::time::Duration;
///
/// let lp = EventLoop::new().unwrap();
/// let door = lp.loop_handle();
/// let waiter = std::thread::spawn(move || {
///     // Built on the loop's thread: it may use aioloop's `!Send` awaitables.
///     let fut = door.run_coroutine_threadsafe_with(|| async {
///         sleep(Duration::from_millis(1)).await?;
///         Ok(6 * 7)
///     }).unwrap();
///     let v = fut.result(Some(Duration::from_secs(30)));
///     door.stop().unwrap();
///     v
/// });
/// lp.run_forever().unwrap();
/// assert_eq!(waiter.join().unwrap().unwrap(), 42);
/// ```
pub struct ConcurrentFuture<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for ConcurrentFuture<T> {
    fn clone(&self) -> Self {
        ConcurrentFuture {
            shared: self.shared.clone(),
        }
    }
}

impl<T> ConcurrentFuture<T> {
    /// True once done, whichever way.
    pub fn done(&self) -> bool {
        !matches!(*self.shared.state.lock(), CState::Pending(_))
    }

    /// True if cancelled (by `cancel()`, or because the task was).
    pub fn cancelled(&self) -> bool {
        matches!(&*self.shared.state.lock(), CState::Done(Err(e)) if e.is_cancelled())
    }

    /// Cancels it and the task behind it; false if already done.
    pub fn cancel(&self) -> bool {
        self.shared.cancel_requested.store(true, Ordering::SeqCst);
        let done = self.shared.complete(Err(Error::cancelled(None)));
        if done {
            if let Some(w) = self.shared.task_waker.lock().take() {
                w.wake();
            }
        }
        done
    }

    /// Blocks until done or `timeout` (None: no limit); true if done.
    pub fn wait(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.shared.state.lock();
        while matches!(*st, CState::Pending(_)) {
            match deadline {
                None => self.shared.done.wait(&mut st),
                Some(d) => {
                    if self.shared.done.wait_until(&mut st, d).timed_out() {
                        return !matches!(*st, CState::Pending(_));
                    }
                }
            }
        }
        true
    }

    /// Calls `f` once the future is done: now, on this thread, if it already
    /// is; else on the thread that completes it (the loop's).
    pub fn add_done_callback(&self, f: impl FnOnce(&ConcurrentFuture<T>) + Send + 'static) {
        {
            let mut st = self.shared.state.lock();
            if let CState::Pending(cbs) = &mut *st {
                cbs.push(Box::new(f));
                return;
            }
        }
        f(self);
    }

    /// Waits (see [`wait`](Self::wait)) and moves the result out, for a
    /// `T` that is not `Clone`; a failure stays for every reader. A wait
    /// that times out is a `TimeoutError`, and the task goes on.
    pub fn take_result(&self, timeout: Option<Duration>) -> Result<T, Error> {
        if !self.wait(timeout) {
            return Err(TimeoutError.into());
        }
        let mut st = self.shared.state.lock();
        if let CState::Done(Err(e)) = &*st {
            return Err(e.clone());
        }
        match std::mem::replace(&mut *st, CState::Taken) {
            CState::Done(r) => r,
            _ => Err(InvalidStateError::ResultTaken.into()),
        }
    }
}

impl<T: Clone> ConcurrentFuture<T> {
    /// Waits up to `timeout` (None: no limit) and returns the result, or the
    /// task's exception / cancellation / panic (asyncio's
    /// `result(timeout)`). A wait that times out is a `TimeoutError`
    /// (`concurrent.futures.TimeoutError` is `TimeoutError` since Python
    /// 3.11), and the task goes on.
    pub fn result(&self, timeout: Option<Duration>) -> Result<T, Error> {
        if !self.wait(timeout) {
            return Err(TimeoutError.into());
        }
        match &*self.shared.state.lock() {
            CState::Done(r) => r.clone(),
            _ => Err(InvalidStateError::ResultTaken.into()),
        }
    }
}

impl<T> fmt::Debug for ConcurrentFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &*self.shared.state.lock() {
            CState::Pending(_) => "pending",
            CState::Done(Err(e)) if e.is_cancelled() => "cancelled",
            CState::Done(Err(_)) => "finished (failed)",
            CState::Done(Ok(_)) | CState::Taken => "finished",
        };
        write!(f, "<ConcurrentFuture {state}>")
    }
}

type SharedOf<F> = Arc<Shared<<<F as StdFuture>::Output as TaskOutput>::Ok>>;

/// The task-side half: polls the posted future and reports its outcome.
struct Bridge<F: StdFuture>
where
    F::Output: TaskOutput,
{
    fut: Pin<Box<F>>,
    shared: SharedOf<F>,
    cancel_forwarded: bool,
}

impl<F: StdFuture> StdFuture for Bridge<F>
where
    F::Output: TaskOutput,
{
    /// Err when the task must end cancelled.
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        {
            let mut w = this.shared.task_waker.lock();
            if !w.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *w = Some(cx.waker().clone());
            }
        }
        if this.shared.cancel_requested.load(Ordering::SeqCst) && !this.cancel_forwarded {
            // asyncio: the concurrent future's cancel cancels the task.
            this.cancel_forwarded = true;
            if let Some(t) = crate::tasks::current_task() {
                t.cancel();
            }
        }
        let polled = catch_unwind(AssertUnwindSafe(|| this.fut.as_mut().poll(cx)));
        let outcome = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(out)) => out.into_result(),
            Err(payload) => Err(PanicError::new(payload).into()),
        };
        let cancelled = match &outcome {
            Err(e) if e.is_cancelled() => Some(e.clone()),
            _ => None,
        };
        this.shared.complete(outcome);
        Poll::Ready(match cancelled {
            Some(c) => Err(c),
            None => Ok(()),
        })
    }
}

impl<F: StdFuture> Drop for Bridge<F>
where
    F::Output: TaskOutput,
{
    fn drop(&mut self) {
        // Never ran to its end (the loop closed, or dropped the task):
        // complete the concurrent future so that no thread waits forever.
        self.shared.complete(Err(Error::cancelled(Some(
            "the event loop dropped the task".to_owned(),
        ))));
    }
}

/// Completes the concurrent future as cancelled if the posted work is
/// dropped before it became a task (the loop closed first).
struct Unstarted<T>(Option<Arc<Shared<T>>>);

impl<T> Drop for Unstarted<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.0.take() {
            shared.complete(Err(Error::cancelled(Some(
                "the event loop closed before running the coroutine".to_owned(),
            ))));
        }
    }
}

impl LoopHandle {
    /// Runs `fut` as a task on the loop, from any thread (asyncio's
    /// `run_coroutine_threadsafe`). The returned future follows the task:
    /// its result, its exception, its cancellation; cancelling it cancels
    /// the task. Fails with `Event loop is closed` on a closed loop.
    ///
    /// `fut` must be `Send`, so it cannot hold aioloop's own awaitables
    /// (they are `!Send`, tied to their loop); to use them, pass a closure
    /// that builds the future on the loop's thread with
    /// [`run_coroutine_threadsafe_with`](Self::run_coroutine_threadsafe_with).
    #[track_caller]
    #[allow(clippy::type_complexity)]
    pub fn run_coroutine_threadsafe<F>(
        &self,
        fut: F,
    ) -> Result<ConcurrentFuture<<F::Output as TaskOutput>::Ok>, LoopError>
    where
        F: StdFuture + Send + 'static,
        F::Output: TaskOutput,
        <F::Output as TaskOutput>::Ok: Send,
    {
        self.run_coroutine_threadsafe_with(move || fut)
    }

    /// Like [`run_coroutine_threadsafe`](Self::run_coroutine_threadsafe),
    /// with the coroutine built on the loop's thread by `make`: only `make`
    /// and the outcome cross threads, so the coroutine may use `sleep`,
    /// loop futures, tasks — anything of aioloop's.
    #[track_caller]
    #[allow(clippy::type_complexity)]
    pub fn run_coroutine_threadsafe_with<M, F>(
        &self,
        make: M,
    ) -> Result<ConcurrentFuture<<F::Output as TaskOutput>::Ok>, LoopError>
    where
        M: FnOnce() -> F + Send + 'static,
        F: StdFuture + 'static,
        F::Output: TaskOutput,
        <F::Output as TaskOutput>::Ok: Send,
    {
        let shared = Arc::new(Shared {
            state: Mutex::new(CState::Pending(Vec::new())),
            done: Condvar::new(),
            cancel_requested: AtomicBool::new(false),
            task_waker: Mutex::new(None),
        });
        let mut guard = Unstarted(Some(shared.clone()));
        self.call_soon_threadsafe(move || {
            let Ok(lp) = crate::event_loop::get_running_loop() else {
                return; // the guard completes it as cancelled
            };
            let shared = guard.0.take().expect("runs once");
            let bridge = Bridge {
                fut: Box::pin(make()),
                shared,
                cancel_forwarded: false,
            };
            // On failure the bridge is dropped, and completes it.
            let _ = lp.create_task(bridge);
        })?;
        Ok(ConcurrentFuture { shared })
    }
}
