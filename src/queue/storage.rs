//! How a queue keeps its items: FIFO, LIFO or by priority — asyncio's
//! overridable `_init` / `_put` / `_get` trio.
//!
//! asyncio's `PriorityQueue` and `LifoQueue` are subclasses of `Queue` that
//! override three methods; everything else (waiting, `task_done`,
//! `shutdown`) is inherited. aioloop has one generic [`Queue`](super::Queue)
//! whose second type parameter is a [`Storage`]: [`Fifo`] (a `VecDeque`),
//! [`Lifo`] (a `Vec`) or [`Priority`] (a binary min-heap). A storage is a
//! plain data structure: it never wakes anyone and never sees the queue.
//!
//! # Invariants
//!
//! - `len()` is the number of items pushed and not yet popped.
//! - `pop()` returns `None` exactly when `len() == 0`.
//! - [`Priority`] pops the least item first and, among equal items, the one
//!   pushed first (see its docs: asyncio's `heapq` promises no order there).

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};

/// The container behind a [`Queue`](super::Queue): asyncio's `_init`,
/// `_put`, `_get` and `len(self._queue)`.
///
/// Implement it to get a queue with another order, as asyncio's
/// subclasses do. The queue calls these methods with its storage borrowed:
/// they must not reach the queue itself.
///
/// ```
/// use aioloop::queue::{Queue, Storage};
///
/// /// Serves the largest item first.
/// #[derive(Default)]
/// struct MaxFirst(Vec<u32>);
///
/// impl Storage<u32> for MaxFirst {
///     const NAME: &'static str = "MaxFirstQueue";
///     fn push(&mut self, item: u32) {
///         self.0.push(item);
///         self.0.sort_unstable();
///     }
///     fn pop(&mut self) -> Option<u32> {
///         self.0.pop()
///     }
///     fn len(&self) -> usize {
///         self.0.len()
///     }
/// }
///
/// let q: Queue<u32, MaxFirst> = Queue::new(0);
/// for x in [2, 9, 4] {
///     q.put_nowait(x).unwrap();
/// }
/// assert_eq!(q.get_nowait().unwrap(), 9);
/// assert_eq!(format!("{q:?}"), "<MaxFirstQueue maxsize=0 qsize=2 tasks=3>");
/// ```
pub trait Storage<T>: Default {
    /// The class name shown by the queue's `Debug` (asyncio's
    /// `type(self).__name__`).
    const NAME: &'static str;
    /// Stores an item (asyncio's `_put`).
    fn push(&mut self, item: T);
    /// Takes the next item out, `None` if there is none (asyncio's `_get`).
    fn pop(&mut self) -> Option<T>;
    /// Number of items stored (asyncio's `len(self._queue)`).
    fn len(&self) -> usize;
    /// True if no item is stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// First in, first out: [`Queue`](super::Queue)'s default storage
/// (asyncio's `collections.deque`, `append` / `popleft`).
///
/// ```
/// use aioloop::queue::Queue;
///
/// let q = Queue::<&str>::new(0); // the same as Queue::<&str, Fifo<&str>>
/// q.put_nowait("a").unwrap();
/// q.put_nowait("b").unwrap();
/// assert_eq!(q.get_nowait().unwrap(), "a");
/// ```
#[derive(Debug)]
pub struct Fifo<T>(VecDeque<T>);

impl<T> Default for Fifo<T> {
    fn default() -> Self {
        Fifo(VecDeque::new())
    }
}

impl<T> Storage<T> for Fifo<T> {
    const NAME: &'static str = "Queue";
    fn push(&mut self, item: T) {
        self.0.push_back(item);
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop_front()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Last in, first out: the storage of [`LifoQueue`](super::LifoQueue)
/// (asyncio's list, `append` / `pop`).
///
/// ```
/// use aioloop::queue::LifoQueue;
///
/// let q = LifoQueue::new(0);
/// q.put_nowait("a").unwrap();
/// q.put_nowait("b").unwrap();
/// assert_eq!(q.get_nowait().unwrap(), "b");
/// ```
#[derive(Debug)]
pub struct Lifo<T>(Vec<T>);

impl<T> Default for Lifo<T> {
    fn default() -> Self {
        Lifo(Vec::new())
    }
}

impl<T> Storage<T> for Lifo<T> {
    const NAME: &'static str = "LifoQueue";
    fn push(&mut self, item: T) {
        self.0.push(item);
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Lowest first: the storage of [`PriorityQueue`](super::PriorityQueue)
/// (asyncio's `heapq.heappush` / `heappop`), a binary min-heap.
///
/// Equal items come out in the order they were put. asyncio's `heapq` is
/// not stable and leaves that order undefined (Python code puts
/// `(priority, counter, item)` tuples to get it); aioloop tags every item
/// with a sequence number and promises it, as it does for timers with
/// equal deadlines. The cost is 8 bytes per stored item.
///
/// ```
/// use aioloop::queue::PriorityQueue;
///
/// let q = PriorityQueue::new(0);
/// for job in [(2, "write"), (1, "read"), (2, "flush"), (1, "seek")] {
///     q.put_nowait(job).unwrap();
/// }
/// let order: Vec<_> = std::iter::from_fn(|| q.get_nowait().ok()).collect();
/// assert_eq!(order, [(1, "read"), (1, "seek"), (2, "flush"), (2, "write")]);
/// ```
#[derive(Debug)]
pub struct Priority<T: Ord> {
    heap: BinaryHeap<Reverse<Ranked<T>>>,
    /// The sequence number of the next push.
    next: u64,
}

impl<T: Ord> Default for Priority<T> {
    fn default() -> Self {
        Priority {
            heap: BinaryHeap::new(),
            next: 0,
        }
    }
}

/// An item and its push number: ordered by item, then by push order.
#[derive(Debug)]
struct Ranked<T> {
    item: T,
    seq: u64,
}

impl<T: Ord> Ord for Ranked<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.item.cmp(&other.item).then(self.seq.cmp(&other.seq))
    }
}

impl<T: Ord> PartialOrd for Ranked<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T: Ord> PartialEq for Ranked<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<T: Ord> Eq for Ranked<T> {}

impl<T: Ord> Storage<T> for Priority<T> {
    const NAME: &'static str = "PriorityQueue";
    fn push(&mut self, item: T) {
        let seq = self.next;
        self.next = seq.wrapping_add(1);
        self.heap.push(Reverse(Ranked { item, seq }));
    }
    fn pop(&mut self) -> Option<T> {
        self.heap.pop().map(|Reverse(r)| r.item)
    }
    fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain<S: Storage<(u8, char)>>(mut s: S, items: &[(u8, char)]) -> Vec<(u8, char)> {
        for &i in items {
            s.push(i);
        }
        assert_eq!(s.len(), items.len());
        let out: Vec<_> = std::iter::from_fn(|| s.pop()).collect();
        assert!(s.is_empty() && s.pop().is_none());
        out
    }

    #[test]
    fn each_storage_pops_in_its_order() {
        let items = [(3, 'a'), (1, 'b'), (3, 'c'), (2, 'd')];
        assert_eq!(drain(Fifo::default(), &items), items);
        let mut rev = items;
        rev.reverse();
        assert_eq!(drain(Lifo::default(), &items), rev);
        assert_eq!(
            drain(Priority::default(), &items),
            [(1, 'b'), (2, 'd'), (3, 'a'), (3, 'c')]
        );
    }

    #[test]
    fn priority_keeps_push_order_among_equal_items() {
        /// Equal whatever the payload: only the key is compared.
        #[derive(Debug)]
        struct Key(u8, &'static str);
        impl Ord for Key {
            fn cmp(&self, o: &Self) -> Ordering {
                self.0.cmp(&o.0)
            }
        }
        impl PartialOrd for Key {
            fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
                Some(self.cmp(o))
            }
        }
        impl PartialEq for Key {
            fn eq(&self, o: &Self) -> bool {
                self.0 == o.0
            }
        }
        impl Eq for Key {}
        let mut p = Priority::default();
        let names = ["e", "a", "d", "b", "c", "f", "g", "h"];
        for (i, n) in names.iter().enumerate() {
            p.push(Key((i % 2) as u8, n));
        }
        let out: Vec<_> = std::iter::from_fn(|| p.pop()).map(|k| k.1).collect();
        assert_eq!(out, ["e", "d", "c", "g", "a", "b", "f", "h"]);
    }
}
