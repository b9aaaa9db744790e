//! `call_soon` and the ready queue: asyncio's ordering guarantees.

mod util;

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use aioloop::EventLoop;
use util::{stopper, Recorder};

#[test]
fn callbacks_run_in_fifo_order() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    for i in 0..100 {
        let r = rec.clone();
        lp.call_soon(move || r.push(i)).unwrap();
    }
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(rec.take(), (0..100).collect::<Vec<_>>());
}

#[test]
fn a_callback_scheduled_by_a_callback_runs_later_never_inline() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let (r, l) = (rec.clone(), lp.loop_ref());
    lp.call_soon(move || {
        let r2 = r.clone();
        l.call_soon(move || r2.push("3: scheduled by 1")).unwrap();
        r.push("1");
    })
    .unwrap();
    let r = rec.clone();
    lp.call_soon(move || r.push("2")).unwrap();
    let l = lp.loop_ref();
    lp.call_soon(move || {
        l.call_soon(stopper(&l)).unwrap();
    })
    .unwrap();
    lp.run_forever().unwrap();
    assert_eq!(rec.take(), ["1", "2", "3: scheduled by 1"]);
}

#[test]
fn each_iteration_runs_exactly_the_callbacks_ready_when_it_began() {
    // A callback that reschedules itself forever must not starve the rest
    // of the loop: if the run phase kept running callbacks scheduled during
    // it, the chain below would never yield to the timer phase and the
    // guard would trip.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let steps = Rc::new(Cell::new(0u32));
    fn chain(lp: aioloop::LoopRef, steps: Rc<Cell<u32>>) {
        steps.set(steps.get() + 1);
        if steps.get() == 10 {
            lp.advance_time(Duration::from_secs(1)).unwrap();
        }
        assert!(steps.get() < 1000, "the timer never got its turn");
        let l = lp.clone();
        lp.call_soon(move || chain(l, steps)).unwrap();
    }
    let timer_saw = Rc::new(Cell::new(0u32));
    let (t, s, l) = (timer_saw.clone(), steps.clone(), lp.loop_ref());
    lp.call_later(Duration::from_secs(1), move || {
        t.set(s.get());
        l.stop();
    })
    .unwrap();
    let (l, s) = (lp.loop_ref(), steps.clone());
    lp.call_soon(move || chain(l, s)).unwrap();
    lp.run_forever().unwrap();
    // Step 10 moved the clock; the very next iteration collected the timer
    // and ran it after step 11, the one callback that was ready with it.
    assert_eq!(timer_saw.get(), 11);
    assert_eq!(steps.get(), 11);
    assert_eq!(lp.ready_callbacks(), 1, "step 12 waits for the next run");
}

#[test]
fn a_cancelled_handle_never_runs_and_drops_its_closure_at_once() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let captured = Rc::new(());
    let c = captured.clone();
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let h = lp
        .call_soon(move || {
            let _keep = &c;
            r.set(true);
        })
        .unwrap();
    assert_eq!(Rc::strong_count(&captured), 2);
    h.cancel();
    assert!(h.cancelled());
    assert_eq!(Rc::strong_count(&captured), 1, "cancel drops the closure");
    h.cancel(); // twice is harmless
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert!(!ran.get());
}

#[test]
fn a_callback_can_cancel_one_queued_behind_it_in_the_same_iteration() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    let victim = Rc::new(Cell::new(None::<aioloop::Handle>));
    let v = victim.clone();
    lp.call_soon(move || v.take().unwrap().cancel()).unwrap();
    let r = rec.clone();
    victim.set(Some(lp.call_soon(move || r.push("victim")).unwrap()));
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert!(rec.take().is_empty());
}

#[test]
fn handle_debug_names_the_callback_and_where_it_was_scheduled() {
    fn tick() {}
    let lp = EventLoop::with_virtual_clock().unwrap();
    let line = line!() + 1;
    let h = lp.call_soon(tick).unwrap();
    assert_eq!(
        format!("{h:?}"),
        format!("<Handle callbacks::handle_debug_names_the_callback_and_where_it_was_scheduled::tick at tests/callbacks.rs:{line}>")
    );
    h.cancel();
    assert!(format!("{h:?}").starts_with("<Handle cancelled callbacks::"));
    let t = lp.call_later(Duration::from_millis(2500), tick).unwrap();
    assert!(
        format!("{t:?}").starts_with("<TimerHandle when=2.500 callbacks::"),
        "{t:?}"
    );
}
