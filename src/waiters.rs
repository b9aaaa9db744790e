//! Who waits on an aioloop primitive, on what, through which handle — the
//! one waiter machinery behind every aioloop awaitable.
//!
//! asyncio gives every waiting coroutine a future and keeps those futures in
//! per-primitive deques (`Lock._waiters`, `Queue._getters`, ...), while a
//! future keeps its awaiting tasks among its done callbacks. aioloop keeps one
//! structure for all of them, [`WaitList`]: an ordered list of registrations.
//! A loop future and a task keep their awaiters and done callbacks in one
//! (completing drains it all, in order); a lock, an event, a semaphore, a
//! condition, a barrier and a queue keep their waiters in one each, and wake
//! them one at a time (`notify_first`) or all at once (`notify_all`).
//!
//! A registration records:
//!
//! - **who** waits: an aioloop task id when the waker polling the awaitable
//!   is the task's own (no waker clone, no atomic operation), or a plain
//!   [`Waker`] for any other context (a `FuturesUnordered` child, a foreign
//!   executor);
//! - **on what**: a [`WaitKind`] (`Queue.get`, `Lock.acquire`, ...);
//! - **through which handle**: the address of the primitive handle the
//!   awaitable borrowed (awaitables borrow their primitive, they never clone
//!   it). The diagnostics compare it with where each task's future lives, to
//!   tell a handle held only by a stuck task from one held anywhere else;
//! - whether it was **notified**: chosen to proceed, woken, but not yet run.
//!   A notified awaitable that is cancelled or dropped before it consumes
//!   its wake-up passes it on to the next waiter, so no hand-off is lost.
//!
//! # Invariants
//!
//! - An awaitable registers at most one entry per list at a time (it keeps
//!   its [`WaiterKey`] and updates the entry in place on a re-poll) and
//!   removes it when it finishes or is dropped, so a cancelled or abandoned
//!   wait leaves nothing behind.
//! - Entries stay in registration order: FIFO fairness is list order.
//! - Nothing is woken, and no user code runs, while the list is borrowed:
//!   wakers are taken or cloned out first, then woken.
//! - An entry is 24 bytes and an empty or single-entry list allocates
//!   nothing (most futures have exactly one awaiter).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::task::{Context, Waker};

use crate::event_loop::LoopCore;
use crate::remote::Remote;
use crate::task_slab::{task_of_waker, TaskId};
use crate::tasks::{count_id_wait, current_waits_by_id};

/// Who waits, as handed to whoever wakes it.
pub(crate) enum Waiter {
    /// An aioloop task of the primitive's loop.
    Task(TaskId),
    /// Anything else. Boxed: rare, and it would double every entry's size.
    Waker(Box<Waker>),
}

impl Waiter {
    /// Wakes it: schedules the task on `core`, or wakes the waker.
    pub(crate) fn wake(self, core: &LoopCore) {
        match self {
            Waiter::Task(id) => core.schedule_task(id),
            Waiter::Waker(w) => w.wake(),
        }
    }
}

/// What a registration waits on: the primitive and the operation, named as
/// asyncio's diagnostics would name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum WaitKind {
    /// Awaiting a loop [`Future`](crate::Future).
    Future,
    /// Awaiting a [`Task`](crate::Task).
    Task,
    /// `Lock.acquire()`.
    LockAcquire,
    /// `Event.wait()`.
    EventWait,
    /// `Condition.wait()` (the notification half; the lock re-acquisition
    /// is a `Lock.acquire`).
    ConditionWait,
    /// `Semaphore.acquire()`.
    SemaphoreAcquire,
    /// `Barrier.wait()`.
    BarrierWait,
    /// `Queue.get()`.
    QueueGet,
    /// `Queue.put()`.
    QueuePut,
    /// `Queue.join()`.
    QueueJoin,
}

impl WaitKind {
    /// asyncio's name of the operation: `Queue.get`, `Lock.acquire`, ...
    pub fn name(self) -> &'static str {
        match self {
            WaitKind::Future => "Future",
            WaitKind::Task => "Task",
            WaitKind::LockAcquire => "Lock.acquire",
            WaitKind::EventWait => "Event.wait",
            WaitKind::ConditionWait => "Condition.wait",
            WaitKind::SemaphoreAcquire => "Semaphore.acquire",
            WaitKind::BarrierWait => "Barrier.wait",
            WaitKind::QueueGet => "Queue.get",
            WaitKind::QueuePut => "Queue.put",
            WaitKind::QueueJoin => "Queue.join",
        }
    }
}

/// Where a registration waits: the operation and the address of the handle
/// the awaitable borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WaitSite {
    pub(crate) kind: WaitKind,
    pub(crate) handle: usize,
}

impl WaitSite {
    /// The site of an awaitable that borrowed `handle`.
    pub(crate) fn new<H>(kind: WaitKind, handle: &H) -> WaitSite {
        WaitSite {
            kind,
            handle: handle as *const H as usize,
        }
    }
}

/// One registration, as the diagnostics see it.
#[cfg_attr(not(test), allow(dead_code))] // read by tests; the task dump reads it next
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Registration {
    /// The waiting task, when it waits with its own waker.
    pub(crate) task: Option<TaskId>,
    pub(crate) site: WaitSite,
    pub(crate) notified: bool,
}

/// A registration in a [`WaitList`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WaiterKey(u32);

/// An id returned by `add_done_callback`, for `remove_done_callback`
/// (Rust closures have no identity to compare, as Python functions do).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DoneCallbackId(u32);

/// A done callback, boxed (the typed handle is captured inside).
pub(crate) type DoneCallback = Box<dyn FnOnce()>;

/// A listener told *inline*, at the moment the list completes, instead of
/// through the ready queue: `gather`'s per-child record (see
/// `combinators::done_queue`). It must not run user code: it records
/// `index` and wakes its owner, nothing else.
pub(crate) trait Notify {
    /// The list registered under `index` completed.
    fn notify(&self, index: usize);
}

/// The rare entries, boxed so that the common one (a task) stays inline.
enum Boxed {
    Waker {
        waker: Waker,
        handle: usize,
    },
    Callback(DoneCallback),
    /// Told at completion, inline: no closure box, no ready-queue hop.
    Notify {
        to: Rc<dyn Notify>,
        index: usize,
    },
}

/// Who an entry is for. A task entry is 16 bytes; the box shares them
/// through the niche of `TaskId`'s non-zero generation.
enum Who {
    Task { id: TaskId, handle: usize },
    Boxed(Box<Boxed>),
}

struct Slot {
    who: Who,
    key: u32,
    /// Meaningless for a done callback.
    kind: WaitKind,
    notified: bool,
}

impl Slot {
    #[inline]
    fn waiter(key: u32, waiter: Waiter, site: WaitSite) -> Slot {
        let who = match waiter {
            Waiter::Task(id) => Who::Task {
                id,
                handle: site.handle,
            },
            Waiter::Waker(w) => Who::Boxed(Box::new(Boxed::Waker {
                waker: *w,
                handle: site.handle,
            })),
        };
        Slot {
            who,
            key,
            kind: site.kind,
            notified: false,
        }
    }

    /// The task held by id, if this entry is one.
    #[inline]
    fn task(&self) -> Option<TaskId> {
        match self.who {
            Who::Task { id, .. } => Some(id),
            Who::Boxed(_) => None,
        }
    }

    fn is_waiter(&self) -> bool {
        !matches!(&self.who, Who::Boxed(b) if matches!(**b, Boxed::Callback(_) | Boxed::Notify { .. }))
    }

    fn same_as(&self, cx: &Context<'_>, remote: Option<&Arc<Remote>>) -> bool {
        match &self.who {
            Who::Task { id, .. } => {
                remote.is_some_and(|r| task_of_waker(cx.waker(), r) == Some(*id))
            }
            Who::Boxed(b) => match &**b {
                Boxed::Waker { waker, .. } => waker.will_wake(cx.waker()),
                Boxed::Callback(_) | Boxed::Notify { .. } => false,
            },
        }
    }

    #[cfg_attr(not(test), allow(dead_code))]
    fn registration(&self) -> Option<Registration> {
        let (task, handle) = match &self.who {
            Who::Task { id, handle } => (Some(*id), *handle),
            Who::Boxed(b) => match &**b {
                Boxed::Waker { handle, .. } => (None, *handle),
                Boxed::Callback(_) | Boxed::Notify { .. } => return None,
            },
        };
        Some(Registration {
            task,
            site: WaitSite {
                kind: self.kind,
                handle,
            },
            notified: self.notified,
        })
    }

    /// What waking this entry takes, copied out so that the list can be
    /// released before anything is woken.
    fn wake_token(&self) -> Option<Waiter> {
        match &self.who {
            Who::Task { id, .. } => Some(Waiter::Task(*id)),
            Who::Boxed(b) => match &**b {
                Boxed::Waker { waker, .. } => Some(Waiter::Waker(Box::new(waker.clone()))),
                Boxed::Callback(_) | Boxed::Notify { .. } => None,
            },
        }
    }

    #[inline]
    fn into_entry(self) -> Entry {
        match self.who {
            Who::Task { id, .. } => Entry::Waiter(Waiter::Task(id)),
            Who::Boxed(b) => match *b {
                Boxed::Waker { waker, .. } => Entry::Waiter(Waiter::Waker(Box::new(waker))),
                Boxed::Callback(f) => Entry::Callback(f),
                Boxed::Notify { to, index } => Entry::Notify(to, index),
            },
        }
    }
}

/// One entry taken out of a completing list.
pub(crate) enum Entry {
    /// Someone awaiting: woken on completion.
    Waiter(Waiter),
    /// A done callback: scheduled with `call_soon` on completion.
    Callback(DoneCallback),
    /// A [`Notify`] listener: told at once, inline.
    Notify(Rc<dyn Notify>, usize),
}

/// The entries. The first is stored inline: most futures have exactly one
/// awaiter, and a list that never allocates saves a malloc/free pair per
/// future (the ping-pong benchmark's hot path). Two or more live in a boxed
/// deque, so that FIFO removal at the front is O(1) and the inline size
/// stays one entry.
#[derive(Default)]
enum Entries {
    #[default]
    Empty,
    One(Slot),
    // Boxed on purpose: inline, the deque's four words would make every
    // list (one per future and task) twice as big as its common case.
    #[allow(clippy::box_collection)]
    Many(Box<VecDeque<Slot>>),
}

impl Entries {
    #[inline]
    fn push(&mut self, slot: Slot) {
        match self {
            // Nothing to drop in `Empty`: skip the drop glue.
            Entries::Empty => std::mem::forget(std::mem::replace(self, Entries::One(slot))),
            _ => self.push_more(slot),
        }
    }

    /// `push` onto a list that has entries already.
    #[inline(never)]
    fn push_more(&mut self, slot: Slot) {
        match self {
            Entries::Empty => *self = Entries::One(slot),
            Entries::Many(v) => v.push_back(slot),
            Entries::One(_) => {
                let Entries::One(first) = std::mem::take(self) else {
                    unreachable!("matched One just above")
                };
                let mut v = VecDeque::with_capacity(4);
                v.push_back(first);
                v.push_back(slot);
                *self = Entries::Many(Box::new(v));
            }
        }
    }

    fn iter(&self) -> impl Iterator<Item = &Slot> {
        let (a, b): (&[Slot], &[Slot]) = match self {
            Entries::Empty => (&[], &[]),
            Entries::One(s) => (std::slice::from_ref(s), &[]),
            Entries::Many(v) => v.as_slices(),
        };
        a.iter().chain(b)
    }

    fn iter_mut(&mut self) -> impl Iterator<Item = &mut Slot> {
        let (a, b): (&mut [Slot], &mut [Slot]) = match self {
            Entries::Empty => (&mut [], &mut []),
            Entries::One(s) => (std::slice::from_mut(s), &mut []),
            Entries::Many(v) => v.as_mut_slices(),
        };
        a.iter_mut().chain(b)
    }

    #[inline]
    fn find(&mut self, key: u32) -> Option<&mut Slot> {
        self.iter_mut().find(|s| s.key == key)
    }

    #[inline]
    fn remove(&mut self, key: u32) -> Option<Slot> {
        match self {
            Entries::One(s) if s.key == key => match std::mem::take(self) {
                Entries::One(s) => Some(s),
                _ => unreachable!("matched One just above"),
            },
            // `remove`, not `swap_remove`: the order is the contract. The
            // head is the usual case (FIFO hand-offs), and `pop_front` is
            // far cheaper than the general `remove`.
            Entries::Many(v) => {
                if v.front().is_some_and(|s| s.key == key) {
                    return v.pop_front();
                }
                let i = v.iter().position(|s| s.key == key)?;
                v.remove(i)
            }
            _ => None,
        }
    }
}

/// An ordered list of waiters (and, for futures and tasks, done callbacks).
#[derive(Default)]
pub(crate) struct WaitList {
    entries: RefCell<Entries>,
    next: Cell<u32>,
    /// Waiter entries (done callbacks not counted), and how many of them
    /// are notified: the primitives' fast paths ask on every operation.
    waiting: Cell<u32>,
    notified: Cell<u32>,
}

/// A future's or task's list: awaiters and done callbacks, drained at once
/// on completion (asyncio's `_callbacks`).
pub(crate) type Completion = WaitList;

impl WaitList {
    fn next_key(&self) -> u32 {
        let id = self.next.get();
        self.next.set(id.wrapping_add(1));
        id
    }

    /// Registers the context's waker at the back of the list, or updates
    /// `key`'s entry in place (keeping its place and its notified mark).
    ///
    /// `core` is the primitive's loop: with it, an aioloop task of that
    /// loop is recorded by id instead of by a waker clone, and counted in
    /// the task's `id_waits` (see `tasks::count_id_wait`).
    #[inline]
    pub(crate) fn register(
        &self,
        key: Option<WaiterKey>,
        cx: &Context<'_>,
        core: Option<&LoopCore>,
        site: WaitSite,
    ) -> WaiterKey {
        // The usual registration, kept inline: a task's first poll of an
        // awaitable, with its own waker.
        if let (None, Some(core)) = (key, core) {
            if let Some(id) = current_waits_by_id(cx.waker(), core) {
                let key = self.next_key();
                let slot = Slot {
                    who: Who::Task {
                        id,
                        handle: site.handle,
                    },
                    key,
                    kind: site.kind,
                    notified: false,
                };
                let mut entries = self.entries.borrow_mut();
                // Written in place, field by field: a slot built on the
                // stack and copied in was stored narrow and loaded wide, a
                // store forwarding stall (`perf annotate`: a tenth of the
                // ping-pong benchmark's time, and of the contended lock's).
                match &mut *entries {
                    Entries::Empty => *entries = Entries::One(slot),
                    Entries::Many(v) => v.push_back(slot),
                    Entries::One(_) => entries.push(slot),
                }
                drop(entries);
                self.waiting.set(self.waiting.get() + 1);
                return WaiterKey(key);
            }
        }
        self.register_any(key, cx, core, site)
    }

    /// `register` for every other case: a re-poll, a foreign waker, a task
    /// polled by something else than its own step.
    #[inline(never)]
    fn register_any(
        &self,
        key: Option<WaiterKey>,
        cx: &Context<'_>,
        core: Option<&LoopCore>,
        site: WaitSite,
    ) -> WaiterKey {
        let remote = core.map(|c| &c.remote);
        if let Some(key) = key {
            let mut entries = self.entries.borrow_mut();
            if let Some(slot) = entries.find(key.0) {
                if slot.same_as(cx, remote) {
                    return key;
                }
                let old = slot.task();
                let notified = slot.notified;
                let replaced =
                    std::mem::replace(slot, Slot::waiter(key.0, waiter_of(cx, core), site));
                slot.notified = notified;
                drop(entries);
                drop(replaced);
                if let (Some(id), Some(core)) = (old, core) {
                    count_id_wait(core, id, false);
                }
                return key;
            }
        }
        // Made before the borrow: counting may look the task up.
        let slot = Slot::waiter(self.next_key(), waiter_of(cx, core), site);
        let key = slot.key;
        self.entries.borrow_mut().push(slot);
        self.waiting.set(self.waiting.get() + 1);
        WaiterKey(key)
    }

    /// Removes a registration. `Some(notified)` if it was still there:
    /// `Some(true)` means it had been chosen and woken, and the caller must
    /// pass the wake-up on if it will not use it.
    ///
    /// `core` is the loop the list is bound to (see `register`); without
    /// it a task's `id_waits` stays one too high, which only ever makes the
    /// stuck-task check more careful.
    pub(crate) fn unregister(&self, key: WaiterKey, core: Option<&LoopCore>) -> Option<bool> {
        if self.waiting.get() == 0 {
            // Nobody waits (a completed future's list was drained): the
            // key's entry is gone already.
            return None;
        }
        let removed = self.entries.borrow_mut().remove(key.0);
        // Dropped after the borrow ends: a waker's drop is foreign code.
        removed.map(|s| {
            self.waiting.set(self.waiting.get() - 1);
            if s.notified {
                self.notified.set(self.notified.get() - 1);
            }
            if let (Some(id), Some(core)) = (s.task(), core) {
                count_id_wait(core, id, false);
            }
            s.notified
        })
    }

    /// [`unregister`](Self::unregister) for a list whose loop is held
    /// weakly (a future's, a task's): the loop is looked up only when there
    /// is an entry to remove, which after a completion there is not.
    #[inline]
    pub(crate) fn unregister_in(&self, key: WaiterKey, core: &Weak<LoopCore>) -> Option<bool> {
        if self.waiting.get() == 0 {
            return None;
        }
        self.unregister(key, core.upgrade().as_deref())
    }

    /// `Some(notified)` while `key` is registered.
    pub(crate) fn is_notified(&self, key: WaiterKey) -> Option<bool> {
        self.entries.borrow_mut().find(key.0).map(|s| s.notified)
    }

    /// Marks the first waiter not yet notified as notified and wakes it;
    /// false if every waiter was already notified (or there is none).
    pub(crate) fn notify_first(&self, core: Option<&LoopCore>) -> bool {
        self.notify(1, core) == 1
    }

    /// Notifies the first waiter if it was not notified yet (asyncio's
    /// `_wake_up_first`); false if there is none or it already was. One
    /// look at the head of the list.
    pub(crate) fn notify_head(&self, core: Option<&LoopCore>) -> bool {
        if self.waiting.get() == self.notified.get() {
            return false;
        }
        let token = {
            let mut entries = self.entries.borrow_mut();
            let Some(slot) = entries.iter_mut().find(|s| s.is_waiter()) else {
                return false;
            };
            if slot.notified {
                return false;
            }
            slot.notified = true;
            slot.wake_token()
        };
        self.notified.set(self.notified.get() + 1);
        match (token, core) {
            (Some(Waiter::Task(id)), Some(core)) => core.schedule_task(id),
            (Some(Waiter::Waker(w)), _) => w.wake(),
            _ => {}
        }
        true
    }

    /// Removes `key`'s entry if it was notified: `Some(true)`. `Some(false)`
    /// if it is there and still waits (it stays), `None` if it is gone. One
    /// search, for the awaitable that polls for its turn.
    pub(crate) fn take_notified(&self, key: WaiterKey, core: Option<&LoopCore>) -> Option<bool> {
        let removed = {
            let mut entries = self.entries.borrow_mut();
            match entries.find(key.0) {
                None => return None,
                Some(slot) if !slot.notified => return Some(false),
                // Found, so `remove` finds it too: at the head, at once.
                Some(_) => entries.remove(key.0),
            }
        };
        if let Some(s) = removed {
            self.waiting.set(self.waiting.get() - 1);
            self.notified.set(self.notified.get() - 1);
            if let (Some(id), Some(core)) = (s.task(), core) {
                count_id_wait(core, id, false);
            }
        }
        Some(true)
    }

    /// Notifies up to `n` waiters not yet notified, in order; returns how
    /// many.
    pub(crate) fn notify(&self, n: usize, core: Option<&LoopCore>) -> usize {
        if n == 0 || !self.has_unnotified() {
            return 0;
        }
        let mut chosen = Vec::new();
        let mut single = None;
        {
            let mut entries = self.entries.borrow_mut();
            let mut count = 0;
            for slot in entries.iter_mut() {
                if count == n {
                    break;
                }
                if slot.notified || !slot.is_waiter() {
                    continue;
                }
                slot.notified = true;
                self.notified.set(self.notified.get() + 1);
                let token = slot.wake_token();
                if count == 0 {
                    single = token;
                } else {
                    chosen.extend(token);
                }
                count += 1;
            }
        }
        let mut woken = 0;
        for w in single.into_iter().chain(chosen) {
            woken += 1;
            match (w, core) {
                (Waiter::Task(id), Some(core)) => core.schedule_task(id),
                // Its loop is gone: so is the task.
                (Waiter::Task(_), None) => {}
                (Waiter::Waker(w), _) => w.wake(),
            }
        }
        woken
    }

    /// `Some(notified)` of the first waiter; `None` if nobody waits.
    pub(crate) fn first_notified(&self) -> Option<bool> {
        if self.waiting.get() == 0 {
            return None;
        }
        self.entries
            .borrow()
            .iter()
            .find(|s| s.is_waiter())
            .map(|s| s.notified)
    }

    /// True if some waiter has not been notified yet.
    pub(crate) fn has_unnotified(&self) -> bool {
        self.waiting.get() > self.notified.get()
    }

    /// Waiters not notified yet: the ones whose tasks are parked (a
    /// notified waiter's task is on its way to run).
    pub(crate) fn unnotified(&self) -> usize {
        (self.waiting.get() - self.notified.get()) as usize
    }

    /// Number of waiters (done callbacks not counted).
    pub(crate) fn waiters(&self) -> usize {
        self.waiting.get() as usize
    }

    /// Every waiter's registration, in order (for diagnostics and tests).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn registrations(&self) -> Vec<Registration> {
        self.entries
            .borrow()
            .iter()
            .filter_map(Slot::registration)
            .collect()
    }

    /// Registers a done callback. When `done`, the callback is handed back
    /// for the caller to schedule at once.
    pub(crate) fn add_callback(
        &self,
        done: bool,
        f: DoneCallback,
    ) -> (DoneCallbackId, Option<DoneCallback>) {
        let key = self.next_key();
        if done {
            (DoneCallbackId(key), Some(f))
        } else {
            self.entries.borrow_mut().push(Slot {
                who: Who::Boxed(Box::new(Boxed::Callback(f))),
                key,
                kind: WaitKind::Future,
                notified: false,
            });
            (DoneCallbackId(key), None)
        }
    }

    /// Registers a [`Notify`] listener, told `index` when the list
    /// completes; removed like a done callback. The caller tells it at
    /// once instead when the owner is done already.
    pub(crate) fn add_notify(&self, to: Rc<dyn Notify>, index: usize) -> DoneCallbackId {
        let key = self.next_key();
        self.entries.borrow_mut().push(Slot {
            who: Who::Boxed(Box::new(Boxed::Notify { to, index })),
            key,
            kind: WaitKind::Future,
            notified: false,
        });
        DoneCallbackId(key)
    }

    /// Removes a done callback not yet scheduled; true if it was there.
    pub(crate) fn remove_callback(&self, id: DoneCallbackId) -> bool {
        let removed = self.entries.borrow_mut().remove(id.0);
        removed.is_some()
    }

    /// Takes every entry out and hands each to `f`, in registration order,
    /// with no borrow held (`f` wakes and schedules). A closure rather than
    /// an iterator: completing a future is the ping-pong benchmark's hot
    /// path, and for the usual single entry this compiles to one match.
    ///
    /// A task held by id goes to `task`, by value: built as an [`Entry`] and
    /// handed over by reference, it was stored narrow and loaded wide (a
    /// store forwarding stall, `perf annotate`). Anything else goes to
    /// `other`.
    #[inline]
    pub(crate) fn take_each(&self, mut task: impl FnMut(TaskId), mut other: impl FnMut(Entry)) {
        self.waiting.set(0);
        self.notified.set(0);
        let taken = std::mem::take(&mut *self.entries.borrow_mut());
        let mut each = |s: Slot| match s.who {
            Who::Task { id, .. } => task(id),
            _ => other(s.into_entry()),
        };
        match taken {
            Entries::Empty => {}
            Entries::One(s) => each(s),
            Entries::Many(v) => v.into_iter().for_each(each),
        }
    }
}

/// The waiter to record for `cx`: the task's id when the waker is a task
/// waker of `core` and the task's `id_waits` could be counted, else a clone
/// of the waker (counted by the waker vtable instead).
#[inline]
fn waiter_of(cx: &Context<'_>, core: Option<&LoopCore>) -> Waiter {
    if let Some(core) = core {
        if let Some(id) = current_waits_by_id(cx.waker(), core) {
            return Waiter::Task(id);
        }
        if let Some(id) = task_of_waker(cx.waker(), &core.remote) {
            if count_id_wait(core, id, true) {
                return Waiter::Task(id);
            }
        }
    }
    Waiter::Waker(Box::new(cx.waker().clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (c.clone(), Waker::from(c))
    }

    #[test]
    fn entries_stay_small() {
        assert_eq!(std::mem::size_of::<Slot>(), 24);
        assert!(std::mem::size_of::<WaitList>() <= 48);
    }

    #[test]
    fn notify_wakes_in_order_and_skips_the_notified() {
        let list = WaitList::default();
        let handle = 7u8;
        let site = WaitSite::new(WaitKind::QueueGet, &handle);
        let wakers: Vec<_> = (0..3).map(|_| waker()).collect();
        let keys: Vec<_> = wakers
            .iter()
            .map(|(_, w)| list.register(None, &Context::from_waker(w), None, site))
            .collect();
        assert!(list.notify_first(None));
        assert_eq!(wakers[0].0 .0.load(Ordering::SeqCst), 1);
        assert!(list.notify_first(None));
        assert_eq!(wakers[1].0 .0.load(Ordering::SeqCst), 1);
        assert_eq!(list.is_notified(keys[0]), Some(true));
        assert_eq!(list.is_notified(keys[2]), Some(false));
        // The first gives its wake-up back: the caller passes it on.
        assert_eq!(list.unregister(keys[0], None), Some(true));
        assert!(list.notify_first(None));
        assert_eq!(wakers[2].0 .0.load(Ordering::SeqCst), 1);
        assert!(!list.notify_first(None), "everyone left was notified");
        assert_eq!(list.waiters(), 2);
        assert!(!list.has_unnotified());
        assert_eq!(list.first_notified(), Some(true));
        let regs = list.registrations();
        assert_eq!(regs.len(), 2);
        assert_eq!(regs[0].site.handle, &handle as *const u8 as usize);
        assert_eq!(regs[0].site.kind.name(), "Queue.get");
    }

    #[test]
    fn a_re_poll_keeps_the_place_and_the_mark() {
        let list = WaitList::default();
        let site = WaitSite::new(WaitKind::LockAcquire, &0u8);
        let (_, w1) = waker();
        let (_, w2) = waker();
        let (c3, w3) = waker();
        let k1 = list.register(None, &Context::from_waker(&w1), None, site);
        let _k2 = list.register(None, &Context::from_waker(&w2), None, site);
        list.notify_first(None);
        // Re-polled with another waker: same place, still notified.
        assert_eq!(
            list.register(Some(k1), &Context::from_waker(&w3), None, site),
            k1
        );
        assert_eq!(list.is_notified(k1), Some(true));
        assert_eq!(list.notify(5, None), 1, "only the second was left");
        assert_eq!(c3.0.load(Ordering::SeqCst), 0, "the re-poll does not wake");
        assert_eq!(list.waiters(), 2);
    }
}
