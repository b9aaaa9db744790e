//! The queue's errors: asyncio's `QueueEmpty`, `QueueFull`, `QueueShutDown`,
//! the `ValueError` of `task_done`, and a cancellation.
//!
//! A failed put hands its item back ([`PutError`]): a queue never drops
//! work it was not asked to drop.

use std::fmt;

use crate::errors::CancelledError;

/// Why a queue operation failed, named and worded as asyncio's exceptions.
///
/// ```
/// use aioloop::queue::{Queue, QueueError};
///
/// let q = Queue::<u8>::new(0);
/// assert_eq!(q.get_nowait(), Err(QueueError::Empty));
/// assert_eq!(q.task_done(), Err(QueueError::TaskDoneTooManyTimes));
/// assert_eq!(
///     QueueError::TaskDoneTooManyTimes.to_string(),
///     "ValueError: task_done() called too many times"
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueueError {
    /// asyncio's `QueueEmpty`: `get_nowait` on an empty queue.
    Empty,
    /// asyncio's `QueueFull`: `put_nowait` on a full queue.
    Full,
    /// asyncio's `QueueShutDown` (3.13): a put after `shutdown`, or a get
    /// once a shut-down queue is empty.
    ShutDown,
    /// The waiting task was cancelled.
    Cancelled(CancelledError),
    /// asyncio's `ValueError('task_done() called too many times')`.
    TaskDoneTooManyTimes,
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::Empty => f.write_str("QueueEmpty"),
            QueueError::Full => f.write_str("QueueFull"),
            QueueError::ShutDown => f.write_str("QueueShutDown"),
            QueueError::Cancelled(c) => fmt::Display::fmt(c, f),
            QueueError::TaskDoneTooManyTimes => {
                f.write_str("ValueError: task_done() called too many times")
            }
        }
    }
}

impl std::error::Error for QueueError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            QueueError::Cancelled(c) => Some(c),
            _ => None,
        }
    }
}

impl From<CancelledError> for QueueError {
    fn from(c: CancelledError) -> Self {
        QueueError::Cancelled(c)
    }
}

/// A failed put: why ([`QueueError::Full`], [`ShutDown`](QueueError::ShutDown)
/// or [`Cancelled`](QueueError::Cancelled)), and the item, handed back.
///
/// `?` converts it into a [`QueueError`], dropping the item; match on it
/// (or call [`into_inner`](PutError::into_inner)) to keep the item.
///
/// ```
/// use aioloop::queue::{Queue, QueueError};
///
/// let q = Queue::<String>::new(1);
/// q.put_nowait(String::from("first")).unwrap();
/// let err = q.put_nowait(String::from("second")).unwrap_err();
/// assert_eq!(*err.kind(), QueueError::Full);
/// assert_eq!(err.to_string(), "QueueFull");
/// assert_eq!(err.into_inner(), "second"); // not lost
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct PutError<T> {
    kind: QueueError,
    item: T,
}

impl<T> PutError<T> {
    pub(crate) fn new(kind: QueueError, item: T) -> Self {
        PutError { kind, item }
    }

    /// Why the put failed.
    ///
    /// ```
    /// use aioloop::queue::{Queue, QueueError};
    ///
    /// let q = Queue::<i32>::new(0);
    /// q.shutdown(false);
    /// assert_eq!(*q.put_nowait(1).unwrap_err().kind(), QueueError::ShutDown);
    /// ```
    pub fn kind(&self) -> &QueueError {
        &self.kind
    }

    /// The item that was not put.
    ///
    /// ```
    /// use aioloop::queue::Queue;
    ///
    /// let q = Queue::<i32>::new(1);
    /// q.put_nowait(1).unwrap();
    /// assert_eq!(*q.put_nowait(2).unwrap_err().item(), 2);
    /// ```
    pub fn item(&self) -> &T {
        &self.item
    }

    /// Gives the item back.
    ///
    /// ```
    /// use aioloop::queue::Queue;
    ///
    /// let q = Queue::<Vec<i32>>::new(1);
    /// q.put_nowait(vec![1]).unwrap();
    /// assert_eq!(q.put_nowait(vec![2]).unwrap_err().into_inner(), [2]);
    /// ```
    pub fn into_inner(self) -> T {
        self.item
    }

    /// Both halves: why, and the item.
    ///
    /// ```
    /// use aioloop::queue::{Queue, QueueError};
    ///
    /// let q = Queue::<char>::new(1);
    /// q.put_nowait('a').unwrap();
    /// let (kind, item) = q.put_nowait('b').unwrap_err().into_parts();
    /// assert_eq!((kind, item), (QueueError::Full, 'b'));
    /// ```
    pub fn into_parts(self) -> (QueueError, T) {
        (self.kind, self.item)
    }
}

impl<T> fmt::Debug for PutError<T> {
    /// The item is not shown (it need not be `Debug`), as std's `SendError`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutError")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind, f)
    }
}

impl<T> std::error::Error for PutError<T> {
    /// The [`QueueError`]: `?` into [`Error`](crate::Error) (which keeps
    /// the put failure whole, as [`ErrorKind::Other`](crate::ErrorKind)) still
    /// answers `is_cancelled()` and `downcast_ref::<QueueError>()` through it.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}

impl<T> From<PutError<T>> for QueueError {
    fn from(e: PutError<T>) -> Self {
        e.kind
    }
}
