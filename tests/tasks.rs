//! Tasks: creation, results, exceptions, names, done callbacks, wakers.

mod util;

use std::cell::Cell;
use std::future::Future as StdFuture;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use aioloop::{all_tasks, create_task, current_task, sleep, Error, EventLoop, LoopError};
use util::{stopper, Recorder};

#[test]
fn a_task_starts_on_a_later_iteration_not_inline() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let t = lp.create_task(async move { r.push("task body") }).unwrap();
    rec.push("after create_task");
    let r = rec.clone();
    lp.call_soon(move || r.push("callback scheduled after"))
        .unwrap();
    lp.run_until_complete(async move { t.await.unwrap() })
        .unwrap();
    assert_eq!(
        rec.take(),
        ["after create_task", "task body", "callback scheduled after"]
    );
}

#[test]
fn results_exceptions_and_panics_are_asyncios_three_endings() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let ok = lp.create_task(async { Ok(5) }).unwrap();
    let failed = lp
        .create_task(async { Err::<i32, _>(Error::msg("bad")) })
        .unwrap();
    let panicked = lp
        .create_task(async {
            panic!("boom");
            #[allow(unreachable_code)]
            Ok::<i32, Error>(0)
        })
        .unwrap();
    lp.run_until_complete(sleep(Duration::from_secs(1)))
        .unwrap();
    assert!(
        ok.done() && failed.done() && panicked.done(),
        "the loop went on"
    );
    assert_eq!(ok.result().unwrap(), 5);
    assert_eq!(ok.exception().unwrap().map(|_| ()), None);
    assert!(matches!(failed.result(), Err(ref e) if e.to_string() == "bad"));
    assert!(matches!(failed.exception(), Ok(Some(ref e)) if e.to_string() == "bad"));
    match panicked.result() {
        Err(e) => assert_eq!(e.as_panic().unwrap().message(), "boom"),
        other => panic!("{other:?}"),
    }
    assert!(panicked.exception().unwrap().unwrap().is_panic());
    assert!(!failed.cancelled() && !panicked.cancelled());
}

#[test]
fn result_of_a_pending_task_is_not_set() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let t = lp.create_task(async { 1u8 }).unwrap();
    assert!(
        matches!(t.result(), Err(ref e) if e.is_invalid_state() && e.to_string() == "Result is not set.")
    );
}

#[test]
fn names_default_to_task_n_and_can_be_set() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let a = lp.create_task(async {}).unwrap();
    let b = lp.create_task(async {}).unwrap();
    let na: u64 = a.get_name().strip_prefix("Task-").unwrap().parse().unwrap();
    let nb: u64 = b.get_name().strip_prefix("Task-").unwrap().parse().unwrap();
    assert!(nb > na, "numbered in creation order");
    b.set_name("worker");
    assert_eq!(b.get_name(), "worker");
    assert!(format!("{b:?}").starts_with("<Task pending name='worker' created at tests/tasks.rs:"));
}

#[test]
fn current_task_and_all_tasks() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    assert!(current_task().is_none());
    let out = lp
        .run_until_complete(async {
            let me = current_task().unwrap();
            me.set_name("main");
            let other = create_task(sleep(Duration::from_secs(1))).unwrap();
            other.set_name("sleeper");
            let mut names: Vec<String> = all_tasks().iter().map(|t| t.get_name()).collect();
            names.sort();
            other.await.unwrap();
            let after = all_tasks().len();
            (names, after)
        })
        .unwrap();
    assert_eq!(out.0, ["main", "sleeper"]);
    assert_eq!(out.1, 1, "a done task leaves all_tasks");
}

#[test]
fn dropping_every_handle_does_not_cancel_the_task() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    drop(
        lp.create_task(async move {
            sleep(Duration::from_secs(1)).await.unwrap();
            r.set(true);
        })
        .unwrap(),
    );
    lp.run_until_complete(sleep(Duration::from_secs(2)))
        .unwrap();
    assert!(ran.get());
}

#[test]
fn a_task_awaits_another_and_done_callbacks_run_in_order() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let inner = lp
        .create_task(async {
            sleep(Duration::from_secs(1)).await?;
            Ok("inner result")
        })
        .unwrap();
    for i in 0..3 {
        let r = rec.clone();
        inner.add_done_callback(move |t| r.push((i, t.result().unwrap())));
    }
    let i2 = inner.clone();
    let got = lp.run_until_complete(async move { (&i2).await }).unwrap();
    assert_eq!(got, "inner result");
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(
        rec.take(),
        [
            (0, "inner result"),
            (1, "inner result"),
            (2, "inner result")
        ]
    );
}

#[test]
fn sleep_zero_yields_exactly_once() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    for name in ["a", "b"] {
        let r = rec.clone();
        lp.create_task(async move {
            for i in 0..3 {
                r.push(format!("{name}{i}"));
                sleep(Duration::ZERO).await.unwrap();
            }
        })
        .unwrap();
    }
    lp.run_until_complete(sleep(Duration::from_millis(1)))
        .unwrap();
    assert_eq!(rec.take(), ["a0", "b0", "a1", "b1", "a2", "b2"]);
    assert_eq!(lp.time(), 0.001, "no timer involved in sleep(0)");
}

/// A foreign future whose waker goes to another thread and is woken there.
struct WokenElsewhere {
    sent: bool,
    done: Rc<Cell<bool>>,
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl StdFuture for WokenElsewhere {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.flag.load(std::sync::atomic::Ordering::Acquire) {
            self.done.set(true);
            return Poll::Ready(());
        }
        if !self.sent {
            self.sent = true;
            let w: Waker = cx.waker().clone();
            let flag = self.flag.clone();
            std::thread::spawn(move || {
                flag.store(true, std::sync::atomic::Ordering::Release);
                w.wake();
            });
        }
        Poll::Pending
    }
}

#[test]
fn a_waker_moved_to_another_thread_wakes_its_task() {
    // The loop blocks in epoll (no timers, nothing ready); only the remote
    // wake through the injection queue and the reactor's waker can end it.
    let lp = EventLoop::new().unwrap();
    let done = Rc::new(Cell::new(false));
    let fut = WokenElsewhere {
        sent: false,
        done: done.clone(),
        flag: Default::default(),
    };
    lp.run_until_complete(fut).unwrap();
    assert!(done.get());
}

#[test]
fn run_until_complete_returns_failures_and_stops_the_loop() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let r = lp.run_until_complete(async { Err::<(), _>(Error::msg("nope")) });
    assert!(matches!(r, Err(ref e) if e.to_string() == "nope"));
    assert!(!lp.is_running());
    let r = lp.run_until_complete(async {
        panic!("inside");
        #[allow(unreachable_code)]
        ()
    });
    assert!(matches!(r, Err(ref e) if e.as_panic().is_some_and(|p| p.message() == "inside")));
}

#[test]
fn run_until_complete_stopped_early_says_so() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    lp.call_soon(stopper(&lp)).unwrap();
    let err = lp
        .run_until_complete(sleep(Duration::from_secs(5)))
        .unwrap_err();
    assert!(matches!(
        err.downcast_ref::<LoopError>(),
        Some(LoopError::StoppedBeforeComplete)
    ));
    assert_eq!(
        err.to_string(),
        "Event loop stopped before Future completed."
    );
}

#[test]
fn create_task_outside_a_running_loop_is_refused() {
    let err = create_task(async {}).unwrap_err();
    assert_eq!(err.to_string(), "no running event loop");
}

#[test]
fn closing_a_loop_drops_pending_tasks_and_their_futures() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let witness = Rc::new(());
    let w = witness.clone();
    lp.create_task(async move {
        let _keep = w;
        sleep(Duration::from_secs(100)).await.unwrap();
    })
    .unwrap();
    lp.run_until_complete(sleep(Duration::from_secs(1)))
        .unwrap();
    assert_eq!(Rc::strong_count(&witness), 2);
    lp.close().unwrap();
    assert_eq!(Rc::strong_count(&witness), 1);
}

/// Pending forever; records being dropped.
struct DropFlag(Rc<Cell<bool>>);
impl StdFuture for DropFlag {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

#[test]
fn closing_the_loop_drops_a_pending_task_even_when_its_done_callback_holds_it() {
    // A done callback captures a handle to its own task: a cycle through
    // the task's completion list. close() must still drop the future.
    let dropped = Rc::new(Cell::new(false));
    let lp = EventLoop::with_virtual_clock().unwrap();
    let t = lp.create_task(DropFlag(dropped.clone())).unwrap();
    t.add_done_callback(|_| {});
    drop(t);
    lp.run_until_complete(sleep(Duration::from_secs(1)))
        .unwrap();
    assert!(!dropped.get());
    lp.close().unwrap();
    assert!(
        dropped.get(),
        "the pending task's future was dropped at close"
    );
}

/// Counts its polls; on the first, wakes itself five times (through clones
/// and by reference) and keeps a clone; later polls stay Pending without
/// waking, unless `finish` is set.
struct WakeManyTimes {
    polls: Rc<Cell<u32>>,
    kept: Rc<std::cell::RefCell<Option<Waker>>>,
    finish: Rc<Cell<bool>>,
}

impl StdFuture for WakeManyTimes {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.polls.set(self.polls.get() + 1);
        if self.finish.get() {
            return Poll::Ready(());
        }
        if self.polls.get() == 1 {
            for _ in 0..3 {
                cx.waker().wake_by_ref();
            }
            // On purpose: exercises the owned waker's wake-by-value path.
            #[allow(clippy::waker_clone_wake)]
            cx.waker().clone().wake();
            let w = cx.waker().clone();
            w.wake_by_ref();
            *self.kept.borrow_mut() = Some(w);
        }
        Poll::Pending
    }
}

/// The future, its poll counter, the waker clone it keeps, its finish flag.
type WakeMany = (
    WakeManyTimes,
    Rc<Cell<u32>>,
    Rc<std::cell::RefCell<Option<Waker>>>,
    Rc<Cell<bool>>,
);

fn wake_many() -> WakeMany {
    let (polls, kept, finish) = (
        Rc::new(Cell::new(0)),
        Rc::new(std::cell::RefCell::new(None)),
        Rc::new(Cell::new(false)),
    );
    let fut = WakeManyTimes {
        polls: polls.clone(),
        kept: kept.clone(),
        finish: finish.clone(),
    };
    (fut, polls, kept, finish)
}

#[test]
fn a_task_woken_many_times_before_it_runs_is_scheduled_once() {
    // Five wakes during one step: the task must be queued once, so it is
    // polled exactly once more (then it parks, never woken again).
    let lp = EventLoop::with_virtual_clock().unwrap();
    let (fut, polls, _kept, _finish) = wake_many();
    let t = lp.create_task(fut).unwrap();
    lp.run_until_complete(sleep(Duration::from_secs(1)))
        .unwrap();
    assert_eq!(polls.get(), 2, "five wakes, one extra step");
    assert!(!t.done());
    assert_eq!(t.as_ref().waker_count(), 1, "the clone kept by the future");
}

#[test]
fn a_stale_waker_of_a_finished_task_is_a_harmless_no_op() {
    // Everything happens inside one main task, so the only slot freed is
    // the finished task's, and the next task created reuses it: a stale
    // wake must not reach the new occupant.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let (fut, polls, kept, finish) = wake_many();
    let op = Rc::new(Cell::new(0));
    let op2 = op.clone();
    let out = lp
        .run_until_complete(async move {
            let t = create_task(fut).unwrap();
            sleep(Duration::ZERO).await.unwrap();
            sleep(Duration::ZERO).await.unwrap();
            finish.set(true);
            kept.borrow().as_ref().unwrap().wake_by_ref(); // its last wake
            let w = kept.borrow_mut().take().unwrap();
            t.as_ref().wait_done().await.unwrap();
            // Counts every poll (an async block would count only its first).
            let other = create_task(std::future::poll_fn(move |_| {
                op2.set(op2.get() + 1);
                Poll::<()>::Pending
            }))
            .unwrap();
            sleep(Duration::ZERO).await.unwrap();
            let before = op.get();
            w.wake_by_ref(); // stale: its task is done, its slot reused
            w.wake();
            sleep(Duration::ZERO).await.unwrap();
            sleep(Duration::ZERO).await.unwrap();
            (before, op.get(), other.done())
        })
        .unwrap();
    assert_eq!(out, (1, 1, false), "the slot's new task was not woken");
    assert_eq!(polls.get(), 3, "the finished task was not polled again");
}

#[test]
fn awaiting_a_task_leaves_its_outcome_for_result_and_later_awaits() {
    // python: `await t` twice and `t.result()` all give 'v'; a failed task
    // raises the same exception at every await and from `exception()`.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let t = lp.create_task(async { Ok("v".to_owned()) }).unwrap();
    let f = lp
        .create_task(async { Err::<u8, _>(Error::msg("no")) })
        .unwrap();
    let (t2, f2) = (t.clone(), f.clone());
    let out = lp
        .run_until_complete(async move {
            let first = (&t2).await?;
            let second = (&t2).await?;
            let fails = [(&f2).await.unwrap_err(), (&f2).await.unwrap_err()];
            Ok((first, second, fails.map(|e| e.to_string())))
        })
        .unwrap();
    assert_eq!(
        out,
        (
            "v".to_owned(),
            "v".to_owned(),
            ["no", "no"].map(String::from)
        )
    );
    assert_eq!(t.result().unwrap(), "v");
    assert_eq!(lp.run_until_complete(t.clone()).unwrap(), "v");
    assert_eq!(
        t.result().unwrap(),
        "v",
        "still there after run_until_complete"
    );
    assert_eq!(f.exception().unwrap().unwrap().to_string(), "no");
    assert_eq!(f.result().unwrap_err().to_string(), "no");
}

#[test]
fn take_moves_a_result_out_once() {
    // Rust's one addition: a non-Clone result moves out with take(); then
    // result() says so (asyncio has no such state).
    #[derive(Debug)]
    struct NotClone(u32);
    let lp = EventLoop::with_virtual_clock().unwrap();
    let t = lp.create_task(async { Ok(NotClone(5)) }).unwrap();
    let got = lp.run_until_complete(t.clone().take()).unwrap();
    assert_eq!(got.0, 5);
    assert!(t.done() && !t.failed());
    let again = lp.run_until_complete(t.take()).unwrap_err();
    assert!(matches!(
        again.downcast_ref::<aioloop::InvalidStateError>(),
        Some(aioloop::InvalidStateError::ResultTaken)
    ));
    assert_eq!(again.to_string(), "Result was already taken.");
}

#[test]
fn a_task_awaiting_itself_gets_asyncios_runtime_error() {
    // python 3.11/3.13: RuntimeError('Task cannot await on itself: <Task
    // pending name=...>') thrown into the coroutine, which may go on.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let me: Rc<std::cell::RefCell<Option<aioloop::Task<u8>>>> = Rc::default();
    let m = me.clone();
    let t = lp
        .create_task(async move {
            let own = m.borrow().clone().unwrap();
            let err = own.await.unwrap_err();
            assert!(matches!(
                err.downcast_ref::<LoopError>(),
                Some(LoopError::AwaitOnItself(_))
            ));
            let text = err.to_string();
            assert!(
                text.starts_with("Task cannot await on itself: <Task pending name='selfish' created at tests/tasks.rs:"),
                "{text}"
            );
            Ok(7)
        })
        .unwrap();
    t.set_name("selfish");
    *me.borrow_mut() = Some(t.clone());
    assert_eq!(lp.run_until_complete(t.clone()).unwrap(), 7);
    me.borrow_mut().take();
}

#[test]
fn awaiting_a_future_of_another_loop_is_asyncios_runtime_error() {
    // python: RuntimeError('Task <Task pending ...> got Future <Future
    // pending> attached to a different loop'), instead of hanging.
    let other = EventLoop::with_virtual_clock().unwrap();
    let f = other.create_future::<u8>();
    let lp = EventLoop::with_virtual_clock().unwrap();
    let g = f.clone();
    // Awaited in a task: `run_until_complete(g)` itself is a ValueError
    // (tests/cpython_divergences.rs); the async block is the point.
    #[allow(clippy::redundant_async_block)]
    let err = lp.run_until_complete(async move { g.await }).unwrap_err();
    assert!(matches!(
        err.downcast_ref::<LoopError>(),
        Some(LoopError::DifferentLoop(..))
    ));
    let text = err.to_string();
    assert!(text.starts_with("Task <Task pending name='Task-"), "{text}");
    assert!(
        text.ends_with("got Future <Future pending> attached to a different loop"),
        "{text}"
    );
    assert!(!f.done(), "the future is left alone");
}
