//! asyncio's synchronization primitives: FIFO fairness, hand-offs that
//! survive cancellation, and asyncio's error texts. The expected outcomes
//! were checked against CPython (3.11, and 3.13's code where it changed).

mod util;

use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::Poll;

use aioloop::sync::{Barrier, BoundedSemaphore, Condition, Event, Lock, Semaphore, SyncError};
use aioloop::{create_task, sleep, Error, EventLoop, Task};
use util::{now, secs, Recorder, Rng};

type Log = Recorder<String>;

/// `util::run`, but a deadlock fails the test instead of hanging it: when
/// nothing else is left, the virtual clock jumps to this stop.
fn run<F>(lp: &EventLoop, fut: F) -> <F::Output as aioloop::TaskOutput>::Ok
where
    F: Future + 'static,
    F::Output: aioloop::TaskOutput,
{
    lp.call_later(secs(1_000_000), util::stopper(&lp.loop_ref()))
        .unwrap();
    util::run(lp, fut)
}

/// Lets every task that is ready run (a few loop iterations).
async fn settle() {
    for _ in 0..5 {
        sleep(secs(0)).await.unwrap();
    }
}

// ---------------------------------------------------------------- Lock

fn lock_user(lock: &Lock, log: &Log, name: &'static str) -> Task<()> {
    let (lock, log) = (lock.clone(), log.clone());
    create_task(async move {
        let held = lock.acquire().await;
        match held {
            Ok(_g) => {
                log.push(format!("{name} in at {}", now()));
                sleep(secs(1)).await?;
                log.push(format!("{name} out"));
            }
            Err(c) => {
                log.push(format!("{name} cancelled"));
                return Err(c.into());
            }
        }
        Ok(())
    })
    .unwrap()
}

#[test]
fn lock_waiters_are_served_in_fifo_order() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let log = Log::new();
    let l = log.clone();
    run(&lp, async move {
        let lock = Lock::new();
        let tasks: Vec<_> = ["a", "b", "c", "d"]
            .into_iter()
            .map(|n| lock_user(&lock, &l, n))
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert!(!lock.locked());
    });
    assert_eq!(
        log.take(),
        [
            "a in at 0",
            "a out",
            "b in at 1",
            "b out",
            "c in at 2",
            "c out",
            "d in at 3",
            "d out"
        ]
    );
}

#[test]
fn a_newcomer_does_not_overtake_the_waiter_chosen_by_release() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let log = Log::new();
    let l = log.clone();
    run(&lp, async move {
        let lock = Lock::new();
        let held = lock.acquire().await.unwrap();
        let b = lock_user(&lock, &l, "b");
        settle().await;
        drop(held);
        // asyncio: unlocked, but b was chosen; d must queue behind it.
        assert!(!lock.locked());
        let d = lock_user(&lock, &l, "d");
        b.await.unwrap();
        d.await.unwrap();
    });
    assert_eq!(log.take(), ["b in at 0", "b out", "d in at 1", "d out"]);
}

#[test]
fn a_lock_waiter_cancelled_after_it_was_chosen_passes_the_lock_on() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let log = Log::new();
    let l = log.clone();
    run(&lp, async move {
        let lock = Lock::new();
        let held = lock.acquire().await.unwrap();
        let b = lock_user(&lock, &l, "b");
        let c = lock_user(&lock, &l, "c");
        settle().await;
        // The same iteration: b is chosen, then cancelled before it runs.
        drop(held);
        b.cancel();
        assert!(b.await.unwrap_err().is_cancelled());
        c.await.unwrap();
        assert!(!lock.locked());
        assert_eq!(format!("{lock:?}"), "<Lock [unlocked]>");
    });
    assert_eq!(log.take(), ["b cancelled", "c in at 0", "c out"]);
}

#[test]
fn a_lock_waiter_dropped_after_it_was_chosen_passes_the_lock_on() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let log = Log::new();
    let l = log.clone();
    run(&lp, async move {
        let lock = Lock::new();
        let held = lock.acquire().await.unwrap();
        let b = {
            let lock = lock.clone();
            create_task(async move {
                let mut acquire = pin!(lock.acquire());
                // Register once, then look elsewhere for a second.
                let first = std::future::poll_fn(|cx| Poll::Ready(acquire.as_mut().poll(cx))).await;
                assert!(first.is_pending());
                sleep(secs(1)).await.unwrap();
                // Dropped here, chosen but never polled again.
            })
            .unwrap()
        };
        let c = lock_user(&lock, &l, "c");
        settle().await;
        lp_time_half().await;
        drop(held);
        b.await.unwrap();
        c.await.unwrap();
    });
    assert_eq!(
        log.take(),
        ["c in at 1", "c out"],
        "c gets the lock when b drops its turn"
    );
}

async fn lp_time_half() {
    sleep(std::time::Duration::from_millis(500)).await.unwrap();
}

#[test]
fn a_cancelled_lock_waiter_leaves_nothing_behind() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    run(&lp, async move {
        let lock = Lock::new();
        let held = lock.acquire().await.unwrap();
        let b = {
            let lock = lock.clone();
            create_task(async move {
                drop(lock.acquire().await?);
                Ok(())
            })
            .unwrap()
        };
        settle().await;
        assert_eq!(format!("{lock:?}"), "<Lock [locked, waiters:1]>");
        b.cancel();
        assert!(b.await.unwrap_err().is_cancelled());
        assert_eq!(format!("{lock:?}"), "<Lock [locked]>");
        drop(held);
        assert!(!lock.locked());
        // Free and nobody queued: the fast path takes it at once.
        let again = lock.acquire().await.unwrap();
        assert!(lock.locked());
        drop(again);
    });
}

#[test]
fn lock_release_errors_and_stale_guards_use_asyncios_rules() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    run(&lp, async move {
        let lock = Lock::new();
        assert_eq!(
            lock.release(),
            Err(SyncError::Runtime("Lock is not acquired."))
        );
        let g = lock.acquire().await.unwrap();
        // asyncio lets anyone release; the guard then owns nothing.
        lock.release().unwrap();
        let g2 = lock.acquire().await.unwrap();
        drop(g);
        assert!(lock.locked(), "a stale guard does not release a later hold");
        g2.release();
        assert!(!lock.locked());
    });
}

// ---------------------------------------------------------------- Event

#[test]
fn event_set_wakes_every_waiter_in_order_even_if_cleared_at_once() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let log = Log::new();
    let l = log.clone();
    run(&lp, async move {
        let ev = Event::new();
        let waiters: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|n| {
                let (ev, l) = (ev.clone(), l.clone());
                create_task(async move {
                    ev.wait().await?;
                    l.push(format!("{n} woke"));
                    Ok::<_, Error>(())
                })
                .unwrap()
            })
            .collect();
        settle().await;
        assert_eq!(format!("{ev:?}"), "<Event [unset, waiters:3]>");
        // asyncio: waiters resolved by set() return True though cleared.
        ev.set();
        ev.clear();
        for w in waiters {
            w.await.unwrap();
        }
        assert!(!ev.is_set());
        ev.set();
        ev.wait().await.unwrap(); // set: no waiting
    });
    assert_eq!(log.take(), ["a woke", "b woke", "c woke"]);
}

#[test]
fn a_cancelled_event_waiter_gets_cancelled_error_and_is_forgotten() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    run(&lp, async move {
        let ev = Event::new();
        let w = {
            let ev = ev.clone();
            create_task(async move {
                ev.wait().await?;
                Ok(())
            })
            .unwrap()
        };
        settle().await;
        w.cancel_with("enough");
        let e = w.await.unwrap_err();
        assert_eq!(e.as_cancelled().map(|c| c.message()), Some(Some("enough")));
        assert_eq!(format!("{ev:?}"), "<Event [unset]>");
    });
}

// ---------------------------------------------------------------- Condition

fn cond_waiter(cond: &Condition, log: &Log, name: &'static str) -> Task<()> {
    let (cond, log) = (cond.clone(), log.clone());
    create_task(async move {
        let mut held = cond.acquire().await?;
        let r = cond.wait(&mut held).await;
        log.push(format!(
            "{name} {} locked={}",
            if r.is_ok() { "woke" } else { "cancelled" },
            cond.locked()
        ));
        Ok(r?)
    })
    .unwrap()
}

#[test]
fn notify_wakes_waiters_in_fifo_order_and_each_returns_holding_the_lock() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let log = Log::new();
    let l = log.clone();
    run(&lp, async move {
        let cond = Condition::new();
        let ws: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|n| cond_waiter(&cond, &l, n))
            .collect();
        settle().await;
        assert_eq!(format!("{cond:?}"), "<Condition [unlocked, waiters:3]>");
        {
            let _held = cond.acquire().await.unwrap();
            cond.notify(2).unwrap();
        }
        settle().await;
        assert_eq!(l.snapshot(), ["a woke locked=true", "b woke locked=true"]);
        {
            let _held = cond.acquire().await.unwrap();
            cond.notify_all().unwrap();
        }
        for w in ws {
            w.await.unwrap();
        }
        assert!(!cond.locked());
    });
    assert_eq!(
        log.take(),
        [
            "a woke locked=true",
            "b woke locked=true",
            "c woke locked=true"
        ]
    );
}

#[test]
fn a_notified_waiter_cancelled_before_it_runs_passes_the_notification_on() {
    // CPython 3.11 loses this notification; 3.13 passes it on (gh-112202).
    let lp = EventLoop::with_virtual_clock().unwrap();
    let log = Log::new();
    let l = log.clone();
    run(&lp, async move {
        let cond = Condition::new();
        let a = cond_waiter(&cond, &l, "a");
        let b = cond_waiter(&cond, &l, "b");
        settle().await;
        {
            let _held = cond.acquire().await.unwrap();
            cond.notify(1).unwrap();
        }
        a.cancel();
        assert!(a.await.unwrap_err().is_cancelled());
        b.await.unwrap();
    });
    assert_eq!(
        log.take(),
        ["a cancelled locked=true", "b woke locked=true"],
        "a holds the lock again when its cancellation surfaces; b is woken in its place"
    );
}

#[test]
fn wait_and_notify_need_the_lock() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    run(&lp, async move {
        let cond = Condition::new();
        assert_eq!(
            cond.notify(1),
            Err(SyncError::Runtime("cannot notify on un-acquired lock"))
        );
        let mut held = cond.acquire().await.unwrap();
        cond.release().unwrap(); // the guard no longer holds it
        assert_eq!(
            cond.wait(&mut held).await,
            Err(SyncError::Runtime("cannot wait on un-acquired lock"))
        );
        // A guard of another lock does not count either.
        let other = Lock::new();
        let mut foreign = other.acquire().await.unwrap();
        assert_eq!(
            cond.wait(&mut foreign).await,
            Err(SyncError::Runtime("cannot wait on un-acquired lock"))
        );
    });
}

#[test]
fn wait_for_checks_the_predicate_after_every_wake_up() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    run(&lp, async move {
        let lock = Lock::new();
        let cond = Condition::with_lock(&lock);
        let counter = Rc::new(std::cell::Cell::new(0));
        let checks = Rc::new(std::cell::Cell::new(0));
        let w = {
            let (cond, counter, checks) = (cond.clone(), counter.clone(), checks.clone());
            create_task(async move {
                let mut held = cond.acquire().await?;
                cond.wait_for(&mut held, || {
                    checks.set(checks.get() + 1);
                    counter.get() >= 3
                })
                .await?;
                Ok::<_, Error>(counter.get())
            })
            .unwrap()
        };
        for _ in 0..3 {
            settle().await;
            let _held = lock.acquire().await.unwrap();
            counter.set(counter.get() + 1);
            cond.notify_all().unwrap();
        }
        assert_eq!(w.await.unwrap(), 3);
        assert_eq!(
            checks.get(),
            4,
            "once first, then after each of three wake-ups"
        );
    });
}

// ---------------------------------------------------------------- Semaphore

#[test]
fn a_semaphore_admits_value_tasks_at_once_in_fifo_order() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let log = Log::new();
    let l = log.clone();
    run(&lp, async move {
        let sem = Semaphore::new(2);
        let ts: Vec<_> = ["a", "b", "c", "d", "e"]
            .into_iter()
            .map(|n| {
                let (sem, l) = (sem.clone(), l.clone());
                create_task(async move {
                    let _p = sem.acquire().await?;
                    l.push(format!("{n} at {}", now()));
                    sleep(secs(1)).await
                })
                .unwrap()
            })
            .collect();
        for t in ts {
            t.await.unwrap();
        }
        assert_eq!(sem.value(), 2);
        assert_eq!(format!("{sem:?}"), "<Semaphore [unlocked, value:2]>");
    });
    assert_eq!(
        log.take(),
        ["a at 0", "b at 0", "c at 1", "d at 1", "e at 2"]
    );
}

#[test]
fn a_permit_handed_to_a_cancelled_waiter_goes_to_the_next() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let log = Log::new();
    let l = log.clone();
    run(&lp, async move {
        let sem = Semaphore::new(1);
        let first = sem.acquire().await.unwrap();
        let users: Vec<_> = ["b", "c"]
            .into_iter()
            .map(|n| {
                let (sem, l) = (sem.clone(), l.clone());
                create_task(async move {
                    match sem.acquire().await {
                        Ok(_p) => l.push(n.to_owned()),
                        Err(_) => l.push(format!("{n} cancelled")),
                    }
                })
                .unwrap()
            })
            .collect();
        settle().await;
        assert!(sem.locked());
        drop(first); // hands the permit to b ...
        users[0].cancel(); // ... who is cancelled before it runs
        for u in users {
            u.await.ok();
        }
        assert_eq!(sem.value(), 1, "no permit lost, none created");
    });
    assert_eq!(log.take(), ["b cancelled", "c"]);
}

#[test]
fn a_bounded_semaphore_refuses_to_grow_past_its_start() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    run(&lp, async move {
        let sem = BoundedSemaphore::new(2);
        assert_eq!(
            sem.release(),
            Err(SyncError::Value("BoundedSemaphore released too many times"))
        );
        sem.acquire().await.unwrap().forget();
        assert_eq!(sem.value(), 1, "a forgotten permit stays taken");
        sem.release().unwrap();
        assert_eq!(sem.value(), 2);
        assert_eq!(format!("{sem:?}"), "<BoundedSemaphore [unlocked, value:2]>");
    });
}

// ---------------------------------------------------------------- Barrier

#[test]
fn a_barrier_releases_a_full_round_and_holds_newcomers_while_it_drains() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let log = Log::new();
    let l = log.clone();
    run(&lp, async move {
        let b = Barrier::new(2).unwrap();
        let ts: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|n| {
                let (b, l) = (b.clone(), l.clone());
                create_task(async move {
                    let i = b.wait().await?;
                    l.push(format!("{n}:{i}"));
                    Ok::<_, Error>(())
                })
                .unwrap()
            })
            .collect();
        sleep(secs(0)).await.unwrap();
        // As CPython prints after one iteration.
        assert_eq!(format!("{b:?}"), "<Barrier [draining, waiters:0/2]>");
        settle().await;
        assert_eq!(format!("{b:?}"), "<Barrier [filling, waiters:1/2]>");
        assert_eq!(b.n_waiting(), 1, "c entered the next round");
        ts[2].cancel();
        for t in ts {
            t.await.ok();
        }
        assert_eq!(b.n_waiting(), 0, "a cancelled party leaves the round");
        assert!(
            !b.broken(),
            "cancellation does not break an asyncio barrier"
        );
    });
    assert_eq!(
        log.take(),
        ["b:1", "a:0"],
        "the last to arrive leaves first"
    );
}

#[test]
fn abort_and_reset_break_the_waiting_parties_with_asyncios_texts() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    run(&lp, async move {
        let b = Barrier::new(3).unwrap();
        let waiting = {
            let b = b.clone();
            create_task(async move { Ok(b.wait().await?) }).unwrap()
        };
        settle().await;
        b.abort();
        let e = waiting.await.unwrap_err();
        assert_eq!(
            e.downcast_ref::<SyncError>(),
            Some(&SyncError::BrokenBarrier("Abort or reset of barrier"))
        );
        assert_eq!(
            e.to_string(),
            "BrokenBarrierError: Abort or reset of barrier"
        );
        assert_eq!(format!("{b:?}"), "<Barrier [broken]>");
        assert_eq!(
            b.wait().await,
            Err(SyncError::BrokenBarrier("Barrier aborted"))
        );
        b.reset();
        assert_eq!(format!("{b:?}"), "<Barrier [filling, waiters:0/3]>");
        let waiting = {
            let b = b.clone();
            create_task(async move { Ok(b.wait().await?) }).unwrap()
        };
        settle().await;
        b.reset();
        let e = waiting.await.unwrap_err();
        assert_eq!(
            e.downcast_ref::<SyncError>(),
            Some(&SyncError::BrokenBarrier("Abort or reset of barrier"))
        );
        assert_eq!(
            e.to_string(),
            "BrokenBarrierError: Abort or reset of barrier"
        );
        assert_eq!(format!("{b:?}"), "<Barrier [filling, waiters:0/3]>");
        assert_eq!(
            Barrier::new(0).unwrap_err(),
            SyncError::Value("parties must be > 0")
        );
    });
}

// ---------------------------------------------------------------- races

#[test]
fn random_cancellations_never_lose_a_hand_off_or_break_exclusion() {
    for seed in 1..=20u64 {
        let lp = EventLoop::with_virtual_clock().unwrap();
        run(&lp, async move {
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let lock = Lock::new();
            let sem = Semaphore::new(3);
            let inside_lock = Rc::new(std::cell::Cell::new(0));
            let inside_sem = Rc::new(std::cell::Cell::new(0));
            let mut tasks = Vec::new();
            for _ in 0..40 {
                let (lock, sem) = (lock.clone(), sem.clone());
                let (il, is) = (inside_lock.clone(), inside_sem.clone());
                let (hold, start) = (rng.below(3), rng.below(4));
                tasks.push(
                    create_task(async move {
                        sleep(secs(start)).await?;
                        let _p = sem.acquire().await?;
                        is.set(is.get() + 1);
                        assert!(is.get() <= 3, "semaphore over-admitted");
                        let g = lock.acquire().await;
                        let r = match g {
                            Ok(_g) => {
                                il.set(il.get() + 1);
                                assert_eq!(il.get(), 1, "two holders of one lock");
                                let r = sleep(secs(hold)).await;
                                il.set(il.get() - 1);
                                r
                            }
                            Err(c) => Err(c.into()),
                        };
                        is.set(is.get() - 1);
                        r
                    })
                    .unwrap(),
                );
            }
            // Cancel a random third of them at random moments, including
            // the very iteration in which they are handed the lock.
            for _ in 0..14 {
                let victim = tasks[rng.below(40) as usize].clone();
                let when = rng.below(8);
                sleep(secs(when) / 2).await.unwrap();
                victim.cancel();
            }
            for t in tasks {
                let _ = t.await;
            }
            assert!(!lock.locked(), "seed {seed}: lock left held");
            assert_eq!(sem.value(), 3, "seed {seed}: permits lost or made");
            assert_eq!(format!("{lock:?}"), "<Lock [unlocked]>");
            assert_eq!(format!("{sem:?}"), "<Semaphore [unlocked, value:3]>");
        });
    }
}
