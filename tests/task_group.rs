//! `TaskGroup`, rule by rule, as CPython 3.11's `asyncio.TaskGroup` does
//! it (each test says what `python3` printed for the same scenario, with
//! asyncio's tenths of a second scaled to our seconds).

mod util;

use std::cell::Cell;
use std::future::Future as StdFuture;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use aioloop::{
    create_task, current_task, get_running_loop, sleep, CancelledError, Error, ErrorKind,
    EventLoop, ExceptionGroup, LoopError, Task, TaskGroup, TaskGroupStateError,
};
use util::{bad, bad_of, now, reports, run, secs, Recorder};

type Outcome<R> = Result<R, Error>;

/// A child: sleeps `s` seconds, then returns `v` or fails with `Bad(v)`;
/// cancelled, it records it, cleans up for `cleanup` seconds, propagates.
fn child(
    tg: &TaskGroup,
    s: u64,
    v: &'static str,
    fail: bool,
    cleanup: u64,
    rec: &Recorder<String>,
) -> Task<&'static str> {
    let rec = rec.clone();
    tg.create_task(async move {
        if let Err(c) = sleep(secs(s)).await {
            rec.push(format!("{v} cancelled at {}", now()));
            if cleanup > 0 {
                sleep(secs(cleanup)).await.unwrap();
                rec.push(format!("{v} cleaned up at {}", now()));
            }
            return Err(c);
        }
        if fail {
            return bad(v);
        }
        rec.push(format!("{v} done at {}", now()));
        Ok(v)
    })
    .unwrap()
}

fn failures(out: &Outcome<impl std::fmt::Debug>) -> Vec<&'static str> {
    match out {
        Err(e) if e.as_group().is_some() => e
            .as_group()
            .unwrap()
            .exceptions()
            .iter()
            .map(|e| match bad_of(e) {
                Some(v) => v,
                None if e.is_panic() => "panic",
                None => panic!("not a failure: {e:?}"),
            })
            .collect(),
        other => panic!("expected failures, got {other:?}"),
    }
}

#[test]
fn the_group_waits_for_every_child() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let (a, b) = run(&lp, async move {
        TaskGroup::new()
            .run(|tg| async move {
                let a = child(&tg, 3, "a", false, 0, &r);
                let b = child(&tg, 1, "b", false, 0, &r);
                Ok((a, b))
            })
            .await
    });
    assert_eq!(lp.time(), 3.0);
    assert_eq!((a.result().unwrap(), b.result().unwrap()), ("a", "b"));
    assert_eq!(rec.take(), ["b done at 1", "a done at 3"]);
}

#[test]
fn the_first_failure_cancels_the_siblings_and_the_body_and_waits_for_their_cleanup() {
    // python: c done 0.5, a fails at 1: b cancelled at 1, the body
    // cancelled at 1, b's cleanup done at 4; ExceptionGroup([a]) at 4;
    // the parent's cancelling() back to 0; c's result kept.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let (out, b, c) = run(&lp, async move {
        let r2 = r.clone();
        let children = Rc::new(Cell::new(None));
        let keep = children.clone();
        let out = TaskGroup::new()
            .run(|tg| async move {
                let r = r2;
                child(&tg, 1, "a", true, 0, &r);
                let b = child(&tg, 10, "b", false, 3, &r);
                let c = tg
                    .create_task(async {
                        sleep(Duration::from_millis(500)).await?;
                        Ok::<_, Error>("c")
                    })
                    .unwrap();
                keep.set(Some((b, c)));
                if let Err(c) = sleep(secs(50)).await {
                    r.push(format!("body cancelled at {}", now()));
                    return Err(c);
                }
                Ok(())
            })
            .await;
        r.push(format!("group done at {}", now()));
        assert_eq!(current_task().unwrap().cancelling(), 0);
        let (b, c) = children.take().unwrap();
        Ok::<_, Error>((out, b, c))
    });
    assert_eq!(failures(&out), ["a"]);
    assert!(b.cancelled());
    assert_eq!(c.result().unwrap(), "c");
    assert_eq!(
        rec.take(),
        [
            "b cancelled at 1",
            "body cancelled at 1",
            "b cleaned up at 4",
            "group done at 4"
        ]
    );
}

#[test]
fn every_failure_is_reported_together() {
    // python: x and y fail at 1, z (due at 2) is cancelled at 1:
    // "unhandled errors in a TaskGroup (2 sub-exceptions)", [x, y].
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let out = run(&lp, async move {
        let out: Outcome<()> = TaskGroup::new()
            .run(|tg| async move {
                child(&tg, 1, "x", true, 0, &r);
                child(&tg, 1, "y", true, 0, &r);
                child(&tg, 2, "z", true, 0, &r);
                Ok(())
            })
            .await;
        Ok::<_, Error>(out)
    });
    assert_eq!(failures(&out), ["x", "y"]);
    assert_eq!(
        out.unwrap_err().to_string(),
        "unhandled errors in a TaskGroup (2 sub-exceptions)"
    );
    assert_eq!(rec.take(), ["z cancelled at 1"]);
    assert_eq!(lp.time(), 1.0);
}

#[test]
fn a_child_cancellation_is_not_a_failure() {
    // python: k cancelled at 1, o done at 2: the group ends normally at 2.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let (k, o) = run(&lp, async move {
        TaskGroup::new()
            .run(|tg| async move {
                let k = child(&tg, 10, "k", false, 0, &r);
                let o = child(&tg, 2, "o", false, 0, &r);
                let k2 = k.clone();
                get_running_loop()
                    .unwrap()
                    .call_later(secs(1), move || {
                        k2.cancel();
                    })
                    .unwrap();
                Ok((k, o))
            })
            .await
    });
    assert!(k.cancelled());
    assert_eq!(o.result().unwrap(), "o");
    assert_eq!(lp.time(), 2.0);
    assert_eq!(rec.take(), ["k cancelled at 1", "o done at 2"]);
}

#[test]
fn cancelling_the_parent_cancels_the_children_and_propagates() {
    // python: parent cancelled('stop') at 1 in its body: p1 and p2
    // cancelled at 1, p1 cleans up until 3; the parent ends with
    // CancelledError('stop') at 3.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let out = run(&lp, async move {
        let r2 = r.clone();
        let parent = get_running_loop()
            .unwrap()
            .create_task(async move {
                TaskGroup::new()
                    .run(|tg| async move {
                        child(&tg, 10, "p1", false, 2, &r2);
                        child(&tg, 10, "p2", false, 0, &r2);
                        sleep(secs(50)).await?;
                        Ok(())
                    })
                    .await?;
                Ok::<_, Error>("never")
            })
            .unwrap();
        sleep(secs(1)).await.unwrap();
        parent.cancel_with("stop");
        let out = parent.clone().await.map(|_| ());
        r.push(format!("parent ended at {}", now()));
        assert!(
            parent.cancelled(),
            "`?` on the group's CancelledError ends it cancelled"
        );
        Ok::<_, Error>(out)
    });
    match out {
        Err(e) if e.is_cancelled() => assert_eq!(e.as_cancelled().unwrap().message(), Some("stop")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        rec.take(),
        [
            "p1 cancelled at 1",
            "p2 cancelled at 1",
            "p1 cleaned up at 3",
            "parent ended at 3"
        ]
    );
}

#[test]
fn cancelling_the_parent_while_the_group_waits_cancels_the_children() {
    // python: the body is done at once; the parent, waiting for q1, is
    // cancelled at 1: q1 cancelled at 1, the parent ends cancelled at 1.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let out = run(&lp, async move {
        let r2 = r.clone();
        let parent = get_running_loop()
            .unwrap()
            .create_task(async move {
                TaskGroup::new()
                    .run(|tg| async move {
                        child(&tg, 10, "q1", false, 0, &r2);
                        Ok(())
                    })
                    .await
            })
            .unwrap();
        sleep(secs(1)).await.unwrap();
        parent.cancel();
        let out = parent.await;
        Ok::<_, Error>(out)
    });
    assert!(matches!(out, Err(ref e) if e.is_cancelled()), "{out:?}");
    assert_eq!(rec.take(), ["q1 cancelled at 1"]);
    assert_eq!(lp.time(), 1.0);
}

#[test]
fn create_task_is_refused_before_run_and_once_the_group_is_finished() {
    // python: "TaskGroup <TaskGroup> has not been entered",
    // "TaskGroup <TaskGroup entered> is finished",
    // "TaskGroup <TaskGroup entered> has already been entered".
    let lp = EventLoop::with_virtual_clock().unwrap();
    run(&lp, async {
        let tg = TaskGroup::new();
        let err = tg.create_task(async { Ok(1) }).unwrap_err();
        assert!(matches!(err, TaskGroupStateError::NotEntered(_)));
        assert_eq!(
            err.to_string(),
            "TaskGroup <TaskGroup> has not been entered"
        );
        tg.clone().run(|_| async { Ok(()) }).await.unwrap();
        let err = tg.create_task(async { Ok(1) }).unwrap_err();
        assert_eq!(err.to_string(), "TaskGroup <TaskGroup entered> is finished");
        let err = tg.clone().run(|_| async { Ok(()) }).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "TaskGroup <TaskGroup entered> has already been entered"
        );
        assert_eq!(format!("{tg:?}"), "<TaskGroup entered>");
    });
}

#[test]
fn create_task_is_refused_while_the_group_shuts_down() {
    // python, in the body cancelled by the group:
    // "TaskGroup <TaskGroup errors=1 cancelling> is shutting down".
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let out = run(&lp, async move {
        let out: Outcome<()> = TaskGroup::new()
            .run(|tg| async move {
                child(&tg, 1, "s", true, 0, &r);
                if let Err(c) = sleep(secs(10)).await {
                    let err = tg.create_task(async { Ok("late") }).unwrap_err();
                    r.push(err.to_string());
                    r.push(format!("{tg:?}"));
                    return Err(c);
                }
                Ok(())
            })
            .await;
        Ok::<_, Error>(out)
    });
    assert_eq!(failures(&out), ["s"]);
    assert_eq!(
        rec.take(),
        [
            "TaskGroup <TaskGroup errors=1 cancelling> is shutting down",
            "<TaskGroup errors=1 cancelling>"
        ]
    );
}

#[test]
fn a_failing_body_cancels_the_children_and_is_reported() {
    // python: the body raises KeyError at 1: bb (due to fail at 2) and cc
    // are cancelled at 1; the group reports the body's error alone.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let out = run(&lp, async move {
        let out: Outcome<()> = TaskGroup::new()
            .run(|tg| async move {
                child(&tg, 2, "bb", true, 0, &r);
                child(&tg, 10, "cc", false, 0, &r);
                sleep(secs(1)).await?;
                bad("body")
            })
            .await;
        Ok::<_, Error>(out)
    });
    assert_eq!(failures(&out), ["body"]);
    assert_eq!(rec.take(), ["bb cancelled at 1", "cc cancelled at 1"]);
    assert_eq!(lp.time(), 1.0);
}

#[test]
fn the_bodys_failure_comes_after_the_childrens() {
    // python: a child fails at 1; the cancelled body raises KeyError:
    // ExceptionGroup([ValueError('child'), KeyError('body')]).
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let out = run(&lp, async move {
        let out: Outcome<()> = TaskGroup::new()
            .run(|tg| async move {
                child(&tg, 1, "child", true, 0, &r);
                match sleep(secs(10)).await {
                    Ok(()) => Ok(()),
                    Err(_) => bad("body"),
                }
            })
            .await;
        Ok::<_, Error>(out)
    });
    assert_eq!(failures(&out), ["child", "body"]);
}

#[test]
fn the_body_may_catch_the_groups_cancellation_and_go_on() {
    // python: e fails at 1, the body catches the CancelledError at 1 and
    // goes on until 4; ExceptionGroup([e]) at 4.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let out = run(&lp, async move {
        let out: Outcome<()> = TaskGroup::new()
            .run(|tg| async move {
                child(&tg, 1, "e", true, 0, &r);
                if sleep(secs(10)).await.is_err() {
                    r.push(format!("body caught at {}", now()));
                }
                sleep(secs(3)).await?;
                r.push(format!("body goes on at {}", now()));
                Ok(())
            })
            .await;
        assert_eq!(current_task().unwrap().cancelling(), 0);
        Ok::<_, Error>(out)
    });
    assert_eq!(failures(&out), ["e"]);
    assert_eq!(rec.take(), ["body caught at 1", "body goes on at 4"]);
}

#[test]
fn a_child_failing_while_the_group_waits_leaves_the_parent_uncancelled() {
    // python 3.11: g fails at 1 after the body ended: ExceptionGroup([g]),
    // h cancelled, but the parent keeps cancelling() == 1 (3.11 calls
    // uncancel() before waiting). aioloop withdraws it after waiting.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let out = run(&lp, async move {
        let out: Outcome<()> = TaskGroup::new()
            .run(|tg| async move {
                child(&tg, 1, "g", true, 0, &r);
                child(&tg, 10, "h", false, 0, &r);
                Ok(())
            })
            .await;
        assert_eq!(current_task().unwrap().cancelling(), 0);
        sleep(secs(1)).await.expect("no cancellation left over");
        Ok::<_, Error>(out)
    });
    assert_eq!(failures(&out), ["g"]);
    assert_eq!(rec.take(), ["h cancelled at 1"]);
}

#[test]
fn children_can_start_siblings_and_the_group_waits_for_them() {
    // python: a child starts a sibling at 1 that sleeps 3: the group ends at 4.
    let lp = EventLoop::with_virtual_clock().unwrap();
    run(&lp, async {
        TaskGroup::new()
            .run(|tg| async move {
                let tg2 = tg.clone();
                tg.create_task(async move {
                    sleep(secs(1)).await?;
                    tg2.create_task(async {
                        sleep(secs(3)).await?;
                        Ok(())
                    })
                    .unwrap();
                    Ok(())
                })
                .unwrap();
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(now(), 4.0);
    });
}

#[test]
fn a_panicking_child_is_a_failure_and_keeps_its_panic() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let (out, boom) = run(&lp, async {
        let keep = Rc::new(Cell::new(None));
        let k = keep.clone();
        let out: Outcome<()> = TaskGroup::new()
            .run(|tg| async move {
                k.set(Some(
                    tg.create_task(async {
                        sleep(secs(1)).await?;
                        panic!("boom");
                        #[allow(unreachable_code)]
                        Ok::<(), Error>(())
                    })
                    .unwrap(),
                ));
                Ok(())
            })
            .await;
        Ok::<_, Error>((out, keep.take().unwrap()))
    });
    match out.as_ref().map_err(Error::as_group) {
        Err(Some(g)) => match g.exceptions() {
            [p] => assert_eq!(p.as_panic().unwrap().message(), "boom"),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    match boom.result() {
        Err(e) => assert_eq!(e.as_panic().unwrap().message(), "boom"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failure_stays_in_the_childs_handle_too() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let (out, failed) = run(&lp, async {
        let keep = Rc::new(Cell::new(None));
        let k = keep.clone();
        let out: Outcome<()> = TaskGroup::new()
            .run(|tg| async move {
                k.set(Some(tg.create_task(async { bad::<()>("x") }).unwrap()));
                Ok(())
            })
            .await;
        Ok::<_, Error>((out, keep.take().unwrap()))
    });
    assert_eq!(failures(&out), ["x"]);
    assert_eq!(bad_of(&failed.result().unwrap_err()), Some("x"));
}

#[test]
fn an_empty_group_returns_at_once() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let v = run(&lp, async {
        TaskGroup::new().run(|_| async { Ok(7) }).await
    });
    assert_eq!(v, 7);
    assert_eq!(lp.time(), 0.0);
}

#[test]
fn run_outside_a_running_loop_is_refused() {
    // python: `async with TaskGroup()` outside a loop: RuntimeError('no running event loop').
    let mut fut = Box::pin(TaskGroup::new().run(|_| async { Ok(()) }));
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(Err(e)) => {
            assert!(
                matches!(e.kind(), ErrorKind::Loop(LoopError::NoRunningLoop)),
                "{e:?}"
            );
            assert_eq!(e.to_string(), "no running event loop")
        }
        other => panic!("{other:?}"),
    }
}

/// A future that is no cancellation point.
struct Foreign;
impl StdFuture for Foreign {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

#[test]
fn dropping_the_run_future_cancels_the_children() {
    // The parent is parked on a foreign future when a child fails: the
    // group's cancellation of the parent drops the parent's future (Rust's
    // fallback), and with it the group, which cancels the other children.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let out = run(&lp, async move {
        let r2 = r.clone();
        let parent = get_running_loop()
            .unwrap()
            .create_task(async move {
                TaskGroup::new()
                    .run(|tg| async move {
                        child(&tg, 1, "f", true, 0, &r2);
                        child(&tg, 10, "other", false, 0, &r2);
                        Foreign.await;
                        Ok(())
                    })
                    .await
            })
            .unwrap();
        let out = parent.clone().await.map(|_| ());
        sleep(secs(1)).await.unwrap();
        Ok::<_, Error>(out)
    });
    assert!(matches!(out, Err(ref e) if e.is_cancelled()), "{out:?}");
    assert_eq!(rec.take(), ["other cancelled at 1"]);
}

#[test]
fn a_groups_cancellation_is_a_cancellation_and_its_failures_are_not() {
    // What `run` returns: a CancelledError (is_cancelled, no group), or an
    // ExceptionGroup (a failure, even an empty one, never a cancellation).
    let e = Error::from(CancelledError::new(None));
    assert!(e.as_cancelled().is_some());
    assert!(e.as_group().is_none());
    let f = Error::from(ExceptionGroup::new(
        "unhandled errors in a TaskGroup",
        vec![],
    ));
    assert!(f.as_cancelled().is_none());
    assert!(f.as_group().unwrap().exceptions().is_empty());
    assert_eq!(
        f.to_string(),
        "unhandled errors in a TaskGroup (0 sub-exceptions)"
    );
}

#[test]
fn the_group_retrieves_its_childrens_failures() {
    // python: a child failing in a TaskGroup is reported once, in the
    // ExceptionGroup, never as "Task exception was never retrieved"
    // (`_on_task_done` calls `task.exception()`). A failing task outside a
    // group, whose handle is dropped, is reported: the control.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    let rec = Recorder::new();
    let out = run(&lp, async move {
        let out: Outcome<()> = TaskGroup::new()
            .run(|tg| async move {
                drop(child(&tg, 1, "lost1", true, 0, &rec));
                drop(child(&tg, 1, "lost2", true, 0, &rec));
                Ok(())
            })
            .await;
        sleep(secs(1)).await?;
        Ok::<_, Error>(out)
    });
    assert_eq!(failures(&out), ["lost1", "lost2"]);
    drop(out);
    assert!(
        seen.borrow().is_empty(),
        "{:?}",
        seen.borrow()
            .iter()
            .map(|c| c.message.clone())
            .collect::<Vec<_>>()
    );
    run(&lp, async {
        drop(create_task(async { bad::<()>("alone") }).unwrap());
        sleep(secs(1)).await
    });
    let got = seen.borrow();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message, "Task exception was never retrieved");
}
