//! `sleep(delay)`: asyncio's `asyncio.sleep`.
//!
//! `sleep(0)` yields exactly once: the task goes to the back of the ready
//! queue and runs again on the next iteration (asyncio's bare `yield` in
//! `__sleep0`), with no timer. A longer sleep schedules one timer that wakes
//! the task, and cancels it if the sleep is cancelled or dropped.
//!
//! The timer is a loop timer like `call_later`'s, but without its
//! `TimerHandle` and closure. In the usual case, a sleep polled by its own
//! task (the task's borrowed waker, as `current_waits_by_id` recognises it),
//! the wheel entry holds just the task's id ([`Timer::Task`]): nothing is
//! allocated per sleep, no waker is cloned, and a parked task costs the
//! wheel's entry and record only, about as much as a waiter in a loop
//! future's list. The task counts the timer as one by-id wait, as wait lists
//! do, so the stuck-task check still sees that the timer can wake it.
//!
//! Polled with any other waker (a combinator's own, or after the sleep
//! moved to another task), the entry holds a handle instead, whose callback
//! *is* the waker slot and a weak reference to the loop ([`Wake`]), and the
//! `Sleep` keeps a typed reference to that handle and the wheel key: one
//! allocation per sleep (56 bytes: the weak reference fits in the 64-byte
//! malloc chunk it takes anyway). A sleep held by id moves to a handle, in
//! place in the wheel (same deadline, same place in the firing order), the
//! first time it is polled with a waker of something else.
//!
//! # Invariants
//!
//! - A cancellation point: a pending cancel request of the current task
//!   ends the sleep with the `CancelledError` and cancels its timer.
//! - Never early: the timer is a loop timer, due at `time() + delay`, and
//!   fires as asyncio's does: the timer's callback (or, for a task held by
//!   id, its wake in `TimerWakes`, at the same point of the run phase)
//!   wakes the task, whose next step runs on the following iteration
//!   (asyncio's `_set_result_unless_cancelled` then the task's wake-up
//!   `call_soon`).
//! - Held by id: the sleep is done once its key has left both the wheel and
//!   the pending wakes; the task's by-id wait is counted from scheduling
//!   until the wake is delivered or cancelled, exactly once.
//! - Held by a handle: the handle's waker slot is `Some` exactly while the
//!   timer is pending: the timer takes the waker out when it fires, so an
//!   empty slot in a handle that was not cancelled means "fired".
//! - Dropping an unfinished sleep cancels its timer and removes it from the
//!   wheel (or its wake from the pending wakes), so nothing it holds (the
//!   waker, the by-id count) outlives it.

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
use crate::event_loop::{get_running_loop, Handle, LoopCore, Timer};
use crate::task_slab::task_of_waker;
use crate::tasks::{count_id_wait, current_waits_by_id, take_cancel_request};
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

/// The sleep timer's callback when the sleep is not held by task id: the
/// waker it was polled with, taken and woken once when the timer fires. The
/// waker vtable counts the clone, so the stuck-task check sees that a timer
/// can still wake the task. `core` is the loop whose wheel holds the timer,
/// for removing it.
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
    /// Waiting for a timer that holds the current task by id.
    ById {
        key: TimerKey,
        core: Weak<LoopCore>,
    },
    /// Waiting for a timer that holds a handle (any other waker).
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
                let core = lp.core();
                this.state = match current_waits_by_id(cx.waker(), core) {
                    // Counted as a by-id wait of the task just above.
                    Some(id) => State::ById {
                        key: core.schedule_timer_later(delay, Timer::Task(id)),
                        core: Rc::downgrade(core),
                    },
                    None => {
                        let wake = with_waker(cx.waker(), core);
                        let handle = Handle::from_inner(wake.clone());
                        let key = core.schedule_timer_later(delay, Timer::Handle(handle));
                        State::Waiting { wake, key }
                    }
                };
                Poll::Pending
            }
            State::ById { key, core } => {
                let key = *key;
                let Some(core) = core.upgrade() else {
                    // The loop is gone, and its timers with it.
                    this.state = State::Done;
                    return Poll::Ready(Ok(()));
                };
                let mut wheel = core.timers.borrow_mut();
                match wheel.get_mut(key) {
                    Some(Timer::Task(id)) => {
                        let id = *id;
                        if task_of_waker(cx.waker(), &core.remote) == Some(id) {
                            return Poll::Pending;
                        }
                        // Another waker: from now on the timer wakes it,
                        // through a handle that takes the entry's place.
                        let wake = with_waker(cx.waker(), &core);
                        let slot = wheel.get_mut(key).expect("just found");
                        *slot = Timer::Handle(Handle::from_inner(wake.clone()));
                        drop(wheel);
                        count_id_wait(&core, id, false);
                        this.state = State::Waiting { wake, key };
                        Poll::Pending
                    }
                    Some(Timer::Handle(_)) => unreachable!("a sleep held by id has a task entry"),
                    None => {
                        drop(wheel);
                        let wakes = core.timer_wakes.callback();
                        if let Some(id) = wakes.pending_task(key) {
                            // Fired, and its wake waits in this iteration's
                            // run phase: not done before the wake runs, as
                            // a handle's callback would not have run yet.
                            // (Polled by something else meanwhile, the wake
                            // would reach the wrong waker: done now, which
                            // is no earlier than its deadline.)
                            if task_of_waker(cx.waker(), &core.remote) == Some(id) {
                                return Poll::Pending;
                            }
                            wakes.cancel(key);
                            count_id_wait(&core, id, false);
                        }
                        this.state = State::Done;
                        Poll::Ready(Ok(()))
                    }
                }
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

/// A `Wake` handle holding a clone of `waker`.
fn with_waker(waker: &Waker, core: &Rc<LoopCore>) -> Rc<HandleInner<Wake>> {
    Rc::new(HandleInner::new(
        Location::caller(),
        Wake {
            waker: Cell::new(Some(waker.clone())),
            core: Rc::downgrade(core),
        },
    ))
}

impl Sleep {
    fn finish(&mut self) {
        if let State::ById { key, core } = &self.state {
            let (key, core) = (*key, core.upgrade());
            self.state = State::Done;
            let Some(core) = core else { return };
            // In the wheel, or fired with its wake pending: either way the
            // task's by-id wait goes with it. (Delivered: nothing left.)
            let removed = match core.timers.try_borrow_mut() {
                Ok(mut wheel) => wheel.remove(key),
                Err(_) => None,
            };
            let id = match removed {
                Some(Timer::Task(id)) => Some(id),
                Some(Timer::Handle(_)) => unreachable!("a sleep held by id has a task entry"),
                None => core.timer_wakes.callback().cancel(key),
            };
            if let Some(id) = id {
                count_id_wait(&core, id, false);
            }
            return;
        }
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
    use crate::task_slab::TaskId;
    use crate::tasks::current_task_id;
    use crate::EventLoop;
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake as StdWake;

    /// `(id_waits, live_wakers)` of task `id`.
    fn ways_in(core: &LoopCore, id: TaskId) -> (u16, usize) {
        let tasks = core.tasks.borrow();
        let h = tasks.get(id).and_then(|t| t.task_header()).expect("task");
        (h.id_waits.get(), h.waker.live_wakers())
    }

    fn stop_at(lp: &EventLoop, secs: u64) {
        let r = lp.loop_ref();
        lp.call_later(Duration::from_secs(secs), move || r.stop())
            .unwrap();
    }

    #[test]
    fn a_sleep_polled_by_its_own_task_holds_it_by_id_and_counts_one_wait() {
        let lp = EventLoop::with_virtual_clock().unwrap();
        let id = Rc::new(Cell::new(None));
        let i = id.clone();
        let t = lp
            .create_task(async move {
                i.set(current_task_id());
                sleep(Duration::from_secs(10)).await
            })
            .unwrap();
        stop_at(&lp, 5);
        lp.run_forever().unwrap();
        let id = id.get().unwrap();
        assert_eq!(ways_in(lp.core(), id), (1, 0), "by id, no waker clone");
        assert_eq!(lp.scheduled_timers(), 1);
        lp.run_until_complete(t).unwrap();
        assert_eq!(lp.time(), 10.0);
        assert_eq!(lp.scheduled_timers(), 0);
    }

    #[test]
    fn a_sleep_dropped_before_it_fires_leaves_the_wheel_and_its_count() {
        let lp = EventLoop::with_virtual_clock().unwrap();
        let core = lp.core().clone();
        let l = lp.loop_ref();
        lp.run_until_complete(async move {
            let id = current_task_id().unwrap();
            let mut s = Box::pin(sleep(Duration::from_secs(10)));
            std::future::poll_fn(|cx| {
                assert!(s.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            assert_eq!(ways_in(&core, id), (1, 0));
            assert_eq!(l.scheduled_timers(), 1);
            drop(s);
            assert_eq!(ways_in(&core, id), (0, 0));
            assert_eq!(l.scheduled_timers(), 0);
        })
        .unwrap();
    }

    struct Counter(AtomicUsize);
    impl StdWake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_sleep_polled_with_another_waker_moves_to_a_handle_in_place() {
        let lp = EventLoop::with_virtual_clock().unwrap();
        let core = lp.core().clone();
        let counter = Arc::new(Counter(AtomicUsize::new(0)));
        let c = counter.clone();
        lp.run_until_complete(async move {
            let id = current_task_id().unwrap();
            let mut s = Box::pin(sleep(Duration::from_secs(1)));
            // A later timer with the same deadline: the sleep keeps its
            // place before it when it moves to a handle.
            let order = Rc::new(RefCell::new(Vec::new()));
            let o = order.clone();
            std::future::poll_fn(|cx| {
                assert!(s.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            get_running_loop()
                .unwrap()
                .call_later(Duration::from_secs(1), move || o.borrow_mut().push("later"))
                .unwrap();
            let waker = Waker::from(c.clone());
            let mut cx = Context::from_waker(&waker);
            assert!(s.as_mut().poll(&mut cx).is_pending());
            assert_eq!(ways_in(&core, id), (0, 0), "the by-id wait is given back");
            sleep(Duration::from_secs(2)).await.unwrap();
            assert_eq!(c.0.load(Ordering::SeqCst), 1, "the new waker was woken");
            assert!(s.as_mut().poll(&mut cx).is_ready());
            assert_eq!(*order.borrow(), ["later"]);
        })
        .unwrap();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
    }

    /// The window between a task timer firing (phase 4) and its wake
    /// running (phase 5): the task is scheduled earlier in the same run
    /// phase by something else. As with a handle, the sleep is not done
    /// yet; dropped there, its wake is cancelled and never reaches the task.
    #[test]
    fn a_wake_pending_in_the_run_phase_is_not_done_yet_and_is_cancelled_with_its_sleep() {
        for drop_it in [false, true] {
            let lp = EventLoop::with_virtual_clock().unwrap();
            let core = lp.core().clone();
            let f = lp.create_future::<()>();
            let never = lp.create_future::<()>();
            let seen = Rc::new(RefCell::new(Vec::new()));
            let id = Rc::new(Cell::new(None));
            let (ff, sn, i) = (f.clone(), seen.clone(), id.clone());
            lp.create_task(async move {
                i.set(current_task_id());
                let mut s = Some(Box::pin(sleep(Duration::from_secs(1))));
                let mut fw = Box::pin(ff);
                let mut nv = Box::pin(never);
                std::future::poll_fn(|cx| {
                    let _ = fw.as_mut().poll(cx);
                    if let Some(sl) = s.as_mut() {
                        let r = sl.as_mut().poll(cx);
                        sn.borrow_mut().push(r.is_ready());
                        if r.is_ready() {
                            return Poll::Ready(());
                        }
                        if drop_it && fw.done() {
                            s = None;
                        }
                    }
                    if s.is_none() {
                        // Parked on a loop future by id from now on.
                        let _ = nv.as_mut().poll(cx);
                    }
                    Poll::Pending
                })
                .await;
            })
            .unwrap();
            let l = lp.loop_ref();
            lp.call_later(Duration::from_millis(500), move || {
                // The task is scheduled for the next iteration, whose timer
                // phase then fires the sleep behind it.
                l.advance_time(Duration::from_millis(500)).unwrap();
                f.set_result(()).unwrap();
            })
            .unwrap();
            stop_at(&lp, 5);
            lp.run_forever().unwrap();
            let id = id.get().unwrap();
            if drop_it {
                assert_eq!(*seen.borrow(), [false, false], "no spurious step");
                assert_eq!(ways_in(&core, id), (1, 0), "only the loop future's wait");
            } else {
                assert_eq!(*seen.borrow(), [false, false, true]);
            }
        }
    }

    /// As a handle's callback did: the timer wakes the task in the run
    /// phase, in firing order among the other timers, and the task's step
    /// runs on the next iteration, after what those callbacks scheduled.
    #[test]
    fn a_sleeping_task_wakes_where_its_timer_handle_would_have_run() {
        let lp = EventLoop::with_virtual_clock().unwrap();
        let log = Rc::new(RefCell::new(Vec::new()));
        let (l1, l2, l3) = (log.clone(), log.clone(), log.clone());
        let r = lp.loop_ref();
        lp.call_later(Duration::from_secs(1), move || {
            l1.borrow_mut().push("cb1");
            let l = l1.clone();
            r.call_soon(move || l.borrow_mut().push("soon1")).unwrap();
        })
        .unwrap();
        let t = lp
            .create_task(async move {
                sleep(Duration::from_secs(1)).await.unwrap();
                l2.borrow_mut().push("task");
            })
            .unwrap();
        lp.run_until_complete(sleep(Duration::ZERO)).unwrap();
        lp.call_later(Duration::from_secs(1), move || l3.borrow_mut().push("cb2"))
            .unwrap();
        lp.run_until_complete(t).unwrap();
        assert_eq!(*log.borrow(), ["cb1", "cb2", "soon1", "task"]);
    }

    #[test]
    fn a_sleep_and_its_handle_stay_small() {
        // A parked task's future holds its Sleep (see the module docs).
        assert!(std::mem::size_of::<Sleep>() <= 40);
        // The handle's allocation stays within a 64-byte malloc chunk
        // (glibc: request + 8, rounded up to 16).
        assert!(2 * 8 + std::mem::size_of::<HandleInner<Wake>>() <= 56);
    }
}
