//! Queues (and, later, locks) against tokio's current-thread runtime, in the
//! same run.
//!
//! Rows:
//! - `queue_1m/aioloop_queue`: a producer task and a consumer task pass
//!   1,000,000 `u64`s through a bounded [`aioloop::queue::Queue`] of
//!   capacity [`CAPACITY`]; ns per item;
//! - `queue_1m/tokio_mpsc_local` / `tokio_mpsc_spawn`: the same through
//!   `tokio::sync::mpsc::channel(CAPACITY)`, the two tasks spawned with
//!   `spawn_local` (`LocalSet`) / `tokio::spawn`.
//!
//! Each benchmark group is one function taking `&mut Criterion`; `main`
//! calls them in turn, so another group (a lock benchmark) is one more
//! function and one more line in `main`.

use std::time::{Duration, Instant};

use aioloop::queue::Queue;
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
                .unwrap()
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

fn main() {
    let start = Instant::now();
    let mut c = Criterion::default().configure_from_args();
    queue_1m(&mut c);
    c.final_summary();
    eprintln!("sync bench took {:.0?}", start.elapsed());
}
