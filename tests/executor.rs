//! The executor: `run_in_executor`, the default executor, `ThreadPool`.
//!
//! Every wait here is bounded: jobs block on channels with generous
//! timeouts, and the loop waits under a 30 s `timeout`, so a lost wake-up
//! fails the test instead of hanging it. The loops run on the real clock:
//! while a job runs the loop blocks in epoll, and only the worker's wake
//! brings it back.

mod util;

use std::collections::BTreeSet;
use std::future::{Future, IntoFuture};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use aioloop::{
    create_task, get_running_loop, sleep, timeout, Error, EventLoop, ExecutorError, LoopRef,
    ThreadPool,
};

const LIMIT: Duration = Duration::from_secs(30);

/// Awaits `fut` and gives back its output as is, failing the test if it
/// takes longer than `LIMIT`.
async fn within<F>(fut: F) -> F::Output
where
    F: IntoFuture,
    F::Output: 'static,
{
    let cm = timeout(LIMIT).expect("inside a running loop");
    let fut = fut.into_future();
    match cm.run(async move { Ok::<_, Error>(fut.await) }).await {
        Ok(v) if !cm.expired() => v,
        Ok(_) => panic!("not within {LIMIT:?}"),
        Err(e) => panic!("not within {LIMIT:?}: {e:?}"),
    }
}

fn running() -> LoopRef {
    get_running_loop().unwrap()
}

/// Waits on the executor for a message from another thread.
async fn recv_on_executor(rx: mpsc::Receiver<()>) {
    within(running().run_in_executor(move || rx.recv_timeout(LIMIT)))
        .await
        .unwrap()
        .expect("the signal came in time");
}

#[test]
fn results_come_back_to_the_awaiting_task() {
    let lp = EventLoop::new().unwrap();
    let v = lp
        .run_until_complete(async {
            let a = within(running().run_in_executor(|| 6 * 7)).await?;
            let b = within(running().run_in_executor(|| String::from("text"))).await?;
            Ok::<_, Error>((a, b))
        })
        .unwrap();
    assert_eq!(v, (42, "text".to_owned()));
}

#[test]
fn a_pool_runs_at_least_max_workers_jobs_at_once() {
    // 64 jobs meeting 4 at a time at a barrier: with fewer than 4 threads
    // running together, no group could ever pass it.
    let pool = Arc::new(ThreadPool::new(4));
    assert_eq!(pool.workers(), 0, "no thread before the first job");
    let barrier = Arc::new(Barrier::new(4));
    let lp = EventLoop::new().unwrap();
    let p = pool.clone();
    let names = lp
        .run_until_complete(async move {
            let futs: Vec<_> = (0..64)
                .map(|_| {
                    let b = barrier.clone();
                    running().run_in_executor_on(&p, move || {
                        b.wait();
                        std::thread::current().name().unwrap().to_owned()
                    })
                })
                .collect();
            let mut names = BTreeSet::new();
            for f in futs {
                names.insert(within(f).await.unwrap());
            }
            Ok::<_, Error>(names)
        })
        .unwrap();
    let expected: BTreeSet<String> = (0..4).map(|n| format!("aioloop-executor-{n}")).collect();
    assert_eq!(names, expected, "named workers, started up to the maximum");
    assert_eq!(pool.workers(), 4);
}

#[test]
fn the_default_executor_runs_jobs_in_parallel_too() {
    let lp = EventLoop::new().unwrap();
    let barrier = Arc::new(Barrier::new(4));
    lp.run_until_complete(async move {
        let futs: Vec<_> = (0..64)
            .map(|_| {
                let b = barrier.clone();
                running().run_in_executor(move || {
                    b.wait();
                })
            })
            .collect();
        for f in futs {
            within(f).await.unwrap();
        }
    })
    .unwrap();
}

#[test]
fn an_idle_worker_takes_the_next_job_instead_of_a_new_thread() {
    // CPython: 5 jobs awaited one after the other on ThreadPoolExecutor(8)
    // leave `len(_threads) == 1`.
    let pool = Arc::new(ThreadPool::new(8));
    let lp = EventLoop::new().unwrap();
    let p = pool.clone();
    lp.run_until_complete(async move {
        for _ in 0..5 {
            within(running().run_in_executor_on(&p, || ()))
                .await
                .unwrap();
        }
    })
    .unwrap();
    assert_eq!(pool.workers(), 1);
}

#[test]
fn the_default_pool_has_cpythons_size() {
    let lp = EventLoop::new().unwrap();
    let cpus = std::thread::available_parallelism().unwrap().get();
    let pool = lp.default_executor().unwrap();
    assert_eq!(pool.max_workers(), (cpus + 4).min(32));
    assert!(
        Arc::ptr_eq(&pool, &lp.default_executor().unwrap()),
        "created once, then kept on the loop"
    );
    let mine = Arc::new(ThreadPool::new(2));
    lp.set_default_executor(mine.clone());
    assert!(Arc::ptr_eq(&lp.default_executor().unwrap(), &mine));
}

#[test]
fn a_panicking_job_is_the_awaited_error_and_the_pool_survives() {
    let pool = Arc::new(ThreadPool::new(1));
    let lp = EventLoop::new().unwrap();
    let p = pool.clone();
    let (err, after) = lp
        .run_until_complete(async move {
            let err = within(running().run_in_executor_on(&p, || -> u8 { panic!("boom") }))
                .await
                .unwrap_err();
            let after = within(
                running()
                    .run_in_executor_on(&p, || std::thread::current().name().unwrap().to_owned()),
            )
            .await
            .unwrap();
            (err, after)
        })
        .unwrap();
    match err {
        ExecutorError::Panicked(p) => assert_eq!(p.message(), "boom"),
        other => panic!("{other:?}"),
    }
    assert_eq!(after, "aioloop-executor-0", "the same worker went on");
    assert_eq!(pool.workers(), 1);
}

static DROPPED: AtomicUsize = AtomicUsize::new(0);

/// A result whose drop is observable.
struct Counted(mpsc::Sender<()>);

impl Drop for Counted {
    fn drop(&mut self) {
        DROPPED.fetch_add(1, Ordering::SeqCst);
        let _ = self.0.send(());
    }
}

#[test]
fn cancelling_the_awaiting_task_lets_the_job_finish_and_drops_its_result() {
    // asyncio: the task ends cancelled at once; the call goes on in its
    // thread and finishes later.
    let lp = EventLoop::new().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (dropped_tx, dropped_rx) = mpsc::channel();
    let finished = Arc::new(AtomicBool::new(false));
    let f = finished.clone();
    lp.run_until_complete(async move {
        let task = create_task(async move {
            let out = running()
                .run_in_executor(move || {
                    started_tx.send(()).unwrap();
                    release_rx.recv_timeout(LIMIT).unwrap();
                    f.store(true, Ordering::SeqCst);
                    Counted(dropped_tx)
                })
                .await?;
            drop(out);
            panic!("the result is never delivered");
            #[allow(unreachable_code)]
            Ok::<(), Error>(())
        })
        .unwrap();
        recv_on_executor(started_rx).await;
        assert!(task.cancel());
        let _ = within(task.as_ref().wait_done()).await;
        assert!(task.cancelled(), "`?` on Cancelled ends the task cancelled");
        assert!(!finished.load(Ordering::SeqCst), "the job still runs");
        assert_eq!(DROPPED.load(Ordering::SeqCst), 0);
        release_tx.send(()).unwrap();
        recv_on_executor(dropped_rx).await;
        assert!(finished.load(Ordering::SeqCst), "the job ran to its end");
        assert_eq!(DROPPED.load(Ordering::SeqCst), 1, "its result was dropped");
    })
    .unwrap();
}

/// A result whose destructor panics.
struct PanicsOnDrop;

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("drop");
    }
}

#[test]
fn an_abandoned_result_whose_drop_panics_does_not_kill_the_worker() {
    let pool = Arc::new(ThreadPool::new(1));
    let lp = EventLoop::new().unwrap();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let p = pool.clone();
    let name = lp
        .run_until_complete(async move {
            let fut = running().run_in_executor_on(&p, move || {
                let _ = release_rx.recv_timeout(LIMIT);
                PanicsOnDrop
            });
            // Dropping the future abandons the result: the worker drops it.
            drop(fut);
            release_tx.send(()).unwrap();
            let name = within(
                running()
                    .run_in_executor_on(&p, || std::thread::current().name().unwrap().to_owned()),
            )
            .await?;
            Ok::<_, Error>(name)
        })
        .unwrap();
    assert_eq!(name, "aioloop-executor-0", "the only worker lived on");
}

/// An application error that wraps a boxed one (its `source()`).
#[derive(Debug)]
struct Wrapped(Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "wrapped: {}", self.0)
    }
}

impl std::error::Error for Wrapped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

#[test]
fn a_cancellation_boxed_by_question_mark_still_ends_the_task_cancelled() {
    // `?` turns ExecutorError::Cancelled into a Box<dyn Error>, which the
    // application wraps in its own error type (a `Box<dyn Error>` itself is
    // no `std::error::Error`); aioloop finds the CancelledError in its
    // source() chain, so the task ends cancelled, as asyncio's does when
    // CancelledError propagates.
    let lp = EventLoop::new().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    lp.run_until_complete(async move {
        let boxed = async move {
            running()
                .run_in_executor(move || {
                    started_tx.send(()).unwrap();
                    let _ = release_rx.recv_timeout(LIMIT);
                })
                .await?;
            Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
        };
        let task = create_task(async move {
            boxed.await.map_err(Wrapped)?;
            Ok(())
        })
        .unwrap();
        recv_on_executor(started_rx).await;
        task.cancel_with("bye");
        let _ = within(task.as_ref().wait_done()).await;
        release_tx.send(()).unwrap();
        assert!(task.cancelled(), "ended cancelled, not failed");
        let err = task.await.unwrap_err();
        assert!(
            matches!(err.kind(), aioloop::ErrorKind::Other(_)),
            "the application's error is kept: {err:?}"
        );
        assert_eq!(err.as_cancelled().map(|c| c.message()), Some(Some("bye")));
    })
    .unwrap();
}

#[test]
fn a_task_may_catch_the_cancellation_and_go_on() {
    let lp = EventLoop::new().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let out = lp
        .run_until_complete(async move {
            let task = create_task(async move {
                let first = running()
                    .run_in_executor(move || {
                        started_tx.send(()).unwrap();
                        release_rx.recv_timeout(LIMIT).unwrap();
                    })
                    .await;
                let Err(ExecutorError::Cancelled(c)) = first else {
                    panic!("expected a cancellation, got {first:?}");
                };
                let again = within(running().run_in_executor(|| 5)).await?;
                Ok::<_, Error>((c.message().map(String::from), again))
            })
            .unwrap();
            recv_on_executor(started_rx).await;
            task.cancel_with("stop");
            let out = within(task.as_ref().wait_done()).await;
            release_tx.send(()).unwrap();
            drop(out);
            Ok::<_, Error>(task.result())
        })
        .unwrap();
    assert_eq!(out.unwrap(), (Some("stop".to_owned()), 5));
}

#[test]
fn shutdown_refuses_new_jobs_with_concurrent_futures_wording() {
    let pool = ThreadPool::new(2);
    assert!(!pool.is_shutdown());
    pool.shutdown(false);
    assert!(pool.is_shutdown());
    let err = pool.submit(|| 1).unwrap_err();
    assert!(matches!(err, ExecutorError::Shutdown));
    assert_eq!(
        err.to_string(),
        "cannot schedule new futures after shutdown"
    );

    // Through the loop the error comes out of the await.
    let lp = EventLoop::new().unwrap();
    let pool = Arc::new(pool);
    let err = lp
        .run_until_complete(async move {
            Ok::<_, Error>(running().run_in_executor_on(&pool, || 1).await)
        })
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, ExecutorError::Shutdown));
    assert_eq!(
        err.to_string(),
        "cannot schedule new futures after shutdown"
    );
}

#[test]
fn shutdown_with_wait_runs_the_queued_jobs_first() {
    // CPython: shutdown(wait=True) on ThreadPoolExecutor(1) with 3 queued
    // jobs returns with all 3 done.
    let pool = ThreadPool::new(1);
    let ran = Arc::new(AtomicUsize::new(0));
    let futs: Vec<_> = (0..3)
        .map(|_| {
            let r = ran.clone();
            pool.submit(move || r.fetch_add(1, Ordering::SeqCst))
                .unwrap()
        })
        .collect();
    pool.shutdown(true);
    assert_eq!(ran.load(Ordering::SeqCst), 3);
    assert_eq!(pool.workers(), 0, "joined");
    drop(futs);
}

#[test]
fn a_pool_is_send_and_sync_and_accepts_jobs_from_any_thread() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<ThreadPool>();
    fn send<T: Send>() {}
    send::<aioloop::ExecutorFuture<u8>>();
    let pool = Arc::new(ThreadPool::new(2));
    let p = pool.clone();
    let fut = std::thread::spawn(move || p.submit(|| 7u8).unwrap())
        .join()
        .unwrap();
    let lp = EventLoop::new().unwrap();
    let v = lp
        .run_until_complete(async move { Ok::<_, Error>(within(fut).await?) })
        .unwrap();
    assert_eq!(v, 7);
}

#[test]
fn shutdown_default_executor_waits_for_running_jobs_without_blocking_the_loop() {
    let lp = EventLoop::new().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let finished = Arc::new(AtomicBool::new(false));
    let f = finished.clone();
    lp.run_until_complete(async move {
        let job = running().run_in_executor(move || {
            started_tx.send(()).unwrap();
            release_rx.recv_timeout(LIMIT).unwrap();
            f.store(true, Ordering::SeqCst);
        });
        // The job is not awaited, as asyncio's fire-and-forget use.
        drop(job);
        // Waits on its own thread: the default pool is shut down next.
        let pool = ThreadPool::new(1);
        within(pool.submit(move || started_rx.recv_timeout(LIMIT)).unwrap())
            .await
            .unwrap()
            .unwrap();
        let shutdown = create_task(running().shutdown_default_executor(None)).unwrap();
        // The loop goes on while the shutdown waits.
        for _ in 0..3 {
            sleep(Duration::ZERO).await.unwrap();
        }
        assert!(!shutdown.done(), "the job is still running");
        release_tx.send(()).unwrap();
        within(shutdown).await.unwrap();
        assert!(finished.load(Ordering::SeqCst), "returned after the job");
        let err = running().run_in_executor(|| ()).await.unwrap_err();
        assert!(matches!(err, ExecutorError::DefaultExecutorShutdown));
        assert_eq!(err.to_string(), "Executor shutdown has been called");
    })
    .unwrap();
}

#[test]
fn shutdown_default_executor_without_one_still_refuses_later_jobs() {
    // CPython sets `_executor_shutdown_called` even with no executor yet.
    let lp = EventLoop::new().unwrap();
    let err = lp
        .run_until_complete(async {
            running().shutdown_default_executor(None).await?;
            Ok::<_, Error>(running().run_in_executor(|| ()).await.unwrap_err())
        })
        .unwrap();
    assert_eq!(err.to_string(), "Executor shutdown has been called");
}

#[test]
fn shutdown_default_executor_timeout_logs_asyncios_warning_and_returns() {
    // CPython 3.13: warns `The executor did not finishing joining its
    // threads within 0.1 seconds.` (RuntimeWarning) and returns None.
    util::capture_logs();
    let lp = EventLoop::new().unwrap();
    let (started_tx, started_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    lp.run_until_complete(async move {
        drop(running().run_in_executor(move || {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv_timeout(LIMIT);
        }));
        let side = ThreadPool::new(1);
        within(side.submit(move || started_rx.recv_timeout(LIMIT)).unwrap())
            .await
            .unwrap()
            .unwrap();
        within(running().shutdown_default_executor(Some(Duration::from_millis(50))))
            .await
            .unwrap();
        release_tx.send(()).unwrap();
    })
    .unwrap();
    let logs = util::logs("asyncio");
    assert_eq!(
        logs,
        [(
            log::Level::Warn,
            "The executor did not finishing joining its threads within 0.05 seconds.".to_owned()
        )]
    );
}

#[test]
fn a_closed_loop_refuses_jobs_and_dropping_it_shuts_the_default_pool_down() {
    let lp = EventLoop::new().unwrap();
    let pool = lp.default_executor().unwrap();
    let r = lp.loop_ref();
    lp.close().unwrap();
    assert_eq!(
        r.default_executor().unwrap_err().to_string(),
        "Event loop is closed"
    );
    let mut fut = std::pin::pin!(r.run_in_executor(|| ()));
    let waker = std::task::Waker::noop();
    let out = fut
        .as_mut()
        .poll(&mut std::task::Context::from_waker(waker));
    assert!(
        matches!(out, std::task::Poll::Ready(Err(ref e @ ExecutorError::Closed)) if e.to_string() == "Event loop is closed")
    );
    drop(r);
    drop(lp);
    assert!(
        pool.is_shutdown(),
        "shut down without waiting, as close() does"
    );
}
