//! asyncio's queues (`Lib/asyncio/queues.py`, 3.13), behaviour by behaviour.
//!
//! Where a test pins down an asyncio behaviour that is not obvious, the
//! comment gives what CPython 3.11 printed for the same scenario (shutdown
//! follows 3.13's source, as 3.11 has none).

mod util;

use std::future::{poll_fn, Future as _};
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use aioloop::queue::{LifoQueue, PriorityQueue, PutError, Queue, QueueError};
use aioloop::sync::Event;
use aioloop::{create_task, sleep, wait_for, CancelledError, Error, ErrorKind, EventLoop, Task};
use util::{run, secs, Recorder};

/// Lets every task that can run, run (the virtual clock makes it instant).
async fn settle() {
    sleep(secs(1)).await.unwrap();
}

/// The task's result once everything runnable ran: a test whose task
/// would wait for ever fails here instead of hanging the loop.
async fn finished<T: Clone + 'static>(t: Task<T>) -> T {
    settle().await;
    assert!(t.done(), "the task is still waiting");
    t.await.unwrap()
}

/// A task that gets one item from `q` and records `(name, result)`.
fn getter(q: &Queue<u32>, name: &'static str, rec: &Recorder<String>) -> Task<()> {
    let (q, rec) = (q.clone(), rec.clone());
    create_task(async move {
        let got = q.get().await;
        rec.push(format!("{name} {got:?}"));
        got?;
        Ok(())
    })
    .unwrap()
}

/// A task that puts `x` into `q` and records `(x, result)`.
fn putter(q: &Queue<u32>, x: u32, rec: &Recorder<String>) -> Task<()> {
    let (q, rec) = (q.clone(), rec.clone());
    create_task(async move {
        let res = q.put(x).await.map_err(PutError::into_parts);
        rec.push(format!("put {x} {res:?}"));
        res.map_err(|(kind, _)| kind)?;
        Ok(())
    })
    .unwrap()
}

#[test]
fn fifo_lifo_and_priority_queues_serve_in_their_order() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    run(&lp, async {
        let fifo = Queue::<u32>::new(0);
        let lifo = LifoQueue::new(0);
        let prio = PriorityQueue::new(0);
        for x in [3, 1, 4, 1, 5] {
            fifo.put(x).await?;
            lifo.put(x).await?;
            prio.put(x).await?;
        }
        let (mut f, mut l, mut p) = (vec![], vec![], vec![]);
        for _ in 0..5 {
            f.push(fifo.get().await?);
            l.push(lifo.get().await?);
            p.push(prio.get().await?);
        }
        assert_eq!(f, [3, 1, 4, 1, 5]);
        assert_eq!(l, [5, 1, 4, 1, 3]);
        assert_eq!(p, [1, 1, 3, 4, 5]);
        assert!(fifo.empty() && lifo.empty() && prio.empty());
        Ok::<_, Error>(())
    });
}

#[test]
fn put_waits_while_full_and_a_get_lets_it_in() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    run(&lp, {
        let rec = rec.clone();
        async move {
            let q = Queue::<u32>::new(2);
            assert_eq!(q.maxsize(), 2);
            let producer = {
                let (q, rec) = (q.clone(), rec.clone());
                create_task(async move {
                    for x in 1..=3 {
                        q.put(x).await?;
                        rec.push(format!("put {x}"));
                    }
                    Ok::<_, Error>(())
                })
                .unwrap()
            };
            settle().await;
            assert_eq!(rec.take(), ["put 1", "put 2"]);
            assert!(q.full());
            assert_eq!(
                format!("{q:?}"),
                "<Queue maxsize=2 qsize=2 _putters[1] tasks=2>"
            );
            assert_eq!(q.get().await?, 1);
            settle().await;
            assert_eq!(rec.take(), ["put 3"]);
            assert!(producer.done());
            assert_eq!((q.get_nowait()?, q.get_nowait()?), (2, 3));
            Ok::<_, Error>(())
        }
    });
}

#[test]
fn waiting_getters_are_served_in_the_order_they_started_waiting() {
    // asyncio 3.11: getters 0, 1, 2 then put 'a', 'b', 'c' →
    // [(0, 'a'), (1, 'b'), (2, 'c')]
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    run(&lp, {
        let rec = rec.clone();
        async move {
            let q = Queue::<u32>::new(0);
            let tasks: Vec<_> = ["g0", "g1", "g2"]
                .into_iter()
                .map(|n| getter(&q, n, &rec))
                .collect();
            settle().await;
            assert_eq!(format!("{q:?}"), "<Queue maxsize=0 _getters[3]>");
            for x in [10, 11, 12] {
                q.put_nowait(x).unwrap();
            }
            for t in tasks {
                finished(t).await;
            }
            Ok::<_, Error>(())
        }
    });
    assert_eq!(rec.take(), ["g0 Ok(10)", "g1 Ok(11)", "g2 Ok(12)"]);
}

#[test]
fn waiting_putters_are_served_in_the_order_they_started_waiting() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    run(&lp, {
        let rec = rec.clone();
        async move {
            let q = Queue::<u32>::new(1);
            q.put_nowait(0).unwrap();
            let tasks: Vec<_> = [1, 2, 3].map(|x| putter(&q, x, &rec)).into();
            settle().await;
            let mut got = vec![];
            for _ in 0..4 {
                got.push(q.get().await?);
                settle().await;
            }
            assert_eq!(got, [0, 1, 2, 3]);
            for t in tasks {
                finished(t).await;
            }
            Ok::<_, Error>(())
        }
    });
    assert_eq!(rec.take(), ["put 1 Ok(())", "put 2 Ok(())", "put 3 Ok(())"]);
}

#[test]
fn nowait_operations_fail_with_asyncios_exceptions_and_keep_the_item() {
    let q = Queue::<String>::new(1);
    assert_eq!(q.get_nowait(), Err(QueueError::Empty));
    q.put_nowait("a".into()).unwrap();
    let err = q.put_nowait("b".into()).unwrap_err();
    assert_eq!(err.kind(), &QueueError::Full);
    assert_eq!(
        format!("{err} {err:?}"),
        "QueueFull PutError { kind: Full, .. }"
    );
    assert_eq!(err.into_inner(), "b", "the refused item comes back");
    assert_eq!(QueueError::Empty.to_string(), "QueueEmpty");
    assert_eq!(QueueError::ShutDown.to_string(), "QueueShutDown");
    assert_eq!(q.qsize(), 1);
    assert_eq!(q.get_nowait().unwrap(), "a");
}

#[test]
fn join_waits_for_a_task_done_per_item_and_too_many_calls_are_a_value_error() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    run(&lp, {
        let rec = rec.clone();
        async move {
            let q = Queue::<u32>::new(0);
            q.join().await?; // nothing unfinished: at once
            for x in [1, 2] {
                q.put_nowait(x).unwrap();
            }
            let joiner = {
                let (q, rec) = (q.clone(), rec.clone());
                create_task(async move {
                    q.join().await?;
                    rec.push(format!("joined at {}", util::now()));
                    Ok::<_, Error>(())
                })
                .unwrap()
            };
            q.get().await?;
            q.get().await?;
            settle().await;
            q.task_done()?;
            assert_eq!(format!("{q:?}"), "<Queue maxsize=0 tasks=1>");
            settle().await;
            assert!(rec.take().is_empty(), "one item is still unfinished");
            q.task_done()?;
            finished(joiner).await;
            assert_eq!(q.task_done(), Err(QueueError::TaskDoneTooManyTimes));
            assert_eq!(
                QueueError::TaskDoneTooManyTimes.to_string(),
                "ValueError: task_done() called too many times"
            );
            Ok::<_, Error>(())
        }
    });
    assert_eq!(rec.take(), ["joined at 2"]);
}

#[test]
fn a_released_join_returns_even_if_an_item_is_put_before_it_runs() {
    // asyncio 3.11 (`_finished` is an Event): get, task_done, put_nowait(2)
    // in one step → the joiner still returns, seeing qsize 1.
    let lp = EventLoop::with_virtual_clock().unwrap();
    run(&lp, async {
        let q = Queue::<u32>::new(0);
        q.put_nowait(1).unwrap();
        let joiner = {
            let q = q.clone();
            create_task(async move {
                q.join().await?;
                Ok(q.qsize())
            })
            .unwrap()
        };
        settle().await;
        q.get_nowait()?;
        q.task_done()?;
        q.put_nowait(2).unwrap();
        assert_eq!(finished(joiner).await, 1);
        Ok::<_, Error>(())
    });
}

#[test]
fn shutdown_lets_gets_drain_the_queue_then_fails_them_and_fails_every_put() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    run(&lp, async {
        let q = Queue::<u32>::new(0);
        q.put_nowait(1).unwrap();
        q.put_nowait(2).unwrap();
        assert!(q.shutdown(false).is_empty());
        assert_eq!(
            format!("{q:?}"),
            "<Queue maxsize=0 qsize=2 tasks=2 shutdown>"
        );
        let err = q.put(3).await.unwrap_err();
        assert_eq!((err.kind(), err.item()), (&QueueError::ShutDown, &3));
        assert_eq!(
            q.put_nowait(3).unwrap_err().into_parts(),
            (QueueError::ShutDown, 3)
        );
        assert_eq!(q.get().await?, 1);
        assert_eq!(q.get_nowait()?, 2);
        assert_eq!(q.get().await, Err(QueueError::ShutDown));
        assert_eq!(q.get_nowait(), Err(QueueError::ShutDown));
        Ok::<_, Error>(())
    });
}

#[test]
fn immediate_shutdown_hands_back_the_items_counts_them_done_and_releases_join() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    run(&lp, {
        let rec = rec.clone();
        async move {
            let q = Queue::<u32>::new(0);
            for x in [1, 2, 3] {
                q.put_nowait(x).unwrap();
            }
            q.get_nowait()?; // taken, never task_done: still unfinished
            let joiner = {
                let (q, rec) = (q.clone(), rec.clone());
                create_task(async move {
                    let r = q.join().await;
                    rec.push(format!("join {r:?}"));
                    Ok(r?)
                })
                .unwrap()
            };
            settle().await;
            assert_eq!(q.shutdown(true), [2, 3]);
            assert!(q.empty());
            assert_eq!(q.get().await, Err(QueueError::ShutDown));
            settle().await;
            assert!(
                rec.take().is_empty(),
                "item 1 was taken and not marked done"
            );
            q.task_done()?;
            finished(joiner).await;
            assert_eq!(rec.take(), ["join Ok(())"]);
            Ok::<_, Error>(())
        }
    });
}

#[test]
fn immediate_shutdown_with_nothing_taken_releases_join_at_once() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    run(&lp, async {
        let q = Queue::<u32>::new(0);
        q.put_nowait(7).unwrap();
        let joiner = {
            let q = q.clone();
            create_task(async move {
                q.join().await?;
                Ok(())
            })
            .unwrap()
        };
        settle().await;
        assert!(!joiner.done());
        assert_eq!(q.shutdown(true), [7]);
        finished(joiner).await;
        assert_eq!(format!("{q:?}"), "<Queue maxsize=0 shutdown>");
        Ok::<_, Error>(())
    });
}

#[test]
fn shutdown_wakes_blocked_getters_and_putters_with_queue_shut_down() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    run(&lp, {
        let rec = rec.clone();
        async move {
            let empty = Queue::<u32>::new(0);
            let full = Queue::<u32>::new(1);
            full.put_nowait(0).unwrap();
            let g = [getter(&empty, "g0", &rec), getter(&empty, "g1", &rec)];
            let p = [putter(&full, 1, &rec), putter(&full, 2, &rec)];
            settle().await;
            assert!(rec.take().is_empty());
            empty.shutdown(false);
            full.shutdown(false);
            settle().await;
            for t in g.into_iter().chain(p) {
                assert!(t.done(), "woken by the shutdown");
                let e = t.await.unwrap_err();
                assert!(
                    matches!(e.kind(), ErrorKind::Queue(QueueError::ShutDown)),
                    "{e:?}"
                );
            }
            assert_eq!(full.get_nowait()?, 0, "non-immediate: the item stays");
            Ok::<_, Error>(())
        }
    });
    assert_eq!(
        rec.take(),
        [
            "g0 Err(ShutDown)",
            "g1 Err(ShutDown)",
            "put 1 Err((ShutDown, 1))",
            "put 2 Err((ShutDown, 2))"
        ]
    );
}

#[test]
fn a_getter_cancelled_while_waiting_leaves_no_trace_and_takes_no_item() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    run(&lp, {
        let rec = rec.clone();
        async move {
            let q = Queue::<u32>::new(0);
            let a = getter(&q, "a", &rec);
            settle().await;
            assert!(a.cancel());
            settle().await;
            assert!(
                a.cancelled(),
                "`?` on QueueError::Cancelled ends the task cancelled"
            );
            assert_eq!(format!("{q:?}"), "<Queue maxsize=0>", "no getter left");
            q.put_nowait(5).unwrap();
            settle().await;
            assert_eq!(q.qsize(), 1, "nobody took the item");
            // A timeout cancels the same way.
            let q2 = q.clone();
            q.get_nowait()?;
            let r = wait_for(async move { Ok(q2.get().await?) }, secs(3)).await;
            assert!(matches!(r, Err(ref e) if e.is_timeout()), "{r:?}");
            assert_eq!(format!("{q:?}"), "<Queue maxsize=0 tasks=1>");
            Ok::<_, Error>(())
        }
    });
    assert!(
        rec.take()[0].starts_with("a Err(Cancelled("),
        "the get itself returned the cancellation"
    );
}

#[test]
fn a_getter_woken_then_cancelled_before_it_runs_passes_the_item_to_the_next() {
    // asyncio 3.11: getters A, B; put_nowait(1); A.cancel() in the same
    // step → B gets 1, A is cancelled, the queue is empty.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    run(&lp, {
        let rec = rec.clone();
        async move {
            let q = Queue::<u32>::new(0);
            let a = getter(&q, "A", &rec);
            let b = getter(&q, "B", &rec);
            settle().await;
            q.put_nowait(1).unwrap();
            assert!(a.cancel());
            finished(b).await;
            assert!(a.cancelled());
            assert!(q.empty());
            assert_eq!(format!("{q:?}"), "<Queue maxsize=0 tasks=1>");
            Ok::<_, Error>(())
        }
    });
    let log = rec.take();
    assert_eq!(log.len(), 2);
    assert!(log[0].starts_with("A Err(Cancelled("), "{log:?}");
    assert_eq!(log[1], "B Ok(1)");
}

#[test]
fn a_putter_woken_then_cancelled_before_it_runs_passes_the_slot_to_the_next() {
    // asyncio 3.11: maxsize 1 holding 0; putters 1, 2, 3; get_nowait();
    // cancel putter 1 in the same step → 2 is put, 3 still waits.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    run(&lp, {
        let rec = rec.clone();
        async move {
            let q = Queue::<u32>::new(1);
            q.put_nowait(0).unwrap();
            let p: Vec<_> = [1, 2, 3].map(|x| putter(&q, x, &rec)).into();
            settle().await;
            assert_eq!(q.get_nowait()?, 0);
            assert!(p[0].cancel());
            settle().await;
            assert!(p[0].cancelled());
            assert_eq!(
                format!("{q:?}"),
                "<Queue maxsize=1 qsize=1 _putters[1] tasks=2>"
            );
            assert_eq!(q.get_nowait()?, 2);
            settle().await;
            assert_eq!(q.get_nowait()?, 3);
            Ok::<_, Error>(())
        }
    });
    let log = rec.take();
    assert!(log[0].starts_with("put 1 Err((Cancelled("), "{log:?}");
    assert!(
        log[0].ends_with(", 1))"),
        "the cancelled put hands its item back"
    );
    assert_eq!(log[1..], ["put 2 Ok(())", "put 3 Ok(())"]);
}

#[test]
fn a_woken_getter_whose_future_is_dropped_passes_the_item_on() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    run(&lp, {
        let rec = rec.clone();
        async move {
            let q = Queue::<u32>::new(0);
            let stop = Event::new();
            // A races a get against an event, select-style: whichever is
            // ready first wins and the other future is dropped.
            let a = {
                let (q, stop, rec) = (q.clone(), stop.clone(), rec.clone());
                create_task(async move {
                    let mut stopped = pin!(stop.wait());
                    let mut get = pin!(q.get());
                    let r = poll_fn(|cx| {
                        if stopped.as_mut().poll(cx).is_ready() {
                            return Poll::Ready(None);
                        }
                        get.as_mut().poll(cx).map(Some)
                    })
                    .await;
                    rec.push(format!("A {r:?}"));
                    Ok::<_, Error>(())
                })
                .unwrap()
            };
            let b = getter(&q, "B", &rec);
            settle().await;
            // Both in one step: A is woken for the item, but the event wins
            // and its get is dropped unused.
            q.put_nowait(1).unwrap();
            stop.set();
            finished(a).await;
            finished(b).await;
            assert!(q.empty());
            Ok::<_, Error>(())
        }
    });
    assert_eq!(rec.take(), ["A None", "B Ok(1)"]);
}

#[test]
fn a_get_nowait_between_wake_and_run_takes_the_item_and_the_woken_getter_waits_again() {
    // asyncio 3.11: getters A, B; put_nowait(1); get_nowait() → 1; A runs,
    // finds the queue empty and waits again at the back: put 2 goes to B,
    // put 3 to A.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    run(&lp, {
        let rec = rec.clone();
        async move {
            let q = Queue::<u32>::new(0);
            let a = getter(&q, "A", &rec);
            let b = getter(&q, "B", &rec);
            settle().await;
            q.put_nowait(1).unwrap();
            assert_eq!(q.get_nowait()?, 1, "barging is allowed, as in asyncio");
            settle().await;
            assert!(rec.take().is_empty());
            assert_eq!(format!("{q:?}"), "<Queue maxsize=0 _getters[2] tasks=1>");
            q.put_nowait(2).unwrap();
            settle().await;
            q.put_nowait(3).unwrap();
            finished(a).await;
            finished(b).await;
            Ok::<_, Error>(())
        }
    });
    assert_eq!(rec.take(), ["B Ok(2)", "A Ok(3)"]);
}

#[test]
fn a_new_get_on_a_non_empty_queue_does_not_wait_for_a_woken_getter() {
    // asyncio 3.11: getter A waits; put_nowait(1); `await q.get()` in the
    // same step returns 1 at once; A waits again.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let rec = Recorder::new();
    run(&lp, {
        let rec = rec.clone();
        async move {
            let q = Queue::<u32>::new(0);
            let a = getter(&q, "A", &rec);
            settle().await;
            q.put_nowait(1).unwrap();
            assert_eq!(q.get().await?, 1);
            settle().await;
            assert_eq!(format!("{q:?}"), "<Queue maxsize=0 _getters[1] tasks=1>");
            q.put_nowait(2).unwrap();
            finished(a).await;
            Ok::<_, Error>(())
        }
    });
    assert_eq!(rec.take(), ["A Ok(2)"]);
}

#[test]
fn cancelled_is_reported_through_exception_so_question_mark_ends_the_task_cancelled() {
    let c = CancelledError::new(Some("bye".into()));
    let e = QueueError::from(c.clone());
    assert_eq!(e, QueueError::Cancelled(c.clone()));
    assert_eq!(e.to_string(), "bye");
    let e = Error::from(e);
    assert!(matches!(e.kind(), ErrorKind::Cancelled(_)), "{e:?}");
    assert_eq!(e.as_cancelled(), Some(&c));
    assert_eq!(Error::from(QueueError::Full).as_cancelled(), None);
    let lp = EventLoop::with_virtual_clock().unwrap();
    run(&lp, async {
        let q = Queue::<u32>::new(0);
        let t = {
            let q = q.clone();
            create_task(async move {
                let x = q.get().await?;
                Ok::<_, Error>(x)
            })
            .unwrap()
        };
        sleep(Duration::ZERO).await.unwrap();
        t.cancel_with("bye");
        let e = (&t).await.unwrap_err();
        assert_eq!(e.as_cancelled().and_then(|c| c.message()), Some("bye"));
        assert!(t.cancelled());
        Ok::<_, Error>(())
    });
}
