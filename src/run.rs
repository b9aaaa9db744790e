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
//! Not yet mirrored: asyncio's shutdown of async generators (aioloop has
//! none), and the `unhandled exception
//! during asyncio.run() shutdown` report for a leftover task that fails
//! instead of ending cancelled (a [`TaskRef`](crate::TaskRef) cannot give its
//! exception; the loop's own never-retrieved report covers it).

use crate::errors::{LoopError, TaskError, TaskOutput};
use crate::event_loop::{get_running_loop, EventLoop, LoopRef};

/// What [`run`] returns: the loop's own errors outside, `main`'s outcome
/// inside — the shape of [`LoopRef::run_until_complete`].
pub type RunResult<F> = Result<
    Result<
        <<F as std::future::Future>::Output as TaskOutput>::Ok,
        TaskError<<<F as std::future::Future>::Output as TaskOutput>::Err>,
    >,
    LoopError,
>;

/// Runs `main` on a new event loop and closes the loop (asyncio's
/// `asyncio.run`).
///
/// Returns `main`'s outcome: its result, or its error, cancellation or
/// panic as a [`TaskError`]. Before closing, every task still pending is
/// cancelled and the loop runs until they are done. Fails with
/// [`LoopError::RunFromRunningLoop`] when a loop is already running on this
/// thread.
///
/// ```
/// use aioloop::{create_task, sleep};
/// use std::time::Duration;
///
/// let out = aioloop::run(async {
///     create_task(sleep(Duration::from_secs(3600))).unwrap(); // cancelled at exit
///     sleep(Duration::ZERO).await?;
///     Ok::<_, aioloop::CancelledError>("done")
/// });
/// assert_eq!(out.unwrap().unwrap(), "done");
/// ```
#[track_caller]
pub fn run<F>(main: F) -> RunResult<F>
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
///     sleep(Duration::from_secs(60)).await.unwrap();
///     get_running_loop().unwrap().time()
/// });
/// assert_eq!(out.unwrap().unwrap(), 60.0, "an instant, on the virtual clock");
/// ```
#[track_caller]
pub fn run_with<F>(
    loop_factory: impl FnOnce() -> Result<EventLoop, LoopError>,
    main: F,
) -> RunResult<F>
where
    F: std::future::Future + 'static,
    F::Output: TaskOutput,
{
    if get_running_loop().is_ok() {
        return Err(LoopError::RunFromRunningLoop);
    }
    let lp = loop_factory()?;
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

/// asyncio's `_cancel_all_tasks`: cancel what is left, then run the loop
/// until each has finished its cleanup.
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
    let _ = lp.run_until_complete(async move {
        for t in &to_cancel {
            let _ = t.wait_done().await;
        }
    });
}
