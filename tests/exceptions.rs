//! Panics in callbacks: caught at the loop boundary, reported through the
//! exception handler with asyncio's text, and the loop keeps running.

mod util;

use std::cell::RefCell;
use std::rc::Rc;

use aioloop::{EventLoop, ExceptionContext, ExceptionHandler};
use util::{capture_logs, logs, stopper, Recorder};

#[test]
fn a_panicking_callback_is_logged_by_the_default_handler_and_the_loop_goes_on() {
    capture_logs();
    fn boom() {
        panic!("division by zero");
    }
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let line = line!() + 1;
    lp.call_soon(boom).unwrap();
    let r = rec.clone();
    lp.call_soon(move || r.push("after")).unwrap();
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(rec.take(), ["after"], "the loop kept running");
    let logged = logs("asyncio");
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0].0, log::Level::Error);
    let site = format!("exceptions::a_panicking_callback_is_logged_by_the_default_handler_and_the_loop_goes_on::boom at tests/exceptions.rs:{line}");
    assert_eq!(
        logged[0].1,
        format!(
            "Exception in callback {site}\nhandle: <Handle {site}>\npanicked: division by zero"
        )
    );
}

#[test]
fn a_custom_handler_receives_the_context_and_can_use_the_loop() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    let handler: ExceptionHandler = Rc::new(move |lp, ctx: &ExceptionContext| {
        s.borrow_mut().push((
            ctx.message.clone(),
            ctx.exception.as_ref().map(|e| e.to_string()),
            ctx.handle.is_some(),
        ));
        lp.stop();
    });
    lp.set_exception_handler(Some(handler));
    assert!(lp.get_exception_handler().is_some());
    lp.call_soon(|| panic!("{}", String::from("owned message")))
        .unwrap();
    lp.run_forever().unwrap();
    let seen = seen.borrow();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].0.starts_with("Exception in callback "));
    assert_eq!(seen[0].1.as_deref(), Some("panicked: owned message"));
    assert!(seen[0].2);
}

#[test]
fn a_panicking_handler_is_reported_by_the_default_one() {
    capture_logs();
    let lp = EventLoop::with_virtual_clock().unwrap();
    let handler: ExceptionHandler = Rc::new(|_, _| panic!("handler broke"));
    lp.set_exception_handler(Some(handler));
    lp.call_soon(|| panic!("first")).unwrap();
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    let logged = logs("asyncio");
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(logged[0]
        .1
        .starts_with("Unhandled error in exception handler\ncontext: Exception in callback "));
    assert!(logged[0].1.ends_with("panicked: handler broke"));
    // None restores the default handler.
    lp.set_exception_handler(None);
    assert!(lp.get_exception_handler().is_none());
}

#[test]
fn call_exception_handler_by_hand_uses_the_default_handler() {
    capture_logs();
    let lp = EventLoop::with_virtual_clock().unwrap();
    lp.call_exception_handler(&ExceptionContext::new("something odd"));
    assert_eq!(
        logs("asyncio"),
        [(log::Level::Error, "something odd".to_owned())]
    );
}

/// `loop.call_exception_handler({})` logs `ERROR:asyncio:Unhandled
/// exception in event loop` on CPython 3.11.7 and 3.13.0 (checked with both,
/// capturing the `asyncio` logger): the default handler's words for a
/// context without a message, never an empty line.
#[test]
fn a_context_without_a_message_is_logged_as_an_unhandled_exception() {
    capture_logs();
    let lp = EventLoop::with_virtual_clock().unwrap();
    lp.call_exception_handler(&ExceptionContext::new(""));
    lp.default_exception_handler(&ExceptionContext::new(""));
    assert_eq!(
        logs("asyncio"),
        [
            (
                log::Level::Error,
                "Unhandled exception in event loop".to_owned()
            ),
            (
                log::Level::Error,
                "Unhandled exception in event loop".to_owned()
            ),
        ]
    );
}
