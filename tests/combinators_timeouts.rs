//! `wait_for`, `timeout` / `timeout_at` and `shield`, rule by rule.
//!
//! Every expected behaviour was first observed on CPython 3.11.7 (the script
//! is quoted in a comment where it helps); all run on the virtual clock.

mod util;

use std::cell::Cell;
use std::future::{Future as StdFuture, IntoFuture};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use aioloop::{
    create_task, current_task, get_running_loop, shield, sleep, timeout, timeout_at, wait_for,
    Error, ErrorKind, EventLoop, LoopError, ScopeError, TimeoutState, TimeoutStateError,
};
use util::{bad, bad_of, now, secs, Recorder};

fn cancelling() -> u16 {
    current_task().unwrap().cancelling()
}

/// Sleeps `first`; if cancelled, records it, cleans up for `cleanup` (an
/// await inside `finally`) and propagates the cancellation.
async fn slow_with_cleanup(
    rec: Recorder<String>,
    first: u64,
    cleanup: u64,
) -> Result<&'static str, Error> {
    match sleep(secs(first)).await {
        Ok(()) => Ok("finished"),
        Err(c) => {
            rec.push(format!("cleanup start at {}", now()));
            sleep(secs(cleanup)).await?;
            rec.push(format!("cleanup done at {}", now()));
            Err(c)
        }
    }
}

// ---------------------------------------------------------------- wait_for

#[test]
fn wait_for_returns_the_result_when_in_time() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let out = lp.run_until_complete(async {
        wait_for(slow_with_cleanup(Recorder::new(), 1, 0), secs(5)).await
    });
    assert_eq!(out.unwrap(), "finished");
    assert_eq!(lp.time(), 1.0);
    assert_eq!(
        lp.scheduled_timers(),
        0,
        "the timeout's timer was cancelled"
    );
}

#[test]
fn wait_for_timeout_cancels_the_inner_and_waits_for_its_cleanup() {
    // py3.11: cleanup starts at +1, TimeoutError raised at +3.0 after
    // "cleanup done"; the waiter's cancelling() is 0 afterwards.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let out = lp.run_until_complete(async move {
        let res = wait_for(slow_with_cleanup(r.clone(), 10, 2), secs(1)).await;
        r.push(format!("wait_for returned at {}", now()));
        assert_eq!(cancelling(), 0);
        res
    });
    assert!(matches!(&out, Err(e) if e.is_timeout()), "{out:?}");
    assert_eq!(
        rec.take(),
        [
            "cleanup start at 1",
            "cleanup done at 3",
            "wait_for returned at 3"
        ]
    );
}

#[test]
fn wait_for_returns_the_value_of_an_inner_that_refuses_the_cancellation() {
    // py3.11 (and 3.12's docs): "If the task suppresses the cancellation and
    // returns a value instead, that value is returned."
    let lp = EventLoop::with_virtual_clock().unwrap();
    let out = lp.run_until_complete(async {
        let inner = async {
            match sleep(secs(10)).await {
                Ok(()) => "slept",
                Err(_) => "refused",
            }
        };
        let v = wait_for(inner, secs(1)).await;
        assert_eq!(cancelling(), 0);
        v
    });
    assert_eq!(out.unwrap(), "refused");
    assert_eq!(lp.time(), 1.0);
}

#[test]
fn cancelling_the_waiter_cancels_the_inner_and_is_a_cancelled_error() {
    // py3.11: the inner sees CancelledError, the outer task ends cancelled
    // with the message given to cancel().
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let outer = lp
        .create_task(async move {
            let res = wait_for(slow_with_cleanup(r.clone(), 10, 0), secs(5)).await;
            r.push(format!("outer got {res:?}"));
            res
        })
        .unwrap();
    let o = outer.clone();
    lp.call_later(secs(1), move || assert!(o.cancel_with("bye")))
        .unwrap();
    let out = lp.run_until_complete(outer);
    match out {
        Err(e) => assert_eq!(e.as_cancelled().expect("cancelled").message(), Some("bye")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        rec.take(),
        [
            "cleanup start at 1",
            "cleanup done at 1",
            "outer got Err(CancelledError('bye'))"
        ]
    );
    assert_eq!(lp.time(), 1.0, "the 5 s timeout never fired");
}

#[test]
fn wait_for_with_a_zero_timeout_cancels_the_inner_before_its_body_runs() {
    // py3.11: TimeoutError, and the coroutine body never ran.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let out = lp.run_until_complete(async move {
        wait_for(
            async move {
                r.set(true);
                5
            },
            Duration::ZERO,
        )
        .await
    });
    assert!(matches!(&out, Err(e) if e.is_timeout()), "{out:?}");
    assert!(!ran.get());
}

#[test]
fn wait_for_passes_the_inner_exception_through() {
    // py3.11: `ValueError('x')` comes out of wait_for unchanged.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let out = lp.run_until_complete(async {
        let bad = async {
            sleep(secs(1)).await.unwrap();
            bad::<u8>("x")
        };
        match wait_for(bad, secs(5)).await {
            Err(e) => bad_of(&e),
            other => panic!("{other:?}"),
        }
    });
    assert_eq!(out.unwrap(), Some("x"));
}

#[test]
fn wait_for_reports_a_panic_of_the_inner_task() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let out = lp.run_until_complete(async {
        let boom = async {
            panic!("boom");
            #[allow(unreachable_code)]
            1u8
        };
        match wait_for(boom, secs(5)).await {
            Err(e) => e.as_panic().expect("a panic").message().to_owned(),
            other => panic!("{other:?}"),
        }
    });
    assert_eq!(out.unwrap(), "boom");
}

#[test]
fn wait_for_none_waits_for_ever() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let out = lp.run_until_complete(async {
        wait_for(slow_with_cleanup(Recorder::new(), 100, 0), None).await
    });
    assert_eq!(out.unwrap(), "finished");
    assert_eq!(lp.time(), 100.0);
}

#[test]
fn wait_for_a_task_handle_cancels_that_task_on_timeout() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let inner = lp.create_task(sleep(secs(10))).unwrap();
    let i = inner.clone();
    let out = lp.run_until_complete(async move { wait_for(i, secs(1)).await });
    assert!(matches!(&out, Err(e) if e.is_timeout()), "{out:?}");
    assert!(inner.cancelled(), "asyncio cancels the task it was given");
}

#[test]
fn wait_for_times_out_though_the_inner_finished_in_the_iteration_of_the_expiry() {
    // The inner task completes in the same iteration as the timer fires,
    // just before it: the waiter has not run yet. CPython 3.12.1 and 3.13.0
    // (wait_for on top of timeout, the reference): TimeoutError, the result
    // is lost; 3.11.7's wait_for returned it (6).
    let lp = EventLoop::with_virtual_clock().unwrap();
    let f = lp.create_future::<u32>();
    let inner = lp.create_task(f.clone().into_future()).unwrap();
    let lr = lp.loop_ref();
    lp.call_later(Duration::from_millis(500), move || {
        f.set_result(6).unwrap(); // the inner's step is queued for the next iteration...
        lr.advance_time(Duration::from_millis(500)).unwrap(); // ...where the expiry is due too
    })
    .unwrap();
    let i = inner.clone();
    let out = lp.run_until_complete(async move {
        let v = wait_for(i, secs(1)).await;
        assert_eq!(cancelling(), 0, "the expiry's request was withdrawn");
        v
    });
    assert!(matches!(&out, Err(e) if e.is_timeout()), "{out:?}");
    assert_eq!(inner.result().unwrap(), 6, "the inner finished");
    assert_eq!(lp.time(), 1.0);
}

#[test]
fn question_mark_converts_timeouts_and_cancellations() {
    async fn two_steps() -> Result<u32, Error> {
        sleep(secs(1)).await?; // CancelledError
        let v = wait_for(async { 20u32 }, secs(1)).await?;
        wait_for(sleep(secs(10)), secs(1)).await?; // TimeoutError
        Ok(v)
    }
    let lp = EventLoop::with_virtual_clock().unwrap();
    let t = lp.create_task(two_steps()).unwrap();
    lp.run_until_complete(sleep(secs(5))).unwrap();
    match t.result() {
        Err(e) => assert!(e.is_timeout(), "{e:?}"),
        other => panic!("{other:?}"),
    }
    assert!(
        !t.cancelled(),
        "a timeout makes the task fail, not cancelled"
    );
    assert_eq!(lp.time(), 5.0);
}

#[test]
fn a_task_propagating_the_cancelled_variant_ends_cancelled() {
    async fn waiter() -> Result<(), Error> {
        wait_for(sleep(secs(10)), secs(5)).await?;
        Ok(())
    }
    let lp = EventLoop::with_virtual_clock().unwrap();
    let t = lp.create_task(waiter()).unwrap();
    let t2 = t.clone();
    lp.call_later(secs(1), move || {
        t2.cancel();
    })
    .unwrap();
    let t3 = t.clone();
    let out = lp.run_until_complete(t3);
    assert!(matches!(&out, Err(e) if e.is_cancelled()), "{out:?}");
    assert!(t.cancelled());
}

// ---------------------------------------------------------------- timeout

#[test]
fn timeout_expiry_is_a_timeout_error_and_marks_it_expired() {
    // py3.11: TimeoutError at +1.0, cm.expired() is True, cancelling() 0.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let out = lp.run_until_complete(async {
        let cm = timeout(secs(1)).unwrap();
        let r = cm.run(sleep(secs(10))).await;
        assert!(cm.expired());
        assert_eq!(cm.state(), TimeoutState::Expired);
        assert_eq!(cancelling(), 0);
        r
    });
    assert!(matches!(&out, Err(e) if e.is_timeout()), "{out:?}");
    assert_eq!(lp.time(), 1.0);
    assert_eq!(lp.scheduled_timers(), 0, "the sleep's timer is gone too");
}

#[test]
fn timeout_when_is_loop_time_plus_the_delay() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    lp.run_until_complete(async {
        sleep(secs(2)).await.unwrap();
        assert_eq!(timeout(secs(3)).unwrap().when(), Some(5.0));
        assert_eq!(timeout(None).unwrap().when(), None);
        assert_eq!(timeout_at(7.5).when(), Some(7.5));
    })
    .unwrap();
}

#[test]
fn a_timeout_that_does_not_expire_returns_the_result_and_is_finished() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let out = lp.run_until_complete(async {
        let cm = timeout(secs(5)).unwrap();
        let r = cm.run(async { sleep(secs(1)).await.map(|()| 9) }).await;
        assert!(!cm.expired());
        assert_eq!(cm.state(), TimeoutState::Finished);
        r
    });
    assert_eq!(out.unwrap(), 9);
    assert_eq!(lp.scheduled_timers(), 0, "leaving disarmed the timer");
}

#[test]
fn timeout_cleanup_that_awaits_runs_before_the_timeout_error() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let out = lp.run_until_complete(async move {
        let res = timeout(secs(1))
            .unwrap()
            .run(slow_with_cleanup(r.clone(), 10, 2))
            .await;
        r.push(format!("timeout returned at {}", now()));
        res
    });
    assert!(matches!(&out, Err(e) if e.is_timeout()), "{out:?}");
    assert_eq!(
        rec.take(),
        [
            "cleanup start at 1",
            "cleanup done at 3",
            "timeout returned at 3"
        ]
    );
}

#[test]
fn reschedule_later_extends_the_deadline() {
    // py3.11: timeout(1), reschedule(now + 5), sleep(3): no error, +3.0.
    let lp = EventLoop::with_virtual_clock().unwrap();
    lp.run_until_complete(async {
        let cm = timeout(secs(1)).unwrap();
        cm.run(async {
            cm.reschedule(now() + 5.0).unwrap();
            sleep(secs(3)).await
        })
        .await
        .unwrap();
        assert!(!cm.expired());
    })
    .unwrap();
    assert_eq!(lp.time(), 3.0);
}

#[test]
fn reschedule_earlier_shortens_the_deadline() {
    // py3.11: timeout(10), reschedule(now + 2), sleep(5): TimeoutError at +2.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let out = lp.run_until_complete(async {
        let cm = timeout(secs(10)).unwrap();
        cm.run(async {
            cm.reschedule(now() + 2.0).unwrap();
            assert_eq!(cm.when(), Some(2.0));
            sleep(secs(5)).await
        })
        .await
    });
    assert!(matches!(&out, Err(e) if e.is_timeout()), "{out:?}");
    assert_eq!(lp.time(), 2.0);
}

#[test]
fn reschedule_none_disarms_the_timeout() {
    // py3.11: timeout(1), reschedule(None), sleep(2): no error; when() None.
    let lp = EventLoop::with_virtual_clock().unwrap();
    lp.run_until_complete(async {
        let cm = timeout(secs(1)).unwrap();
        cm.run(async {
            cm.reschedule(None).unwrap();
            sleep(secs(2)).await
        })
        .await
        .unwrap();
        assert_eq!(cm.when(), None);
        assert!(!cm.expired());
    })
    .unwrap();
    assert_eq!(lp.time(), 2.0);
}

#[test]
fn reschedule_to_the_past_expires_on_the_next_iteration() {
    // py3.11: reschedule(now - 1) inside timeout(10): TimeoutError at +0.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let out = lp.run_until_complete(async {
        let cm = timeout(secs(10)).unwrap();
        cm.run(async {
            cm.reschedule(now() - 1.0).unwrap();
            sleep(secs(5)).await
        })
        .await
    });
    assert!(matches!(&out, Err(e) if e.is_timeout()), "{out:?}");
    assert_eq!(lp.time(), 0.0);
}

#[test]
fn reschedule_outside_the_body_is_refused_with_asyncios_texts() {
    // py3.11: "Timeout has not been entered" before; "Cannot change state
    // of expired Timeout" / "... of finished Timeout" after.
    let lp = EventLoop::with_virtual_clock().unwrap();
    lp.run_until_complete(async {
        let fresh = timeout(secs(1)).unwrap();
        let e = fresh.reschedule(5.0).unwrap_err();
        assert!(matches!(e, TimeoutStateError::NotEntered));
        assert_eq!(e.to_string(), "Timeout has not been entered");

        let expired = timeout(Duration::ZERO).unwrap();
        let _ = expired.run(sleep(secs(1))).await;
        let e = expired.reschedule(5.0).unwrap_err();
        assert_eq!(e.to_string(), "Cannot change state of expired Timeout");

        let finished = timeout(secs(5)).unwrap();
        finished.run(async {}).await.unwrap();
        let e = finished.reschedule(None).unwrap_err();
        assert_eq!(e.to_string(), "Cannot change state of finished Timeout");
    })
    .unwrap();
}

#[test]
fn entering_a_timeout_twice_is_refused_with_asyncios_text() {
    // py3.11: RuntimeError('Timeout has already been entered'); the body of
    // the second `run` does not run, and no panic is involved.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let ran = Rc::new(Cell::new(0));
    let r = ran.clone();
    let out = lp.run_until_complete(async move {
        let cm = timeout(secs(5)).unwrap();
        cm.run(async { r.set(r.get() + 1) }).await.unwrap();
        let second = cm.run(async { r.set(r.get() + 1) }).await;
        match second {
            Err(e) if matches!(e.kind(), ErrorKind::Scope(ScopeError::AlreadyEntered)) => {
                e.to_string()
            }
            other => format!("unexpected: {other:?}"),
        }
    });
    assert_eq!(out.unwrap(), "Timeout has already been entered");
    assert_eq!(ran.get(), 1);
}

#[test]
fn dropping_the_run_future_disarms_the_timeout() {
    // Leaving the scope by drop (a `select` that picked another branch)
    // cancels the timer: nothing fires into the task later.
    let lp = EventLoop::with_virtual_clock().unwrap();
    lp.run_until_complete(async {
        let cm = timeout(secs(1)).unwrap();
        {
            let mut run = std::pin::pin!(cm.run(sleep(secs(10))));
            std::future::poll_fn(|cx| {
                assert!(run.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            assert_eq!(cm.state(), TimeoutState::Active);
        }
        assert_eq!(cm.state(), TimeoutState::Finished);
        assert_eq!(get_running_loop().unwrap().scheduled_timers(), 0);
        sleep(secs(5)).await.unwrap(); // not cancelled at +1
        assert_eq!(cancelling(), 0);
    })
    .unwrap();
    assert_eq!(lp.time(), 5.0);
}

#[test]
fn dropping_the_run_future_of_an_expiring_timeout_withdraws_its_request() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    lp.run_until_complete(async {
        let cm = timeout(Duration::ZERO).unwrap();
        {
            let mut run = std::pin::pin!(cm.run(Foreign(Rc::default())));
            std::future::poll_fn(|cx| {
                assert!(run.as_mut().poll(cx).is_pending());
                Poll::Ready(())
            })
            .await;
            sleep(Duration::ZERO).await.unwrap_err(); // the expiry's request
            assert_eq!(cm.state(), TimeoutState::Expiring);
            assert_eq!(cancelling(), 1);
        }
        assert_eq!(cm.state(), TimeoutState::Expired);
        assert_eq!(cancelling(), 0);
        sleep(secs(1)).await.unwrap();
    })
    .unwrap();
}

#[test]
fn timeout_outside_a_running_loop_is_refused_with_asyncios_text() {
    // py3.11: asyncio.timeout(1) outside a loop: RuntimeError('no running
    // event loop'); asyncio.timeout(None).unwrap() too (checked with 3.11 and 3.13).
    // An error now, no longer a panic.
    for delay in [Some(secs(1)), None] {
        let e = timeout(delay).unwrap_err();
        assert!(matches!(e, LoopError::NoRunningLoop), "{e:?}");
        assert_eq!(e.to_string(), "no running event loop");
    }
}

#[test]
fn a_timeout_entered_outside_a_task_is_refused_with_asyncios_text() {
    // py3.11: `async with asyncio.timeout_at(...)` outside a task:
    // RuntimeError('Timeout should be used inside a task'); the body does
    // not run, and no panic is involved.
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let cm = timeout_at(1.0);
    let mut run = std::pin::pin!(cm.run(async move { r.set(true) }));
    let mut cx = Context::from_waker(std::task::Waker::noop());
    let e = match run.as_mut().poll(&mut cx) {
        Poll::Ready(Err(e)) => e,
        Poll::Ready(Ok(())) => panic!("the body ran outside a task"),
        Poll::Pending => panic!("pending outside a task"),
    };
    assert!(
        matches!(e.kind(), ErrorKind::Scope(ScopeError::NotInTask)),
        "{e:?}"
    );
    assert_eq!(e.to_string(), "Timeout should be used inside a task");
    assert!(!ran.get());
    assert_eq!(cm.state(), TimeoutState::Created);
}

#[test]
fn timeout_debug_is_asyncios_repr() {
    // py3.11: repr(asyncio.timeout(None).unwrap()) == '<Timeout [created]>'.
    let lp = EventLoop::with_virtual_clock().unwrap();
    lp.run_until_complete(async {
        let cm = timeout_at(1.5);
        assert_eq!(format!("{cm:?}"), "<Timeout [created]>");
        cm.run(async {
            assert_eq!(format!("{cm:?}"), "<Timeout [active] when=1.5>");
        })
        .await
        .unwrap();
        assert_eq!(format!("{cm:?}"), "<Timeout [finished]>");
    })
    .unwrap();
}

#[test]
fn nested_timeouts_only_the_expired_inner_one_converts() {
    // py3.11: inner timeout(1) in outer timeout(10): the inner raises
    // TimeoutError, inner.expired() True, outer.expired() False; the outer
    // body goes on and ends normally at +2.
    let lp = EventLoop::with_virtual_clock().unwrap();
    lp.run_until_complete(async {
        let outer = timeout(secs(10)).unwrap();
        outer
            .run(async {
                let inner = timeout(secs(1)).unwrap();
                let r = inner.run(sleep(secs(5))).await;
                assert!(matches!(&r, Err(e) if e.is_timeout()), "{r:?}");
                assert!(inner.expired() && !outer.expired());
                sleep(secs(1)).await
            })
            .await
            .unwrap();
        assert!(!outer.expired());
        assert_eq!(cancelling(), 0);
    })
    .unwrap();
    assert_eq!(lp.time(), 2.0);
}

#[test]
fn nested_timeouts_the_outer_expiry_passes_through_the_inner_as_cancelled() {
    // py3.11: outer timeout(1), inner timeout(10): the inner sees a
    // CancelledError (not expired), the outer converts it; cancelling() 0.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let out = lp.run_until_complete(async move {
        let outer = timeout(secs(1)).unwrap();
        let res = outer
            .run(async {
                let inner = timeout(secs(10)).unwrap();
                let res = inner.run(sleep(secs(5))).await;
                r.push(format!("inner: {res:?}, expired={}", inner.expired()));
                res
            })
            .await;
        assert!(outer.expired());
        assert_eq!(cancelling(), 0);
        res
    });
    assert!(matches!(&out, Err(e) if e.is_timeout()), "{out:?}");
    assert_eq!(rec.take(), ["inner: Err(CancelledError()), expired=false"]);
    assert_eq!(lp.time(), 1.0);
}

#[test]
fn a_cancel_from_elsewhere_during_a_timeout_stays_a_cancelled_error() {
    // py3.11: victim in timeout(10), cancelled("elsewhere") at +1: the task
    // ends cancelled with that message.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let victim = lp
        .create_task(async {
            let cm = timeout(secs(10)).unwrap();
            let r = cm.run(sleep(secs(5))).await;
            assert!(!cm.expired());
            r
        })
        .unwrap();
    let v = victim.clone();
    lp.call_later(secs(1), move || {
        v.cancel_with("elsewhere");
    })
    .unwrap();
    let v = victim.clone();
    let out = lp.run_until_complete(v);
    match out {
        Err(e) => assert_eq!(
            e.as_cancelled().expect("cancelled").message(),
            Some("elsewhere")
        ),
        other => panic!("{other:?}"),
    }
    assert!(victim.cancelled());
}

#[test]
fn expiry_and_a_cancel_from_elsewhere_at_once_is_a_cancelled_error() {
    // py3.11: timeout(1) and task.cancel() at +1 in the same iteration:
    // cancelling() is 2, the timeout withdraws 1, CancelledError propagates.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let victim = lp
        .create_task(async {
            let cm = timeout(secs(1)).unwrap();
            let r = cm.run(sleep(secs(5))).await;
            assert!(cm.expired());
            assert_eq!(cancelling(), 1);
            r
        })
        .unwrap();
    let v = victim.clone();
    let lr = lp.loop_ref();
    lp.call_soon(move || {
        // Scheduled after the task's first step armed its timer at 1.0.
        lr.call_later(secs(1), move || {
            v.cancel();
        })
        .unwrap();
    })
    .unwrap();
    let v = victim.clone();
    let out = lp.run_until_complete(v);
    assert!(matches!(&out, Err(e) if e.is_cancelled()), "{out:?}");
    assert_eq!(lp.time(), 1.0);
}

#[test]
fn a_body_that_refuses_the_cancellation_returns_its_value_and_is_expired() {
    // py3.11: the body catches CancelledError and goes on: no TimeoutError,
    // cm.expired() True, cancelling() back to 0.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let out = lp.run_until_complete(async {
        let cm = timeout(secs(1)).unwrap();
        let v = cm
            .run(async {
                match sleep(secs(5)).await {
                    Ok(()) => "slept",
                    Err(_) => "caught inside",
                }
            })
            .await;
        assert!(cm.expired());
        assert_eq!(cancelling(), 0);
        v
    });
    assert_eq!(out.unwrap(), "caught inside");
}

#[test]
fn a_timeout_entered_by_a_task_refusing_an_earlier_cancel_still_converts() {
    // The level at entry is what counts (3.11.7's `uncancel() <=
    // self._cancelling`), not zero.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let out = lp.run_until_complete(async {
        current_task().unwrap().cancel();
        assert!(sleep(secs(1)).await.is_err()); // refused: cancelling() stays 1
        let r = timeout(secs(1)).unwrap().run(sleep(secs(5))).await;
        assert_eq!(cancelling(), 1);
        r
    });
    assert!(matches!(&out, Err(e) if e.is_timeout()), "{out:?}");
}

/// A future that is no cancellation point, and records being dropped.
struct Foreign(Rc<Cell<bool>>);
impl StdFuture for Foreign {
    type Output = ();
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}
impl Drop for Foreign {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

#[test]
fn a_foreign_body_that_ignores_the_cancellation_is_dropped_and_times_out() {
    // Not an asyncio case (every Python await is a cancellation point): the
    // scope consumes the request itself and drops the body in place.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let dropped = Rc::new(Cell::new(false));
    let d = dropped.clone();
    let out = lp.run_until_complete(async move {
        let r = timeout(secs(1)).unwrap().run(Foreign(d.clone())).await;
        assert!(d.get(), "the body was dropped before the error came out");
        r
    });
    assert!(matches!(&out, Err(e) if e.is_timeout()), "{out:?}");
    assert!(dropped.get());
}

#[test]
fn timeout_loses_the_result_of_a_task_done_in_the_iteration_of_the_expiry() {
    // CPython 3.11.7, 3.12.1, 3.13.0: the result is lost, the scope raises
    // TimeoutError (the cancel is delivered at the resumed await).
    let lp = EventLoop::with_virtual_clock().unwrap();
    let f = lp.create_future::<u32>();
    let inner = lp.create_task(f.clone().into_future()).unwrap();
    let out = lp.run_until_complete(async move {
        let cm = Rc::new(timeout(secs(10)).unwrap());
        let (c, lr) = (cm.clone(), get_running_loop().unwrap());
        lr.clone()
            .call_soon(move || {
                f.set_result(5).unwrap(); // the inner's step is queued first
                c.reschedule(lr.time() - 1.0).unwrap(); // the expiry right behind it
            })
            .unwrap();
        let v = cm.run(inner).await;
        assert!(cm.expired());
        assert_eq!(cancelling(), 0);
        v
    });
    assert!(matches!(&out, Err(e) if e.is_timeout()), "{out:?}");
}

// ---------------------------------------------------------------- shield

#[test]
fn cancelling_the_awaiter_of_a_shield_leaves_the_inner_running() {
    // py3.11: outer cancelled("x") at +1 while the inner goes on; the inner
    // finishes at +2 and `await inner` gives 42.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let inner = lp
        .create_task(async {
            sleep(secs(2)).await.unwrap();
            42u32
        })
        .unwrap();
    let i = inner.clone();
    let outer = lp.create_task(async move { shield(i).await }).unwrap();
    let o = outer.clone();
    lp.call_later(secs(1), move || {
        o.cancel_with("x");
    })
    .unwrap();
    let o = outer.clone();
    let out = lp.run_until_complete(o);
    match out {
        Err(e) => assert_eq!(e.as_cancelled().expect("cancelled").message(), Some("x")),
        other => panic!("{other:?}"),
    }
    assert_eq!(lp.time(), 1.0, "the outer got its CancelledError at once");
    assert!(!inner.done() && !inner.cancelled());
    let v = lp.run_until_complete(inner);
    assert_eq!(v.unwrap(), 42);
    assert_eq!(lp.time(), 2.0);
}

#[test]
fn a_shielded_task_cancelled_itself_cancels_the_awaiter_without_the_message() {
    // py3.11: inner.cancel("inner-msg"): the awaiter sees CancelledError()
    // with no args (shield's `outer.cancel()`), and ends cancelled.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let inner = lp.create_task(sleep(secs(5))).unwrap();
    let i = inner.clone();
    let outer = lp.create_task(async move { shield(i).await }).unwrap();
    lp.call_later(secs(1), move || {
        inner.cancel_with("inner-msg");
    })
    .unwrap();
    let o = outer.clone();
    let out = lp.run_until_complete(o);
    match out {
        Err(e) => assert_eq!(e.as_cancelled().expect("cancelled").message(), None),
        other => panic!("{other:?}"),
    }
    assert!(outer.cancelled());
}

#[test]
fn shield_passes_the_inner_exception_through() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let out = lp.run_until_complete(async {
        let bad = async {
            sleep(secs(1)).await.unwrap();
            bad::<()>("v")
        };
        match shield(bad).await {
            Err(e) => bad_of(&e),
            other => panic!("{other:?}"),
        }
    });
    assert_eq!(out.unwrap(), Some("v"));
}

#[test]
fn shield_starts_the_inner_task_even_if_never_awaited() {
    // py3.11: shield(coro) schedules the task at once (ensure_future).
    let lp = EventLoop::with_virtual_clock().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    lp.run_until_complete(async move {
        let s = shield(async move { r.set(true) });
        sleep(Duration::ZERO).await.unwrap();
        assert!(s.task().expect("a task").done());
    })
    .unwrap();
    assert!(ran.get());
}

#[test]
fn wait_for_of_a_shield_times_out_while_the_inner_goes_on() {
    // py3.11: wait_for(shield(inner), 1): TimeoutError at +1, inner not
    // done; it finishes at +2 with 42.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let inner = lp
        .create_task(async {
            sleep(secs(2)).await.unwrap();
            42u32
        })
        .unwrap();
    let i = inner.clone();
    let out = lp.run_until_complete(async move { wait_for(shield(i), secs(1)).await });
    assert!(matches!(&out, Err(e) if e.is_timeout()), "{out:?}");
    assert_eq!(lp.time(), 1.0);
    assert!(!inner.done());
    let v = lp.run_until_complete(inner);
    assert_eq!(v.unwrap(), 42);
}

#[test]
fn the_inner_task_of_a_cancelled_shield_can_be_awaited_later() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let out = lp.run_until_complete(async {
        let s = shield(async {
            sleep(secs(3)).await?;
            Ok("late")
        });
        let inner = s.task().expect("a task").clone();
        let r = timeout(secs(1)).unwrap().run(s).await;
        assert!(matches!(&r, Err(e) if e.is_timeout()), "{r:?}");
        inner.await
    });
    assert_eq!(out.unwrap(), "late");
    assert_eq!(lp.time(), 3.0);
}

#[test]
fn an_inner_task_done_before_the_shield_is_polled_gives_its_result() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let out = lp.run_until_complete(async {
        let t = create_task(async { 3u8 }).unwrap();
        sleep(Duration::ZERO).await.unwrap();
        assert!(t.done());
        shield(t).await
    });
    assert_eq!(out.unwrap(), 3);
}
