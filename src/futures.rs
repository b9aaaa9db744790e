//! `Future<T, E>`: asyncio's loop future, a result that will be set later.
//!
//! asyncio's `Future` (`Lib/asyncio/futures.py`): pending until someone calls
//! `set_result`, `set_exception` or `cancel`; awaitable by any number of
//! tasks; done callbacks scheduled with `call_soon`, never called inline.
//! Not to be confused with [`std::future::Future`], the Rust trait, which
//! this type implements through [`IntoFuture`].
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
//!   sees as `Err(Cancelled)`.

use std::cell::Cell;
use std::convert::Infallible;
use std::fmt;
use std::future::{Future as StdFuture, IntoFuture};
use std::marker::PhantomData;
use std::panic::Location;
use std::pin::Pin;
use std::ptr::addr_of_mut;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use crate::errors::{CancelledError, InvalidStateError, TaskError};
use crate::event_loop::exceptions::report_unretrieved;
use crate::event_loop::{LoopCore, LoopRef};
use crate::outcome::OutcomeCell;
use crate::tasks::{fire_completion, set_fut_waiter, take_cancel_request, FutWaiter, WaitTarget};
use crate::waiters::{Completion, DoneCallbackId, WaitKind, WaitList, WaitSite, WaiterKey};

/// A loop future's state, readable without touching the outcome slot.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Done,
    Cancelled,
}

/// Names a future's failure (monomorphised where `E: Debug` is known).
type FailureText<T, E> = fn(&OutcomeCell<T, E>) -> Option<String>;

struct FutureInner<T, E> {
    state: Cell<State>,
    outcome: OutcomeCell<T, E>,
    completion: Completion,
    core: Weak<LoopCore>,
    /// Set by `set_exception` until someone looks at the outcome: how to
    /// name the failure if nobody ever does (asyncio's `__log_traceback`).
    unretrieved: Cell<Option<FailureText<T, E>>>,
    /// Where it was created, in debug mode (asyncio's `_source_traceback`).
    site: Option<&'static Location<'static>>,
}

/// asyncio's `Future`: a result (`T`) or exception (`E`) set later.
///
/// Clones share the future. Await it by value (`fut.await`, taking the
/// result) or by reference (`(&fut).await`, cloning it, for `T: Clone`).
///
/// ```
/// use aioloop::EventLoop;
///
/// let lp = EventLoop::new().unwrap();
/// let fut = lp.create_future::<&str>();
/// let f = fut.clone();
/// lp.call_soon(move || f.set_result("ready").unwrap()).unwrap();
/// let got = lp.run_until_complete(async move { fut.await }).unwrap();
/// assert_eq!(got.unwrap(), "ready");
/// ```
pub struct Future<T, E = Infallible> {
    inner: Rc<FutureInner<T, E>>,
}

impl<T, E> Drop for FutureInner<T, E> {
    fn drop(&mut self) {
        // The last handle is gone: an exception nobody looked at is
        // reported now, as asyncio's `Future.__del__` does.
        if let Some(text) = self.unretrieved.get().and_then(|f| f(&self.outcome)) {
            let repr = match self.site {
                Some(s) => format!(
                    "<Future finished exception={text} created at {}:{}>",
                    s.file(),
                    s.line()
                ),
                None => format!("<Future finished exception={text}>"),
            };
            report_unretrieved(self.core.upgrade(), "Future", repr, text);
        }
    }
}

impl<T, E> Drop for Future<T, E> {
    fn drop(&mut self) {
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

impl<T, E> Clone for Future<T, E> {
    fn clone(&self) -> Self {
        Future {
            inner: self.inner.clone(),
        }
    }
}

impl LoopRef {
    /// A new pending future attached to this loop (asyncio's
    /// `loop.create_future()`), whose exception type is `Infallible`; see
    /// [`Future::new`] for one that can fail.
    #[track_caller]
    pub fn create_future<T: 'static>(&self) -> Future<T> {
        Future::new(self)
    }
}

impl<T: 'static, E: 'static> Future<T, E> {
    /// A new pending future attached to `lp`, with exception type `E`.
    ///
    /// ```
    /// use aioloop::{EventLoop, Future};
    ///
    /// let lp = EventLoop::new().unwrap();
    /// let f = Future::<u32, String>::new(&lp);
    /// f.set_exception("no".into()).unwrap();
    /// assert_eq!(f.exception().unwrap(), Some("no".to_owned()));
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
        let mut fresh = Rc::<FutureInner<T, E>>::new_uninit();
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
            addr_of_mut!((*p).unretrieved).write(Cell::new(None));
            addr_of_mut!((*p).site).write(site);
            Future {
                inner: fresh.assume_init(),
            }
        }
    }
}

/// Fails to compile when `FutureInner` gains a field, so that `Future::new`,
/// which writes the fields one by one, cannot leave one uninitialized.
#[allow(dead_code)]
fn future_new_writes_every_field<T, E>(inner: &FutureInner<T, E>) {
    let FutureInner {
        state: _,
        outcome: _,
        completion: _,
        core: _,
        unretrieved: _,
        site: _,
    } = inner;
}

impl<T, E> FutureInner<T, E> {
    fn repr(&self) -> String {
        match self.site {
            Some(s) => format!(
                "<Future {} created at {}:{}>",
                self.outcome.state_name(),
                s.file(),
                s.line()
            ),
            None => format!("<Future {}>", self.outcome.state_name()),
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
    fn complete(&self, outcome: Result<T, TaskError<E>>) -> Result<(), InvalidStateError> {
        let state = match &outcome {
            Err(TaskError::Cancelled(_)) => State::Cancelled,
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

impl<T: 'static, E: 'static> Future<T, E> {
    #[inline]
    fn complete(&self, outcome: Result<T, TaskError<E>>) -> Result<(), InvalidStateError> {
        self.inner.complete(outcome)
    }

    /// Marks the future done with a result (asyncio's `set_result`);
    /// `invalid state` if it is already done.
    #[inline]
    pub fn set_result(&self, value: T) -> Result<(), InvalidStateError> {
        self.complete(Ok(value))
    }

    /// Marks the future done with an exception (asyncio's `set_exception`);
    /// `invalid state` if it is already done.
    pub fn set_exception(&self, e: E) -> Result<(), InvalidStateError>
    where
        E: fmt::Debug,
    {
        self.complete(Err(TaskError::Exception(e)))?;
        self.inner.unretrieved.set(Some(OutcomeCell::failure_text));
        Ok(())
    }

    /// Cancels the future (asyncio's `cancel()`); false if already done.
    pub fn cancel(&self) -> bool {
        self.complete(Err(TaskError::Cancelled(CancelledError::new(None))))
            .is_ok()
    }

    /// Cancels with a message, which every awaiter's `CancelledError` carries.
    pub fn cancel_with(&self, msg: impl Into<String>) -> bool {
        self.complete(Err(TaskError::Cancelled(CancelledError::new(Some(
            msg.into(),
        )))))
        .is_ok()
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
    pub fn add_done_callback(&self, f: impl FnOnce(&Future<T, E>) + 'static) -> DoneCallbackId {
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

    #[inline(always)]
    fn take_outcome(&self) -> Result<T, TaskError<E>> {
        self.inner.unretrieved.set(None);
        self.inner.outcome.take()
    }
}

impl<T: Clone + 'static, E: Clone + 'static> Future<T, E> {
    /// The result (asyncio's `result()`): the value, or the exception or
    /// cancellation as an error; `Result is not set.` while pending.
    pub fn result(&self) -> Result<T, TaskError<E>> {
        self.inner.unretrieved.set(None);
        self.inner.outcome.result()
    }

    /// The exception (asyncio's `exception()`): `Ok(None)` after a result,
    /// `Ok(Some(e))` after `set_exception(e)`, `Err` when cancelled or pending.
    pub fn exception(&self) -> Result<Option<E>, TaskError<E>> {
        self.inner.unretrieved.set(None);
        match self.inner.outcome.exception()? {
            None => Ok(None),
            Some(TaskError::Exception(e)) => Ok(Some(e)),
            Some(other) => Err(other),
        }
    }
}

impl<T, E> WaitTarget for FutureInner<T, E> {
    fn cancel_target(&self, msg: Option<String>) -> bool {
        self.complete(Err(TaskError::Cancelled(CancelledError::new(msg))))
            .is_ok()
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

impl<T, E> fmt::Debug for Future<T, E> {
    /// asyncio's repr: `<Future pending>`, `<Future finished>`, `<Future
    /// cancelled>`; in debug mode with `created at file:line`, as asyncio's.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.repr())
    }
}

/// How a [`FutureWait`] holds its future: owned, or borrowed.
pub trait AsFuture<T, E> {
    /// The future.
    fn future(&self) -> &Future<T, E>;
    /// Produces the outcome once the future is done.
    fn outcome(&self) -> Result<T, TaskError<E>>;
}

impl<T: 'static, E: 'static> AsFuture<T, E> for Future<T, E> {
    fn future(&self) -> &Future<T, E> {
        self
    }
    // Inline: the value then reaches the awaiting code in registers (see
    // `FutureWait::poll`).
    #[inline(always)]
    fn outcome(&self) -> Result<T, TaskError<E>> {
        self.take_outcome()
    }
}

impl<T: Clone + 'static, E: Clone + 'static> AsFuture<T, E> for &Future<T, E> {
    fn future(&self) -> &Future<T, E> {
        self
    }
    fn outcome(&self) -> Result<T, TaskError<E>> {
        self.result()
    }
}

/// The `std::future::Future` of awaiting a [`Future`]: a cancellation point.
pub struct FutureWait<T: 'static, E: 'static, H: AsFuture<T, E>> {
    fut: H,
    key: Option<WaiterKey>,
    _out: PhantomData<fn() -> (T, E)>,
}

impl<T: 'static, E: 'static, H: AsFuture<T, E> + Unpin> StdFuture for FutureWait<T, E, H> {
    type Output = Result<T, TaskError<E>>;
    /// Inline for the done case, so that the outcome reaches the awaiting
    /// code in registers: returned through memory from an out-of-line
    /// poll, it was written narrow and read wide (a store forwarding
    /// stall, measured with `perf annotate` on the ping-pong benchmark).
    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if !this.fut.future().done() && this.park(cx) {
            return Poll::Pending;
        }
        if let Some(k) = this.key.take() {
            // Usually a no-op: completing took every waiter out.
            this.fut.future().inner.unregister(k);
        }
        Poll::Ready(this.fut.outcome())
    }
}

impl<T: 'static, E: 'static, H: AsFuture<T, E>> FutureWait<T, E, H> {
    /// The poll of a pending future: the cancellation point, then the
    /// registration. False if the future is done after all (a cancel
    /// request cancelled it).
    #[inline(never)]
    fn park(&mut self, cx: &mut Context<'_>) -> bool {
        let fut = self.fut.future();
        if let Some(c) = take_cancel_request() {
            // asyncio cancels the future the cancelled task waits on.
            fut.complete(Err(TaskError::Cancelled(c))).ok();
            return false;
        }
        let Some(core) = fut.inner.core.upgrade() else {
            return true;
        };
        self.key = Some(fut.inner.completion.register(
            self.key,
            cx,
            Some(&core),
            WaitSite::new(WaitKind::Future, fut),
        ));
        // A Weak coerces to `Weak<dyn _>` directly: no strong count traffic.
        let weak: Weak<FutureInner<T, E>> = Rc::downgrade(&fut.inner);
        set_fut_waiter(FutWaiter::Target(weak));
        true
    }
}

impl<T: 'static, E: 'static, H: AsFuture<T, E>> Drop for FutureWait<T, E, H> {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.fut.future().inner.unregister(k);
        }
    }
}

impl<T: 'static, E: 'static> IntoFuture for Future<T, E> {
    type Output = Result<T, TaskError<E>>;
    type IntoFuture = FutureWait<T, E, Future<T, E>>;
    fn into_future(self) -> Self::IntoFuture {
        FutureWait {
            fut: self,
            key: None,
            _out: PhantomData,
        }
    }
}

impl<'a, T: Clone + 'static, E: Clone + 'static> IntoFuture for &'a Future<T, E> {
    type Output = Result<T, TaskError<E>>;
    type IntoFuture = FutureWait<T, E, &'a Future<T, E>>;
    fn into_future(self) -> Self::IntoFuture {
        FutureWait {
            fut: self,
            key: None,
            _out: PhantomData,
        }
    }
}
