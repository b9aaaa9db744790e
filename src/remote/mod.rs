//! The loop's thread-safe side: how other threads reach a loop.
//!
//! A loop is single-threaded and `!Send`, but work may come from anywhere:
//! a [`std::task::Waker`] is `Send + Sync`, and asyncio has
//! `call_soon_threadsafe`. `Remote` is the small `Send + Sync` part of a
//! loop that such work goes through — an injection queue plus the reactor's
//! [`mio::Waker`], the way libuv's `uv_async_send` works. asyncio's
//! counterpart appends to `_ready` and writes a byte to the loop's self-pipe.
//! [`LoopHandle`] is its public face; `run_coroutine_threadsafe` and its
//! `ConcurrentFuture` are in [`concurrent`].
//!
//! # Invariants
//!
//! - Wake-ups are coalesced: `notified` goes `false → true` once per batch,
//!   and only that transition writes to the reactor's eventfd. The loop sets
//!   it back to `false` *before* draining, so an item pushed during a drain
//!   either is drained now or sets the flag again (and wakes the reactor):
//!   nothing is ever left behind while the loop sleeps. The proof is one
//!   `SeqCst` order: a post claims its slot (a `SeqCst` compare-and-swap of
//!   the tail index) before it reads `notified`; a drain resets `notified`
//!   before it reads the tail. Either the drain sees the claim, or the post
//!   sees the reset flag and wakes the loop. A claimed slot whose message is
//!   not written yet stops the drain, which then sets `notified` again: the
//!   loop looks once more on its next iteration instead of sleeping. A
//!   drain that took something sets it again too, so a steady flood of
//!   posts costs no eventfd write at all: only an empty drain leaves the
//!   flag off (one more iteration, without sleeping, after each batch).
//! - Checking for injected work costs the loop one atomic load per
//!   iteration (and `call_soon` one more); no system call when nothing was
//!   injected.
//! - Nothing is lost silently: a post after `close()` is refused (`Event
//!   loop is closed`); a callback that was accepted but never runs — still
//!   queued at close, or posted in the instant `close()` ran (asyncio has
//!   the same race between `_check_closed` and the append) — reports itself
//!   when it is dropped (`batch::drop_call`). Closing marks the queue's
//!   tail; a post's claim is ordered before the mark (the closing drain
//!   waits for its write and takes it) or after (refused).
//! - One allocation at most per post: the queue's slot is the handle's
//!   shared state, so a post allocates only the boxed closure (nothing for
//!   a closure that captures nothing) and an amortized share of a block.
//!   The loop's side allocates one marker per drain, not per call: the
//!   calls run from their slots (`batch.rs`).
//! - Per-producer FIFO: the queue is one FIFO, drained in order.
//! - Memory follows the load: the queue's free blocks are kept for reuse
//!   while a burst lasts, trimmed to a small reserve when a drain finds
//!   the queue empty, and all freed at `close()`, even while other threads
//!   hold `LoopHandle`s (`queue.rs`, `Pool`).

use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::errors::LoopError;
use crate::event_loop::exceptions::default_exception_handler;
use crate::event_loop::ExceptionContext;
use crate::task_slab::TaskId;

mod batch;
pub mod concurrent;
mod queue;

pub(crate) use batch::{call_handle, RemoteBatch};
use queue::{CacheLine, HandleSlot, Message, Queue, Taken};

thread_local! {
    /// A per-thread address: two live threads never share it. Comparing it
    /// is how a waker tells "on the loop's thread" without asking the OS.
    static THREAD_MARK: u8 = const { 0 };
}

fn thread_mark() -> usize {
    THREAD_MARK.with(|m| m as *const u8 as usize)
}

/// One item of the injection queue, as the loop takes it.
pub(crate) enum Injected {
    /// A task's waker was woken off the loop's thread (or while it did not run).
    Wake(TaskId),
    /// Consecutive `call_soon_threadsafe` calls, still in the queue.
    Calls(RemoteBatch),
    /// `LoopHandle::stop`.
    Stop,
}

/// The `Send + Sync` part of a loop.
pub(crate) struct Remote {
    queue: Queue,
    /// Read by every post, written once per batch: kept off the lines the
    /// queue writes on every post.
    notified: CacheLine<AtomicBool>,
    reactor_wakes: AtomicU64,
    reactor_waker: Arc<mio::Waker>,
    owner_mark: usize,
    /// Batches drained and neither started nor dropped: each is one entry
    /// of the ready queue standing for [`waiting_calls`](Self::waiting_calls).
    waiting_batches: AtomicUsize,
}

impl Remote {
    /// Created on the loop's own thread.
    pub(crate) fn new(reactor_waker: Arc<mio::Waker>) -> Self {
        Remote {
            queue: Queue::new(),
            notified: CacheLine(AtomicBool::new(false)),
            reactor_wakes: AtomicU64::new(0),
            reactor_waker,
            owner_mark: thread_mark(),
            waiting_batches: AtomicUsize::new(0),
        }
    }

    /// True on the thread that created the loop.
    #[inline]
    pub(crate) fn on_loop_thread(&self) -> bool {
        thread_mark() == self.owner_mark
    }

    /// Queues a message from any thread and wakes the reactor if it is the
    /// first of a batch. Hands the message back if the loop is closed.
    #[inline]
    fn post(
        &self,
        site: &'static Location<'static>,
        message: Message,
    ) -> Result<Option<HandleSlot>, Message> {
        let handle = self.queue.push(site, message)?;
        // After the claim (module invariant). Load before swap: while a
        // batch is pending the flag is already set, and a plain load keeps
        // the cache line shared between producers instead of bouncing it
        // with a read-modify-write.
        if !self.notified.0.load(Ordering::SeqCst) && !self.notified.0.swap(true, Ordering::SeqCst)
        {
            self.reactor_wakes.fetch_add(1, Ordering::Relaxed);
            // A failed eventfd write leaves the flag set: the loop still
            // finds the work on its next iteration, it just may wake late.
            let _ = self.reactor_waker.wake();
        }
        Ok(handle)
    }

    /// Queues a task wake from any thread; a wake for a closed loop is
    /// dropped, as the task it names no longer exists.
    #[track_caller]
    pub(crate) fn wake_task(&self, id: TaskId) {
        let _ = self.post(Location::caller(), Message::Wake(id));
    }

    /// Cheap check: was anything injected since the last drain?
    #[inline]
    pub(crate) fn has_injected(&self) -> bool {
        self.notified.0.load(Ordering::Acquire)
    }

    /// Takes every injected item, in arrival order (FIFO per producer).
    /// `f` must not post or drain (it does not: it only queues work).
    #[cfg(test)]
    pub(crate) fn drain(self: &Arc<Self>, f: impl FnMut(Injected)) {
        self.drain_at_most(usize::MAX, f)
    }

    /// As [`drain`](Self::drain), but takes at most `limit` items; the
    /// rest stay queued, and `has_injected` stays true.
    pub(crate) fn drain_at_most(self: &Arc<Self>, limit: usize, mut f: impl FnMut(Injected)) {
        if !self.notified.0.swap(false, Ordering::SeqCst) {
            return;
        }
        let mut took = false;
        let done = self.queue.drain(limit, |t| {
            took = true;
            f(match t {
                Taken::Calls { end } => Injected::Calls(RemoteBatch::new(self.clone(), end)),
                Taken::Wake(id) => Injected::Wake(id),
                Taken::Stop => Injected::Stop,
            })
        });
        if !done || took {
            // Items left over, or a producer claimed a slot and is still
            // writing it: look again next iteration (that producer's own
            // check may have seen the flag set, so it will not wake the
            // reactor). After a drain that took something, too: posts
            // often come in floods, and while the flag stays set the
            // producers post without a system call; the loop turns it off
            // on the first drain that finds nothing.
            self.notified.0.store(true, Ordering::SeqCst);
        } else if self.queue.waiting_calls() > 0 {
            // Found nothing, but calls drained earlier wait in the ready
            // queue and hold their blocks: look again once they ran (the
            // next iteration, with work ready, does not sleep anyway).
            self.notified.0.store(true, Ordering::SeqCst);
        } else {
            // Found nothing and every call drained ran: the burst is over.
            // Give back what its peak left in the block pool.
            self.queue.trim_pool();
        }
    }

    /// `call_soon_threadsafe` calls drained and not yet run, and the ready
    /// queue entries (batches) that stand for them.
    pub(crate) fn drained_calls(&self) -> (usize, usize) {
        (
            self.queue.waiting_calls(),
            self.waiting_batches.load(Ordering::Relaxed),
        )
    }

    /// How many times posting has written to the reactor's eventfd: the
    /// coalescing at work (one per batch, not one per post).
    pub(crate) fn reactor_wakes(&self) -> u64 {
        self.reactor_wakes.load(Ordering::Relaxed)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Bytes of queue blocks pooled for reuse (see `queue.rs`, `Pool`).
    pub(crate) fn pooled_bytes(&self) -> usize {
        self.queue.pooled_blocks() * queue::BLOCK_BYTES
    }

    /// Refuses further posts and drops every call not run yet — drained
    /// or not (each pending one logs it; their destructors run here, so
    /// the caller holds no borrow, and a destructor's panic goes to
    /// `report`). Returns the wakes and stops still queued; the batches
    /// left in the ready queue then find nothing to do.
    pub(crate) fn close(&self, report: &mut dyn FnMut(ExceptionContext)) -> Vec<Injected> {
        let mut left = Vec::new();
        let end = self.queue.close(|t| match t {
            Taken::Calls { .. } => {}
            Taken::Wake(id) => left.push(Injected::Wake(id)),
            Taken::Stop => left.push(Injected::Stop),
        });
        self.notified.0.store(false, Ordering::SeqCst);
        self.queue.consume(end, queue::DROPPED, |call, pending| {
            batch::drop_call(call, pending, report)
        });
        left
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        // A loop normally closed it already; this reports what a loop that
        // never closed left behind (to the default handler: the loop is
        // gone), and lets the queue free its blocks.
        drop(self.close(&mut |c| default_exception_handler(&c)));
    }
}

/// What became of a thread-safe callback.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallStatus {
    /// Waiting to run.
    Pending,
    /// It ran (or started running: a panic is reported by the loop).
    Ran,
    /// Cancelled before it ran.
    Cancelled,
    /// The loop closed before it ran; the drop was logged.
    Dropped,
}

/// The handle of a `call_soon_threadsafe` callback: `Send + Sync`, and
/// cancellable from any thread.
///
/// A cancel that wins the race against the loop stops the callback from
/// running; its closure is then dropped on the loop's thread, when the loop
/// reaches it.
///
/// ```
/// use aioloop::{CallStatus, EventLoop};
///
/// let lp = EventLoop::with_virtual_clock().unwrap();
/// let h = lp.loop_handle().call_soon_threadsafe(|| unreachable!()).unwrap();
/// std::thread::spawn(move || assert!(h.cancel())).join().unwrap();
/// ```
#[derive(Clone)]
pub struct ThreadsafeHandle {
    slot: HandleSlot,
}

impl ThreadsafeHandle {
    /// Cancels the callback if it has not run yet; true if this call did.
    pub fn cancel(&self) -> bool {
        self.slot.transition(queue::CANCELLED)
    }

    /// True once cancelled.
    pub fn cancelled(&self) -> bool {
        self.status() == CallStatus::Cancelled
    }

    /// What became of the callback.
    pub fn status(&self) -> CallStatus {
        match self.slot.status() {
            queue::PENDING => CallStatus::Pending,
            queue::RAN => CallStatus::Ran,
            queue::CANCELLED => CallStatus::Cancelled,
            _ => CallStatus::Dropped,
        }
    }
}

impl fmt::Debug for ThreadsafeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "<ThreadsafeHandle {:?} at {}:{}>",
            self.status(),
            self.slot.site().file(),
            self.slot.site().line()
        )
    }
}

/// The thread-safe door into a loop: `Clone + Send + Sync`.
///
/// asyncio's only thread-safe entry points are `call_soon_threadsafe` and
/// `run_coroutine_threadsafe`; aioloop gathers them here, with `stop`.
/// Obtained from [`LoopRef::loop_handle`](crate::LoopRef::loop_handle).
///
/// ```
/// use aioloop::EventLoop;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use std::sync::Arc;
///
/// let lp = EventLoop::new().unwrap();
/// let door = lp.loop_handle();
/// let hits = Arc::new(AtomicU32::new(0));
/// let h = hits.clone();
/// let worker = std::thread::spawn(move || {
///     for _ in 0..10 {
///         let h = h.clone();
///         door.call_soon_threadsafe(move || { h.fetch_add(1, Ordering::Relaxed); }).unwrap();
///     }
///     door.stop().unwrap();
/// });
/// lp.run_forever().unwrap();
/// worker.join().unwrap();
/// assert_eq!(hits.load(Ordering::Relaxed), 10);
/// ```
#[derive(Clone)]
pub struct LoopHandle {
    remote: Arc<Remote>,
}

impl LoopHandle {
    pub(crate) fn new(remote: Arc<Remote>) -> Self {
        LoopHandle { remote }
    }

    /// Schedules `f` on the loop from any thread (asyncio's
    /// `call_soon_threadsafe`), waking the loop if it sleeps. It joins the
    /// same FIFO as `call_soon`: a post that happened before a `call_soon`
    /// on the loop's thread runs first.
    ///
    /// Fails with `Event loop is closed` once the loop is closed: the
    /// caller learns its callback will not run.
    #[track_caller]
    pub fn call_soon_threadsafe<F: FnOnce() + Send + 'static>(
        &self,
        f: F,
    ) -> Result<ThreadsafeHandle, LoopError> {
        match self
            .remote
            .post(Location::caller(), Message::Call(Box::new(f)))
        {
            Ok(Some(slot)) => Ok(ThreadsafeHandle { slot }),
            Ok(None) => unreachable!("a call gets a handle"),
            // Refused, not lost: the caller hears it; the closure is
            // dropped here, on its thread.
            Err(_) => Err(LoopError::Closed),
        }
    }

    /// Asks the loop to stop after its current iteration, from any thread
    /// (asyncio's `stop`, made thread-safe).
    #[track_caller]
    pub fn stop(&self) -> Result<(), LoopError> {
        self.remote
            .post(Location::caller(), Message::Stop)
            .map(drop)
            .map_err(|_| LoopError::Closed)
    }

    /// True once the loop is closed.
    pub fn is_closed(&self) -> bool {
        self.remote.is_closed()
    }

    /// How many times posts have woken the reactor: with coalescing, one
    /// per batch of posts that found the loop asleep, not one per post.
    pub fn reactor_wakes(&self) -> u64 {
        self.remote.reactor_wakes()
    }

    /// Bytes the injection queue keeps in its pool of free blocks: up to
    /// what a burst of posts needed while it lasts, at most
    /// [`INJECTION_POOL_RESERVE_BYTES`](Self::INJECTION_POOL_RESERVE_BYTES)
    /// once the loop has found the queue empty, and none once the loop is
    /// closed. For tests and benchmarks.
    #[doc(hidden)]
    pub fn injection_pool_bytes(&self) -> usize {
        self.remote.pooled_bytes()
    }

    /// What the pool keeps after a burst (see `injection_pool_bytes`).
    #[doc(hidden)]
    pub const INJECTION_POOL_RESERVE_BYTES: usize = queue::POOL_RESERVE * queue::BLOCK_BYTES;
}

impl fmt::Debug for LoopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<LoopHandle closed={}>", self.is_closed())
    }
}
