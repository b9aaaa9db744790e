//! Errors: asyncio's exception hierarchy as one Rust type, [`Error`].
//!
//! asyncio has one exception tree: a coroutine that awaits a task, a queue,
//! a lock, `wait_for` and the executor catches `CancelledError`,
//! `TimeoutError`, `QueueShutDown`, `RuntimeError`... with one `try`. aioloop
//! has one error type for the same reason: every error of every aioloop
//! awaitable converts into [`Error`] with `?`, and so does any other
//! `std::error::Error + Send + Sync` (an `io::Error`, a parse error, the
//! application's own error type), so ordinary code needs no error enum of
//! its own. A task's failure is always an [`Error`].
//!
//! ```text
//! asyncio                              aioloop::ErrorKind
//! BaseException
//!  ├── CancelledError                  Cancelled(CancelledError)
//!  ├── BaseExceptionGroup
//!  │    └── ExceptionGroup             Group(ExceptionGroup)   (TaskGroup)
//!  └── Exception                       (a panic: Panic(PanicError))
//!       ├── TimeoutError               Timeout(TimeoutError)
//!       ├── InvalidStateError          InvalidState(InvalidStateError)
//!       ├── RuntimeError               Loop(LoopError), TimeoutState(..),
//!       │                              TaskGroupState(..), Executor(..)
//!       ├── QueueEmpty / QueueFull /
//!       │   QueueShutDown              Queue(QueueError)
//!       ├── BrokenBarrierError, the
//!       │   primitives' RuntimeError   Sync(SyncError)
//!       ├── ValueError                 Value(ValueError)
//!       ├── OSError                    Io(io::Error)
//!       └── anything user code raises  Other(Box<dyn Error + Send + Sync>)
//! ```
//!
//! The specific types stay: `lock.acquire()` still returns a
//! [`SyncError`](crate::sync::SyncError), `q.get()` a
//! [`QueueError`](crate::queue::QueueError), for code that matches on them;
//! each converts into [`Error`], a cancellation they carry becoming
//! [`ErrorKind::Cancelled`]. [`Error::downcast_ref`] finds any of them (or
//! the application's own type) again, as `isinstance` does.
//!
//! Like `anyhow::Error`, [`Error`] does not itself implement
//! `std::error::Error`: that is what lets it take *every* error type with
//! `?`. It converts into `Box<dyn std::error::Error + Send + Sync>`, and
//! [`Error::kind`] is a `std::error::Error` for code that needs one.
//!
//! # Invariants
//!
//! - Misuse of the loop is always reported as a returned error, never as a
//!   panic inside the loop and never by silently dropping the work.
//! - The `Display` text of each variant is asyncio's text where asyncio has
//!   one (checked against CPython 3.11 in `tests/errors.rs`).
//! - An [`Error`] is one pointer, cheap to clone (a task's result can be
//!   read any number of times, as asyncio's), and `Send + Sync` (it crosses
//!   threads in `run_coroutine_threadsafe`).
//! - A cancellation keeps its kind through every conversion: a task whose
//!   coroutine returns it with `?` ends *cancelled*, never *failed*.

use std::any::Any;
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex};

use crate::combinators::task_group::TaskGroupStateError;
use crate::combinators::timeout::{ScopeError, TimeoutStateError};
use crate::executor::ExecutorError;
use crate::queue::QueueError;
use crate::sync::SyncError;

/// Why the loop refused a request.
///
/// The `Display` text is asyncio's `RuntimeError` message where asyncio has one.
///
/// ```
/// use aioloop::{EventLoop, LoopError};
///
/// let lp = EventLoop::new().unwrap();
/// lp.close().unwrap();
/// let err = lp.call_soon(|| {}).unwrap_err();
/// assert!(matches!(err, LoopError::Closed));
/// assert_eq!(err.to_string(), "Event loop is closed");
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum LoopError {
    /// The loop was closed: it accepts no more work.
    Closed,
    /// `run_forever` was called on a loop that is already running.
    AlreadyRunning,
    /// `run_forever` was called while another loop runs on this thread.
    AnotherLoopRunning,
    /// `close` was called on a running loop.
    CloseRunning,
    /// `get_running_loop` was called outside a running loop.
    NoRunningLoop,
    /// A negative file descriptor was given to `add_reader` / `add_writer`.
    InvalidFd(i32),
    /// A time that is not a number (NaN) was given to `call_at`.
    ///
    /// asyncio accepts NaN and silently corrupts its timer heap; aioloop refuses it.
    InvalidTime,
    /// `advance_time` was called on a loop that runs on the real clock.
    NotVirtualClock,
    /// `run_until_complete` returned because the loop was stopped before
    /// the future was done.
    StoppedBeforeComplete,
    /// The operating system refused an I/O registration (for example, a closed fd).
    Io(io::Error),
    /// `aioloop::run` was called while a loop is running on this thread.
    RunFromRunningLoop,
    /// A task awaited itself (asyncio: `Task cannot await on itself: <Task …>`);
    /// carries the task's repr.
    AwaitOnItself(String),
    /// A task awaited a future or task of another loop (asyncio: `Task <Task …>
    /// got Future <Future pending> attached to a different loop`); carries
    /// the task's repr and the awaited one's.
    DifferentLoop(String, String),
}

impl fmt::Display for LoopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoopError::Closed => f.write_str("Event loop is closed"),
            LoopError::AlreadyRunning => f.write_str("This event loop is already running"),
            LoopError::AnotherLoopRunning => {
                f.write_str("Cannot run the event loop while another loop is running")
            }
            LoopError::CloseRunning => f.write_str("Cannot close a running event loop"),
            LoopError::NoRunningLoop => f.write_str("no running event loop"),
            LoopError::InvalidFd(fd) => write!(f, "Invalid file descriptor: {fd}"),
            LoopError::InvalidTime => f.write_str("when must be a number, not NaN"),
            LoopError::NotVirtualClock => {
                f.write_str("advance_time() needs a loop built with a virtual clock")
            }
            LoopError::StoppedBeforeComplete => {
                f.write_str("Event loop stopped before Future completed.")
            }
            LoopError::Io(e) => fmt::Display::fmt(e, f),
            LoopError::RunFromRunningLoop => {
                f.write_str("asyncio.run() cannot be called from a running event loop")
            }
            LoopError::AwaitOnItself(task) => write!(f, "Task cannot await on itself: {task}"),
            LoopError::DifferentLoop(task, fut) => {
                write!(
                    f,
                    "Task {task} got Future {fut} attached to a different loop"
                )
            }
        }
    }
}

impl std::error::Error for LoopError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LoopError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for LoopError {
    fn from(e: io::Error) -> Self {
        LoopError::Io(e)
    }
}

/// A panic caught at the loop boundary: what asyncio calls the exception
/// raised by a callback.
///
/// The payload is kept so that it can be re-raised with
/// [`std::panic::resume_unwind`] by code that wants to; its text (for a
/// `&str` or `String` payload, which is what `panic!` produces) is what
/// `Display` shows. Clones share the payload (the first
/// [`into_payload`](PanicError::into_payload) gets it; later ones get the
/// message as a `String`).
///
/// ```
/// use aioloop::PanicError;
///
/// let caught = std::panic::catch_unwind(|| panic!("boom")).unwrap_err();
/// let err = PanicError::new(caught);
/// assert_eq!(err.message(), "boom");
/// ```
#[derive(Clone)]
pub struct PanicError {
    // One pointer: a task's outcome slot holds this inline, so its size is
    // every task's size. The payload sits behind a lock only so that the
    // error is `Sync` (a payload is `Send` alone); it is touched once.
    inner: Arc<PanicInner>,
}

struct PanicInner {
    message: String,
    payload: Mutex<Option<Box<dyn Any + Send>>>,
}

impl PanicError {
    /// Wraps the payload returned by [`std::panic::catch_unwind`].
    pub fn new(payload: Box<dyn Any + Send>) -> Self {
        let message = if let Some(s) = payload.downcast_ref::<&'static str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "<non-string panic payload>".to_owned()
        };
        PanicError {
            inner: Arc::new(PanicInner {
                message,
                payload: Mutex::new(Some(payload)),
            }),
        }
    }

    /// The panic message.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// Gives back the original payload, for `std::panic::resume_unwind`
    /// (the message as a `String` if a clone already took it).
    pub fn into_payload(self) -> Box<dyn Any + Send> {
        let taken = match self.inner.payload.lock() {
            Ok(mut p) => p.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        taken.unwrap_or_else(|| Box::new(self.inner.message.clone()))
    }
}

impl fmt::Debug for PanicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PanicError")
            .field("message", &self.inner.message)
            .finish()
    }
}

impl fmt::Display for PanicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "panicked: {}", self.inner.message)
    }
}

impl std::error::Error for PanicError {}

/// asyncio's `CancelledError`: what every aioloop awaitable returns when the
/// task awaiting it is cancelled, carrying the message given to `cancel`.
///
/// ```
/// use aioloop::CancelledError;
///
/// let e = CancelledError::new(Some("shutting down".into()));
/// assert_eq!(e.message(), Some("shutting down"));
/// assert_eq!(e.to_string(), "shutting down");
/// assert_eq!(CancelledError::new(None).to_string(), "cancelled");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CancelledError {
    msg: Option<Box<str>>,
}

impl CancelledError {
    /// A cancellation, with the message given to `cancel` if any.
    pub fn new(msg: Option<String>) -> Self {
        CancelledError {
            msg: msg.map(String::into_boxed_str),
        }
    }

    /// The message given to `cancel(msg)`, as asyncio's `e.args[0]`.
    pub fn message(&self) -> Option<&str> {
        self.msg.as_deref()
    }
}

impl fmt::Display for CancelledError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.msg.as_deref().unwrap_or("cancelled"))
    }
}

impl std::error::Error for CancelledError {}

/// asyncio's `InvalidStateError`: an operation that the state of a future or
/// task does not allow. The `Display` texts are asyncio's.
///
/// ```
/// use aioloop::InvalidStateError;
///
/// assert_eq!(InvalidStateError::AlreadyDone.to_string(), "invalid state");
/// assert_eq!(InvalidStateError::ResultNotSet.to_string(), "Result is not set.");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidStateError {
    /// `set_result` / `set_exception` on a future that is already done.
    AlreadyDone,
    /// `result()` on a pending future or task.
    ResultNotSet,
    /// `exception()` on a pending future or task.
    ExceptionNotSet,
    /// The result was moved out by [`Task::take`](crate::Task::take) or
    /// [`Future::take`](crate::Future::take) (Rust cannot hand out a
    /// non-`Clone` value twice).
    ResultTaken,
}

impl fmt::Display for InvalidStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidStateError::AlreadyDone => "invalid state",
            InvalidStateError::ResultNotSet => "Result is not set.",
            InvalidStateError::ExceptionNotSet => "Exception is not set.",
            InvalidStateError::ResultTaken => "Result was already taken.",
        })
    }
}

impl std::error::Error for InvalidStateError {}

/// asyncio's `TimeoutError`, from `wait_for`, `timeout` and friends.
///
/// ```
/// assert_eq!(aioloop::TimeoutError.to_string(), "timed out");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeoutError;

impl fmt::Display for TimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("timed out")
    }
}

impl std::error::Error for TimeoutError {}

/// asyncio's `ValueError`, for the few places aioloop raises one itself
/// (`wait([])`: `Set of Tasks/Futures is empty.`).
///
/// ```
/// let e = aioloop::ValueError::new("Set of Tasks/Futures is empty.");
/// assert_eq!(e.to_string(), "Set of Tasks/Futures is empty.");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueError(std::borrow::Cow<'static, str>);

impl ValueError {
    /// A `ValueError` with asyncio's message.
    pub fn new(msg: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        ValueError(msg.into())
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ValueError {}

/// asyncio's `ExceptionGroup`, as a [`TaskGroup`](crate::TaskGroup) raises
/// it: every failure of its children (in the order they happened) and of
/// its body.
///
/// ```
/// use aioloop::{Error, ExceptionGroup, TimeoutError};
///
/// let g = ExceptionGroup::new("unhandled errors in a TaskGroup", vec![Error::from(TimeoutError)]);
/// assert_eq!(g.to_string(), "unhandled errors in a TaskGroup (1 sub-exception)");
/// assert!(g.exceptions()[0].is_timeout());
/// ```
#[derive(Clone, Debug)]
pub struct ExceptionGroup {
    message: String,
    exceptions: Vec<Error>,
}

impl ExceptionGroup {
    /// A group of `exceptions` with asyncio's `message`.
    pub fn new(message: impl Into<String>, exceptions: Vec<Error>) -> Self {
        ExceptionGroup {
            message: message.into(),
            exceptions,
        }
    }

    /// The message (asyncio's `eg.message`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The failures (asyncio's `eg.exceptions`).
    pub fn exceptions(&self) -> &[Error] {
        &self.exceptions
    }
}

impl fmt::Display for ExceptionGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.exceptions.len();
        let s = if n == 1 { "" } else { "s" };
        write!(f, "{} ({n} sub-exception{s})", self.message)
    }
}

impl std::error::Error for ExceptionGroup {}

/// What an [`Error`] is: asyncio's exception classes, one variant each.
///
/// `Display` is the inner error's text (asyncio's `str(exc)`), and this type
/// is a `std::error::Error` whose `source` is the inner one.
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// `CancelledError`, with the message given to `cancel`.
    Cancelled(CancelledError),
    /// `TimeoutError`: `wait_for`, `timeout`, `as_completed`, a concurrent
    /// future's `result(timeout)`.
    Timeout(TimeoutError),
    /// `InvalidStateError`: `set_result` twice, `result()` while pending.
    InvalidState(InvalidStateError),
    /// The loop's `RuntimeError`s: closed, already running, a task awaiting
    /// itself or another loop's future, no running loop, ...
    Loop(LoopError),
    /// A `Timeout` misused (`RuntimeError`): rescheduled when it cannot be.
    TimeoutState(TimeoutStateError),
    /// A `Timeout` entered twice or outside a task (`RuntimeError`).
    Scope(ScopeError),
    /// A `TaskGroup` misused (`RuntimeError`).
    TaskGroupState(TaskGroupStateError),
    /// `QueueEmpty`, `QueueFull`, `QueueShutDown`, and `task_done`'s
    /// `ValueError`.
    Queue(QueueError),
    /// The primitives' `RuntimeError` / `ValueError` and `BrokenBarrierError`.
    Sync(SyncError),
    /// The executor refused a job (shut down, the loop closed).
    Executor(ExecutorError),
    /// `ValueError`.
    Value(ValueError),
    /// A panic caught at the loop boundary (a coroutine's or a job's).
    Panic(PanicError),
    /// `ExceptionGroup`: a `TaskGroup`'s failures.
    Group(ExceptionGroup),
    /// `OSError`.
    Io(io::Error),
    /// Any other error: the application's own.
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Cancelled(e) => fmt::Display::fmt(e, f),
            ErrorKind::Timeout(e) => fmt::Display::fmt(e, f),
            ErrorKind::InvalidState(e) => fmt::Display::fmt(e, f),
            ErrorKind::Loop(e) => fmt::Display::fmt(e, f),
            ErrorKind::TimeoutState(e) => fmt::Display::fmt(e, f),
            ErrorKind::Scope(e) => fmt::Display::fmt(e, f),
            ErrorKind::TaskGroupState(e) => fmt::Display::fmt(e, f),
            ErrorKind::Queue(e) => fmt::Display::fmt(e, f),
            ErrorKind::Sync(e) => fmt::Display::fmt(e, f),
            ErrorKind::Executor(e) => fmt::Display::fmt(e, f),
            ErrorKind::Value(e) => fmt::Display::fmt(e, f),
            ErrorKind::Panic(e) => fmt::Display::fmt(e, f),
            ErrorKind::Group(e) => fmt::Display::fmt(e, f),
            ErrorKind::Io(e) => fmt::Display::fmt(e, f),
            ErrorKind::Other(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl ErrorKind {
    /// The inner error, as a `std::error::Error`.
    fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        match self {
            ErrorKind::Cancelled(e) => e,
            ErrorKind::Timeout(e) => e,
            ErrorKind::InvalidState(e) => e,
            ErrorKind::Loop(e) => e,
            ErrorKind::TimeoutState(e) => e,
            ErrorKind::Scope(e) => e,
            ErrorKind::TaskGroupState(e) => e,
            ErrorKind::Queue(e) => e,
            ErrorKind::Sync(e) => e,
            ErrorKind::Executor(e) => e,
            ErrorKind::Value(e) => e,
            ErrorKind::Panic(e) => e,
            ErrorKind::Group(e) => e,
            ErrorKind::Io(e) => e,
            ErrorKind::Other(e) => &**e,
        }
    }

    /// asyncio's class name, for reprs (`CancelledError`, `TimeoutError`, ...).
    pub fn class_name(&self) -> &'static str {
        match self {
            ErrorKind::Cancelled(_) => "CancelledError",
            ErrorKind::Timeout(_) => "TimeoutError",
            ErrorKind::InvalidState(_) => "InvalidStateError",
            ErrorKind::Loop(_)
            | ErrorKind::TimeoutState(_)
            | ErrorKind::Scope(_)
            | ErrorKind::TaskGroupState(_)
            | ErrorKind::Executor(_) => "RuntimeError",
            ErrorKind::Queue(QueueError::Empty) => "QueueEmpty",
            ErrorKind::Queue(QueueError::Full) => "QueueFull",
            ErrorKind::Queue(QueueError::ShutDown) => "QueueShutDown",
            ErrorKind::Queue(_) => "ValueError",
            ErrorKind::Sync(SyncError::BrokenBarrier(_)) => "BrokenBarrierError",
            ErrorKind::Sync(SyncError::Value(_)) => "ValueError",
            ErrorKind::Sync(_) => "RuntimeError",
            ErrorKind::Value(_) => "ValueError",
            ErrorKind::Panic(_) => "panic",
            ErrorKind::Group(_) => "ExceptionGroup",
            ErrorKind::Io(_) => "OSError",
            ErrorKind::Other(_) => "Exception",
        }
    }
}

impl std::error::Error for ErrorKind {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.inner())
    }
}

/// aioloop's one error type: asyncio's exception hierarchy (see the
/// [module docs](self) for the tree).
///
/// Every aioloop error converts into it with `?`, and so does any
/// `std::error::Error + Send + Sync + 'static`, so one coroutine can await
/// tasks, queues, locks, `wait_for` and the executor, and call ordinary
/// fallible code, with no error enum of its own. A task's failure is an
/// `Error`; a cancellation that travels through one still ends its task
/// cancelled.
///
/// ```
/// use aioloop::{create_task, sleep, wait_for, Error};
/// use aioloop::queue::Queue;
/// use std::time::Duration;
///
/// async fn work(q: Queue<u32>) -> Result<u32, Error> {
///     let t = create_task(async { Ok(20) })?;      // LoopError
///     let a = t.await?;                            // Error
///     let b = q.get().await?;                      // QueueError
///     let c: u32 = "2".parse()?;                   // ParseIntError
///     sleep(Duration::ZERO).await?;                // CancelledError
///     let d = wait_for(async { Ok(0) }, Duration::from_secs(1)).await?;
///     Ok(a + b + c + d)
/// }
///
/// let out = aioloop::run(async {
///     let q = Queue::new(0);
///     q.put_nowait(20).unwrap();
///     work(q).await
/// });
/// assert_eq!(out.unwrap(), 42);
/// ```
#[derive(Clone)]
pub struct Error {
    // One pointer: `Result<(), Error>` is a word, and a task's outcome slot
    // stays small. Shared, because asyncio's exceptions are: a task's
    // exception reads the same from every handle, any number of times.
    inner: Arc<ErrorKind>,
}

impl Error {
    /// Wraps any error (the application's own, say), as `?` does.
    ///
    /// ```
    /// #[derive(Debug)]
    /// struct NotFound;
    /// impl std::fmt::Display for NotFound {
    ///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str("not found") }
    /// }
    /// impl std::error::Error for NotFound {}
    ///
    /// let e = aioloop::Error::new(NotFound);
    /// assert!(e.downcast_ref::<NotFound>().is_some());
    /// assert_eq!(e.to_string(), "not found");
    /// ```
    pub fn new<E: std::error::Error + Send + Sync + 'static>(e: E) -> Self {
        Error::from(e)
    }

    /// An error with a message only (Python's `Exception("message")`).
    ///
    /// ```
    /// let e = aioloop::Error::msg("bad input");
    /// assert_eq!(e.to_string(), "bad input");
    /// ```
    pub fn msg(message: impl fmt::Display + fmt::Debug + Send + Sync + 'static) -> Self {
        Error::from(Message(message))
    }

    /// A cancellation, with `cancel`'s message if any.
    ///
    /// ```
    /// let e = aioloop::Error::cancelled(Some("bye".into()));
    /// assert!(e.is_cancelled());
    /// assert_eq!(e.to_string(), "bye");
    /// ```
    pub fn cancelled(msg: Option<String>) -> Self {
        Error::from_kind(ErrorKind::Cancelled(CancelledError::new(msg)))
    }

    /// Wraps an error that is already boxed (as `anyhow`'s `from_boxed`):
    /// `?` cannot take a `Box<dyn Error>`, which is no `Error` itself.
    ///
    /// ```
    /// let b: Box<dyn std::error::Error + Send + Sync> = "bad".into();
    /// let e = aioloop::Error::from_boxed(b);
    /// assert_eq!(e.to_string(), "bad");
    /// ```
    pub fn from_boxed(e: Box<dyn std::error::Error + Send + Sync>) -> Self {
        match e.downcast::<CancelledError>() {
            Ok(c) => Error::from_kind(ErrorKind::Cancelled(*c)),
            Err(e) => match e.downcast::<io::Error>() {
                Ok(io) => Error::from_kind(ErrorKind::Io(*io)),
                Err(e) => Error::from_kind(ErrorKind::Other(e)),
            },
        }
    }

    pub(crate) fn from_kind(kind: ErrorKind) -> Self {
        Error {
            inner: Arc::new(kind),
        }
    }

    /// Which of asyncio's exceptions this is.
    ///
    /// ```
    /// use aioloop::{Error, ErrorKind, TimeoutError};
    ///
    /// let e = Error::from(TimeoutError);
    /// assert!(matches!(e.kind(), ErrorKind::Timeout(_)));
    /// ```
    pub fn kind(&self) -> &ErrorKind {
        &self.inner
    }

    /// The cancellation this error is, if it is one: a [`CancelledError`],
    /// or an error of the application's whose `source()` chain holds one.
    ///
    /// ```
    /// use aioloop::{CancelledError, Error};
    ///
    /// let e = Error::from(CancelledError::new(Some("stop".into())));
    /// assert_eq!(e.as_cancelled().unwrap().message(), Some("stop"));
    /// ```
    pub fn as_cancelled(&self) -> Option<&CancelledError> {
        match self.kind() {
            ErrorKind::Cancelled(c) => Some(c),
            ErrorKind::Other(e) => cancelled_in_chain(&**e),
            _ => None,
        }
    }

    /// True for a cancellation (asyncio's `CancelledError`).
    ///
    /// ```
    /// assert!(aioloop::Error::cancelled(None).is_cancelled());
    /// ```
    pub fn is_cancelled(&self) -> bool {
        self.as_cancelled().is_some()
    }

    /// True for asyncio's `TimeoutError`.
    ///
    /// ```
    /// assert!(aioloop::Error::from(aioloop::TimeoutError).is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind(), ErrorKind::Timeout(_))
    }

    /// True for asyncio's `InvalidStateError`.
    ///
    /// ```
    /// assert!(aioloop::Error::from(aioloop::InvalidStateError::AlreadyDone).is_invalid_state());
    /// ```
    pub fn is_invalid_state(&self) -> bool {
        matches!(self.kind(), ErrorKind::InvalidState(_))
    }

    /// True for a caught panic.
    ///
    /// ```
    /// let p = std::panic::catch_unwind(|| panic!("x")).unwrap_err();
    /// assert!(aioloop::Error::from(aioloop::PanicError::new(p)).is_panic());
    /// ```
    pub fn is_panic(&self) -> bool {
        matches!(self.kind(), ErrorKind::Panic(_))
    }

    /// The panic this error is, if it is one.
    ///
    /// ```
    /// let p = std::panic::catch_unwind(|| panic!("x")).unwrap_err();
    /// let e = aioloop::Error::from(aioloop::PanicError::new(p));
    /// assert_eq!(e.as_panic().unwrap().message(), "x");
    /// ```
    pub fn as_panic(&self) -> Option<&PanicError> {
        match self.kind() {
            ErrorKind::Panic(p) => Some(p),
            _ => None,
        }
    }

    /// The failures of a `TaskGroup` (asyncio's `ExceptionGroup`), if this
    /// is one.
    ///
    /// ```
    /// use aioloop::{Error, ExceptionGroup};
    ///
    /// let e = Error::from(ExceptionGroup::new("unhandled errors in a TaskGroup", vec![Error::msg("a")]));
    /// assert_eq!(e.as_group().unwrap().exceptions().len(), 1);
    /// ```
    pub fn as_group(&self) -> Option<&ExceptionGroup> {
        match self.kind() {
            ErrorKind::Group(g) => Some(g),
            _ => None,
        }
    }

    /// The inner error as `T`, if it is one (asyncio's `isinstance`): any
    /// of aioloop's error types, `io::Error`, or the application's own.
    ///
    /// ```
    /// use aioloop::{Error, LoopError};
    ///
    /// let e = Error::from(LoopError::Closed);
    /// assert!(matches!(e.downcast_ref::<LoopError>(), Some(LoopError::Closed)));
    /// assert!(e.downcast_ref::<std::io::Error>().is_none());
    /// ```
    pub fn downcast_ref<T: std::error::Error + 'static>(&self) -> Option<&T> {
        let inner: &(dyn std::error::Error + 'static) = self.kind().inner();
        match self.kind() {
            // An application error (or a `PutError`) may wrap aioloop's:
            // look along its `source()` chain.
            ErrorKind::Other(_) => {
                std::iter::successors(Some(inner), |e| e.source()).find_map(|e| e.downcast_ref())
            }
            _ => inner.downcast_ref::<T>(),
        }
    }
}

/// The `CancelledError` somewhere in `e`'s `source()` chain, if any: an
/// application error that wraps a cancellation still ends its task
/// cancelled.
fn cancelled_in_chain<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a CancelledError> {
    std::iter::successors(Some(e), |e| e.source()).find_map(|e| e.downcast_ref::<CancelledError>())
}

/// `Error::msg`'s payload.
struct Message<M>(M);

impl<M: fmt::Display> fmt::Display for Message<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl<M: fmt::Display> fmt::Debug for Message<M> {
    /// Python's `repr(Exception('message'))`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        py_repr(f, "Exception", Some(&self.0.to_string()))
    }
}

impl<M: fmt::Display> std::error::Error for Message<M> {}

/// Takes `e` as a `T`, if it is one. Resolved at compile time per `E`.
fn take_as<T: 'static, E: 'static>(e: &mut Option<E>) -> Option<T> {
    (e as &mut dyn Any).downcast_mut::<Option<T>>()?.take()
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for Error {
    /// Files `e` under its asyncio class: aioloop's own error types and
    /// `io::Error` by type (a cancellation inside a queue's, a lock's or the
    /// executor's error becomes [`ErrorKind::Cancelled`]), anything else as
    /// [`ErrorKind::Other`].
    fn from(e: E) -> Self {
        let mut e = Some(e);
        let kind = if let Some(c) = take_as::<CancelledError, E>(&mut e) {
            ErrorKind::Cancelled(c)
        } else if let Some(t) = take_as::<TimeoutError, E>(&mut e) {
            ErrorKind::Timeout(t)
        } else if let Some(s) = take_as::<InvalidStateError, E>(&mut e) {
            ErrorKind::InvalidState(s)
        } else if let Some(l) = take_as::<LoopError, E>(&mut e) {
            ErrorKind::Loop(l)
        } else if let Some(t) = take_as::<TimeoutStateError, E>(&mut e) {
            ErrorKind::TimeoutState(t)
        } else if let Some(s) = take_as::<ScopeError, E>(&mut e) {
            ErrorKind::Scope(s)
        } else if let Some(g) = take_as::<TaskGroupStateError, E>(&mut e) {
            match g {
                TaskGroupStateError::Loop(l) => ErrorKind::Loop(l),
                g => ErrorKind::TaskGroupState(g),
            }
        } else if let Some(q) = take_as::<QueueError, E>(&mut e) {
            match q {
                QueueError::Cancelled(c) => ErrorKind::Cancelled(c),
                q => ErrorKind::Queue(q),
            }
        } else if let Some(s) = take_as::<SyncError, E>(&mut e) {
            match s {
                SyncError::Cancelled(c) => ErrorKind::Cancelled(c),
                s => ErrorKind::Sync(s),
            }
        } else if let Some(x) = take_as::<ExecutorError, E>(&mut e) {
            match x {
                ExecutorError::Cancelled(c) => ErrorKind::Cancelled(c),
                ExecutorError::Panicked(p) => ErrorKind::Panic(p),
                x => ErrorKind::Executor(x),
            }
        } else if let Some(v) = take_as::<ValueError, E>(&mut e) {
            ErrorKind::Value(v)
        } else if let Some(p) = take_as::<PanicError, E>(&mut e) {
            ErrorKind::Panic(p)
        } else if let Some(g) = take_as::<ExceptionGroup, E>(&mut e) {
            ErrorKind::Group(g)
        } else if let Some(io) = take_as::<io::Error, E>(&mut e) {
            ErrorKind::Io(io)
        } else {
            match e.take() {
                Some(e) => ErrorKind::Other(Box::new(e)),
                None => unreachable!("each branch above takes `e` only when it returns"),
            }
        };
        Error::from_kind(kind)
    }
}

impl From<Error> for Box<dyn std::error::Error + Send + Sync + 'static> {
    fn from(e: Error) -> Self {
        Box::new(e.into_std())
    }
}

impl From<Error> for Box<dyn std::error::Error + 'static> {
    fn from(e: Error) -> Self {
        Box::new(e.into_std())
    }
}

impl Error {
    /// This error as a `std::error::Error` (for `Box<dyn Error>` and
    /// libraries that want one); its `source()` is the inner error.
    ///
    /// ```
    /// let e: Box<dyn std::error::Error + Send + Sync> = aioloop::Error::msg("x").into();
    /// assert_eq!(e.to_string(), "x");
    /// ```
    pub fn into_std(self) -> StdError {
        StdError(self)
    }
}

/// An [`Error`] as a `std::error::Error` (see [`Error::into_std`]).
#[derive(Clone, Debug)]
pub struct StdError(pub Error);

impl fmt::Display for StdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for StdError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.kind().inner().source()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.kind(), f)
    }
}

impl fmt::Debug for Error {
    /// asyncio's repr: `CancelledError('msg')`, `TimeoutError()`,
    /// `RuntimeError('Event loop is closed')`, `QueueShutDown()`,
    /// `BrokenBarrierError('Barrier aborted')`; a panic as `panic('msg')`;
    /// the application's own error with its own `Debug`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let class = self.kind().class_name();
        match self.kind() {
            ErrorKind::Cancelled(c) => py_repr(f, class, c.message()),
            ErrorKind::Timeout(_) => py_repr(f, class, None),
            ErrorKind::Queue(q) if !matches!(q, QueueError::TaskDoneTooManyTimes) => {
                py_repr(f, class, None)
            }
            ErrorKind::Queue(_) => py_repr(f, class, Some("task_done() called too many times")),
            ErrorKind::Sync(
                SyncError::Runtime(m) | SyncError::Value(m) | SyncError::BrokenBarrier(m),
            ) => py_repr(f, class, Some(m)),
            ErrorKind::Panic(p) => py_repr(f, class, Some(p.message())),
            ErrorKind::Group(g) => {
                write!(
                    f,
                    "ExceptionGroup({}, {:?})",
                    PyStr(g.message()),
                    g.exceptions()
                )
            }
            ErrorKind::Other(e) => fmt::Debug::fmt(e, f),
            ErrorKind::Io(e) => fmt::Debug::fmt(e, f),
            k => py_repr(f, class, Some(&k.to_string())),
        }
    }
}

/// `Class('message')` or `Class()`, as Python's `repr` of an exception.
fn py_repr(f: &mut fmt::Formatter<'_>, class: &str, msg: Option<&str>) -> fmt::Result {
    match msg {
        Some(m) => write!(f, "{class}({})", PyStr(m)),
        None => write!(f, "{class}()"),
    }
}

/// A string as Python's `repr` writes it: single quotes unless the text
/// holds one and no double quote.
struct PyStr<'a>(&'a str);

impl fmt::Display for PyStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let q = if s.contains('\'') && !s.contains('"') {
            '"'
        } else {
            '\''
        };
        write!(f, "{q}")?;
        for c in s.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\t' => f.write_str("\\t")?,
                '\r' => f.write_str("\\r")?,
                c if c == q => write!(f, "\\{c}")?,
                c => write!(f, "{c}")?,
            }
        }
        write!(f, "{q}")
    }
}

/// What a coroutine's output means to its task: a result, or an exception.
///
/// A coroutine returning `Result<T, Error>` gives a task whose result is
/// `T`; one returning a plain value gives a task that can only fail by
/// panicking or being cancelled. There is one `Result` implementation, so
/// `create_task(async { Ok(v) })` needs no annotation: the error type can
/// only be [`Error`]. Plain values are supported for `()`, `bool`, `char`,
/// the integer and float types, `String`, `&'static str`, `Vec<T>`,
/// `Option<T>`, `Box<T>` and tuples of up to four; for another type, return
/// `Ok(value)` or implement this trait (the body is one line).
///
/// ```
/// use aioloop::{Error, TaskOutput};
///
/// struct Report(u32);
/// impl TaskOutput for Report {
///     type Ok = Report;
///     fn into_result(self) -> Result<Report, Error> { Ok(self) }
/// }
/// ```
pub trait TaskOutput: 'static {
    /// The result type (asyncio's `task.result()`).
    type Ok: 'static;
    /// Splits the output into result or exception.
    fn into_result(self) -> Result<Self::Ok, Error>;
}

impl<T: 'static> TaskOutput for Result<T, Error> {
    type Ok = T;
    #[inline(always)]
    fn into_result(self) -> Result<T, Error> {
        self
    }
}

macro_rules! plain_output {
    ($($t:ty),*) => {$(
        impl TaskOutput for $t {
            type Ok = $t;
            #[inline(always)]
            fn into_result(self) -> Result<$t, Error> {
                Ok(self)
            }
        }
    )*};
}
plain_output!(
    (),
    bool,
    char,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    String,
    &'static str
);

impl<T: 'static> TaskOutput for Vec<T> {
    type Ok = Vec<T>;
    fn into_result(self) -> Result<Vec<T>, Error> {
        Ok(self)
    }
}
impl<T: 'static> TaskOutput for Option<T> {
    type Ok = Option<T>;
    fn into_result(self) -> Result<Option<T>, Error> {
        Ok(self)
    }
}
impl<T: 'static> TaskOutput for Box<T> {
    type Ok = Box<T>;
    fn into_result(self) -> Result<Box<T>, Error> {
        Ok(self)
    }
}

macro_rules! tuple_output {
    ($($t:ident),+) => {
        impl<$($t: 'static),+> TaskOutput for ($($t,)+) {
            type Ok = ($($t,)+);
            fn into_result(self) -> Result<Self::Ok, Error> {
                Ok(self)
            }
        }
    };
}
tuple_output!(A, B);
tuple_output!(A, B, C);
tuple_output!(A, B, C, D);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_asyncios_repr() {
        // Python 3.13: repr(asyncio.CancelledError('m')) == "CancelledError('m')",
        // repr(TimeoutError()) == 'TimeoutError()', repr(asyncio.QueueShutDown())
        // == 'QueueShutDown()', repr(RuntimeError("it's")) == 'RuntimeError("it\'s")'.
        assert_eq!(
            format!("{:?}", Error::cancelled(Some("m".into()))),
            "CancelledError('m')"
        );
        assert_eq!(format!("{:?}", Error::cancelled(None)), "CancelledError()");
        assert_eq!(format!("{:?}", Error::from(TimeoutError)), "TimeoutError()");
        assert_eq!(
            format!("{:?}", Error::from(QueueError::ShutDown)),
            "QueueShutDown()"
        );
        assert_eq!(
            format!(
                "{:?}",
                Error::from(SyncError::BrokenBarrier("Barrier aborted"))
            ),
            "BrokenBarrierError('Barrier aborted')"
        );
        assert_eq!(
            format!("{:?}", Error::from(LoopError::Closed)),
            "RuntimeError('Event loop is closed')"
        );
        assert_eq!(format!("{:?}", Error::msg("no")), "Exception('no')");
        assert_eq!(
            format!("{:?}", Error::from(ValueError::new("it's"))),
            "ValueError(\"it's\")"
        );
    }

    #[test]
    fn a_cancellation_keeps_its_kind_through_every_conversion() {
        let c = CancelledError::new(Some("bye".into()));
        for e in [
            Error::from(c.clone()),
            Error::from(SyncError::Cancelled(c.clone())),
            Error::from(QueueError::Cancelled(c.clone())),
            Error::from(ExecutorError::Cancelled(c.clone())),
            Error::from_boxed(Box::new(c.clone())),
        ] {
            assert!(matches!(e.kind(), ErrorKind::Cancelled(_)), "{e:?}");
            assert_eq!(e.as_cancelled(), Some(&c));
        }
    }

    #[test]
    fn an_error_is_one_pointer_and_crosses_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Error>();
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
        assert_eq!(
            std::mem::size_of::<Result<(), Error>>(),
            std::mem::size_of::<usize>()
        );
    }
}
