//! The injection queue: an unbounded multi-producer, single-consumer FIFO
//! whose slots are also the shared state of the `ThreadsafeHandle`s.
//!
//! The layout is crossbeam-channel's unbounded channel
//! (`src/flavors/list.rs`): a linked list of blocks of `BLOCK_CAP` slots;
//! producers claim a slot with one compare-and-swap on the tail index, write
//! it, and set its `full` flag; the producer that claims a block's last slot
//! installs the next block (allocated before the claim, so others wait only
//! for two stores). Two changes make a post cost no allocation of its own:
//!
//! - A slot outlives its message. It keeps the callback's [`CallStatus`]
//!   (`status`) and creation site after the loop took the message, so the
//!   slot *is* the state a `ThreadsafeHandle` points to; the callback
//!   itself stays in the slot until the loop runs it. A block is freed when
//!   its last reference goes: one per slot for the handle side, one for the
//!   loop side (see *References*).
//! - Closing is crossbeam's disconnection: `MARK` set on the tail index.
//!   A claim is a compare-and-swap on that word, so every post is ordered
//!   before or after the close: before, and the closing drain waits for it
//!   and takes it; after, and the post is refused.
//!
//! [`CallStatus`]: super::CallStatus
//!
//! # Indices
//!
//! An index counts slots from the start, shifted left by `SHIFT` to leave
//! room for `MARK`. Each block covers one *lap* of `LAP` indices: offsets
//! `0..BLOCK_CAP` are its slots, offset `BLOCK_CAP` means "the next block is
//! being installed" (producers wait; the consumer steps to `next`).
//!
//! # References
//!
//! `refs` counts the handle side: one per slot (owned by the slot's
//! `ThreadsafeHandle`, and its clones, each of which adds one; for a slot
//! that will have no handle — a task wake, a stop, a slot never claimed — the
//! consumer or the queue's drop releases it), plus one for the whole loop
//! side. `loop_refs` counts the loop side: one per slot (released when its
//! message is finished: a callback run or dropped, a wake taken, a slot
//! never claimed), plus one while the consumer's head is in the block. The
//! loop side lives on its own cache line, so the loop's releases do not
//! bounce the line producers write.
//!
//! # Invariants
//!
//! - A producer dereferences a block only after claiming one of its slots;
//!   an unfinished slot holds a loop-side reference, so the block is alive.
//! - The message of a slot is written by exactly one producer, before
//!   `full` is set (release); it is read or moved out only by the consumer
//!   (after an acquire load of `full`), or by the holder of that slot's
//!   [`LoopSlot`], which clears `full` when it moves the message out.
//! - A block is freed once, by whoever releases its last reference, and only
//!   when every message has been moved out (the loop side is released last).

use std::alloc::{alloc_zeroed, handle_alloc_error, Layout};
use std::cell::UnsafeCell;
use std::mem::MaybeUninit;
use std::panic::Location;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicBool, AtomicPtr, AtomicU8, AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::task_slab::TaskId;

/// Indices per block: a power of two, so `% LAP` is a mask.
const LAP: usize = 32;
/// Slots per block; the last offset of a lap marks "installing the next".
/// 31 slots of 64 bytes: a block is about 2 KiB, one allocation per 31 posts.
const BLOCK_CAP: usize = LAP - 1;
/// Low bits of an index reserved for `MARK`.
const SHIFT: usize = 1;
/// Set in the tail index once the queue is closed.
const MARK: usize = 1;

/// A callback posted from another thread: runs once, and names itself for
/// the exception handler.
pub(crate) trait RemoteFn: Send {
    fn call(self: Box<Self>);
    fn name(&self) -> &'static str;
}

impl<F: FnOnce() + Send + 'static> RemoteFn for F {
    fn call(self: Box<Self>) {
        (*self)()
    }
    fn name(&self) -> &'static str {
        std::any::type_name::<F>()
    }
}

/// What a producer puts in a slot.
pub(crate) enum Message {
    /// `call_soon_threadsafe`; a zero-sized closure costs no allocation.
    Call(Box<dyn RemoteFn>),
    /// A task's waker, woken off the loop's thread.
    Wake(TaskId),
    /// `LoopHandle::stop`.
    Stop,
}

/// What the consumer takes from the queue.
pub(crate) enum Taken {
    /// The callback stays in its slot until the loop runs or drops it.
    Call(LoopSlot),
    Wake(TaskId),
    Stop,
}

struct Slot {
    /// The message cell holds a value: set (release) by the producer after
    /// writing it; cleared by the loop when it moves the callback out.
    full: AtomicBool,
    /// A `CallStatus` (`super::PENDING`…), shared with the handle.
    status: AtomicU8,
    /// Written by the producer with the message; read-only afterwards.
    site: UnsafeCell<MaybeUninit<&'static Location<'static>>>,
    /// Written by the loop just before it calls the callback, so that a
    /// panic can be reported under the callback's name.
    name: UnsafeCell<MaybeUninit<&'static str>>,
    message: UnsafeCell<MaybeUninit<Message>>,
}

/// Keeps `loop_refs` on a cache line of its own.
#[repr(align(64))]
struct CacheLine<T>(T);

struct Block {
    next: AtomicPtr<Block>,
    /// Handle side, plus one for the loop side (see *References*).
    refs: AtomicUsize,
    /// Loop side (see *References*).
    loop_refs: CacheLine<AtomicUsize>,
    slots: [Slot; BLOCK_CAP],
}

impl Block {
    fn new() -> Box<Block> {
        let layout = Layout::new::<Block>();
        // SAFETY: `Block` is not zero-sized.
        let p = unsafe { alloc_zeroed(layout) }.cast::<Block>();
        if p.is_null() {
            handle_alloc_error(layout);
        }
        // SAFETY: allocated with `Block`'s layout, as `Box` does, and
        // all-zero bytes are a valid `Block`: null `next`, zero counters,
        // empty slots (`full` false, status `PENDING` = 0) and `MaybeUninit`
        // fields. Zeroed memory, as crossbeam does, spares writing 2 KiB
        // per block.
        let b = unsafe { Box::from_raw(p) };
        b.refs.store(BLOCK_CAP + 1, Ordering::Relaxed);
        b.loop_refs.0.store(BLOCK_CAP + 1, Ordering::Relaxed);
        b
    }

    /// Releases `n` handle-side references; the last one frees the block.
    ///
    /// # Safety
    /// `block` is alive and the caller owns `n` handle-side references.
    unsafe fn release(block: NonNull<Block>, n: usize) {
        if n == 0 {
            return;
        }
        // SAFETY: alive, per the caller.
        let refs = unsafe { &block.as_ref().refs };
        if refs.fetch_sub(n, Ordering::Release) == n {
            // Pairs with the releases of every other reference, as `Arc`.
            fence(Ordering::Acquire);
            // SAFETY: that was the last reference; blocks come from
            // `Box::into_raw`; every message was moved out before the loop
            // side let go (module invariant), and no field needs dropping.
            drop(unsafe { Box::from_raw(block.as_ptr()) });
        }
    }

    /// Releases `n` loop-side references; the last one releases the loop
    /// side's handle-side reference.
    ///
    /// # Safety
    /// `block` is alive and the caller owns `n` loop-side references.
    unsafe fn release_loop(block: NonNull<Block>, n: usize) {
        // SAFETY: alive, per the caller.
        let loop_refs = unsafe { &block.as_ref().loop_refs.0 };
        if loop_refs.fetch_sub(n, Ordering::Release) == n {
            fence(Ordering::Acquire);
            // SAFETY: the loop side owned that reference.
            unsafe { Block::release(block, 1) }
        }
    }
}

/// A slot as its `ThreadsafeHandle` sees it: one handle-side reference.
pub(crate) struct HandleSlot {
    block: NonNull<Block>,
    offset: usize,
}

// SAFETY: through a `HandleSlot`, only the atomic `status`, the read-only
// `site` and the atomic `refs` are touched.
unsafe impl Send for HandleSlot {}
// SAFETY: as above.
unsafe impl Sync for HandleSlot {}

impl HandleSlot {
    fn slot(&self) -> &Slot {
        // SAFETY: this reference keeps the block alive.
        unsafe { &self.block.as_ref().slots[self.offset] }
    }

    pub(crate) fn status(&self) -> &AtomicU8 {
        &self.slot().status
    }

    pub(crate) fn site(&self) -> &'static Location<'static> {
        // SAFETY: written before the producer made this handle (the handle
        // reached other threads through a synchronizing `Send`), never after.
        unsafe { (*self.slot().site.get()).assume_init() }
    }
}

impl Clone for HandleSlot {
    fn clone(&self) -> Self {
        // SAFETY: alive (we hold a reference). Relaxed as `Arc::clone`.
        unsafe { self.block.as_ref() }
            .refs
            .fetch_add(1, Ordering::Relaxed);
        HandleSlot {
            block: self.block,
            offset: self.offset,
        }
    }
}

impl Drop for HandleSlot {
    fn drop(&mut self) {
        // SAFETY: we own one handle-side reference.
        unsafe { Block::release(self.block, 1) }
    }
}

/// A callback's slot as the loop holds it, from the drain until the
/// callback has run or been dropped: one loop-side reference. Not `Send`:
/// it stays on the thread that drained it.
pub(crate) struct LoopSlot {
    block: NonNull<Block>,
    offset: usize,
}

impl LoopSlot {
    fn slot(&self) -> &Slot {
        // SAFETY: this reference keeps the block alive.
        unsafe { &self.block.as_ref().slots[self.offset] }
    }

    pub(crate) fn status(&self) -> &AtomicU8 {
        &self.slot().status
    }

    pub(crate) fn site(&self) -> &'static Location<'static> {
        // SAFETY: written before `full` was set, which the drain saw.
        unsafe { (*self.slot().site.get()).assume_init() }
    }

    /// Moves the callback out of the slot; `None` the second time.
    pub(crate) fn take(&self) -> Option<Box<dyn RemoteFn>> {
        let slot = self.slot();
        if !slot.full.load(Ordering::Relaxed) {
            return None;
        }
        slot.full.store(false, Ordering::Relaxed);
        // SAFETY: `full` was set (the drain acquired it) and only this
        // `LoopSlot` reads the message; clearing `full` first makes this the
        // one move out. The drain made a `LoopSlot` only for a `Call`.
        match unsafe { (*slot.message.get()).assume_init_read() } {
            Message::Call(f) => {
                // SAFETY: only this `LoopSlot` touches `name`.
                unsafe { (*slot.name.get()).write(f.name()) };
                Some(f)
            }
            Message::Wake(_) | Message::Stop => unreachable!("a LoopSlot holds a call"),
        }
    }

    /// The callback's type name, once [`take`](Self::take) has run.
    pub(crate) fn name(&self) -> Option<&'static str> {
        if self.slot().full.load(Ordering::Relaxed) {
            return None;
        }
        // SAFETY: `full` is clear, so `take` wrote the name.
        Some(unsafe { (*self.slot().name.get()).assume_init() })
    }
}

impl Drop for LoopSlot {
    fn drop(&mut self) {
        // The owner (`RemoteCall`) took the callback, or reported and
        // dropped it, before this runs.
        debug_assert!(!self.slot().full.load(Ordering::Relaxed));
        // SAFETY: we own one loop-side reference.
        unsafe { Block::release_loop(self.block, 1) }
    }
}

/// The consumer's position; behind a mutex, taken once per drain.
struct Head {
    index: usize,
    /// The block holding `index`; the head owns one of its loop-side
    /// references.
    block: NonNull<Block>,
    /// Slots of `block` taken that have no handle (wakes, stops): their
    /// references are released together when the head leaves the block.
    handleless: usize,
}

// SAFETY: `Head` is only reached through the queue's mutex.
unsafe impl Send for Head {}

/// Waits for another thread to finish a short step (two stores away).
fn backoff(spins: &mut u32) {
    if *spins < 6 {
        for _ in 0..(1 << *spins) {
            std::hint::spin_loop();
        }
        *spins += 1;
    } else {
        std::thread::yield_now();
    }
}

pub(crate) struct Queue {
    tail_index: AtomicUsize,
    tail_block: AtomicPtr<Block>,
    head: Mutex<Head>,
}

impl Queue {
    pub(crate) fn new() -> Self {
        let first = NonNull::from(Box::leak(Block::new()));
        Queue {
            tail_index: AtomicUsize::new(0),
            tail_block: AtomicPtr::new(first.as_ptr()),
            head: Mutex::new(Head {
                index: 0,
                block: first,
                handleless: 0,
            }),
        }
    }

    /// Appends a message from any thread. For a `Call` the caller gets the
    /// slot's handle-side reference. Hands the message back once closed.
    ///
    /// The claim is a `SeqCst` read-modify-write of the tail index: the
    /// caller's later `SeqCst` check of the wake-up flag is ordered after it
    /// (see `Remote::post`).
    pub(crate) fn push(
        &self,
        site: &'static Location<'static>,
        message: Message,
    ) -> Result<Option<HandleSlot>, Message> {
        let mut spins = 0;
        let mut tail = self.tail_index.load(Ordering::Acquire);
        let mut block = self.tail_block.load(Ordering::Acquire);
        let mut next_block: Option<Box<Block>> = None;
        loop {
            if tail & MARK != 0 {
                return Err(message);
            }
            let offset = (tail >> SHIFT) % LAP;
            if offset == BLOCK_CAP {
                // Another producer is installing the next block.
                backoff(&mut spins);
                tail = self.tail_index.load(Ordering::Acquire);
                block = self.tail_block.load(Ordering::Acquire);
                continue;
            }
            if offset + 1 == BLOCK_CAP && next_block.is_none() {
                next_block = Some(Block::new());
            }
            match self.tail_index.compare_exchange_weak(
                tail,
                tail + (1 << SHIFT),
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(t) => {
                    tail = t;
                    block = self.tail_block.load(Ordering::Acquire);
                    std::hint::spin_loop();
                }
            }
        }
        let offset = (tail >> SHIFT) % LAP;
        // SAFETY: we claimed `offset` of `block` (the tail index had not
        // moved since `block` was read with it, and the block pointer is
        // stored before the index enters its lap), and an unfinished slot
        // keeps its block alive.
        let b = unsafe { &*block };
        if offset + 1 == BLOCK_CAP {
            let next = Box::into_raw(next_block.take().expect("allocated before the claim"));
            self.tail_block.store(next, Ordering::Release);
            self.tail_index.fetch_add(1 << SHIFT, Ordering::Release);
            b.next.store(next, Ordering::Release);
        }
        let slot = &b.slots[offset];
        let is_call = matches!(message, Message::Call(_));
        // SAFETY: the slot is ours until `full` is set; nobody reads it before.
        unsafe {
            (*slot.site.get()).write(site);
            (*slot.message.get()).write(message);
        }
        let handle = is_call.then(|| HandleSlot {
            block: NonNull::from(b),
            offset,
        });
        // After this store the block may be freed by others, unless `handle`
        // holds it: nothing below touches it.
        slot.full.store(true, Ordering::Release);
        Ok(handle)
    }

    /// Takes every message posted so far, in order, and gives it to `f`
    /// (which must not use the queue). Returns false if it stopped early at
    /// a slot a producer claimed but has not finished writing: the caller
    /// must look again soon.
    ///
    /// The tail is read with `SeqCst` after the caller's `SeqCst` reset of
    /// the wake-up flag (see `Remote::drain`).
    pub(crate) fn drain(&self, f: impl FnMut(Taken)) -> bool {
        let mut head = self.head.lock();
        let tail = self.tail_index.load(Ordering::SeqCst) & !MARK;
        Self::take_until(&mut head, tail, false, f)
    }

    /// Closes the queue (later pushes fail) and takes what it holds,
    /// waiting for the writes of pushes that claimed a slot before.
    pub(crate) fn close(&self, f: impl FnMut(Taken)) {
        let mut spins = 0;
        let mut tail = self.tail_index.fetch_or(MARK, Ordering::SeqCst);
        // A block installation in progress ends by moving the index past
        // the lap's end; wait for it, so that `tail` names a real slot.
        while (tail >> SHIFT) % LAP == BLOCK_CAP {
            backoff(&mut spins);
            tail = self.tail_index.load(Ordering::SeqCst);
        }
        let mut head = self.head.lock();
        let done = Self::take_until(&mut head, tail & !MARK, true, f);
        debug_assert!(done);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.tail_index.load(Ordering::SeqCst) & MARK != 0
    }

    fn take_until(head: &mut Head, tail: usize, wait: bool, mut f: impl FnMut(Taken)) -> bool {
        let mut spins = 0;
        while head.index >> SHIFT != tail >> SHIFT {
            let offset = (head.index >> SHIFT) % LAP;
            // SAFETY: the head owns a loop-side reference to its block.
            let block = unsafe { head.block.as_ref() };
            if offset == BLOCK_CAP {
                let next = block.next.load(Ordering::Acquire);
                let Some(next) = NonNull::new(next) else {
                    // Installed as tail block, not linked yet: two stores away.
                    if !wait {
                        return false;
                    }
                    backoff(&mut spins);
                    continue;
                };
                let old = std::mem::replace(&mut head.block, next);
                let handleless = std::mem::take(&mut head.handleless);
                // SAFETY: the head owned one loop-side reference to `old`,
                // and each handleless slot one of each side.
                unsafe {
                    Block::release(old, handleless);
                    Block::release_loop(old, 1 + handleless);
                }
                head.index = head.index.wrapping_add(1 << SHIFT);
                continue;
            }
            let slot = &block.slots[offset];
            if !slot.full.load(Ordering::Acquire) {
                if !wait {
                    return false;
                }
                backoff(&mut spins);
                continue;
            }
            // SAFETY: `full` (acquired) says the message is written; the
            // consumer visits each slot once. A `Call` stays in place for
            // its `LoopSlot`; the others are `Copy` data, read out here.
            let taken = match unsafe { (*slot.message.get()).assume_init_ref() } {
                Message::Call(_) => Taken::Call(LoopSlot {
                    block: head.block,
                    offset,
                }),
                Message::Wake(id) => {
                    head.handleless += 1;
                    Taken::Wake(*id)
                }
                Message::Stop => {
                    head.handleless += 1;
                    Taken::Stop
                }
            };
            head.index = head.index.wrapping_add(1 << SHIFT);
            f(taken);
        }
        true
    }
}

impl Drop for Queue {
    /// Frees what the queue still holds. The owner closed it first, so
    /// everything posted was taken; no producer can be running (`&mut`).
    fn drop(&mut self) {
        let tail = *self.tail_index.get_mut() & !MARK;
        let head = self.head.get_mut();
        debug_assert_eq!(head.index >> SHIFT, tail >> SHIFT, "close() drains");
        let offset = (head.index >> SHIFT) % LAP;
        // Slots never claimed hold one reference of each side.
        let unclaimed = BLOCK_CAP.saturating_sub(offset);
        // SAFETY: the head owns a loop-side reference; the unclaimed and
        // handleless slots own one of each side.
        unsafe {
            Block::release(head.block, unclaimed + head.handleless);
            Block::release_loop(head.block, 1 + unclaimed + head.handleless);
        }
    }
}
