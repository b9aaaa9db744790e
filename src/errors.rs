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
    /// The operating system refused an I/O registration (for example, a closed fd).
    Io(io::Error),
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
            LoopError::Io(e) => fmt::Display::fmt(e, f),
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
        PanicError { message, payload }
    }

    /// The panic message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Gives back the original payload, for `std::panic::resume_unwind`.
    pub fn into_payload(self) -> Box<dyn Any + Send> {
        self.payload
    }
}

impl fmt::Debug for PanicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PanicError")
            .field("message", &self.message)
            .finish()
    }
}

impl fmt::Display for PanicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "panicked: {}", self.message)
    }
}

impl std::error::Error for PanicError {}
