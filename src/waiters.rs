//! Who waits on an aioloop primitive, and what runs when it completes.
//!
//! asyncio keeps, per future, one list of done callbacks, and an awaiting
//! task is just one of them (`Task.__wakeup`). aioloop keeps the same single
//! ordered list, [`Completion`], whose entries are done callbacks or
//! waiters; a waiter is an aioloop **task id** when the waker polling the
//! primitive is the awaiting task's own, or a plain [`Waker`] for any other
//! context (a `FuturesUnordered` child waker, a foreign executor). Keeping
//! the id instead of a waker clone avoids two atomic operations per wait, and
//! tells the diagnostics exactly which task waits where.
//!
//! # Invariants
//!
//! - An awaitable registers at most one entry at a time (it keeps the key
//!   and updates the entry in place on a re-poll) and removes it when
//!   dropped, so a cancelled or abandoned wait leaves nothing behind.
//! - Completing takes the whole list out first and then wakes and
//!   schedules, in registration order, so an entry added meanwhile lands in
//!   the new list, not the one being drained.
//! - An empty list costs one pointer-sized `Vec` header and a counter.

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::task::{Context, Waker};

use crate::event_loop::LoopCore;
use crate::remote::Remote;
use crate::task_slab::{task_of_waker, TaskId};

/// Who waits.
pub(crate) enum Waiter {
    /// An aioloop task of the primitive's loop.
    Task(TaskId),
    /// Anything else. Boxed: rare, and it would double every entry's size.
    Waker(Box<Waker>),
}

impl Waiter {
    /// The task id when the context's waker is an aioloop task waker of
    /// this loop, else a clone of the waker.
    pub(crate) fn from_context(cx: &Context<'_>, remote: &Arc<Remote>) -> Waiter {
        match task_of_waker(cx.waker(), remote) {
            Some(id) => Waiter::Task(id),
            None => Waiter::Waker(Box::new(cx.waker().clone())),
        }
    }

    /// Wakes it: schedules the task on `core`, or wakes the waker.
    pub(crate) fn wake(self, core: &LoopCore) {
        match self {
            Waiter::Task(id) => core.schedule_task(id),
            Waiter::Waker(w) => w.wake(),
        }
    }

    pub(crate) fn same_as(&self, cx: &Context<'_>, remote: &Arc<Remote>) -> bool {
        match self {
            Waiter::Task(id) => task_of_waker(cx.waker(), remote) == Some(*id),
            Waiter::Waker(w) => w.will_wake(cx.waker()),
        }
    }
}

/// A registration in a [`Completion`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WaiterKey(u32);

/// An id returned by `add_done_callback`, for `remove_done_callback`
/// (Rust closures have no identity to compare, as Python functions do).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DoneCallbackId(u32);

/// A done callback, boxed (the typed handle is captured inside).
pub(crate) type DoneCallback = Box<dyn FnOnce()>;

/// One entry of a completion list.
pub(crate) enum Entry {
    /// Someone awaiting: woken on completion.
    Waiter(Waiter),
    /// A done callback: scheduled with `call_soon` on completion. Boxed
    /// again to keep entries two words: waiters are the common case.
    Callback(Box<DoneCallback>),
}

/// The entries of a completion list. The first entry is stored inline:
/// most futures have exactly one waiter, and a list that never allocates
/// saves a malloc/free pair per future (the ping-pong benchmark's hot path).
#[derive(Default)]
enum Entries {
    #[default]
    Empty,
    One(u32, Entry),
    Many(Vec<(u32, Entry)>),
}

impl Entries {
    fn push(&mut self, id: u32, e: Entry) {
        match self {
            Entries::Empty => *self = Entries::One(id, e),
            Entries::Many(v) => v.push((id, e)),
            Entries::One(..) => {
                let Entries::One(i, first) = std::mem::take(self) else {
                    unreachable!("matched One just above")
                };
                *self = Entries::Many(vec![(i, first), (id, e)]);
            }
        }
    }

    fn find_waiter(&mut self, id: u32) -> Option<&mut Waiter> {
        match self {
            Entries::One(i, Entry::Waiter(w)) if *i == id => Some(w),
            Entries::Many(v) => v.iter_mut().find_map(|e| match e {
                (i, Entry::Waiter(w)) if *i == id => Some(w),
                _ => None,
            }),
            _ => None,
        }
    }

    fn remove(&mut self, id: u32) -> Option<Entry> {
        match self {
            Entries::One(i, _) if *i == id => match std::mem::take(self) {
                Entries::One(_, e) => Some(e),
                _ => unreachable!("matched One just above"),
            },
            // `remove`, not `swap_remove`: the order is the contract.
            Entries::Many(v) => v.iter().position(|e| e.0 == id).map(|i| v.remove(i).1),
            _ => None,
        }
    }
}

/// The entries taken out of a completion list, in registration order.
pub(crate) enum Drained {
    Empty,
    One(Entry),
    Many(std::vec::IntoIter<(u32, Entry)>),
}

impl Iterator for Drained {
    type Item = Entry;
    fn next(&mut self) -> Option<Entry> {
        match std::mem::replace(self, Drained::Empty) {
            Drained::Empty => None,
            Drained::One(e) => Some(e),
            Drained::Many(mut it) => {
                let e = it.next().map(|e| e.1);
                *self = Drained::Many(it);
                e
            }
        }
    }
}

/// What a future or task does when it completes, in registration order
/// (asyncio's `_callbacks`).
#[derive(Default)]
pub(crate) struct Completion {
    entries: RefCell<Entries>,
    next: Cell<u32>,
}

impl Completion {
    fn next_id(&self) -> u32 {
        let id = self.next.get();
        self.next.set(id.wrapping_add(1));
        id
    }

    /// Registers the context's waker (or updates `key`'s entry to it).
    pub(crate) fn register(
        &self,
        key: Option<WaiterKey>,
        cx: &Context<'_>,
        remote: &Arc<Remote>,
    ) -> WaiterKey {
        let mut entries = self.entries.borrow_mut();
        if let Some(key) = key {
            if let Some(w) = entries.find_waiter(key.0) {
                if !w.same_as(cx, remote) {
                    *w = Waiter::from_context(cx, remote);
                }
                return key;
            }
        }
        let id = self.next_id();
        entries.push(id, Entry::Waiter(Waiter::from_context(cx, remote)));
        WaiterKey(id)
    }

    /// Removes a waiter registration; true if it was still there.
    pub(crate) fn unregister(&self, key: WaiterKey) -> bool {
        self.remove(key.0)
    }

    fn remove(&self, id: u32) -> bool {
        let removed = self.entries.borrow_mut().remove(id);
        // Dropped after the borrow ends: a callback's captures are user code.
        removed.is_some()
    }

    /// Registers a done callback. When `done`, the callback is handed back
    /// for the caller to schedule at once.
    pub(crate) fn add_callback(
        &self,
        done: bool,
        f: DoneCallback,
    ) -> (DoneCallbackId, Option<DoneCallback>) {
        let id = self.next_id();
        if done {
            (DoneCallbackId(id), Some(f))
        } else {
            self.entries
                .borrow_mut()
                .push(id, Entry::Callback(Box::new(f)));
            (DoneCallbackId(id), None)
        }
    }

    /// Removes a done callback not yet scheduled; true if it was there.
    pub(crate) fn remove_callback(&self, id: DoneCallbackId) -> bool {
        self.remove(id.0)
    }

    /// Takes every entry out, in registration order, for the caller to
    /// wake and schedule with no borrow held.
    pub(crate) fn take(&self) -> Drained {
        match std::mem::take(&mut *self.entries.borrow_mut()) {
            Entries::Empty => Drained::Empty,
            Entries::One(_, e) => Drained::One(e),
            Entries::Many(v) => Drained::Many(v.into_iter()),
        }
    }
}
