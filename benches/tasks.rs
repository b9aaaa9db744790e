//! Tasks against tokio's current-thread runtime, in the same run.
//!
//! Rows:
//! - `spawn_100k/aioloop`: create 100,000 tasks that each yield once
//!   (`sleep(0)`), then await them all; ns per task;
//! - `spawn_100k/tokio_spawn_local` / `tokio_spawn`: the same with
//!   `spawn_local` (`LocalSet`) / `tokio::spawn`, each task `yield_now`;
//! - `reschedule_1m/aioloop_sleep0` vs `tokio_yield_now`: one task
//!   rescheduling itself 1,000,000 times; ns per step;
//! - `ping_pong_1m/aioloop_future` vs `tokio_oneshot`: two tasks passing a
//!   counter back and forth through a fresh loop `Future` / oneshot channel
//!   per message, 1,000,000 round trips; ns per round trip.
//! - `gather/aioloop_gather/N` vs `gather/aioloop_await_each/N` vs
//!   `gather/tokio_await_each/N`, N = 1,000 and 100,000: create N tasks
//!   that each yield once (`sleep(0)` / `yield_now`), then one
//!   `gather(tasks)` of them all / await each in turn / await each
//!   `JoinHandle` (tokio's current-thread `spawn`); ns per task. The goal
//!   (issue 11): gather within 1.25x of awaiting one by one.
//!
//! Memory (printed before the timings, not a criterion row): resident
//! memory per task with 100,000 tasks parked: `aioloop` on a
//! never-completed loop future, `aioloop_sleep` in `sleep(1 hour)` (the
//! timer, its handle and the wheel's entry included), `tokio` on a watch
//! receiver. Each figure comes from a fresh child process (this binary
//! re-run with `AIOLOOP_MEM_PROBE` set), so the allocator starts clean and
//! nothing else shares the heap.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use aioloop::{gather, sleep, EventLoop, Future};
use criterion::{BenchmarkId, Criterion, Throughput};

const SPAWNED: usize = 100_000;
const STEPS: u64 = 1_000_000;
const PARKED: usize = 100_000;

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn spawn_100k(c: &mut Criterion) {
    let mut g = c.benchmark_group("spawn_100k");
    g.throughput(Throughput::Elements(SPAWNED as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let lp = EventLoop::new().unwrap();
    g.bench_function("aioloop", |b| {
        b.iter(|| {
            lp.run_until_complete(async {
                let mut tasks = Vec::with_capacity(SPAWNED);
                for _ in 0..SPAWNED {
                    tasks.push(
                        aioloop::create_task(async { sleep(Duration::ZERO).await.unwrap() })
                            .unwrap(),
                    );
                }
                for t in tasks {
                    t.await.unwrap();
                }
            })
            .unwrap()
        })
    });
    let rt = tokio_rt();
    g.bench_function("tokio_spawn_local", |b| {
        b.iter(|| {
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async {
                let mut tasks = Vec::with_capacity(SPAWNED);
                for _ in 0..SPAWNED {
                    tasks.push(tokio::task::spawn_local(async {
                        tokio::task::yield_now().await
                    }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            })
        })
    });
    g.bench_function("tokio_spawn", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut tasks = Vec::with_capacity(SPAWNED);
                for _ in 0..SPAWNED {
                    tasks.push(tokio::spawn(async { tokio::task::yield_now().await }));
                }
                for t in tasks {
                    t.await.unwrap();
                }
            })
        })
    });
    g.finish();
}

/// `n` aioloop tasks that each yield once (`sleep(0)`).
fn spawn_sleepers(n: usize) -> Vec<aioloop::Task<()>> {
    (0..n)
        .map(|_| aioloop::create_task(async { sleep(Duration::ZERO).await }).unwrap())
        .collect()
}

/// N tasks, each yielding once, collected by one `gather` or one by one.
fn gather_n(c: &mut Criterion) {
    let mut g = c.benchmark_group("gather");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let lp = EventLoop::new().unwrap();
    let rt = tokio_rt();
    for n in [1_000usize, 100_000] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("aioloop_gather", n), &n, |b, &n| {
            b.iter(|| {
                lp.run_until_complete(async move { gather(spawn_sleepers(n)).await.unwrap() })
                    .unwrap()
            })
        });
        g.bench_with_input(BenchmarkId::new("aioloop_await_each", n), &n, |b, &n| {
            b.iter(|| {
                lp.run_until_complete(async move {
                    for t in spawn_sleepers(n) {
                        t.await.unwrap();
                    }
                })
                .unwrap()
            })
        });
        g.bench_with_input(BenchmarkId::new("tokio_await_each", n), &n, |b, &n| {
            b.iter(|| {
                rt.block_on(async move {
                    let tasks: Vec<_> = (0..n)
                        .map(|_| tokio::spawn(async { tokio::task::yield_now().await }))
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

fn reschedule_1m(c: &mut Criterion) {
    let mut g = c.benchmark_group("reschedule_1m");
    g.throughput(Throughput::Elements(STEPS))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let lp = EventLoop::new().unwrap();
    lp.set_debug(false);
    let steps = || async {
        for _ in 0..STEPS {
            sleep(Duration::ZERO).await.unwrap();
        }
    };
    g.bench_function("aioloop_sleep0", |b| {
        b.iter(|| lp.run_until_complete(steps()).unwrap())
    });
    // Debug mode's hooks compiled out: the baseline for their cost when off.
    g.bench_function("aioloop_sleep0_no_debug_hooks", |b| {
        b.iter(|| lp.run_until_complete_without_debug_hooks(steps()).unwrap())
    });

    let rt = tokio_rt();
    g.bench_function("tokio_yield_now", |b| {
        b.iter(|| {
            rt.block_on(async {
                for _ in 0..STEPS {
                    tokio::task::yield_now().await;
                }
            })
        })
    });
    g.finish();
}

/// `sleep(0)` in debug mode. Run last: debug mode starts the watchdog
/// thread, after which glibc's malloc leaves its single-threaded fast path
/// for the rest of the process (see `benches/callbacks.rs`).
fn reschedule_1m_debug_on(c: &mut Criterion) {
    let mut g = c.benchmark_group("reschedule_1m_debug_on");
    g.throughput(Throughput::Elements(STEPS))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let lp = EventLoop::new().unwrap();
    lp.set_debug(true);
    g.bench_function("aioloop_sleep0", |b| {
        b.iter(|| {
            lp.run_until_complete(async {
                for _ in 0..STEPS {
                    sleep(Duration::ZERO).await.unwrap();
                }
            })
            .unwrap()
        })
    });
    lp.set_debug(false);
    g.finish();
}

fn ping_pong_1m(c: &mut Criterion) {
    let mut g = c.benchmark_group("ping_pong_1m");
    g.throughput(Throughput::Elements(STEPS))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let lp = EventLoop::new().unwrap();
    g.bench_function("aioloop_future", |b| {
        b.iter(|| {
            let l = lp.loop_ref();
            lp.run_until_complete(async move {
                // Each side owns the slot it receives on; the other side
                // completes it and the receiver puts a fresh one in.
                let to_pong: Rc<RefCell<Future<u64>>> = Rc::new(RefCell::new(l.create_future()));
                let to_ping: Rc<RefCell<Future<u64>>> = Rc::new(RefCell::new(l.create_future()));
                let (tp, tq, l2) = (to_pong.clone(), to_ping.clone(), l.clone());
                let pong = aioloop::create_task(async move {
                    loop {
                        let f = tp.borrow().clone();
                        let v = f.await.unwrap();
                        *tp.borrow_mut() = l2.create_future();
                        tq.borrow().set_result(v + 1).unwrap();
                        if v + 1 >= 2 * STEPS - 1 {
                            return;
                        }
                    }
                })
                .unwrap();
                let mut v = 0;
                while v < 2 * STEPS - 1 {
                    let f = to_ping.borrow().clone();
                    to_pong.borrow().set_result(v).unwrap();
                    v = f.await.unwrap();
                    *to_ping.borrow_mut() = l.create_future();
                    v += 1;
                }
                pong.await.unwrap();
            })
            .unwrap()
        })
    });
    let rt = tokio_rt();
    g.bench_function("tokio_oneshot", |b| {
        b.iter(|| {
            use tokio::sync::oneshot::{channel, Sender};
            type Slot = Rc<RefCell<Option<Sender<u64>>>>;
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async {
                // The same shape as the aioloop row: one fresh oneshot per
                // message, the receiver refilling the sender's slot.
                let (tx, mut rx) = channel::<u64>();
                let to_pong: Slot = Rc::new(RefCell::new(Some(tx)));
                let to_ping: Slot = Rc::new(RefCell::new(None));
                let (tp, tq) = (to_pong.clone(), to_ping.clone());
                let pong = tokio::task::spawn_local(async move {
                    loop {
                        let v = rx.await.unwrap();
                        let (ntx, nrx) = channel();
                        *tp.borrow_mut() = Some(ntx);
                        rx = nrx;
                        tq.borrow_mut().take().unwrap().send(v + 1).unwrap();
                        if v + 1 >= 2 * STEPS - 1 {
                            return;
                        }
                    }
                });
                let mut v = 0;
                while v < 2 * STEPS - 1 {
                    let (rtx, rrx) = channel();
                    *to_ping.borrow_mut() = Some(rtx);
                    to_pong.borrow_mut().take().unwrap().send(v).unwrap();
                    v = rrx.await.unwrap() + 1;
                }
                pong.await.unwrap();
            })
        })
    });
    g.finish();
}

fn rss_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// Runs in a child process: parks `PARKED` tasks and prints bytes per task.
fn memory_probe(which: &str) {
    let before = rss_bytes();
    match which {
        "aioloop" => {
            let lp = EventLoop::new().unwrap();
            let never = lp.create_future::<()>();
            for _ in 0..PARKED {
                let f = never.clone();
                lp.create_task(async move {
                    let _ = f.await;
                })
                .unwrap();
            }
            lp.run_until_complete(sleep(Duration::from_millis(1)))
                .unwrap();
            let after = rss_bytes();
            println!("{}", (after - before) / PARKED);
            std::mem::forget(lp); // no teardown: the figure is printed
        }
        "aioloop_sleep" => {
            let lp = EventLoop::new().unwrap();
            for _ in 0..PARKED {
                lp.create_task(async move {
                    let _ = sleep(Duration::from_secs(3600)).await;
                })
                .unwrap();
            }
            lp.run_until_complete(sleep(Duration::from_millis(1)))
                .unwrap();
            let after = rss_bytes();
            println!("{}", (after - before) / PARKED);
            std::mem::forget(lp); // no teardown: the figure is printed
        }
        "tokio" => {
            let rt = tokio_rt();
            let local = tokio::task::LocalSet::new();
            let (_tx, rx) = tokio::sync::watch::channel(());
            for _ in 0..PARKED {
                let mut rx = rx.clone();
                local.spawn_local(async move {
                    let _ = rx.changed().await;
                });
            }
            local.block_on(&rt, async {
                tokio::time::sleep(Duration::from_millis(1)).await
            });
            let after = rss_bytes();
            println!("{}", (after - before) / PARKED);
            std::mem::forget((rt, local));
        }
        other => panic!("unknown probe {other}"),
    }
}

fn memory_report() {
    let exe = std::env::current_exe().unwrap();
    let mut line = String::from("memory/parked_100k (RSS bytes per pending task):");
    for which in ["aioloop", "aioloop_sleep", "tokio"] {
        let out = std::process::Command::new(&exe)
            .env("AIOLOOP_MEM_PROBE", which)
            .output()
            .unwrap();
        let figure = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        line.push_str(&format!(" {which}={figure}"));
    }
    println!("{line}");
}

fn main() {
    if let Ok(which) = std::env::var("AIOLOOP_MEM_PROBE") {
        memory_probe(&which);
        return;
    }
    let start = Instant::now();
    memory_report();
    let mut c = Criterion::default().configure_from_args();
    spawn_100k(&mut c);
    gather_n(&mut c);
    reschedule_1m(&mut c);
    ping_pong_1m(&mut c);
    reschedule_1m_debug_on(&mut c);
    c.final_summary();
    eprintln!("tasks bench took {:.0?}", start.elapsed());
}
