//! Exception handling: what happens to a panic the loop catches.
//!
//! asyncio routes every error it cannot raise to a caller — an exception in a
//! callback, an exception nobody retrieved — through
//! `loop.call_exception_handler(context)`, where `context` is a dict with a
//! `message` and optional `exception`, `handle`, `future`, `task` ... keys.
//! The default handler logs it on the `asyncio` logger
//! (`BaseEventLoop.default_exception_handler` in `Lib/asyncio/base_events.py`).
//! aioloop does the same with a struct for the dict and the `log` crate, target
//! `asyncio`, for the logger.
//!
//! # Invariants
//!
//! - A handler that panics does not take the loop down: the panic is caught
//!   and logged by the default handler as `Unhandled error in exception
//!   handler`, with the original context, as asyncio does.
//! - The handler is called with no loop state borrowed, so it may schedule
//!   callbacks, stop the loop or replace itself.
//! - A destructor that panics while the loop closes (dropping a pending
//!   callback, `call_soon_threadsafe` call, task future, reader or writer)
//!   is reported like a panicking callback, one report per destructor
//!   (`Exception ignored in the destructor of …`), and `close()` goes on:
//!   each drop is caught on its own, so two such panics never meet in one
//!   unwind (which would abort the process).

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use super::handle::Handle;
use super::LoopRef;
use crate::errors::PanicError;

/// A custom exception handler: `handler(loop, context)`, as in asyncio.
pub type ExceptionHandler = Rc<dyn Fn(&LoopRef, &ExceptionContext)>;

/// What went wrong, for the exception handler (asyncio's `context` dict).
///
/// ```
/// use aioloop::ExceptionContext;
///
/// let ctx = ExceptionContext::new("something odd");
/// assert_eq!(ctx.message, "something odd");
/// assert!(ctx.exception.is_none());
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ExceptionContext {
    /// The human-readable summary (asyncio's `context['message']`).
    pub message: String,
    /// The error, when there is one (asyncio's `context['exception']`).
    pub exception: Option<Rc<dyn std::error::Error>>,
    /// The callback it happened in (asyncio's `context['handle']`).
    pub handle: Option<Handle>,
    /// The task or future concerned, as its repr (asyncio's
    /// `context['task']` / `context['future']`): a report about a task that
    /// is being freed cannot hand out the task itself.
    pub task: Option<String>,
    /// The future (or task) whose failure nobody retrieved, as its repr
    /// (asyncio's `context['future']`).
    pub future: Option<String>,
    /// aioloop's explanation, beyond asyncio's message: what the task waited
    /// on, why nothing can wake it, where it was created.
    pub detail: Option<String>,
}

impl ExceptionContext {
    /// A context with a message only.
    pub fn new(message: impl Into<String>) -> Self {
        ExceptionContext {
            message: message.into(),
            exception: None,
            handle: None,
            task: None,
            future: None,
            detail: None,
        }
    }

    /// Adds the future concerned, as its repr.
    pub fn with_future(mut self, repr: impl Into<String>) -> Self {
        self.future = Some(repr.into());
        self
    }

    /// Adds the task (or future) concerned, as its repr.
    pub fn with_task(mut self, repr: impl Into<String>) -> Self {
        self.task = Some(repr.into());
        self
    }

    /// Adds aioloop's explanation.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds the error.
    pub fn with_exception(mut self, e: Rc<dyn std::error::Error>) -> Self {
        self.exception = Some(e);
        self
    }

    /// Adds the handle it happened in.
    pub fn with_handle(mut self, h: Handle) -> Self {
        self.handle = Some(h);
        self
    }

    /// The context of a panic caught while running `handle`.
    pub(crate) fn callback_panicked(handle: &Handle, panic: PanicError) -> Self {
        ExceptionContext::new(format!("Exception in callback {}", handle.describe()))
            .with_exception(Rc::new(panic))
            .with_handle(handle.clone())
    }

    /// The context of a panic caught while the loop dropped something it
    /// will never run (`what`: a pending callback, task, reader…), as it
    /// closed. asyncio's words for an exception raised where nobody can
    /// catch it, such as in `__del__`, are `Exception ignored in: <obj>`
    /// (`sys.unraisablehook`); this says what was dropped, and why.
    pub(crate) fn ignored_at_close(what: &str, panic: PanicError) -> Self {
        ExceptionContext::new(format!(
            "Exception ignored in the destructor of {what}, dropped as the event loop closed"
        ))
        .with_exception(Rc::new(panic))
    }
}

impl fmt::Debug for ExceptionContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ExceptionContext {
    /// The default handler's text: the message, then one `key: value` line
    /// per extra field, then the error — the shape of asyncio's log record.
    /// An empty message reads `Unhandled exception in event loop`, as
    /// asyncio's `default_exception_handler` has it (`if not message:`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str(NO_MESSAGE)?;
        } else {
            f.write_str(&self.message)?;
        }
        // asyncio writes the keys in sorted order (`for key in
        // sorted(context)`): future, handle, task. CPython 3.11.7, 3.12.1,
        // 3.13.0.
        if let Some(t) = &self.future {
            write!(f, "\nfuture: {t}")?;
        }
        if let Some(h) = &self.handle {
            write!(f, "\nhandle: {h:?}")?;
        }
        if let Some(t) = &self.task {
            write!(f, "\ntask: {t}")?;
        }
        if let Some(e) = &self.exception {
            write!(f, "\n{e}")?;
        }
        if let Some(d) = &self.detail {
            write!(f, "\n{d}")?;
        }
        Ok(())
    }
}

/// What the default handler logs for a context without a message:
/// asyncio's words (`Lib/asyncio/base_events.py`, `default_exception_handler`).
const NO_MESSAGE: &str = "Unhandled exception in event loop";

/// An error known only by its text (a failure reported after its value
/// is gone, or whose type has no `Error` impl).
#[derive(Debug)]
pub(crate) struct TextError(pub(crate) String);

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TextError {}

/// Reports a failure nobody retrieved (asyncio's `__del__` of a future or
/// task: `Task exception was never retrieved`), through the loop's
/// handler while the loop lives, else the default one.
pub(crate) fn report_unretrieved(
    core: Option<std::rc::Rc<super::LoopCore>>,
    what: &str,
    repr: String,
    failure: String,
) {
    let context = ExceptionContext::new(format!("{what} exception was never retrieved"))
        .with_future(repr)
        .with_exception(Rc::new(TextError(failure)));
    match core {
        Some(core) => LoopRef::from_core(core).call_exception_handler(&context),
        None => default_exception_handler(&context),
    }
}

/// asyncio's `default_exception_handler`: log the context at error level.
pub(crate) fn default_exception_handler(context: &ExceptionContext) {
    log::error!(target: "asyncio", "{context}");
}

/// Calls the custom handler if there is one, else the default one; a panic
/// in a custom handler is caught and reported by the default one.
pub(crate) fn call_exception_handler(
    lp: &LoopRef,
    handler: Option<ExceptionHandler>,
    context: &ExceptionContext,
) {
    let Some(handler) = handler else {
        default_exception_handler(context);
        return;
    };
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| handler(lp, context))) {
        let panic = PanicError::new(payload);
        let report = ExceptionContext {
            message: format!(
                "Unhandled error in exception handler\ncontext: {}",
                context.message
            ),
            exception: Some(Rc::new(panic)),
            handle: context.handle.clone(),
            task: context.task.clone(),
            future: context.future.clone(),
            detail: None,
        };
        default_exception_handler(&report);
    }
}
