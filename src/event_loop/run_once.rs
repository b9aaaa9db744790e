//! One iteration of the loop, as numbered phases.
//!
//! asyncio's `BaseEventLoop._run_once`, libuv's `uv_run` body. Each phase is
//! one method below, named as in `docs/LOOP_ITERATION.md`, which draws the
//! iteration:
//!
//! ```text
//!   1 compute_poll_timeout   zero if work is ready or the loop is stopping,
//!                            else until the next timer (an `inf` one
//!                            does not count), else forever
//!   2 poll_io                epoll_wait (skipped when pointless; a virtual
//!                            clock jumps to the next deadline instead of sleeping)
//!   3 dispatch_io_events     readiness → reader/writer handles → ready queue
//!   3b drain_injected        task wakes, call_soon_threadsafe, stop from
//!                            other threads → ready queue
//!   4 collect_due_timers     expired timers → ready queue, by (deadline, seq)
//!   5 run_ready              run exactly the callbacks ready at this point
//!   6 queue_level_rechecks   fds that dispatched are rechecked by the next
//!                            poll: level-triggered readers, as asyncio's
//! ```
//!
//! # Invariants
//!
//! - User callbacks are entered from exactly one place, [`LoopCore::run_handle`];
//!   panics are caught there, so a callback can never unwind through the loop.
//!   The one handle that runs several callbacks, a batch of
//!   `call_soon_threadsafe` calls (`remote/batch.rs`), catches each call's
//!   panic itself, inside `run_handle`, so that the rest of the batch runs.
//! - Phase 5 runs the callbacks that were in the queue when it began, and no
//!   others: a callback scheduled by a callback waits for the next
//!   iteration, even if the loop is stopping (asyncio's `ntodo`).
//! - The clock is read only when a timer is pending (asyncio does the same),
//!   and the poll system call is skipped when it cannot learn anything: a
//!   zero timeout with no fd registered.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use super::exceptions::ExceptionContext;
use super::handle::{Handle, Timer};
use super::{LoopCore, LoopRef};
use crate::errors::{LoopError, PanicError};
use crate::time::clock::NEVER;

/// How long phase 2 may wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PollTimeout {
    /// Work is ready (or the loop is stopping): only collect what is ready now.
    Zero,
    /// Wait at most until this loop time (nanoseconds): the next timer.
    Until(u64),
    /// Nothing to do but wait for I/O or a wake-up.
    Forever,
}

impl LoopCore {
    /// Runs one iteration: phases 1 to 6.
    ///
    /// `HOOKS` is false only in the benchmarks' baseline, which measures
    /// what debug mode's hooks cost when it is off: it compiles them out.
    pub(crate) fn run_once<const HOOKS: bool>(self: &Rc<Self>) -> Result<(), LoopError> {
        let timeout = self.compute_poll_timeout();
        // Phases 3 and 6 only have work after a real poll: without one
        // there are no events to dispatch, so no fd dispatched either.
        let polled = self.poll_io::<HOOKS>(timeout)?;
        if polled {
            self.dispatch_io_events();
        }
        self.drain_injected();
        self.collect_due_timers();
        self.run_ready::<HOOKS>();
        if polled {
            self.queue_level_rechecks();
        }
        Ok(())
    }

    /// Phase 1: how long may the poll wait?
    #[inline]
    fn compute_poll_timeout(&self) -> PollTimeout {
        // An fd to recheck was ready a moment ago: do not block on it.
        if !self.ready.is_empty()
            || self.stopping.get()
            || self.remote.has_injected()
            || self.reactor.borrow().has_rechecks()
        {
            return PollTimeout::Zero;
        }
        match self.timers.borrow().next_wakeup() {
            // A lower bound of NEVER means every timer left is `inf`: asyncio
            // never fires those, so they are no reason to wake (or, on a
            // virtual clock, to jump to the end of time).
            Some(at) if at != NEVER => PollTimeout::Until(at),
            _ => PollTimeout::Forever,
        }
    }

    /// Phase 2: wait for I/O readiness, or for the next timer. True if
    /// the reactor was polled (false: there are no events to dispatch).
    #[inline]
    fn poll_io<const HOOKS: bool>(&self, timeout: PollTimeout) -> Result<bool, LoopError> {
        let mut reactor = self.reactor.borrow_mut();
        let has_sources = reactor.sources() > 0;
        if timeout == PollTimeout::Zero && !has_sources {
            // The common case of a busy loop with no fd: nothing to learn.
            reactor.clear_events();
            return Ok(false);
        }
        self.poll_io_slow::<HOOKS>(&mut reactor, timeout, has_sources)?;
        Ok(true)
    }

    /// `poll_io` when the reactor may have something to say.
    #[inline(never)]
    fn poll_io_slow<const HOOKS: bool>(
        &self,
        reactor: &mut crate::reactor::Reactor,
        timeout: PollTimeout,
        has_sources: bool,
    ) -> Result<(), LoopError> {
        match timeout {
            PollTimeout::Zero => {
                if has_sources {
                    reactor.poll(Some(Duration::ZERO))?;
                } else {
                    reactor.clear_events();
                }
            }
            PollTimeout::Until(at) => {
                let now = self.clock.now_ns();
                if at <= now {
                    if has_sources {
                        reactor.poll(Some(Duration::ZERO))?;
                    } else {
                        reactor.clear_events();
                    }
                } else if self.clock.is_virtual() {
                    // Serve I/O that is ready right now; if there is none,
                    // "sleep" by jumping the clock to the deadline.
                    if has_sources {
                        reactor.poll(Some(Duration::ZERO))?;
                    } else {
                        reactor.clear_events();
                    }
                    if reactor.no_events() && !reactor.was_woken() && !self.remote.has_injected() {
                        self.clock.advance_to(at);
                    }
                } else {
                    self.blocking_poll::<HOOKS>(reactor, Some(Duration::from_nanos(at - now)))?;
                }
            }
            PollTimeout::Forever => self.blocking_poll::<HOOKS>(reactor, None)?,
        }
        Ok(())
    }

    /// A poll that may wait; timed and logged in debug mode, as asyncio
    /// 3.4–3.7 did (`poll 12.000 ms took 12.345 ms: 3 events`).
    fn blocking_poll<const HOOKS: bool>(
        &self,
        reactor: &mut crate::reactor::Reactor,
        timeout: Option<Duration>,
    ) -> Result<(), LoopError> {
        if !HOOKS || !self.debug.on() {
            reactor.poll(timeout)?;
            return Ok(());
        }
        let t0 = std::time::Instant::now();
        reactor.poll(timeout)?;
        let dt = t0.elapsed();
        let level = if dt >= Duration::from_secs(1) {
            log::Level::Info
        } else {
            log::Level::Debug
        };
        let ms = dt.as_secs_f64() * 1e3;
        let n = reactor.events().count();
        match timeout {
            None => log::log!(target: "asyncio", level, "poll took {ms:.3} ms: {n} events"),
            Some(t) if n > 0 => log::log!(
                target: "asyncio",
                level,
                "poll {:.3} ms took {ms:.3} ms: {n} events",
                t.as_secs_f64() * 1e3
            ),
            Some(t) => log::log!(
                target: "asyncio",
                level,
                "poll {:.3} ms took {ms:.3} ms: timeout",
                t.as_secs_f64() * 1e3
            ),
        }
        Ok(())
    }

    /// Phase 3: turn readiness into ready callbacks.
    fn dispatch_io_events(&self) {
        let reactor = self.reactor.borrow();
        let mut events = reactor.events().peekable();
        if events.peek().is_none() {
            return;
        }
        let mut io = self.io.borrow_mut();
        for ev in events {
            io.dispatch(ev, &self.ready);
        }
    }

    /// Phase 3b: work injected from other threads (task wakes,
    /// `call_soon_threadsafe`, `stop`) joins the ready queue, in arrival
    /// order, all of it: asyncio's `call_soon_threadsafe` puts work on the
    /// ready queue at once, so everything posted before this iteration runs
    /// in it. (A cap, as tokio's inject budget, measured about 17% less CPU
    /// on a flood of posts, but would let timers overtake earlier posts.)
    /// One atomic load when there is none.
    #[inline]
    fn drain_injected(&self) {
        if self.remote.has_injected() {
            self.drain_remote();
        }
    }

    /// Phase 4: move every timer whose deadline has passed to the ready
    /// queue, earliest deadline first, ties in scheduling order.
    #[inline]
    fn collect_due_timers(&self) {
        if self.timers.borrow().is_empty() {
            return;
        }
        self.collect_due_timers_slow();
    }

    #[inline(never)]
    fn collect_due_timers_slow(&self) {
        let mut timers = self.timers.borrow_mut();
        let now = self.clock.now_ns();
        // Timers enter the wheel's due set at the start of their millisecond and fire in the
        // iterations that follow. With many timers pending, each handle was allocated long
        // before and is cold: load it when the wheel shows it (the timers of that tick and of
        // the next), while the loads of the whole batch overlap, rather than one cache miss at
        // a time as each one runs.
        timers.advance(now, |timer| {
            if let Timer::Handle(handle) = timer {
                std::hint::black_box(handle.cancelled());
            }
        });
        while let Some((key, _deadline, timer)) = timers.pop_expired(now) {
            match timer {
                Timer::Handle(handle) => self.ready.push(handle),
                // Woken where a handle would run: see `handle.rs`.
                Timer::Task(id) => {
                    self.timer_wakes.callback().fired(key, id);
                    self.ready
                        .push(Handle::from_inner(self.timer_wakes.clone()));
                }
            }
        }
    }

    /// Phase 5: run the callbacks that are ready now, and only those.
    fn run_ready<const HOOKS: bool>(self: &Rc<Self>) {
        let ntodo = self.ready.len();
        for _ in 0..ntodo {
            let Some(handle) = self.ready.pop() else {
                break;
            };
            if handle.cancelled() {
                continue;
            }
            self.run_handle::<HOOKS>(&handle);
            drop(handle);
            // A task that parked, or handles dropped meanwhile, may have
            // left tasks that nothing can wake (see `stuck.rs`).
            if !self.suspects.is_empty() {
                self.check_suspects();
            }
        }
    }

    /// The one place where user callbacks are entered. A panic is caught
    /// here and handed to the exception handler; the loop goes on. (A
    /// batch of `call_soon_threadsafe` calls, entered here, catches each
    /// call's panic itself, so that the rest of the batch runs: see
    /// `remote/batch.rs`.)
    #[inline]
    fn run_handle<const HOOKS: bool>(self: &Rc<Self>, handle: &Handle) {
        if HOOKS && self.debug.on() {
            return self.run_handle_debug(handle);
        }
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| handle.invoke())) {
            self.callback_panicked(handle, PanicError::new(payload));
        }
    }

    /// `run_handle` in debug mode: timed (see `debug.rs`), published to
    /// the watchdog, counted per task, and a slow one reported as asyncio
    /// does (`Executing <Handle ...> took 0.123 seconds`).
    #[inline(never)]
    fn run_handle_debug(self: &Rc<Self>, handle: &Handle) {
        let Some(batch) = handle.remote_batch() else {
            return self.run_timed(handle, || handle.invoke());
        };
        // Each call of a batch is a callback of its own here: timed,
        // watched and reported under its own name and site, with the
        // stuck-task check between calls as `run_ready` does between handles.
        batch.run_each(|call| {
            if !self.suspects.is_empty() {
                self.check_suspects();
            }
            let h = crate::remote::call_handle(call.name(), call.site());
            self.run_timed(&h, || call.run());
        });
    }

    /// The body of `run_handle_debug` for one callback: `invoke` runs it.
    fn run_timed(self: &Rc<Self>, handle: &Handle, invoke: impl FnOnce()) {
        let task = handle.task_header();
        let (site, number) = match task {
            Some(h) => (h.site(), h.number()),
            None => (handle.source_location(), 0),
        };
        let start = crate::debug::coarse_now_ns();
        self.debug.with_watchdog(|w| w.enter(site, number, start));
        if let Err(payload) = catch_unwind(AssertUnwindSafe(invoke)) {
            self.callback_panicked(handle, PanicError::new(payload));
        }
        // Coarse start, precise end: never below the true duration, so a
        // callback that ran the threshold is always reported (`debug.rs`).
        // The precise read is only paid near the threshold: a coarse end
        // lags the true one by a tick (about 4 ms), far less than the
        // half-threshold margin, so a callback the coarse clock puts
        // below half the threshold ran less than the threshold.
        let slow = self.debug.slow().as_nanos() as u64;
        let mut took = crate::debug::coarse_now_ns().saturating_sub(start);
        if took >= slow / 2 {
            took = crate::debug::precise_now_ns().saturating_sub(start);
        }
        self.debug.with_watchdog(|w| w.leave());
        if let Some(h) = task {
            h.record_step(took);
        }
        if took >= slow {
            let what = match task {
                Some(_) => crate::tasks::task_repr(handle),
                None => format!("{handle:?}"),
            };
            // Rounded up to the millisecond (asyncio's `%.3f` rounds to
            // nearest): the report never understates the duration.
            let ms = took.div_ceil(1_000_000);
            log::warn!(
                target: "asyncio",
                "Executing {what} took {}.{:03} seconds",
                ms / 1000,
                ms % 1000
            );
        }
    }

    #[cold]
    fn callback_panicked(self: &Rc<Self>, handle: &Handle, panic: PanicError) {
        let context = ExceptionContext::callback_panicked(handle, panic);
        LoopRef { core: self.clone() }.call_exception_handler(&context);
    }

    /// Phase 6: the fds that dispatched are rechecked by the next poll, so
    /// that one still ready runs its callback again (see `io.rs`).
    fn queue_level_rechecks(&self) {
        let mut io = self.io.borrow_mut();
        if io.has_dispatched() {
            io.queue_rechecks(&mut self.reactor.borrow_mut());
        }
    }
}
