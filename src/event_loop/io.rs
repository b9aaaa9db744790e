//! Readers and writers on raw fds: asyncio's `add_reader` / `add_writer`.
//!
//! asyncio keeps, per fd, a `(reader_handle, writer_handle)` pair in its
//! selector's key data (`Lib/asyncio/selector_events.py`), and its selectors
//! are **level-triggered**: while an fd stays readable, its reader runs on
//! every iteration. mio registers edge-triggered (`EPOLLET`), which reports an
//! fd once per change of state. This module restores asyncio's behaviour with
//! a **still-ready set**: after the run phase, every fd that dispatched a
//! callback is handed to the reactor for a recheck, and the next poll asks a
//! level-triggered epoll set holding the same registrations — one system
//! call for all of them — which are still ready. A reader that left data
//! behind is called again on the next iteration; a reader that drained its
//! fd is not, and hears of it again only through a new edge. The
//! alternative, re-arming each fd with `epoll_ctl(EPOLL_CTL_MOD)`, costs one
//! system call per fd: `benches/io.rs` measured it 1.4× slower at one fd and
//! 7× slower at 64 (figures in `docs/BENCHMARKS.md`).
//!
//! Both epoll sets register the *open file*, not its number (see the
//! reactor's docs): an fd closed without `remove_reader` falls out of them,
//! and its reader never runs for a new file that reuses the number. The
//! table still names the number until the next `add_*` or `remove_*` on it;
//! an `add_*` then finds the registration stale and starts afresh.
//!
//! # Invariants
//!
//! - One registration per fd; its interest is exactly "has a reader" /
//!   "has a writer". An fd with neither is deregistered and forgotten.
//! - A reader or writer runs only for the file it was registered for:
//!   events come from epoll registrations, which belong to that file and
//!   leave with it; a stale registration is replaced, never reused, by a
//!   later `add_*` on its number.
//! - A token names a slot *and its generation*: an event that arrives for a
//!   slot that was freed (and maybe reused) since the poll is ignored, so
//!   readiness that arrives after removal never runs a callback.
//! - Removing or replacing a reader/writer cancels its handle, so an event
//!   already turned into ready work for it is skipped by the run phase.
//! - A reader or writer is queued at most once per iteration, even when an
//!   edge and a recheck both report its fd.
//! - Rechecks are queued only for fds that dispatched a callback this
//!   iteration and are still registered.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;

use super::handle::Handle;
use super::ready::ReadyQueue;
use crate::reactor::{Event, Interest, Reactor};

/// Which side of an fd a callback serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Reader,
    Writer,
}

struct Slot {
    fd: RawFd,
    generation: u32,
    reader: Option<Handle>,
    writer: Option<Handle>,
    /// The reader / writer was queued in the current iteration.
    read_queued: bool,
    write_queued: bool,
}

impl Slot {
    fn interest(&self) -> Interest {
        Interest {
            read: self.reader.is_some(),
            write: self.writer.is_some(),
        }
    }
}

/// The fd → callbacks table.
pub(crate) struct IoRegistry {
    slots: Vec<Option<Slot>>,
    /// Generation of each slot index, kept across frees so tokens stay unique.
    generations: Vec<u32>,
    free: Vec<u32>,
    by_fd: HashMap<RawFd, u32>,
    /// Slots that queued a callback this iteration: the still-ready candidates.
    dispatched: Vec<u32>,
}

/// Token layout: slot index in the low 32 bits, generation in the high 32.
fn token(index: u32, generation: u32) -> usize {
    ((generation as usize) << 32) | index as usize
}

fn split(token: usize) -> (u32, u32) {
    (token as u32, (token >> 32) as u32)
}

impl IoRegistry {
    pub(crate) fn new() -> Self {
        IoRegistry {
            slots: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            by_fd: HashMap::new(),
            dispatched: Vec::new(),
        }
    }

    /// Installs `handle` as the reader or writer of `fd`, registering or
    /// re-registering the fd. Returns the handles it replaced, for the
    /// caller to cancel once no borrow is held: the one on the same side,
    /// or both of a stale registration (see below).
    ///
    /// An fd already in the table is re-registered even when its interest
    /// does not change: one `epoll_ctl` tells whether the registration is
    /// still that of the file now under the number. If the file was closed
    /// without `remove_reader` and the number reused, the old registration
    /// left epoll with the old file; its reader and writer (which were for
    /// that file) are dropped, and the new file is registered afresh under
    /// a new token.
    pub(crate) fn add(
        &mut self,
        reactor: &mut Reactor,
        fd: RawFd,
        side: Side,
        handle: Handle,
    ) -> io::Result<Vec<Handle>> {
        let mut replaced = Vec::new();
        if let Some(&index) = self.by_fd.get(&fd) {
            let slot = self.slots[index as usize]
                .as_mut()
                .expect("by_fd names a live slot");
            let mut after = slot.interest();
            match side {
                Side::Reader => after.read = true,
                Side::Writer => after.write = true,
            }
            match reactor.reregister(fd, token(index, slot.generation), after) {
                Ok(()) => {
                    let old = match side {
                        Side::Reader => slot.reader.replace(handle),
                        Side::Writer => slot.writer.replace(handle),
                    };
                    replaced.extend(old);
                    return Ok(replaced);
                }
                Err(e) if Reactor::is_stale(&e) => {
                    replaced.extend(slot.reader.take());
                    replaced.extend(slot.writer.take());
                    // Only the count of sources is left to undo: the kernel
                    // dropped the registration when the file closed.
                    let _ = reactor.deregister(fd);
                    self.free_slot(index);
                }
                Err(e) => return Err(e),
            }
        }

        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                self.generations.push(0);
                (self.slots.len() - 1) as u32
            }
        };
        let generation = self.generations[index as usize];
        let mut slot = Slot {
            fd,
            generation,
            reader: None,
            writer: None,
            read_queued: false,
            write_queued: false,
        };
        match side {
            Side::Reader => slot.reader = Some(handle),
            Side::Writer => slot.writer = Some(handle),
        }
        if let Err(e) = reactor.register(fd, token(index, generation), slot.interest()) {
            self.free.push(index);
            return Err(e);
        }
        self.slots[index as usize] = Some(slot);
        self.by_fd.insert(fd, index);
        Ok(replaced)
    }

    /// Removes the reader or writer of `fd`. Returns it (for the caller to
    /// cancel), or `None` if there was none — asyncio's `remove_reader`
    /// returns `False` then.
    pub(crate) fn remove(
        &mut self,
        reactor: &mut Reactor,
        fd: RawFd,
        side: Side,
    ) -> Option<Handle> {
        let &index = self.by_fd.get(&fd)?;
        let slot = self.slots[index as usize]
            .as_mut()
            .expect("by_fd names a live slot");
        let old = match side {
            Side::Reader => slot.reader.take(),
            Side::Writer => slot.writer.take(),
        }?;
        let interest = slot.interest();
        if interest.is_empty() {
            // An fd closed while registered has already left epoll (close(2)
            // removes it); the error that deregister then returns changes nothing.
            if let Err(e) = reactor.deregister(fd) {
                log::debug!(target: "asyncio", "deregistering fd {fd}: {e}");
            }
            self.free_slot(index);
        } else if let Err(e) = reactor.reregister(fd, token(index, slot.generation), interest) {
            log::debug!(target: "asyncio", "narrowing interest of fd {fd}: {e}");
        }
        Some(old)
    }

    fn free_slot(&mut self, index: u32) {
        if let Some(slot) = self.slots[index as usize].take() {
            self.by_fd.remove(&slot.fd);
            // A new generation makes every token handed out for this slot stale.
            let g = &mut self.generations[index as usize];
            *g = g.wrapping_add(1);
            self.free.push(index);
        }
    }

    /// Turns one readiness event into ready work. Called in the loop's
    /// dispatch phase; pushes handles, never runs them.
    pub(crate) fn dispatch(&mut self, ev: Event, ready: &ReadyQueue) {
        let (index, generation) = split(ev.token);
        let Some(Some(slot)) = self.slots.get_mut(index as usize) else {
            return;
        };
        if slot.generation != generation {
            return; // the fd was removed after the kernel queued this event
        }
        let first = !slot.read_queued && !slot.write_queued;
        if ev.readable && !slot.read_queued {
            if let Some(h) = slot.reader.as_ref().filter(|h| !h.cancelled()) {
                ready.push(h.clone());
                slot.read_queued = true;
            }
        }
        if ev.writable && !slot.write_queued {
            if let Some(h) = slot.writer.as_ref().filter(|h| !h.cancelled()) {
                ready.push(h.clone());
                slot.write_queued = true;
            }
        }
        if first && (slot.read_queued || slot.write_queued) {
            self.dispatched.push(index);
        }
    }

    /// True when some fd dispatched this iteration.
    pub(crate) fn has_dispatched(&self) -> bool {
        !self.dispatched.is_empty()
    }

    /// Hands every fd that dispatched this iteration, and is still
    /// registered, to the reactor for a recheck at the next poll: asyncio's
    /// level-triggered behaviour (see the module docs).
    pub(crate) fn queue_rechecks(&mut self, reactor: &mut Reactor) {
        for index in self.dispatched.drain(..) {
            let Some(Some(slot)) = self.slots.get_mut(index as usize) else {
                continue;
            };
            slot.read_queued = false;
            slot.write_queued = false;
            let interest = slot.interest();
            if !interest.is_empty() {
                reactor.recheck(slot.fd, token(index, slot.generation), interest);
            }
        }
    }

    /// Forgets every fd (the loop is closing), returning the handles so the
    /// caller can drop them after releasing its borrows.
    pub(crate) fn take_all(&mut self, reactor: &mut Reactor) -> Vec<Handle> {
        let mut handles = Vec::new();
        for index in 0..self.slots.len() as u32 {
            if let Some(slot) = self.slots[index as usize].as_mut() {
                let fd = slot.fd;
                handles.extend(slot.reader.take());
                handles.extend(slot.writer.take());
                let _ = reactor.deregister(fd);
                self.free_slot(index);
            }
        }
        self.dispatched.clear();
        handles
    }
}
