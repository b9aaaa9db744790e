//! Task storage with generation-checked ids, and aioloop's waker.
//!
//! Tasks live in a slab owned by their loop; everything outside the loop
//! names a task by [`TaskId`], an index plus a generation. A stale id — of
//! a task that finished, its slot since reused — simply finds nothing, so a
//! waker that outlives its task is harmless (tokio's task ids and
//! async-task's "closed" state answer the same need).
//!
//! The waker is built from aioloop's own [`RawWakerVTable`]s. Each task
//! embeds a [`WakerSource`]: its id, the loop's [`Remote`], and a cached
//! `Arc<WakerData>`. The waker handed to `poll` in the `Context` is
//! *borrowed*: it points at the `WakerSource` and owns nothing, so a poll
//! costs no allocation and no atomic operation. Only when someone clones it
//! (a timer, a foreign future, another thread) is the shared
//! `Arc<WakerData>` created, once per task, and cloned. Most tasks — those
//! that wait only on aioloop primitives, which keep the task id — never
//! allocate it. `std::task::Waker` is `Send + Sync`, so a wake can come from
//! any thread:
//!
//! - on the loop's thread, while that loop runs, the wake goes straight to
//!   the loop's scheduler (no atomic operation beyond the thread check);
//! - anywhere else, it goes through the loop's injection queue and wakes
//!   the reactor ([`Remote::wake_task`]).
//!
//! Because the vtable is ours, a primitive can recognise an aioloop waker
//! ([`task_of_waker`]) and keep the task id instead of a waker clone.
//!
//! # Invariants
//!
//! - A slot's generation changes every time it is freed, so a `TaskId` is
//!   never reused for another task (until 2^32 reuses of one slot).
//! - `live_wakers() = Arc::strong_count(cached) - 1`: the task keeps one
//!   reference, every owned `Waker` in the wild one more. The diagnostics
//!   use it to prove that nothing can wake a task. (A borrowed waker cloned
//!   from another thread during a poll gets a fresh, uncached `Arc`, which
//!   this count does not see; the diagnostics treat such a task as alive
//!   only through what they can see, so they do not run while a task polls.)
//! - A borrowed waker lives only inside the `Context` of one poll of its
//!   task, so the `WakerSource` it points to is alive whenever it is used.
//!   Off the loop's thread it reads only the fields that never change after
//!   the task is created (`id`, `remote`), so a scoped thread using
//!   `cx.waker()` during the poll races with nothing.
//! - The scheduler installed in [`CURRENT_SCHEDULER`] belongs to the loop
//!   running on this thread; a wake for another loop takes the remote path.

use std::cell::{Cell, RefCell};
use std::mem::ManuallyDrop;
use std::num::NonZeroU32;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{RawWaker, RawWakerVTable, Waker};

use crate::remote::Remote;

/// A task's name in its loop: slab index and generation.
///
/// The generation is never zero: that niche lets a waiter entry holding a
/// `TaskId` and a handle address share 16 bytes with its boxed variant (see
/// `waiters.rs`), which keeps every task header and waiter list small.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TaskId {
    index: u32,
    generation: NonZeroU32,
}

/// The generation after `g`, skipping zero when it wraps.
fn next_generation(g: NonZeroU32) -> NonZeroU32 {
    g.checked_add(1).unwrap_or(NonZeroU32::MIN)
}

/// The loop's tasks, by id. Generic so that it knows nothing of the loop.
/// Generations and values are two vectors, not one of pairs: a pair of a
/// `u32` and a fat pointer would be padded to 24 bytes per task.
pub(crate) struct TaskSlab<T> {
    generations: Vec<NonZeroU32>,
    values: Vec<Option<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> TaskSlab<T> {
    pub(crate) fn new() -> Self {
        TaskSlab {
            generations: Vec::new(),
            values: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// Stores `make(id)` under a fresh id.
    pub(crate) fn insert_with(&mut self, make: impl FnOnce(TaskId) -> T) -> TaskId {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.generations.push(NonZeroU32::MIN);
                self.values.push(None);
                (self.values.len() - 1) as u32
            }
        };
        let id = TaskId {
            index,
            generation: self.generations[index as usize],
        };
        self.values[index as usize] = Some(make(id));
        self.len += 1;
        id
    }

    #[inline]
    pub(crate) fn get(&self, id: TaskId) -> Option<&T> {
        let i = id.index as usize;
        if *self.generations.get(i)? != id.generation {
            return None;
        }
        self.values[i].as_ref()
    }

    pub(crate) fn remove(&mut self, id: TaskId) -> Option<T> {
        let i = id.index as usize;
        if *self.generations.get(i)? != id.generation {
            return None;
        }
        let value = self.values[i].take()?;
        self.generations[i] = next_generation(id.generation);
        self.free.push(id.index);
        self.len -= 1;
        Some(value)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.values.iter().flatten()
    }

    /// Empties the slab, handing back the values (the loop is closing).
    pub(crate) fn take_all(&mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len);
        for (i, value) in self.values.iter_mut().enumerate() {
            if let Some(v) = value.take() {
                self.generations[i] = next_generation(self.generations[i]);
                self.free.push(i as u32);
                out.push(v);
            }
        }
        self.len = 0;
        out
    }
}

/// Where a wake on the loop's own thread goes: implemented by the loop.
pub(crate) trait LocalScheduler {
    /// The remote side of this loop, to tell whether a waker belongs to it.
    fn remote(&self) -> &Arc<Remote>;
    /// Schedules the task (at most once until it runs).
    fn schedule(&self, id: TaskId);
}

thread_local! {
    /// The scheduler of the loop running on this thread, if any.
    pub(crate) static CURRENT_SCHEDULER: RefCell<Option<Rc<dyn LocalScheduler>>> =
        const { RefCell::new(None) };
}

/// Schedules task `id` of the loop behind `remote`, from any thread.
fn wake_task(id: TaskId, remote: &Arc<Remote>) {
    if remote.on_loop_thread() {
        let done = CURRENT_SCHEDULER.with(|s| match s.try_borrow() {
            Ok(s) => match s.as_ref() {
                Some(s) if Arc::ptr_eq(s.remote(), remote) => {
                    s.schedule(id);
                    true
                }
                _ => false,
            },
            Err(_) => false,
        });
        if done {
            return;
        }
    }
    // Another thread, or the loop is not running now: the wake waits in
    // the injection queue and the next iteration schedules it.
    remote.wake_task(id);
}

/// What an owned aioloop waker points to.
pub(crate) struct WakerData {
    id: TaskId,
    remote: Arc<Remote>,
}

/// The waker side of a task, embedded in the task (see the module docs).
pub(crate) struct WakerSource {
    id: TaskId,
    remote: Arc<Remote>,
    shared: Cell<Option<Arc<WakerData>>>,
}

impl WakerSource {
    /// The task's id.
    pub(crate) fn id(&self) -> TaskId {
        self.id
    }

    pub(crate) fn new(id: TaskId, remote: Arc<Remote>) -> Self {
        WakerSource {
            id,
            remote,
            shared: Cell::new(None),
        }
    }

    /// The borrowed waker for one poll: no allocation, no reference count.
    pub(crate) fn borrowed(&self) -> ManuallyDrop<Waker> {
        let raw = RawWaker::new(self as *const WakerSource as *const (), &BORROWED);
        // SAFETY: BORROWED's functions read a live `WakerSource` through
        // this pointer; the waker is only lent to one poll of the task that
        // embeds `self` (the borrow of `self` outlives it), and it is never
        // dropped (ManuallyDrop), which BORROWED's drop would ignore anyway.
        ManuallyDrop::new(unsafe { Waker::from_raw(raw) })
    }

    /// Number of owned `Waker`s of this task alive anywhere.
    pub(crate) fn live_wakers(&self) -> usize {
        let arc = self.shared.take();
        let n = arc.as_ref().map_or(0, |a| Arc::strong_count(a) - 1);
        self.shared.set(arc);
        n
    }

    /// The shared `Arc`, created on first use. Loop thread only.
    fn shared(&self) -> Arc<WakerData> {
        let arc = self.shared.take().unwrap_or_else(|| {
            Arc::new(WakerData {
                id: self.id,
                remote: self.remote.clone(),
            })
        });
        self.shared.set(Some(arc.clone()));
        arc
    }
}

static OWNED: RawWakerVTable =
    RawWakerVTable::new(owned_clone, owned_wake, owned_wake_by_ref, owned_drop);
static BORROWED: RawWakerVTable = RawWakerVTable::new(
    borrowed_clone,
    borrowed_wake,
    borrowed_wake_by_ref,
    borrowed_drop,
);

// OWNED: `data` is `Arc::into_raw` of an `Arc<WakerData>` of which the waker
// owns one strong reference.

unsafe fn owned_clone(data: *const ()) -> RawWaker {
    // SAFETY: the waker being cloned owns a reference, so the Arc is alive;
    // incrementing its count gives the new waker its own.
    unsafe { Arc::increment_strong_count(data as *const WakerData) };
    RawWaker::new(data, &OWNED)
}

unsafe fn owned_wake(data: *const ()) {
    // SAFETY: `wake` consumes the waker: take over its reference, drop it after.
    let arc = unsafe { Arc::from_raw(data as *const WakerData) };
    wake_task(arc.id, &arc.remote);
}

unsafe fn owned_wake_by_ref(data: *const ()) {
    // SAFETY: the waker, and so the Arc, is alive for this call.
    let d = unsafe { &*(data as *const WakerData) };
    wake_task(d.id, &d.remote);
}

unsafe fn owned_drop(data: *const ()) {
    // SAFETY: the waker being dropped owns one reference; release it.
    drop(unsafe { Arc::from_raw(data as *const WakerData) });
}

// BORROWED: `data` points to a live `WakerSource` (see `borrowed`). Off the
// loop thread only its immutable `id` and `remote` are read.

unsafe fn borrowed_clone(data: *const ()) -> RawWaker {
    let src = data as *const WakerSource;
    // SAFETY: `src` is alive (module invariant); `remote` never changes.
    let remote = unsafe { &(*src).remote };
    let arc = if remote.on_loop_thread() {
        // SAFETY: on the loop thread the `Cell` is only touched by this
        // thread, and `src` is alive.
        unsafe { (*src).shared() }
    } else {
        // SAFETY: as above; `id` never changes.
        let id = unsafe { (*src).id };
        Arc::new(WakerData {
            id,
            remote: remote.clone(),
        })
    };
    RawWaker::new(Arc::into_raw(arc) as *const (), &OWNED)
}

unsafe fn borrowed_wake(data: *const ()) {
    // SAFETY: same contract as `borrowed_wake_by_ref`.
    unsafe { borrowed_wake_by_ref(data) }
}

unsafe fn borrowed_wake_by_ref(data: *const ()) {
    let src = data as *const WakerSource;
    // SAFETY: `src` is alive; `id` and `remote` never change after creation.
    let (id, remote) = unsafe { ((*src).id, &(*src).remote) };
    wake_task(id, remote);
}

unsafe fn borrowed_drop(_: *const ()) {}

/// True if `waker` is the borrowed waker of `src` (a task's own waker, as
/// lent to its poll): two pointer comparisons.
#[inline]
pub(crate) fn is_borrowed_waker_of(waker: &Waker, src: &WakerSource) -> bool {
    std::ptr::eq(waker.vtable(), &BORROWED)
        && std::ptr::eq(waker.data(), src as *const WakerSource as *const ())
}

/// The task behind `waker` if it is an aioloop task waker (owned or
/// borrowed) of the loop whose remote is `remote`.
pub(crate) fn task_of_waker(waker: &Waker, remote: &Arc<Remote>) -> Option<TaskId> {
    let vtable = waker.vtable();
    let (id, its_remote) = if std::ptr::eq(vtable, &OWNED) {
        // SAFETY: our OWNED vtable: the data is a live `WakerData`, kept
        // alive by `waker` for this borrow.
        let d = unsafe { &*(waker.data() as *const WakerData) };
        (d.id, &d.remote)
    } else if std::ptr::eq(vtable, &BORROWED) {
        let src = waker.data() as *const WakerSource;
        // SAFETY: our BORROWED vtable: a live `WakerSource`, of which only
        // the immutable fields are read.
        unsafe { ((*src).id, &(*src).remote) }
    } else {
        return None;
    };
    Arc::ptr_eq(its_remote, remote).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_ids_find_nothing_after_reuse() {
        let mut slab = TaskSlab::new();
        let a = slab.insert_with(|_| "a");
        assert_eq!(slab.remove(a), Some("a"));
        let b = slab.insert_with(|_| "b");
        assert_eq!(slab.get(a), None, "a's slot was reused by b");
        assert_eq!(slab.get(b), Some(&"b"));
        assert_eq!(slab.remove(a), None);
        assert_eq!(slab.values().count(), 1);
        assert_eq!(slab.take_all(), vec!["b"]);
        assert_eq!(slab.get(b), None);
    }

    fn source() -> WakerSource {
        let poll = mio::Poll::new().unwrap();
        let w = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let id = TaskId {
            index: 3,
            generation: NonZeroU32::MIN,
        };
        WakerSource::new(id, Arc::new(Remote::new(w)))
    }

    #[test]
    fn clones_and_drops_are_counted_and_the_arc_is_made_once() {
        let s = source();
        assert_eq!(s.live_wakers(), 0);
        let borrowed = s.borrowed();
        assert_eq!(s.live_wakers(), 0, "a borrowed waker owns no reference");
        let w1 = (*borrowed).clone();
        let w2 = w1.clone();
        let w3 = (*borrowed).clone();
        assert_eq!(s.live_wakers(), 3);
        assert!(w1.will_wake(&w3), "one shared Arc per task");
        drop(w1);
        assert_eq!(s.live_wakers(), 2);
        w2.wake(); // consumes its reference
        drop(w3);
        assert_eq!(s.live_wakers(), 0);
    }

    #[test]
    fn wakes_from_other_threads_reach_the_injection_queue() {
        let s = source();
        let wakers: Vec<Waker> = (0..8).map(|_| (*s.borrowed()).clone()).collect();
        let handles: Vec<_> = wakers
            .into_iter()
            .map(|w| std::thread::spawn(move || w.wake()))
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        // A borrowed waker used from a scoped thread during "the poll".
        let borrowed = s.borrowed();
        std::thread::scope(|sc| {
            sc.spawn(|| borrowed.wake_by_ref());
            sc.spawn(|| drop((*borrowed).clone()));
        });
        let mut got = Vec::new();
        s.remote.drain(|item| {
            if let crate::remote::Injected::Wake(id) = item {
                got.push(id)
            }
        });
        assert_eq!(got.len(), 9);
        assert!(got.iter().all(|id| *id == s.id));
        assert_eq!(s.live_wakers(), 0);
    }

    #[test]
    fn task_of_waker_recognises_only_our_wakers_of_this_loop() {
        let s = source();
        let b = s.borrowed();
        assert_eq!(task_of_waker(&b, &s.remote), Some(s.id));
        let w = (*b).clone();
        assert_eq!(task_of_waker(&w, &s.remote), Some(s.id));
        let other = source();
        assert_eq!(task_of_waker(&w, &other.remote), None);
        assert_eq!(task_of_waker(Waker::noop(), &s.remote), None);
    }
}
