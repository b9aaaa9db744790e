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
//!   nothing is ever left behind while the loop sleeps.
//! - Checking for injected work costs the loop one atomic load per
//!   iteration (and `call_soon` one more); no system call when nothing was
//!   injected.
//! - Nothing is lost silently: a post after `close()` is refused (`Event
//!   loop is closed`); a callback that was accepted but never runs — still
//!   queued at close, or posted in the instant `close()` ran (asyncio has
//!   the same race between `_check_closed` and the append) — reports itself
//!   when it is dropped, wherever that happens (`RemoteCall`'s `Drop`).
//!   `close()` drains the queue and then drops the receiver: the channel
//!   disconnects, a send still in progress is discarded (so its callback
//!   reports itself at once) and later sends fail (so the poster hears
//!   `Event loop is closed`). Posting costs no read-modify-write beyond the
//!   channel's own, but for the first post of a batch (the `notified`
//!   flag).
//! - Per-producer FIFO: the queue is a FIFO channel, drained in order.

use std::fmt;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::errors::LoopError;
use crate::task_slab::TaskId;

pub mod concurrent;

thread_local! {
    /// A per-thread address: two live threads never share it. Comparing it
    /// is how a waker tells "on the loop's thread" without asking the OS.
    static THREAD_MARK: u8 = const { 0 };
}

fn thread_mark() -> usize {
    THREAD_MARK.with(|m| m as *const u8 as usize)
}

/// A thread-safe callback as it travels to the loop. Dropped without
/// having run or been cancelled, it marks itself `Dropped` and logs it.
pub(crate) struct RemoteCall {
    state: Arc<CallState>,
    f: Option<Box<dyn FnOnce() + Send>>,
}

impl RemoteCall {
    pub(crate) fn site(&self) -> &'static Location<'static> {
        self.state.site
    }

    /// Runs the callback, unless a cancel from another thread won the race.
    pub(crate) fn run(mut self) {
        if let Some(f) = self.f.take() {
            if self.state.transition(CallStatus::Ran) {
                f();
            }
        }
    }
}

impl Drop for RemoteCall {
    fn drop(&mut self) {
        if self.f.is_some() && self.state.transition(CallStatus::Dropped) {
            let site = self.state.site;
            log::warn!(
                target: "asyncio",
                "call_soon_threadsafe callback scheduled at {}:{} was dropped: \
                 the event loop closed before running it",
                site.file(),
                site.line()
            );
        }
    }
}

/// One item of the injection queue.
pub(crate) enum Injected {
    /// A task's waker was woken off the loop's thread (or while it did not run).
    Wake(TaskId),
    /// `call_soon_threadsafe`.
    Call(RemoteCall),
    /// `LoopHandle::stop`.
    Stop,
}

/// The `Send + Sync` part of a loop.
pub(crate) struct Remote {
    tx: Sender<Injected>,
    /// Taken by the loop's thread only (to drain), and dropped at close.
    rx: Mutex<Option<Receiver<Injected>>>,
    notified: AtomicBool,
    closed: AtomicBool,
    reactor_wakes: AtomicU64,
    reactor_waker: Arc<mio::Waker>,
    owner_mark: usize,
}

impl Remote {
    /// Created on the loop's own thread.
    pub(crate) fn new(reactor_waker: Arc<mio::Waker>) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        Remote {
            tx,
            rx: Mutex::new(Some(rx)),
            notified: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            reactor_wakes: AtomicU64::new(0),
            reactor_waker,
            owner_mark: thread_mark(),
        }
    }

    /// True on the thread that created the loop.
    #[inline]
    pub(crate) fn on_loop_thread(&self) -> bool {
        thread_mark() == self.owner_mark
    }

    /// Queues an item from any thread and wakes the reactor if it is the
    /// first of a batch. Hands the item back if the loop is closed.
    pub(crate) fn post(&self, item: Injected) -> Result<(), Injected> {
        if self.closed.load(Ordering::Acquire) {
            return Err(item);
        }
        self.tx.send(item).map_err(|e| e.into_inner())?;
        // Load before swap: while a batch is pending the flag is already
        // set, and a plain load keeps the cache line shared between
        // producers instead of bouncing it with a read-modify-write.
        if !self.notified.load(Ordering::Acquire) && !self.notified.swap(true, Ordering::AcqRel) {
            self.reactor_wakes.fetch_add(1, Ordering::Relaxed);
            // A failed eventfd write leaves the flag set: the loop still
            // finds the work on its next iteration, it just may wake late.
            let _ = self.reactor_waker.wake();
        }
        Ok(())
    }

    /// Queues a task wake from any thread; a wake for a closed loop is
    /// dropped, as the task it names no longer exists.
    pub(crate) fn wake_task(&self, id: TaskId) {
        let _ = self.post(Injected::Wake(id));
    }

    /// Cheap check: was anything injected since the last drain?
    #[inline]
    pub(crate) fn has_injected(&self) -> bool {
        self.notified.load(Ordering::Acquire)
    }

    /// Takes every injected item, in arrival order (FIFO per producer).
    /// `f` must not post or drain (it does not: it only queues work).
    pub(crate) fn drain(&self, mut f: impl FnMut(Injected)) {
        if !self.notified.swap(false, Ordering::AcqRel) {
            return;
        }
        let rx = self.rx.lock();
        if let Some(rx) = rx.as_ref() {
            while let Ok(item) = rx.try_recv() {
                f(item);
            }
        }
    }

    /// How many times posting has written to the reactor's eventfd: the
    /// coalescing at work (one per batch, not one per post).
    pub(crate) fn reactor_wakes(&self) -> u64 {
        self.reactor_wakes.load(Ordering::Relaxed)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Refuses further posts and returns what was still queued (each
    /// callback among them reports itself when dropped).
    pub(crate) fn close(&self) -> Vec<Injected> {
        self.closed.store(true, Ordering::SeqCst);
        self.notified.store(false, Ordering::SeqCst);
        let rx = self.rx.lock().take();
        let left: Vec<Injected> = rx
            .as_ref()
            .map(|rx| rx.try_iter().collect())
            .unwrap_or_default();
        // Disconnect: crossbeam discards (drops) a message whose send was in
        // progress, and fails every later send.
        drop(rx);
        left
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

/// The shared state of a [`ThreadsafeHandle`].
pub(crate) struct CallState {
    status: AtomicU8,
    site: &'static Location<'static>,
}

const PENDING: u8 = 0;
const RAN: u8 = 1;
const CANCELLED: u8 = 2;
const DROPPED: u8 = 3;

impl CallState {
    /// Pending → `to`; false if it had already left Pending.
    pub(crate) fn transition(&self, to: CallStatus) -> bool {
        let to = match to {
            CallStatus::Pending => PENDING,
            CallStatus::Ran => RAN,
            CallStatus::Cancelled => CANCELLED,
            CallStatus::Dropped => DROPPED,
        };
        self.status
            .compare_exchange(PENDING, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
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
    state: Arc<CallState>,
}

impl ThreadsafeHandle {
    /// Cancels the callback if it has not run yet; true if this call did.
    pub fn cancel(&self) -> bool {
        self.state.transition(CallStatus::Cancelled)
    }

    /// True once cancelled.
    pub fn cancelled(&self) -> bool {
        self.status() == CallStatus::Cancelled
    }

    /// What became of the callback.
    pub fn status(&self) -> CallStatus {
        match self.state.status.load(Ordering::Acquire) {
            PENDING => CallStatus::Pending,
            RAN => CallStatus::Ran,
            CANCELLED => CallStatus::Cancelled,
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
            self.state.site.file(),
            self.state.site.line()
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
        let state = Arc::new(CallState {
            status: AtomicU8::new(PENDING),
            site: Location::caller(),
        });
        let call = RemoteCall {
            state: state.clone(),
            f: Some(Box::new(f)),
        };
        match self.remote.post(Injected::Call(call)) {
            Ok(()) => Ok(ThreadsafeHandle { state }),
            Err(refused) => {
                // Refused, not lost: the caller hears it, so it is not
                // reported as dropped.
                if let Injected::Call(mut c) = refused {
                    c.f = None;
                    c.state.transition(CallStatus::Dropped);
                }
                Err(LoopError::Closed)
            }
        }
    }

    /// Asks the loop to stop after its current iteration, from any thread
    /// (asyncio's `stop`, made thread-safe).
    pub fn stop(&self) -> Result<(), LoopError> {
        self.remote
            .post(Injected::Stop)
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
}

impl fmt::Debug for LoopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<LoopHandle closed={}>", self.is_closed())
    }
}
