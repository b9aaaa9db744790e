//! The thread-safe door against tokio's current-thread runtime, same run.
//!
//! Criterion rows (ns per item = time / 1,000,000):
//! - `post_2x500k/aioloop_call_soon_threadsafe`: two threads each post
//!   500,000 callbacks; the loop runs them all;
//! - `post_2x500k/tokio_handle_spawn`: two threads each `Handle::spawn`
//!   500,000 tiny tasks onto a current-thread runtime;
//! - `post_2x500k/tokio_unbounded_mpsc`: two threads each send 500,000
//!   messages into one task through an unbounded mpsc.
//!
//! Printed before the rows (not criterion rows):
//! - idle wake-up latency: the loop sleeps in its poll with nothing to do;
//!   another thread posts a callback that records the time from the post
//!   to its run; 10,000 samples, p50 and p99, aioloop then tokio
//!   (`Handle::spawn` onto a runtime parked in `block_on`);
//! - reactor wakes per 1,000 posts in a burst: the coalescing at work.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use aioloop::{get_running_loop, EventLoop};
use criterion::{Criterion, Throughput};

const PER_THREAD: usize = 500_000;
const THREADS: usize = 2;
const SAMPLES: usize = 10_000;

fn post_2x500k(c: &mut Criterion) {
    let mut g = c.benchmark_group("post_2x500k");
    g.throughput(Throughput::Elements((THREADS * PER_THREAD) as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let lp = EventLoop::new().unwrap();
    g.bench_function("aioloop_call_soon_threadsafe", |b| {
        b.iter(|| {
            // Counted on the loop's thread: the posted closure captures
            // nothing (like the u32 of the mpsc row), so the row measures
            // the door, not a shared counter bouncing between threads.
            thread_local! {
                static RAN: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
            }
            RAN.with(|r| r.set(0));
            let producers: Vec<_> = (0..THREADS)
                .map(|_| {
                    let door = lp.loop_handle();
                    std::thread::spawn(move || {
                        for _ in 0..PER_THREAD {
                            door.call_soon_threadsafe(|| {
                                let n = RAN.with(|r| {
                                    r.set(r.get() + 1);
                                    r.get()
                                });
                                if n == THREADS * PER_THREAD {
                                    get_running_loop().unwrap().stop();
                                }
                            })
                            .unwrap();
                        }
                    })
                })
                .collect();
            lp.run_forever().unwrap();
            for p in producers {
                p.join().unwrap();
            }
        })
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    g.bench_function("tokio_handle_spawn", |b| {
        b.iter(|| {
            let done = Arc::new(AtomicUsize::new(0));
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
            let producers: Vec<_> = (0..THREADS)
                .map(|_| {
                    let h = rt.handle().clone();
                    let (done, tx) = (done.clone(), tx.clone());
                    std::thread::spawn(move || {
                        for _ in 0..PER_THREAD {
                            let (done, tx) = (done.clone(), tx.clone());
                            h.spawn(async move {
                                if done.fetch_add(1, Ordering::Relaxed) + 1 == THREADS * PER_THREAD
                                {
                                    let _ = tx.lock().unwrap().take().unwrap().send(());
                                }
                            });
                        }
                    })
                })
                .collect();
            rt.block_on(async { rx.await.unwrap() });
            for p in producers {
                p.join().unwrap();
            }
        })
    });
    g.bench_function("tokio_unbounded_mpsc", |b| {
        b.iter(|| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
            let producers: Vec<_> = (0..THREADS)
                .map(|_| {
                    let tx = tx.clone();
                    std::thread::spawn(move || {
                        for i in 0..PER_THREAD {
                            tx.send(i as u32).unwrap();
                        }
                    })
                })
                .collect();
            drop(tx);
            rt.block_on(async {
                let mut n = 0;
                while rx.recv().await.is_some() {
                    n += 1;
                }
                assert_eq!(n, THREADS * PER_THREAD);
            });
            for p in producers {
                p.join().unwrap();
            }
        })
    });
    g.finish();
}

fn percentiles(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], v[v.len() * 99 / 100])
}

/// aioloop: the loop idles in epoll_wait; a thread posts, the callback
/// measures, and reports back before the next sample.
fn aioloop_latency() -> (Duration, Duration) {
    let lp = EventLoop::new().unwrap();
    let door = lp.loop_handle();
    let sampler = std::thread::spawn(move || {
        let (tx, rx) = mpsc::channel::<Duration>();
        let mut samples = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            // Let the loop go back to sleep in its poll.
            std::thread::sleep(Duration::from_micros(50));
            let tx = tx.clone();
            let posted = Instant::now();
            door.call_soon_threadsafe(move || tx.send(posted.elapsed()).unwrap())
                .unwrap();
            samples.push(rx.recv().unwrap());
        }
        door.stop().unwrap();
        samples
    });
    lp.run_forever().unwrap();
    percentiles(sampler.join().unwrap())
}

fn main() {
    let start = Instant::now();
    let (p50, p99) = aioloop_latency();
    println!("latency/idle_wakeup aioloop: p50 {p50:?} p99 {p99:?}");
    let (p50, p99) = tokio_latency();
    println!("latency/idle_wakeup tokio:   p50 {p50:?} p99 {p99:?}");
    println!(
        "coalescing: {} reactor wakes per 1,000 posts in a burst",
        burst_wakes()
    );
    let mut c = Criterion::default().configure_from_args();
    post_2x500k(&mut c);
    c.final_summary();
    eprintln!("threadsafe bench took {:.0?}", start.elapsed());
}

fn tokio_latency() -> (Duration, Duration) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let h = rt.handle().clone();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let sampler = std::thread::spawn(move || {
        let (tx, rx) = mpsc::channel::<Duration>();
        let mut samples = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            std::thread::sleep(Duration::from_micros(50));
            let tx = tx.clone();
            let posted = Instant::now();
            h.spawn(async move { tx.send(posted.elapsed()).unwrap() });
            samples.push(rx.recv().unwrap());
        }
        done_tx.send(()).unwrap();
        samples
    });
    rt.block_on(async { done_rx.await.unwrap() });
    percentiles(sampler.join().unwrap())
}

fn burst_wakes() -> u64 {
    let lp = EventLoop::new().unwrap();
    let door = lp.loop_handle();
    let before = door.reactor_wakes();
    let d = door.clone();
    std::thread::spawn(move || {
        for _ in 0..1000 {
            d.call_soon_threadsafe(|| {}).unwrap();
        }
        d.stop().unwrap();
    })
    .join()
    .unwrap();
    lp.run_forever().unwrap();
    door.reactor_wakes() - before
}
