//! The reactor: the OS readiness API behind one small door.
//!
//! It wraps a [`mio::Poll`] (epoll on Linux, kqueue on the BSDs) and a
//! [`mio::Waker`], and turns readiness into `(token, readable, writable)`
//! triples. It knows nothing of callbacks, handles or tasks: the event loop
//! gives it tokens and interests and gets tokens back. This is the part of
//! asyncio that lives in the `selectors` module (`EpollSelector`), and in
//! libuv the `uv__io_poll` function.
//!
//! # Contract
//!
//! - `register` / `reregister` / `deregister` act on a raw fd the caller owns
//!   and keeps open while it is registered. One fd has one registration; the
//!   caller merges read and write interest into it.
//! - mio registers edge-triggered (`EPOLLET`): an fd is reported when its
//!   state changes, not while it stays ready. For asyncio's level-triggered
//!   readers the caller names, with [`Reactor::recheck`], the fds it wants
//!   re-examined; the next [`Reactor::poll`] asks `poll(2)`, in one system
//!   call with a zero timeout, which of them are still ready, and reports
//!   those too. (`benches/io.rs` measured this against re-arming each fd with
//!   `epoll_ctl(EPOLL_CTL_MOD)`: cheaper from one fd on, and 7× at 64 fds.)
//!   An fd may then be reported twice in one poll, once per mechanism.
//! - Error and hang-up conditions are reported as both readable and writable,
//!   as Python's `selectors` does (`EPOLLHUP`/`EPOLLERR` wake both sides), so
//!   that a callback gets to see the error from its own `read` or `write`.
//! - The waker's token never appears in [`Reactor::events`]: a wake-up only
//!   makes `poll` return, and [`Reactor::was_woken`] says it happened.
//!
//! # Invariants
//!
//! - `sources()` equals the number of fds currently registered (the waker is
//!   not counted), so the loop can skip a pointless zero-timeout poll when
//!   nothing is registered.
//! - An interrupted `poll` (`EINTR`) is reported as "no events", never as an
//!   error: the loop simply goes round again. Rechecks are kept until a poll
//!   performs them, so an interruption loses none.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Poll, Token, Waker};

/// The token reserved for the waker. Fd tokens are the loop's own and never
/// reach this value (they are slab indices).
const WAKE_TOKEN: Token = Token(usize::MAX);

/// How many events one `poll` can return. More ready fds are simply returned
/// by the next poll, as with `epoll_wait`'s `maxevents`.
const EVENTS_CAPACITY: usize = 1024;

/// Which directions of an fd to watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Interest {
    /// Wake when the fd is readable (or has an error or hung up).
    pub read: bool,
    /// Wake when the fd is writable (or has an error or hung up).
    pub write: bool,
}

impl Interest {
    /// True when neither direction is watched.
    pub fn is_empty(self) -> bool {
        !self.read && !self.write
    }

    fn to_mio(self) -> Option<mio::Interest> {
        match (self.read, self.write) {
            (true, true) => Some(mio::Interest::READABLE | mio::Interest::WRITABLE),
            (true, false) => Some(mio::Interest::READABLE),
            (false, true) => Some(mio::Interest::WRITABLE),
            (false, false) => None,
        }
    }
}

/// One readiness report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The token the fd was registered with.
    pub token: usize,
    /// Readable, or in error, or hung up.
    pub readable: bool,
    /// Writable, or in error, or hung up.
    pub writable: bool,
}

/// The poller plus its cross-thread waker.
pub struct Reactor {
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    sources: usize,
    woken: bool,
    /// fds to re-examine with `poll(2)` at the next poll, and their tokens
    /// (parallel vectors: `pollfd` is what the system call takes).
    recheck_fds: Vec<libc::pollfd>,
    recheck_tokens: Vec<usize>,
    /// What the last recheck found still ready.
    level_events: Vec<Event>,
}

impl Reactor {
    /// Creates the poller (one epoll fd) and its waker (one eventfd).
    pub fn new() -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE_TOKEN)?);
        Ok(Reactor {
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            waker,
            sources: 0,
            woken: false,
            recheck_fds: Vec::new(),
            recheck_tokens: Vec::new(),
            level_events: Vec::new(),
        })
    }

    /// Starts watching `fd` for `interest` under `token`.
    ///
    /// Fails with the OS error for a closed fd (`EBADF`), or for a file that
    /// cannot be polled (`EPERM` for a regular file on epoll).
    pub fn register(&mut self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()> {
        let mio_interest = interest.to_mio().ok_or_else(empty_interest)?;
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), Token(token), mio_interest)?;
        self.sources += 1;
        Ok(())
    }

    /// Changes what `fd` is watched for. With an unchanged interest this
    /// re-arms the edge-triggered registration (see the module contract).
    pub fn reregister(&self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()> {
        let mio_interest = interest.to_mio().ok_or_else(empty_interest)?;
        self.poll
            .registry()
            .reregister(&mut SourceFd(&fd), Token(token), mio_interest)
    }

    /// Like [`reregister`](Reactor::reregister), but if the kernel no longer
    /// knows the fd — it was closed without being deregistered, which drops it
    /// from epoll, and its number was reused — registers it anew. For the
    /// caller it is the same source, so the count of sources is unchanged.
    pub fn reregister_or_register(
        &self,
        fd: RawFd,
        token: usize,
        interest: Interest,
    ) -> io::Result<()> {
        match self.reregister(fd, token, interest) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let mio_interest = interest.to_mio().ok_or_else(empty_interest)?;
                self.poll
                    .registry()
                    .register(&mut SourceFd(&fd), Token(token), mio_interest)
            }
            other => other,
        }
    }

    /// Stops watching `fd`. The count of sources drops even when the OS
    /// reports an error: an fd closed while registered has already left the
    /// epoll set on its own (close(2) removes it), and is gone either way.
    pub fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        self.sources = self.sources.saturating_sub(1);
        self.poll.registry().deregister(&mut SourceFd(&fd))
    }

    /// Number of fds registered (the waker excluded).
    pub fn sources(&self) -> usize {
        self.sources
    }

    /// Asks the next [`poll`](Reactor::poll) to report `fd` if it is ready
    /// for `interest` at that moment, whether or not a new edge occurred.
    pub fn recheck(&mut self, fd: RawFd, token: usize, interest: Interest) {
        let mut events = 0;
        if interest.read {
            events |= libc::POLLIN;
        }
        if interest.write {
            events |= libc::POLLOUT;
        }
        if events != 0 {
            self.recheck_fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            self.recheck_tokens.push(token);
        }
    }

    /// True when the next poll has fds to recheck: the caller should then
    /// not block, since they may well still be ready.
    pub fn has_rechecks(&self) -> bool {
        !self.recheck_fds.is_empty()
    }

    /// Waits for readiness: `None` blocks until an event or a wake-up,
    /// `Some(ZERO)` only collects what is ready now. mio rounds a timeout up
    /// to the next millisecond, so a poll never returns before a deadline
    /// because of rounding. Then performs the pending rechecks.
    pub fn poll(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.woken = false;
        self.level_events.clear();
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.events.clear();
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        self.woken = self.events.iter().any(|e| e.token() == WAKE_TOKEN);
        if !self.recheck_fds.is_empty() {
            self.run_rechecks()?;
        }
        Ok(())
    }

    /// One `poll(2)` with a zero timeout over every fd to recheck.
    fn run_rechecks(&mut self) -> io::Result<()> {
        let fds = &mut self.recheck_fds;
        loop {
            // SAFETY: `fds` is an exclusively borrowed Vec of `fds.len()`
            // initialised `pollfd`s that outlives the call; poll(2) reads
            // `fd`/`events` and writes `revents` of exactly those entries.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
            if n >= 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        for (pfd, &token) in fds.iter().zip(&self.recheck_tokens) {
            let r = pfd.revents;
            // POLLNVAL: the fd was closed; it can never be ready again.
            if r == 0 || r & libc::POLLNVAL != 0 {
                continue;
            }
            let trouble = r & (libc::POLLERR | libc::POLLHUP) != 0;
            self.level_events.push(Event {
                token,
                readable: r & libc::POLLIN != 0 || trouble,
                writable: r & libc::POLLOUT != 0 || trouble,
            });
        }
        fds.clear();
        self.recheck_tokens.clear();
        Ok(())
    }

    /// Forgets the events of the last poll, when the loop skips a poll that
    /// could not learn anything (zero timeout, no fd registered).
    pub fn clear_events(&mut self) {
        self.events.clear();
        self.level_events.clear();
        self.woken = false;
        // Rechecks only exist for registered fds; with none left, drop them.
        if self.sources == 0 {
            self.recheck_fds.clear();
            self.recheck_tokens.clear();
        }
    }

    /// True if the last `poll` returned because of the waker.
    pub fn was_woken(&self) -> bool {
        self.woken
    }

    /// The fd events of the last `poll` (the waker's own event left out):
    /// new edges first, then the rechecked fds found still ready.
    pub fn events(&self) -> impl Iterator<Item = Event> + '_ {
        self.events
            .iter()
            .filter(|e| e.token() != WAKE_TOKEN)
            .map(|e| {
                let trouble = e.is_error() || e.is_read_closed() || e.is_write_closed();
                Event {
                    token: e.token().0,
                    readable: e.is_readable() || trouble,
                    writable: e.is_writable() || trouble,
                }
            })
            .chain(self.level_events.iter().copied())
    }

    /// True when the last poll reported no fd at all.
    pub fn no_events(&self) -> bool {
        self.level_events.is_empty() && self.events().next().is_none()
    }

    /// The thread-safe waker: `wake()` makes a blocked `poll` return.
    pub fn waker(&self) -> Arc<Waker> {
        Arc::clone(&self.waker)
    }
}

fn empty_interest() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "empty interest")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    const R: Interest = Interest {
        read: true,
        write: false,
    };

    #[test]
    fn readable_fd_is_reported_with_its_token() {
        let mut r = Reactor::new().unwrap();
        let (a, mut b) = UnixStream::pair().unwrap();
        r.register(a.as_raw_fd(), 7, R).unwrap();
        assert_eq!(r.sources(), 1);
        r.poll(Some(Duration::ZERO)).unwrap();
        assert_eq!(r.events().count(), 0, "nothing written yet");
        b.write_all(b"x").unwrap();
        r.poll(Some(Duration::from_secs(5))).unwrap();
        let evs: Vec<Event> = r.events().collect();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].token, 7);
        assert!(evs[0].readable);
    }

    #[test]
    fn edge_triggered_until_rearmed() {
        let mut r = Reactor::new().unwrap();
        let (mut a, mut b) = UnixStream::pair().unwrap();
        r.register(a.as_raw_fd(), 1, R).unwrap();
        b.write_all(b"0123456789").unwrap();
        r.poll(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(r.events().count(), 1);
        let mut one = [0u8; 1];
        a.read_exact(&mut one).unwrap();
        r.poll(Some(Duration::ZERO)).unwrap();
        assert_eq!(r.events().count(), 0, "mio is edge-triggered");
        r.reregister(a.as_raw_fd(), 1, R).unwrap();
        r.poll(Some(Duration::ZERO)).unwrap();
        assert_eq!(
            r.events().count(),
            1,
            "re-arming reports the data still there"
        );
    }

    #[test]
    fn recheck_reports_an_fd_still_ready_without_a_new_edge() {
        let mut r = Reactor::new().unwrap();
        let (mut a, mut b) = UnixStream::pair().unwrap();
        r.register(a.as_raw_fd(), 3, R).unwrap();
        b.write_all(b"ab").unwrap();
        r.poll(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(r.events().count(), 1);
        let mut one = [0u8; 1];
        a.read_exact(&mut one).unwrap();
        r.recheck(a.as_raw_fd(), 3, R);
        assert!(r.has_rechecks());
        r.poll(Some(Duration::ZERO)).unwrap();
        let evs: Vec<Event> = r.events().collect();
        assert_eq!(evs.len(), 1, "one byte is left: still ready");
        assert_eq!(evs[0].token, 3);
        assert!(!r.has_rechecks(), "a recheck is done once");
        a.read_exact(&mut one).unwrap();
        r.recheck(a.as_raw_fd(), 3, R);
        r.poll(Some(Duration::ZERO)).unwrap();
        assert!(r.no_events(), "drained: not ready any more");
    }

    #[test]
    fn recheck_of_a_closed_fd_reports_nothing() {
        let mut r = Reactor::new().unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        r.register(fd, 4, R).unwrap();
        drop(a);
        r.recheck(fd, 4, R);
        r.poll(Some(Duration::ZERO)).unwrap();
        assert!(r.no_events());
    }

    #[test]
    fn waker_interrupts_a_blocking_poll_and_is_not_an_event() {
        let mut r = Reactor::new().unwrap();
        let w = r.waker();
        let t = std::thread::spawn(move || w.wake().unwrap());
        r.poll(Some(Duration::from_secs(30))).unwrap();
        t.join().unwrap();
        assert!(r.was_woken());
        assert_eq!(r.events().count(), 0);
    }

    #[test]
    fn closed_fd_is_refused_and_hangup_wakes_both_sides() {
        let mut r = Reactor::new().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        drop(a);
        assert_eq!(
            r.register(fd, 1, R).unwrap_err().raw_os_error(),
            Some(libc::EBADF)
        );
        assert_eq!(r.sources(), 0);

        let (c, d) = UnixStream::pair().unwrap();
        let both = Interest {
            read: true,
            write: true,
        };
        r.register(c.as_raw_fd(), 2, both).unwrap();
        drop(d);
        drop(b);
        r.poll(Some(Duration::from_secs(5))).unwrap();
        let ev = r.events().next().unwrap();
        assert!(ev.readable && ev.writable);
        r.deregister(c.as_raw_fd()).unwrap();
        assert_eq!(r.sources(), 0);
    }
}
