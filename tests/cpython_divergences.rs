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

/// What a task awaiting `aw` saw, as CPython's script prints it.
async fn caught<T: std::fmt::Debug>(
    aw: impl std::future::Future<Output = Result<T, Error>>,
) -> String {
    match aw.await {
        Ok(v) => format!("value {v:?}"),
        Err(e) => format!("caught {e:?}"),
    }
}

// CPython 3.11.7, 3.12.1, 3.13.0: a task parked on a future that gets a
// result (or an exception), then is cancelled before it resumes, sees
// CancelledError('m') at that await (`__step` with `_must_cancel`); if it
// catches it and returns, the task ends with its value, not cancelled.
// aioloop before: the await returned the value, and the task ended
// cancelled after its body returned.
#[test]
fn a_cancel_between_the_futures_completion_and_the_resume_is_delivered_there() {
    for failed in [false, true] {
        let lp = EventLoop::with_virtual_clock().unwrap();
        let seen = util::reports(&lp);
        let f = lp.create_future::<i32>();
        let t = lp.create_task(caught(f.clone())).unwrap();
        lp.run_until_complete(sleep(Duration::ZERO)).unwrap();
        if failed {
            f.set_exception(ValueError::new("x")).unwrap();
        } else {
            f.set_result(1).unwrap();
        }
        assert!(t.cancel_with("m"), "the task is not done yet");
        assert_eq!(
            lp.run_until_complete(&t).unwrap(),
            "caught CancelledError('m')"
        );
        assert!(!t.cancelled());
        assert_eq!(t.cancelling(), 1);
        drop(f);
        assert!(seen.borrow().is_empty(), "the exception was read");
    }
}

// CPython 3.11.7, 3.12.1, 3.13.0: cancel('a') goes to the awaited future;
// cancel('b') before the task resumes only sets `_must_cancel`, and the
// task sees CancelledError('a') (an exception that is already a
// cancellation is kept); caught, the task ends with its value. aioloop
// before: the task ended cancelled with 'b'.
#[test]
fn two_cancels_before_the_resume_deliver_the_first_message_once() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let f = lp.create_future::<i32>();
    let t = lp.create_task(caught(f.clone())).unwrap();
    lp.run_until_complete(sleep(Duration::ZERO)).unwrap();
    assert!(t.cancel_with("a"));
    assert!(t.cancel_with("b"));
    assert_eq!(
        lp.run_until_complete(&t).unwrap(),
        "caught CancelledError('a')"
    );
    assert!(!t.cancelled());
    assert_eq!(t.cancelling(), 2);
}

// CPython 3.11.7, 3.12.1, 3.13.0: the same for a task awaiting another
// task that finished (its waiter woken, not yet run): CancelledError('m').
#[test]
fn a_cancel_after_the_awaited_task_finished_is_delivered_at_the_await() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let gate = lp.create_future::<i32>();
    let g = gate.clone();
    let inner = lp
        .create_task(async move {
            let v = g.await?;
            // Ends this iteration: the waiter is woken, not yet run.
            aioloop::get_running_loop()?.stop();
            Ok(v)
        })
        .unwrap();
    let t = lp.create_task(caught(inner.clone())).unwrap();
    lp.run_until_complete(sleep(Duration::ZERO)).unwrap();
    gate.set_result(5).unwrap();
    lp.run_forever().unwrap();
    assert!(inner.done() && !t.done());
    assert!(t.cancel_with("m"));
    assert_eq!(
        lp.run_until_complete(&t).unwrap(),
        "caught CancelledError('m')"
    );
    assert!(!t.cancelled());
    assert_eq!(inner.result().unwrap(), 5);
}

// CPython 3.11.7, 3.12.1, 3.13.0 (s1.py): a task awaiting shield(inner),
// cancelled after the inner finished but before it resumed, gets
// CancelledError('m') from the shield (the inner keeps its result). aioloop
// before: the shield returned the value and the task ended cancelled.
#[test]
fn a_cancel_after_the_shielded_task_finished_is_delivered_at_the_shield() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let f = lp.create_future::<i32>();
    let inner = lp.create_task(f.clone()).unwrap();
    let t = lp
        .create_task(caught(aioloop::shield(inner.clone())))
        .unwrap();
    lp.run_until_complete(sleep(Duration::ZERO)).unwrap();
    f.set_result(1).unwrap();
    let l = lp.loop_ref();
    inner.add_done_callback(move |_| l.stop());
    lp.run_forever().unwrap();
    assert!(inner.done() && !t.done());
    assert!(t.cancel_with("m"));
    assert_eq!(
        lp.run_until_complete(&t).unwrap(),
        "caught CancelledError('m')"
    );
    assert_eq!(inner.result().unwrap(), 1);
}
