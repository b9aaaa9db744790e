//! The loop's thread-safe side: how other threads reach a loop.
//!
//! A loop is single-threaded and `!Send`, but a [`std::task::Waker`] is
//! `Send + Sync`: a task's waker may be woken from any thread. `Remote` is
//! the small `Send + Sync` part of a loop that such a wake goes through — an
//! injection queue plus the reactor's [`mio::Waker`], the way libuv's
//! `uv_async_send` works. asyncio's counterpart is `call_soon_threadsafe`,
//! which appends to `_ready` and writes a byte to the loop's self-pipe.
//!
//! # Invariants
//!
//! - Wake-ups are coalesced: `notified` goes `false → true` once per batch,
//!   and only that transition writes to the reactor's eventfd. The loop sets
//!   it back to `false` *before* draining, so an item pushed during a drain
//!   either is drained now or sets the flag again (and wakes the reactor):
//!   nothing is ever left behind while the loop sleeps.
//! - Checking for injected work costs the loop one relaxed atomic load per
//!   iteration; no system call when nothing was injected.
//! - After the loop closes, pushes are refused (and dropped by the caller's
//!   side: a wake of a task that no longer exists is a no-op).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::task_slab::TaskId;

thread_local! {
    /// A per-thread address: two live threads never share it. Comparing it
    /// is how a waker tells "on the loop's thread" without asking the OS.
    static THREAD_MARK: u8 = const { 0 };
}

fn thread_mark() -> usize {
    THREAD_MARK.with(|m| m as *const u8 as usize)
}

/// The `Send + Sync` part of a loop.
pub(crate) struct Remote {
    wakes_tx: Sender<TaskId>,
    wakes_rx: Receiver<TaskId>,
    notified: AtomicBool,
    closed: AtomicBool,
    reactor_waker: Arc<mio::Waker>,
    owner_mark: usize,
}

impl Remote {
    /// Created on the loop's own thread.
    pub(crate) fn new(reactor_waker: Arc<mio::Waker>) -> Self {
        let (wakes_tx, wakes_rx) = crossbeam_channel::unbounded();
        Remote {
            wakes_tx,
            wakes_rx,
            notified: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            reactor_waker,
            owner_mark: thread_mark(),
        }
    }

    /// True on the thread that created the loop.
    #[inline]
    pub(crate) fn on_loop_thread(&self) -> bool {
        thread_mark() == self.owner_mark
    }

    /// Queues a task wake from any thread, and wakes the reactor if this is
    /// the first item of a batch.
    pub(crate) fn wake_task(&self, id: TaskId) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        if self.wakes_tx.send(id).is_ok() {
            self.notify();
        }
    }

    fn notify(&self) {
        if !self.notified.swap(true, Ordering::AcqRel) {
            // A failed eventfd write leaves the flag set: the loop still
            // finds the work on its next iteration, it just may wake late.
            let _ = self.reactor_waker.wake();
        }
    }

    /// Cheap check, once per iteration: was anything injected?
    #[inline]
    pub(crate) fn has_injected(&self) -> bool {
        self.notified.load(Ordering::Acquire)
    }

    /// Takes every injected wake, in arrival order (FIFO per producer).
    pub(crate) fn drain_wakes(&self, mut f: impl FnMut(TaskId)) {
        if !self.notified.swap(false, Ordering::AcqRel) {
            return;
        }
        while let Ok(id) = self.wakes_rx.try_recv() {
            f(id);
        }
    }

    /// Refuses further pushes; drops what is queued.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        while self.wakes_rx.try_recv().is_ok() {}
    }
}
