//! Timers: scheduling and cancelling, and firing, with 0, 1,000 and
//! 1,000,000 other timers pending — the O(1) claim of the wheel.
//!
//! Rows:
//! - `schedule_cancel/aioloop/P`: a batch of 1,000,000 `call_later` with
//!   random delays (up to ~3 hours), then `cancel` of each (and the drop of
//!   its `TimerHandle`), in scheduling order, with P timers already pending;
//!   time per timer, scheduling and cancelling;
//! - `schedule_cancel/tokio_delayqueue/P`: the same on tokio-util's
//!   `DelayQueue` (`insert` + `remove`), tokio's own timer wheel;
//! - `fire_100k/aioloop/D/P`: 100,000 timers due within 10 s fire, in order,
//!   on the virtual clock (no real waiting), P others pending a year away;
//!   time per fired timer, scheduling excluded. D is the deadline pattern:
//!   `ordered` (deadlines increase in scheduling order, as a timeout per
//!   incoming event does) or `random` (random order: each firing touches
//!   cold memory);
//! - `fire_100k/aioloop_with_scheduling/D/0`: the same, scheduling included;
//! - `fire_100k/tokio_delayqueue/D/0`: tokio-util's `DelayQueue` drained on
//!   tokio's paused clock, insertion excluded (as the aioloop row);
//! - `fire_100k/tokio_sleep_tasks_with_spawning/D/0`: 100,000 tasks each
//!   sleeping once, on the paused clock, spawning included.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use aioloop::{EventLoop, TimerHandle};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const SCHEDULED: u64 = 1_000_000;
const FIRED: u64 = 100_000;
const PENDING: [u64; 3] = [0, 1_000, 1_000_000];

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn random_delays(n: u64, max: Duration, seed: u64) -> Vec<Duration> {
    let mut rng = XorShift(seed);
    let max = max.as_nanos() as u64;
    (0..n)
        .map(|_| Duration::from_nanos(rng.next() % max))
        .collect()
}

/// A loop on the virtual clock with `pending` timers a year away.
fn loop_with_pending(pending: u64) -> (EventLoop, Vec<TimerHandle>) {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let year = Duration::from_secs(365 * 86_400);
    let handles = random_delays(pending, Duration::from_secs(86_400), 7)
        .into_iter()
        .map(|d| lp.call_later(year + d, || {}).unwrap())
        .collect();
    (lp, handles)
}

fn schedule_cancel(c: &mut Criterion) {
    let mut g = c.benchmark_group("schedule_cancel");
    g.throughput(Throughput::Elements(SCHEDULED))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    let delays = random_delays(SCHEDULED, Duration::from_secs(10_000), 42);
    for pending in PENDING {
        let (lp, _background) = loop_with_pending(pending);
        let mut handles = Vec::with_capacity(SCHEDULED as usize);
        g.bench_with_input(BenchmarkId::new("aioloop", pending), &pending, |b, _| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    for d in &delays {
                        handles.push(lp.call_later(*d, || {}).unwrap());
                    }
                    for h in handles.drain(..) {
                        h.cancel();
                    }
                    total += start.elapsed();
                }
                total
            })
        });
        assert_eq!(lp.scheduled_timers() as u64, pending);
    }
    for pending in PENDING {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        g.bench_with_input(
            BenchmarkId::new("tokio_delayqueue", pending),
            &pending,
            |b, &pending| {
                rt.block_on(async {
                    let mut q = tokio_util::time::DelayQueue::new();
                    let year = Duration::from_secs(365 * 86_400);
                    for d in random_delays(pending, Duration::from_secs(86_400), 7) {
                        q.insert((), year + d);
                    }
                    let mut keys = Vec::with_capacity(SCHEDULED as usize);
                    b.iter_custom(|iters| {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            let start = Instant::now();
                            for d in &delays {
                                keys.push(q.insert((), *d));
                            }
                            for k in keys.drain(..) {
                                q.remove(&k);
                            }
                            total += start.elapsed();
                        }
                        total
                    });
                    assert_eq!(q.len() as u64, pending);
                })
            },
        );
    }
    g.finish();
}

/// Deadline patterns for the firing benchmark.
#[derive(Clone, Copy)]
enum Pattern {
    /// Deadlines increase in scheduling order (a timeout per event, as events
    /// arrive): memory is touched in allocation order.
    Ordered,
    /// Deadlines in random order: firing visits memory in random order.
    Random,
}

impl Pattern {
    fn name(self) -> &'static str {
        match self {
            Pattern::Ordered => "ordered",
            Pattern::Random => "random",
        }
    }

    fn delays(self) -> Vec<Duration> {
        match self {
            Pattern::Random => random_delays(FIRED, Duration::from_secs(10), 99),
            Pattern::Ordered => (0..FIRED)
                .map(|i| Duration::from_nanos(i * (10_000_000_000 / FIRED)))
                .collect(),
        }
    }
}

fn fire_100k(c: &mut Criterion) {
    let mut g = c.benchmark_group("fire_100k");
    g.throughput(Throughput::Elements(FIRED))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for pattern in [Pattern::Ordered, Pattern::Random] {
        let delays = pattern.delays();
        for pending in PENDING {
            let (lp, _background) = loop_with_pending(pending);
            let fired = Rc::new(Cell::new(0u64));
            let schedule = |fired: &Rc<Cell<u64>>| {
                for d in &delays {
                    let f = fired.clone();
                    lp.call_later(*d, move || f.set(f.get() + 1)).unwrap();
                }
                let r = lp.loop_ref();
                lp.call_later(Duration::from_secs(10), move || r.stop())
                    .unwrap();
            };
            let id = format!("aioloop/{}", pattern.name());
            g.bench_with_input(BenchmarkId::new(id, pending), &pending, |b, _| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        fired.set(0);
                        schedule(&fired);
                        let start = Instant::now();
                        lp.run_forever().unwrap();
                        total += start.elapsed();
                        assert_eq!(fired.get(), FIRED);
                    }
                    total
                })
            });
            if pending == 0 {
                let id = format!("aioloop_with_scheduling/{}", pattern.name());
                g.bench_with_input(BenchmarkId::new(id, pending), &pending, |b, _| {
                    b.iter(|| {
                        fired.set(0);
                        schedule(&fired);
                        lp.run_forever().unwrap();
                        assert_eq!(fired.get(), FIRED);
                    })
                });
            }
            assert_eq!(lp.scheduled_timers() as u64, pending);
        }
        let paused_rt = || {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap()
        };
        let rt = paused_rt();
        let id = format!("tokio_delayqueue/{}", pattern.name());
        g.bench_function(BenchmarkId::new(id, 0), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    total += rt.block_on(async {
                        let mut q = tokio_util::time::DelayQueue::with_capacity(FIRED as usize);
                        for d in &delays {
                            q.insert((), *d);
                        }
                        let start = Instant::now();
                        let mut n = 0;
                        while std::future::poll_fn(|cx| q.poll_expired(cx))
                            .await
                            .is_some()
                        {
                            n += 1;
                        }
                        assert_eq!(n, FIRED);
                        start.elapsed()
                    });
                }
                total
            })
        });
        let rt = paused_rt();
        let id = format!("tokio_sleep_tasks_with_spawning/{}", pattern.name());
        g.bench_function(BenchmarkId::new(id, 0), |b| {
            b.iter(|| {
                let local = tokio::task::LocalSet::new();
                let fired = Rc::new(Cell::new(0u64));
                for d in &delays {
                    let (f, d) = (fired.clone(), *d);
                    local.spawn_local(async move {
                        tokio::time::sleep(d).await;
                        f.set(f.get() + 1);
                    });
                }
                rt.block_on(local);
                assert_eq!(fired.get(), FIRED);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, schedule_cancel, fire_100k);
criterion_main!(benches);
