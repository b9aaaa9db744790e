//! `timeout(delay)` / `timeout_at(when)`: asyncio's `asyncio.timeout` context
//! manager, as a value whose [`run`](Timeout::run) wraps a future.
//!
//! asyncio (`Lib/asyncio/timeouts.py`, 3.11+) does not race the body against
//! a timer from the outside. It arms one timer that, when due, **cancels the
//! current task** (`task.cancel()`), exactly as anyone else could; the
//! `CancelledError` then travels through the body like any cancellation (its
//! cleanup runs, it may even await), and at the exit of the `async with`
//! the timeout converts it into `TimeoutError` — only if the cancellation is
//! its own: it withdraws its request (`uncancel()`) and the task's
//! `cancelling()` count must fall back to the level seen at entry. A second
//! request from elsewhere keeps the count above that level and the
//! `CancelledError` propagates. That rule is what makes nested timeouts work:
//! only the one that expired converts, an outer one sees a plain
//! cancellation coming out of an inner one that did not expire.
//!
//! ```text
//!   created ──run──► active ──timer──► expiring ──exit──► expired
//!                      │      (task.cancel())   (uncancel; Cancelled → TimeoutError)
//!                      └──────────exit──────────────────► finished
//! ```
//!
//! | asyncio | aioloop |
//! |---|---|
//! | `async with asyncio.timeout(d) as cm: body` | `let cm = timeout(d); cm.run(body).await` |
//! | `asyncio.timeout_at(when)`, `timeout(None)` | [`timeout_at`], `timeout(None)` |
//! | `cm.when()`, `cm.reschedule(when)`, `cm.expired()` | same names |
//! | `RuntimeError('no running event loop')` from `timeout(d)` | `Err(LoopError::NoRunningLoop)` from `timeout(d)` |
//! | `RuntimeError('Timeout has already been entered')` | `Err` from `run`, [`ErrorKind::Scope`](crate::ErrorKind::Scope) |
//!
//! `run` borrows the `Timeout`, so the body can call `cm.reschedule` and the
//! code after it can ask `cm.expired()`, as in asyncio.
//!
//! # Invariants
//!
//! - The body's output is returned untouched unless the timeout expired and
//!   the body ended in a cancellation that was the timeout's own.
//! - The task's `cancelling()` count is back to its entry level after a
//!   converted expiry: the timeout withdraws exactly the request it made.
//! - When the body is no cancellation point (a foreign future that ignores
//!   the request), `run` consumes the request itself once the body returns
//!   `Pending`, drops the body in place (its destructors are the `finally`
//!   blocks) and ends as if the body had propagated the cancellation.
//!   Without this the core's fallback would drop the whole task.
//! - The timer never outlives the scope: leaving it, or dropping the `run`
//!   future, cancels the timer and, if the timeout had expired, withdraws
//!   its request.
//!
//! - A body parked on a task or loop future that completes in the iteration
//!   of the expiry (the body's task not yet resumed) gets the cancellation
//!   at that await, and the scope raises `TimeoutError`: the result is lost,
//!   as in CPython 3.11.7, 3.12.1 and 3.13.0 (the resumed await delivers a
//!   pending request, asyncio's `__step` with `_must_cancel`).
//!
//! The scope holds a strong [`TaskRef`] to its task while active (the timer
//! must be able to cancel it from outside the task). If the loop is closed
//! while the task is still inside the scope, that reference keeps the task's
//! future alive: the scope must be left (or its task finished) first, as
//! `aioloop::run` does by cancelling every task before closing.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::{poll_fn, Future, IntoFuture};
use std::pin::pin;
use std::rc::{Rc, Weak};
use std::task::Poll;
use std::time::Duration;

use crate::errors::{CancelledError, Error, LoopError, TaskOutput};
use crate::event_loop::{get_running_loop, Handle, LoopRef, TimerHandle};
use crate::tasks::{current_task, take_cancel_request, TaskRef};

/// A timeout whose deadline is `delay` from now on the running loop's clock
/// (asyncio's `asyncio.timeout(delay)`); `None` never expires.
///
/// The deadline is fixed when `timeout` is called, as asyncio computes
/// `loop.time() + delay` at construction; outside a running loop it fails
/// with `no running event loop`, as asyncio's does (even for `None`:
/// checked with CPython 3.11 and 3.13).
///
/// ```
/// use aioloop::{sleep, timeout, EventLoop};
/// use std::time::Duration;
///
/// assert!(timeout(Duration::from_secs(1)).is_err(), "no running loop");
/// let lp = EventLoop::with_virtual_clock().unwrap();
/// let out = lp.run_until_complete(async {
///     let cm = timeout(Duration::from_secs(1))?;
///     let r = cm.run(sleep(Duration::from_secs(10))).await;
///     assert!(cm.expired());
///     r
/// });
/// assert!(out.unwrap_err().is_timeout());
/// assert_eq!(lp.time(), 1.0);
/// ```
pub fn timeout(delay: impl Into<Option<Duration>>) -> Result<Timeout, LoopError> {
    let lp = get_running_loop()?;
    let when = delay.into().map(|d| lp.time() + d.as_secs_f64());
    Ok(Timeout::new(when))
}

/// A timeout due at loop time `when`, in seconds on the clock of
/// [`LoopRef::time`] (asyncio's `asyncio.timeout_at(when)`); `None` never
/// expires. A time already past expires on the next iteration.
///
/// ```
/// use aioloop::{get_running_loop, sleep, timeout_at, EventLoop};
/// use std::time::Duration;
///
/// let lp = EventLoop::with_virtual_clock().unwrap();
/// lp.run_until_complete(async {
///     let now = get_running_loop().unwrap().time();
///     let cm = timeout_at(now + 5.0);
///     assert_eq!(cm.when(), Some(now + 5.0));
///     cm.run(sleep(Duration::from_secs(1))).await
/// }).unwrap();
/// ```
pub fn timeout_at(when: impl Into<Option<f64>>) -> Timeout {
    Timeout::new(when.into())
}

/// Where a [`Timeout`] is in its life; the names are asyncio's, as its
/// `repr` and error messages show them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutState {
    /// Built, not yet running.
    Created,
    /// Running its body, the timer armed (asyncio's `ENTERED`).
    Active,
    /// The timer fired and cancelled the task; the body has not ended yet.
    Expiring,
    /// Left after expiring.
    Expired,
    /// Left without expiring (asyncio's `EXITED`).
    Finished,
}

impl TimeoutState {
    /// asyncio's name for the state (`_State.value`).
    pub fn as_str(self) -> &'static str {
        match self {
            TimeoutState::Created => "created",
            TimeoutState::Active => "active",
            TimeoutState::Expiring => "expiring",
            TimeoutState::Expired => "expired",
            TimeoutState::Finished => "finished",
        }
    }
}

/// Why [`Timeout::reschedule`] refused; the texts are asyncio's.
///
/// ```
/// use aioloop::{timeout_at, TimeoutStateError};
///
/// let err = timeout_at(None).reschedule(1.0).unwrap_err();
/// assert!(matches!(err, TimeoutStateError::NotEntered));
/// assert_eq!(err.to_string(), "Timeout has not been entered");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum TimeoutStateError {
    /// The timeout is not running yet.
    NotEntered,
    /// The timeout is expiring, expired or finished: its deadline no
    /// longer matters.
    Frozen(TimeoutState),
    /// The loop refused the new timer (a NaN `when`, a closed loop).
    Loop(LoopError),
}

/// Why a [`Timeout`] scope could not be entered (asyncio raises
/// `RuntimeError` with these texts); the body does not run.
///
/// ```
/// assert_eq!(
///     aioloop::ScopeError::AlreadyEntered.to_string(),
///     "Timeout has already been entered"
/// );
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopeError {
    /// `run` was called a second time on the same timeout.
    AlreadyEntered,
    /// `run` was awaited outside an aioloop task.
    NotInTask,
}

impl fmt::Display for ScopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScopeError::AlreadyEntered => "Timeout has already been entered",
            ScopeError::NotInTask => "Timeout should be used inside a task",
        })
    }
}

impl std::error::Error for ScopeError {}

impl fmt::Display for TimeoutStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimeoutStateError::NotEntered => f.write_str("Timeout has not been entered"),
            TimeoutStateError::Frozen(s) => {
                write!(f, "Cannot change state of {} Timeout", s.as_str())
            }
            TimeoutStateError::Loop(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl std::error::Error for TimeoutStateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TimeoutStateError::Loop(e) => Some(e),
            _ => None,
        }
    }
}

/// asyncio's `Timeout` context manager; built by [`timeout`] or
/// [`timeout_at`], entered by [`run`](Timeout::run).
///
/// `Debug` prints asyncio's repr: `<Timeout [active] when=12.5>`.
pub struct Timeout {
    shared: Rc<Shared>,
}

/// What the timer callback shares with the scope.
struct Shared {
    state: Cell<TimeoutState>,
    when: Cell<Option<f64>>,
    /// The armed timer (`call_at`), or the expiry queued with `call_soon`
    /// for a deadline already past.
    handler: RefCell<Option<Handler>>,
    /// Set while active: the task to cancel, its loop, and its
    /// `cancelling()` count at entry.
    scope: RefCell<Option<Scope>>,
}

struct Scope {
    task: TaskRef,
    lp: LoopRef,
    cancelling: u16,
}

enum Handler {
    Soon(Handle),
    At(TimerHandle),
}

impl Handler {
    fn cancel(&self) {
        match self {
            Handler::Soon(h) => h.cancel(),
            Handler::At(t) => t.cancel(),
        }
    }
}

/// How a scope ended, before the caller maps it to its error type.
pub(crate) enum Exit<O> {
    /// The body's own output, untouched.
    Output(O),
    /// The timeout expired and the body ended in its cancellation.
    Timeout,
    /// The scope consumed a cancel request the body ignored, not the
    /// timeout's own.
    Cancelled(CancelledError),
    /// The scope could not be entered (entered twice, or outside a task);
    /// the body did not run.
    Refused(ScopeError),
}

impl Timeout {
    fn new(when: Option<f64>) -> Timeout {
        Timeout {
            shared: Rc::new(Shared {
                state: Cell::new(TimeoutState::Created),
                when: Cell::new(when),
                handler: RefCell::new(None),
                scope: RefCell::new(None),
            }),
        }
    }

    /// The deadline, in loop time (asyncio's `when()`); `None` if none.
    pub fn when(&self) -> Option<f64> {
        self.shared.when.get()
    }

    /// True once the timeout fired during the body (asyncio's
    /// `expired()`), whether or not it turned into a `TimeoutError`.
    pub fn expired(&self) -> bool {
        matches!(
            self.shared.state.get(),
            TimeoutState::Expiring | TimeoutState::Expired
        )
    }

    /// Where the timeout is in its life.
    pub fn state(&self) -> TimeoutState {
        self.shared.state.get()
    }

    /// Moves the deadline to loop time `when`, or removes it with `None`
    /// (asyncio's `reschedule`). Only while the body runs; a time already
    /// past expires on the next iteration.
    ///
    /// ```
    /// use aioloop::{get_running_loop, sleep, timeout, EventLoop};
    /// use std::time::Duration;
    ///
    /// let lp = EventLoop::with_virtual_clock().unwrap();
    /// lp.run_until_complete(async {
    ///     let cm = timeout(Duration::from_secs(1))?;
    ///     cm.run(async {
    ///         let now = get_running_loop().unwrap().time();
    ///         cm.reschedule(now + 10.0).unwrap(); // more time
    ///         sleep(Duration::from_secs(5)).await
    ///     })
    ///     .await
    /// }).unwrap();
    /// assert_eq!(lp.time(), 5.0);
    /// ```
    pub fn reschedule(&self, when: impl Into<Option<f64>>) -> Result<(), TimeoutStateError> {
        self.shared.reschedule(when.into())
    }

    /// Runs `body` inside the timeout (asyncio's `async with cm: body`), in
    /// the current task. `body` is any future, or anything awaitable such as
    /// a [`Task`](crate::Task) or a loop [`Future`](crate::Future).
    ///
    /// Returns the body's result or its error; a `TimeoutError` when the
    /// timeout expired and the cancellation it caused came out of the body;
    /// the `CancelledError` for a cancellation from elsewhere. A body that
    /// catches the cancellation and returns a value still returns it (and
    /// `expired()` says what happened). Entering twice (`Timeout has already
    /// been entered`) or outside a task (`Timeout should be used inside a
    /// task`) is an error, asyncio's `RuntimeError`, and the body does not
    /// run.
    ///
    /// ```
    /// use aioloop::{sleep, timeout, Error, EventLoop};
    /// use std::time::Duration;
    ///
    /// async fn fetch() -> Result<u32, Error> {
    ///     sleep(Duration::from_secs(3)).await?;
    ///     Ok(7)
    /// }
    ///
    /// let lp = EventLoop::with_virtual_clock().unwrap();
    /// let v = lp.run_until_complete(async {
    ///     timeout(Duration::from_secs(5))?.run(fetch()).await
    /// });
    /// assert_eq!(v.unwrap(), 7);
    /// ```
    pub async fn run<F>(&self, body: F) -> Result<<F::Output as TaskOutput>::Ok, Error>
    where
        F: IntoFuture,
        F::Output: TaskOutput,
    {
        let body = body.into_future();
        let out = self.run_raw(async move { body.await.into_result() }).await;
        match out {
            Exit::Output(r) => r,
            Exit::Timeout => Err(crate::errors::TimeoutError.into()),
            Exit::Cancelled(c) => Err(c.into()),
            Exit::Refused(e) => Err(e.into()),
        }
    }

    /// The scope itself, so that `wait_for` can run a task's outcome
    /// through it without converting twice.
    pub(crate) async fn run_raw<F, T>(&self, body: F) -> Exit<Result<T, Error>>
    where
        F: Future<Output = Result<T, Error>>,
    {
        let guard = match self.enter() {
            Ok(g) => g,
            Err(e) => return Exit::Refused(e),
        };
        let mut slot = pin!(Some(body));
        let ended = poll_fn(|cx| {
            let Some(body) = slot.as_mut().as_pin_mut() else {
                unreachable!("the body is only dropped after the scope ends");
            };
            match body.poll(cx) {
                Poll::Ready(out) => Poll::Ready(Ok(out)),
                // A request the body left unconsumed: it is no cancellation
                // point, so the scope acts as one for it.
                Poll::Pending => match take_cancel_request() {
                    Some(c) => Poll::Ready(Err(c)),
                    None => Poll::Pending,
                },
            }
        })
        .await;
        // The body's destructors are its cleanup: they run before the scope
        // reports anything, as a `finally` would.
        slot.set(None);
        guard.exit(ended)
    }

    fn enter(&self) -> Result<ScopeGuard<'_>, ScopeError> {
        let sh = &self.shared;
        if sh.state.get() != TimeoutState::Created {
            return Err(ScopeError::AlreadyEntered);
        }
        let (Some(task), Ok(lp)) = (current_task(), get_running_loop()) else {
            return Err(ScopeError::NotInTask);
        };
        *sh.scope.borrow_mut() = Some(Scope {
            cancelling: task.cancelling(),
            task,
            lp,
        });
        sh.state.set(TimeoutState::Active);
        if let Err(e) = sh.reschedule(sh.when.get()) {
            // Only a NaN deadline gets here (the loop is running): asyncio
            // would corrupt its heap; refusing to time out is the lesser evil.
            log::warn!(target: "asyncio", "timeout not armed: {e}");
        }
        Ok(ScopeGuard {
            shared: sh,
            done: false,
        })
    }
}

impl Shared {
    fn reschedule(self: &Rc<Self>, when: Option<f64>) -> Result<(), TimeoutStateError> {
        match self.state.get() {
            TimeoutState::Active => {}
            TimeoutState::Created => return Err(TimeoutStateError::NotEntered),
            other => return Err(TimeoutStateError::Frozen(other)),
        }
        self.when.set(when);
        if let Some(old) = self.handler.borrow_mut().take() {
            old.cancel();
        }
        let Some(when) = when else {
            return Ok(());
        };
        let lp = match self.scope.borrow().as_ref() {
            Some(s) => s.lp.clone(),
            None => return Ok(()),
        };
        // The callback holds the scope weakly: the timer must not keep a
        // finished scope alive.
        let weak = Rc::downgrade(self);
        let fire = move || on_timeout(&weak);
        let handler = if when <= lp.time() {
            Handler::Soon(lp.call_soon(fire).map_err(TimeoutStateError::Loop)?)
        } else {
            Handler::At(lp.call_at(when, fire).map_err(TimeoutStateError::Loop)?)
        };
        *self.handler.borrow_mut() = Some(handler);
        Ok(())
    }

    fn disarm(&self) {
        if let Some(h) = self.handler.borrow_mut().take() {
            h.cancel();
        }
    }
}

/// The timer's callback: asyncio's `_on_timeout`.
fn on_timeout(weak: &Weak<Shared>) {
    let Some(sh) = weak.upgrade() else { return };
    if sh.state.get() != TimeoutState::Active {
        return;
    }
    // The handle already ran; dropping it is all that is left.
    drop(sh.handler.borrow_mut().take());
    let task = sh.scope.borrow().as_ref().map(|s| s.task.clone());
    if let Some(task) = task {
        task.cancel();
    }
    sh.state.set(TimeoutState::Expiring);
}

/// Leaves the scope exactly once: through `exit`, or on drop when the `run`
/// future is dropped before its body ended.
struct ScopeGuard<'a> {
    shared: &'a Rc<Shared>,
    done: bool,
}

impl ScopeGuard<'_> {
    /// asyncio's `__aexit__`.
    fn exit<T>(
        mut self,
        ended: Result<Result<T, Error>, CancelledError>,
    ) -> Exit<Result<T, Error>> {
        self.done = true;
        let own_cancel = self.leave();
        match ended {
            Ok(Err(e)) if own_cancel && e.is_cancelled() => Exit::Timeout,
            Err(_) if own_cancel => Exit::Timeout,
            Ok(out) => Exit::Output(out),
            Err(c) => Exit::Cancelled(c),
        }
    }

    /// Disarms, withdraws the timeout's own request if it expired, and says
    /// whether the task's cancellations are now all the timeout's (the
    /// count fell back to its entry level).
    fn leave(&self) -> bool {
        let sh = self.shared;
        sh.disarm();
        let scope = sh.scope.borrow_mut().take();
        match sh.state.get() {
            TimeoutState::Expiring => {
                sh.state.set(TimeoutState::Expired);
                scope.is_some_and(|s| s.task.uncancel() <= s.cancelling)
            }
            _ => {
                sh.state.set(TimeoutState::Finished);
                false
            }
        }
    }
}

impl Drop for ScopeGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.leave();
        }
    }
}

impl fmt::Debug for Timeout {
    /// asyncio's repr: `<Timeout [active] when=1.5>`, the deadline shown
    /// only while active, rounded to the millisecond.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state();
        write!(f, "<Timeout [{}]", state.as_str())?;
        if state == TimeoutState::Active {
            match self.when() {
                Some(w) => write!(f, " when={:?}", (w * 1000.0).round() / 1000.0)?,
                None => f.write_str(" when=None")?,
            }
        }
        f.write_str(">")
    }
}
