//! `Future<T>`: asyncio's loop future, a result that will be set later.
//!
//! asyncio's `Future` (`Lib/asyncio/futures.py`): pending until someone calls
//! `set_result`, `set_exception` or `cancel`; awaitable by any number of
//! tasks, any number of times; done callbacks scheduled with `call_soon`,
//! never called inline. Not to be confused with [`std::future::Future`],
//! the Rust trait, which this type implements (for `T: Clone`: every await
//! gets a clone, and the outcome stays for the next one, as asyncio's).
//!
//! ```text
//!            set_result(v) ──► Finished(v)
//!   Pending ─ set_exception(e) ──► Failed(e)
//!            cancel(msg) ──► Cancelled(msg)
//! ```
//!
//! # Invariants
//!
//! - A future changes state once; a second `set_*` is `invalid state`, a
//!   second `cancel` returns `false`.
//! - Completing wakes every awaiter and schedules the done callbacks in
//!   registration order; none runs inline.
//! - Awaiting is a cancellation point: cancelling the awaiting task cancels
//!   this future (asyncio's `_fut_waiter.cancel()`), which every awaiter then
//!   sees as `Err(Cancelled)`. A task resumed after the future completed,
//!   with a cancel requested in between, gets that `CancelledError` in place
//!   of the outcome (asyncio's `__step` with `_must_cancel`).
//! - Awaiting never consumes the outcome, except [`Future::take`], which
//!   moves a value out once.
//! - A task awaiting a future of another loop gets asyncio's
//!   `RuntimeError` (`… attached to a different loop`) instead of hanging.

use std::cell::Cell;
use std::fmt;
use std::future::{Future as StdFuture, IntoFuture};
use std::panic::Location;
use std::pin::Pin;
use std::ptr::addr_of_mut;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use crate::errors::{Error, InvalidStateError, LoopError};
use crate::event_loop::exceptions::report_unretrieved;
use crate::event_loop::{LoopCore, LoopRef};
use crate::outcome::OutcomeCell;
use crate::tasks::{
    current_task_repr_if_other_loop, fire_completion, set_fut_waiter, take_cancel_request,
    FutWaiter, WaitTarget,
};
use crate::waiters::{Completion, DoneCallbackId, WaitKind, WaitList, WaitSite, WaiterKey};

/// A loop future's state, readable without touching the outcome slot.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Done,
    Cancelled,
}

struct FutureInner<T> {
    state: Cell<State>,
    outcome: OutcomeCell<T>,
    completion: Completion,
    core: Weak<LoopCore>,
    /// Set by `set_exception` until someone looks at the outcome (asyncio's
    /// `__log_traceback`): the failure is reported if nobody ever does.
    unretrieved: Cell<bool>,
    /// Where it was created, in debug mode (asyncio's `_source_traceback`).
    site: Option<&'static Location<'static>>,
}

/// asyncio's `Future`: a result (`T`) or an [`Error`] set later.
///
/// Clones share the future. It is a Rust future itself (for `T: Clone`):
/// `fut.await`, `(&fut).await`, `run_until_complete(fut)`, `wait_for(fut,
/// d)`… each get a clone of the result, and `result()` still answers
/// afterwards, as in asyncio. For a value that is not `Clone`,
/// [`take`](Future::take) moves it out once.
///
/// ```
/// use aioloop::EventLoop;
///
/// let lp = EventLoop::new().unwrap();
/// let fut = lp.create_future::<&str>();
/// let f = fut.clone();
/// lp.call_soon(move || f.set_result("ready").unwrap()).unwrap();
/// assert_eq!(lp.run_until_complete(fut.clone()).unwrap(), "ready");
/// assert_eq!(fut.result().unwrap(), "ready", "awaiting did not consume it");
/// ```
pub struct Future<T> {
    inner: Rc<FutureInner<T>>,
    /// This handle's registration while a task awaits it.
    key: Option<WaiterKey>,
}

impl<T> Drop for FutureInner<T> {
    fn drop(&mut self) {
        // The last handle is gone: an exception nobody looked at is
        // reported now, as asyncio's `Future.__del__` does.
        if let Some(err) = self
            .unretrieved
            .get()
            .then(|| self.outcome.failure())
            .flatten()
        {
            report_unretrieved(
                self.core.upgrade(),
                "Future",
                self.repr(),
                format!("{err:?}"),
            );
        }
    }
}

impl<T> Drop for Future<T> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.inner.unregister(k);
        }
        // A handle of a future that tasks wait on is going: they may have
        // lost their last way to be woken (see `stuck.rs`).
        let inner = &self.inner;
        if inner.completion.waiters() > 0 && inner.state.get() == State::Pending {
            if let Some(core) = inner.core.upgrade() {
                core.suspect_waiters(&inner.completion, Rc::strong_count(inner) - 1);
            }
        }
    }
}

impl<T> Clone for Future<T> {
    /// Another handle to the same future (with no registration of its own).
    fn clone(&self) -> Self {
        Future {
            inner: self.inner.clone(),
            key: None,
        }
    }
}

impl LoopRef {
    /// A new pending future attached to this loop (asyncio's
    /// `loop.create_future()`).
    #[track_caller]
    pub fn create_future<T: 'static>(&self) -> Future<T> {
        Future::new(self)
    }
}

impl<T: 'static> Future<T> {
    /// A new pending future attached to `lp`.
    ///
    /// ```
    /// use aioloop::{Error, EventLoop, Future};
    ///
    /// let lp = EventLoop::new().unwrap();
    /// let f = Future::<u32>::new(&lp);
    /// f.set_exception(Error::msg("no")).unwrap();
    /// assert_eq!(f.exception().unwrap().unwrap().to_string(), "no");
    /// ```
    #[track_caller]
    pub fn new(lp: &LoopRef) -> Self {
        let site = Location::caller();
        let site = lp.core().debug.on().then_some(site);
        let core = Rc::downgrade(lp.core());
        // Allocated first, then written field by field in place. `Rc::new`
        // builds the value on the stack and copies it in after the malloc:
        // narrow stores read back wide, a store forwarding stall that
        // `perf annotate` put at about 7% of the ping-pong benchmark.
        let mut fresh = Rc::<FutureInner<T>>::new_uninit();
        let p = Rc::get_mut(&mut fresh)
            .expect("a fresh Rc is unique")
            .as_mut_ptr();
        // SAFETY: `p` points to the uninitialized, uniquely owned value of
        // `fresh`; each field is written exactly once, through raw field
        // pointers (no reference to uninitialized memory is made), and all
        // six are written before `assume_init`.
        unsafe {
            addr_of_mut!((*p).state).write(Cell::new(State::Pending));
            addr_of_mut!((*p).outcome).write(OutcomeCell::new());
            addr_of_mut!((*p).completion).write(Completion::default());
            addr_of_mut!((*p).core).write(core);
            addr_of_mut!((*p).unretrieved).write(Cell::new(false));
            addr_of_mut!((*p).site).write(site);
            Future {
                inner: fresh.assume_init(),
                key: None,
            }
        }
    }
}

/// Fails to compile when `FutureInner` gains a field, so that `Future::new`,
/// which writes the fields one by one, cannot leave one uninitialized.
#[allow(dead_code)]
fn future_new_writes_every_field<T>(inner: &FutureInner<T>) {
    let FutureInner {
        state: _,
        outcome: _,
        completion: _,
        core: _,
        unretrieved: _,
        site: _,
    } = inner;
}

impl<T> FutureInner<T> {
    /// asyncio's `_future_repr_info`: the state, a failure's exception,
    /// then where it was created (debug mode). The result is not shown: `T`
    /// need not be `Debug`.
    // CPython 3.11.7, 3.12.1, 3.13.0: `<Future finished exception=ValueError('x')>`.
    fn repr(&self) -> String {
        let exception = match self.outcome.failure() {
            Some(e) => format!(" exception={e:?}"),
            None => String::new(),
        };
        match self.site {
            Some(s) => format!(
                "<Future {}{exception} created at {}:{}>",
                self.outcome.state_name(),
                s.file(),
                s.line()
            ),
            None => format!("<Future {}{exception}>", self.outcome.state_name()),
        }
    }

    #[inline]
    fn unregister(&self, key: WaiterKey) {
        self.completion.unregister_in(key, &self.core);
    }

    /// Inline, so that the outcome is written straight into the cell by
    /// the caller: passed by reference to an out-of-line function, it was
    /// built on the stack with narrow stores and read back wide, a store
    /// forwarding stall that cost the ping-pong benchmark about a tenth of
    /// its time (`perf annotate`). Waking the waiters stays out of line.
    #[inline]
    fn complete(&self, outcome: Result<T, Error>) -> Result<(), InvalidStateError> {
        let state = match &outcome {
            Err(e) if e.is_cancelled() => State::Cancelled,
            _ => State::Done,
        };
        self.outcome.set(outcome)?;
        self.state.set(state);
        self.fire();
        Ok(())
    }

    #[inline(never)]
    fn fire(&self) {
        if let Some(core) = self.core.upgrade() {
            fire_completion(&core, &self.completion);
        }
    }
}

impl<T: 'static> Future<T> {
    #[inline]
    fn complete(&self, outcome: Result<T, Error>) -> Result<(), InvalidStateError> {
        self.inner.complete(outcome)
    }

    /// Marks the future done with a result (asyncio's `set_result`);
    /// `invalid state` if it is already done.
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let f = lp.create_future::<u8>();
    /// f.set_result(1).unwrap();
    /// assert!(f.set_result(2).is_err());
    /// ```
    #[inline]
    pub fn set_result(&self, value: T) -> Result<(), InvalidStateError> {
        self.complete(Ok(value))
    }

    /// Marks the future done with an exception (asyncio's `set_exception`);
    /// `invalid state` if it is already done. A cancellation set this way
    /// leaves the future cancelled.
    ///
    /// ```
    /// let lp = aioloop::EventLoop::new().unwrap();
    /// let f = lp.create_future::<u8>();
    /// f.set_exception(std::io::Error::other("gone")).unwrap();
    /// assert_eq!(f.exception().unwrap().unwrap().to_string(), "gone");
    /// ```
    pub fn set_exception(&self, e: impl Into<Error>) -> Result<(), InvalidStateError> {
        let e = e.into();
        let cancelled = e.is_cancelled();
        self.complete(Err(e))?;
        self.inner.unretrieved.set(!cancelled);
        Ok(())
    }

    /// Cancels the future (asyncio's `cancel()`); false if already done.
    /// Like asyncio's, it counts as looking at an exception set before: a
    /// failed future that was cancelled is not reported as never retrieved.
    pub fn cancel(&self) -> bool {
        self.inner.unretrieved.set(false);
        self.complete(Err(Error::cancelled(None))).is_ok()
    }

    /// Cancels with a message, which every awaiter's `CancelledError` carries.
    pub fn cancel_with(&self, msg: impl Into<String>) -> bool {
        self.inner.unretrieved.set(false);
        self.complete(Err(Error::cancelled(Some(msg.into()))))
            .is_ok()
    }

    /// True if attached to `lp`.
    pub(crate) fn belongs_to(&self, lp: &LoopRef) -> bool {
        std::ptr::eq(self.inner.core.as_ptr(), Rc::as_ptr(lp.core()))
    }

    /// True once done, whichever way.
    pub fn done(&self) -> bool {
        self.inner.state.get() != State::Pending
    }

    /// True if cancelled.
    pub fn cancelled(&self) -> bool {
        self.inner.state.get() == State::Cancelled
    }

    /// Calls `f` (via `call_soon`) once the future is done, in registration
    /// order; on the next iteration if it is already done.
    pub fn add_done_callback(&self, f: impl FnOnce(&Future<T>) + 'static) -> DoneCallbackId {
        let me = self.clone();
        let (id, now) = self
            .inner
            .completion
            .add_callback(self.done(), Box::new(move || f(&me)));
        if let (Some(f), Some(core)) = (now, self.inner.core.upgrade()) {
            let _ = LoopRef::from_core(core).call_soon(f);
        }
        id
    }

    /// Removes a done callback not yet scheduled; true if it was there.
    pub fn remove_done_callback(&self, id: DoneCallbackId) -> bool {
        self.inner.completion.remove_callback(id)
    }

    /// The exception (asyncio's `exception()`): `Ok(None)` after a result,
    /// `Ok(Some(e))` after `set_exception(e)`, `Err` when cancelled (the
    /// `CancelledError`) or pending (`Exception is not set.`).
    pub fn exception(&self) -> Result<Option<Error>, Error> {
        self.inner.unretrieved.set(false);
        self.inner.outcome.exception()
    }

    /// Waits for the future and moves its result out, for a `T` that is
    /// not `Clone`. Every other reader then gets `Result was already
    /// taken.` from `result()` (the exception, if it failed, stays for all).
    ///
    /// ```
    /// use aioloop::EventLoop;
    ///
    /// struct Conn; // not Clone
    /// let lp = EventLoop::new().unwrap();
    /// let f = lp.create_future::<Conn>();
    /// f.set_result(Conn).unwrap();
    /// let conn = lp.run_until_complete(f.clone().take()).unwrap();
    /// # let _ = conn;
    /// assert!(f.done());
    /// ```
    pub fn take(self) -> FutureTake<T> {
        FutureTake { fut: self }
    }

    /// Where a pending future is awaited: the cancellation point, the
    /// refusals, then the registration. `Ok(false)` if the future is done
    /// after all (a cancel request cancelled it).
    #[inline(never)]
    fn park(&mut self, cx: &mut Context<'_>) -> Result<bool, Error> {
        let fut = &*self.inner;
        if let Some(c) = take_cancel_request() {
            // asyncio cancels the future the cancelled task waits on.
            fut.complete(Err(c.into())).ok();
            return Ok(false);
        }
        let Some(core) = fut.core.upgrade() else {
            return Ok(true);
        };
        if let Some(task) = current_task_repr_if_other_loop(&core) {
            // asyncio's `__step` throws this into the coroutine, and leaves
            // the future alone.
            return Err(LoopError::DifferentLoop(task, fut.repr()).into());
        }
        self.key = Some(fut.completion.register(
            self.key,
            cx,
            Some(&core),
            WaitSite::new(WaitKind::Future, &*self),
        ));
        // A Weak coerces to `Weak<dyn _>` directly: no strong count traffic.
        let weak: Weak<FutureInner<T>> = Rc::downgrade(&self.inner);
        set_fut_waiter(FutWaiter::Target(weak));
        Ok(true)
    }

    /// The poll of every await of this future, `retrieve` reading the
    /// outcome once it is done.
    // Inline for the done case, so that the outcome reaches the awaiting
    // code in registers: returned through memory from an out-of-line poll,
    // it was written narrow and read wide (a store forwarding stall,
    // measured with `perf annotate` on the ping-pong benchmark).
    #[inline(always)]
    fn poll_with(
        &mut self,
        cx: &mut Context<'_>,
        retrieve: impl FnOnce(&OutcomeCell<T>) -> Result<T, Error>,
    ) -> Poll<Result<T, Error>> {
        if !self.done() {
            match self.park(cx) {
                Ok(true) => return Poll::Pending,
                Ok(false) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.inner.unretrieved.set(false);
        if let Some(k) = self.key.take() {
            // Usually a no-op: completing took every waiter out.
            self.inner.unregister(k);
            // Resumed after parking here: a cancel requested since the
            // future completed is delivered now (asyncio's `__step` with
            // `_must_cancel`: a CancelledError replaces the future's result
            // or exception; the future's own cancellation is kept).
            if let Some(c) = take_cancel_request() {
                if !self.cancelled() {
                    return Poll::Ready(Err(c.into()));
                }
            }
        }
        Poll::Ready(retrieve(&self.inner.outcome))
    }
}

impl<T: Clone + 'static> Future<T> {
    /// The result (asyncio's `result()`): a clone of the value, or the
    /// exception or cancellation as an error; `Result is not set.` while
    /// pending. Answers any number of times.
    pub fn result(&self) -> Result<T, Error> {
        self.inner.unretrieved.set(false);
        self.inner.outcome.result()
    }
}

impl<T> WaitTarget for FutureInner<T> {
    fn cancel_target(&self, msg: Option<String>) -> bool {
        self.unretrieved.set(false);
        self.complete(Err(Error::cancelled(msg))).is_ok()
    }
    fn for_each_list(&self, f: &mut dyn FnMut(&WaitList)) {
        f(&self.completion)
    }
    fn unnotified(&self) -> usize {
        self.completion.unnotified()
    }
    fn describe(&self) -> String {
        self.repr()
    }
}

impl<T> fmt::Debug for Future<T> {
    /// asyncio's repr: `<Future pending>`, `<Future finished>`, `<Future
    /// cancelled>`; in debug mode with `created at file:line`, as asyncio's.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.repr())
    }
}

/// Awaiting a [`Future`]: a cancellation point. Every await gets a clone of
/// the result; the outcome stays for `result()` and the next await.
impl<T: Clone + 'static> StdFuture for Future<T> {
    type Output = Result<T, Error>;
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().poll_with(cx, OutcomeCell::result)
    }
}

/// `(&fut).await`: awaits another handle to the same future.
impl<T: Clone + 'static> IntoFuture for &Future<T> {
    type Output = Result<T, Error>;
    type IntoFuture = Future<T>;
    fn into_future(self) -> Future<T> {
        self.clone()
    }
}

/// The future of [`Future::take`]: a cancellation point that moves the
/// result out.
pub struct FutureTake<T: 'static> {
    fut: Future<T>,
}

impl<T: 'static> StdFuture for FutureTake<T> {
    type Output = Result<T, Error>;
    #[inline(always)]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().fut.poll_with(cx, OutcomeCell::take)
    }
}

impl<T: 'static> fmt::Debug for FutureTake<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FutureTake({:?})", self.fut)
    }
}
