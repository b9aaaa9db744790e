//! The ready queue: callbacks that will run in the next run phase, in order.
//!
//! asyncio's `loop._ready` (a `collections.deque`), libuv's pending queue.
//! `call_soon` appends, I/O dispatch and due timers append, and the run phase
//! pops exactly as many entries as the queue held when the phase began.
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

/// Initial capacity: enough that a typical loop never regrows the deque,
/// small enough (4 KiB of fat pointers) not to matter for idle loops.
const INITIAL_CAPACITY: usize = 256;

pub(crate) struct ReadyQueue {
    queue: RefCell<VecDeque<Handle>>,
}

impl ReadyQueue {
    pub(crate) fn new() -> Self {
        ReadyQueue {
            queue: RefCell::new(VecDeque::with_capacity(INITIAL_CAPACITY)),
        }
    }

    #[inline(always)]
    pub(crate) fn push(&self, h: Handle) {
        self.queue.borrow_mut().push_back(h);
    }

    #[inline]
    pub(crate) fn pop(&self) -> Option<Handle> {
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
    pub(crate) fn take_all(&self) -> VecDeque<Handle> {
        std::mem::take(&mut *self.queue.borrow_mut())
    }
}
