//! Queues and locks against tokio's current-thread runtime, in the same
//! run.
//!
//! Rows:
//! - `queue_1m/aioloop_queue`: a producer task and a consumer task pass
//!   1,000,000 `u64`s through a bounded [`aioloop::queue::Queue`] of
//!   capacity [`CAPACITY`]; ns per item;
//! - `queue_1m/tokio_mpsc_local` / `tokio_mpsc_spawn`: the same through
//!   `tokio::sync::mpsc::channel(CAPACITY)`, the two tasks spawned with
//!   `spawn_local` (`LocalSet`) / `tokio::spawn`.
//!
//! - `lock_100x1000/aioloop_contended` / `tokio_mutex_contended`: 100 tasks
//!   each take one lock 1,000 times (100,000 acquisitions), holding it
//!   across one yield, so the other 99 queue behind and every acquisition
//!   is a FIFO hand-off from a releasing task to a woken one; ns per
//!   acquisition;
//! - `lock_100x1000/aioloop_uncontended` / `tokio_mutex_uncontended`: the
//!   same with no yield while holding: the fast path.
//!
//! Both runtimes yield with the same hand-written future (wake self, return
//! `Pending` once), so the lock rows compare the locks, not the runtimes'
//! `yield` primitives (tokio's `yield_now` also polls its I/O driver).
//!
//! Each benchmark group is one function taking `&mut Criterion`; `main`
//! calls them in turn.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use aioloop::queue::Queue;
use aioloop::sync::Lock;
use aioloop::EventLoop;
use criterion::{Criterion, Throughput};

/// Items passed per iteration.
const ITEMS: u64 = 1_000_000;
/// Queue / channel capacity, the same for both.
const CAPACITY: usize = 128;

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn queue_1m(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue_1m");
    g.throughput(Throughput::Elements(ITEMS))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let lp = EventLoop::new().unwrap();
    g.bench_function("aioloop_queue", |b| {
        b.iter(|| {
            let sum = lp
                .run_until_complete(async {
                    let q = Queue::<u64>::new(CAPACITY);
                    let consumer = {
                        let q = q.clone();
                        aioloop::create_task(async move {
                            let mut sum = 0u64;
                            for _ in 0..ITEMS {
                                sum += q.get().await.unwrap();
                            }
                            sum
                        })
                        .unwrap()
                    };
                    for i in 0..ITEMS {
                        q.put(i).await.unwrap();
                    }
                    consumer.await.unwrap()
                })
                .unwrap();
            assert_eq!(sum, ITEMS * (ITEMS - 1) / 2);
        })
    });
    let rt = tokio_rt();
    g.bench_function("tokio_mpsc_local", |b| {
        b.iter(|| {
            let local = tokio::task::LocalSet::new();
            let sum = local.block_on(&rt, async {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(CAPACITY);
                let consumer = tokio::task::spawn_local(async move {
                    let mut sum = 0u64;
                    for _ in 0..ITEMS {
                        sum += rx.recv().await.unwrap();
                    }
                    sum
                });
                for i in 0..ITEMS {
                    tx.send(i).await.unwrap();
                }
                consumer.await.unwrap()
            });
            assert_eq!(sum, ITEMS * (ITEMS - 1) / 2);
        })
    });
    g.bench_function("tokio_mpsc_spawn", |b| {
        b.iter(|| {
            let sum = rt.block_on(async {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<u64>(CAPACITY);
                let consumer = tokio::spawn(async move {
                    let mut sum = 0u64;
                    for _ in 0..ITEMS {
                        sum += rx.recv().await.unwrap();
                    }
                    sum
                });
                let producer = tokio::spawn(async move {
                    for i in 0..ITEMS {
                        tx.send(i).await.unwrap();
                    }
                });
                producer.await.unwrap();
                consumer.await.unwrap()
            });
            assert_eq!(sum, ITEMS * (ITEMS - 1) / 2);
        })
    });
    g.finish();
}

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
    queue_1m(&mut c);
    lock_100x1000(&mut c);
    c.final_summary();
    eprintln!("sync bench took {:.0?}", start.elapsed());
}
