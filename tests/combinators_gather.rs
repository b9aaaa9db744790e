//! `gather`, `wait` and `as_completed`, rule by rule, as CPython 3.11 does
//! them (each test says what `python3` printed for the same scenario, with
//! asyncio's seconds scaled to ours).

mod util;

use std::cell::Cell;
use std::future::{poll_fn, Future as StdFuture};
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use aioloop::{
    as_completed, create_task, create_tasks, current_task, gather, get_running_loop, sleep, wait,
    CancelledError, Error, ErrorKind, EventLoop, ReturnWhen, Task,
};
use util::{bad, bad_of, now, run, secs, Recorder};

type Child = Task<&'static str>;

/// Sleeps `s` seconds, then returns `v` (or fails with `Bad(v)`).
async fn work(s: u64, v: &'static str, fail: bool) -> Result<&'static str, Error> {
    sleep(secs(s)).await?;
    if fail {
        bad(v)
    } else {
        Ok(v)
    }
}

fn spawn(s: u64, v: &'static str) -> Child {
    create_task(work(s, v, false)).unwrap()
}

fn spawn_failing(s: u64, v: &'static str) -> Child {
    create_task(work(s, v, true)).unwrap()
}

/// A child that sleeps an hour; cancelled, it records it, cleans up for
/// `cleanup` seconds (an `await` in its `finally`), and propagates.
fn spawn_with_cleanup(v: &'static str, cleanup: u64, rec: &Recorder<String>) -> Child {
    let rec = rec.clone();
    create_task(async move {
        if let Err(c) = sleep(secs(3600)).await {
            rec.push(format!("{v} cancelled at {} ({c})", now()));
            sleep(secs(cleanup)).await.unwrap();
            rec.push(format!("{v} cleaned up at {}", now()));
            return Err(c);
        }
        Ok(v)
    })
    .unwrap()
}

// ---------------------------------------------------------------- gather

#[test]
fn gather_results_follow_the_inputs_even_when_children_finish_in_reverse() {
    // python: children c, b, a finish in that order; gather -> ['a', 'b', 'c'].
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let out = run(&lp, async move {
        let children: Vec<Child> = [(3, "a"), (2, "b"), (1, "c")]
            .into_iter()
            .map(|(s, v)| {
                let r = r.clone();
                create_task(async move {
                    let v = work(s, v, false).await?;
                    r.push(v);
                    Ok(v)
                })
                .unwrap()
            })
            .collect();
        gather(children).await
    });
    assert_eq!(out, ["a", "b", "c"]);
    assert_eq!(rec.take(), ["c", "b", "a"]);
    assert_eq!(lp.time(), 3.0);
}

#[test]
fn gather_returns_the_first_failure_at_once_and_the_others_keep_running() {
    // python: x fails at 1, gather raises ValueError('x') at 1 with y not
    // done; y finishes at 2 with its result.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let y = run(&lp, async {
        let x = spawn_failing(1, "x");
        let y = spawn(2, "y");
        let out = gather([x, y.clone()]).await;
        assert!(
            matches!(out, Err(ref e) if bad_of(e) == Some("x")),
            "{out:?}"
        );
        Ok::<_, Error>(y)
    });
    assert_eq!(lp.time(), 1.0, "returned at the first failure");
    assert!(
        !y.done() && !y.cancelled(),
        "the other child was not cancelled"
    );
    run(&lp, sleep(secs(5)));
    assert_eq!(y.result().unwrap(), "y");
}

#[test]
fn gather_first_failure_is_the_childs_own_error() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let out = run(&lp, async {
        Ok::<_, Error>(gather([spawn(2, "ok"), spawn_failing(1, "bad")]).await)
    });
    assert!(
        matches!(out, Err(ref e) if bad_of(e) == Some("bad")),
        "{out:?}"
    );
}

#[test]
fn gather_return_exceptions_collects_every_outcome_in_its_slot() {
    // python: gather(p fails at 1, q at 2, return_exceptions=True) at 2
    // -> [ValueError('p'), 'q'].
    let lp = EventLoop::with_virtual_clock().unwrap();
    let out = run(&lp, async {
        gather([spawn_failing(1, "p"), spawn(2, "q")])
            .return_exceptions()
            .await
    });
    assert!(matches!(out[0], Err(ref e) if bad_of(e) == Some("p")));
    assert_eq!(out[1].as_ref().unwrap(), &"q");
    assert_eq!(lp.time(), 2.0);
}

#[test]
fn gather_a_panicking_child_is_a_failure() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let out = run(&lp, async {
        let boom: Child = create_task(async {
            panic!("boom");
            #[allow(unreachable_code)]
            Ok("never")
        })
        .unwrap();
        Ok::<_, Error>(gather([spawn(1, "fine"), boom]).await)
    });
    match out {
        Err(e) if e.is_panic() => assert_eq!(e.as_panic().unwrap().message(), "boom"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn cancelling_the_task_awaiting_gather_cancels_every_child() {
    // python: children k1 (3 s of cleanup) and k2 (1 s); the awaiting task
    // is cancelled('bye') at 1: both children see the cancellation at 1;
    // the gather ends with CancelledError('bye') at 2, when k2 ends
    // cancelled, k1 still cleaning up (done at 4).
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let (out, k1) = run(&lp, async move {
        let k1 = spawn_with_cleanup("k1", 3, &r);
        let k2 = spawn_with_cleanup("k2", 1, &r);
        let g = gather([k1.clone(), k2]);
        let awaiting = create_task(g).unwrap();
        sleep(secs(1)).await.unwrap();
        awaiting.cancel_with("bye");
        let out = awaiting.await;
        r.push(format!("gather ended at {}", now()));
        Ok::<_, Error>((out, k1))
    });
    match out {
        Err(e) if e.is_cancelled() => assert_eq!(e.as_cancelled().unwrap().message(), Some("bye")),
        other => panic!("{other:?}"),
    }
    assert!(!k1.done(), "k1 is still cleaning up");
    run(&lp, sleep(secs(5)));
    assert!(k1.cancelled());
    assert_eq!(
        rec.take(),
        [
            "k1 cancelled at 1 (bye)",
            "k2 cancelled at 1 (bye)",
            "k2 cleaned up at 2",
            "gather ended at 2",
            "k1 cleaned up at 4",
        ]
    );
}

#[test]
fn cancelling_a_return_exceptions_gather_waits_for_every_child() {
    // python: same children, return_exceptions=True: CancelledError at 4,
    // once both children are done.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let out = run(&lp, async move {
        let g = gather([
            spawn_with_cleanup("r1", 3, &r),
            spawn_with_cleanup("r2", 1, &r),
        ])
        .return_exceptions();
        let awaiting = create_task(g).unwrap();
        sleep(secs(1)).await.unwrap();
        awaiting.cancel();
        let out = awaiting.await;
        r.push(format!("gather ended at {}", now()));
        Ok::<_, Error>(out.map(|v| v.len()))
    });
    assert!(matches!(out, Err(ref e) if e.is_cancelled()), "{out:?}");
    assert_eq!(
        rec.take(),
        [
            "r1 cancelled at 1 (cancelled)",
            "r2 cancelled at 1 (cancelled)",
            "r2 cleaned up at 2",
            "r1 cleaned up at 4",
            "gather ended at 4",
        ]
    );
}

#[test]
fn a_child_cancelled_on_its_own_fails_the_gather_with_cancelled_error() {
    // python: m cancelled at 1 -> gather raises CancelledError at 1, n
    // (due at 2) not done, and the awaiting task's cancelling() is 0: it
    // was not cancelled itself.
    let lp = EventLoop::with_virtual_clock().unwrap();
    run(&lp, async {
        let m = spawn(5, "m");
        let n = spawn(2, "n");
        let m2 = m.clone();
        get_running_loop()
            .unwrap()
            .call_later(secs(1), move || {
                m2.cancel();
            })
            .unwrap();
        let out = gather([m, n.clone()]).await;
        assert!(matches!(out, Err(ref e) if e.is_cancelled()), "{out:?}");
        assert_eq!(now(), 1.0);
        assert!(!n.done());
        assert_eq!(current_task().unwrap().cancelling(), 0);
    });
}

#[test]
fn return_exceptions_reports_a_cancelled_child_in_its_slot() {
    // python: [CancelledError(''), 'n2'] (asyncio 3.11 drops the message;
    // aioloop keeps the child's own CancelledError).
    let lp = EventLoop::with_virtual_clock().unwrap();
    let out = run(&lp, async {
        let m = spawn(5, "m2");
        let m2 = m.clone();
        get_running_loop()
            .unwrap()
            .call_later(secs(1), move || {
                m2.cancel_with("own msg");
            })
            .unwrap();
        gather([m, spawn(2, "n2")]).return_exceptions().await
    });
    match &out[0] {
        Err(e) if e.is_cancelled() => {
            assert_eq!(e.as_cancelled().unwrap().message(), Some("own msg"))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(out[1].as_ref().unwrap(), &"n2");
}

#[test]
fn an_empty_gather_is_done_at_once() {
    // python: await gather() -> [] (both modes), without yielding.
    let lp = EventLoop::with_virtual_clock().unwrap();
    run(&lp, async {
        let none: Vec<Child> = Vec::new();
        assert!(gather(none.clone()).await.unwrap().is_empty());
        assert!(gather(none).return_exceptions().await.unwrap().is_empty());
    });
    assert_eq!(lp.time(), 0.0);
}

#[test]
fn cancelling_a_gather_of_finished_children_is_delivered_at_once() {
    // python: both children done, current_task().cancel(), then
    // `await gather(*done)` raises CancelledError: no child could take the
    // cancellation.
    let lp = EventLoop::with_virtual_clock().unwrap();
    run(&lp, async {
        let children = vec![spawn(0, "a"), spawn(0, "b")];
        sleep(secs(1)).await.unwrap();
        assert!(children.iter().all(Task::done));
        current_task().unwrap().cancel();
        let out = gather(children).await;
        assert!(matches!(out, Err(ref e) if e.is_cancelled()), "{out:?}");
        current_task().unwrap().uncancel();
    });
}

#[test]
fn gather_reads_the_childrens_results_and_leaves_them() {
    // python: after `await gather(a)`, `a.result()` is still 'a' (gather
    // reads its children, it consumes nothing); a failure stays too.
    let lp = EventLoop::with_virtual_clock().unwrap();
    run(&lp, async {
        let a = spawn(1, "a");
        assert_eq!(gather([a.clone()]).await.unwrap(), ["a"]);
        assert_eq!(a.result().unwrap(), "a");
        assert_eq!(gather([&a]).await.unwrap(), ["a"], "and again");
        let f = spawn_failing(1, "f");
        assert_eq!(bad_of(&gather([&f]).await.unwrap_err()), Some("f"));
        assert_eq!(bad_of(&f.exception().unwrap().unwrap()), Some("f"));
    });
}

#[test]
fn gather_of_the_same_task_twice_fills_both_slots_and_runs_it_once() {
    // python: t = create_task(abc()); await gather(t, t, def_task)
    // -> ['abc', 'abc', 'def'], abc's body ran once.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let runs = Rc::new(Cell::new(0));
    let r = runs.clone();
    let (by_ref, by_value) = run(&lp, async move {
        let abc: Child = create_task(async move {
            r.set(r.get() + 1);
            work(1, "abc", false).await
        })
        .unwrap();
        let def = spawn(2, "def");
        let by_ref = gather([&abc, &abc, &def]).await?;
        let by_value = gather([abc.clone(), abc, def])
            .return_exceptions()
            .await?
            .into_iter()
            .map(Result::unwrap)
            .collect::<Vec<_>>();
        Ok::<_, Error>((by_ref, by_value))
    });
    assert_eq!(by_ref, ["abc", "abc", "def"]);
    assert_eq!(by_value, ["abc", "abc", "def"]);
    assert_eq!(runs.get(), 1, "one task, run once");
    assert_eq!(lp.time(), 2.0);
}

#[test]
fn an_abandoned_gather_leaves_its_children_untouched() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    run(&lp, async {
        let a = spawn(1, "a");
        let b = spawn(2, "b");
        {
            let mut g = pin!(gather([a.clone(), b.clone()]));
            poll_fn(|cx| {
                assert!(g.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
        }
        sleep(secs(3)).await.unwrap();
        assert_eq!((a.result().unwrap(), b.result().unwrap()), ("a", "b"));
    });
}

#[test]
fn create_tasks_wraps_futures_for_gather_and_needs_a_running_loop() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let out = run(&lp, async {
        gather(create_tasks([3, 1, 2].map(|s| async move { work(s, "x", false).await })).unwrap())
            .await
    });
    assert_eq!(out, ["x"; 3]);
    assert_eq!(lp.time(), 3.0, "the children ran concurrently");
    let err = create_tasks([async {}]).unwrap_err();
    assert_eq!(err.to_string(), "no running event loop");
}

// ------------------------------------------------------------------ wait

#[test]
fn wait_first_completed_returns_as_soon_as_one_is_done_with_the_rest_pending() {
    // python: a 3, b 1, c 2: FIRST_COMPLETED at 1 -> done {b}, pending {a, c}.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let (done, pending) = run(&lp, async {
        wait(
            [spawn(3, "a"), spawn(1, "b"), spawn(2, "c")],
            ReturnWhen::FirstCompleted,
            None,
        )
        .await
    });
    assert_eq!(lp.time(), 1.0);
    assert_eq!(
        done.iter().map(|t| t.result().unwrap()).collect::<Vec<_>>(),
        ["b"]
    );
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|t| !t.done() && !t.cancelled()));
    run(&lp, sleep(secs(5)));
    assert_eq!(
        pending
            .iter()
            .map(|t| t.result().unwrap())
            .collect::<Vec<_>>(),
        ["a", "c"],
        "pending in input order, and they ran on"
    );
}

#[test]
fn wait_first_exception_returns_at_the_first_failure() {
    // python: a 3, b 1, c fails at 2: at 2 -> done {b, c}, pending {a}.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let (done, pending) = run(&lp, async {
        wait(
            [spawn(3, "a"), spawn(1, "b"), spawn_failing(2, "c")],
            ReturnWhen::FirstException,
            None,
        )
        .await
    });
    assert_eq!(lp.time(), 2.0);
    assert_eq!(done.len(), 2);
    assert_eq!(done[0].result().unwrap(), "b");
    assert_eq!(bad_of(&done[1].result().unwrap_err()), Some("c"));
    assert_eq!(pending.len(), 1);
}

#[test]
fn wait_first_exception_without_a_failure_waits_for_all() {
    // python: a 3, b 1 -> at 3, done {a, b}, pending {}.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let (done, pending) = run(&lp, async {
        wait(
            [spawn(3, "a"), spawn(1, "b")],
            ReturnWhen::FirstException,
            None,
        )
        .await
    });
    assert_eq!(lp.time(), 3.0);
    assert_eq!((done.len(), pending.len()), (2, 0));
}

#[test]
fn wait_first_exception_does_not_count_a_cancelled_task() {
    // python: a cancelled at 0.5, b done at 1: returns at 1, when all are
    // done, not at the cancellation.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let (done, pending) = run(&lp, async {
        let a = spawn(3, "a");
        let a2 = a.clone();
        get_running_loop()
            .unwrap()
            .call_later(Duration::from_millis(500), move || {
                a2.cancel();
            })
            .unwrap();
        wait([a, spawn(1, "b")], ReturnWhen::FirstException, None).await
    });
    assert_eq!(lp.time(), 1.0);
    assert_eq!((done.len(), pending.len()), (2, 0));
    assert!(done[0].cancelled());
}

#[test]
fn wait_all_completed_with_a_timeout_leaves_the_pending_untouched() {
    // python: a 3, b 1, c 5, timeout 2: at 2 -> done {b}, pending {a, c},
    // not cancelled; both finish later.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let (done, pending) = run(&lp, async {
        wait(
            [spawn(3, "a"), spawn(1, "b"), spawn(5, "c")],
            ReturnWhen::AllCompleted,
            Some(secs(2)),
        )
        .await
    });
    assert_eq!(lp.time(), 2.0);
    assert_eq!(done.len(), 1);
    assert!(pending.iter().all(|t| !t.cancelled() && !t.done()));
    run(&lp, sleep(secs(5)));
    assert!(pending.iter().all(|t| t.result().is_ok()));
}

#[test]
fn wait_all_completed_returns_when_all_are_done_before_the_timeout() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let (done, pending) = run(&lp, async {
        wait(
            [spawn(1, "a"), spawn(2, "b")],
            ReturnWhen::AllCompleted,
            Some(secs(60)),
        )
        .await
    });
    assert_eq!(lp.time(), 2.0);
    assert_eq!((done.len(), pending.len()), (2, 0));
    assert_eq!(lp.scheduled_timers(), 0, "the timeout's timer is gone");
}

#[test]
fn cancelling_the_waiting_task_leaves_the_tasks_alone() {
    // python: the task awaiting wait() is cancelled at 1: CancelledError;
    // the waited task is neither cancelled nor done.
    let lp = EventLoop::with_virtual_clock().unwrap();
    run(&lp, async {
        let a = spawn(3, "a");
        let w = wait([a.clone()], ReturnWhen::AllCompleted, None);
        let waiter = create_task(async move { w.await.map(|_| ()) }).unwrap();
        sleep(secs(1)).await.unwrap();
        waiter.cancel();
        let out = waiter.await;
        assert!(matches!(out, Err(ref e) if e.is_cancelled()), "{out:?}");
        assert_eq!(now(), 1.0);
        assert!(!a.cancelled() && !a.done());
    });
}

#[test]
fn wait_with_a_zero_timeout_splits_done_and_pending() {
    // python: an already done task with timeout=0 -> done; a running one
    // -> pending; both without advancing the clock.
    let lp = EventLoop::with_virtual_clock().unwrap();
    run(&lp, async {
        let z = spawn(0, "z");
        sleep(secs(1)).await.unwrap();
        let (done, pending) = wait([z], ReturnWhen::AllCompleted, Some(Duration::ZERO))
            .await
            .unwrap();
        assert_eq!((done.len(), pending.len()), (1, 0));
        let (done, pending) = wait(
            [spawn(1, "y")],
            ReturnWhen::AllCompleted,
            Some(Duration::ZERO),
        )
        .await
        .unwrap();
        assert_eq!((done.len(), pending.len()), (0, 1));
        assert_eq!(now(), 1.0);
    });
}

#[test]
fn wait_on_an_empty_set_is_a_value_error() {
    // python 3.11-3.13: ValueError('Set of Tasks/Futures is empty.'), at
    // once (aioloop used to return two empty Vecs; the issue aligned it).
    let lp = EventLoop::with_virtual_clock().unwrap();
    let err = lp
        .run_until_complete(async {
            wait(Vec::<Child>::new(), ReturnWhen::FirstCompleted, None).await
        })
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Value(_)), "{err:?}");
    assert_eq!(err.to_string(), "Set of Tasks/Futures is empty.");
    assert_eq!(lp.time(), 0.0);
}

// ---------------------------------------------------------- as_completed

fn describe(item: Option<Result<&'static str, Error>>) -> String {
    match item {
        None => "end".to_owned(),
        Some(Ok(v)) => format!("{v} at {}", now()),
        Some(Err(e)) => match bad_of(&e) {
            Some(v) => format!("{v} failed at {}", now()),
            None if e.is_cancelled() => format!("cancelled at {}", now()),
            None if e.is_timeout() => format!("{e} at {}", now()),
            None => format!("{e:?}"),
        },
    }
}

#[test]
fn as_completed_yields_outcomes_in_completion_order() {
    // python: a 3, b fails at 1, c 2 -> ValueError('b') at 1, 'c' at 2, 'a' at 3.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let got = run(&lp, async {
        let mut it = as_completed([spawn(3, "a"), spawn_failing(1, "b"), spawn(2, "c")], None);
        let mut got = Vec::new();
        for _ in 0..4 {
            got.push(describe(it.next().await));
        }
        got
    });
    assert_eq!(got, ["b failed at 1", "c at 2", "a at 3", "end"]);
}

#[test]
fn as_completed_timeout_gives_a_timeout_per_task_still_running() {
    // python: a 3, b 1, c 5, timeout 2 -> 'b' at 1, TimeoutError at 2,
    // TimeoutError at 2; nothing cancelled.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let (got, tasks) = run(&lp, async {
        let tasks = [spawn(3, "a"), spawn(1, "b"), spawn(5, "c")];
        let mut it = as_completed(tasks.clone(), Some(secs(2)));
        let mut got = Vec::new();
        while !it.is_empty() {
            got.push(describe(it.next().await));
        }
        got.push(describe(it.next().await));
        Ok::<_, Error>((got, tasks))
    });
    assert_eq!(got, ["b at 1", "timed out at 2", "timed out at 2", "end"]);
    assert!(tasks.iter().all(|t| !t.cancelled()));
    run(&lp, sleep(secs(5)));
    assert!(tasks.iter().all(|t| t.done() && !t.cancelled()));
}

#[test]
fn as_completed_a_task_done_after_the_timeout_but_not_yet_consumed_is_a_timeout() {
    // python: b at 1 consumed; the consumer comes back at 4: a finished
    // at 3, after the timeout at 2, so it is a TimeoutError, like c.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let got = run(&lp, async {
        let mut it = as_completed([spawn(3, "a"), spawn(1, "b"), spawn(5, "c")], Some(secs(2)));
        let mut got = vec![describe(it.next().await)];
        sleep(secs(3)).await.unwrap();
        while !it.is_empty() {
            got.push(describe(it.next().await));
        }
        got
    });
    assert_eq!(got, ["b at 1", "timed out at 4", "timed out at 4"]);
}

#[test]
fn as_completed_starts_its_timer_at_the_first_next() {
    // asyncio 3.11's as_completed is a generator: the timer starts when
    // iteration does.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let got = run(&lp, async {
        let mut it = as_completed([spawn(4, "a")], Some(secs(2)));
        sleep(secs(1)).await.unwrap();
        describe(it.next().await)
    });
    assert_eq!(got, "timed out at 3");
}

#[test]
fn as_completed_yields_a_cancelled_task_as_cancelled_error() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let got = run(&lp, async {
        let a = spawn(3, "a");
        a.cancel();
        describe(as_completed([a], None).next().await)
    });
    assert_eq!(got, "cancelled at 0");
}

#[test]
fn cancelling_the_consumer_leaves_the_tasks_alone_and_loses_no_item() {
    // python: the consumer is cancelled at 2 while waiting for a (due at
    // 3): CancelledError, a neither cancelled nor done. aioloop's next()
    // can be called again (the item is kept).
    let lp = EventLoop::with_virtual_clock().unwrap();
    let got = run(&lp, async {
        let a = spawn(3, "a");
        let mut it = as_completed([a.clone(), spawn(1, "b")], None);
        let mut got = vec![describe(it.next().await)];
        let me = current_task().unwrap();
        get_running_loop()
            .unwrap()
            .call_later(secs(1), move || {
                me.cancel();
            })
            .unwrap();
        let item = it.next().await;
        assert!(
            matches!(item, Some(Err(ref e)) if e.is_cancelled()),
            "{item:?}"
        );
        got.push(format!("consumer cancelled at {}", now()));
        assert!(!a.cancelled() && !a.done());
        got.push(describe(it.next().await));
        got.push(describe(it.next().await));
        got
    });
    assert_eq!(got, ["b at 1", "consumer cancelled at 2", "a at 3", "end"]);
}

#[test]
fn as_completed_cancellation_propagates_as_a_cancellation() {
    // python: the consumer cancelled('m') inside `await next(it)` raises
    // CancelledError('m') (str: 'm'), which ends the consumer cancelled.
    let lp = EventLoop::with_virtual_clock().unwrap();
    run(&lp, async {
        let a = spawn(3, "a");
        let a2 = a.clone();
        let consumer = create_task(async move {
            let mut it = as_completed([a2], None);
            let v = it.next().await.expect("one item")?;
            Ok(v)
        })
        .unwrap();
        sleep(secs(1)).await?;
        consumer.cancel_with("m");
        let e = (&consumer).await.unwrap_err();
        assert_eq!(
            e.as_cancelled().and_then(CancelledError::message),
            Some("m")
        );
        assert_eq!(e.to_string(), "m");
        assert!(consumer.cancelled(), "`?` on the item ended it cancelled");
        assert!(!a.cancelled() && !a.done());
        Ok::<_, Error>(())
    });
}
