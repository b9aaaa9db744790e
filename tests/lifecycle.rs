//! run_forever / stop / close / get_running_loop, and asyncio's RuntimeErrors.

mod util;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use aioloop::{get_running_loop, EventLoop, LoopError};
use util::{stopper, Recorder};

#[test]
fn stop_from_a_callback_lets_the_iteration_finish_and_keeps_later_work() {
    // asyncio: a, then stop() and call_soon(c) inside a; b still runs in this
    // iteration; c waits for the next run_forever.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let (r, l) = (rec.clone(), lp.loop_ref());
    lp.call_soon(move || {
        r.push("a");
        l.stop();
        let r2 = r.clone();
        l.call_soon(move || r2.push("c")).unwrap();
    })
    .unwrap();
    let r = rec.clone();
    lp.call_soon(move || r.push("b")).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(rec.take(), ["a", "b"]);
    assert!(!lp.is_running());
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(rec.take(), ["c"]);
}

#[test]
fn stop_before_run_forever_runs_exactly_one_iteration() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let (r, l) = (rec.clone(), lp.loop_ref());
    lp.call_soon(move || {
        r.push("ready before");
        let r2 = r.clone();
        l.call_soon(move || r2.push("next iteration")).unwrap();
    })
    .unwrap();
    lp.stop();
    lp.run_forever().unwrap();
    assert_eq!(rec.take(), ["ready before"]);
    assert_eq!(lp.ready_callbacks(), 1);
}

#[test]
fn is_running_and_get_running_loop_inside_and_out() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    assert!(!lp.is_running());
    assert!(matches!(get_running_loop(), Err(LoopError::NoRunningLoop)));
    let seen = Rc::new(Cell::new(false));
    let s = seen.clone();
    lp.call_soon(move || {
        let running = get_running_loop().unwrap();
        s.set(running.is_running());
        running.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert!(seen.get());
    assert!(
        get_running_loop().is_err(),
        "cleared when run_forever returns"
    );
}

#[test]
fn run_forever_on_a_running_loop_is_refused() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let err = Rc::new(RefCell::new(None));
    let (e, l) = (err.clone(), lp.loop_ref());
    lp.call_soon(move || {
        *e.borrow_mut() = Some(l.run_forever().unwrap_err().to_string());
        l.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(
        err.borrow().as_deref(),
        Some("This event loop is already running")
    );
}

#[test]
fn another_loop_cannot_run_inside_a_running_one() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let err = Rc::new(RefCell::new(None));
    let (e, l) = (err.clone(), lp.loop_ref());
    lp.call_soon(move || {
        let other = EventLoop::with_virtual_clock().unwrap();
        let res = other.run_forever();
        *e.borrow_mut() = Some(res.unwrap_err().to_string());
        assert!(!other.is_running());
        l.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(
        err.borrow().as_deref(),
        Some("Cannot run the event loop while another loop is running")
    );
}

#[test]
fn close_while_running_is_refused_and_close_twice_is_harmless() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let err = Rc::new(RefCell::new(None));
    let (e, l) = (err.clone(), lp.loop_ref());
    lp.call_soon(move || {
        *e.borrow_mut() = Some(l.close().unwrap_err().to_string());
        l.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(
        err.borrow().as_deref(),
        Some("Cannot close a running event loop")
    );
    assert!(!lp.is_closed());
    lp.close().unwrap();
    lp.close().unwrap();
    assert!(lp.is_closed());
}

#[test]
fn a_closed_loop_refuses_work_with_asyncios_words() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    lp.close().unwrap();
    let msg = |e: LoopError| e.to_string();
    assert_eq!(
        msg(lp.call_soon(|| {}).unwrap_err()),
        "Event loop is closed"
    );
    assert_eq!(
        msg(lp.call_later(std::time::Duration::ZERO, || {}).unwrap_err()),
        "Event loop is closed"
    );
    assert_eq!(
        msg(lp.call_at(1.0, || {}).unwrap_err()),
        "Event loop is closed"
    );
    assert_eq!(msg(lp.run_forever().unwrap_err()), "Event loop is closed");
    assert_eq!(
        msg(lp.add_reader(0, || {}).unwrap_err()),
        "Event loop is closed"
    );
    assert!(
        !lp.remove_reader(0),
        "asyncio returns False on a closed loop"
    );
}

#[test]
fn close_drops_pending_work_without_running_it() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let captured = Rc::new(());
    let (c1, c2) = (captured.clone(), captured.clone());
    lp.call_soon(move || drop(c1)).unwrap();
    lp.call_later(std::time::Duration::from_secs(5), move || drop(c2))
        .unwrap();
    assert_eq!(Rc::strong_count(&captured), 3);
    lp.close().unwrap();
    assert_eq!(Rc::strong_count(&captured), 1);
    assert_eq!(lp.scheduled_timers(), 0);
    assert_eq!(lp.ready_callbacks(), 0);
}

#[test]
fn dropping_the_owner_closes_the_loop_and_breaks_reference_cycles() {
    // A pending callback that holds a reference to its own loop is a cycle;
    // dropping the EventLoop must still free everything.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let witness = Rc::new(());
    let (w, l) = (witness.clone(), lp.loop_ref());
    lp.call_soon(move || {
        let _ = (&w, &l);
    })
    .unwrap();
    let outside = lp.loop_ref();
    drop(lp);
    assert_eq!(Rc::strong_count(&witness), 1, "the callback was dropped");
    assert!(outside.is_closed());
    assert!(matches!(outside.call_soon(|| {}), Err(LoopError::Closed)));
}

#[test]
fn loop_debug_looks_like_asyncios_repr() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    assert_eq!(
        format!("{lp:?}"),
        "<EventLoop running=False closed=False debug=False>"
    );
    lp.close().unwrap();
    assert_eq!(
        format!("{lp:?}"),
        "<EventLoop running=False closed=True debug=False>"
    );
}

/// A value whose destructor panics: what a pending callback or task holds
/// in the tests of a panicking destructor at close.
struct PanicsOnDrop(&'static str);

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("{} dropped", self.0);
    }
}

/// What the exception handler received, as (message, error).
fn messages(seen: &RefCell<Vec<aioloop::ExceptionContext>>) -> Vec<(String, String)> {
    seen.borrow()
        .iter()
        .map(|c| {
            let e = c
                .exception
                .as_ref()
                .map(|e| e.to_string())
                .unwrap_or_default();
            (c.message.clone(), e)
        })
        .collect()
}

#[test]
fn a_pending_callback_whose_destructor_panics_is_reported_and_close_succeeds() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = util::reports(&lp);
    let guard = PanicsOnDrop("callback guard");
    let line = line!() + 1;
    lp.call_soon(move || drop(guard)).unwrap();
    lp.close().unwrap();
    assert!(lp.is_closed());
    let got = messages(&seen);
    assert_eq!(got.len(), 1, "{got:?}");
    let expected = format!(
        "Exception ignored in the destructor of the pending callback \
         lifecycle::a_pending_callback_whose_destructor_panics_is_reported_and_close_succeeds::{{{{closure}}}} \
         at tests/lifecycle.rs:{line}, dropped as the event loop closed"
    );
    assert_eq!(got[0].0, expected);
    assert_eq!(got[0].1, "panicked: callback guard dropped");
    assert!(
        seen.borrow()[0].handle.is_some(),
        "names the callback's handle"
    );
}

#[test]
fn a_pending_tasks_future_whose_destructor_panics_is_reported_and_close_succeeds() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = util::reports(&lp);
    let task = lp
        .create_task(async {
            let _guard = PanicsOnDrop("task guard");
            std::future::pending::<()>().await;
        })
        .unwrap();
    task.set_name("holder");
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap(); // the task parks on `pending()` for good
    lp.close().unwrap();
    let got = messages(&seen);
    let ignored: Vec<_> = got
        .iter()
        .filter(|(m, _)| m.starts_with("Exception ignored"))
        .collect();
    assert_eq!(ignored.len(), 1, "{got:?}");
    assert!(
        ignored[0]
            .0
            .starts_with("Exception ignored in the destructor of the pending task <Task"),
        "{got:?}"
    );
    assert!(ignored[0].0.contains("name='holder'"), "{got:?}");
    assert_eq!(ignored[0].1, "panicked: task guard dropped");
}

#[test]
fn two_panicking_destructors_in_one_close_are_both_reported_without_aborting() {
    // Two panics in one unwind abort the process: each drop is caught alone.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = util::reports(&lp);
    let (a, b, c) = (
        PanicsOnDrop("first"),
        PanicsOnDrop("second"),
        PanicsOnDrop("timer"),
    );
    lp.call_soon(move || drop(a)).unwrap();
    lp.call_soon(move || drop(b)).unwrap();
    lp.call_later(std::time::Duration::from_secs(60), move || drop(c))
        .unwrap();
    lp.close().unwrap();
    let errors: Vec<String> = messages(&seen).into_iter().map(|(_, e)| e).collect();
    assert_eq!(
        errors,
        [
            "panicked: first dropped",
            "panicked: second dropped",
            "panicked: timer dropped"
        ]
    );
}

#[test]
fn dropping_a_loop_with_a_panicking_pending_callback_reports_it_instead_of_panicking() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = util::reports(&lp);
    let guard = PanicsOnDrop("guard");
    lp.call_soon(move || drop(guard)).unwrap();
    drop(lp); // closes it
    let errors: Vec<String> = messages(&seen).into_iter().map(|(_, e)| e).collect();
    assert_eq!(errors, ["panicked: guard dropped"]);
}

#[test]
fn a_reader_whose_destructor_panics_is_reported_as_the_loop_closes() {
    use std::os::fd::AsRawFd;
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = util::reports(&lp);
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let guard = PanicsOnDrop("reader guard");
    lp.add_reader(a.as_raw_fd(), move || {
        let _ = &guard;
    })
    .unwrap();
    lp.close().unwrap();
    let got = messages(&seen);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got[0]
            .0
            .starts_with("Exception ignored in the destructor of the reader or writer "),
        "{got:?}"
    );
    assert_eq!(got[0].1, "panicked: reader guard dropped");
}
