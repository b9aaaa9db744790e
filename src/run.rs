//! `aioloop::run(main)`: asyncio's `asyncio.run`, the whole life of a loop
//! in one call.
//!
//! asyncio's `run` (`Lib/asyncio/runners.py`, through `Runner`) refuses to
//! nest in a running loop, makes a new loop, runs `main` to completion, and
//! then — whatever `main` did — shuts down: it cancels every task still
//! pending, runs the loop until they have all finished (their cleanup runs,
//! and may await), and closes the loop. aioloop does the same, in the same
//! order.
//!
//! | asyncio | aioloop |
//! |---|---|
//! | `asyncio.run(main())` | [`run`]`(main)` |
//! | `asyncio.run(main(), loop_factory=f)` (3.12) | [`run_with`]`(f, main)` |
//! | `RuntimeError('asyncio.run() cannot be called from a running event loop')` | [`LoopError::RunFromRunningLoop`] |
//!
//! # Invariants
//!
//! - The loop is closed when `run` returns, whether `main` finished, failed,
//!   panicked, was cancelled or stopped the loop early.
//! - Every task pending when `main` ended was cancelled and ran until done
//!   before the loop closed. As in asyncio it is one round: a task created
//!   during that shutdown gets its first step but is not cancelled in turn;
//!   closing the loop drops it.
//!
//! - The default executor is shut down, waiting for its running jobs (at
//!   most 300 s, as 3.12), before the loop closes.
//!
//! - A leftover task that ends in a failure other than its cancellation is
//!   reported through the exception handler as `unhandled exception during
//!   asyncio.run() shutdown`, with the exception and the task, and counts
//!   as retrieved (asyncio's `_cancel_all_tasks`).
//!
//! Not mirrored: asyncio's shutdown of async generators (aioloop has none).

use crate::errors::{Error, LoopError, TaskOutput};
use crate::event_loop::exceptions::ExceptionContext;
use crate::event_loop::{get_running_loop, EventLoop, LoopRef};

/// Runs `main` on a new event loop and closes the loop (asyncio's
/// `asyncio.run`).
///
/// Returns `main`'s outcome — its result, or its error, cancellation or
/// panic — or the loop's own refusal, all as one `Result`. Before closing,
/// every task still pending is cancelled and the loop runs until they are
/// done. Fails with `asyncio.run() cannot be called from a running event
/// loop` ([`LoopError::RunFromRunningLoop`]) when a loop is already running
/// on this thread.
///
/// ```
/// use aioloop::{create_task, sleep};
/// use std::time::Duration;
///
/// let out = aioloop::run(async {
///     create_task(sleep(Duration::from_secs(3600)))?; // cancelled at exit
///     sleep(Duration::ZERO).await?;
///     Ok("done")
/// });
/// assert_eq!(out.unwrap(), "done");
/// ```
#[track_caller]
pub fn run<F>(main: F) -> Result<<F::Output as TaskOutput>::Ok, Error>
where
    F: std::future::Future + 'static,
    F::Output: TaskOutput,
{
    run_with(EventLoop::new, main)
}

/// [`run`] on a loop made by `loop_factory` (asyncio 3.12's `loop_factory`
/// argument): for instance [`EventLoop::with_virtual_clock`] in tests.
///
/// ```
/// use aioloop::{get_running_loop, run_with, sleep, EventLoop};
/// use std::time::Duration;
///
/// let out = run_with(EventLoop::with_virtual_clock, async {
///     sleep(Duration::from_secs(60)).await?;
///     Ok(get_running_loop()?.time())
/// });
/// assert_eq!(out.unwrap(), 60.0, "an instant, on the virtual clock");
/// ```
#[track_caller]
pub fn run_with<F>(
    loop_factory: impl FnOnce() -> Result<EventLoop, LoopError>,
    main: F,
) -> Result<<F::Output as TaskOutput>::Ok, Error>
where
    F: std::future::Future + 'static,
    F::Output: TaskOutput,
{
    if get_running_loop().is_ok() {
        return Err(LoopError::RunFromRunningLoop.into());
    }
    let lp = loop_factory()?;
    // `main` becomes a task here, so that its result can be moved out
    // whatever its type (`run_until_complete` of a plain future does the
    // same).
    let out = lp.run_until_complete(main);
    // asyncio's `Runner.close`: shut down even when `main` did not complete
    // (the loop was stopped early), which leaves `main`'s task among those
    // to cancel.
    cancel_all_tasks(&lp);
    // asyncio 3.9+: wait for the default executor's jobs (3.12: at most
    // 300 s) before closing.
    let shutdown = lp.shutdown_default_executor(Some(std::time::Duration::from_secs(300)));
    let _ = lp.run_until_complete(shutdown);
    lp.close()?;
    out
}

/// asyncio's `_cancel_all_tasks`: cancel what is left, run the loop until
/// each has finished its cleanup, then report each that ended in a failure
/// other than its cancellation (`unhandled exception during asyncio.run()
/// shutdown`).
fn cancel_all_tasks(lp: &LoopRef) {
    let to_cancel = lp.all_tasks();
    if to_cancel.is_empty() {
        return;
    }
    for t in &to_cancel {
        t.cancel();
    }
    // Nobody cancels this gathering task, so `wait_done` only returns once
    // its task is done; and a stop() from a leftover task, which would end
    // this run early, leaves the rest to `close`, as asyncio's would.
    let waited = to_cancel.clone();
    let _ = lp.run_until_complete(async move {
        for t in &waited {
            let _ = t.wait_done().await;
        }
    });
    for t in &to_cancel {
        if !t.done() || t.cancelled() {
            continue;
        }
        if let Some(e) = t.failure() {
            let mut context =
                ExceptionContext::new("unhandled exception during asyncio.run() shutdown")
                    .with_task(format!("{t:?}"));
            context.exception = Some(std::rc::Rc::new(e.into_std()));
            lp.call_exception_handler(&context);
        }
    }
}
