//! Lock hand-off against tokio's `Mutex` on its current-thread runtime, in
//! the same run.
//!
//! Rows (`lock_100x1000`): 100 tasks each take one lock 1,000 times
//! (100,000 acquisitions in all); ns per acquisition.
//! - `aioloop_contended` / `tokio_mutex_contended`: each holds the lock
//!   across one yield, so the other 99 queue behind it and every
//!   acquisition is a FIFO hand-off from a releasing task to a woken one;
//! - `aioloop_uncontended` / `tokio_mutex_uncontended`: no yield while
//!   holding: the fast path, lock and unlock with nobody waiting.
//!
//! Both runtimes yield with the same hand-written future (wake self, return
//! `Pending` once), so the rows compare the locks, not the runtimes'
//! `yield` primitives (tokio's `yield_now` also polls its I/O driver).

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use aioloop::sync::Lock;
use aioloop::EventLoop;
use criterion::{Criterion, Throughput};

const TASKS: usize = 100;
const PER_TASK: usize = 1_000;

/// Returns `Pending` once after waking its own task.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn lock_100x1000(c: &mut Criterion) {
    let mut g = c.benchmark_group("lock_100x1000");
    g.throughput(Throughput::Elements((TASKS * PER_TASK) as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let lp = EventLoop::new().unwrap();
    for contended in [true, false] {
        let name = if contended {
            "aioloop_contended"
        } else {
            "aioloop_uncontended"
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                lp.run_until_complete(async move {
                    let lock = Lock::new();
                    let tasks: Vec<_> = (0..TASKS)
                        .map(|_| {
                            let lock = lock.clone();
                            aioloop::create_task(async move {
                                for _ in 0..PER_TASK {
                                    let held = lock.acquire().await.unwrap();
                                    if contended {
                                        YieldOnce(false).await;
                                    }
                                    drop(held);
                                }
                            })
                            .unwrap()
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                })
                .unwrap()
                .unwrap()
            })
        });
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for contended in [true, false] {
        let name = if contended {
            "tokio_mutex_contended"
        } else {
            "tokio_mutex_uncontended"
        };
        g.bench_function(name, |b| {
            b.iter(|| {
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, async move {
                    let lock = Rc::new(tokio::sync::Mutex::new(()));
                    let tasks: Vec<_> = (0..TASKS)
                        .map(|_| {
                            let lock = lock.clone();
                            tokio::task::spawn_local(async move {
                                for _ in 0..PER_TASK {
                                    let held = lock.lock().await;
                                    if contended {
                                        YieldOnce(false).await;
                                    }
                                    drop(held);
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                })
            })
        });
    }
    g.finish();
}

fn main() {
    let start = Instant::now();
    let mut c = Criterion::default().configure_from_args();
    lock_100x1000(&mut c);
    c.final_summary();
    eprintln!("lock bench took {:.0?}", start.elapsed());
}
