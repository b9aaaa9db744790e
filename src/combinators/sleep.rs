//! `sleep(delay)`: asyncio's `asyncio.sleep`.
//!
//! `sleep(0)` yields exactly once: the task goes to the back of the ready
//! queue and runs again on the next iteration (asyncio's bare `yield` in
//! `__sleep0`), with no timer. A longer sleep schedules one timer that wakes
//! the task, and cancels it if the sleep is cancelled or dropped.
//!
//! The timer is a loop timer like `call_later`'s, but without its
//! `TimerHandle` and closure: its handle's callback *is* the waker slot and
//! a weak reference to the loop ([`Wake`]), and the `Sleep` keeps a typed
//! reference to that handle and the wheel key. That is one allocation per
//! sleep (the handle, 56 bytes: the weak reference fits in the 64-byte
//! malloc chunk it takes anyway) instead of three, and a `Sleep` of 40
//! bytes instead of 88, which matters because a parked task's future holds
//! it.
//!
//! # Invariants
//!
//! - A cancellation point: a pending cancel request of the current task
//!   ends the sleep with the `CancelledError` and cancels its timer.
//! - Never early: the timer is a loop timer, due at `time() + delay`, and
//!   fires as asyncio's does: the timer's callback wakes the task, whose
//!   next step runs on the following iteration (asyncio's
//!   `_set_result_unless_cancelled` then the task's wake-up `call_soon`).
//! - The handle's waker slot is `Some` exactly while the timer is pending:
//!   the timer takes the waker out when it fires, so an empty slot in a
//!   handle that was not cancelled means "fired".
//! - Dropping an unfinished sleep cancels its timer and removes it from the
//!   wheel, so nothing it captured (the waker) outlives it.

use std::cell::Cell;
use std::future::Future;
use std::panic::Location;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::debug::NeverAwaited;
use crate::errors::Error;
use crate::event_loop::handle::{HandleInner, Invoke};
use crate::event_loop::{get_running_loop, Handle, LoopCore};
use crate::tasks::take_cancel_request;
use crate::time::wheel::TimerKey;

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
        state: State::Start(delay),
        created: NeverAwaited::new(),
    }
}

/// The sleep timer's callback: the waker of the sleeping task, taken and
/// woken once when the timer fires. A real waker clone, not a task id: the
/// waker vtable counts it, so the stuck-task check sees that a timer can
/// still wake the task. `core` is the loop whose wheel holds the timer, for
/// removing it: kept here rather than in `Sleep`, where it would cost 8
/// bytes of every parked task's future.
struct Wake {
    waker: Cell<Option<Waker>>,
    core: Weak<LoopCore>,
}

impl Invoke for Wake {
    #[inline]
    fn invoke(&self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
    fn release(&self) {
        drop(self.waker.take());
    }
    fn name(&self) -> &'static str {
        "aioloop::sleep"
    }
}

enum State {
    Start(Duration),
    /// `sleep(0)`: yielded once, done at the next poll.
    Yielded,
    /// Waiting for the timer.
    Waiting {
        wake: Rc<HandleInner<Wake>>,
        key: TimerKey,
    },
    Done,
}

/// The future of [`sleep`].
pub struct Sleep {
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
            State::Start(delay) if delay.is_zero() => {
                this.state = State::Yielded;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            &State::Start(delay) => {
                // asyncio: `RuntimeError('no running event loop')`.
                let lp = match get_running_loop() {
                    Ok(lp) => lp,
                    Err(e) => {
                        this.state = State::Done;
                        return Poll::Ready(Err(e.into()));
                    }
                };
                let wake = Rc::new(HandleInner::new(
                    Location::caller(),
                    Wake {
                        waker: Cell::new(Some(cx.waker().clone())),
                        core: Rc::downgrade(lp.core()),
                    },
                ));
                let key = lp.schedule_handle_later(delay, Handle::from_inner(wake.clone()));
                this.state = State::Waiting { wake, key };
                Poll::Pending
            }
            State::Yielded => {
                this.state = State::Done;
                Poll::Ready(Ok(()))
            }
            State::Waiting { wake, .. } => {
                let slot = &wake.callback().waker;
                match slot.take() {
                    // The timer took the waker: it fired.
                    None => {
                        this.state = State::Done;
                        Poll::Ready(Ok(()))
                    }
                    Some(w) if w.will_wake(cx.waker()) => {
                        slot.set(Some(w));
                        Poll::Pending
                    }
                    Some(_) => {
                        slot.set(Some(cx.waker().clone()));
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
        if let State::Waiting { wake, key } = std::mem::replace(&mut self.state, State::Done) {
            // Cancelling the handle matters only if the timer already fired
            // into this iteration's ready queue; removing the entry releases
            // the wheel's reference at once.
            let core = wake.callback().core.upgrade();
            Handle::from_inner(wake).cancel();
            if let Some(core) = core {
                core.timer_cancelled(key);
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        self.created.check("sleep");
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sleep_and_its_handle_stay_small() {
        // A parked task's future holds its Sleep (see the module docs).
        assert!(std::mem::size_of::<Sleep>() <= 40);
        // The handle's allocation stays within a 64-byte malloc chunk
        // (glibc: request + 8, rounded up to 16).
        assert!(2 * 8 + std::mem::size_of::<HandleInner<Wake>>() <= 56);
    }
}
