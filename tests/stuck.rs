//! `Task was destroyed but it is pending!`: reported exactly when a task can
//! never run again, never before, never for a task something can still wake.

mod util;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::IntoFuture;
use std::rc::Rc;

use aioloop::sync::{Event, Lock};
use aioloop::{create_task, sleep, EventLoop, Future};
use util::{destroyed, reports, secs, Dropped, Rng};

#[test]
fn a_task_waiting_on_a_future_whose_last_outside_handle_is_dropped_is_reported_and_freed() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    let freed = Rc::new(Cell::new(false));
    let f = freed.clone();
    lp.run_until_complete(async move {
        let map: Rc<RefCell<HashMap<u32, Future<u32>>>> = Rc::default();
        let fut = aioloop::get_running_loop().unwrap().create_future::<u32>();
        map.borrow_mut().insert(7, fut.clone());
        let t = create_task(async move {
            let _guard = Dropped(f);
            fut.await.ok();
        })
        .unwrap();
        t.set_name("handler-7");
        drop(t);
        sleep(secs(1)).await.unwrap();
        assert!(
            destroyed(&seen).is_empty(),
            "the map still reaches the future"
        );
        map.borrow_mut().remove(&7);
        // The check ran at the end of this step's callback... let the loop turn.
        sleep(secs(0)).await.unwrap();
        let got = destroyed(&seen);
        assert_eq!(got.len(), 1, "{got:?}");
        let task = got[0].task.clone().unwrap();
        assert!(
            task.starts_with("<Task pending name='handler-7' created at tests/stuck.rs:"),
            "{task}"
        );
        let detail = got[0].detail.clone().unwrap();
        assert!(
            detail.contains("'handler-7' waits on Future of <Future pending>"),
            "{detail}"
        );
        assert!(detail.contains("no Waker of it is alive"), "{detail}");
        assert!(
            detail.contains(
                "that Future has 1 strong handle and no Weak, inside this task's own future"
            ),
            "{detail}"
        );
    })
    .unwrap();
    assert!(
        freed.get(),
        "the task's future was dropped: its destructors ran"
    );
    assert!(lp.all_tasks().is_empty(), "freed: it left the slab");
}

#[test]
fn a_task_that_drops_the_last_outside_handle_then_parks_is_reported_when_it_parks() {
    // The seed's bug: on `end` the handler removes its own entry from the
    // map, then loops back to wait on the queue nothing else can reach.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    lp.run_until_complete(async move {
        let map: Rc<RefCell<HashMap<u32, Event>>> = Rc::default();
        let ev = Event::new();
        map.borrow_mut().insert(1, ev.clone());
        let m = map.clone();
        let t = create_task(async move {
            m.borrow_mut().remove(&1);
            ev.wait().await.ok();
        })
        .unwrap();
        t.set_name("handler-1");
        drop(t);
        sleep(secs(0)).await.unwrap();
        let got = destroyed(&seen);
        assert_eq!(got.len(), 1);
        assert!(got[0]
            .detail
            .as_ref()
            .unwrap()
            .contains("waits on Event.wait of <Event [unset, waiters:1]>"));
    })
    .unwrap();
}

#[test]
fn a_handle_kept_behind_the_users_own_rc_keeps_the_task_alive() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    lp.run_until_complete(async move {
        let lock = Lock::new();
        let mine = lock.clone();
        let _held = mine.acquire().await.unwrap();
        // The waiter's handle sits in an Rc allocation, not in its future:
        // the check cannot tell who else reaches that Rc, so: alive.
        let boxed = Rc::new(lock);
        let t = create_task(async move {
            let _g = boxed.acquire().await;
        })
        .unwrap();
        drop(t);
        sleep(secs(1)).await.unwrap();
        assert!(destroyed(&seen).is_empty());
    })
    .unwrap();
}

#[test]
fn a_task_with_a_live_waker_elsewhere_is_not_reported() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    lp.run_until_complete(async move {
        let fut = aioloop::get_running_loop().unwrap().create_future::<()>();
        let t = create_task(async move {
            // wait_for arms a timer holding the task's waker: a timeout will
            // wake it even though nothing else can reach the future.
            aioloop::wait_for(fut.into_future(), secs(5)).await.ok();
            "timed out"
        })
        .unwrap();
        sleep(secs(1)).await.unwrap();
        assert!(destroyed(&seen).is_empty());
        assert_eq!(t.await.unwrap(), "timed out");
    })
    .unwrap();
}

#[test]
fn a_task_awaiting_a_stuck_task_is_stuck_too() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    lp.run_until_complete(async move {
        let ev = Event::new();
        let keep = ev.clone();
        let inner = create_task(async move {
            ev.wait().await.ok();
        })
        .unwrap();
        inner.set_name("inner");
        let outer = create_task(async move {
            inner.await.ok();
        })
        .unwrap();
        outer.set_name("outer");
        drop(outer);
        sleep(secs(1)).await.unwrap();
        assert!(
            destroyed(&seen).is_empty(),
            "`keep` still reaches the event"
        );
        drop(keep);
        sleep(secs(0)).await.unwrap();
        let got = destroyed(&seen);
        let names: Vec<String> = got.iter().map(|c| c.task.clone().unwrap()).collect();
        assert_eq!(got.len(), 2, "{names:?}");
        assert!(
            names[0].contains("name='inner'") && names[1].contains("name='outer'"),
            "{names:?}"
        );
        assert!(got[1]
            .detail
            .as_ref()
            .unwrap()
            .contains("waits on Task of <Task pending name='inner'"));
    })
    .unwrap();
}

#[test]
fn a_handle_held_by_a_task_that_can_still_run_keeps_the_waiter_alive() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    let out = lp.run_until_complete(async move {
        let ev = Event::new();
        let setter_ev = ev.clone();
        let waiter = create_task(async move {
            ev.wait().await?;
            Ok("woken")
        })
        .unwrap();
        // The setter sleeps (a timer holds its waker), then sets the event.
        create_task(async move {
            sleep(secs(10)).await.unwrap();
            setter_ev.set();
        })
        .unwrap();
        sleep(secs(1)).await.unwrap();
        assert!(destroyed(&seen).is_empty());
        waiter.await.unwrap()
    });
    assert_eq!(out.unwrap(), "woken");
}

#[test]
fn a_task_whose_handle_the_user_keeps_is_not_reported() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    lp.run_until_complete(async move {
        let fut = aioloop::get_running_loop().unwrap().create_future::<()>();
        let t = create_task(async move {
            fut.await?;
            Ok(())
        })
        .unwrap();
        // Someone holding the task can still cancel it: alive.
        sleep(secs(1)).await.unwrap();
        assert!(destroyed(&seen).is_empty());
        t.cancel();
        assert!(t.await.unwrap_err().is_cancelled());
    })
    .unwrap();
}

#[test]
fn closing_a_loop_reports_each_pending_task_and_what_it_waited_on() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    let ev = Event::new();
    let keep = ev.clone();
    let freed = Rc::new(Cell::new(false));
    let f = freed.clone();
    let t = lp
        .create_task(async move {
            let _guard = Dropped(f);
            ev.wait().await.ok();
        })
        .unwrap();
    t.set_name("listener");
    let done = lp.create_task(async {}).unwrap();
    lp.run_until_complete(async { sleep(secs(1)).await })
        .unwrap();
    assert!(
        destroyed(&seen).is_empty(),
        "`keep` reaches the event: alive"
    );
    assert!(done.done());
    lp.close().unwrap();
    let got = destroyed(&seen);
    assert_eq!(got.len(), 1, "only the pending task");
    assert!(got[0]
        .task
        .as_ref()
        .unwrap()
        .starts_with("<Task pending name='listener'"));
    assert!(got[0]
        .detail
        .as_ref()
        .unwrap()
        .starts_with("The loop was closed while 'listener' was still pending; it was waiting on <Event [unset, waiters:1]>."));
    assert!(freed.get());
    drop(keep);
}

#[test]
fn random_graphs_report_exactly_the_tasks_nothing_can_wake() {
    for seed in 1..=30u64 {
        let lp = EventLoop::with_virtual_clock().unwrap();
        let seen = reports(&lp);
        let woke: Rc<RefCell<Vec<String>>> = Rc::default();
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let expected_dead: Rc<RefCell<Vec<String>>> = Rc::default();
        let created = Rc::new(Cell::new(0usize));
        let (w, dead, made) = (woke.clone(), expected_dead.clone(), created.clone());
        lp.run_until_complete(async move {
            let events: Vec<Event> = (0..4).map(|_| Event::new()).collect();
            let alive: Vec<bool> = (0..4).map(|_| rng.below(2) == 0).collect();
            for (i, ev) in events.iter().enumerate() {
                if alive[i] {
                    let (ev, delay) = (ev.clone(), 1 + rng.below(5));
                    drop(create_task(async move {
                        sleep(secs(delay)).await.unwrap();
                        ev.set();
                    }));
                }
            }
            // Waiters on events, and waiters on earlier waiters.
            let mut waiters: Vec<(String, bool, Option<aioloop::Task<()>>)> = Vec::new();
            for n in 0..8 {
                let name = format!("w{n}");
                let on_task = n > 0 && rng.below(3) == 0;
                let (task, is_alive) = if on_task {
                    let k = rng.below(waiters.len() as u64) as usize;
                    match waiters[k].2.take() {
                        Some(inner) => {
                            let (w, nm) = (w.clone(), name.clone());
                            let t = create_task(async move {
                                inner.await.ok();
                                w.borrow_mut().push(nm);
                            })
                            .unwrap();
                            (t, waiters[k].1)
                        }
                        None => continue, // already awaited by another
                    }
                } else {
                    let i = rng.below(4) as usize;
                    let (ev, w, nm) = (events[i].clone(), w.clone(), name.clone());
                    let t = create_task(async move {
                        ev.wait().await.ok();
                        w.borrow_mut().push(nm);
                    })
                    .unwrap();
                    (t, alive[i])
                };
                task.set_name(&name);
                if !is_alive {
                    dead.borrow_mut().push(name.clone());
                }
                made.set(made.get() + 1);
                waiters.push((name, is_alive, Some(task)));
            }
            drop(events);
            // Handles nobody awaits are dropped: those tasks are unreachable.
            drop(waiters);
            sleep(secs(10)).await.unwrap();
        })
        .unwrap();
        let mut reported: Vec<String> = destroyed(&seen)
            .iter()
            .map(|c| {
                let t = c.task.clone().unwrap();
                t.split("name='")
                    .nth(1)
                    .unwrap()
                    .split('\'')
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        reported.sort();
        let mut want = expected_dead.borrow().clone();
        want.sort();
        assert_eq!(reported, want, "seed {seed}: reported vs unreachable");
        for name in woke.borrow().iter() {
            assert!(
                !want.contains(name),
                "seed {seed}: {name} was reported but woke"
            );
        }
        assert_eq!(
            woke.borrow().len() + want.len(),
            created.get(),
            "seed {seed}: every waiter either woke or was reported"
        );
        assert!(
            lp.all_tasks().is_empty(),
            "seed {seed}: every task either finished or was freed"
        );
    }
}

#[test]
fn dropping_the_last_outside_handle_of_a_waited_queue_reports_the_waiter_at_the_end_of_that_step() {
    use aioloop::queue::Queue;
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    lp.run_until_complete(async move {
        let routes: Rc<RefCell<HashMap<u32, Queue<&str>>>> = Rc::default();
        let q = Queue::<&str>::new(0);
        routes.borrow_mut().insert(9, q.clone());
        let handler = create_task(async move {
            while let Ok(msg) = q.get().await {
                let _ = msg;
            }
        })
        .unwrap();
        handler.set_name("handler-9");
        drop(handler);
        sleep(secs(1)).await.unwrap();
        assert!(destroyed(&seen).is_empty(), "the map still routes to it");
        // The dispatcher forgets the id while the handler waits.
        routes.borrow_mut().remove(&9);
        assert!(destroyed(&seen).is_empty(), "checked at the end of this step, not inside it");
        sleep(secs(0)).await.unwrap();
        let got = destroyed(&seen);
        assert_eq!(got.len(), 1);
        assert!(got[0]
            .detail
            .as_ref()
            .unwrap()
            .starts_with("'handler-9' waits on Queue.get of <Queue maxsize=0 qsize=0>, and nothing can ever wake it"));
    })
    .unwrap();
}

/// Panics when dropped: a destructor that fails while a stuck task is freed.
struct PanicsOnDrop;
impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("destructor failed");
    }
}

#[test]
fn a_panicking_destructor_of_a_freed_task_is_reported_and_the_loop_goes_on() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    let out = lp.run_until_complete(async move {
        let ev = Event::new();
        let e = ev.clone();
        drop(
            create_task(async move {
                let _bomb = PanicsOnDrop;
                e.wait().await.ok();
            })
            .unwrap(),
        );
        sleep(secs(1)).await.unwrap();
        drop(ev);
        sleep(secs(1)).await.unwrap();
        "still running"
    });
    assert_eq!(out.unwrap(), "still running");
    let messages: Vec<String> = seen.borrow().iter().map(|c| c.message.clone()).collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert_eq!(messages[0], "Task was destroyed but it is pending!");
    assert!(
        messages[1].starts_with("Exception in callback "),
        "{messages:?}"
    );
    let err = seen.borrow()[1].exception.as_ref().unwrap().to_string();
    assert!(err.contains("destructor failed"), "{err}");
}
