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
//!   readers the caller asks, with [`Reactor::recheck`], for the fds that
//!   are still ready; the next [`Reactor::poll`] then reads a second,
//!   **level-triggered** epoll set that holds the same registrations, in one
//!   `epoll_wait` with a zero timeout, and reports what it finds too. (The
//!   re-arming alternative, `epoll_ctl(EPOLL_CTL_MOD)` per fd, costs one
//!   system call per fd: 7× the cost at 64 fds, `benches/io.rs`.) An fd may
//!   then be reported twice in one poll, once per set; and the level set
//!   reports every ready fd, not only those named — which is asyncio's own
//!   level-triggered behaviour.
//! - Why a second epoll set rather than `poll(2)` on the numbers, as
//!   aioloop first did: an epoll registration belongs to the *open file*,
//!   not to its number. An fd closed without being deregistered leaves both
//!   sets by itself (close(2) removes it), so a new file that gets the same
//!   number is never reported under the old token — `poll(2)` asked about
//!   the number, and ran a stale reader 20,000–30,000 times in 10 ms on a
//!   new socket. Comparing `fstat` identities instead would cost a system
//!   call per level-triggered dispatch and cannot tell two eventfds or
//!   timerfds apart (they share one anonymous inode). The price of the
//!   second set is one more `epoll_ctl` per register, reregister and
//!   deregister; the recheck itself is one system call, as before.
//! - [`Reactor::reregister`] fails with `ENOENT` (or `EBADF`) when the
//!   file registered under `fd` is gone — closed, its number maybe reused:
//!   the caller learns its registration is stale, and registers anew.
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
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
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
    /// The level-triggered epoll set: the same registrations as `poll`'s,
    /// read only to recheck (see the module docs).
    level: OwnedFd,
    /// Some fd was named for a recheck at the next poll.
    recheck: bool,
    /// The buffer the level set's `epoll_wait` fills.
    level_buf: Vec<libc::epoll_event>,
    /// What the last recheck found still ready.
    level_events: Vec<Event>,
}

impl Reactor {
    /// Creates the poller (one epoll fd) and its waker (one eventfd).
    pub fn new() -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE_TOKEN)?);
        // SAFETY: epoll_create1 takes a flag and returns a new fd or -1.
        let level = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if level < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `level` is a new fd that nothing else owns.
        let level = unsafe { OwnedFd::from_raw_fd(level) };
        Ok(Reactor {
            poll,
            events: Events::with_capacity(EVENTS_CAPACITY),
            waker,
            sources: 0,
            woken: false,
            level,
            recheck: false,
            level_buf: Vec::with_capacity(EVENTS_CAPACITY),
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
        if let Err(e) = self.level_ctl(libc::EPOLL_CTL_ADD, fd, token, interest) {
            // Undo, so that both sets agree.
            let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
            return Err(e);
        }
        self.sources += 1;
        Ok(())
    }

    /// `epoll_ctl` on the level-triggered set.
    fn level_ctl(
        &self,
        op: libc::c_int,
        fd: RawFd,
        token: usize,
        interest: Interest,
    ) -> io::Result<()> {
        let mut events = 0;
        if interest.read {
            events |= libc::EPOLLIN;
        }
        if interest.write {
            events |= libc::EPOLLOUT;
        }
        let mut ev = libc::epoll_event {
            events: events as u32,
            u64: token as u64,
        };
        // SAFETY: `level` is our epoll fd; `ev` is a valid epoll_event the
        // kernel only reads (and ignores for EPOLL_CTL_DEL).
        let rc = unsafe { libc::epoll_ctl(self.level.as_raw_fd(), op, fd, &mut ev) };
        if rc < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Changes what `fd` is watched for. With an unchanged interest this
    /// re-arms the edge-triggered registration (see the module contract).
    ///
    /// Fails with `ENOENT` (`EBADF` if the number is free) when the file
    /// registered under `fd` was closed: its registration went with it, and
    /// the file now under that number, if any, was never registered.
    pub fn reregister(&self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()> {
        let mio_interest = interest.to_mio().ok_or_else(empty_interest)?;
        self.poll
            .registry()
            .reregister(&mut SourceFd(&fd), Token(token), mio_interest)?;
        self.level_ctl(libc::EPOLL_CTL_MOD, fd, token, interest)
    }

    /// True when `err`, from [`reregister`](Reactor::reregister), says the
    /// registered file is gone (closed, and its number maybe reused).
    pub fn is_stale(err: &io::Error) -> bool {
        matches!(err.raw_os_error(), Some(libc::ENOENT | libc::EBADF))
    }

    /// Stops watching `fd`. The count of sources drops even when the OS
    /// reports an error: an fd closed while registered has already left the
    /// epoll set on its own (close(2) removes it), and is gone either way.
    pub fn deregister(&mut self, fd: RawFd) -> io::Result<()> {
        self.sources = self.sources.saturating_sub(1);
        let level = self.level_ctl(libc::EPOLL_CTL_DEL, fd, 0, Interest::default());
        self.poll.registry().deregister(&mut SourceFd(&fd))?;
        level
    }

    /// Number of fds registered (the waker excluded).
    pub fn sources(&self) -> usize {
        self.sources
    }

    /// Asks the next [`poll`](Reactor::poll) to report `fd` if it is ready
    /// for `interest` at that moment, whether or not a new edge occurred.
    /// (That poll reads the level-triggered set, which reports every
    /// registered fd that is ready, this one included; a file closed since
    /// it was registered is not in it, whatever now has its number.)
    pub fn recheck(&mut self, _fd: RawFd, _token: usize, interest: Interest) {
        if !interest.is_empty() {
            self.recheck = true;
        }
    }

    /// True when the next poll has fds to recheck: the caller should then
    /// not block, since they may well still be ready.
    pub fn has_rechecks(&self) -> bool {
        self.recheck
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
        if self.recheck {
            self.run_rechecks()?;
        }
        Ok(())
    }

    /// One `epoll_wait` with a zero timeout on the level-triggered set.
    fn run_rechecks(&mut self) -> io::Result<()> {
        let buf = &mut self.level_buf;
        buf.clear();
        let n = loop {
            // SAFETY: `level` is our epoll fd; `buf` has room for
            // `capacity()` events, and the kernel writes at most that many,
            // the count it returns.
            let n = unsafe {
                libc::epoll_wait(
                    self.level.as_raw_fd(),
                    buf.as_mut_ptr(),
                    buf.capacity() as libc::c_int,
                    0,
                )
            };
            if n >= 0 {
                break n as usize;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        // SAFETY: the kernel initialised the first `n` entries.
        unsafe { buf.set_len(n) };
        for ev in buf.iter() {
            let r = ev.events as libc::c_int;
            let trouble = r & (libc::EPOLLERR | libc::EPOLLHUP) != 0;
            self.level_events.push(Event {
                token: ev.u64 as usize,
                readable: r & libc::EPOLLIN != 0 || trouble,
                writable: r & libc::EPOLLOUT != 0 || trouble,
            });
        }
        self.recheck = false;
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
            self.recheck = false;
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
    fn a_closed_fds_registration_never_reports_the_file_that_reuses_its_number() {
        let mut r = Reactor::new().unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        r.register(fd, 5, R).unwrap();
        drop(a);
        // Other test threads open fds too: make pairs until one reuses `fd`.
        let mut spare = Vec::new();
        let (c, mut d) = loop {
            let (c, d) = UnixStream::pair().unwrap();
            if c.as_raw_fd() == fd {
                break (c, d);
            }
            assert!(spare.len() < 10_000, "fd {fd} never came back");
            spare.push((c, d));
        };
        d.write_all(b"x").unwrap();
        r.recheck(fd, 5, R);
        r.poll(Some(Duration::ZERO)).unwrap();
        assert!(r.no_events(), "the new socket is not the registered file");
        let e = r.reregister(fd, 5, R).unwrap_err();
        assert!(Reactor::is_stale(&e), "{e}");
        r.deregister(fd).unwrap_err();
        r.register(c.as_raw_fd(), 6, R).unwrap();
        r.recheck(fd, 6, R);
        r.poll(Some(Duration::ZERO)).unwrap();
        let tokens: Vec<usize> = r.events().map(|e| e.token).collect();
        assert!(
            !tokens.is_empty() && tokens.iter().all(|&t| t == 6),
            "{tokens:?}"
        );
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
