//! Synchronization primitives for tasks of one loop: asyncio's `locks.py`.
//!
//! [`Lock`], [`Event`], [`Condition`], [`Semaphore`], [`BoundedSemaphore`]
//! and [`Barrier`], with asyncio's semantics and error texts. Like asyncio's,
//! they are for tasks on one loop and are not thread-safe (they are `!Send`:
//! the compiler refuses what asyncio would corrupt at run time). The queues
//! are in `aioloop::queue`.
//!
//! Every primitive is a cheap handle (`Clone` shares it, as passing a
//! Python object around does). Its awaitables *borrow* the handle rather
//! than clone it, and register in the primitive's `WaitList`
//! (`src/waiters.rs`), which records the task, the operation and the
//! handle's address: the diagnostics read them to say what a stuck task
//! waits on and whether anything else can still reach it.
//!
//! Each handle also has a weak form, as `Rc` has `Weak`: `downgrade()` gives
//! a [`WeakLock`], [`WeakEvent`], [`WeakCondition`], [`WeakSemaphore`],
//! [`WeakBoundedSemaphore`] or [`WeakBarrier`] that does not keep the
//! primitive alive, and whose `upgrade()` hands back a handle to the same
//! primitive while a strong one is left. To the stuck-task check a live
//! weak handle is a way in (whoever holds it could upgrade it and wake the
//! waiters), and dropping the last one makes the check look again, as
//! dropping a strong handle does (see `stuck.rs`).
//!
//! # Fairness and cancellation (asyncio's guarantees)
//!
//! - Waiters are served in FIFO order, and a newcomer does not overtake a
//!   waiter that was already chosen (no barging).
//! - A waiter that is cancelled — or whose awaitable is dropped — after it
//!   was chosen passes its wake-up to the next waiter: no lock hand-off, no
//!   permit, no notification is lost.
//! - Every wait is a cancellation point: a pending cancel request ends it
//!   with `Err(CancelledError)` and leaves the primitive as if the waiter had
//!   never come (a [`Condition::wait`] re-acquires its lock first, as
//!   asyncio's does).
//!
//! # Which loop
//!
//! A primitive binds to the loop of its first waiter, as asyncio's
//! `_LoopBoundMixin` does. A task of another loop (on the same thread) may
//! still wait on it: it is recorded by a clone of its waker instead of its
//! task id, and woken through that. asyncio raises `RuntimeError` there;
//! aioloop has no reason to.

use std::cell::RefCell;
use std::fmt;
use std::rc::{Rc, Weak};

use crate::errors::CancelledError;
use crate::event_loop::{get_running_loop, LoopCore};

mod barrier;
mod condition;
mod event;
mod lock;
mod semaphore;

pub use barrier::{Barrier, BarrierWait, WeakBarrier};
pub use condition::{Condition, ConditionWait, WeakCondition};
pub use event::{Event, EventWait, WeakEvent};
pub use lock::{Lock, LockAcquire, LockGuard, WeakLock};
pub use semaphore::{
    BoundedSemaphore, Semaphore, SemaphoreAcquire, SemaphoreGuard, WeakBoundedSemaphore,
    WeakSemaphore,
};

use std::task::Context;

use crate::tasks::WaitTarget;
use crate::waiters::{Registration, WaitList, WaitSite, WaiterKey};

/// The loop a primitive is bound to (asyncio's `_LoopBoundMixin`).
#[derive(Default)]
pub(crate) struct Binding(RefCell<Weak<LoopCore>>);

impl Binding {
    /// The bound loop while it is alive: the loop whose task ids the
    /// primitive's wait lists hold.
    pub(crate) fn bound(&self) -> Option<Rc<LoopCore>> {
        self.0.borrow().upgrade()
    }

    /// The bound loop, binding the running loop first if there is none (or
    /// the bound one is gone, which leaves no task of it waiting).
    pub(crate) fn bind(&self) -> Option<Rc<LoopCore>> {
        if let Some(core) = self.bound() {
            return Some(core);
        }
        let core = get_running_loop().ok()?.core().clone();
        *self.0.borrow_mut() = Rc::downgrade(&core);
        Some(core)
    }
}

/// A primitive's waiters: its [`WaitList`] and the loop it is bound to,
/// so that every registration and removal is counted against the right
/// loop's tasks.
#[derive(Default)]
pub(crate) struct Waiters {
    list: WaitList,
    binding: Binding,
}

impl Waiters {
    /// Registers the context (binding the running loop on first use).
    pub(crate) fn register(
        &self,
        key: Option<WaiterKey>,
        cx: &Context<'_>,
        site: WaitSite,
    ) -> WaiterKey {
        let core = self.binding.bind();
        self.list.register(key, cx, core.as_deref(), site)
    }

    /// See [`WaitList::unregister`].
    pub(crate) fn unregister(&self, key: WaiterKey) -> Option<bool> {
        let core = self.binding.bound();
        self.list.unregister(key, core.as_deref())
    }

    pub(crate) fn is_notified(&self, key: WaiterKey) -> Option<bool> {
        self.list.is_notified(key)
    }

    /// See [`WaitList::notify_head`].
    pub(crate) fn notify_head(&self) -> bool {
        let core = self.binding.bound();
        self.list.notify_head(core.as_deref())
    }

    /// See [`WaitList::take_notified`].
    pub(crate) fn take_notified(&self, key: WaiterKey) -> Option<bool> {
        let core = self.binding.bound();
        self.list.take_notified(key, core.as_deref())
    }

    pub(crate) fn notify_first(&self) -> bool {
        let core = self.binding.bound();
        self.list.notify_first(core.as_deref())
    }

    pub(crate) fn notify(&self, n: usize) -> usize {
        let core = self.binding.bound();
        self.list.notify(n, core.as_deref())
    }

    pub(crate) fn notify_all(&self) -> usize {
        self.notify(usize::MAX)
    }

    pub(crate) fn has_unnotified(&self) -> bool {
        self.list.has_unnotified()
    }

    pub(crate) fn waiters(&self) -> usize {
        self.list.waiters()
    }

    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn registrations(&self) -> Vec<Registration> {
        self.list.registrations()
    }

    pub(crate) fn list(&self) -> &WaitList {
        &self.list
    }

    /// A handle of the primitive is going: its waiters may have lost their
    /// last way to be woken (see `stuck.rs`); the loop checks them at its
    /// next safe point.
    ///
    /// `strong` is the primitive's strong count, the dropped handle included.
    pub(crate) fn handle_dropped(&self, strong: usize) {
        if self.list.waiters() > 0 {
            if let Some(core) = self.binding.bound() {
                core.suspect_waiters(&self.list, strong - 1);
            }
        }
    }

    /// A weak handle of the primitive is going: it was a way in (see
    /// `stuck.rs`), so its waiters may have lost their last way to be woken,
    /// as when a strong handle goes.
    ///
    /// `strong` is the number of strong handles (none is going), `weak` the
    /// number of `Weak`s left once this one is gone, the parked tasks'
    /// records included.
    pub(crate) fn weak_dropped(&self, strong: usize, weak: usize) {
        let waiters = self.list.waiters();
        // Each task parked here holds at most one `Weak` (its parked-on
        // record): more `Weak`s than waiters means another weak handle is
        // still out there, a way in, and the check would find them alive.
        if waiters == 0 || weak > waiters {
            return;
        }
        if let Some(core) = self.binding.bound() {
            core.suspect_waiters(&self.list, strong);
        }
    }
}

/// The common `Drop` of the weak handles of [`crate::sync`]: tells the
/// primitive's [`Waiters`] that a weak handle is going (`waiters` picks them
/// out of the primitive).
///
/// The primitive is upgraded for the look: one strong count more, which is
/// taken back out; `weak` itself is still counted while its owner drops.
pub(crate) fn weak_handle_dropped<I>(weak: &Weak<I>, waiters: impl FnOnce(&I) -> &Waiters) {
    // No strong handle left: the primitive is gone, its waiters with it.
    let Some(inner) = weak.upgrade() else {
        return;
    };
    let strong = Rc::strong_count(&inner) - 1;
    let weak_left = Rc::weak_count(&inner) - 1;
    waiters(&inner).weak_dropped(strong, weak_left);
}

/// The common `Debug` of the weak handles: `WeakEvent(<Event [unset]>)`
/// while the primitive lives, `WeakEvent(dropped)` after (the look upgrades
/// nothing into a handle, so no handle's `Drop` runs).
pub(crate) fn fmt_weak<I: WaitTarget>(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    weak: &Weak<I>,
) -> fmt::Result {
    match weak.upgrade() {
        Some(inner) => write!(f, "{name}({})", inner.describe()),
        None => write!(f, "{name}(dropped)"),
    }
}

/// An error from a synchronization primitive, named and worded as asyncio's.
///
/// ```
/// use aioloop::sync::{Lock, SyncError};
///
/// let lock = Lock::new();
/// let err = lock.release().unwrap_err();
/// assert_eq!(err, SyncError::Runtime("Lock is not acquired."));
/// assert_eq!(err.to_string(), "RuntimeError: Lock is not acquired.");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncError {
    /// The waiting task was cancelled.
    Cancelled(CancelledError),
    /// asyncio's `RuntimeError`: `Lock is not acquired.`, `cannot wait on
    /// un-acquired lock`, `cannot notify on un-acquired lock`.
    Runtime(&'static str),
    /// asyncio's `ValueError`: `BoundedSemaphore released too many times`,
    /// `parties must be > 0`.
    Value(&'static str),
    /// asyncio's `BrokenBarrierError`: `Barrier aborted`, `Abort or reset
    /// of barrier`.
    BrokenBarrier(&'static str),
}

impl fmt::Display for SyncError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncError::Cancelled(c) => fmt::Display::fmt(c, f),
            SyncError::Runtime(m) => write!(f, "RuntimeError: {m}"),
            SyncError::Value(m) => write!(f, "ValueError: {m}"),
            SyncError::BrokenBarrier(m) => write!(f, "BrokenBarrierError: {m}"),
        }
    }
}

impl std::error::Error for SyncError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SyncError::Cancelled(c) => Some(c),
            _ => None,
        }
    }
}

impl From<CancelledError> for SyncError {
    fn from(c: CancelledError) -> Self {
        SyncError::Cancelled(c)
    }
}
