//! `Barrier`: asyncio's `asyncio.Barrier` (Python 3.11+).
//!
//! `parties` tasks call `wait()`; the last to arrive releases them all, and
//! each gets its arrival index (`0..parties`). The barrier then drains —
//! newcomers wait until every released party has left — and fills again for
//! the next round. `abort()` breaks it; `reset()` breaks the current round
//! and refills.
//!
//! asyncio builds it on a `Condition`; nothing can run between the steps of
//! a single-threaded loop, so aioloop keeps asyncio's state machine and its
//! re-check-after-every-wake-up discipline on a wait list of its own.
//!
//! ```text
//!   FILLING ──last party arrives──► DRAINING ──last party leaves──► FILLING
//!      │ reset() with parties inside: RESETTING ──last leaves──► FILLING
//!      └─ abort(): BROKEN (every wait raises until reset())
//! ```
//!
//! # Invariants
//!
//! - `count` is the number of parties inside `wait()` past the entry gate.
//! - A party cancelled while waiting for the round leaves it (`count`
//!   drops): like asyncio, and unlike `threading.Barrier`, a cancellation
//!   does not break the barrier.
//! - Every state change wakes every waiter, which re-checks its condition
//!   and waits again if it does not hold.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use super::{fmt_weak, weak_handle_dropped, SyncError, Waiters};
use crate::debug::NeverAwaited;
use crate::tasks::{set_fut_waiter, take_cancel_request, FutWaiter, WaitTarget};
use crate::waiters::{WaitKind, WaitList, WaitSite, WaiterKey};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Filling,
    Draining,
    Resetting,
    Broken,
}

struct BarrierInner {
    parties: usize,
    state: Cell<State>,
    count: Cell<usize>,
    waiters: Waiters,
}

impl BarrierInner {
    fn notify_all(&self) {
        self.waiters.notify_all();
    }

    /// asyncio's `_exit`: the last party out refills the barrier and wakes
    /// the newcomers waiting at the gate.
    fn exit(&self) {
        self.count.set(self.count.get() - 1);
        if self.count.get() == 0 {
            if matches!(self.state.get(), State::Resetting | State::Draining) {
                self.state.set(State::Filling);
            }
            self.notify_all();
        }
    }
}

/// asyncio's `Barrier`: `parties` tasks wait for each other.
///
/// ```
/// use aioloop::sync::Barrier;
/// use aioloop::{create_task, EventLoop};
///
/// let lp = EventLoop::new().unwrap();
/// let barrier = Barrier::new(3).unwrap();
/// let indices = lp.run_until_complete(async move {
///     let tasks: Vec<_> = (0..3)
///         .map(|_| {
///             let b = barrier.clone();
///             create_task(async move { Ok(b.wait().await?) }).unwrap()
///         })
///         .collect();
///     let mut got = Vec::new();
///     for t in tasks {
///         got.push(t.await.unwrap());
///     }
///     got
/// });
/// assert_eq!(indices.unwrap(), [0, 1, 2], "arrival order");
/// ```
#[derive(Clone)]
pub struct Barrier {
    inner: Rc<BarrierInner>,
}

impl Barrier {
    /// A barrier for `parties` tasks; `parties must be > 0` for zero.
    pub fn new(parties: usize) -> Result<Barrier, SyncError> {
        if parties == 0 {
            return Err(SyncError::Value("parties must be > 0"));
        }
        Ok(Barrier {
            inner: Rc::new(BarrierInner {
                parties,
                state: Cell::new(State::Filling),
                count: Cell::new(0),
                waiters: Waiters::default(),
            }),
        })
    }

    /// Waits until `parties` tasks are waiting, then returns this task's
    /// arrival index (`0..parties`). A cancellation point;
    /// `BrokenBarrierError` if the barrier is broken or reset meanwhile.
    #[track_caller]
    pub fn wait(&self) -> BarrierWait<'_> {
        BarrierWait {
            barrier: self,
            step: Step::Gate,
            key: None,
            created: NeverAwaited::new(),
        }
    }

    /// Breaks the current round (waiting parties get `BrokenBarrierError`)
    /// and makes the barrier usable again once they have left (asyncio's
    /// `reset()`, a coroutine there only because it takes the condition's
    /// lock; nothing can interleave here).
    pub fn reset(&self) {
        let inner = &self.inner;
        if inner.count.get() > 0 {
            inner.state.set(State::Resetting);
        } else {
            inner.state.set(State::Filling);
        }
        inner.notify_all();
    }

    /// A [`WeakBarrier`] to this barrier: it does not keep the barrier alive.
    ///
    /// ```
    /// use aioloop::sync::Barrier;
    ///
    /// let barrier = Barrier::new(2).unwrap();
    /// let weak = barrier.downgrade();
    /// weak.upgrade().unwrap().abort();
    /// assert!(barrier.broken(), "the same barrier");
    /// ```
    pub fn downgrade(&self) -> WeakBarrier {
        WeakBarrier {
            inner: Rc::downgrade(&self.inner),
        }
    }

    /// Breaks the barrier: current and future `wait()` calls fail with
    /// `BrokenBarrierError` until [`reset`](Barrier::reset).
    pub fn abort(&self) {
        self.inner.state.set(State::Broken);
        self.inner.notify_all();
    }

    /// Number of tasks needed to pass.
    pub fn parties(&self) -> usize {
        self.inner.parties
    }

    /// Number of tasks waiting in the current filling round.
    pub fn n_waiting(&self) -> usize {
        match self.inner.state.get() {
            State::Filling => self.inner.count.get(),
            _ => 0,
        }
    }

    /// True once aborted (until reset).
    pub fn broken(&self) -> bool {
        self.inner.state.get() == State::Broken
    }
}

impl WaitTarget for BarrierInner {
    fn for_each_list(&self, f: &mut dyn FnMut(&WaitList)) {
        f(self.waiters.list())
    }
    fn unnotified(&self) -> usize {
        self.waiters.list().unnotified()
    }
    fn describe(&self) -> String {
        let state = self.state.get();
        let name = match state {
            State::Filling => "filling",
            State::Draining => "draining",
            State::Resetting => "resetting",
            State::Broken => return "<Barrier [broken]>".to_owned(),
        };
        let waiting = match state {
            State::Filling => self.count.get(),
            _ => 0,
        };
        format!("<Barrier [{name}, waiters:{waiting}/{}]>", self.parties)
    }
}

impl Drop for Barrier {
    fn drop(&mut self) {
        self.inner
            .waiters
            .handle_dropped(Rc::strong_count(&self.inner));
    }
}

impl fmt::Debug for Barrier {
    /// asyncio's repr: `<Barrier [filling, waiters:1/3]>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.describe())
    }
}

#[derive(Clone, Copy)]
enum Step {
    /// Waiting to enter while the barrier drains or resets.
    Gate,
    /// Inside, with this arrival index, waiting for the round to end.
    Inside(usize),
    Done,
}

/// A weak handle to a [`Barrier`] (`Rc`'s `Weak`): it does not keep the
/// barrier alive, and [`upgrade`](WeakBarrier::upgrade) gives a handle to the
/// same barrier while a strong one is left.
///
/// For the stuck-task check a live weak handle is a way in: a task waiting
/// on the barrier is never reported stuck while one exists, since whoever
/// holds it could upgrade it and abort or reset it. Dropping the last one makes the
/// check look again (see `docs/DEBUGGING.md`).
///
/// ```
/// use aioloop::sync::{Barrier, WeakBarrier};
///
/// struct Supervisor {
///     gate: WeakBarrier,
/// }
///
/// let barrier = Barrier::new(3).unwrap();
/// let sup = Supervisor { gate: barrier.downgrade() };
/// if let Some(gate) = sup.gate.upgrade() {
///     gate.abort();
/// }
/// assert!(barrier.broken());
/// drop(barrier);
/// assert!(sup.gate.upgrade().is_none(), "no strong handle is left");
/// ```
#[derive(Clone)]
pub struct WeakBarrier {
    inner: Weak<BarrierInner>,
}

impl WeakBarrier {
    /// The barrier, if a strong handle to it is still alive.
    ///
    /// ```
    /// use aioloop::sync::Barrier;
    ///
    /// let barrier = Barrier::new(4).unwrap();
    /// let weak = barrier.downgrade();
    /// assert_eq!(weak.upgrade().unwrap().parties(), 4);
    /// drop(barrier);
    /// assert!(weak.upgrade().is_none());
    /// ```
    pub fn upgrade(&self) -> Option<Barrier> {
        self.inner.upgrade().map(|inner| Barrier { inner })
    }
}

impl Drop for WeakBarrier {
    fn drop(&mut self) {
        weak_handle_dropped(&self.inner, |i| &i.waiters);
    }
}

impl fmt::Debug for WeakBarrier {
    /// `WeakBarrier(<Barrier [...]>)`, or `WeakBarrier(dropped)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_weak(f, "WeakBarrier", &self.inner)
    }
}

/// The future of [`Barrier::wait`].
#[must_use = "futures do nothing unless awaited"]
pub struct BarrierWait<'a> {
    barrier: &'a Barrier,
    step: Step,
    key: Option<WaiterKey>,
    created: NeverAwaited,
}

impl BarrierWait<'_> {
    fn leave_list(&mut self) {
        if let Some(k) = self.key.take() {
            self.barrier.inner.waiters.unregister(k);
        }
    }

    fn finish(&mut self, out: Result<usize, SyncError>) -> Poll<Result<usize, SyncError>> {
        self.leave_list();
        if let Step::Inside(_) = self.step {
            self.barrier.inner.exit();
        }
        self.step = Step::Done;
        Poll::Ready(out)
    }
}

impl Future for BarrierWait<'_> {
    type Output = Result<usize, SyncError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.created.polled();
        let inner = &this.barrier.inner;
        if let Some(c) = take_cancel_request() {
            return this.finish(Err(c.into()));
        }
        if let Some(k) = this.key {
            match inner.waiters.is_notified(k) {
                // Not woken: nothing changed; stay in place.
                Some(false) => {
                    let site = WaitSite::new(WaitKind::BarrierWait, this.barrier);
                    inner.waiters.register(Some(k), cx, site);
                    set_fut_waiter(FutWaiter::of(inner));
                    return Poll::Pending;
                }
                // Woken: re-check from scratch, as a condition waiter.
                _ => this.leave_list(),
            }
        }
        loop {
            match this.step {
                Step::Gate => match inner.state.get() {
                    State::Draining | State::Resetting => break,
                    State::Broken => {
                        return this.finish(Err(SyncError::BrokenBarrier("Barrier aborted")))
                    }
                    State::Filling => {
                        let index = inner.count.get();
                        inner.count.set(index + 1);
                        this.step = Step::Inside(index);
                        if index + 1 == inner.parties {
                            // The last party releases the round and leaves first.
                            inner.state.set(State::Draining);
                            inner.notify_all();
                            return this.finish(Ok(index));
                        }
                    }
                },
                Step::Inside(index) => match inner.state.get() {
                    State::Filling => break,
                    State::Broken | State::Resetting => {
                        return this
                            .finish(Err(SyncError::BrokenBarrier("Abort or reset of barrier")))
                    }
                    State::Draining => return this.finish(Ok(index)),
                },
                Step::Done => {
                    return Poll::Ready(Err(SyncError::Runtime(
                        "Barrier.wait polled after completion",
                    )))
                }
            }
        }
        let site = WaitSite::new(WaitKind::BarrierWait, this.barrier);
        this.key = Some(inner.waiters.register(None, cx, site));
        set_fut_waiter(FutWaiter::of(inner));
        Poll::Pending
    }
}

impl Drop for BarrierWait<'_> {
    fn drop(&mut self) {
        self.created.check("Barrier.wait");
        if !matches!(self.step, Step::Done) {
            self.leave_list();
            if let Step::Inside(_) = self.step {
                self.barrier.inner.exit();
            }
        }
    }
}
