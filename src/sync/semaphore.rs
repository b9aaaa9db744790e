//! `Semaphore` and `BoundedSemaphore`: asyncio's counting semaphores.
//!
//! asyncio's algorithm (3.11.? and later, after the fairness fixes): a
//! release hands its permit directly to the first waiter not yet woken
//! (the counter is decremented on the waiter's behalf), so a newcomer cannot
//! take a permit meant for a waiter. A woken waiter that is cancelled, or
//! dropped, before it runs gives the permit back, and the permit goes on to
//! the next waiter.
//!
//! # Invariants
//!
//! - `value` counts the permits nobody holds and nobody was handed.
//! - The fast path (take a permit without waiting) is open only when a
//!   permit is free and nobody waits (`locked()` is false).
//! - Whenever a permit is free, no waiter is left un-woken: every exit from
//!   an acquisition wakes as many waiters as there are free permits.
//! - A bounded semaphore's value never exceeds its initial value.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use super::{fmt_weak, weak_handle_dropped, SyncError, Waiters};
use crate::debug::NeverAwaited;
use crate::errors::CancelledError;
use crate::tasks::{set_fut_waiter, take_cancel_request, FutWaiter, WaitTarget};
use crate::waiters::{WaitKind, WaitList, WaitSite, WaiterKey};

struct SemInner {
    value: Cell<usize>,
    /// The initial value of a bounded semaphore.
    bound: Option<usize>,
    waiters: Waiters,
}

impl SemInner {
    fn new(value: usize, bound: Option<usize>) -> Rc<SemInner> {
        Rc::new(SemInner {
            value: Cell::new(value),
            bound,
            waiters: Waiters::default(),
        })
    }

    /// asyncio's `locked()`: no free permit, or someone (woken or not)
    /// queued ahead.
    fn locked(&self) -> bool {
        self.value.get() == 0 || self.waiters.waiters() > 0
    }

    /// asyncio's `_wake_up_next`: hands a permit to the first waiter not
    /// woken yet; false if there was none.
    fn wake_up_next(&self) -> bool {
        if !self.waiters.has_unnotified() {
            return false;
        }
        self.value.set(self.value.get() - 1);
        self.waiters.notify_first();
        true
    }

    /// Wakes as many waiters as there are free permits.
    fn wake_while_free(&self) {
        while self.value.get() > 0 && self.wake_up_next() {}
    }

    fn release(&self) -> Result<(), SyncError> {
        if self.bound.is_some_and(|b| self.value.get() >= b) {
            return Err(SyncError::Value("BoundedSemaphore released too many times"));
        }
        self.value.set(self.value.get() + 1);
        self.wake_up_next();
        Ok(())
    }
}

impl WaitTarget for SemInner {
    fn for_each_list(&self, f: &mut dyn FnMut(&WaitList)) {
        f(self.waiters.list())
    }
    fn unnotified(&self) -> usize {
        self.waiters.list().unnotified()
    }
    fn describe(&self) -> String {
        let name = match self.bound {
            Some(_) => "BoundedSemaphore",
            None => "Semaphore",
        };
        let state = if self.locked() {
            "locked".to_owned()
        } else {
            format!("unlocked, value:{}", self.value.get())
        };
        match self.waiters.waiters() {
            0 => format!("<{name} [{state}]>"),
            n => format!("<{name} [{state}, waiters:{n}]>"),
        }
    }
}

/// asyncio's `Semaphore`: a counter of permits; `acquire()` waits while
/// there is none.
///
/// ```
/// use aioloop::sync::Semaphore;
/// use aioloop::{create_task, sleep, EventLoop};
/// use std::cell::Cell;
/// use std::rc::{Rc, Weak};
/// use std::time::Duration;
///
/// let lp = EventLoop::with_virtual_clock().unwrap();
/// let sem = Semaphore::new(2);
/// let (running, peak) = (Rc::new(Cell::new(0)), Rc::new(Cell::new(0)));
/// lp.run_until_complete({
///     let (running, peak) = (running.clone(), peak.clone());
///     async move {
///         let tasks: Vec<_> = (0..5)
///             .map(|_| {
///                 let (sem, running, peak) = (sem.clone(), running.clone(), peak.clone());
///                 create_task(async move {
///                     let _permit = sem.acquire().await?;
///                     running.set(running.get() + 1);
///                     peak.set(peak.get().max(running.get()));
///                     sleep(Duration::from_secs(1)).await?;
///                     running.set(running.get() - 1);
///                     Ok::<_, aioloop::Error>(())
///                 })
///                 .unwrap()
///             })
///             .collect();
///         for t in tasks {
///             t.await.unwrap();
///         }
///     }
/// })
/// .unwrap();
/// assert_eq!(peak.get(), 2, "never more than two at once");
/// assert_eq!(lp.time(), 3.0, "five one-second jobs, two at a time");
/// ```
#[derive(Clone)]
pub struct Semaphore {
    inner: Rc<SemInner>,
}

impl Semaphore {
    /// A semaphore with `value` permits.
    pub fn new(value: usize) -> Semaphore {
        Semaphore {
            inner: SemInner::new(value, None),
        }
    }

    /// True if `acquire()` would wait (asyncio's `locked()`).
    pub fn locked(&self) -> bool {
        self.inner.locked()
    }

    /// Free permits.
    pub fn value(&self) -> usize {
        self.inner.value.get()
    }

    /// Waits for a permit and takes it (asyncio's `acquire()`); a
    /// cancellation point. The guard gives the permit back when dropped.
    #[track_caller]
    pub fn acquire(&self) -> SemaphoreAcquire<'_> {
        SemaphoreAcquire {
            inner: &self.inner,
            handle: self as *const Semaphore as usize,
            key: None,
            created: NeverAwaited::new(),
        }
    }

    /// A [`WeakSemaphore`] to this semaphore: it does not keep the semaphore alive.
    ///
    /// ```
    /// use aioloop::sync::Semaphore;
    ///
    /// let sem = Semaphore::new(1);
    /// let weak = sem.downgrade();
    /// weak.upgrade().unwrap().release();
    /// assert_eq!(sem.value(), 2, "the same semaphore");
    /// ```
    pub fn downgrade(&self) -> WeakSemaphore {
        WeakSemaphore {
            inner: Rc::downgrade(&self.inner),
        }
    }

    /// Adds a permit and wakes the first waiter (asyncio's `release()`).
    pub fn release(&self) {
        // Unbounded: cannot fail.
        self.inner.release().ok();
    }
}

impl Drop for Semaphore {
    fn drop(&mut self) {
        self.inner
            .waiters
            .handle_dropped(Rc::strong_count(&self.inner));
    }
}

impl fmt::Debug for Semaphore {
    /// asyncio's repr: `<Semaphore [unlocked, value:2]>`, `<Semaphore [locked, waiters:1]>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.describe())
    }
}

/// A weak handle to a [`Semaphore`] (`Rc`'s `Weak`): it does not keep the
/// semaphore alive, and [`upgrade`](WeakSemaphore::upgrade) gives a handle to the
/// same semaphore while a strong one is left.
///
/// For the stuck-task check a live weak handle is a way in: a task waiting
/// on the semaphore is never reported stuck while one exists, since whoever
/// holds it could upgrade it and release a permit. Dropping the last one makes the
/// check look again (see `docs/DEBUGGING.md`).
///
/// ```
/// use aioloop::sync::{Semaphore, WeakSemaphore};
///
/// struct Pool {
///     permits: WeakSemaphore,
/// }
///
/// let sem = Semaphore::new(0);
/// let pool = Pool { permits: sem.downgrade() };
/// if let Some(sem) = pool.permits.upgrade() {
///     sem.release();
/// }
/// assert_eq!(sem.value(), 1);
/// drop(sem);
/// assert!(pool.permits.upgrade().is_none(), "no strong handle is left");
/// ```
#[derive(Clone)]
pub struct WeakSemaphore {
    inner: Weak<SemInner>,
}

impl WeakSemaphore {
    /// The semaphore, if a strong handle to it is still alive.
    ///
    /// ```
    /// use aioloop::sync::Semaphore;
    ///
    /// let sem = Semaphore::new(3);
    /// let weak = sem.downgrade();
    /// assert_eq!(weak.upgrade().unwrap().value(), 3);
    /// drop(sem);
    /// assert!(weak.upgrade().is_none());
    /// ```
    pub fn upgrade(&self) -> Option<Semaphore> {
        self.inner.upgrade().map(|inner| Semaphore { inner })
    }
}

impl Drop for WeakSemaphore {
    fn drop(&mut self) {
        weak_handle_dropped(&self.inner, |i| &i.waiters);
    }
}

impl fmt::Debug for WeakSemaphore {
    /// `WeakSemaphore(<Semaphore [...]>)`, or `WeakSemaphore(dropped)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_weak(f, "WeakSemaphore", &self.inner)
    }
}

/// asyncio's `BoundedSemaphore`: a [`Semaphore`] that refuses to be
/// released above its initial value.
///
/// ```
/// use aioloop::sync::{BoundedSemaphore, SyncError};
///
/// let sem = BoundedSemaphore::new(1);
/// assert_eq!(
///     sem.release(),
///     Err(SyncError::Value("BoundedSemaphore released too many times"))
/// );
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    inner: Rc<SemInner>,
}

impl BoundedSemaphore {
    /// A bounded semaphore with `value` permits, at most.
    pub fn new(value: usize) -> BoundedSemaphore {
        BoundedSemaphore {
            inner: SemInner::new(value, Some(value)),
        }
    }

    /// True if `acquire()` would wait.
    pub fn locked(&self) -> bool {
        self.inner.locked()
    }

    /// Free permits.
    pub fn value(&self) -> usize {
        self.inner.value.get()
    }

    /// Waits for a permit and takes it; a cancellation point.
    #[track_caller]
    pub fn acquire(&self) -> SemaphoreAcquire<'_> {
        SemaphoreAcquire {
            inner: &self.inner,
            handle: self as *const BoundedSemaphore as usize,
            key: None,
            created: NeverAwaited::new(),
        }
    }

    /// A [`WeakBoundedSemaphore`] to this semaphore: it does not keep the semaphore alive.
    ///
    /// ```
    /// use aioloop::sync::BoundedSemaphore;
    ///
    /// let sem = BoundedSemaphore::new(1);
    /// let weak = sem.downgrade();
    /// assert!(weak.upgrade().unwrap().release().is_err(), "the same bound");
    /// drop(sem);
    /// assert!(weak.upgrade().is_none());
    /// ```
    pub fn downgrade(&self) -> WeakBoundedSemaphore {
        WeakBoundedSemaphore {
            inner: Rc::downgrade(&self.inner),
        }
    }

    /// Adds a permit; `BoundedSemaphore released too many times` if that
    /// would exceed the initial value.
    pub fn release(&self) -> Result<(), SyncError> {
        self.inner.release()
    }
}

impl Drop for BoundedSemaphore {
    fn drop(&mut self) {
        self.inner
            .waiters
            .handle_dropped(Rc::strong_count(&self.inner));
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.describe())
    }
}

/// A weak handle to a [`BoundedSemaphore`] (`Rc`'s `Weak`): it does not keep the
/// semaphore alive, and [`upgrade`](WeakBoundedSemaphore::upgrade) gives a handle to the
/// same semaphore while a strong one is left.
///
/// For the stuck-task check a live weak handle is a way in: a task waiting
/// on the semaphore is never reported stuck while one exists, since whoever
/// holds it could upgrade it and release a permit. Dropping the last one makes the
/// check look again (see `docs/DEBUGGING.md`).
///
/// ```
/// use aioloop::sync::BoundedSemaphore;
/// use aioloop::EventLoop;
///
/// let lp = EventLoop::new().unwrap();
/// let sem = BoundedSemaphore::new(1);
/// let weak = sem.downgrade();
/// lp.run_until_complete(async move {
///     let strong = weak.upgrade().expect("`sem` is still alive");
///     let permit = strong.acquire().await.unwrap();
///     assert_eq!(sem.value(), 0, "the same semaphore");
///     drop(permit);
///     assert_eq!(sem.value(), 1);
/// })
/// .unwrap();
/// ```
#[derive(Clone)]
pub struct WeakBoundedSemaphore {
    inner: Weak<SemInner>,
}

impl WeakBoundedSemaphore {
    /// The semaphore, if a strong handle to it is still alive.
    ///
    /// ```
    /// use aioloop::sync::BoundedSemaphore;
    ///
    /// let sem = BoundedSemaphore::new(2);
    /// let weak = sem.downgrade();
    /// assert_eq!(weak.upgrade().unwrap().value(), 2);
    /// drop(sem);
    /// assert!(weak.upgrade().is_none());
    /// ```
    pub fn upgrade(&self) -> Option<BoundedSemaphore> {
        self.inner.upgrade().map(|inner| BoundedSemaphore { inner })
    }
}

impl Drop for WeakBoundedSemaphore {
    fn drop(&mut self) {
        weak_handle_dropped(&self.inner, |i| &i.waiters);
    }
}

impl fmt::Debug for WeakBoundedSemaphore {
    /// `WeakBoundedSemaphore(<BoundedSemaphore [...]>)`, or `WeakBoundedSemaphore(dropped)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_weak(f, "WeakBoundedSemaphore", &self.inner)
    }
}

/// A permit of a [`Semaphore`] or [`BoundedSemaphore`]; given back when
/// dropped.
#[must_use = "the permit is given back as soon as the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    inner: &'a SemInner,
}

impl SemaphoreGuard<'_> {
    /// Keeps the permit taken: the semaphore's value stays one lower until
    /// someone calls `release()`.
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.inner.release() {
            // Only possible if the permit was also given back by hand.
            log::error!(target: "asyncio", "dropping a semaphore permit: {e}");
        }
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SemaphoreGuard")
    }
}

/// The future of [`Semaphore::acquire`] and [`BoundedSemaphore::acquire`].
#[must_use = "futures do nothing unless awaited"]
pub struct SemaphoreAcquire<'a> {
    inner: &'a Rc<SemInner>,
    /// Address of the semaphore handle borrowed.
    handle: usize,
    key: Option<WaiterKey>,
    created: NeverAwaited,
}

impl SemaphoreAcquire<'_> {
    /// Leaves the waiter list; a permit handed to this waiter goes back
    /// (asyncio: `if fut.done() and not fut.cancelled(): self._value += 1`),
    /// then on to whoever can use it.
    fn leave(&mut self) {
        let Some(key) = self.key.take() else { return };
        let inner = self.inner;
        if inner.waiters.unregister(key) == Some(true) {
            inner.value.set(inner.value.get() + 1);
        }
        inner.wake_while_free();
    }
}

impl<'a> Future for SemaphoreAcquire<'a> {
    type Output = Result<SemaphoreGuard<'a>, CancelledError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.created.polled();
        let inner = this.inner;
        if let Some(c) = take_cancel_request() {
            this.leave();
            return Poll::Ready(Err(c));
        }
        match this.key.map(|k| inner.waiters.is_notified(k)) {
            None | Some(None) => {
                if !inner.locked() {
                    this.key = None;
                    inner.value.set(inner.value.get() - 1);
                    return Poll::Ready(Ok(SemaphoreGuard { inner }));
                }
            }
            // A permit was handed to us (the counter already counts it).
            Some(Some(true)) => {
                if let Some(k) = this.key.take() {
                    inner.waiters.unregister(k);
                }
                // Newcomers may have queued behind us meanwhile.
                inner.wake_while_free();
                return Poll::Ready(Ok(SemaphoreGuard { inner }));
            }
            Some(Some(false)) => {}
        }
        let site = WaitSite {
            kind: WaitKind::SemaphoreAcquire,
            handle: this.handle,
        };
        this.key = Some(inner.waiters.register(this.key, cx, site));
        set_fut_waiter(FutWaiter::of(inner));
        Poll::Pending
    }
}

impl Drop for SemaphoreAcquire<'_> {
    fn drop(&mut self) {
        self.created.check("Semaphore.acquire");
        self.leave();
    }
}
