//! `Lock`: asyncio's `asyncio.Lock`, a FIFO-fair mutual exclusion lock.
//!
//! asyncio's algorithm (3.11+): `release()` unlocks and wakes the first
//! waiter; the woken waiter takes the lock when it runs. Between the two the
//! lock is unlocked but its waiter list is not empty, so a newcomer queues
//! behind instead of barging in. A woken waiter that is cancelled (or
//! dropped) before it runs wakes the next one in its place.
//!
//! # Invariants
//!
//! - `locked` is true exactly between a successful acquisition and the
//!   matching release.
//! - The fast path (take the lock without waiting) is open only when the lock
//!   is free and nobody waits.
//! - Whenever the lock is free and someone waits, the first waiter has been
//!   notified (woken) and will take the lock, or pass the turn on, when it
//!   runs.
//! - A guard releases only the acquisition it came from: each acquisition
//!   has an epoch, so a guard outliving a manual [`Lock::release`] does not
//!   release someone else's hold.

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

#[derive(Default)]
struct LockInner {
    locked: Cell<bool>,
    /// Incremented at every acquisition; a guard remembers its own.
    epoch: Cell<u64>,
    waiters: Waiters,
}

/// asyncio's `Lock`: one holder at a time, waiters served in FIFO order.
///
/// `acquire()` is a cancellation point and returns a [`LockGuard`] that
/// releases the lock when dropped (asyncio's `async with lock:`).
///
/// ```
/// use aioloop::sync::Lock;
/// use aioloop::{create_task, sleep, EventLoop};
/// use std::cell::RefCell;
/// use std::rc::Rc;
/// use std::time::Duration;
///
/// let lp = EventLoop::with_virtual_clock().unwrap();
/// let log = Rc::new(RefCell::new(Vec::new()));
/// let lock = Lock::new();
/// lp.run_until_complete({
///     let log = log.clone();
///     async move {
///         let tasks: Vec<_> = (0..3)
///             .map(|i| {
///                 let (lock, log) = (lock.clone(), log.clone());
///                 create_task(async move {
///                     let _held = lock.acquire().await?;
///                     log.borrow_mut().push(format!("{i} in"));
///                     sleep(Duration::from_secs(1)).await?;
///                     log.borrow_mut().push(format!("{i} out"));
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
/// assert_eq!(*log.borrow(), ["0 in", "0 out", "1 in", "1 out", "2 in", "2 out"]);
/// ```
#[derive(Clone, Default)]
pub struct Lock {
    inner: Rc<LockInner>,
}

impl Lock {
    /// A new, unlocked lock.
    pub fn new() -> Lock {
        Lock::default()
    }

    /// True while the lock is held (asyncio's `locked()`).
    pub fn locked(&self) -> bool {
        self.inner.locked.get()
    }

    /// A [`WeakLock`] to this lock: it does not keep the lock alive.
    ///
    /// ```
    /// use aioloop::sync::Lock;
    ///
    /// let lock = Lock::new();
    /// let weak = lock.downgrade();
    /// assert!(weak.upgrade().is_some());
    /// drop(lock);
    /// assert!(weak.upgrade().is_none(), "the weak handle did not keep it");
    /// ```
    pub fn downgrade(&self) -> WeakLock {
        WeakLock {
            inner: Rc::downgrade(&self.inner),
        }
    }

    /// Waits for the lock and takes it (asyncio's `acquire()`); a
    /// cancellation point. The guard releases it when dropped.
    #[track_caller]
    pub fn acquire(&self) -> LockAcquire<'_> {
        LockAcquire {
            lock: self,
            key: None,
            created: NeverAwaited::new(),
        }
    }

    /// Releases the lock (asyncio's `release()`), whoever holds it, and
    /// wakes the first waiter; `Lock is not acquired.` if it is not held.
    ///
    /// For a lock taken with [`acquire`](Lock::acquire), dropping the guard
    /// (or [`LockGuard::release`]) is the usual way; after this call the
    /// guard releases nothing.
    pub fn release(&self) -> Result<(), SyncError> {
        if !self.inner.locked.get() {
            return Err(SyncError::Runtime("Lock is not acquired."));
        }
        self.unlock();
        Ok(())
    }

    fn unlock(&self) {
        self.inner.locked.set(false);
        self.wake_first();
    }

    /// asyncio's `_wake_up_first`: notifies the first waiter unless it was
    /// notified already (then it is on its way).
    fn wake_first(&self) {
        self.inner.waiters.notify_head();
    }

    fn take(&self) -> LockGuard<'_> {
        let epoch = self.inner.epoch.get().wrapping_add(1);
        self.inner.epoch.set(epoch);
        self.inner.locked.set(true);
        LockGuard { lock: self, epoch }
    }

    /// True if `guard` holds this lock right now.
    pub(crate) fn holds(&self, guard: &LockGuard<'_>) -> bool {
        Rc::ptr_eq(&self.inner, &guard.lock.inner)
            && self.inner.locked.get()
            && self.inner.epoch.get() == guard.epoch
    }
}

impl WaitTarget for LockInner {
    fn for_each_list(&self, f: &mut dyn FnMut(&WaitList)) {
        f(self.waiters.list())
    }
    fn unnotified(&self) -> usize {
        self.waiters.list().unnotified()
    }
    fn describe(&self) -> String {
        let state = if self.locked.get() {
            "locked"
        } else {
            "unlocked"
        };
        match self.waiters.waiters() {
            0 => format!("<Lock [{state}]>"),
            n => format!("<Lock [{state}, waiters:{n}]>"),
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.inner
            .waiters
            .handle_dropped(Rc::strong_count(&self.inner));
    }
}

impl fmt::Debug for Lock {
    /// asyncio's repr: `<Lock [unlocked]>`, `<Lock [locked, waiters:2]>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.describe())
    }
}

/// Holds a [`Lock`]; releases it when dropped.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
    epoch: u64,
}

impl<'a> LockGuard<'a> {
    /// Releases the lock now (the same as dropping the guard).
    pub fn release(self) {}

    /// The lock this guard holds.
    pub fn lock(&self) -> &'a Lock {
        self.lock
    }

    /// The guard of the same lock after a re-acquisition (the condition
    /// variable's wait releases and re-takes the lock).
    pub(crate) fn set_epoch(&mut self, other: LockGuard<'_>) {
        self.epoch = other.epoch;
        std::mem::forget(other);
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        if self.lock.holds(self) {
            self.lock.unlock();
        }
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LockGuard({:?}, held: {})",
            self.lock,
            self.lock.holds(self)
        )
    }
}

/// A weak handle to a [`Lock`] (`Rc`'s `Weak`): it does not keep the
/// lock alive, and [`upgrade`](WeakLock::upgrade) gives a handle to the
/// same lock while a strong one is left.
///
/// For the stuck-task check a live weak handle is a way in: a task waiting
/// on the lock is never reported stuck while one exists, since whoever
/// holds it could upgrade it and release the lock. Dropping the last one makes the
/// check look again (see `docs/DEBUGGING.md`).
///
/// ```
/// use aioloop::sync::Lock;
/// use aioloop::EventLoop;
///
/// let lp = EventLoop::new().unwrap();
/// let lock = Lock::new();
/// let weak = lock.downgrade();
/// lp.run_until_complete(async move {
///     let strong = weak.upgrade().expect("`lock` is still alive");
///     let _held = strong.acquire().await.unwrap();
///     assert!(lock.locked(), "the same lock");
/// })
/// .unwrap();
/// ```
#[derive(Clone)]
pub struct WeakLock {
    inner: Weak<LockInner>,
}

impl WeakLock {
    /// The lock, if a strong handle to it is still alive.
    ///
    /// ```
    /// use aioloop::sync::Lock;
    ///
    /// let lock = Lock::new();
    /// let weak = lock.downgrade();
    /// assert!(!weak.upgrade().unwrap().locked());
    /// drop(lock);
    /// assert!(weak.upgrade().is_none());
    /// ```
    pub fn upgrade(&self) -> Option<Lock> {
        self.inner.upgrade().map(|inner| Lock { inner })
    }
}

impl Drop for WeakLock {
    fn drop(&mut self) {
        weak_handle_dropped(&self.inner, |i| &i.waiters);
    }
}

impl fmt::Debug for WeakLock {
    /// `WeakLock(<Lock [...]>)`, or `WeakLock(dropped)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_weak(f, "WeakLock", &self.inner)
    }
}

/// The future of [`Lock::acquire`].
#[must_use = "futures do nothing unless awaited"]
pub struct LockAcquire<'a> {
    lock: &'a Lock,
    key: Option<WaiterKey>,
    created: NeverAwaited,
}

impl<'a> LockAcquire<'a> {
    /// Leaves the waiter list; a notified waiter that will not take the lock
    /// passes the turn on (asyncio's `if not self._locked:
    /// self._wake_up_first()` on cancellation).
    fn leave(&mut self) {
        let Some(key) = self.key.take() else { return };
        let inner = &self.lock.inner;
        if inner.waiters.unregister(key) == Some(true) && !inner.locked.get() {
            self.lock.wake_first();
        }
    }
}

impl<'a> Future for LockAcquire<'a> {
    type Output = Result<LockGuard<'a>, CancelledError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.created.polled();
        if let Some(c) = take_cancel_request() {
            this.leave();
            return Poll::Ready(Err(c));
        }
        let lock = this.lock;
        let inner = &lock.inner;
        match this.key.map(|k| inner.waiters.take_notified(k)) {
            // First poll: take it if it is free and nobody is queued.
            None | Some(None) => {
                if !inner.locked.get() && inner.waiters.waiters() == 0 {
                    this.key = None;
                    return Poll::Ready(Ok(lock.take()));
                }
            }
            // Our turn: the releaser chose us (and our entry is gone).
            Some(Some(true)) => {
                this.key = None;
                debug_assert!(!inner.locked.get(), "a notified waiter finds the lock free");
                return Poll::Ready(Ok(lock.take()));
            }
            Some(Some(false)) => {}
        }
        let site = WaitSite::new(WaitKind::LockAcquire, lock);
        this.key = Some(inner.waiters.register(this.key, cx, site));
        set_fut_waiter(FutWaiter::of(inner));
        Poll::Pending
    }
}

impl Drop for LockAcquire<'_> {
    fn drop(&mut self) {
        self.created.check("Lock.acquire");
        self.leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{create_task, EventLoop};

    #[test]
    fn a_waiting_acquire_records_its_task_and_the_handle_it_borrowed() {
        let lp = EventLoop::new().unwrap();
        lp.run_until_complete(async {
            let lock = Lock::new();
            let held = lock.acquire().await.unwrap();
            let addr = Rc::new(Cell::new(0usize));
            let waiter = {
                let (lock, addr) = (lock.clone(), addr.clone());
                create_task(async move {
                    // This handle lives inside the task's own future.
                    addr.set(&lock as *const Lock as usize);
                    drop(lock.acquire().await?);
                    Ok(())
                })
                .unwrap()
            };
            crate::sleep(std::time::Duration::ZERO).await.unwrap();
            let regs = lock.inner.waiters.registrations();
            assert_eq!(regs.len(), 1);
            assert_eq!(regs[0].task, Some(waiter.as_ref().header().id()));
            assert_eq!(regs[0].site.kind, WaitKind::LockAcquire);
            assert_eq!(regs[0].site.handle, addr.get());
            assert_ne!(regs[0].site.handle, &lock as *const Lock as usize);
            assert!(!regs[0].notified);
            waiter.cancel();
            assert!(waiter.await.is_err());
            assert!(
                lock.inner.waiters.registrations().is_empty(),
                "gone with the awaitable"
            );
            drop(held);
        })
        .unwrap();
    }
}
