//! `sleep(delay)`: asyncio's `asyncio.sleep`.
//!
//! `sleep(0)` yields exactly once: the task goes to the back of the ready
//! queue and runs again on the next iteration (asyncio's bare `yield` in
//! `__sleep0`), with no timer. A longer sleep schedules one timer that wakes
//! the task, and cancels it if the sleep is cancelled or dropped.
//!
//! # Invariants
//!
//! - A cancellation point: a pending cancel request of the current task
//!   ends the sleep with `Err(CancelledError)` and cancels its timer.
//! - Never early: the timer is a loop timer, due at `time() + delay`.
//! - Dropping an unfinished sleep cancels its timer, so nothing it captured
//!   (the waker) outlives it.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::debug::NeverAwaited;
use crate::errors::Error;
use crate::event_loop::{get_running_loop, TimerHandle};
use crate::tasks::take_cancel_request;

/// Waits `delay` on the running loop's clock (asyncio's `asyncio.sleep`).
///
/// A cancellation point: returns the `CancelledError` if the task is
/// cancelled while it sleeps. Outside a running loop a non-zero sleep
/// fails with `no running event loop`, as asyncio's does.
///
/// ```
/// use aioloop::{sleep, EventLoop};
/// use std::time::Duration;
///
/// let lp = EventLoop::with_virtual_clock().unwrap();
/// lp.run_until_complete(async {
///     sleep(Duration::from_secs(3600)).await
/// }).unwrap();
/// assert_eq!(lp.time(), 3600.0, "an hour, on the virtual clock, in no time");
/// ```
#[track_caller]
pub fn sleep(delay: Duration) -> Sleep {
    Sleep {
        delay,
        state: State::Start,
        created: NeverAwaited::new(),
    }
}

enum State {
    Start,
    /// `sleep(0)`: yielded once, done at the next poll.
    Yielded,
    /// Waiting for the timer, which takes the waker out when it fires.
    /// A real waker clone, not a task id: the waker vtable counts it, so
    /// the stuck-task check sees that a timer can still wake the task.
    Waiting {
        timer: TimerHandle,
        waker: Rc<RefCell<Option<Waker>>>,
    },
    Done,
}

/// The future of [`sleep`].
pub struct Sleep {
    delay: Duration,
    state: State,
    created: NeverAwaited,
}

impl Future for Sleep {
    type Output = Result<(), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.created.polled();
        if let Some(c) = take_cancel_request() {
            this.finish();
            return Poll::Ready(Err(c.into()));
        }
        match &this.state {
            State::Start if this.delay.is_zero() => {
                this.state = State::Yielded;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            State::Start => {
                // asyncio: `RuntimeError('no running event loop')`.
                let lp = match get_running_loop() {
                    Ok(lp) => lp,
                    Err(e) => {
                        this.state = State::Done;
                        return Poll::Ready(Err(e.into()));
                    }
                };
                let waker = Rc::new(RefCell::new(Some(cx.waker().clone())));
                let w = waker.clone();
                let timer = match lp.call_later(this.delay, move || {
                    let taken = w.borrow_mut().take();
                    if let Some(w) = taken {
                        w.wake();
                    }
                }) {
                    Ok(t) => t,
                    Err(e) => {
                        this.state = State::Done;
                        return Poll::Ready(Err(e.into()));
                    }
                };
                this.state = State::Waiting { timer, waker };
                Poll::Pending
            }
            State::Yielded => {
                this.state = State::Done;
                Poll::Ready(Ok(()))
            }
            State::Waiting { waker, .. } => {
                let mut slot = waker.borrow_mut();
                match slot.as_mut() {
                    // The timer took the waker: it fired.
                    None => {
                        drop(slot);
                        this.state = State::Done;
                        Poll::Ready(Ok(()))
                    }
                    Some(w) => {
                        if !w.will_wake(cx.waker()) {
                            *w = cx.waker().clone();
                        }
                        Poll::Pending
                    }
                }
            }
            State::Done => Poll::Ready(Ok(())),
        }
    }
}

impl Sleep {
    fn finish(&mut self) {
        if let State::Waiting { timer, .. } = std::mem::replace(&mut self.state, State::Done) {
            timer.cancel();
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.created.check("sleep");
        self.finish();
    }
}
