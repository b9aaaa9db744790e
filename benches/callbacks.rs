//! Callback throughput: a chain of `call_soon`s and a batch scheduled up
//! front, against tokio's current-thread runtime doing the nearest thing.
//!
//! Rows (ns per step = reported time / elements):
//! - `chain/aioloop`: each callback schedules the next with `call_soon`;
//! - `chain/aioloop_one_socket`: the same with one idle socket registered,
//!   so every iteration pays a zero-timeout `epoll_wait`;
//! - `chain/tokio_spawn_local`: each task spawns the next (`spawn_local`);
//! - `chain/tokio_spawn`: the same with `tokio::spawn` (`Send` tasks);
//! - `chain/tokio_yield_now`: one task calling `yield_now` (a reschedule);
//! - `batch/aioloop`: 1,000,000 `call_soon` up front, then run;
//! - `batch/tokio_spawn_local`: 1,000,000 `spawn_local` up front, then run.

use std::cell::Cell;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use aioloop::{EventLoop, LoopRef};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const N: u64 = 1_000_000;

struct Chain {
    lp: LoopRef,
    left: Cell<u64>,
}

fn step(c: Rc<Chain>) {
    let left = c.left.get();
    if left == 0 {
        c.lp.stop();
        return;
    }
    c.left.set(left - 1);
    let lp = c.lp.clone();
    lp.call_soon(move || step(c)).unwrap();
}

fn aioloop_chain(lp: &EventLoop, n: u64) {
    let c = Rc::new(Chain {
        lp: lp.loop_ref(),
        left: Cell::new(n),
    });
    lp.call_soon(move || step(c)).unwrap();
    lp.run_forever().unwrap();
}

/// The chain with debug mode's hooks compiled out: the baseline for what
/// they cost when debug mode is off.
fn aioloop_chain_no_hooks(lp: &EventLoop, n: u64) {
    let c = Rc::new(Chain {
        lp: lp.loop_ref(),
        left: Cell::new(n),
    });
    lp.call_soon(move || step(c)).unwrap();
    lp.run_forever_without_debug_hooks().unwrap();
}

fn aioloop_batch(lp: &EventLoop, n: u64) {
    let count = Rc::new(Cell::new(0u64));
    for _ in 0..n {
        let c = count.clone();
        lp.call_soon(move || c.set(c.get() + 1)).unwrap();
    }
    let r = lp.loop_ref();
    lp.call_soon(move || r.stop()).unwrap();
    lp.run_forever().unwrap();
    assert_eq!(count.get(), n);
}

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn tokio_spawn_chain(rt: &tokio::runtime::Runtime, n: u64) {
    fn next(left: u64, done: tokio::sync::oneshot::Sender<()>) {
        if left == 0 {
            let _ = done.send(());
            return;
        }
        tokio::task::spawn_local(async move { next(left - 1, done) });
    }
    let local = tokio::task::LocalSet::new();
    local.block_on(rt, async move {
        let (tx, rx) = tokio::sync::oneshot::channel();
        next(n, tx);
        rx.await.unwrap();
    });
}

fn tokio_spawn_send_chain(rt: &tokio::runtime::Runtime, n: u64) {
    fn next(left: u64, done: tokio::sync::oneshot::Sender<()>) {
        if left == 0 {
            let _ = done.send(());
            return;
        }
        tokio::spawn(async move { next(left - 1, done) });
    }
    rt.block_on(async move {
        let (tx, rx) = tokio::sync::oneshot::channel();
        next(n, tx);
        rx.await.unwrap();
    });
}

fn tokio_yield_chain(rt: &tokio::runtime::Runtime, n: u64) {
    rt.block_on(async move {
        for _ in 0..n {
            tokio::task::yield_now().await;
        }
    });
}

fn tokio_spawn_batch(rt: &tokio::runtime::Runtime, n: u64) {
    let local = tokio::task::LocalSet::new();
    let count = Rc::new(Cell::new(0u64));
    let c = count.clone();
    local.block_on(rt, async move {
        for _ in 0..n {
            let c = c.clone();
            tokio::task::spawn_local(async move { c.set(c.get() + 1) });
        }
    });
    rt.block_on(local);
    assert_eq!(count.get(), n);
}

fn configure<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(N))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g
}

fn chain(c: &mut Criterion) {
    let mut g = configure(c, "chain");
    let lp = EventLoop::new().unwrap();
    lp.set_debug(false);
    g.bench_function("aioloop", |b| b.iter(|| aioloop_chain(&lp, N)));
    g.bench_function("aioloop_no_debug_hooks", |b| {
        b.iter(|| aioloop_chain_no_hooks(&lp, N))
    });
    let (a, _b) = UnixStream::pair().unwrap();
    lp.add_reader(a.as_raw_fd(), || {}).unwrap();
    g.bench_function("aioloop_one_socket", |b| b.iter(|| aioloop_chain(&lp, N)));
    lp.remove_reader(a.as_raw_fd());
    let rt = tokio_rt();
    g.bench_function("tokio_spawn_local", |b| {
        b.iter(|| tokio_spawn_chain(&rt, N))
    });
    g.bench_function("tokio_spawn", |b| b.iter(|| tokio_spawn_send_chain(&rt, N)));
    g.bench_function("tokio_yield_now", |b| b.iter(|| tokio_yield_chain(&rt, N)));
    g.finish();
}

fn batch(c: &mut Criterion) {
    let mut g = configure(c, "batch");
    let lp = EventLoop::new().unwrap();
    g.bench_function("aioloop", |b| b.iter(|| aioloop_batch(&lp, N)));
    let rt = tokio_rt();
    g.bench_function("tokio_spawn_local", |b| {
        b.iter(|| tokio_spawn_batch(&rt, N))
    });
    g.finish();
}

/// The chain in debug mode. Last of the binary on purpose: debug mode
/// starts the watchdog thread, and once a process has a second thread glibc
/// leaves its single-threaded malloc fast path for good — every later
/// allocation would pay for debug mode even with it off.
fn chain_debug_on(c: &mut Criterion) {
    let mut g = configure(c, "chain_debug_on");
    let lp = EventLoop::new().unwrap();
    lp.set_debug(true);
    g.bench_function("aioloop", |b| b.iter(|| aioloop_chain(&lp, N)));
    lp.set_debug(false);
    g.finish();
}

criterion_group!(benches, chain, batch, chain_debug_on);
criterion_main!(benches);
