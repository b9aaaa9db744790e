//! The ready queue: callbacks that will run in the next run phase, in order.
//!
//! asyncio's `loop._ready` (a `collections.deque`), libuv's pending queue.
//! `call_soon` appends, I/O dispatch and due timers append, and the run phase
//! pops exactly as many entries as the queue held when the phase began.
//! `call_soon_threadsafe` callbacks join the same FIFO as they are drained
//! from the injection queue, as themselves ([`RemoteCall`]): wrapping each
//! in a local [`Handle`] would cost an allocation per cross-thread call.
//!
//! # Invariants
//!
//! - FIFO: entries run in the order they were pushed.
//! - No user code runs while the queue is borrowed: `push`/`pop` hold the
//!   borrow only for the deque operation itself, so a running callback can
//!   push freely.

use std::cell::RefCell;
use std::collections::VecDeque;

use super::handle::Handle;
use crate::remote::RemoteCall;

/// One entry of the ready queue.
pub(crate) enum Ready {
    /// A callback scheduled on the loop's thread (or a task step, an I/O
    /// callback, a due timer).
    Local(Handle),
    /// A `call_soon_threadsafe` callback, cancellable from any thread.
    Remote(RemoteCall),
}

/// Initial capacity: enough that a typical loop never regrows the deque,
/// small enough (6 KiB) not to matter for idle loops.
const INITIAL_CAPACITY: usize = 256;

pub(crate) struct ReadyQueue {
    queue: RefCell<VecDeque<Ready>>,
}

impl ReadyQueue {
    pub(crate) fn new() -> Self {
        ReadyQueue {
            queue: RefCell::new(VecDeque::with_capacity(INITIAL_CAPACITY)),
        }
    }

    #[inline]
    pub(crate) fn push(&self, h: Handle) {
        self.queue.borrow_mut().push_back(Ready::Local(h));
    }

    #[inline]
    pub(crate) fn push_remote(&self, call: RemoteCall) {
        self.queue.borrow_mut().push_back(Ready::Remote(call));
    }

    #[inline]
    pub(crate) fn pop(&self) -> Option<Ready> {
        self.queue.borrow_mut().pop_front()
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.queue.borrow().len()
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.borrow().is_empty()
    }

    /// Empties the queue, handing the entries to the caller so that their
    /// closures are dropped after the borrow is released.
    pub(crate) fn take_all(&self) -> VecDeque<Ready> {
        std::mem::take(&mut *self.queue.borrow_mut())
    }
}
