//! `Task exception was never retrieved` and `Future exception was never
//! retrieved`: reported when the last handle of a failed task or future
//! goes and nobody looked at the failure — and only then.

mod util;

use std::cell::RefCell;

use aioloop::{create_task, sleep, Error, EventLoop, ExceptionContext, Future};
use util::{bad, reports, secs};

fn messages(seen: &RefCell<Vec<ExceptionContext>>) -> Vec<String> {
    seen.borrow().iter().map(|c| c.message.clone()).collect()
}

#[test]
fn a_failed_task_nobody_awaited_is_reported_when_its_last_handle_goes() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    let line = line!() + 3;
    let s = seen.clone();
    lp.run_until_complete(async move {
        let t = create_task(async { bad::<()>("boom") }).unwrap();
        t.set_name("worker");
        sleep(secs(1)).await.unwrap();
        assert!(t.done() && t.failed());
        assert!(messages(&s).is_empty(), "a handle is still held: not yet");
        drop(t);
        assert_eq!(
            messages(&s),
            ["Task exception was never retrieved"],
            "at once"
        );
    })
    .unwrap();
    let c = seen.borrow()[0].clone();
    assert_eq!(
        c.future.unwrap(),
        format!(
            "<Task finished name='worker' created at tests/never_retrieved.rs:{line} exception=Bad(\"boom\")>"
        )
    );
    assert_eq!(c.exception.unwrap().to_string(), "Bad(\"boom\")");
}

#[test]
fn a_panicking_task_nobody_awaited_is_reported_with_the_panic() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    lp.run_until_complete(async move {
        drop(create_task(async { panic!("kaboom") as () }).unwrap());
        sleep(secs(1)).await.unwrap();
    })
    .unwrap();
    let got = seen.borrow();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].message, "Task exception was never retrieved");
    // The panic as `{:?}` of the task's `Error`.
    assert_eq!(
        got[0].exception.as_ref().unwrap().to_string(),
        "panic('kaboom')"
    );
}

#[test]
fn awaiting_or_asking_for_the_exception_counts_as_retrieving_it() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    lp.run_until_complete(async move {
        let awaited = create_task(async { bad::<()>("a") }).unwrap();
        assert!(awaited.await.is_err());
        let asked = create_task(async { bad::<()>("b") }).unwrap();
        sleep(secs(1)).await.unwrap();
        assert!(asked.exception().unwrap().is_some());
        drop(asked);
        let fine = create_task(async { Ok(1) }).unwrap();
        sleep(secs(1)).await.unwrap();
        drop(fine);
    })
    .unwrap();
    assert!(messages(&seen).is_empty(), "{:?}", messages(&seen));
}

#[test]
fn a_future_exception_nobody_retrieved_is_reported_when_the_future_goes() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    let f = Future::<u32>::new(&lp);
    f.set_exception(Error::msg("bad input")).unwrap();
    let g = f.clone();
    drop(f);
    assert!(messages(&seen).is_empty(), "one handle left");
    drop(g);
    let got = seen.borrow();
    assert_eq!(got[0].message, "Future exception was never retrieved");
    assert_eq!(
        got[0].future.as_deref(),
        Some("<Future finished exception=Exception('bad input')>")
    );
    drop(got);
    // Retrieved: no report.
    let f = Future::<u32>::new(&lp);
    f.set_exception(Error::msg("seen")).unwrap();
    assert_eq!(
        f.exception().unwrap().map(|e| e.to_string()).as_deref(),
        Some("seen")
    );
    drop(f);
    assert_eq!(seen.borrow().len(), 1);
}

#[test]
fn with_no_custom_handler_the_default_one_logs_it_on_target_asyncio() {
    util::capture_logs();
    let lp = EventLoop::with_virtual_clock().unwrap();
    lp.run_until_complete(async move {
        drop(create_task(async { bad::<()>("logged") }).unwrap());
        sleep(secs(1)).await.unwrap();
    })
    .unwrap();
    let logs = util::logs("asyncio");
    assert!(
        logs.iter().any(|(level, text)| *level == log::Level::Error
            && text.starts_with(
                "Task exception was never retrieved\nfuture: <Task finished name='Task-"
            )
            && text.ends_with("Bad(\"logged\")")),
        "{logs:?}"
    );
}
