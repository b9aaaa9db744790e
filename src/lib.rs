//! # aioloop — Python's asyncio event loop, rebuilt in Rust on mio
//!
//! aioloop is an event loop with asyncio's semantics — the same names, the
//! same ordering guarantees, the same error messages — written from scratch
//! on [`mio`], with no async runtime underneath. This page is the map.
//!
//! ```
//! use aioloop::EventLoop;
//! use std::time::Duration;
//!
//! let lp = EventLoop::with_virtual_clock().unwrap();
//! lp.call_soon(|| println!("soon")).unwrap();
//! let r = lp.loop_ref();
//! lp.call_later(Duration::from_secs(1), move || {
//!     println!("one second later");
//!     r.stop();
//! })
//! .unwrap();
//! lp.run_forever().unwrap();
//! lp.close().unwrap();
//! ```
//!
//! ## The layers, bottom up
//!
//! | layer | module | knows about | asyncio |
//! |---|---|---|---|
//! | reactor | [`reactor`] | fds, tokens, readiness (mio) | `selectors` |
//! | timer wheel | [`time::wheel`] | deadlines and keys, nothing else | the `_scheduled` heap |
//! | clock | `time::clock` | monotonic or virtual nanoseconds | `time.monotonic`, `TestLoop` |
//! | handles, ready queue | `event_loop::handle`, `event_loop::ready` | callbacks | `Handle`, `_ready` |
//! | fd table | `event_loop::io` | which callback serves which fd | selector key data |
//! | the loop | [`EventLoop`], [`LoopRef`] | all of the above | `BaseEventLoop` |
//! | remote side | `remote`, [`LoopHandle`] | work injected from other threads: wakes, `call_soon_threadsafe`, `stop`, `run_coroutine_threadsafe` | the self-pipe |
//! | executor | `executor`, [`ThreadPool`] | blocking jobs on worker threads | `run_in_executor` |
//! | task slab, wakers | `task_slab` | task ids, aioloop's waker vtable | — |
//! | futures, tasks | [`Future`], [`Task`], `outcome`, `waiters` | steps, cancellation, waiters | `Future`, `Task` |
//! | combinators | `combinators` | sleep, wait_for, timeout, shield, gather, wait, TaskGroup | `tasks.py`, `timeouts.py`, `taskgroups.py` |
//! | sync primitives, queues | [`sync`], [`queue`] | locks, events, conditions, semaphores, barriers, queues on `waiters::WaitList` | `locks.py`, `queues.py` |
//! | diagnostics | [`debug`], `stuck`, [`dump`] | debug mode, the watchdog, the stuck-task proof, the task dump | `base_events.py`'s debug paths, `Task.__del__` |
//!
//! The lower layers never reach up: the reactor knows nothing of callbacks,
//! the wheel nothing of clocks (`tests/layering.rs` keeps it so).
//!
//! ## Reading one iteration
//!
//! Open the files in this order to follow `run_once` (the phases are drawn in
//! `docs/LOOP_ITERATION.md`):
//!
//! 1. `src/event_loop/run_once.rs` — the six phases, one method each;
//! 2. `src/reactor/mod.rs` — what phase 2 (`poll_io`) waits on;
//! 3. `src/event_loop/io.rs` — phase 3 (`dispatch_io_events`) and phase 6
//!    (`queue_level_rechecks`): asyncio's level-triggered readers on mio's
//!    edge triggers;
//! 4. `src/time/wheel.rs` — phase 4 (`collect_due_timers`);
//! 5. `src/event_loop/handle.rs` and `ready.rs` — what phase 5 (`run_ready`) runs;
//! 6. `src/event_loop/exceptions.rs` — where a panicking callback ends up.
//!
//! Then one task step: `src/tasks.rs` (`TaskCell::step`, the cancellation
//! protocol), `src/task_slab/mod.rs` (the waker and how a wake reaches the
//! ready queue), `src/waiters.rs` (who waits on what), `src/futures.rs`.
//!
//! ## asyncio → aioloop
//!
//! | asyncio | aioloop |
//! |---|---|
//! | `asyncio.new_event_loop()` | [`EventLoop::new`] (owner; dropping it closes the loop) |
//! | `TestLoop` (virtual clock) | [`EventLoop::with_virtual_clock`], [`LoopRef::advance_time`] |
//! | `loop.call_soon(cb)` → `Handle` | [`LoopRef::call_soon`] → [`Handle`] |
//! | `loop.call_later(delay, cb)`, `call_at(when, cb)` → `TimerHandle` | [`LoopRef::call_later`], [`LoopRef::call_at`] → [`TimerHandle`] |
//! | `Handle.cancel()`, `cancelled()`, `TimerHandle.when()` | same names |
//! | `loop.time()` | [`LoopRef::time`] (seconds, `f64`) |
//! | `run_forever`, `stop`, `close`, `is_running`, `is_closed` | same names, on [`LoopRef`] |
//! | `asyncio.get_running_loop()` | [`get_running_loop`] |
//! | `add_reader`, `add_writer`, `remove_reader`, `remove_writer` | same names, on raw fds |
//! | `set_exception_handler`, `call_exception_handler`, `default_exception_handler` | same names; the context is [`ExceptionContext`] |
//! | the exception hierarchy (`CancelledError`, `TimeoutError`, `RuntimeError`, `OSError`…) | one [`Error`] that `?` reaches from every awaitable; [`ErrorKind`] names the class |
//! | `RuntimeError('Event loop is closed')` … | [`LoopError`], same texts |
//! | `Future`, `Task`, `create_task`, `run_until_complete`, `asyncio.run` | [`Future`], [`Task`], [`create_task`], [`LoopRef::run_until_complete`], [`run()`] |
//! | `CancelledError` at an `await`; `cancel`, `cancelling`, `uncancel` | `Err(`[`CancelledError`]`)` at aioloop awaitables; same names |
//! | `sleep`, `wait_for`, `timeout`, `shield`, `gather`, `wait`, `as_completed`, `TaskGroup` | same names |
//! | `Queue`, `LifoQueue`, `PriorityQueue`, `QueueShutDown`, `task_done`, `join`, `shutdown` | [`queue::Queue`], [`queue::LifoQueue`], [`queue::PriorityQueue`], [`queue::QueueError`], same names |
//! | `call_soon_threadsafe`, `run_coroutine_threadsafe`, `run_in_executor` | [`LoopHandle`], [`ConcurrentFuture`], [`LoopRef::run_in_executor`] |
//! | `Lock`, `Event`, `Condition`, `Semaphore`, `BoundedSemaphore`, `Barrier` | [`sync`] |
//! | `set_debug`, slow callbacks, `Task was destroyed but it is pending!` … | [`LoopRef::set_debug`], [`debug`], [`LoopRef::dump_tasks`]; see `docs/DEBUGGING.md` |
//!
//! The full table is `docs/ASYNCIO_MAPPING.md`.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

pub mod combinators;
pub mod debug;
pub mod dump;
mod errors;
pub mod event_loop;
pub mod futures;
mod outcome;
pub mod queue;
pub mod reactor;
pub mod remote;
mod stuck;
pub mod sync;
mod task_slab;
pub mod tasks;
pub mod time;
mod waiters;

pub use waiters::WaitKind;

pub use combinators::sleep::{sleep, Sleep};
pub use errors::{
    CancelledError, Error, ErrorKind, ExceptionGroup, InvalidStateError, LoopError, PanicError,
    StdError, TaskOutput, TimeoutError, ValueError,
};
pub use event_loop::{
    get_running_loop, EventLoop, ExceptionContext, ExceptionHandler, Handle, LoopRef, TimerHandle,
};
pub use futures::{Future, FutureTake};
pub use remote::concurrent::ConcurrentFuture;
pub use remote::{CallStatus, LoopHandle, ThreadsafeHandle};
pub use tasks::{
    all_tasks, create_task, current_task, DoneCallbackId, Task, TaskAwait, TaskRef, WaitDone,
};

pub mod run;
pub use combinators::gather::{create_tasks, gather, Gather, GatherAll};
pub use combinators::shield::{shield, Shield};
pub use combinators::task_group::{TaskGroup, TaskGroupStateError};
pub use combinators::timeout::{
    timeout, timeout_at, ScopeError, Timeout, TimeoutState, TimeoutStateError,
};
pub use combinators::wait::{
    as_completed, wait, AsCompleted, CompletedItem, DonePending, ReturnWhen, Wait,
};
pub use combinators::wait_for::{wait_for, IntoTask, WaitFor};
pub use run::{run, run_with};
pub mod executor;
pub use executor::{ExecutorError, ExecutorFuture, ThreadPool};

/// The README's examples, compiled and run as doc tests so that they stay
/// true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// `docs/DEBUGGING.md`'s examples, the `compile_fail` proof that the loop
/// cannot be used from another thread included.
#[cfg(doctest)]
#[doc = include_str!("../docs/DEBUGGING.md")]
pub struct DebuggingDoctests;
