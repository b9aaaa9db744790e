//! Waiter lists: who is waiting on an aioloop primitive.
//!
//! asyncio keeps, per future, a list of done callbacks, and an awaiting task
//! is just one of them (`Task.__wakeup`); its locks and queues keep deques of
//! futures. aioloop has one machinery for all of them: a [`WaiterList`] of
//! entries that are either an aioloop **task id** — when the waker polling
//! the primitive is the awaiting task's own — or a plain [`Waker`] — for any
//! other context (a `FuturesUnordered` child waker, a foreign executor).
//! Keeping the id instead of a waker clone avoids two atomic operations per
//! wait, and tells the diagnostics exactly which task waits where.
//!
//! # Invariants
//!
//! - An awaitable registers at most one entry at a time (it keeps the key
//!   and updates the entry in place on a re-poll) and removes it when
//!   dropped, so a cancelled or abandoned wait leaves nothing behind.
//! - Waking drains the list first and wakes afterwards, so a woken waiter
//!   that re-registers lands in the new list, not the one being drained.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::task::{Context, Waker};

use crate::remote::Remote;
use crate::task_slab::{task_of_waker, TaskId};

/// Who waits.
#[derive(Clone)]
pub(crate) enum Waiter {
    /// An aioloop task of the primitive's loop.
    Task(TaskId),
    /// Anything else.
    Waker(Waker),
}

impl Waiter {
    fn from_context(cx: &Context<'_>, remote: &Arc<Remote>) -> Waiter {
        match task_of_waker(cx.waker(), remote) {
            Some(id) => Waiter::Task(id),
            None => Waiter::Waker(cx.waker().clone()),
        }
    }

    fn same_as(&self, cx: &Context<'_>, remote: &Arc<Remote>) -> bool {
        match self {
            Waiter::Task(id) => task_of_waker(cx.waker(), remote) == Some(*id),
            Waiter::Waker(w) => w.will_wake(cx.waker()),
        }
    }
}

/// A registration in a [`WaiterList`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WaiterKey(u64);

/// The waiters of one primitive, in arrival order.
#[derive(Default)]
pub(crate) struct WaiterList {
    entries: RefCell<Vec<(WaiterKey, Waiter)>>,
    next_key: Cell<u64>,
}

impl WaiterList {
    /// Registers the context's waker (or updates `key`'s entry to it).
    pub(crate) fn register(
        &self,
        key: Option<WaiterKey>,
        cx: &Context<'_>,
        remote: &Arc<Remote>,
    ) -> WaiterKey {
        let mut entries = self.entries.borrow_mut();
        if let Some(key) = key {
            if let Some(entry) = entries.iter_mut().find(|e| e.0 == key) {
                if !entry.1.same_as(cx, remote) {
                    entry.1 = Waiter::from_context(cx, remote);
                }
                return key;
            }
        }
        let key = WaiterKey(self.next_key.get());
        self.next_key.set(key.0 + 1);
        entries.push((key, Waiter::from_context(cx, remote)));
        key
    }

    /// Removes a registration; true if it was still there.
    pub(crate) fn unregister(&self, key: WaiterKey) -> bool {
        let mut entries = self.entries.borrow_mut();
        match entries.iter().position(|e| e.0 == key) {
            Some(i) => {
                entries.remove(i);
                true
            }
            None => false,
        }
    }

    /// Takes every waiter out, oldest first; the caller wakes them.
    pub(crate) fn take_all(&self) -> Vec<Waiter> {
        std::mem::take(&mut *self.entries.borrow_mut())
            .into_iter()
            .map(|e| e.1)
            .collect()
    }
}

/// An id returned by `add_done_callback`, for `remove_done_callback`
/// (Rust closures have no identity to compare, as Python functions do).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DoneCallbackId(u64);

/// A done callback, boxed (the typed handle is captured inside).
pub(crate) type DoneCallback = Box<dyn FnOnce()>;

/// What a future or task does when it completes: wake who awaits it, and
/// schedule its done callbacks (asyncio's `__schedule_callbacks`).
#[derive(Default)]
pub(crate) struct Completion {
    pub(crate) waiters: WaiterList,
    callbacks: RefCell<Vec<(u64, DoneCallback)>>,
    next_callback: Cell<u64>,
}

impl Completion {
    /// Registers a done callback; `None` means "already done: the caller
    /// schedules it now".
    pub(crate) fn add_callback(
        &self,
        done: bool,
        f: Box<dyn FnOnce()>,
    ) -> (DoneCallbackId, Option<Box<dyn FnOnce()>>) {
        let id = self.next_callback.get();
        self.next_callback.set(id + 1);
        if done {
            (DoneCallbackId(id), Some(f))
        } else {
            self.callbacks.borrow_mut().push((id, f));
            (DoneCallbackId(id), None)
        }
    }

    pub(crate) fn remove_callback(&self, id: DoneCallbackId) -> bool {
        let mut cbs = self.callbacks.borrow_mut();
        let before = cbs.len();
        cbs.retain(|(i, _)| *i != id.0);
        before != cbs.len()
    }

    /// Takes the waiters and the callbacks out, in registration order, for
    /// the caller to wake and schedule with no borrow held.
    pub(crate) fn take(&self) -> (Vec<Waiter>, Vec<DoneCallback>) {
        let cbs = std::mem::take(&mut *self.callbacks.borrow_mut());
        (
            self.waiters.take_all(),
            cbs.into_iter().map(|(_, f)| f).collect(),
        )
    }
}
