//! Errors: asyncio's `RuntimeError`s of the loop, and panics caught at its boundary.
//!
//! asyncio signals loop misuse with `RuntimeError` and a fixed sentence
//! (`Event loop is closed`, `This event loop is already running`, ...). aioloop
//! keeps those sentences word for word in [`LoopError`]'s `Display`, so a log
//! line or a test reads the same in both worlds, but makes each one a variant
//! that code can match on.
//!
//! # Invariants
//!
//! - Misuse of the loop is always reported as a returned error, never as a
//!   panic inside the loop and never by silently dropping the work.
//! - The `Display` text of each variant is asyncio's text where asyncio has
//!   one (checked against CPython 3.11 in `tests/errors.rs`).

use std::any::Any;
use std::fmt;
use std::io;

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
/// `Display` shows.
///
/// ```
/// use aioloop::PanicError;
///
/// let caught = std::panic::catch_unwind(|| panic!("boom")).unwrap_err();
/// let err = PanicError::new(caught);
/// assert_eq!(err.message(), "boom");
/// ```
pub struct PanicError {
    // One pointer: a task's outcome slot holds this inline, so its size is
    // every task's size.
    inner: Box<PanicInner>,
}

struct PanicInner {
    message: String,
    payload: Box<dyn Any + Send>,
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
            inner: Box::new(PanicInner { message, payload }),
        }
    }

    /// The panic message.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// Gives back the original payload, for `std::panic::resume_unwind`.
    pub fn into_payload(self) -> Box<dyn Any + Send> {
        self.inner.payload
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

impl Clone for PanicError {
    /// A clone keeps the message; the payload (a `Box<dyn Any>`, which cannot
    /// be cloned) becomes the message as a `String`.
    fn clone(&self) -> Self {
        let message = self.inner.message.clone();
        PanicError {
            inner: Box::new(PanicInner {
                payload: Box::new(message.clone()),
                message,
            }),
        }
    }
}

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
    /// The result was already moved out by an earlier `await` of the
    /// handle by value (Rust cannot hand out a non-`Clone` value twice).
    ResultTaken,
}

impl fmt::Display for InvalidStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InvalidStateError::AlreadyDone => "invalid state",
            InvalidStateError::ResultNotSet => "Result is not set.",
            InvalidStateError::ExceptionNotSet => "Exception is not set.",
            InvalidStateError::ResultTaken => "Result was already taken by an await.",
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

/// How awaiting a task or a future failed: asyncio's three endings other
/// than a result.
///
/// `E` is the task's own error type (the `Err` of a coroutine returning
/// `Result<T, E>`), asyncio's "exception".
///
/// ```
/// use aioloop::{CancelledError, TaskError};
///
/// let e: TaskError<std::io::Error> = TaskError::Cancelled(CancelledError::new(None));
/// assert!(e.is_cancelled());
/// ```
#[derive(Clone, Debug)]
pub enum TaskError<E = std::convert::Infallible> {
    /// The task or future was cancelled.
    Cancelled(CancelledError),
    /// The coroutine panicked; the panic was caught at the loop boundary.
    Panicked(PanicError),
    /// The coroutine returned `Err(e)`, or `set_exception(e)` was called.
    Exception(E),
    /// The operation is not possible in the current state.
    InvalidState(InvalidStateError),
}

impl<E> TaskError<E> {
    /// True for [`TaskError::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, TaskError::Cancelled(_))
    }
}

impl<E: fmt::Display> fmt::Display for TaskError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Cancelled(c) => write!(f, "CancelledError: {c}"),
            TaskError::Panicked(p) => fmt::Display::fmt(p, f),
            TaskError::Exception(e) => fmt::Display::fmt(e, f),
            TaskError::InvalidState(s) => write!(f, "InvalidStateError: {s}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for TaskError<E> {}

impl<E> From<CancelledError> for TaskError<E> {
    fn from(c: CancelledError) -> Self {
        TaskError::Cancelled(c)
    }
}

/// A task's error type: asyncio's exception.
///
/// The one question aioloop asks of it: is this error a cancellation making
/// its way out of the coroutine (`?` on a `CancelledError`)? If so the task
/// ends *cancelled*, as asyncio's does when `CancelledError` propagates out of
/// a coroutine; otherwise it ends *failed* with this error. An error enum
/// that wraps `CancelledError` says so by overriding
/// [`as_cancelled`](Exception::as_cancelled):
///
/// ```
/// use aioloop::{CancelledError, Exception};
///
/// #[derive(Debug)]
/// enum AppError { Cancelled(CancelledError), Io(std::io::Error) }
///
/// impl Exception for AppError {
///     fn as_cancelled(&self) -> Option<&CancelledError> {
///         match self { AppError::Cancelled(c) => Some(c), _ => None }
///     }
/// }
/// ```
pub trait Exception: fmt::Debug + 'static {
    /// The cancellation this error carries, if it is one.
    fn as_cancelled(&self) -> Option<&CancelledError> {
        None
    }
}

impl Exception for std::convert::Infallible {}
impl Exception for CancelledError {
    fn as_cancelled(&self) -> Option<&CancelledError> {
        Some(self)
    }
}
impl<E: Exception> Exception for TaskError<E> {
    fn as_cancelled(&self) -> Option<&CancelledError> {
        match self {
            TaskError::Cancelled(c) => Some(c),
            TaskError::Exception(e) => e.as_cancelled(),
            _ => None,
        }
    }
}
/// The `CancelledError` somewhere in `e`'s `source()` chain, if any: an
/// error that wraps a cancellation (`ExecutorError::Cancelled`, say) and
/// was boxed by `?` still ends its task cancelled.
fn cancelled_in_chain<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a CancelledError> {
    std::iter::successors(Some(e), |e| e.source()).find_map(|e| e.downcast_ref::<CancelledError>())
}

impl Exception for Box<dyn std::error::Error> {
    fn as_cancelled(&self) -> Option<&CancelledError> {
        cancelled_in_chain(&**self)
    }
}
impl Exception for Box<dyn std::error::Error + Send + Sync> {
    fn as_cancelled(&self) -> Option<&CancelledError> {
        cancelled_in_chain(&**self)
    }
}
impl Exception for io::Error {}
impl Exception for TimeoutError {}
impl Exception for InvalidStateError {}
impl Exception for PanicError {}
impl Exception for LoopError {}
impl Exception for String {}
impl Exception for &'static str {}

/// What a coroutine's output means to its task: a result, or an exception.
///
/// A coroutine returning `Result<T, E>` (with `E:` [`Exception`]) gives a
/// task whose result is `T` and whose exception is `E`; one returning a plain
/// value gives a task that can only fail by panicking or being cancelled.
/// Plain values are supported for `()`, `bool`, `char`, the integer and
/// float types, `String`, `&'static str`, `Vec<T>`, `Option<T>`, `Box<T>`
/// and tuples of up to four; for another type, return `Ok::<_, Infallible>(value)` or
/// implement this trait (the body is one line).
///
/// ```
/// use aioloop::TaskOutput;
/// use std::convert::Infallible;
///
/// struct Report(u32);
/// impl TaskOutput for Report {
///     type Ok = Report;
///     type Err = Infallible;
///     fn into_result(self) -> Result<Report, Infallible> { Ok(self) }
/// }
/// ```
pub trait TaskOutput: 'static {
    /// The result type (asyncio's `task.result()`).
    type Ok: 'static;
    /// The exception type (asyncio's `task.exception()`).
    type Err: Exception;
    /// Splits the output into result or exception.
    fn into_result(self) -> Result<Self::Ok, Self::Err>;
}

impl<T: 'static, E: Exception> TaskOutput for Result<T, E> {
    type Ok = T;
    type Err = E;
    fn into_result(self) -> Result<T, E> {
        self
    }
}

macro_rules! plain_output {
    ($($t:ty),*) => {$(
        impl TaskOutput for $t {
            type Ok = $t;
            type Err = std::convert::Infallible;
            fn into_result(self) -> Result<$t, std::convert::Infallible> {
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
    type Err = std::convert::Infallible;
    fn into_result(self) -> Result<Vec<T>, std::convert::Infallible> {
        Ok(self)
    }
}
impl<T: 'static> TaskOutput for Option<T> {
    type Ok = Option<T>;
    type Err = std::convert::Infallible;
    fn into_result(self) -> Result<Option<T>, std::convert::Infallible> {
        Ok(self)
    }
}
impl<T: 'static> TaskOutput for Box<T> {
    type Ok = Box<T>;
    type Err = std::convert::Infallible;
    fn into_result(self) -> Result<Box<T>, std::convert::Infallible> {
        Ok(self)
    }
}

macro_rules! tuple_output {
    ($($t:ident),+) => {
        impl<$($t: 'static),+> TaskOutput for ($($t,)+) {
            type Ok = ($($t,)+);
            type Err = std::convert::Infallible;
            fn into_result(self) -> Result<Self::Ok, std::convert::Infallible> {
                Ok(self)
            }
        }
    };
}
tuple_output!(A, B);
tuple_output!(A, B, C);
tuple_output!(A, B, C, D);
