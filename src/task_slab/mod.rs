//! Task storage with generation-checked ids, and aioloop's waker.
//!
//! Tasks live in a slab owned by their loop; everything outside the loop
//! names a task by [`TaskId`], an index plus a generation. A stale id — of
//! a task that finished, its slot since reused — simply finds nothing, so a
//! waker that outlives its task is harmless (tokio's task ids and
//! async-task's "closed" state answer the same need).
//!
//! The waker is built from aioloop's own [`RawWakerVTable`]. Its data is an
//! `Arc<WakerData>` per task: the task's id and the loop's [`Remote`].
//! `std::task::Waker` is `Send + Sync`, so a wake can come from any thread:
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
//! - `live_wakers(data) = Arc::strong_count(data) - 1`: the task keeps one
//!   reference, every `Waker` clone in the wild one more. The diagnostics
//!   use it to prove that nothing can wake a task.
//! - The scheduler installed in [`CURRENT_SCHEDULER`] belongs to the loop
//!   running on this thread; a wake for another loop takes the remote path.

use std::cell::RefCell;
use std::mem::ManuallyDrop;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{RawWaker, RawWakerVTable, Waker};

use crate::remote::Remote;

/// A task's name in its loop: slab index and generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TaskId {
    index: u32,
    generation: u32,
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// The loop's tasks, by id. Generic so that it knows nothing of the loop.
pub(crate) struct TaskSlab<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> TaskSlab<T> {
    pub(crate) fn new() -> Self {
        TaskSlab {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }

    /// Stores `make(id)` under a fresh id.
    pub(crate) fn insert_with(&mut self, make: impl FnOnce(TaskId) -> T) -> TaskId {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    value: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let slot = &mut self.slots[index as usize];
        let id = TaskId {
            index,
            generation: slot.generation,
        };
        slot.value = Some(make(id));
        self.len += 1;
        id
    }

    #[inline]
    pub(crate) fn get(&self, id: TaskId) -> Option<&T> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.value.as_ref()
    }

    pub(crate) fn remove(&mut self, id: TaskId) -> Option<T> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let value = slot.value.take()?;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        self.len -= 1;
        Some(value)
    }

    pub(crate) fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().filter_map(|s| s.value.as_ref())
    }

    /// Empties the slab, handing back the values (the loop is closing).
    pub(crate) fn take_all(&mut self) -> Vec<T> {
        let mut out = Vec::with_capacity(self.len);
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(v) = slot.value.take() {
                slot.generation = slot.generation.wrapping_add(1);
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

/// What an aioloop waker points to.
pub(crate) struct WakerData {
    pub(crate) id: TaskId,
    pub(crate) remote: Arc<Remote>,
}

impl WakerData {
    fn wake(&self) {
        if self.remote.on_loop_thread() {
            let done = CURRENT_SCHEDULER.with(|s| match s.try_borrow() {
                Ok(s) => match s.as_ref() {
                    Some(s) if Arc::ptr_eq(s.remote(), &self.remote) => {
                        s.schedule(self.id);
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
        self.remote.wake_task(self.id);
    }
}

/// Number of `Waker`s of this task alive anywhere (the task's own
/// reference excluded).
pub(crate) fn live_wakers(data: &Arc<WakerData>) -> usize {
    Arc::strong_count(data) - 1
}

static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_raw, wake_raw, wake_by_ref_raw, drop_raw);

// The four functions below receive the pointer that `waker_for` or
// `clone_raw` put in a RawWaker: always `Arc::into_raw`/`Arc::as_ptr` of an
// `Arc<WakerData>` that the waker owns one strong reference to (the borrowed
// waker of `waker_for` is never dropped, so it owns none and needs none).

unsafe fn clone_raw(data: *const ()) -> RawWaker {
    // SAFETY: `data` comes from an `Arc<WakerData>` that is alive (the
    // waker being cloned keeps it alive, or the task does for a borrowed
    // one); incrementing its count gives the new waker its own reference.
    unsafe { Arc::increment_strong_count(data as *const WakerData) };
    RawWaker::new(data, &VTABLE)
}

unsafe fn wake_raw(data: *const ()) {
    // SAFETY: `wake` consumes the waker: we take over the reference it owns
    // and drop it when done.
    let arc = unsafe { Arc::from_raw(data as *const WakerData) };
    arc.wake();
}

unsafe fn wake_by_ref_raw(data: *const ()) {
    // SAFETY: the waker is alive for this call, and with it the Arc.
    let d = unsafe { &*(data as *const WakerData) };
    d.wake();
}

unsafe fn drop_raw(data: *const ()) {
    // SAFETY: the waker being dropped owns one reference; release it.
    drop(unsafe { Arc::from_raw(data as *const WakerData) });
}

/// A waker for the task that `data` describes, borrowed: it shares `data`'s
/// reference instead of taking its own, so making one per poll costs nothing.
/// It must not outlive `data`, which `ManuallyDrop` and the borrow ensure.
pub(crate) fn waker_for(data: &Arc<WakerData>) -> ManuallyDrop<Waker> {
    let raw = RawWaker::new(Arc::as_ptr(data) as *const (), &VTABLE);
    // SAFETY: the vtable's contract holds for this pointer (see above); the
    // result is never dropped (ManuallyDrop), so it never releases a
    // reference it does not own; clones made from it take their own.
    ManuallyDrop::new(unsafe { Waker::from_raw(raw) })
}

/// The task behind `waker` if it is an aioloop task waker of the loop whose
/// remote is `remote`.
pub(crate) fn task_of_waker(waker: &Waker, remote: &Arc<Remote>) -> Option<TaskId> {
    if !std::ptr::eq(waker.vtable(), &VTABLE) {
        return None;
    }
    // SAFETY: the vtable is ours, so the data pointer is an alive
    // `WakerData` (kept alive by `waker` itself for this borrow).
    let d = unsafe { &*(waker.data() as *const WakerData) };
    Arc::ptr_eq(&d.remote, remote).then_some(d.id)
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

    fn data() -> Arc<WakerData> {
        let poll = mio::Poll::new().unwrap();
        let w = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        Arc::new(WakerData {
            id: TaskId {
                index: 3,
                generation: 1,
            },
            remote: Arc::new(Remote::new(w)),
        })
    }

    #[test]
    fn clones_and_drops_are_counted() {
        let d = data();
        assert_eq!(live_wakers(&d), 0);
        let borrowed = waker_for(&d);
        assert_eq!(live_wakers(&d), 0, "a borrowed waker owns no reference");
        let w1 = (*borrowed).clone();
        let w2 = w1.clone();
        assert_eq!(live_wakers(&d), 2);
        drop(w1);
        assert_eq!(live_wakers(&d), 1);
        w2.wake(); // consumes its reference
        assert_eq!(live_wakers(&d), 0);
    }

    #[test]
    fn wakes_from_other_threads_reach_the_injection_queue() {
        let d = data();
        let wakers: Vec<Waker> = (0..8).map(|_| (*waker_for(&d)).clone()).collect();
        let handles: Vec<_> = wakers
            .into_iter()
            .map(|w| std::thread::spawn(move || w.wake()))
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let mut got = Vec::new();
        d.remote.drain_wakes(|id| got.push(id));
        assert_eq!(got.len(), 8);
        assert!(got.iter().all(|id| *id == d.id));
        assert_eq!(live_wakers(&d), 0);
    }

    #[test]
    fn task_of_waker_recognises_only_our_wakers_of_this_loop() {
        let d = data();
        let w = (*waker_for(&d)).clone();
        assert_eq!(task_of_waker(&w, &d.remote), Some(d.id));
        let other = data();
        assert_eq!(task_of_waker(&w, &other.remote), None);
        assert_eq!(task_of_waker(Waker::noop(), &d.remote), None);
    }
}
