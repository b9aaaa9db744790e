//! Queues for tasks of one loop: asyncio's `queues.py` (Python 3.13, with
//! `shutdown`).
//!
//! A [`Queue`] coordinates producer and consumer tasks: `put` waits while
//! the queue is full, `get` waits while it is empty, and `task_done` /
//! `join` let a producer wait until every item it put was processed.
//! [`LifoQueue`] and [`PriorityQueue`] are the same queue with another
//! [`Storage`] (asyncio's subclasses overriding `_init`, `_put`, `_get`).
//!
//! | asyncio | aioloop |
//! |---|---|
//! | `Queue(maxsize=0)`, `LifoQueue`, `PriorityQueue` | [`Queue::new`]`(maxsize)`, [`LifoQueue`], [`PriorityQueue`] (`0` = unbounded) |
//! | `await q.put(x)`, `q.put_nowait(x)` | `q.put(x).await`, [`Queue::put_nowait`]: a failure hands `x` back in a [`PutError`] |
//! | `await q.get()`, `q.get_nowait()` | `q.get().await`, [`Queue::get_nowait`] |
//! | `qsize()`, `empty()`, `full()`, `maxsize` | same names |
//! | `task_done()`, `await q.join()` | same names |
//! | `shutdown(immediate=False)` | [`Queue::shutdown`]`(immediate)`, which hands the discarded items back |
//! | `QueueEmpty`, `QueueFull`, `QueueShutDown`, `ValueError` | [`QueueError`], same names |
//! | `weakref.ref(q)` | [`Queue::downgrade`] → [`WeakQueue`], whose `upgrade()` gives the queue back while a handle lives |
//!
//! # How waiting works (asyncio's algorithm, kept step for step)
//!
//! asyncio does **not** hand an item to a waiting getter. `put_nowait`
//! stores the item and wakes the first getter still waiting
//! (`_wakeup_next`); the woken getter re-checks `while self.empty()` when
//! it runs, and takes whatever is at the head then. If another task took
//! the item in between (`get_nowait`, or a new `get` that found the queue
//! non-empty: asyncio lets it barge in), the woken getter waits again, at
//! the back. Putters mirror getters with `full()`; a successful get wakes
//! the first waiting putter.
//!
//! The waiters live in `WaitList`s (`src/waiters.rs`), one for getters,
//! one for putters, one for `join`. Where asyncio pops the woken waiter's
//! future off its deque, aioloop marks the registration *notified* and
//! leaves it in place until the awaitable runs; the effect is the same: the
//! next wake-up goes to the first waiter not yet notified.
//!
//! # Cancellation
//!
//! `get`, `put` and `join` are cancellation points: a pending cancel of the
//! current task ends them with `Err(Cancelled)` at their next poll. A getter
//! that was cancelled — or whose awaitable was dropped — after a put woke
//! it, passes the wake-up to the next getter if the queue is still
//! non-empty (asyncio: `if not self.empty() and not getter.cancelled():
//! self._wakeup_next(self._getters)`); a putter likewise if the queue is not
//! full. An item only leaves the queue when a get returns it, so a
//! cancelled get never swallows one, and a cancelled put hands its item
//! back.
//!
//! # Invariants
//!
//! - Items leave the storage only through a get that returns them, or
//!   through `shutdown(true)`, which returns them.
//! - Each stored item wakes at most one getter, each taken item at most one
//!   putter; a woken waiter that leaves without using its wake-up passes it
//!   on while the queue still has an item (a getter) or a free slot (a
//!   putter).
//! - A waiting awaitable has exactly one registration, in its list, and none
//!   once it completes or is dropped.
//! - `unfinished` counts the items put and not yet `task_done` (nor
//!   discarded by `shutdown(true)`); when it falls to zero every `join`
//!   waiter is notified, and a notified `join` returns even if items are put
//!   again before it runs (asyncio's `Event` semantics).
//! - Nothing is woken and no item is dropped while the storage is borrowed.
//!
//! A [`WeakQueue`] does not keep the queue alive, but to the stuck-task
//! check (`stuck.rs`) it is a way in while it lives: a task waiting on the
//! queue is not reported while any weak handle to it exists, and dropping
//! the last one makes the check look again.
//!
//! Like asyncio's, queues are for tasks of one loop and not thread-safe
//! (`!Send`). A queue binds to the loop of its first waiter, as the
//! primitives of [`crate::sync`] do.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use crate::debug::NeverAwaited;
use crate::errors::CancelledError;
use crate::sync::{fmt_weak, Binding};
use crate::tasks::take_cancel_request;
use crate::tasks::{set_fut_waiter, FutWaiter, WaitTarget};
use crate::waiters::{WaitKind, WaitList, WaitSite, WaiterKey};

mod error;
mod storage;

pub use error::{PutError, QueueError};
pub use storage::{Fifo, Lifo, Priority, Storage};

/// A last-in, first-out queue (asyncio's `LifoQueue`).
///
/// ```
/// use aioloop::queue::LifoQueue;
///
/// let q = LifoQueue::new(0);
/// for x in 1..=3 {
///     q.put_nowait(x).unwrap();
/// }
/// assert_eq!(q.get_nowait().unwrap(), 3);
/// assert_eq!(format!("{q:?}"), "<LifoQueue maxsize=0 qsize=2 tasks=3>");
/// ```
pub type LifoQueue<T> = Queue<T, Lifo<T>>;

/// A queue that serves the lowest item first (asyncio's `PriorityQueue`);
/// equal items in the order they were put (see [`Priority`]).
///
/// ```
/// use aioloop::queue::PriorityQueue;
///
/// let q = PriorityQueue::new(0);
/// q.put_nowait((5, "low")).unwrap();
/// q.put_nowait((1, "urgent")).unwrap();
/// assert_eq!(q.get_nowait().unwrap(), (1, "urgent"));
/// ```
pub type PriorityQueue<T> = Queue<T, Priority<T>>;

struct Inner<T, S> {
    items: RefCell<S>,
    /// 0: unbounded.
    maxsize: usize,
    /// Items put and not yet `task_done` (asyncio's `_unfinished_tasks`).
    unfinished: Cell<usize>,
    /// Set once by `shutdown` (asyncio's `_is_shutdown`).
    is_shutdown: Cell<bool>,
    getters: WaitList,
    putters: WaitList,
    /// `join()` waiters: asyncio's `_finished` event.
    joiners: WaitList,
    binding: Binding,
    _items: PhantomData<T>,
}

/// asyncio's `Queue`: a FIFO queue for producer and consumer tasks, bounded
/// by `maxsize` (0: unbounded). [`LifoQueue`] and [`PriorityQueue`] are the
/// same type with another [`Storage`].
///
/// A cheap handle: `Clone` shares the queue. Its awaitables borrow the
/// handle they were made from.
///
/// Without a type annotation, `Queue::new` cannot tell which storage is
/// meant: write `Queue::<T>::new(n)` or `let q: Queue<T> = Queue::new(n)`
/// (the default storage is [`Fifo`]).
///
/// ```
/// use aioloop::queue::{Queue, QueueError};
/// use aioloop::{create_task, EventLoop};
///
/// let lp = EventLoop::new().unwrap();
/// let total = lp.run_until_complete(async {
///     let q = Queue::<u64>::new(2);
///     let consumer = {
///         let q = q.clone();
///         create_task(async move {
///             let mut sum = 0;
///             loop {
///                 match q.get().await {
///                     Ok(x) => sum += x,
///                     Err(QueueError::ShutDown) => return Ok::<_, aioloop::Error>(sum),
///                     Err(e) => return Err(e.into()),
///                 }
///                 q.task_done()?;
///             }
///         })
///         .unwrap()
///     };
///     for x in 1..=10 {
///         q.put(x).await?; // waits while 2 items are queued
///     }
///     q.join().await?; // every item was processed
///     q.shutdown(false);
///     Ok::<_, aioloop::Error>(consumer.await.unwrap())
/// });
/// assert_eq!(total.unwrap(), 55);
/// ```
pub struct Queue<T, S = Fifo<T>> {
    inner: Rc<Inner<T, S>>,
}

impl<T, S> Clone for Queue<T, S> {
    /// Another handle to the same queue.
    fn clone(&self) -> Self {
        Queue {
            inner: self.inner.clone(),
        }
    }
}

impl<T, S: Storage<T>> Default for Queue<T, S> {
    /// An unbounded queue: `Queue::new(0)`.
    fn default() -> Self {
        Queue::new(0)
    }
}

impl<T, S: Storage<T>> Queue<T, S> {
    /// A new queue holding at most `maxsize` items; `0` means unbounded
    /// (asyncio also treats a negative `maxsize` so).
    ///
    /// ```
    /// use aioloop::queue::{LifoQueue, Queue};
    ///
    /// let fifo = Queue::<char>::new(10);
    /// let lifo: LifoQueue<char> = LifoQueue::new(0);
    /// assert_eq!((fifo.maxsize(), lifo.maxsize()), (10, 0));
    /// ```
    pub fn new(maxsize: usize) -> Self {
        Queue {
            inner: Rc::new(Inner {
                items: RefCell::new(S::default()),
                maxsize,
                unfinished: Cell::new(0),
                is_shutdown: Cell::new(false),
                getters: WaitList::default(),
                putters: WaitList::default(),
                joiners: WaitList::default(),
                binding: Binding::default(),
                _items: PhantomData,
            }),
        }
    }

    /// The number of items the queue holds at most; 0 if unbounded.
    ///
    /// ```
    /// use aioloop::queue::Queue;
    ///
    /// assert_eq!(Queue::<u8>::new(3).maxsize(), 3);
    /// ```
    pub fn maxsize(&self) -> usize {
        self.inner.maxsize
    }

    /// Number of items in the queue.
    ///
    /// ```
    /// use aioloop::queue::Queue;
    ///
    /// let q = Queue::<()>::new(0);
    /// q.put_nowait(()).unwrap();
    /// assert_eq!(q.qsize(), 1);
    /// ```
    pub fn qsize(&self) -> usize {
        self.inner.items.borrow().len()
    }

    /// True if the queue holds no item.
    ///
    /// ```
    /// use aioloop::queue::Queue;
    ///
    /// let q = Queue::<u8>::new(0);
    /// assert!(q.empty());
    /// ```
    pub fn empty(&self) -> bool {
        self.inner.items.borrow().is_empty()
    }

    /// True if the queue holds `maxsize` items; never for an unbounded
    /// queue.
    ///
    /// ```
    /// use aioloop::queue::Queue;
    ///
    /// let q = Queue::<i32>::new(1);
    /// assert!(!q.full());
    /// q.put_nowait(1).unwrap();
    /// assert!(q.full());
    /// ```
    pub fn full(&self) -> bool {
        self.inner.maxsize > 0 && self.qsize() >= self.inner.maxsize
    }

    /// Puts an item, waiting while the queue is full (asyncio's `put`); a
    /// cancellation point.
    ///
    /// Fails with [`QueueError::ShutDown`] once the queue is shut down
    /// (including while it waits), or [`QueueError::Cancelled`]; either way
    /// the [`PutError`] gives the item back.
    ///
    /// ```
    /// use aioloop::queue::Queue;
    /// use aioloop::{create_task, EventLoop};
    ///
    /// let lp = EventLoop::new().unwrap();
    /// let got = lp.run_until_complete(async {
    ///     let q = Queue::<&str>::new(1);
    ///     q.put("a").await.unwrap();
    ///     let second = {
    ///         let q = q.clone();
    ///         create_task(async move { Ok(q.put("b").await?) }).unwrap()
    ///     };
    ///     let first = q.get().await.unwrap(); // frees the slot "b" waits for
    ///     second.await.unwrap();
    ///     (first, q.get_nowait().unwrap())
    /// });
    /// assert_eq!(got.unwrap(), ("a", "b"));
    /// ```
    #[track_caller]
    pub fn put(&self, item: T) -> QueuePut<'_, T, S> {
        QueuePut {
            queue: self,
            item: Some(item),
            key: None,
            created: NeverAwaited::new(),
        }
    }

    /// Puts an item if there is room (asyncio's `put_nowait`) and wakes the
    /// first waiting getter; `QueueFull`, or `QueueShutDown` after
    /// [`shutdown`](Queue::shutdown), hand the item back.
    ///
    /// ```
    /// use aioloop::queue::{Queue, QueueError};
    ///
    /// let q = Queue::<i32>::new(1);
    /// q.put_nowait(1).unwrap();
    /// let err = q.put_nowait(2).unwrap_err();
    /// assert_eq!(err.into_parts(), (QueueError::Full, 2));
    /// ```
    pub fn put_nowait(&self, item: T) -> Result<(), PutError<T>> {
        let inner = &*self.inner;
        if inner.is_shutdown.get() {
            return Err(PutError::new(QueueError::ShutDown, item));
        }
        if self.full() {
            return Err(PutError::new(QueueError::Full, item));
        }
        inner.items.borrow_mut().push(item);
        inner.unfinished.set(inner.unfinished.get() + 1);
        self.wakeup_next(&inner.getters);
        Ok(())
    }

    /// Takes the next item, waiting while the queue is empty (asyncio's
    /// `get`); a cancellation point.
    ///
    /// Fails with [`QueueError::ShutDown`] once the queue is shut down and
    /// empty (including while it waits), or [`QueueError::Cancelled`]. A
    /// failed get takes no item.
    ///
    /// ```
    /// use aioloop::queue::Queue;
    /// use aioloop::{create_task, EventLoop};
    ///
    /// let lp = EventLoop::new().unwrap();
    /// let got = lp.run_until_complete(async {
    ///     let q = Queue::<i32>::new(0);
    ///     let getter = {
    ///         let q = q.clone();
    ///         create_task(async move { Ok(q.get().await?) }).unwrap()
    ///     };
    ///     aioloop::sleep(std::time::Duration::ZERO).await.unwrap(); // it waits
    ///     q.put_nowait(42).unwrap();
    ///     getter.await.unwrap()
    /// });
    /// assert_eq!(got.unwrap(), 42);
    /// ```
    #[track_caller]
    pub fn get(&self) -> QueueGet<'_, T, S> {
        QueueGet {
            queue: self,
            key: None,
            created: NeverAwaited::new(),
        }
    }

    /// Takes the next item if there is one (asyncio's `get_nowait`) and
    /// wakes the first waiting putter; `QueueEmpty`, or `QueueShutDown`
    /// when the queue is empty and shut down.
    ///
    /// ```
    /// use aioloop::queue::{Queue, QueueError};
    ///
    /// let q = Queue::<char>::new(0);
    /// assert_eq!(q.get_nowait(), Err(QueueError::Empty));
    /// q.put_nowait('x').unwrap();
    /// q.shutdown(false);
    /// assert_eq!(q.get_nowait(), Ok('x'));
    /// assert_eq!(q.get_nowait(), Err(QueueError::ShutDown));
    /// ```
    pub fn get_nowait(&self) -> Result<T, QueueError> {
        let inner = &*self.inner;
        // The storage borrow ends with this statement.
        let item = inner.items.borrow_mut().pop();
        match item {
            Some(item) => {
                self.wakeup_next(&inner.putters);
                Ok(item)
            }
            None if inner.is_shutdown.get() => Err(QueueError::ShutDown),
            None => Err(QueueError::Empty),
        }
    }

    /// Marks one item taken out of the queue as processed (asyncio's
    /// `task_done`); when every item put was, `join()` returns.
    /// `ValueError: task_done() called too many times` when no item is
    /// unfinished.
    ///
    /// ```
    /// use aioloop::queue::{Queue, QueueError};
    ///
    /// let q = Queue::<&str>::new(0);
    /// q.put_nowait("job").unwrap();
    /// let _job = q.get_nowait().unwrap();
    /// q.task_done().unwrap();
    /// assert_eq!(q.task_done(), Err(QueueError::TaskDoneTooManyTimes));
    /// ```
    pub fn task_done(&self) -> Result<(), QueueError> {
        let inner = &*self.inner;
        match inner.unfinished.get() {
            0 => Err(QueueError::TaskDoneTooManyTimes),
            n => {
                inner.unfinished.set(n - 1);
                if n == 1 {
                    self.finished();
                }
                Ok(())
            }
        }
    }

    /// Waits until every item put was marked [`task_done`](Queue::task_done)
    /// (asyncio's `join`); returns at once if none is unfinished. A
    /// cancellation point.
    ///
    /// ```
    /// use aioloop::queue::Queue;
    /// use aioloop::{create_task, EventLoop};
    ///
    /// let lp = EventLoop::new().unwrap();
    /// lp.run_until_complete(async {
    ///     let q = Queue::<&str>::new(0);
    ///     q.put_nowait("job").unwrap();
    ///     let worker = {
    ///         let q = q.clone();
    ///         create_task(async move {
    ///             let _job = q.get().await?;
    ///             Ok(q.task_done()?)
    ///         })
    ///         .unwrap()
    ///     };
    ///     q.join().await.unwrap();
    ///     assert!(worker.done());
    /// })
    /// .unwrap();
    /// ```
    #[track_caller]
    pub fn join(&self) -> QueueJoin<'_, T, S> {
        QueueJoin {
            queue: self,
            key: None,
            created: NeverAwaited::new(),
        }
    }

    /// A [`WeakQueue`] to this queue: it does not keep the queue alive.
    ///
    /// ```
    /// use aioloop::queue::Queue;
    ///
    /// let q = Queue::<&str>::new(0);
    /// let weak = q.downgrade();
    /// weak.upgrade().unwrap().put_nowait("hi").unwrap();
    /// assert_eq!(q.get_nowait().unwrap(), "hi", "the same queue");
    /// ```
    pub fn downgrade(&self) -> WeakQueue<T, S> {
        WeakQueue {
            inner: Rc::downgrade(&self.inner),
        }
    }

    /// Shuts the queue down (asyncio 3.13's `shutdown`): puts fail with
    /// `QueueShutDown` from now on; gets fail with it once the queue is
    /// empty. Every waiting getter and putter is woken to re-check.
    ///
    /// With `immediate`, the items still queued are taken out at once and
    /// each counts as `task_done` (which may release `join()`). asyncio
    /// discards them; aioloop returns them, in the order gets would have
    /// (dropping the returned `Vec` discards them). Without `immediate` the
    /// returned `Vec` is empty and gets go on draining the queue.
    ///
    /// ```
    /// use aioloop::queue::{Queue, QueueError};
    ///
    /// let q = Queue::<i32>::new(0);
    /// q.put_nowait(1).unwrap();
    /// q.put_nowait(2).unwrap();
    /// assert_eq!(q.shutdown(true), [1, 2]);
    /// assert_eq!(q.get_nowait(), Err(QueueError::ShutDown));
    /// assert_eq!(*q.put_nowait(3).unwrap_err().kind(), QueueError::ShutDown);
    /// ```
    pub fn shutdown(&self, immediate: bool) -> Vec<T> {
        let inner = &*self.inner;
        inner.is_shutdown.set(true);
        let mut discarded = Vec::new();
        if immediate {
            loop {
                let item = inner.items.borrow_mut().pop();
                let Some(item) = item else { break };
                discarded.push(item);
                inner
                    .unfinished
                    .set(inner.unfinished.get().saturating_sub(1));
            }
            if inner.unfinished.get() == 0 {
                self.finished();
            }
        }
        // asyncio: "All getters need to re-check queue-empty to raise
        // ShutDown"; putters too.
        let core = inner.binding.bound();
        inner.getters.notify(usize::MAX, core.as_deref());
        inner.putters.notify(usize::MAX, core.as_deref());
        discarded
    }

    /// asyncio's `_wakeup_next`: wakes the first waiter of `list` not yet
    /// woken, if any.
    fn wakeup_next(&self, list: &WaitList) {
        // The hot path (a put or get nobody waits for) stops here, without
        // touching the loop binding.
        if list.first_notified().is_some() {
            let core = self.inner.binding.bound();
            list.notify_first(core.as_deref());
        }
    }

    /// asyncio's `self._finished.set()`: releases every `join()`.
    fn finished(&self) {
        let joiners = &self.inner.joiners;
        if joiners.first_notified().is_some() {
            let core = self.inner.binding.bound();
            joiners.notify(usize::MAX, core.as_deref());
        }
    }

    /// Removes the awaitable's entry from `list`; `Some(true)` if it had
    /// been woken (see [`WaitList::unregister`]).
    fn unregister(&self, list: &WaitList, key: WaiterKey) -> Option<bool> {
        let core = self.inner.binding.bound();
        list.unregister(key, core.as_deref())
    }

    /// Waiters of `list` not yet woken: asyncio's `len(self._getters)`
    /// (a woken waiter's future has left asyncio's deque).
    fn waiting(list: &WaitList) -> usize {
        list.registrations().iter().filter(|r| !r.notified).count()
    }
}

impl<T: 'static, S: Storage<T> + 'static> Queue<T, S> {
    /// Registers (or refreshes) the awaitable's entry in `list`.
    fn register(
        &self,
        list: &WaitList,
        key: Option<WaiterKey>,
        cx: &Context<'_>,
        kind: WaitKind,
    ) -> WaiterKey {
        let core = self.inner.binding.bind();
        let site = WaitSite::new(kind, self);
        let key = list.register(key, cx, core.as_deref(), site);
        set_fut_waiter(FutWaiter::of(&self.inner));
        key
    }
}

impl<T: 'static, S: Storage<T> + 'static> WaitTarget for Inner<T, S> {
    fn for_each_list(&self, f: &mut dyn FnMut(&WaitList)) {
        f(&self.getters);
        f(&self.putters);
        f(&self.joiners);
    }
    fn describe(&self) -> String {
        format!(
            "<{} maxsize={} qsize={}>",
            S::NAME,
            self.maxsize,
            self.items.borrow().len()
        )
    }
}

impl<T, S> Inner<T, S> {
    /// A way in to the queue is going (a handle, or the last weak handle):
    /// tasks waiting on it may have lost their last way to be woken (see
    /// `stuck.rs`). `strong` handles are left.
    fn lost_a_way_in(&self, strong: usize) {
        let waiting =
            self.getters.unnotified() + self.putters.unnotified() + self.joiners.unnotified();
        // Every handle of a dead queue is borrowed by one of its parked
        // waiters: more handles than that, and someone else holds one.
        if waiting == 0 || strong > waiting {
            return;
        }
        if let Some(core) = self.binding.bound() {
            for list in [&self.getters, &self.putters, &self.joiners] {
                core.suspect_waiters(list, 0);
            }
        }
    }
}

impl<T, S> Drop for Queue<T, S> {
    fn drop(&mut self) {
        self.inner.lost_a_way_in(Rc::strong_count(&self.inner) - 1);
    }
}

impl<T, S: Storage<T>> fmt::Debug for Queue<T, S> {
    /// asyncio's `str(queue)`, with the item count for the item list:
    /// `<Queue maxsize=0 qsize=2 _getters[1] _putters[3] tasks=2 shutdown>`
    /// (each part after `maxsize` only when non-zero or set).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &*self.inner;
        write!(f, "<{} maxsize={}", S::NAME, inner.maxsize)?;
        match self.qsize() {
            0 => {}
            n => write!(f, " qsize={n}")?,
        }
        match Self::waiting(&inner.getters) {
            0 => {}
            n => write!(f, " _getters[{n}]")?,
        }
        match Self::waiting(&inner.putters) {
            0 => {}
            n => write!(f, " _putters[{n}]")?,
        }
        match inner.unfinished.get() {
            0 => {}
            n => write!(f, " tasks={n}")?,
        }
        if inner.is_shutdown.get() {
            f.write_str(" shutdown")?;
        }
        f.write_str(">")
    }
}

/// A weak handle to a [`Queue`] (`Rc`'s `Weak`): it does not keep the queue
/// alive, and [`upgrade`](WeakQueue::upgrade) gives a handle to the same
/// queue while a strong one is left. [`WeakLifoQueue`] and
/// [`WeakPriorityQueue`] are the same type with another [`Storage`].
///
/// For the stuck-task check a live weak handle is a way in: a task waiting
/// on the queue is never reported stuck while one exists, since whoever
/// holds it could upgrade it and put an item (or take one, or shut the
/// queue down). Dropping the last one makes the check look again (see
/// `docs/DEBUGGING.md`).
///
/// ```
/// use aioloop::queue::{Queue, WeakQueue};
///
/// struct Producer {
///     out: WeakQueue<u32>,
/// }
///
/// let q = Queue::<u32>::new(0);
/// let producer = Producer { out: q.downgrade() };
/// if let Some(out) = producer.out.upgrade() {
///     out.put_nowait(7).unwrap();
/// }
/// assert_eq!(q.get_nowait().unwrap(), 7, "the same queue");
/// drop(q);
/// assert!(producer.out.upgrade().is_none(), "no strong handle is left");
/// ```
pub struct WeakQueue<T, S = Fifo<T>> {
    inner: Weak<Inner<T, S>>,
}

/// A weak handle to a [`LifoQueue`].
///
/// ```
/// use aioloop::queue::{LifoQueue, WeakLifoQueue};
///
/// let q: LifoQueue<u8> = LifoQueue::new(0);
/// let weak: WeakLifoQueue<u8> = q.downgrade();
/// weak.upgrade().unwrap().put_nowait(1).unwrap();
/// assert_eq!(q.qsize(), 1);
/// ```
pub type WeakLifoQueue<T> = WeakQueue<T, Lifo<T>>;

/// A weak handle to a [`PriorityQueue`].
///
/// ```
/// use aioloop::queue::{PriorityQueue, WeakPriorityQueue};
///
/// let q: PriorityQueue<u8> = PriorityQueue::new(0);
/// let weak: WeakPriorityQueue<u8> = q.downgrade();
/// drop(q);
/// assert!(weak.upgrade().is_none());
/// ```
pub type WeakPriorityQueue<T> = WeakQueue<T, Priority<T>>;

impl<T, S> WeakQueue<T, S> {
    /// The queue, if a strong handle to it is still alive.
    ///
    /// ```
    /// use aioloop::queue::Queue;
    ///
    /// let q = Queue::<u8>::new(3);
    /// let weak = q.downgrade();
    /// assert_eq!(weak.upgrade().unwrap().maxsize(), 3);
    /// drop(q);
    /// assert!(weak.upgrade().is_none());
    /// ```
    pub fn upgrade(&self) -> Option<Queue<T, S>> {
        self.inner.upgrade().map(|inner| Queue { inner })
    }
}

impl<T, S> Clone for WeakQueue<T, S> {
    /// Another weak handle to the same queue.
    fn clone(&self) -> Self {
        WeakQueue {
            inner: self.inner.clone(),
        }
    }
}

impl<T, S> Drop for WeakQueue<T, S> {
    fn drop(&mut self) {
        // Upgraded for the look (one strong count more, taken back out);
        // this weak handle is still counted while it drops.
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let weak_left = Rc::weak_count(&inner) - 1;
        let waiters = inner.getters.waiters() + inner.putters.waiters() + inner.joiners.waiters();
        // Each task parked on the queue holds at most one `Weak` (its
        // parked-on record): more than that, and another weak handle is
        // still out there, a way in.
        if weak_left <= waiters {
            inner.lost_a_way_in(Rc::strong_count(&inner) - 1);
        }
    }
}

impl<T: 'static, S: Storage<T> + 'static> fmt::Debug for WeakQueue<T, S> {
    /// `WeakQueue(<Queue maxsize=0 qsize=1>)`, or `WeakQueue(dropped)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_weak(f, "WeakQueue", &self.inner)
    }
}

/// Where an awaitable stands with its wait list at the start of a poll.
enum Turn {
    /// Not registered: check the queue (asyncio's `while` condition).
    Check,
    /// Registered and not woken yet: keep waiting, in place.
    Waiting(WaiterKey),
}

/// Reads the awaitable's registration; a woken one is consumed (removed)
/// and the awaitable re-checks the queue, as asyncio's loop does after
/// `await getter`.
fn turn<T, S: Storage<T>>(q: &Queue<T, S>, list: &WaitList, key: &mut Option<WaiterKey>) -> Turn {
    let Some(k) = *key else { return Turn::Check };
    match list.is_notified(k) {
        Some(false) => Turn::Waiting(k),
        Some(true) => {
            q.unregister(list, k);
            *key = None;
            Turn::Check
        }
        None => {
            *key = None;
            Turn::Check
        }
    }
}

/// The future of [`Queue::get`]: the next item, or `QueueShutDown`, or a
/// cancellation.
///
/// Dropping it while it waits leaves the queue as if it had never come,
/// and passes on the wake-up it may have received.
///
/// ```
/// use aioloop::queue::Queue;
/// use aioloop::EventLoop;
///
/// let lp = EventLoop::new().unwrap();
/// let q = Queue::<&str>::new(0);
/// q.put_nowait("ready").unwrap();
/// let got = lp.run_until_complete(async move { Ok(q.get().await?) });
/// assert_eq!(got.unwrap(), "ready");
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct QueueGet<'a, T, S: Storage<T> = Fifo<T>> {
    queue: &'a Queue<T, S>,
    key: Option<WaiterKey>,
    created: NeverAwaited,
}

impl<T, S: Storage<T>> QueueGet<'_, T, S> {
    /// Leaves the getters; a woken getter that will not take an item passes
    /// the wake-up on while the queue has one (asyncio's `except:` branch
    /// of `get`).
    fn leave(&mut self) {
        let Some(k) = self.key.take() else { return };
        let q = self.queue;
        if q.unregister(&q.inner.getters, k) == Some(true) && !q.empty() {
            q.wakeup_next(&q.inner.getters);
        }
    }
}

impl<T: 'static, S: Storage<T> + 'static> Future for QueueGet<'_, T, S> {
    type Output = Result<T, QueueError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.created.polled();
        if let Some(c) = take_cancel_request() {
            this.leave();
            return Poll::Ready(Err(QueueError::Cancelled(c)));
        }
        let q = this.queue;
        let list = &q.inner.getters;
        if let Turn::Waiting(k) = turn(q, list, &mut this.key) {
            // Polled again before its turn (a combinator, a spurious wake):
            // refresh the waker, keep the place.
            this.key = Some(q.register(list, Some(k), cx, WaitKind::QueueGet));
            return Poll::Pending;
        }
        // asyncio: `while self.empty(): if self._is_shutdown: raise ...;
        // await getter` then `return self.get_nowait()`.
        match q.get_nowait() {
            Err(QueueError::Empty) => {
                this.key = Some(q.register(list, None, cx, WaitKind::QueueGet));
                Poll::Pending
            }
            done => Poll::Ready(done),
        }
    }
}

impl<T, S: Storage<T>> Drop for QueueGet<'_, T, S> {
    fn drop(&mut self) {
        self.created.check("Queue.get");
        self.leave();
    }
}

impl<T, S: Storage<T>> fmt::Debug for QueueGet<'_, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "QueueGet({:?}, waiting: {})",
            self.queue,
            self.key.is_some()
        )
    }
}

/// The future of [`Queue::put`]: `Ok(())` once the item is in the queue;
/// on `QueueShutDown` or a cancellation the [`PutError`] holds the item.
///
/// Dropping it while it waits drops the item (it was never put) and passes
/// on the wake-up it may have received.
///
/// ```
/// use aioloop::queue::Queue;
/// use aioloop::EventLoop;
///
/// let lp = EventLoop::new().unwrap();
/// let q = Queue::<char>::new(1);
/// let q2 = q.clone();
/// lp.run_until_complete(async move { Ok(q2.put('z').await?) }).unwrap();
/// assert_eq!(q.get_nowait().unwrap(), 'z');
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct QueuePut<'a, T, S: Storage<T> = Fifo<T>> {
    queue: &'a Queue<T, S>,
    /// `None` once the put completed.
    item: Option<T>,
    key: Option<WaiterKey>,
    created: NeverAwaited,
}

// The item is moved, never pinned: no `Pin<&mut T>` is ever made.
impl<T, S: Storage<T>> Unpin for QueuePut<'_, T, S> {}

impl<T, S: Storage<T>> QueuePut<'_, T, S> {
    /// Leaves the putters; a woken putter that will not put passes the
    /// wake-up on while the queue has room (asyncio's `except:` branch of
    /// `put`).
    fn leave(&mut self) {
        let Some(k) = self.key.take() else { return };
        let q = self.queue;
        if q.unregister(&q.inner.putters, k) == Some(true) && !q.full() {
            q.wakeup_next(&q.inner.putters);
        }
    }

    fn fail(&mut self, kind: QueueError) -> Poll<Result<(), PutError<T>>> {
        let item = self.item.take().expect("QueuePut polled after completion");
        Poll::Ready(Err(PutError::new(kind, item)))
    }
}

impl<T: 'static, S: Storage<T> + 'static> Future for QueuePut<'_, T, S> {
    type Output = Result<(), PutError<T>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.created.polled();
        if let Some(c) = take_cancel_request() {
            this.leave();
            return this.fail(QueueError::Cancelled(c));
        }
        let q = this.queue;
        let list = &q.inner.putters;
        if let Turn::Waiting(k) = turn(q, list, &mut this.key) {
            this.key = Some(q.register(list, Some(k), cx, WaitKind::QueuePut));
            return Poll::Pending;
        }
        // asyncio: `while self.full(): if self._is_shutdown: raise ...;
        // await putter` then `return self.put_nowait(item)`.
        if q.full() {
            if q.inner.is_shutdown.get() {
                return this.fail(QueueError::ShutDown);
            }
            this.key = Some(q.register(list, None, cx, WaitKind::QueuePut));
            return Poll::Pending;
        }
        let item = this.item.take().expect("QueuePut polled after completion");
        Poll::Ready(q.put_nowait(item))
    }
}

impl<T, S: Storage<T>> Drop for QueuePut<'_, T, S> {
    fn drop(&mut self) {
        self.created.check("Queue.put");
        self.leave();
    }
}

impl<T, S: Storage<T>> fmt::Debug for QueuePut<'_, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "QueuePut({:?}, waiting: {})",
            self.queue,
            self.key.is_some()
        )
    }
}

/// The future of [`Queue::join`]: `Ok(())` once every item put was marked
/// `task_done`, or a cancellation.
///
/// ```
/// use aioloop::queue::Queue;
/// use aioloop::EventLoop;
///
/// let lp = EventLoop::new().unwrap();
/// let q = Queue::<u8>::new(0);
/// // Nothing unfinished: returns at once.
/// lp.run_until_complete(async move { Ok(q.join().await?) }).unwrap();
/// ```
#[must_use = "futures do nothing unless awaited"]
pub struct QueueJoin<'a, T, S: Storage<T> = Fifo<T>> {
    queue: &'a Queue<T, S>,
    key: Option<WaiterKey>,
    created: NeverAwaited,
}

impl<T: 'static, S: Storage<T> + 'static> Future for QueueJoin<'_, T, S> {
    type Output = Result<(), CancelledError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.created.polled();
        let q = this.queue;
        let list = &q.inner.joiners;
        if let Some(c) = take_cancel_request() {
            // Every joiner is woken together: nothing to pass on.
            if let Some(k) = this.key.take() {
                q.unregister(list, k);
            }
            return Poll::Ready(Err(c));
        }
        match this.key.map(|k| (k, list.is_notified(k))) {
            // Woken by the last task_done: done, whatever happened since.
            Some((k, Some(true))) => {
                q.unregister(list, k);
                this.key = None;
                Poll::Ready(Ok(()))
            }
            Some((k, Some(false))) => {
                this.key = Some(q.register(list, Some(k), cx, WaitKind::QueueJoin));
                Poll::Pending
            }
            None | Some((_, None)) => {
                if q.inner.unfinished.get() == 0 {
                    this.key = None;
                    return Poll::Ready(Ok(()));
                }
                this.key = Some(q.register(list, None, cx, WaitKind::QueueJoin));
                Poll::Pending
            }
        }
    }
}

impl<T, S: Storage<T>> Drop for QueueJoin<'_, T, S> {
    fn drop(&mut self) {
        self.created.check("Queue.join");
        if let Some(k) = self.key.take() {
            self.queue.unregister(&self.queue.inner.joiners, k);
        }
    }
}

impl<T, S: Storage<T>> fmt::Debug for QueueJoin<'_, T, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "QueueJoin({:?}, waiting: {})",
            self.queue,
            self.key.is_some()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::current_task_id;
    use crate::EventLoop;
    use std::future::poll_fn;

    #[test]
    fn a_waiting_get_is_registered_with_the_handle_it_borrowed_until_dropped() {
        let lp = EventLoop::with_virtual_clock().unwrap();
        lp.run_until_complete(async {
            let q = Queue::<u8>::new(0);
            let other = q.clone();
            let mut get = Box::pin(q.get());
            poll_fn(|cx| {
                assert!(get.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            let regs = q.inner.getters.registrations();
            assert_eq!(regs.len(), 1);
            assert_eq!(regs[0].site, WaitSite::new(WaitKind::QueueGet, &q));
            assert_ne!(regs[0].site.handle, &other as *const Queue<u8> as usize);
            assert_eq!(regs[0].task, current_task_id());
            assert!(!regs[0].notified);
            assert_eq!(format!("{q:?}"), "<Queue maxsize=0 _getters[1]>");
            drop(get);
            assert!(q.inner.getters.registrations().is_empty());
            assert!(other.inner.getters.registrations().is_empty());
        })
        .unwrap();
    }

    #[test]
    fn a_woken_getter_that_finds_the_queue_empty_has_one_registration_at_the_back() {
        let lp = EventLoop::with_virtual_clock().unwrap();
        lp.run_until_complete(async {
            let q = Queue::<u8>::new(0);
            let q2 = q.clone(); // b borrows another handle: tells a from b
            let (mut a, mut b) = (Box::pin(q.get()), Box::pin(q2.get()));
            poll_fn(|cx| {
                assert!(a.as_mut().poll(cx).is_pending());
                assert!(b.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            let a_site = WaitSite::new(WaitKind::QueueGet, &q);
            assert_eq!(q.inner.getters.registrations()[0].site, a_site);
            q.put_nowait(1).unwrap();
            assert!(q.inner.getters.registrations()[0].notified);
            q.get_nowait().unwrap(); // barges in
                                     // a re-checks, finds nothing, waits again
            poll_fn(|cx| {
                assert!(a.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            let regs = q.inner.getters.registrations();
            assert_eq!(regs.len(), 2, "the woken entry was consumed, not leaked");
            assert!(regs.iter().all(|r| !r.notified));
            assert_eq!(regs[1].site, a_site, "a waits again, at the back");
        })
        .unwrap();
    }

    #[test]
    fn a_waiting_put_and_join_name_their_operation() {
        let lp = EventLoop::with_virtual_clock().unwrap();
        lp.run_until_complete(async {
            let q = Queue::<u8>::new(1);
            q.put_nowait(1u8).unwrap();
            let mut put = Box::pin(q.put(2));
            let mut join = Box::pin(q.join());
            poll_fn(|cx| {
                assert!(put.as_mut().poll(cx).is_pending());
                assert!(join.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            let put_regs = q.inner.putters.registrations();
            let join_regs = q.inner.joiners.registrations();
            assert_eq!(put_regs[0].site, WaitSite::new(WaitKind::QueuePut, &q));
            assert_eq!(join_regs[0].site, WaitSite::new(WaitKind::QueueJoin, &q));
            drop((put, join));
            assert!(q.inner.putters.registrations().is_empty());
            assert!(q.inner.joiners.registrations().is_empty());
        })
        .unwrap();
    }
}
