//! Rules where aioloop differed from CPython, each checked against the
//! interpreters named in its comment (the scripts: one per rule, listed in
//! `/work/notes/divergences.md`).

mod util;

use std::time::Duration;

use aioloop::{sleep, Error, EventLoop, ExceptionContext, ValueError};

// CPython 3.11.7, 3.12.1, 3.13.0: a task parked on a future and cancelled
// reads `<Task cancelling ...>` (its `cancelling()` is 1) until it is done,
// though the request was handed on to the future; `uncancel()` back to 0
// makes it `pending` again.
#[test]
fn a_task_whose_cancel_went_to_its_future_reads_cancelling() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let f = lp.create_future::<i32>();
    let f2 = f.clone();
    let t = lp.create_task(f2).unwrap();
    lp.run_until_complete(sleep(Duration::ZERO)).unwrap();
    assert!(t.cancel());
    assert!(f.cancelled(), "handed on to the future");
    let repr = format!("{t:?}");
    assert!(repr.starts_with("<Task cancelling name='Task-"), "{repr}");
    let _ = lp.run_until_complete(&t);
    assert!(format!("{t:?}").starts_with("<Task cancelled name='Task-"));

    let u = lp
        .create_task(async { sleep(Duration::from_secs(1)).await })
        .unwrap();
    u.cancel();
    u.cancel();
    u.uncancel();
    assert!(format!("{u:?}").starts_with("<Task cancelling "));
    u.uncancel();
    assert!(format!("{u:?}").starts_with("<Task pending "));
}

// CPython 3.11.7, 3.12.1, 3.13.0: repr of a failed future is
// `<Future finished exception=ValueError('x')>`, of a failed task
// `<Task finished name='Task-3' coro=<...> exception=ValueError('x')>`
// (aioloop: `created at` for `coro=`). Looking does not retrieve.
#[test]
fn a_failed_future_or_task_shows_its_exception_in_its_repr() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let f = lp.create_future::<i32>();
    f.set_exception(ValueError::new("x")).unwrap();
    assert_eq!(
        format!("{f:?}"),
        "<Future finished exception=ValueError('x')>"
    );
    let t = lp
        .create_task(async { Err::<(), _>(Error::msg("x")) })
        .unwrap();
    lp.run_until_complete(sleep(Duration::ZERO)).unwrap();
    let repr = format!("{t:?}");
    assert!(repr.starts_with("<Task finished name='Task-"), "{repr}");
    assert!(repr.ends_with(" exception=Exception('x')>"), "{repr}");
    assert_eq!(format!("{:?}", t.as_ref()), repr, "TaskRef reads the same");

    // The repr did not count as a retrieval: both are still reported.
    let seen = util::reports(&lp);
    drop(f);
    drop(t);
    let seen = seen.borrow();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].message, "Future exception was never retrieved");
    assert_eq!(
        seen[0].future.as_deref(),
        Some("<Future finished exception=ValueError('x')>")
    );
    assert_eq!(seen[1].message, "Task exception was never retrieved");
}

// CPython 3.11.7, 3.12.1, 3.13.0: `loop.run_until_complete(fut)` with a
// future (or task) of another loop raises ValueError('The future belongs
// to a different loop than the one specified as the loop argument').
#[test]
fn run_until_complete_refuses_another_loops_future_with_a_value_error() {
    let other = EventLoop::with_virtual_clock().unwrap();
    let lp = EventLoop::with_virtual_clock().unwrap();
    let text = "The future belongs to a different loop than the one specified as the loop argument";
    let f = other.create_future::<i32>();
    for e in [
        lp.run_until_complete(&f).unwrap_err(),
        lp.run_until_complete(f.clone()).unwrap_err(),
    ] {
        assert!(e.downcast_ref::<ValueError>().is_some(), "{e:?}");
        assert_eq!(e.to_string(), text);
    }
    let t = other.create_task(async { 1 }).unwrap();
    let e = lp.run_until_complete(t.clone()).unwrap_err();
    assert_eq!(e.to_string(), text);
    assert_eq!(
        other.run_until_complete(t).unwrap(),
        1,
        "its own loop runs it"
    );
    // A done future of this loop is fine (CPython: returns its result).
    let g = lp.create_future::<i32>();
    g.set_result(3).unwrap();
    assert_eq!(lp.run_until_complete(g).unwrap(), 3);
}

// CPython 3.11.7, 3.12.1, 3.13.0: the default handler writes the context's
// keys after the message in sorted order (`for key in sorted(context)`):
// `future`, `handle`, `task`.
#[test]
fn the_default_handler_text_lists_the_keys_in_sorted_order() {
    let ctx = ExceptionContext::new("custom")
        .with_task("<Task pending name='t'>")
        .with_future("<Future pending>");
    assert_eq!(
        ctx.to_string(),
        "custom\nfuture: <Future pending>\ntask: <Task pending name='t'>"
    );
}
