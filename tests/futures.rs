//! `Future<T>`: asyncio's loop future.

mod util;

use std::cell::Cell;
use std::rc::Rc;

use aioloop::{Error, EventLoop, Future, InvalidStateError};
use util::{stopper, Recorder};

#[test]
fn result_and_its_errors_use_asyncios_words() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let f = Future::<i32>::new(&lp);
    assert!(!f.done());
    match f.result() {
        Err(e) if e.is_invalid_state() => assert_eq!(e.to_string(), "Result is not set."),
        other => panic!("{other:?}"),
    }
    match f.exception() {
        Err(e) if e.is_invalid_state() => assert_eq!(e.to_string(), "Exception is not set."),
        other => panic!("{other:?}"),
    }
    f.set_result(1).unwrap();
    assert_eq!(f.result().unwrap(), 1);
    assert_eq!(f.result().unwrap(), 1, "retrievable again, as asyncio");
    assert!(f.exception().unwrap().is_none());
    assert_eq!(f.set_result(2), Err(InvalidStateError::AlreadyDone));
    assert_eq!(
        f.set_exception(Error::msg("x")).unwrap_err().to_string(),
        "invalid state"
    );
    assert!(!f.cancel(), "cancel on a done future returns false");
    assert_eq!(format!("{f:?}"), "<Future finished>");
}

#[test]
fn set_exception_and_cancel_with_a_message() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let f = Future::<i32>::new(&lp);
    f.set_exception(Error::msg("bad")).unwrap();
    assert_eq!(f.exception().unwrap().unwrap().to_string(), "bad");
    assert!(matches!(f.result(), Err(e) if !e.is_cancelled() && e.to_string() == "bad"));

    let g = Future::<i32>::new(&lp);
    assert!(g.cancel_with("why"));
    assert!(!g.cancel());
    assert!(g.cancelled() && g.done());
    match g.result() {
        Err(e) if e.is_cancelled() => assert_eq!(e.as_cancelled().unwrap().message(), Some("why")),
        other => panic!("{other:?}"),
    }
    assert!(matches!(g.exception(), Err(e) if e.is_cancelled()));
    assert_eq!(format!("{g:?}"), "<Future cancelled>");
}

#[test]
fn done_callbacks_run_via_call_soon_in_registration_order_never_inline() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let f = lp.create_future::<u8>();
    let rec = Recorder::new();
    for i in 0..3 {
        let r = rec.clone();
        f.add_done_callback(move |fut| r.push((i, fut.result().unwrap())));
    }
    let r = rec.clone();
    let removed = f.add_done_callback(move |_| r.push((99, 0)));
    assert!(f.remove_done_callback(removed));
    assert!(!f.remove_done_callback(removed));
    f.set_result(7).unwrap();
    assert!(rec.snapshot().is_empty(), "not inline");
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(rec.take(), [(0, 7), (1, 7), (2, 7)]);
    // Added after completion: scheduled at once, runs on the next iteration.
    let r = rec.clone();
    f.add_done_callback(move |_| r.push((3, 0)));
    assert!(rec.snapshot().is_empty());
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(rec.take(), [(3, 0)]);
}

#[test]
fn many_tasks_await_one_future_and_all_get_the_result() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let f = lp.create_future::<String>();
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let f = f.clone();
        tasks.push(lp.create_task(async move { (&f).await.unwrap() }).unwrap());
    }
    let f2 = f.clone();
    lp.call_later(std::time::Duration::from_secs(1), move || {
        f2.set_result("shared".into()).unwrap()
    })
    .unwrap();
    let all = lp
        .run_until_complete(async move {
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        })
        .unwrap();
    assert_eq!(all, vec!["shared"; 5]);
    assert_eq!(
        f.result().unwrap(),
        "shared",
        "five awaits consumed nothing"
    );
}

#[test]
fn awaiting_a_future_leaves_its_outcome_for_result_and_later_awaits() {
    // python: `await f` twice then `f.result()` -> 5, 5, 5 (an await never
    // consumes the result); a failed future raises at every await and
    // still answers exception().
    let lp = EventLoop::with_virtual_clock().unwrap();
    let f = lp.create_future::<u32>();
    f.set_result(5).unwrap();
    let e = lp.create_future::<u32>();
    e.set_exception(Error::msg("bad")).unwrap();
    let (f2, e2) = (f.clone(), e.clone());
    let got = lp
        .run_until_complete(async move {
            let a = (&f2).await?;
            let b = f2.await?;
            let errs = [(&e2).await.unwrap_err(), e2.await.unwrap_err()];
            Ok((a, b, errs.map(|e| e.to_string())))
        })
        .unwrap();
    assert_eq!(got, (5, 5, ["bad".to_owned(), "bad".to_owned()]));
    assert_eq!(f.result().unwrap(), 5);
    assert_eq!(lp.run_until_complete(f.clone()).unwrap(), 5);
    assert_eq!(e.exception().unwrap().unwrap().to_string(), "bad");
}

#[test]
fn take_moves_a_non_clone_result_out_once() {
    // Awaiting no longer consumes (see above); `take()` is the one way to
    // move a non-Clone value out, and only once.
    struct NotClone(u32);
    let lp = EventLoop::with_virtual_clock().unwrap();
    let f = lp.create_future::<NotClone>();
    f.set_result(NotClone(5)).unwrap();
    let g = f.clone();
    let got = lp
        .run_until_complete(async move { g.take().await.map(|n| n.0).unwrap_or(0) })
        .unwrap();
    assert_eq!(got, 5);
    let again = lp
        .run_until_complete(async move { f.take().await.err() })
        .unwrap();
    let again = again.expect("a moved-out result cannot be taken twice");
    assert!(matches!(
        again.downcast_ref::<InvalidStateError>(),
        Some(InvalidStateError::ResultTaken)
    ));
    assert_eq!(again.to_string(), "Result was already taken.");
}

#[test]
fn a_future_awaited_by_a_cancelled_task_is_cancelled_too() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let f = lp.create_future::<()>();
    let g = f.clone();
    let waited = Rc::new(Cell::new(false));
    let w = waited.clone();
    let t = lp
        .create_task(async move {
            w.set(true);
            g.await
        })
        .unwrap();
    let t2 = t.clone();
    lp.call_later(std::time::Duration::from_secs(1), move || {
        assert!(t2.cancel_with("x"));
    })
    .unwrap();
    let r = lp.run_until_complete(t);
    assert!(waited.get());
    assert!(
        matches!(r, Err(ref e) if e.as_cancelled().is_some_and(|c| c.message() == Some("x"))),
        "{r:?}"
    );
    assert!(
        f.cancelled(),
        "asyncio cancels the future the task waits on"
    );
}
