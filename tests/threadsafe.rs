//! The thread-safe door: `LoopHandle`, `call_soon_threadsafe`, remote
//! wakes, `stop` from another thread, closing while others post.
//! Bounded waits only: no test depends on timing to pass.

mod util;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;

use aioloop::{CallStatus, EventLoop, LoopError};
use util::{bad, bad_of, capture_logs, logs, reports, stopper, Recorder};

#[test]
fn a_post_joined_before_call_soon_runs_first() {
    // asyncio's test_call_soon_threadsafe: another thread posts `hello` and
    // is joined; then the loop thread calls call_soon(`world`).
    let lp = EventLoop::with_virtual_clock().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let (door, o) = (lp.loop_handle(), order.clone());
    thread::spawn(move || {
        door.call_soon_threadsafe(move || o.lock().unwrap().push("hello"))
            .unwrap();
    })
    .join()
    .unwrap();
    let o = order.clone();
    lp.call_soon(move || o.lock().unwrap().push("world"))
        .unwrap();
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(*order.lock().unwrap(), ["hello", "world"]);
}

#[test]
fn call_soon_threadsafe_on_the_loop_thread_keeps_fifo_with_call_soon() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Arc::new(Mutex::new(Vec::new()));
    let door = lp.loop_handle();
    let r = rec.clone();
    lp.call_soon(move || r.lock().unwrap().push(1)).unwrap();
    let r = rec.clone();
    door.call_soon_threadsafe(move || r.lock().unwrap().push(2))
        .unwrap();
    let r = rec.clone();
    lp.call_soon(move || r.lock().unwrap().push(3)).unwrap();
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(*rec.lock().unwrap(), [1, 2, 3]);
}

#[test]
fn eight_threads_post_100k_each_nothing_lost_per_thread_order_kept() {
    const THREADS: usize = 8;
    const POSTS: usize = 100_000;
    let lp = EventLoop::new().unwrap();
    let last: Arc<Vec<AtomicUsize>> = Arc::new((0..THREADS).map(|_| AtomicUsize::new(0)).collect());
    let total = Arc::new(AtomicUsize::new(0));
    let out_of_order = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for t in 0..THREADS {
        let door = lp.loop_handle();
        let (last, total, ooo) = (last.clone(), total.clone(), out_of_order.clone());
        workers.push(thread::spawn(move || {
            for i in 1..=POSTS {
                let (last, total, ooo) = (last.clone(), total.clone(), ooo.clone());
                door.call_soon_threadsafe(move || {
                    if last[t].swap(i, Ordering::Relaxed) != i - 1 {
                        ooo.store(true, Ordering::Relaxed);
                    }
                    total.fetch_add(1, Ordering::Relaxed);
                })
                .unwrap();
            }
        }));
    }
    // Stop once everything arrived: a checker re-posts itself until done.
    fn check(lp: aioloop::LoopRef, total: Arc<AtomicUsize>, want: usize) {
        if total.load(Ordering::Relaxed) == want {
            lp.stop();
        } else {
            let l = lp.clone();
            lp.call_later(std::time::Duration::from_millis(1), move || {
                check(l, total, want)
            })
            .unwrap();
        }
    }
    let (l, tt) = (lp.loop_ref(), total.clone());
    lp.call_soon(move || check(l, tt, THREADS * POSTS)).unwrap();
    lp.run_forever().unwrap();
    for w in workers {
        w.join().unwrap();
    }
    assert_eq!(total.load(Ordering::Relaxed), THREADS * POSTS);
    assert!(
        !out_of_order.load(Ordering::Relaxed),
        "per-thread FIFO broken"
    );
    for t in 0..THREADS {
        assert_eq!(last[t].load(Ordering::Relaxed), POSTS);
    }
}

#[test]
fn a_post_wakes_a_loop_blocked_in_poll() {
    // Nothing scheduled: the loop blocks in epoll_wait until the post.
    let lp = EventLoop::new().unwrap();
    let door = lp.loop_handle();
    let ran = Arc::new(AtomicBool::new(false));
    let r = ran.clone();
    let l = lp.loop_ref();
    let t = thread::spawn(move || {
        let d2 = door.clone();
        door.call_soon_threadsafe(move || {
            r.store(true, Ordering::Relaxed);
            d2.stop().unwrap();
        })
        .unwrap();
    });
    lp.run_forever().unwrap();
    t.join().unwrap();
    assert!(ran.load(Ordering::Relaxed));
    drop(l);
}

#[test]
fn stop_from_another_thread() {
    let lp = EventLoop::new().unwrap();
    let door = lp.loop_handle();
    let barrier = Arc::new(Barrier::new(2));
    let b = barrier.clone();
    // A callback that reschedules itself forever: only stop() ends the run.
    fn spin(lp: aioloop::LoopRef, b: Arc<Barrier>, first: bool) {
        if first {
            b.wait(); // the loop is running now
        }
        let l = lp.clone();
        lp.call_soon(move || spin(l, b, false)).unwrap();
    }
    let l = lp.loop_ref();
    lp.call_soon(move || spin(l, b, true)).unwrap();
    let t = thread::spawn(move || {
        barrier.wait();
        door.stop().unwrap();
    });
    lp.run_forever().unwrap();
    t.join().unwrap();
    assert!(!lp.is_running());
}

#[test]
fn a_handle_cancelled_from_another_thread_never_runs() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let h = lp
        .loop_handle()
        .call_soon_threadsafe(|| panic!("cancelled"))
        .unwrap();
    let h2 = h.clone();
    thread::spawn(move || assert!(h2.cancel())).join().unwrap();
    assert!(!h.cancel(), "already cancelled");
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(h.status(), CallStatus::Cancelled);
}

#[test]
fn posting_to_a_closed_loop_is_refused_with_asyncios_words() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let door = lp.loop_handle();
    lp.close().unwrap();
    assert!(door.is_closed());
    let err = door.call_soon_threadsafe(|| {}).unwrap_err();
    assert!(matches!(err, LoopError::Closed));
    assert_eq!(err.to_string(), "Event loop is closed");
    assert!(door.stop().is_err());
}

#[test]
fn closing_while_others_post_loses_nothing_silently() {
    // Every post ends exactly one way: refused (Err), ran, or dropped at
    // close with a warning logged. Nothing stays Pending.
    capture_logs();
    const THREADS: usize = 4;
    let lp = EventLoop::new().unwrap();
    let handles = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(AtomicUsize::new(0));
    let started = Arc::new(Barrier::new(THREADS + 1));
    let mut workers = Vec::new();
    for _ in 0..THREADS {
        let door = lp.loop_handle();
        let (handles, refused, started) = (handles.clone(), refused.clone(), started.clone());
        workers.push(thread::spawn(move || {
            started.wait();
            // Bounded: at most 200,000 posts per thread.
            for _ in 0..200_000 {
                match door.call_soon_threadsafe(|| {}) {
                    Ok(h) => handles.lock().unwrap().push(h),
                    Err(_) => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }));
    }
    started.wait();
    // Run a few iterations while they post, then close.
    let rec = Recorder::new();
    let r = rec.clone();
    let l = lp.loop_ref();
    lp.call_soon(move || {
        r.push(());
        l.stop();
    })
    .unwrap();
    lp.run_forever().unwrap();
    lp.close().unwrap();
    for w in workers {
        w.join().unwrap();
    }
    let handles = handles.lock().unwrap();
    let count = |s| handles.iter().filter(|h| h.status() == s).count();
    let (ran, dropped) = (count(CallStatus::Ran), count(CallStatus::Dropped));
    assert_eq!(count(CallStatus::Pending), 0, "nothing left in limbo");
    assert_eq!(ran + dropped, handles.len());
    let warnings = logs("asyncio")
        .into_iter()
        .filter(|(lvl, m)| {
            *lvl == log::Level::Warn && m.contains("was dropped: the event loop closed")
        })
        .count();
    assert_eq!(warnings, dropped, "every drop is reported");
    assert!(refused.load(Ordering::Relaxed) <= THREADS);
}

#[test]
fn a_burst_of_posts_wakes_the_reactor_far_less_than_once_per_post() {
    let lp = EventLoop::new().unwrap();
    let door = lp.loop_handle();
    let before = door.reactor_wakes();
    let d = door.clone();
    thread::spawn(move || {
        for _ in 0..1000 {
            d.call_soon_threadsafe(|| {}).unwrap();
        }
        d.stop().unwrap();
    })
    .join()
    .unwrap();
    lp.run_forever().unwrap();
    let wakes = door.reactor_wakes() - before;
    assert!(
        (1..10).contains(&wakes),
        "{wakes} reactor wakes for 1,000 posts"
    );
}

// ------------------------------------------------------- run_coroutine_threadsafe

use aioloop::{sleep, Error};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// Runs the loop until `f`, run on another thread with the loop's handle,
/// returns; the thread stops the loop.
fn with_worker<R: Send + 'static>(
    lp: &EventLoop,
    f: impl FnOnce(aioloop::LoopHandle) -> R + Send + 'static,
) -> R {
    let door = lp.loop_handle();
    let t = thread::spawn(move || {
        let d = door.clone();
        let r = f(door);
        d.stop().unwrap();
        r
    });
    lp.run_forever().unwrap();
    t.join().unwrap()
}

#[test]
fn run_coroutine_threadsafe_returns_the_result_to_another_thread() {
    let lp = EventLoop::new().unwrap();
    let got = with_worker(&lp, |door| {
        let fut = door
            .run_coroutine_threadsafe_with(|| async {
                sleep(Duration::from_millis(1)).await?;
                Ok::<_, Error>("from the loop")
            })
            .unwrap();
        (fut.result(Some(LONG)).unwrap(), fut.done(), fut.cancelled())
    });
    assert_eq!(got, ("from the loop", true, false));
}

#[test]
fn the_tasks_exception_and_panic_reach_the_waiting_thread() {
    let lp = EventLoop::new().unwrap();
    let (failed, panicked) = with_worker(&lp, |door| {
        let a = door
            .run_coroutine_threadsafe(async { bad::<u8>("bad") })
            .unwrap();
        let b = door
            .run_coroutine_threadsafe(async {
                panic!("boom");
                #[allow(unreachable_code)]
                0u8
            })
            .unwrap();
        (a.result(Some(LONG)), b.result(Some(LONG)))
    });
    let failed = failed.unwrap_err();
    assert_eq!(bad_of(&failed), Some("bad"), "{failed:?}");
    let panicked = panicked.unwrap_err();
    assert_eq!(
        panicked.as_panic().map(|p| p.message()),
        Some("boom"),
        "{panicked:?}"
    );
}

#[test]
fn cancelling_the_concurrent_future_cancels_the_task_at_its_await() {
    let lp = EventLoop::new().unwrap();
    let caught = Arc::new(AtomicBool::new(false));
    let c = caught.clone();
    let (cancel_returned, cancelled) = with_worker(&lp, move |door| {
        let fut = door
            .run_coroutine_threadsafe_with(move || async move {
                if let Err(e) = sleep(Duration::from_secs(3600)).await {
                    c.store(true, Ordering::SeqCst);
                    return Err(e);
                }
                Ok(())
            })
            .unwrap();
        // Bounded wait until the task is parked in its sleep.
        let start = std::time::Instant::now();
        while !fut.done() && start.elapsed() < LONG {
            let r = fut.cancel();
            if r {
                return (r, fut.cancelled());
            }
        }
        (false, fut.cancelled())
    });
    assert!(cancel_returned && cancelled);
    // The loop ran until stop(); the task got the cancel at its await.
    lp.run_until_complete(sleep(Duration::from_millis(5)))
        .unwrap();
    assert!(caught.load(Ordering::SeqCst), "the task saw CancelledError");
}

#[test]
fn a_coroutine_cancelling_itself_makes_the_concurrent_future_cancelled() {
    let lp = EventLoop::new().unwrap();
    let cancelled = with_worker(&lp, |door| {
        let fut = door
            .run_coroutine_threadsafe_with(|| async {
                aioloop::current_task().unwrap().cancel();
                sleep(Duration::ZERO).await?;
                Ok::<_, Error>(())
            })
            .unwrap();
        let r = fut.result(Some(LONG));
        (matches!(r, Err(ref e) if e.is_cancelled()), fut.cancelled())
    });
    assert_eq!(cancelled, (true, true));
}

#[test]
fn result_with_a_timeout_times_out_and_the_task_goes_on() {
    let lp = EventLoop::new().unwrap();
    let release = Arc::new(AtomicBool::new(false));
    let got = with_worker(&lp, move |door| {
        let r2 = release.clone();
        let fut = door
            .run_coroutine_threadsafe_with(move || async move {
                while !r2.load(Ordering::SeqCst) {
                    sleep(Duration::from_millis(1)).await?;
                }
                Ok::<_, Error>(7)
            })
            .unwrap();
        let first = fut.result(Some(Duration::from_millis(1)));
        release.store(true, Ordering::SeqCst);
        let second = fut.result(Some(LONG));
        (
            matches!(first, Err(ref e) if e.is_timeout()),
            second.unwrap(),
        )
    });
    assert_eq!(got, (true, 7));
}

#[test]
fn a_loop_closed_before_running_the_coroutine_never_leaves_a_thread_waiting() {
    let lp = EventLoop::new().unwrap();
    let fut = lp
        .loop_handle()
        .run_coroutine_threadsafe(async { 1u8 })
        .unwrap();
    lp.close().unwrap();
    let r = fut.result(Some(LONG));
    assert!(matches!(r, Err(ref e) if e.is_cancelled()), "{r:?}");
}

#[test]
fn no_wakeup_is_lost_while_the_loop_blocks_in_poll() {
    // The handshake: the loop checks `notified`, finds nothing, and blocks
    // in epoll_wait; a producer pushes, sets `notified` and writes the
    // eventfd. Whatever the interleaving, the post must wake the loop. Each
    // round below leaves the loop idle (nothing scheduled, no timer), so a
    // lost wake-up hangs the test (and CI's limit catches it). 100,000
    // rounds by default; AIOLOOP_STRESS_ROUNDS lowers it under valgrind.
    let rounds: usize = std::env::var("AIOLOOP_STRESS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let lp = EventLoop::new().unwrap();
    let door = lp.loop_handle();
    let (ack_tx, ack_rx) = std::sync::mpsc::channel::<usize>();
    let producer = thread::spawn(move || {
        for i in 0..rounds {
            let ack = ack_tx.clone();
            door.call_soon_threadsafe(move || ack.send(i).unwrap())
                .unwrap();
            // Wait for the loop to run it: it then goes back to sleep.
            let got = ack_rx.recv_timeout(LONG).expect("a wake-up was lost");
            assert_eq!(got, i);
        }
        door.stop().unwrap();
    });
    lp.run_forever().unwrap();
    producer.join().unwrap();
}

// ------------------------------------------------- the injection queue's slots
//
// A `ThreadsafeHandle` points into the injection queue's slot, whose block
// lives as long as a handle or the loop needs it. These tests run under
// valgrind in CI (`.ci/run`): a block freed too early, or never, shows there.

/// Rounds for the stress tests below: lowered under valgrind.
fn stress_rounds(default: usize) -> usize {
    std::env::var("AIOLOOP_STRESS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(default, |r: usize| r.min(default))
}

#[test]
fn handles_outlive_their_loop_and_are_read_and_dropped_on_other_threads() {
    // More posts than one block holds, so that several blocks are shared by
    // handles on several threads when the loop goes away.
    let lp = EventLoop::new().unwrap();
    let door = lp.loop_handle();
    let ran = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for i in 0..200 {
        let r = ran.clone();
        handles.push(
            door.call_soon_threadsafe(move || {
                r.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap(),
        );
        if i % 3 == 0 {
            handles.push(handles.last().unwrap().clone());
        }
    }
    // Half of them run; the rest are still queued when the loop closes.
    handles[150].cancel();
    lp.run_until_complete(async {}).unwrap();
    let before_close = ran.load(Ordering::Relaxed);
    assert_eq!(before_close, 199, "all but the cancelled one ran");
    for i in 0..50 {
        let r = ran.clone();
        handles.push(
            door.call_soon_threadsafe(move || {
                r.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap(),
        );
        if i == 7 {
            assert!(handles.last().unwrap().cancel());
        }
    }
    drop(lp);
    assert!(door.call_soon_threadsafe(|| {}).is_err());
    drop(door);
    // The loop is gone; the handles still answer, from any thread.
    let (a, b): (Vec<_>, Vec<_>) = handles
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    let workers: Vec<_> = [a, b]
        .into_iter()
        .map(|part| {
            thread::spawn(move || {
                part.iter()
                    .map(|(_, h)| (h.status(), format!("{h:?}")))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let seen: Vec<_> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    let count = |s| seen.iter().filter(|(st, _)| *st == s).count();
    assert_eq!(count(CallStatus::Pending), 0);
    assert_eq!(count(CallStatus::Cancelled), 2);
    assert_eq!(count(CallStatus::Dropped), 49);
    assert_eq!(ran.load(Ordering::Relaxed), before_close);
    assert!(seen[0]
        .1
        .starts_with("<ThreadsafeHandle Ran at tests/threadsafe.rs:"));
}

#[test]
fn cancels_racing_the_loop_from_other_threads_decide_exactly_once() {
    // Each callback either runs (and its handle says Ran, and cancel()
    // returned false) or is cancelled (cancel() returned true, it never
    // runs): never both, never neither.
    const POSTS: usize = 20_000;
    let posts = stress_rounds(POSTS);
    let lp = EventLoop::new().unwrap();
    let door = lp.loop_handle();
    let ran = Arc::new(Mutex::new(vec![false; posts]));
    let (tx, rx) = std::sync::mpsc::channel::<(usize, aioloop::ThreadsafeHandle)>();
    let poster = {
        let (door, ran) = (door.clone(), ran.clone());
        thread::spawn(move || {
            for i in 0..posts {
                let r = ran.clone();
                let h = door
                    .call_soon_threadsafe(move || r.lock().unwrap()[i] = true)
                    .unwrap();
                tx.send((i, h)).unwrap();
            }
        })
    };
    let canceller = thread::spawn(move || {
        let mut won = vec![false; posts];
        let mut kept = Vec::new();
        for (i, h) in rx {
            if i % 2 == 0 {
                won[i] = h.cancel();
            }
            // Keep every fourth handle past the loop's run; drop the others
            // here, racing the loop.
            if i % 4 == 0 {
                kept.push((i, h));
            }
        }
        door.stop().unwrap();
        (won, kept)
    });
    lp.run_forever().unwrap();
    poster.join().unwrap();
    let (won, kept) = canceller.join().unwrap();
    lp.run_until_complete(async {}).unwrap();
    let ran = ran.lock().unwrap();
    for i in 0..posts {
        assert!(!(ran[i] && won[i]), "post {i} ran although its cancel won");
        if i % 2 == 1 {
            assert!(ran[i], "post {i} was never cancelled, yet did not run");
        }
    }
    for (i, h) in kept {
        let want = if won[i] {
            CallStatus::Cancelled
        } else {
            CallStatus::Ran
        };
        assert_eq!(h.status(), want, "post {i}");
        assert_eq!(ran[i], !won[i]);
    }
}

#[test]
fn posts_from_many_threads_while_a_task_waits_on_another_thread() {
    // Calls and their handles from four threads, through many blocks of the
    // queue, while a task waits for a future run for another thread (whose
    // result and the task's wakes cross the same queue); every call runs
    // once, and the handles kept say so.
    let rounds = stress_rounds(20_000);
    let lp = EventLoop::new().unwrap();
    let total = Arc::new(AtomicUsize::new(0));
    let done = lp
        .run_until_complete({
            let total = total.clone();
            async move {
                let door = aioloop::get_running_loop().unwrap().loop_handle();
                let workers: Vec<_> = (0..4)
                    .map(|_| {
                        let (door, total) = (door.clone(), total.clone());
                        thread::spawn(move || {
                            let mut kept = Vec::new();
                            for i in 0..rounds {
                                let t = total.clone();
                                let h = door
                                    .call_soon_threadsafe(move || {
                                        t.fetch_add(1, Ordering::Relaxed);
                                    })
                                    .unwrap();
                                if i % 7 == 0 {
                                    kept.push(h);
                                }
                            }
                            kept
                        })
                    })
                    .collect();
                let (tx, rx) = std::sync::mpsc::channel::<()>();
                let waker_thread = {
                    let fut = door.run_coroutine_threadsafe(async { 1u8 }).unwrap();
                    thread::spawn(move || {
                        let r = fut.result(Some(LONG));
                        tx.send(()).unwrap();
                        r
                    })
                };
                let mut kept = Vec::new();
                for w in workers {
                    kept.extend(blocking_join(w).await);
                }
                assert!(matches!(blocking_join(waker_thread).await, Ok(1)));
                rx.recv().unwrap();
                kept
            }
        })
        .unwrap();
    lp.run_until_complete(async {}).unwrap();
    assert_eq!(total.load(Ordering::Relaxed), 4 * rounds);
    assert!(done.iter().all(|h| h.status() == CallStatus::Ran));
}

/// Waits for a thread without blocking the loop: polls `is_finished`
/// between short sleeps on the loop's clock.
async fn blocking_join<T>(t: thread::JoinHandle<T>) -> T {
    while !t.is_finished() {
        sleep(Duration::from_micros(200)).await.unwrap();
    }
    t.join().unwrap()
}

#[test]
fn a_panicking_threadsafe_callback_is_reported_under_its_name_and_site() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    let door = lp.loop_handle();
    let line = line!() + 2;
    let worker = thread::spawn(move || {
        door.call_soon_threadsafe(|| panic!("remote boom")).unwrap();
    });
    worker.join().unwrap();
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    let seen = seen.borrow().last().expect("a report").to_string();
    assert!(
        seen.starts_with("Exception in callback threadsafe::"),
        "{seen}"
    );
    assert!(
        seen.contains(&format!("tests/threadsafe.rs:{line}")),
        "{seen}"
    );
    assert!(seen.contains("remote boom"), "{seen}");
}

#[test]
fn call_soon_runs_after_every_earlier_post_even_when_they_exceed_one_drain() {
    // The loop moves a bounded batch of injected items per iteration; a
    // call_soon still drains the rest first, so asyncio's one FIFO holds.
    const POSTS: usize = 5_000;
    let lp = EventLoop::with_virtual_clock().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let o = order.clone();
    let l = lp.loop_ref();
    // Queued first: runs in the first iteration, after the first batch of
    // posts was drained and while the rest still wait.
    lp.call_soon(move || {
        let o2 = o.clone();
        l.call_soon(move || o2.lock().unwrap().push(usize::MAX))
            .unwrap();
    })
    .unwrap();
    // Stops once everything ran (the virtual clock jumps to it); unlike a
    // call_soon, scheduling it drains nothing.
    let l = lp.loop_ref();
    lp.call_later(Duration::from_secs(3600), move || l.stop())
        .unwrap();
    let (door, o) = (lp.loop_handle(), order.clone());
    thread::spawn(move || {
        for i in 0..POSTS {
            let o = o.clone();
            door.call_soon_threadsafe(move || o.lock().unwrap().push(i))
                .unwrap();
        }
    })
    .join()
    .unwrap();
    lp.run_forever().unwrap();
    let order = order.lock().unwrap();
    let want: Vec<usize> = (0..POSTS).chain([usize::MAX]).collect();
    assert_eq!(*order, want);
}

// ------------------------------------------------------- drained batches
//
// The loop drains consecutive posts as one batch and runs the calls from
// the injection queue; each call must still behave as a callback of its own.

/// Posts `fs` from another thread, in order, and joins it: they are all
/// queued before the loop drains.
fn post_all(lp: &EventLoop, fs: Vec<Box<dyn FnOnce() + Send>>) -> Vec<aioloop::ThreadsafeHandle> {
    let door = lp.loop_handle();
    thread::spawn(move || {
        fs.into_iter()
            .map(|f| door.call_soon_threadsafe(f).unwrap())
            .collect()
    })
    .join()
    .unwrap()
}

fn push(rec: &Arc<Mutex<Vec<&'static str>>>, what: &'static str) -> Box<dyn FnOnce() + Send> {
    let rec = rec.clone();
    Box::new(move || rec.lock().unwrap().push(what))
}

#[test]
fn a_call_panicking_mid_batch_is_reported_alone_and_the_rest_still_run() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    let rec = Arc::new(Mutex::new(Vec::new()));
    let door = lp.loop_handle();
    let (r1, r2) = (rec.clone(), rec.clone());
    let lines = [line!() + 4, line!() + 7];
    thread::spawn(move || {
        door.call_soon_threadsafe(move || r1.lock().unwrap().push("first"))
            .unwrap();
        door.call_soon_threadsafe(|| panic!("mid-batch")).unwrap();
        door.call_soon_threadsafe(move || r2.lock().unwrap().push("third"))
            .unwrap();
        door.call_soon_threadsafe(|| panic!("last")).unwrap();
    })
    .join()
    .unwrap();
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(*rec.lock().unwrap(), ["first", "third"]);
    let reports: Vec<_> = seen
        .borrow()
        .iter()
        .map(|ctx| {
            let h = ctx.handle.as_ref().unwrap();
            (
                ctx.message.clone(),
                h.source_location().line(),
                h.callback_name().to_owned(),
            )
        })
        .collect();
    assert_eq!(reports.len(), 2, "{reports:?}");
    for ((message, line, name), want) in reports.iter().zip(lines) {
        assert_eq!(*line, want, "{message}");
        assert!(name.starts_with("threadsafe::"), "{name}");
        assert!(
            message.starts_with(&format!(
                "Exception in callback {name} at tests/threadsafe.rs:{want}"
            )),
            "{message}"
        );
    }
}

#[test]
fn a_call_cancelled_by_an_earlier_call_of_its_batch_is_skipped() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Arc::new(Mutex::new(Vec::new()));
    let victim: Arc<Mutex<Option<aioloop::ThreadsafeHandle>>> = Arc::default();
    let (v, r) = (victim.clone(), rec.clone());
    let canceller: Box<dyn FnOnce() + Send> = Box::new(move || {
        r.lock().unwrap().push("canceller");
        assert!(v.lock().unwrap().as_ref().unwrap().cancel());
    });
    let hs = post_all(
        &lp,
        vec![canceller, push(&rec, "victim"), push(&rec, "after")],
    );
    *victim.lock().unwrap() = Some(hs[1].clone());
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(*rec.lock().unwrap(), ["canceller", "after"]);
    let status: Vec<_> = hs.iter().map(|h| h.status()).collect();
    assert_eq!(
        status,
        [CallStatus::Ran, CallStatus::Cancelled, CallStatus::Ran]
    );
}

#[test]
fn stop_inside_a_batch_still_runs_the_rest_of_the_calls_drained_with_it() {
    // asyncio's ntodo: everything ready when the run phase began runs; what
    // a call schedules waits for the next run.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Arc::new(Mutex::new(Vec::new()));
    let r = rec.clone();
    let stopper_call: Box<dyn FnOnce() + Send> = Box::new(move || {
        let lp = aioloop::get_running_loop().unwrap();
        lp.stop();
        let r = r.clone();
        lp.call_soon(move || r.lock().unwrap().push("next run"))
            .unwrap();
    });
    post_all(
        &lp,
        vec![push(&rec, "before"), stopper_call, push(&rec, "after")],
    );
    lp.run_forever().unwrap();
    assert_eq!(*rec.lock().unwrap(), ["before", "after"]);
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(*rec.lock().unwrap(), ["before", "after", "next run"]);
}

#[test]
fn closing_with_drained_calls_not_run_reports_each_pending_one() {
    capture_logs();
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Arc::new(Mutex::new(Vec::new()));
    let hs = post_all(&lp, vec![push(&rec, "a"), push(&rec, "b"), push(&rec, "c")]);
    assert!(hs[1].cancel());
    // call_soon drains the posts into the ready queue; nothing runs them.
    lp.call_soon(|| {}).unwrap();
    assert_eq!(lp.ready_callbacks(), 4, "three calls and the local one");
    let late = post_all(&lp, vec![push(&rec, "never drained")]);
    lp.close().unwrap();
    assert!(rec.lock().unwrap().is_empty());
    let status: Vec<_> = hs.iter().chain(&late).map(|h| h.status()).collect();
    assert_eq!(
        status,
        [
            CallStatus::Dropped,
            CallStatus::Cancelled,
            CallStatus::Dropped,
            CallStatus::Dropped
        ]
    );
    let warned = logs("asyncio")
        .into_iter()
        .filter(|(l, m)| *l == log::Level::Warn && m.contains("was dropped: the event loop closed"))
        .count();
    assert_eq!(warned, 3, "each pending call, not the cancelled one");
    assert_eq!(lp.ready_callbacks(), 0);
}

#[test]
fn a_task_woken_between_two_posts_runs_between_them() {
    use std::future::poll_fn;
    use std::task::{Poll, Waker};
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Arc::new(Mutex::new(Vec::new()));
    let waker: Arc<Mutex<Option<Waker>>> = Arc::default();
    let (w, r) = (waker.clone(), rec.clone());
    let task = lp
        .create_task(async move {
            let mut parked = false;
            poll_fn(|cx| {
                if parked {
                    return Poll::Ready(());
                }
                parked = true;
                *w.lock().unwrap() = Some(cx.waker().clone());
                Poll::Pending
            })
            .await;
            r.lock().unwrap().push("task");
            Ok::<_, Error>(())
        })
        .unwrap();
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    let w = waker.lock().unwrap().take().unwrap();
    let wake: Box<dyn FnOnce() + Send> = Box::new(move || w.wake());
    // The wake is not a call: run it on the posting thread, between posts.
    let door = lp.loop_handle();
    let (a, b) = (push(&rec, "before"), push(&rec, "after"));
    thread::spawn(move || {
        door.call_soon_threadsafe(a).unwrap();
        wake();
        door.call_soon_threadsafe(b).unwrap();
    })
    .join()
    .unwrap();
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(*rec.lock().unwrap(), ["before", "task", "after"]);
    assert!(task.done());
}

#[test]
fn ready_callbacks_counts_each_drained_call_also_from_inside_one() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let probe = |s: &Arc<Mutex<Vec<usize>>>| -> Box<dyn FnOnce() + Send> {
        let s = s.clone();
        Box::new(move || {
            let n = aioloop::get_running_loop().unwrap().ready_callbacks();
            s.lock().unwrap().push(n);
        })
    };
    post_all(&lp, vec![probe(&seen), probe(&seen), probe(&seen)]);
    lp.call_soon(stopper(&lp)).unwrap();
    assert_eq!(lp.ready_callbacks(), 4);
    lp.run_forever().unwrap();
    // Inside each call: the calls after it, and the stopper.
    assert_eq!(*seen.lock().unwrap(), [3, 2, 1]);
    assert_eq!(lp.ready_callbacks(), 0);
}

#[test]
fn debug_mode_times_and_reports_each_call_of_a_batch_on_its_own() {
    capture_logs();
    let lp = EventLoop::with_virtual_clock().unwrap();
    lp.set_debug(true);
    // Every callback is "slow": the report does not depend on timing.
    lp.set_slow_callback_duration(Duration::ZERO);
    let door = lp.loop_handle();
    let lines = [line!() + 2, line!() + 3];
    thread::spawn(move || {
        door.call_soon_threadsafe(|| {}).unwrap();
        door.call_soon_threadsafe(|| {}).unwrap();
    })
    .join()
    .unwrap();
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    lp.close().unwrap();
    let executing: Vec<String> = logs("asyncio")
        .into_iter()
        .filter(|(l, m)| *l == log::Level::Warn && m.contains("::debug_mode_times"))
        .map(|(_, m)| m)
        .collect();
    assert_eq!(executing.len(), 2, "{executing:?}");
    for (m, line) in executing.iter().zip(lines) {
        assert!(
            m.starts_with("Executing <Handle threadsafe::")
                && m.contains(&format!(
                    "{{{{closure}}}} at tests/threadsafe.rs:{line}> took "
                )),
            "{m}"
        );
    }
}

/// A value whose destructor panics, for the panicking-destructor tests.
struct PanicsOnDrop(&'static str);

impl Drop for PanicsOnDrop {
    fn drop(&mut self) {
        panic!("{} dropped", self.0);
    }
}

#[test]
fn pending_threadsafe_calls_whose_destructors_panic_are_each_reported_and_close_succeeds() {
    // One drained into the ready queue, one still in the injection queue, one
    // cancelled (its closure is dropped at close too): three panicking
    // destructors in one close, which used to escape it (and abort: two
    // panics in one unwind).
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    let (a, b, c) = (
        PanicsOnDrop("drained"),
        PanicsOnDrop("cancelled"),
        PanicsOnDrop("queued"),
    );
    let door = lp.loop_handle();
    let line = line!() + 1;
    let first = door.call_soon_threadsafe(move || drop(a)).unwrap();
    let second = door.call_soon_threadsafe(move || drop(b)).unwrap();
    assert!(second.cancel());
    lp.call_soon(|| {}).unwrap(); // drains both
    door.call_soon_threadsafe(move || drop(c)).unwrap();
    lp.close().unwrap();
    let got: Vec<(String, String)> = seen
        .borrow()
        .iter()
        .map(|c| (c.message.clone(), c.exception.as_ref().unwrap().to_string()))
        .collect();
    let errors: Vec<&str> = got.iter().map(|(_, e)| e.as_str()).collect();
    assert_eq!(
        errors,
        [
            "panicked: drained dropped",
            "panicked: cancelled dropped",
            "panicked: queued dropped"
        ]
    );
    assert!(
        got[0].0.starts_with(
            "Exception ignored in the destructor of the call_soon_threadsafe callback "
        ),
        "{got:?}"
    );
    assert!(
        got[0].0.ends_with(&format!(
            "pending_threadsafe_calls_whose_destructors_panic_are_each_reported_and_close_succeeds::{{{{closure}}}} \
             at tests/threadsafe.rs:{line}, dropped as the event loop closed"
        )),
        "{got:?}"
    );
    assert_eq!(first.status(), CallStatus::Dropped);
}

/// The injection queue's block pool gives its memory back: trimmed to a
/// small reserve once a burst is drained, all of it at `close()` although
/// a `LoopHandle` clone is still alive. (Kept for as long as any handle
/// lived, a burst of 10M posts left 355 MiB resident.)
#[test]
fn the_queues_block_pool_is_trimmed_after_a_burst_and_freed_at_close() {
    const POSTS: usize = 100_000; // about 3,200 blocks
    let lp = EventLoop::with_virtual_clock().unwrap();
    let door = lp.loop_handle();
    let ran = Arc::new(AtomicUsize::new(0));
    let (d, r) = (door.clone(), ran.clone());
    thread::spawn(move || {
        for _ in 0..POSTS {
            let r = r.clone();
            d.call_soon_threadsafe(move || {
                r.fetch_add(1, Ordering::Relaxed);
            })
            .unwrap();
        }
    })
    .join()
    .unwrap();
    // The burst runs: the blocks it leaves behind are pooled for reuse.
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(ran.load(Ordering::Relaxed), POSTS);
    let reserve = aioloop::LoopHandle::INJECTION_POOL_RESERVE_BYTES;
    let peak = door.injection_pool_bytes();
    assert!(peak > 10 * reserve, "pooled during the burst: {peak} bytes");
    // The next look at the queue finds it empty: the burst is over.
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    let drained = door.injection_pool_bytes();
    assert!(
        drained <= reserve,
        "trimmed to the reserve after the drain: {drained} bytes, reserve {reserve}"
    );
    // Posts reuse the reserve and the pool stays bounded.
    let d = door.clone();
    thread::spawn(move || {
        for _ in 0..1_000 {
            d.call_soon_threadsafe(|| {}).unwrap();
        }
    })
    .join()
    .unwrap();
    lp.call_soon(stopper(&lp)).unwrap();
    lp.run_forever().unwrap();
    assert!(door.injection_pool_bytes() <= reserve);
    // Closed, with `door` (and a clone on another thread) still alive.
    let other = door.clone();
    let holder = thread::spawn(move || {
        let _keep = other;
        thread::park();
    });
    lp.close().unwrap();
    assert_eq!(door.injection_pool_bytes(), 0, "all of it at close");
    drop(lp);
    assert_eq!(door.injection_pool_bytes(), 0);
    holder.thread().unpark();
    holder.join().unwrap();
}
