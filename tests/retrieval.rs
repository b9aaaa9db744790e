//! Who counts as having looked at a failure, so that `… exception was never
//! retrieved` is reported exactly when CPython reports it.
//!
//! Each rule was checked with the same script on CPython 3.11.7, 3.12.1 and
//! 3.13.0 (a failed task or future, its handle dropped, `gc.collect()`,
//! then the log read): the answers agree.

mod util;

use std::cell::RefCell;
use std::rc::Rc;

use aioloop::{
    create_task, gather, get_running_loop, run_with, sleep, Error, EventLoop, ExceptionContext,
    Future,
};
use util::{bad, bad_of, reports, secs};

fn messages(seen: &RefCell<Vec<ExceptionContext>>) -> Vec<String> {
    seen.borrow().iter().map(|c| c.message.clone()).collect()
}

#[test]
fn cancelling_a_failed_task_counts_as_retrieving_its_exception() {
    // CPython 3.11–3.13: `t.cancel()` on a task that raised returns False
    // and sets `_log_traceback = False`: nothing is logged when it goes.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    lp.run_until_complete(async {
        let t = create_task(async { bad::<()>("boom") })?;
        sleep(secs(1)).await?;
        assert!(t.failed());
        assert!(!t.cancel(), "done: cancel() refuses");
        assert!(!t.cancelled(), "and leaves it failed");
        drop(t);
        Ok(())
    })
    .unwrap();
    assert!(messages(&seen).is_empty(), "{:?}", messages(&seen));
}

#[test]
fn cancelling_a_failed_future_counts_as_retrieving_its_exception() {
    // CPython 3.11–3.13: `f.cancel()` after `set_exception` returns False and
    // sets `__log_traceback = False`.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    let f = Future::<u8>::new(&lp);
    f.set_exception(Error::msg("bad input")).unwrap();
    assert!(!f.cancel());
    assert!(!f.cancelled());
    drop(f);
    assert!(messages(&seen).is_empty(), "{:?}", messages(&seen));

    // The control: without the cancel, it is reported.
    let g = Future::<u8>::new(&lp);
    g.set_exception(Error::msg("bad input")).unwrap();
    drop(g);
    assert_eq!(messages(&seen), ["Future exception was never retrieved"]);
}

#[test]
fn a_gather_child_failing_after_the_gather_ended_is_not_reported() {
    // CPython 3.11–3.13: `gather(a, b)` raises a's error; b fails later and
    // gather's `_done_callback` calls `b.exception()` (outer already done):
    // nothing is logged when b goes.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    lp.run_until_complete(async {
        let fail_after = |s, m| async move {
            sleep(secs(s)).await?;
            bad::<()>(m)
        };
        let a = create_task(fail_after(1, "first"))?;
        let b = create_task(fail_after(2, "second"))?;
        let e = gather([a, b.clone()]).await.unwrap_err();
        assert_eq!(bad_of(&e), Some("first"));
        assert!(!b.done(), "b goes on after the gather ended");
        sleep(secs(5)).await?;
        assert!(b.failed());
        drop(b);
        Ok(())
    })
    .unwrap();
    assert!(messages(&seen).is_empty(), "{:?}", messages(&seen));
}

#[test]
fn a_failed_task_nobody_cancelled_or_gathered_is_still_reported() {
    // The control for the two tests above.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    lp.run_until_complete(async {
        let t = create_task(async { bad::<()>("boom") })?;
        sleep(secs(1)).await?;
        drop(t);
        Ok(())
    })
    .unwrap();
    assert_eq!(messages(&seen), ["Task exception was never retrieved"]);
}

#[test]
fn run_reports_a_leftover_task_that_fails_during_shutdown() {
    // CPython 3.11.7, 3.12.1, 3.13.0: a leftover task whose cleanup raises
    // ValueError is logged as 'unhandled exception during asyncio.run()
    // shutdown' with the task and the exception, and nothing else (no
    // 'Task exception was never retrieved' after it).
    let seen: Rc<RefCell<Vec<ExceptionContext>>> = Rc::default();
    let s = seen.clone();
    let out = run_with(EventLoop::with_virtual_clock, async move {
        let lp = get_running_loop()?;
        lp.set_exception_handler(Some(Rc::new(move |_: &_, c: &ExceptionContext| {
            s.borrow_mut().push(c.clone())
        })));
        let t = create_task(async {
            let _ = sleep(secs(3600)).await; // cancelled by run's shutdown
            bad::<()>("during cleanup")
        })?;
        t.set_name("leftover");
        sleep(secs(1)).await?;
        Ok(7)
    });
    assert_eq!(out.unwrap(), 7, "main's own result is returned");
    assert_eq!(
        messages(&seen),
        ["unhandled exception during asyncio.run() shutdown"]
    );
    let got = seen.borrow();
    assert!(
        got[0]
            .task
            .as_deref()
            .unwrap()
            .starts_with("<Task finished name='leftover'"),
        "{:?}",
        got[0].task
    );
    assert_eq!(
        got[0].exception.as_ref().unwrap().to_string(),
        "during cleanup"
    );
}

#[test]
fn run_does_not_report_leftover_tasks_that_end_cancelled() {
    let seen: Rc<RefCell<Vec<ExceptionContext>>> = Rc::default();
    let s = seen.clone();
    run_with(EventLoop::with_virtual_clock, async move {
        get_running_loop()?.set_exception_handler(Some(Rc::new(
            move |_: &_, c: &ExceptionContext| s.borrow_mut().push(c.clone()),
        )));
        create_task(sleep(secs(3600)))?;
        sleep(secs(1)).await?;
        Ok(())
    })
    .unwrap();
    assert!(messages(&seen).is_empty(), "{:?}", messages(&seen));
}
