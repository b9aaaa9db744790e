//! The executor: blocking functions run on a thread pool, awaited from the loop.
//!
//! asyncio's `loop.run_in_executor(executor, func)` hands `func` to a
//! `concurrent.futures.ThreadPoolExecutor` and wraps the `concurrent.futures`
//! future in an asyncio future that the loop completes from its self-pipe.
//! aioloop does the same with two pieces:
//!
//! - [`ThreadPool`], the `ThreadPoolExecutor`: `Send + Sync`, jobs on a
//!   `crossbeam-channel`, workers named `aioloop-executor-N` started lazily
//!   (one per submitted job while no worker is idle, up to
//!   [`max_workers`](ThreadPool::max_workers)), and `shutdown(wait)`.
//! - [`ExecutorFuture`], what [`LoopRef::run_in_executor`] returns: the job
//!   and the awaiting task share one slot (`Arc<Mutex<..>>`). The worker
//!   stores the outcome, then wakes the task's [`Waker`]; from another thread
//!   that wake goes through the loop's injection queue and wakes the reactor,
//!   so a loop blocked in `epoll` while the job runs comes back at once.
//!
//! The loop's *default executor* (asyncio's `_default_executor`) is created
//! on first use with `min(32, cpus + 4)` workers, CPython's default, and can
//! be replaced ([`LoopRef::set_default_executor`]) or shut down while the
//! loop keeps running ([`LoopRef::shutdown_default_executor`]).
//!
//! | asyncio / concurrent.futures | aioloop |
//! |---|---|
//! | `loop.run_in_executor(None, f)` | [`LoopRef::run_in_executor`]`(f)` |
//! | `loop.run_in_executor(pool, f)` | [`LoopRef::run_in_executor_on`]`(&pool, f)` |
//! | `loop.set_default_executor(pool)` | [`LoopRef::set_default_executor`] |
//! | `await loop.shutdown_default_executor(timeout)` | [`LoopRef::shutdown_default_executor`] |
//! | `ThreadPoolExecutor(max_workers)` | [`ThreadPool::new`] |
//! | `executor.submit(f)` | [`ThreadPool::submit`] |
//! | `executor.shutdown(wait)` | [`ThreadPool::shutdown`] |
//! | `RuntimeError('cannot schedule new futures after shutdown')` | [`ExecutorError::Shutdown`] |
//! | `RuntimeError('Executor shutdown has been called')` | [`ExecutorError::DefaultExecutorShutdown`] |
//!
//! # Invariants
//!
//! - A job runs exactly once, to its end, even if nobody awaits it any more:
//!   a thread cannot be interrupted, so cancelling the awaiting task (asyncio
//!   cancels the wrapping future, not the running call) only abandons the
//!   outcome, which is then dropped on the worker, never handed out.
//! - A panic in a job is caught on the worker and becomes the awaited
//!   [`ExecutorError::Panicked`]; the worker goes on serving jobs.
//! - After `shutdown`, the pool refuses new jobs; the jobs already queued
//!   still run (`cancel_futures=False`), and `shutdown(true)` returns once
//!   they have and every worker has exited.
//! - The loop is never blocked by the executor: waiting for a shutdown
//!   happens on a helper thread, as asyncio's `_do_shutdown` does.
//! - A worker counts itself idle *before* it wakes the awaiter, so a task
//!   awaiting jobs one after another keeps using one thread.
//!
//! # Not yet mirrored
//!
//! asyncio's `close()` shuts the default executor down without waiting;
//! here that happens when the loop is freed (the `Drop` of its
//! `DefaultExecutor` field), and `close()` only makes `run_in_executor`
//! fail with `Event loop is closed`. `aioloop::run` does not yet await
//! `shutdown_default_executor(300 s)` before closing, as `asyncio.run` does.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;

use crate::errors::{CancelledError, LoopError, PanicError};
use crate::event_loop::LoopRef;
use crate::tasks::take_cancel_request;

/// A queued job. It is given the pool's idle count, to count its worker
/// idle *before* waking the awaiter: the awaiter's next job then finds an
/// idle worker instead of starting a thread (CPython releases its idle
/// semaphore after the work item, where the GIL makes that race rare).
type Job = Box<dyn FnOnce(&AtomicUsize) + Send + 'static>;

/// A pool of worker threads for blocking functions (Python's
/// `concurrent.futures.ThreadPoolExecutor`).
///
/// Workers are started as jobs arrive, one per job while none is idle, up to
/// `max_workers`, and named `aioloop-executor-N` (N counts from 0 per pool).
/// Dropping the last `Arc` of a pool shuts it down without waiting: queued
/// jobs still run, then the workers exit.
///
/// ```
/// use aioloop::{EventLoop, ThreadPool};
///
/// let pool = ThreadPool::new(2);
/// let lp = EventLoop::new().unwrap();
/// let v = lp.run_until_complete(async move {
///     Ok(pool.submit(|| 6 * 7)?.await?)
/// }).unwrap();
/// assert_eq!(v, 42);
/// ```
pub struct ThreadPool {
    max_workers: usize,
    /// Workers blocked on the queue with nothing to do (CPython's
    /// `_idle_semaphore`): a job is only given a new thread when this is 0.
    idle: Arc<AtomicUsize>,
    jobs: Receiver<Job>,
    state: Mutex<PoolState>,
}

struct PoolState {
    /// `None` once shut down: dropping the only sender is what tells the
    /// workers, once the queue is empty, that no job will ever come.
    sender: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl ThreadPool {
    /// A pool of at most `max_workers` threads (at least 1: CPython refuses
    /// 0 with `max_workers must be greater than 0`, a Rust caller gets 1).
    /// No thread starts before the first job.
    ///
    /// ```
    /// assert_eq!(aioloop::ThreadPool::new(4).max_workers(), 4);
    /// ```
    pub fn new(max_workers: usize) -> ThreadPool {
        let (sender, jobs) = crossbeam_channel::unbounded();
        ThreadPool {
            max_workers: max_workers.max(1),
            idle: Arc::new(AtomicUsize::new(0)),
            jobs,
            state: Mutex::new(PoolState {
                sender: Some(sender),
                workers: Vec::new(),
            }),
        }
    }

    /// A pool of CPython's default size, `min(32, cpus + 4)`: what the
    /// loop's default executor is.
    ///
    /// ```
    /// let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    /// assert_eq!(aioloop::ThreadPool::with_default_size().max_workers(), (cpus + 4).min(32));
    /// ```
    pub fn with_default_size() -> ThreadPool {
        ThreadPool::new(default_max_workers())
    }

    /// The most threads this pool runs at once.
    pub fn max_workers(&self) -> usize {
        self.max_workers
    }

    /// How many worker threads were started so far (they live until
    /// shutdown).
    pub fn workers(&self) -> usize {
        self.state.lock().workers.len()
    }

    /// True once [`shutdown`](ThreadPool::shutdown) was called.
    pub fn is_shutdown(&self) -> bool {
        self.state.lock().sender.is_none()
    }

    /// Queues `f` and returns the future of its outcome
    /// (`executor.submit(f)`), which any async code can await.
    ///
    /// Fails at once, as CPython's `submit` raises, with
    /// [`ExecutorError::Shutdown`] after [`shutdown`](ThreadPool::shutdown),
    /// or [`ExecutorError::Spawn`] if the pool has no thread and the OS
    /// refuses to start one.
    ///
    /// ```
    /// use aioloop::ThreadPool;
    ///
    /// let pool = ThreadPool::new(1);
    /// pool.shutdown(true);
    /// let err = pool.submit(|| ()).err().unwrap();
    /// assert_eq!(err.to_string(), "cannot schedule new futures after shutdown");
    /// ```
    pub fn submit<F, R>(&self, f: F) -> Result<ExecutorFuture<R>, ExecutorError>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        let slot = Arc::new(Slot {
            state: Mutex::new(SlotState::Pending(None)),
        });
        let job_slot = slot.clone();
        self.execute(Box::new(move |idle| {
            let out = catch_unwind(AssertUnwindSafe(f)).map_err(PanicError::new);
            idle.fetch_add(1, Ordering::AcqRel);
            // An abandoned result is dropped here, and a panicking
            // destructor must not kill the worker: nobody is left to tell.
            let _ = catch_unwind(AssertUnwindSafe(|| job_slot.complete(out)));
        }))?;
        Ok(ExecutorFuture {
            state: FutState::Waiting(slot),
        })
    }

    fn execute(&self, job: Job) -> Result<(), ExecutorError> {
        let mut state = self.state.lock();
        let Some(sender) = state.sender.clone() else {
            return Err(ExecutorError::Shutdown);
        };
        // CPython's `_adjust_thread_count`: an idle worker takes the job;
        // otherwise a new one is started while below the maximum.
        let took_idle = self
            .idle
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok();
        if !took_idle && state.workers.len() < self.max_workers {
            match self.spawn_worker(state.workers.len()) {
                Ok(w) => state.workers.push(w),
                // The running workers will take the job in time.
                Err(_) if !state.workers.is_empty() => {}
                Err(e) => return Err(ExecutorError::Spawn(Arc::new(e))),
            }
        }
        // Cannot fail: `self.jobs` keeps the channel connected.
        let _ = sender.send(job);
        Ok(())
    }

    fn spawn_worker(&self, n: usize) -> io::Result<JoinHandle<()>> {
        let jobs = self.jobs.clone();
        let idle = self.idle.clone();
        thread::Builder::new()
            .name(format!("aioloop-executor-{n}"))
            .spawn(move || {
                // Ends when the pool is shut down and the queue is empty.
                while let Ok(job) = jobs.recv() {
                    // Jobs are wrapped by `submit` and never unwind.
                    job(&idle);
                }
            })
    }

    /// Stops accepting jobs (`executor.shutdown(wait)`). The jobs already
    /// queued still run; with `wait`, returns once they have and every
    /// worker thread has exited. Calling it again is harmless.
    ///
    /// Called from one of this pool's own jobs, `wait` does not wait for
    /// that job's own thread (it would wait for itself forever).
    pub fn shutdown(&self, wait: bool) {
        let workers = {
            let mut state = self.state.lock();
            state.sender = None;
            if !wait {
                return;
            }
            std::mem::take(&mut state.workers)
        };
        let me = thread::current().id();
        for w in workers {
            if w.thread().id() != me {
                // A worker never panics: jobs are run under `catch_unwind`.
                let _ = w.join();
            }
        }
    }
}

impl fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.lock();
        f.debug_struct("ThreadPool")
            .field("max_workers", &self.max_workers)
            .field("workers", &state.workers.len())
            .field("shutdown", &state.sender.is_none())
            .finish()
    }
}

/// CPython's `min(32, (os.cpu_count() or 1) + 4)`.
fn default_max_workers() -> usize {
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    (cpus + 4).min(32)
}

/// Why awaiting an executor job gave no result.
///
/// The `Display` texts are asyncio's / `concurrent.futures`' where they have
/// one. With `?` it becomes an [`Error`](crate::Error): `Cancelled` a
/// cancellation (the task ends *cancelled*, as an asyncio task does when
/// `CancelledError` leaves it), `Panicked` a panic, the rest
/// [`ErrorKind::Executor`](crate::ErrorKind::Executor).
///
/// ```
/// use aioloop::{CancelledError, Error, ExecutorError};
///
/// let e = Error::from(ExecutorError::from(CancelledError::new(None)));
/// assert!(e.is_cancelled());
/// assert_eq!(ExecutorError::Shutdown.to_string(), "cannot schedule new futures after shutdown");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum ExecutorError {
    /// The awaiting task was cancelled; the job (if it started) runs on and
    /// its result is dropped.
    Cancelled(CancelledError),
    /// The job panicked; the panic was caught on the worker.
    Panicked(PanicError),
    /// The pool was shut down before the job was submitted.
    Shutdown,
    /// `run_in_executor` on the default executor after
    /// `shutdown_default_executor` (or `close`) was called.
    DefaultExecutorShutdown,
    /// The loop is closed (`Event loop is closed`).
    Closed,
    /// The pool had no thread and the OS refused to start one.
    Spawn(Arc<io::Error>),
}

impl ExecutorError {
    /// True for [`ExecutorError::Cancelled`].
    pub fn is_cancelled(&self) -> bool {
        matches!(self, ExecutorError::Cancelled(_))
    }
}

impl fmt::Display for ExecutorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecutorError::Cancelled(c) => write!(f, "CancelledError: {c}"),
            ExecutorError::Panicked(p) => fmt::Display::fmt(p, f),
            ExecutorError::Shutdown => f.write_str("cannot schedule new futures after shutdown"),
            ExecutorError::DefaultExecutorShutdown => {
                f.write_str("Executor shutdown has been called")
            }
            ExecutorError::Closed => fmt::Display::fmt(&LoopError::Closed, f),
            ExecutorError::Spawn(e) => write!(f, "can't start new thread: {e}"),
        }
    }
}

impl std::error::Error for ExecutorError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ExecutorError::Cancelled(c) => Some(c),
            ExecutorError::Panicked(p) => Some(p),
            ExecutorError::Spawn(e) => Some(&**e),
            ExecutorError::Shutdown
            | ExecutorError::DefaultExecutorShutdown
            | ExecutorError::Closed => None,
        }
    }
}

impl From<CancelledError> for ExecutorError {
    fn from(c: CancelledError) -> Self {
        ExecutorError::Cancelled(c)
    }
}

/// Where a job leaves its outcome for the awaiting side.
struct Slot<R> {
    state: Mutex<SlotState<R>>,
}

enum SlotState<R> {
    /// The job has not finished; the waker of whoever polled last.
    Pending(Option<Waker>),
    /// Finished, not yet taken.
    Done(Result<R, PanicError>),
    /// Taken, or abandoned by a cancelled or dropped awaiter.
    Gone,
}

impl<R> Slot<R> {
    /// The worker's side: store the outcome, wake the awaiter.
    fn complete(&self, out: Result<R, PanicError>) {
        let mut state = self.state.lock();
        match std::mem::replace(&mut *state, SlotState::Gone) {
            SlotState::Pending(waker) => {
                *state = SlotState::Done(out);
                drop(state);
                // Outside the lock: the awaiter may be polled right away.
                if let Some(w) = waker {
                    w.wake();
                }
            }
            // Nobody will take it: dropped here, on the worker, outside
            // the lock (its destructor is user code).
            _ => {
                drop(state);
                drop(out);
            }
        }
    }

    /// The awaiter's side, giving up: the outcome, if already there, is
    /// dropped now; otherwise the worker drops it when the job ends.
    fn abandon(&self) {
        let old = std::mem::replace(&mut *self.state.lock(), SlotState::Gone);
        drop(old);
    }
}

/// The awaitable outcome of a job run on a thread pool: what
/// [`LoopRef::run_in_executor`] and [`ThreadPool::submit`] return
/// (asyncio's future from `wrap_future`).
///
/// A cancellation point: polled in a task with a pending cancel request, it
/// returns `Err(ExecutorError::Cancelled)` at once. The job cannot be
/// interrupted: it runs to its end and its result is dropped. Dropping the
/// future before it is done does the same.
#[must_use = "the job runs anyway, but its result is lost unless awaited"]
pub struct ExecutorFuture<R> {
    state: FutState<R>,
}

enum FutState<R> {
    Waiting(Arc<Slot<R>>),
    /// Refused before it was submitted; reported at the first poll.
    Failed(Option<ExecutorError>),
    Done,
}

impl<R> ExecutorFuture<R> {
    fn failed(e: ExecutorError) -> Self {
        ExecutorFuture {
            state: FutState::Failed(Some(e)),
        }
    }

    /// Gives up on the outcome, whichever state the job is in.
    fn abandon(&mut self) {
        if let FutState::Waiting(slot) = std::mem::replace(&mut self.state, FutState::Done) {
            slot.abandon();
        }
    }
}

impl<R> Future for ExecutorFuture<R> {
    type Output = Result<R, ExecutorError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(c) = take_cancel_request() {
            this.abandon();
            return Poll::Ready(Err(ExecutorError::Cancelled(c)));
        }
        let slot = match &mut this.state {
            FutState::Waiting(slot) => slot.clone(),
            FutState::Failed(e) => {
                let e = e.take();
                this.state = FutState::Done;
                return Poll::Ready(Err(
                    e.expect("a failed ExecutorFuture holds its error until polled")
                ));
            }
            FutState::Done => panic!("ExecutorFuture polled after completion"),
        };
        let mut state = slot.state.lock();
        match &mut *state {
            SlotState::Pending(waker) => {
                match waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            SlotState::Done(_) => {
                let SlotState::Done(out) = std::mem::replace(&mut *state, SlotState::Gone) else {
                    unreachable!("matched Done just above");
                };
                drop(state);
                this.state = FutState::Done;
                Poll::Ready(out.map_err(ExecutorError::Panicked))
            }
            SlotState::Gone => unreachable!("only this future takes or abandons the outcome"),
        }
    }
}

impl<R> Drop for ExecutorFuture<R> {
    fn drop(&mut self) {
        self.abandon();
    }
}

impl<R> fmt::Debug for ExecutorFuture<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            FutState::Waiting(slot) => match &*slot.state.lock() {
                SlotState::Pending(_) => "pending",
                SlotState::Done(_) => "finished",
                SlotState::Gone => "done",
            },
            FutState::Failed(_) => "failed",
            FutState::Done => "done",
        };
        write!(f, "<ExecutorFuture {state}>")
    }
}

/// The loop's default executor (asyncio's `_default_executor` and
/// `_executor_shutdown_called`), one field of the loop's core.
#[derive(Default)]
pub(crate) struct DefaultExecutor {
    pool: RefCell<Option<Arc<ThreadPool>>>,
    shutdown_called: Cell<bool>,
}

impl DefaultExecutor {
    /// asyncio's `BaseEventLoop.close`: no more jobs on the default
    /// executor, whose queued jobs still run; nothing waits for them.
    pub(crate) fn on_loop_close(&self) {
        self.shutdown_called.set(true);
        if let Some(pool) = self.pool.take() {
            pool.shutdown(false);
        }
    }
}

impl Drop for DefaultExecutor {
    /// The loop is freed: as if closed (idempotent if it was).
    fn drop(&mut self) {
        self.on_loop_close();
    }
}

impl LoopRef {
    /// Runs `f` on the loop's default executor and returns the future of
    /// its outcome (asyncio's `loop.run_in_executor(None, f)`).
    ///
    /// The default executor is a [`ThreadPool`] of `min(32, cpus + 4)`
    /// workers, created on first use. Errors come out of the `await`:
    /// `Event loop is closed`, `Executor shutdown has been called` after
    /// [`shutdown_default_executor`](LoopRef::shutdown_default_executor), a
    /// panic of `f` as [`ExecutorError::Panicked`], and a cancellation of
    /// the awaiting task as [`ExecutorError::Cancelled`] (`f` runs on to
    /// its end; its result is dropped).
    ///
    /// ```
    /// use aioloop::{get_running_loop, EventLoop};
    ///
    /// let lp = EventLoop::new().unwrap();
    /// let v = lp.run_until_complete(async {
    ///     let lp = get_running_loop().unwrap();
    ///     let n = lp.run_in_executor(|| std::fs::read_dir(".").map(|d| d.count())).await?;
    ///     Ok::<_, aioloop::Error>(n?)
    /// }).unwrap();
    /// assert!(v > 0);
    /// ```
    pub fn run_in_executor<F, R>(&self, f: F) -> ExecutorFuture<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        match self.default_executor() {
            Ok(pool) => self.run_in_executor_on(&pool, f),
            Err(e) => ExecutorFuture::failed(e),
        }
    }

    /// Runs `f` on `pool` (asyncio's `loop.run_in_executor(pool, f)`);
    /// errors come out of the `await`, as for
    /// [`run_in_executor`](LoopRef::run_in_executor).
    ///
    /// ```
    /// use aioloop::{get_running_loop, EventLoop, ThreadPool};
    /// use std::sync::Arc;
    ///
    /// let pool = Arc::new(ThreadPool::new(1));
    /// let lp = EventLoop::new().unwrap();
    /// let p = pool.clone();
    /// let name = lp.run_until_complete(async move {
    ///     let lp = get_running_loop()?;
    ///     Ok(lp.run_in_executor_on(&p, || std::thread::current().name().map(String::from)).await?)
    /// }).unwrap();
    /// assert_eq!(name.as_deref(), Some("aioloop-executor-0"));
    /// ```
    pub fn run_in_executor_on<F, R>(&self, pool: &ThreadPool, f: F) -> ExecutorFuture<R>
    where
        F: FnOnce() -> R + Send + 'static,
        R: Send + 'static,
    {
        if self.is_closed() {
            return ExecutorFuture::failed(ExecutorError::Closed);
        }
        pool.submit(f).unwrap_or_else(ExecutorFuture::failed)
    }

    /// Replaces the default executor (asyncio's `set_default_executor`).
    /// The previous one, if any, is left as it is: whoever else holds it
    /// may go on using it.
    ///
    /// ```
    /// use aioloop::{EventLoop, ThreadPool};
    /// use std::sync::Arc;
    ///
    /// let lp = EventLoop::new().unwrap();
    /// lp.set_default_executor(Arc::new(ThreadPool::new(3)));
    /// assert_eq!(lp.default_executor().unwrap().max_workers(), 3);
    /// ```
    pub fn set_default_executor(&self, pool: Arc<ThreadPool>) {
        *self.core().executor.pool.borrow_mut() = Some(pool);
    }

    /// The default executor, created now if it does not exist yet.
    ///
    /// Fails with `Event loop is closed`, or with `Executor shutdown has
    /// been called` after
    /// [`shutdown_default_executor`](LoopRef::shutdown_default_executor)
    /// (asyncio's `_check_default_executor`).
    pub fn default_executor(&self) -> Result<Arc<ThreadPool>, ExecutorError> {
        if self.is_closed() {
            return Err(ExecutorError::Closed);
        }
        let ex = &self.core().executor;
        if ex.shutdown_called.get() {
            return Err(ExecutorError::DefaultExecutorShutdown);
        }
        let pool = ex
            .pool
            .borrow_mut()
            .get_or_insert_with(|| Arc::new(ThreadPool::with_default_size()))
            .clone();
        Ok(pool)
    }

    /// Shuts the default executor down and waits for its queued and running
    /// jobs on a helper thread, so the loop goes on meanwhile (asyncio's
    /// `shutdown_default_executor(timeout)`). Afterwards `run_in_executor`
    /// fails with `Executor shutdown has been called`.
    ///
    /// With a `timeout` that passes first, it does what asyncio 3.13 does:
    /// logs the warning `The executor did not finishing joining its threads
    /// within {timeout} seconds.` (target `asyncio`), stops waiting, and
    /// returns `Ok(())`; the jobs still run to their end. A cancellation
    /// point: the `CancelledError` if the awaiting task is cancelled.
    ///
    /// Must be awaited inside an aioloop task.
    ///
    /// ```
    /// use aioloop::{get_running_loop, EventLoop, ExecutorError};
    ///
    /// let lp = EventLoop::new().unwrap();
    /// lp.run_until_complete(async {
    ///     let lp = get_running_loop().unwrap();
    ///     lp.run_in_executor(|| ()).await.unwrap();
    ///     lp.shutdown_default_executor(None).await.unwrap();
    ///     let e = lp.run_in_executor(|| ()).await.unwrap_err();
    ///     assert!(matches!(e, ExecutorError::DefaultExecutorShutdown));
    /// }).unwrap();
    /// ```
    pub fn shutdown_default_executor(
        &self,
        timeout: Option<Duration>,
    ) -> impl Future<Output = Result<(), crate::Error>> + 'static {
        let lp = self.clone();
        // As asyncio's coroutine, it does nothing until awaited.
        async move {
            let ex_pool = {
                let ex = &lp.core().executor;
                ex.shutdown_called.set(true);
                ex.pool.borrow().clone()
            };
            let Some(pool) = ex_pool else {
                return Ok(());
            };
            let slot = Arc::new(Slot {
                state: Mutex::new(SlotState::Pending(None)),
            });
            let done = slot.clone();
            let helper = thread::Builder::new()
                .name("aioloop-executor-shutdown".into())
                .spawn(move || {
                    pool.shutdown(true);
                    done.complete(Ok(()));
                });
            if let Err(e) = helper {
                log::error!(target: "asyncio", "cannot wait for the default executor: can't start new thread: {e}");
                return Ok(());
            }
            let joined = ExecutorFuture {
                state: FutState::Waiting(slot),
            };
            let out = match timeout {
                None => joined.await,
                Some(d) => {
                    let joined = async move { joined.await.map_err(crate::Error::from) };
                    let run = match crate::timeout(d) {
                        Ok(cm) => cm.run(joined).await,
                        Err(e) => Err(e.into()),
                    };
                    match run {
                        Ok(()) => Ok(()),
                        Err(e) if e.is_timeout() => {
                            log::warn!(
                                target: "asyncio",
                                "The executor did not finishing joining its threads within {} seconds.",
                                d.as_secs_f64()
                            );
                            Ok(())
                        }
                        Err(e) => match e.as_cancelled() {
                            Some(c) => Err(ExecutorError::Cancelled(c.clone())),
                            None => {
                                unreachable!("the shutdown helper neither panics nor fails: {e:?}")
                            }
                        },
                    }
                }
            };
            match out {
                Ok(()) => Ok(()),
                Err(ExecutorError::Cancelled(c)) => Err(c.into()),
                Err(e) => unreachable!("the shutdown helper neither panics nor fails: {e:?}"),
            }
        }
    }
}
