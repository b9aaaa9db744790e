//! A batch: the `call_soon_threadsafe` calls one drain took, as one entry
//! of the loop's ready queue.
//!
//! asyncio's `call_soon_threadsafe` appends a `Handle` to `_ready` per call.
//! aioloop's drain leaves the calls in their injection-queue slots and puts
//! one marker `Handle` per run of consecutive calls on the ready queue; when
//! the run phase reaches the marker, it runs those calls from the queue's
//! runner cursor (`queue.rs`). Draining a flood of posts then allocates one
//! handle per drain instead of one per call, and the ready queue and the
//! `call_soon` path are the same as for local callbacks.
//!
//! # Invariants
//!
//! - FIFO across both doors, as asyncio: a batch is queued where its calls
//!   would have been, and batches consume the queue in its order (a
//!   batch's calls are the ones before its `end` that no earlier batch
//!   ran), so the calls keep their places among local callbacks and task
//!   steps. A task wake or a stop between two calls ends a batch.
//! - Each call is a callback of its own for everything observable: a panic
//!   is caught per call and reported under the call's name and site, and
//!   the rest of the batch still runs; debug mode times, watches and
//!   reports each call (`run_handle_debug`); the stuck-task check runs
//!   between calls as between handles.
//! - A call cancelled from another thread before the runner reaches it is
//!   skipped, and its closure dropped on the loop's thread.
//! - Nothing is lost silently: a batch dropped before it ran (the loop
//!   closed) drops its calls, and each pending one logs the drop; a
//!   destructor that panics there is caught and reported, call by call.
//! - A batch is `!Send`: its calls run on the loop's thread.

use std::cell::Cell;
use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe, Location};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::queue::{self, Call};
use super::Remote;
use crate::errors::PanicError;
use crate::event_loop::exceptions::default_exception_handler;
use crate::event_loop::handle::{HandleInner, Invoke};
use crate::event_loop::{get_running_loop, ExceptionContext, Handle};

/// Calls a drain took, from the runner's position up to `end`.
pub(crate) struct RemoteBatch {
    remote: Arc<Remote>,
    end: usize,
    /// Still counted in `Remote::waiting_batches` (not started, not dropped).
    waiting: Cell<bool>,
    _loop_thread: PhantomData<Rc<()>>,
}

impl RemoteBatch {
    pub(super) fn new(remote: Arc<Remote>, end: usize) -> Self {
        remote.waiting_batches.fetch_add(1, Ordering::Relaxed);
        RemoteBatch {
            remote,
            end,
            waiting: Cell::new(true),
            _loop_thread: PhantomData,
        }
    }

    /// The marker the ready queue holds: one allocation per batch.
    pub(crate) fn into_handle(self) -> Handle {
        let inner: Rc<HandleInner<dyn Invoke>> =
            Rc::new(HandleInner::new(Location::caller(), self));
        Handle::from_inner(inner)
    }

    fn started(&self) {
        if self.waiting.replace(false) {
            self.remote.waiting_batches.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Gives `each` the calls of this batch still to run, in order, one at a
    /// time; a cancelled one is dropped instead. Were `each` to panic, the
    /// batch would resume after that call when entered again.
    pub(crate) fn run_each(&self, mut each: impl FnMut(Call)) {
        self.started();
        // A panic `each` caught itself (debug mode) left its record behind:
        // it must not name a later panic of this batch.
        let _ = queue::take_unwound();
        self.remote
            .queue
            .consume(self.end, queue::RAN, |call, won| {
                if won {
                    each(call)
                } else {
                    call.discard()
                }
            });
    }

    /// The handle to report a panic of this batch under: the call that
    /// panicked, named and placed as its own handle would be.
    pub(crate) fn panicked_handle(&self) -> Handle {
        match queue::take_unwound() {
            Some((name, site)) => call_handle(name, site),
            // Not a call's panic (nothing else in a batch runs user code):
            // name the batch.
            None => call_handle(std::any::type_name::<Self>(), Location::caller()),
        }
    }
}

/// A stand-alone handle for one call, for reports: what asyncio's per-call
/// `Handle` shows (its callback's name and site). Running it does nothing.
pub(crate) fn call_handle(name: &'static str, site: &'static Location<'static>) -> Handle {
    struct Named(&'static str);
    impl Invoke for Named {
        fn invoke(&self) {}
        fn release(&self) {}
        fn name(&self) -> &'static str {
            self.0
        }
    }
    let inner: Rc<HandleInner<dyn Invoke>> = Rc::new(HandleInner::new(site, Named(name)));
    Handle::from_inner(inner)
}

impl Invoke for RemoteBatch {
    /// Runs the calls as `run_ready` and `run_handle` run handles (debug
    /// mode has its own loop, in `run_handle_debug`).
    fn invoke(&self) {
        // Entered only from the run phase, inside `run_forever`.
        let Ok(lp) = get_running_loop() else {
            return;
        };
        let core = lp.core();
        self.run_each(|call| {
            // `run_ready` checks for stuck tasks after each handle.
            if !core.suspects.is_empty() {
                core.check_suspects();
            }
            // `run_handle`'s catch, per call: the rest of the batch runs.
            // Catching here rather than re-entering the batch from
            // `run_handle` keeps that hot path as it was (a loop there
            // cost every callback four instructions, measured).
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| call.run())) {
                let context = ExceptionContext::callback_panicked(
                    &self.panicked_handle(),
                    PanicError::new(payload),
                );
                lp.call_exception_handler(&context);
            }
        });
    }

    /// Nobody holds a batch's handle but the ready queue: never cancelled.
    fn release(&self) {}

    fn name(&self) -> &'static str {
        std::any::type_name::<Self>()
    }

    fn remote_batch(&self) -> Option<&RemoteBatch> {
        Some(self)
    }
}

impl Drop for RemoteBatch {
    /// Dropped before it ran: the loop closed (or was dropped) first. A
    /// loop that closes consumes every call first, so this finds calls only
    /// when the loop itself is being dropped: with no loop left to ask, a
    /// panicking destructor goes to the default handler.
    fn drop(&mut self) {
        self.started();
        self.remote
            .queue
            .consume(self.end, queue::DROPPED, |call, pending| {
                drop_call(call, pending, &mut |c| default_exception_handler(&c))
            });
    }
}

/// Drops a call the loop will never run; one that was still pending (not
/// cancelled) logs it. A destructor that panics is caught here, each on its
/// own (two panics in one unwind abort), and handed to `report`.
pub(super) fn drop_call(call: Call, was_pending: bool, report: &mut dyn FnMut(ExceptionContext)) {
    let site = call.site();
    let name = call.name();
    if let Err(payload) = catch_unwind(AssertUnwindSafe(|| call.discard())) {
        // `discard` left the call's name for a report further out: this is it.
        let _ = queue::take_unwound();
        let what = format!(
            "the call_soon_threadsafe callback {name} at {}:{}",
            site.file(),
            site.line()
        );
        report(
            ExceptionContext::ignored_at_close(&what, PanicError::new(payload))
                .with_handle(call_handle(name, site)),
        );
    }
    if was_pending {
        log::warn!(
            target: "asyncio",
            "call_soon_threadsafe callback scheduled at {}:{} was dropped: \
             the event loop closed before running it",
            site.file(),
            site.line()
        );
    }
}
