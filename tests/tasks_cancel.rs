//! asyncio's cancellation model, rule by rule.

mod util;

use std::cell::Cell;
use std::future::Future as StdFuture;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use aioloop::{current_task, sleep, Error, EventLoop};
use util::{secs, Recorder};

#[test]
fn cancel_before_the_first_step_never_runs_the_body() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let t = lp.create_task(async move { r.set(true) }).unwrap();
    assert!(t.cancel());
    let out = lp.run_until_complete(t);
    assert!(matches!(out, Err(ref e) if e.is_cancelled()));
    assert!(!ran.get());
}

#[test]
fn cancel_while_sleeping_delivers_cancelled_error_at_the_sleep() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let t = lp
        .create_task(async move {
            r.push("before".to_owned());
            let res = sleep(secs(3600)).await;
            r.push(format!("sleep returned {res:?}"));
            res?;
            r.push("never".to_owned());
            Ok::<_, Error>(())
        })
        .unwrap();
    let t2 = t.clone();
    lp.call_later(secs(1), move || assert!(t2.cancel_with("stop it")))
        .unwrap();
    let out = lp.run_until_complete(t);
    match out {
        Err(e) => assert_eq!(e.as_cancelled().unwrap().message(), Some("stop it")),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        rec.take(),
        ["before", "sleep returned Err(CancelledError('stop it'))"]
    );
    assert_eq!(lp.time(), 1.0, "the hour-long sleep ended at the cancel");
    assert_eq!(lp.scheduled_timers(), 0, "its timer left the wheel");
}

#[test]
fn cancel_twice_counts_two_requests_and_a_done_task_refuses() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let t = lp.create_task(sleep(secs(10))).unwrap();
    lp.run_until_complete(sleep(secs(1))).unwrap();
    assert!(t.cancel_with("m1"));
    assert_eq!(t.cancelling(), 1);
    assert!(t.cancel());
    assert_eq!(t.cancelling(), 2);
    let t2 = t.clone();
    let out = lp.run_until_complete(t2);
    assert!(out.is_err());
    assert!(t.cancelled());
    assert!(!t.cancel(), "cancel on a done task returns false");
    assert_eq!(t.cancelling(), 2);
}

#[test]
fn a_coroutine_may_catch_the_cancellation_and_finish_normally() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let t = lp
        .create_task(async move {
            if let Err(c) = sleep(secs(10)).await {
                r.push(format!(
                    "caught: {c}, cancelling={}",
                    current_task().unwrap().cancelling()
                ));
            }
            sleep(Duration::ZERO).await.unwrap(); // no second cancellation
            "finished normally"
        })
        .unwrap();
    let t2 = t.clone();
    lp.call_later(secs(1), move || {
        t2.cancel();
    })
    .unwrap();
    let out = lp.run_until_complete(t);
    assert_eq!(out.unwrap(), "finished normally");
    assert_eq!(rec.take(), ["caught: cancelled, cancelling=1"]);
}

#[test]
fn uncancel_withdraws_a_request() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let t = lp.create_task(sleep(secs(10))).unwrap();
    lp.run_until_complete(sleep(secs(1))).unwrap();
    t.cancel();
    t.cancel();
    assert_eq!(t.uncancel(), 1);
    assert_eq!(t.uncancel(), 0);
    assert_eq!(t.uncancel(), 0, "never below zero");
}

#[test]
fn cancelling_a_task_that_awaits_another_cancels_the_inner_one_too() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let inner = lp.create_task(sleep(secs(10))).unwrap();
    let i2 = inner.clone();
    let outer = lp.create_task(i2).unwrap();
    let o2 = outer.clone();
    lp.call_later(secs(1), move || {
        o2.cancel_with("from above");
    })
    .unwrap();
    let o3 = outer.clone();
    let out = lp.run_until_complete(o3);
    assert!(
        matches!(out, Err(ref e) if e.as_cancelled().is_some_and(|c| c.message() == Some("from above"))),
        "{out:?}"
    );
    assert!(inner.cancelled(), "asyncio cancels the awaited task");
    assert!(outer.cancelled());
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
fn a_task_parked_on_a_foreign_future_is_cancelled_by_dropping_it() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let dropped = Rc::new(Cell::new(false));
    let t = lp.create_task(Foreign(dropped.clone())).unwrap();
    lp.run_until_complete(sleep(secs(1))).unwrap();
    assert!(!dropped.get(), "parked, not dropped");
    t.cancel();
    let t2 = t.clone();
    let out = lp.run_until_complete(t2);
    assert!(matches!(out, Err(ref e) if e.is_cancelled()));
    assert!(dropped.get(), "the destructor ran: Rust's `finally`");
}

#[test]
fn a_task_that_cancels_itself_and_returns_ends_cancelled() {
    // asyncio's `_must_cancel` at StopIteration.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let t = lp
        .create_task(async {
            current_task().unwrap().cancel();
            42
        })
        .unwrap();
    let t2 = t.clone();
    let out = lp.run_until_complete(t2);
    assert!(matches!(out, Err(ref e) if e.is_cancelled()));
    assert!(t.cancelled());
}

#[test]
fn cleanup_after_a_caught_cancellation_can_still_await() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let t = lp
        .create_task(async move {
            match sleep(secs(100)).await {
                Ok(()) => Ok(()),
                Err(c) => {
                    r.push("cleaning up");
                    sleep(secs(2)).await.unwrap(); // an await inside `finally`
                    r.push("cleaned up");
                    Err(c)
                }
            }
        })
        .unwrap();
    let t2 = t.clone();
    lp.call_later(secs(1), move || {
        t2.cancel();
    })
    .unwrap();
    let out = lp.run_until_complete(t);
    assert!(matches!(out, Err(ref e) if e.is_cancelled()));
    assert_eq!(rec.take(), ["cleaning up", "cleaned up"]);
    assert_eq!(lp.time(), 3.0);
}

#[test]
fn a_pending_cancel_at_the_await_of_a_task_cancels_it_and_waits_for_it() {
    // py3.11: a task with a pending cancel request that awaits another task
    // cancels it (`_fut_waiter.cancel()`) and stays parked until that task
    // has finished its cleanup (+2 s here); the await then raises.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let r = rec.clone();
    let inner = lp
        .create_task(async move {
            match sleep(secs(10)).await {
                Ok(()) => Ok("finished"),
                Err(c) => {
                    r.push("inner cleanup".to_owned());
                    sleep(secs(2)).await?;
                    Err(c)
                }
            }
        })
        .unwrap();
    let i = inner.clone();
    let out = lp
        .run_until_complete(async move {
            sleep(Duration::ZERO).await.unwrap();
            current_task().unwrap().cancel();
            let res = (&i).await;
            (
                res.is_err_and(|e| e.is_cancelled()),
                i.done(),
                aioloop::get_running_loop().unwrap().time(),
            )
        })
        .unwrap();
    assert_eq!(out, (true, true, 2.0));
    assert_eq!(rec.take(), ["inner cleanup"]);
}

#[test]
fn a_task_that_cancels_itself_then_raises_ends_failed() {
    // asyncio's __step: a raised exception is set_exception even with
    // _must_cancel set; only a normal return turns into a cancellation.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let t = lp
        .create_task(async {
            current_task().unwrap().cancel();
            Err::<(), _>(Error::msg("raised"))
        })
        .unwrap();
    lp.run_until_complete(sleep(secs(1))).unwrap();
    assert!(t.failed() && !t.cancelled());
    assert!(matches!(t.result(), Err(ref e) if !e.is_cancelled() && e.to_string() == "raised"));
}
