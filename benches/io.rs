//! Level-triggered readers on an edge-triggered reactor: what it costs, and
//! which of the two ways to build it is cheaper.
//!
//! asyncio's selectors are level-triggered; mio is edge-triggered. Two ways
//! to restore level semantics (see `src/event_loop/io.rs`):
//! - **re-arm**: after a dispatched callback ran, `epoll_ctl(EPOLL_CTL_MOD)`
//!   the fd with the same interest; the kernel re-checks it and queues an
//!   event if it is still ready. One system call per dispatched fd.
//! - **still-ready set**: remember that fds dispatched and, next
//!   iteration, ask which are still ready: aioloop asks a level-triggered
//!   epoll set holding the same registrations (`epoll_wait`, zero timeout),
//!   which a closed fd leaves with its file; `poll(2)` on the numbers, the
//!   `poll` row, is what it first did. One system call per iteration for
//!   all of them, on top of the `epoll_wait`.
//!
//! Rows:
//! - `rearm_vs_poll/epoll_ctl_mod/N`: re-arming N fds (N system calls);
//! - `rearm_vs_poll/poll/N`: one `poll(2)` over the same N fds;
//! - `level_reader/aioloop`: a reader that takes one byte per call from a
//!   socket holding 1,000, so it is re-dispatched 1,000 times: the whole
//!   per-call cost (epoll_wait + dispatch + callback + re-arm).

use std::cell::Cell;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use aioloop::reactor::{Interest, Reactor};
use aioloop::EventLoop;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mio::unix::SourceFd;
use mio::Token;

const READ: Interest = Interest {
    read: true,
    write: false,
};

fn rearm_vs_poll(c: &mut Criterion) {
    let mut g = c.benchmark_group("rearm_vs_poll");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for n in [1usize, 8, 64] {
        let mut reactor = Reactor::new().unwrap();
        let pairs: Vec<(UnixStream, UnixStream)> =
            (0..n).map(|_| UnixStream::pair().unwrap()).collect();
        for (i, (a, b)) in pairs.iter().enumerate() {
            (&*b).write_all(b"x").unwrap(); // every fd is readable
            reactor.register(a.as_raw_fd(), i, READ).unwrap();
        }
        g.throughput(Throughput::Elements(n as u64));
        // One `epoll_ctl` per fd, on mio's (edge-triggered) set alone: the
        // reactor's own `reregister` also updates its level-triggered set.
        let mio_poll = mio::Poll::new().unwrap();
        for (i, (a, _)) in pairs.iter().enumerate() {
            mio_poll
                .registry()
                .register(
                    &mut SourceFd(&a.as_raw_fd()),
                    Token(i),
                    mio::Interest::READABLE,
                )
                .unwrap();
        }
        g.bench_with_input(BenchmarkId::new("epoll_ctl_mod", n), &n, |b, _| {
            b.iter(|| {
                for (i, (a, _)) in pairs.iter().enumerate() {
                    mio_poll
                        .registry()
                        .reregister(
                            &mut SourceFd(&a.as_raw_fd()),
                            Token(i),
                            mio::Interest::READABLE,
                        )
                        .unwrap();
                }
            })
        });
        let mut fds: Vec<libc::pollfd> = pairs
            .iter()
            .map(|(a, _)| libc::pollfd {
                fd: a.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        g.bench_with_input(BenchmarkId::new("poll", n), &n, |b, _| {
            b.iter(|| {
                // SAFETY: `fds` is a live, exclusively borrowed slice of
                // `fds.len()` initialised pollfd structs for the whole call,
                // which is all poll(2) reads and writes.
                let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
                assert_eq!(ready as usize, fds.len());
            })
        });
    }
    g.finish();
}

fn level_reader(c: &mut Criterion) {
    const BYTES: usize = 1_000;
    let mut g = c.benchmark_group("level_reader");
    g.throughput(Throughput::Elements(BYTES as u64))
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let lp = EventLoop::new().unwrap();
    let (rx, tx) = UnixStream::pair().unwrap();
    rx.set_nonblocking(true).unwrap();
    let fd = rx.as_raw_fd();
    let left = Rc::new(Cell::new(0usize));
    let (l, r) = (left.clone(), lp.loop_ref());
    lp.add_reader(fd, move || {
        let mut one = [0u8; 1];
        (&rx).read_exact(&mut one).unwrap();
        l.set(l.get() - 1);
        if l.get() == 0 {
            r.stop();
        }
    })
    .unwrap();
    let payload = vec![b'x'; BYTES];
    g.bench_function("aioloop", |b| {
        b.iter(|| {
            left.set(BYTES);
            (&tx).write_all(&payload).unwrap();
            lp.run_forever().unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, rearm_vs_poll, level_reader);
criterion_main!(benches);
