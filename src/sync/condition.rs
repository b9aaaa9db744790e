//! `Condition`: asyncio's `asyncio.Condition`, a condition variable over a
//! [`Lock`].
//!
//! `wait()` releases the lock, waits for a `notify`, and takes the lock
//! again before it returns — even when it is cancelled, as asyncio's does
//! (its `finally:` re-acquires, swallowing and re-raising cancellations that
//! arrive meanwhile). A waiter that was notified and is cancelled before it
//! runs passes its notification on to the next waiter (Python 3.13's fix of
//! lost notifications), so `notify(n)` always reaches `n` tasks that go on.
//!
//! In Rust the lock is held through a [`LockGuard`], and `wait` takes that
//! guard by `&mut`: the guard still holds the lock when `wait` returns.
//!
//! # Invariants
//!
//! - `wait` and `notify` require the lock to be held (asyncio's
//!   `RuntimeError`s otherwise).
//! - When `wait` returns — with `Ok` or with `Err(Cancelled)` — the lock is
//!   held again by the same guard.
//! - `notify(n)` notifies the first `n` waiters that were not notified yet.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use super::{fmt_weak, weak_handle_dropped, Lock, LockAcquire, LockGuard, SyncError, Waiters};
use crate::debug::NeverAwaited;
use crate::errors::CancelledError;
use crate::tasks::{set_fut_waiter, take_cancel_request, FutWaiter, WaitTarget};
use crate::waiters::{WaitKind, WaitList, WaitSite, WaiterKey};

struct ConditionInner {
    lock: Lock,
    waiters: Waiters,
}

impl WaitTarget for ConditionInner {
    fn for_each_list(&self, f: &mut dyn FnMut(&WaitList)) {
        f(self.waiters.list())
    }
    fn unnotified(&self) -> usize {
        self.waiters.list().unnotified()
    }
    fn describe(&self) -> String {
        let state = if self.lock.locked() {
            "locked"
        } else {
            "unlocked"
        };
        match self.waiters.waiters() {
            0 => format!("<Condition [{state}]>"),
            n => format!("<Condition [{state}, waiters:{n}]>"),
        }
    }
}

/// asyncio's `Condition`: tasks wait until another task, holding the same
/// lock, notifies them.
///
/// ```
/// use aioloop::sync::Condition;
/// use aioloop::{create_task, EventLoop};
/// use std::cell::Cell;
/// use std::rc::Rc;
///
/// let lp = EventLoop::new().unwrap();
/// let cond = Condition::new();
/// let items = Rc::new(Cell::new(0));
/// let got = lp.run_until_complete(async move {
///     let consumer = {
///         let (cond, items) = (cond.clone(), items.clone());
///         create_task(async move {
///             let mut held = cond.acquire().await?;
///             cond.wait_for(&mut held, || items.get() > 0).await?;
///             items.set(items.get() - 1);
///             Ok("took one")
///         })
///         .unwrap()
///     };
///     aioloop::sleep(std::time::Duration::ZERO).await.unwrap();
///     let held = cond.acquire().await.unwrap();
///     items.set(1);
///     cond.notify(1).unwrap();
///     drop(held);
///     consumer.await.unwrap()
/// });
/// assert_eq!(got.unwrap(), "took one");
/// ```
#[derive(Clone)]
pub struct Condition {
    inner: Rc<ConditionInner>,
}

impl Default for Condition {
    fn default() -> Self {
        Condition::new()
    }
}

impl Condition {
    /// A condition with its own new lock.
    pub fn new() -> Condition {
        Condition::with_lock(&Lock::new())
    }

    /// A condition over an existing lock (asyncio's `Condition(lock)`); the
    /// handle is shared, not copied.
    pub fn with_lock(lock: &Lock) -> Condition {
        Condition {
            inner: Rc::new(ConditionInner {
                lock: lock.clone(),
                waiters: Waiters::default(),
            }),
        }
    }

    /// A [`WeakCondition`] to this condition: it does not keep the condition alive.
    ///
    /// ```
    /// use aioloop::sync::Condition;
    ///
    /// let cond = Condition::new();
    /// let weak = cond.downgrade();
    /// assert!(weak.upgrade().is_some());
    /// drop(cond);
    /// assert!(weak.upgrade().is_none(), "the weak handle did not keep it");
    /// ```
    pub fn downgrade(&self) -> WeakCondition {
        WeakCondition {
            inner: Rc::downgrade(&self.inner),
        }
    }

    /// The underlying lock.
    pub fn lock(&self) -> &Lock {
        &self.inner.lock
    }

    /// Acquires the underlying lock (asyncio's `acquire()`).
    pub fn acquire(&self) -> LockAcquire<'_> {
        self.inner.lock.acquire()
    }

    /// True while the underlying lock is held.
    pub fn locked(&self) -> bool {
        self.inner.lock.locked()
    }

    /// Releases the underlying lock, as [`Lock::release`].
    pub fn release(&self) -> Result<(), SyncError> {
        self.inner.lock.release()
    }

    /// Releases the lock held by `guard`, waits until notified, and takes
    /// the lock again (asyncio's `wait()`); a cancellation point. On
    /// cancellation the lock is still taken again before the error returns.
    /// `cannot wait on un-acquired lock` if `guard` does not hold this
    /// condition's lock.
    #[track_caller]
    pub fn wait<'a, 'g>(&'a self, guard: &'a mut LockGuard<'g>) -> ConditionWait<'a, 'g> {
        ConditionWait {
            cond: self,
            guard,
            state: WaitState::Start,
            created: NeverAwaited::new(),
        }
    }

    /// Waits until `predicate` is true (asyncio's `wait_for`): checks it
    /// first, then after every wake-up, with the lock held.
    pub async fn wait_for<'g>(
        &self,
        guard: &mut LockGuard<'g>,
        mut predicate: impl FnMut() -> bool,
    ) -> Result<(), SyncError> {
        while !predicate() {
            self.wait(guard).await?;
        }
        Ok(())
    }

    /// Wakes up to `n` waiting tasks (asyncio's `notify(n)`); `cannot
    /// notify on un-acquired lock` if the lock is not held.
    pub fn notify(&self, n: usize) -> Result<(), SyncError> {
        if !self.inner.lock.locked() {
            return Err(SyncError::Runtime("cannot notify on un-acquired lock"));
        }
        self.inner.waiters.notify(n);
        Ok(())
    }

    /// Wakes every waiting task (asyncio's `notify_all()`).
    pub fn notify_all(&self) -> Result<(), SyncError> {
        self.notify(usize::MAX)
    }
}

impl Drop for Condition {
    fn drop(&mut self) {
        self.inner
            .waiters
            .handle_dropped(Rc::strong_count(&self.inner));
    }
}

impl fmt::Debug for Condition {
    /// asyncio's repr: `<Condition [unlocked]>`, `<Condition [locked, waiters:1]>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.describe())
    }
}

/// A weak handle to a [`Condition`] (`Rc`'s `Weak`): it does not keep the
/// condition alive, and [`upgrade`](WeakCondition::upgrade) gives a handle to the
/// same condition while a strong one is left.
///
/// For the stuck-task check a live weak handle is a way in: a task waiting
/// on the condition is never reported stuck while one exists, since whoever
/// holds it could upgrade it and notify the waiters. Dropping the last one makes the
/// check look again (see `docs/DEBUGGING.md`).
///
/// Through the condition it reaches the condition's lock as well (the
/// condition holds its lock strongly): [`Condition::lock`] on the upgraded
/// handle.
///
/// ```
/// use aioloop::sync::Condition;
/// use aioloop::EventLoop;
///
/// let lp = EventLoop::new().unwrap();
/// let cond = Condition::new();
/// let weak = cond.downgrade();
/// lp.run_until_complete(async move {
///     let strong = weak.upgrade().expect("`cond` is still alive");
///     let _held = strong.acquire().await.unwrap();
///     assert!(cond.locked(), "the same condition, over the same lock");
///     strong.notify_all().unwrap();
/// })
/// .unwrap();
/// ```
#[derive(Clone)]
pub struct WeakCondition {
    inner: Weak<ConditionInner>,
}

impl WeakCondition {
    /// The condition, if a strong handle to it is still alive.
    ///
    /// ```
    /// use aioloop::sync::Condition;
    ///
    /// let cond = Condition::new();
    /// let weak = cond.downgrade();
    /// assert!(!weak.upgrade().unwrap().locked());
    /// drop(cond);
    /// assert!(weak.upgrade().is_none());
    /// ```
    pub fn upgrade(&self) -> Option<Condition> {
        self.inner.upgrade().map(|inner| Condition { inner })
    }
}

impl Drop for WeakCondition {
    fn drop(&mut self) {
        weak_handle_dropped(&self.inner, |i| &i.waiters);
    }
}

impl fmt::Debug for WeakCondition {
    /// `WeakCondition(<Condition [...]>)`, or `WeakCondition(dropped)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_weak(f, "WeakCondition", &self.inner)
    }
}

enum WaitState<'a> {
    /// Not polled yet: the lock is still held.
    Start,
    /// Lock released, registered, waiting for a notification.
    Waiting(WaiterKey),
    /// Taking the lock back; `err` is the cancellation to report after.
    Reacquiring {
        acquire: LockAcquire<'a>,
        err: Option<CancelledError>,
    },
    Done,
}

/// The future of [`Condition::wait`].
#[must_use = "futures do nothing unless awaited"]
pub struct ConditionWait<'a, 'g> {
    cond: &'a Condition,
    guard: &'a mut LockGuard<'g>,
    state: WaitState<'a>,
    created: NeverAwaited,
}

impl ConditionWait<'_, '_> {
    /// Leaves the waiter list; a notification this waiter will not use goes
    /// to the next waiter.
    fn leave(&self, key: WaiterKey) {
        let inner = &self.cond.inner;
        if inner.waiters.unregister(key) == Some(true) {
            inner.waiters.notify_first();
        }
    }
}

impl Future for ConditionWait<'_, '_> {
    type Output = Result<(), SyncError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.created.polled();
        loop {
            match &mut this.state {
                WaitState::Start => {
                    if let Some(c) = take_cancel_request() {
                        // Cancelled before it let go: the lock is still held.
                        this.state = WaitState::Done;
                        return Poll::Ready(Err(c.into()));
                    }
                    if !this.cond.inner.lock.holds(this.guard) {
                        this.state = WaitState::Done;
                        return Poll::Ready(Err(SyncError::Runtime(
                            "cannot wait on un-acquired lock",
                        )));
                    }
                    let inner = &this.cond.inner;
                    let site = WaitSite::new(WaitKind::ConditionWait, this.cond);
                    let key = inner.waiters.register(None, cx, site);
                    set_fut_waiter(FutWaiter::of(inner));
                    this.state = WaitState::Waiting(key);
                    this.cond.inner.lock.release().ok();
                    return Poll::Pending;
                }
                WaitState::Waiting(key) => {
                    let key = *key;
                    let inner = &this.cond.inner;
                    let err = take_cancel_request();
                    if err.is_some() {
                        this.leave(key);
                    } else if inner.waiters.is_notified(key) == Some(true) {
                        inner.waiters.unregister(key);
                    } else {
                        let site = WaitSite::new(WaitKind::ConditionWait, this.cond);
                        inner.waiters.register(Some(key), cx, site);
                        set_fut_waiter(FutWaiter::of(inner));
                        return Poll::Pending;
                    }
                    this.state = WaitState::Reacquiring {
                        acquire: this.cond.inner.lock.acquire(),
                        err,
                    };
                }
                WaitState::Reacquiring { acquire, err } => {
                    match Pin::new(&mut *acquire).poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        // asyncio keeps trying, and re-raises the latest.
                        Poll::Ready(Err(c)) => {
                            *err = Some(c);
                            *acquire = this.cond.inner.lock.acquire();
                        }
                        Poll::Ready(Ok(g)) => {
                            let err = err.take();
                            this.guard.set_epoch(g);
                            this.state = WaitState::Done;
                            return Poll::Ready(match err {
                                Some(c) => Err(c.into()),
                                None => Ok(()),
                            });
                        }
                    }
                }
                WaitState::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

impl Drop for ConditionWait<'_, '_> {
    fn drop(&mut self) {
        self.created.check("Condition.wait");
        // Dropped while waiting: the lock stays released (a dropped future
        // cannot wait to take it back), so the guard no longer holds it.
        if let WaitState::Waiting(key) = self.state {
            self.leave(key);
        }
    }
}
