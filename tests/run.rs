//! `aioloop::run` / `run_with`: asyncio.run's life of a loop, rule by rule.
//!
//! Expected behaviours observed on CPython 3.11.7; all on the virtual clock
//! (`run_with(EventLoop::with_virtual_clock, ..)`), except one smoke test of
//! `run` itself that never waits.

mod util;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use aioloop::{
    create_task, current_task, get_running_loop, run, run_with, sleep, Error, ErrorKind, EventLoop,
    LoopError, LoopRef,
};
use util::{bad, bad_of, secs, Recorder};

/// Sleeps long; when cancelled, cleans up for a second (an await inside
/// `finally`) and propagates the cancellation.
async fn leftover(n: u32, rec: Recorder<String>) -> Result<(), Error> {
    if let Err(c) = sleep(secs(100)).await {
        rec.push(format!("leftover {n} cleanup start"));
        sleep(secs(1)).await?;
        rec.push(format!("leftover {n} cleanup done"));
        return Err(c);
    }
    Ok(())
}

#[test]
fn run_returns_the_result_of_main() {
    let out = run_with(EventLoop::with_virtual_clock, async {
        sleep(secs(5)).await?;
        Ok("main result")
    });
    assert_eq!(out.unwrap(), "main result");
}

#[test]
fn run_on_the_default_loop_returns_the_result_of_main() {
    let out = run(async {
        sleep(Duration::ZERO).await.unwrap();
        6 * 7
    });
    assert_eq!(out.unwrap(), 42);
}

#[test]
fn run_cancels_leftover_tasks_and_lets_their_cleanup_finish() {
    // py3.11: both cleanups start, then both finish, before run() returns.
    let rec = Recorder::new();
    let r = rec.clone();
    let tasks = Rc::new(RefCell::new(Vec::new()));
    let ts = tasks.clone();
    let out = run_with(EventLoop::with_virtual_clock, async move {
        ts.borrow_mut()
            .push(create_task(leftover(1, r.clone())).unwrap());
        ts.borrow_mut()
            .push(create_task(leftover(2, r.clone())).unwrap());
        sleep(Duration::ZERO).await.unwrap();
        "main result"
    });
    assert_eq!(out.unwrap(), "main result");
    assert_eq!(
        rec.take(),
        [
            "leftover 1 cleanup start",
            "leftover 2 cleanup start",
            "leftover 1 cleanup done",
            "leftover 2 cleanup done"
        ]
    );
    assert!(tasks.borrow().iter().all(|t| t.cancelled()));
}

#[test]
fn run_closes_the_loop() {
    // py3.11: the loop captured inside main is closed afterwards.
    let seen: Rc<RefCell<Option<LoopRef>>> = Rc::default();
    let s = seen.clone();
    run_with(EventLoop::with_virtual_clock, async move {
        *s.borrow_mut() = Some(get_running_loop().unwrap());
    })
    .unwrap();
    let lp = seen.borrow_mut().take().unwrap();
    assert!(lp.is_closed());
    assert!(!lp.is_running());
}

#[test]
fn run_returns_a_panic_in_main_as_panicked() {
    let out = run_with(EventLoop::with_virtual_clock, async {
        sleep(secs(1)).await.unwrap();
        panic!("boom");
        #[allow(unreachable_code)]
        0u8
    });
    match out {
        Err(e) => assert_eq!(e.as_panic().expect("a panic").message(), "boom"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn run_returns_the_exception_of_main() {
    // py3.11: `asyncio.run(boom())` raises boom's ValueError.
    let out = run_with(EventLoop::with_virtual_clock, async { bad::<()>("boom") });
    let e = out.unwrap_err();
    assert_eq!(bad_of(&e), Some("boom"), "{e:?}");
}

#[test]
fn run_from_a_running_loop_is_refused_with_asyncios_text() {
    // py3.11: RuntimeError('asyncio.run() cannot be called from a running
    // event loop').
    let out = run_with(EventLoop::with_virtual_clock, async {
        let nested = run_with(EventLoop::with_virtual_clock, async { 1u8 });
        match nested {
            Err(e) if matches!(e.kind(), ErrorKind::Loop(LoopError::RunFromRunningLoop)) => {
                e.to_string()
            }
            other => panic!("{other:?}"),
        }
    });
    assert_eq!(
        out.unwrap(),
        "asyncio.run() cannot be called from a running event loop"
    );
}

#[test]
fn a_leftover_that_refuses_the_cancellation_finishes_and_run_returns() {
    // py3.11: the refuser catches CancelledError and returns: run() returns.
    let rec = Recorder::new();
    let r = rec.clone();
    let out = run_with(EventLoop::with_virtual_clock, async move {
        create_task(async move {
            if sleep(secs(100)).await.is_err() {
                r.push("refused once");
            }
            "x"
        })
        .unwrap();
        sleep(Duration::ZERO).await.unwrap();
    });
    out.unwrap();
    assert_eq!(rec.take(), ["refused once"]);
}

#[test]
fn a_task_created_during_shutdown_gets_one_step_then_is_dropped_with_the_loop() {
    // py3.11: a task spawned by a leftover's cleanup runs its first step
    // ("late ran?") but never finishes: asyncio cancels one round only, then
    // closes (and later reports "Task was destroyed but it is pending!").
    let rec = Recorder::new();
    let r = rec.clone();
    let dropped = Rc::new(Cell::new(false));
    let d = dropped.clone();
    struct OnDrop(Rc<Cell<bool>>);
    impl Drop for OnDrop {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    run_with(EventLoop::with_virtual_clock, async move {
        create_task(async move {
            if let Err(c) = sleep(secs(100)).await {
                create_task(async move {
                    let _guard = OnDrop(d);
                    r.push("late ran");
                    sleep(secs(1)).await.unwrap();
                    r.push("late done");
                })
                .unwrap();
                return Err(c);
            }
            Ok(())
        })
        .unwrap();
        sleep(Duration::ZERO).await.unwrap();
    })
    .unwrap();
    assert_eq!(rec.take(), ["late ran"]);
    assert!(dropped.get(), "closing the loop dropped the pending task");
}

#[test]
fn main_stopping_the_loop_is_stopped_before_complete_and_main_is_cancelled() {
    // py3.11: RuntimeError('Event loop stopped before Future completed.');
    // Runner.close() then cancels main's task with the other leftovers.
    let rec = Recorder::new();
    let r = rec.clone();
    let out = run_with(EventLoop::with_virtual_clock, async move {
        get_running_loop().unwrap().stop();
        if sleep(secs(1)).await.is_err() {
            r.push("main cancelled at shutdown");
        }
    });
    match out {
        Err(e)
            if matches!(
                e.downcast_ref::<LoopError>(),
                Some(LoopError::StoppedBeforeComplete)
            ) =>
        {
            assert_eq!(e.to_string(), "Event loop stopped before Future completed.")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rec.take(), ["main cancelled at shutdown"]);
}

#[test]
fn main_cancelling_itself_is_returned_as_cancelled() {
    // py3.11: `asyncio.current_task().cancel(); await sleep(1)` inside main
    // makes asyncio.run raise CancelledError.
    let out = run_with(EventLoop::with_virtual_clock, async {
        current_task().unwrap().cancel();
        sleep(secs(1)).await?;
        Ok(())
    });
    assert!(out.unwrap_err().is_cancelled());
}

#[test]
fn a_failing_loop_factory_is_returned() {
    let out = run_with(|| Err(LoopError::Closed), async {});
    let e = out.unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Loop(LoopError::Closed)),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "Event loop is closed");
}

#[test]
fn run_waits_for_the_default_executors_running_jobs() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let finished = Arc::new(AtomicBool::new(false));
    let f = finished.clone();
    aioloop::run(async move {
        let lp = aioloop::get_running_loop().unwrap();
        // Started, not awaited: main returns while the job still runs.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        drop(lp.run_in_executor(move || {
            let _ = rx.recv_timeout(std::time::Duration::from_millis(20));
            f.store(true, Ordering::SeqCst);
        }));
        // The sender stays alive, so the job runs its full 20 ms: without
        // the wait, run() would return (and this assert fail) before then.
        std::mem::forget(tx);
    })
    .unwrap();
    assert!(finished.load(Ordering::SeqCst), "run() waited for the job");
}
