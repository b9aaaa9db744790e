//! The injection queue: an unbounded multi-producer, single-consumer FIFO
//! whose slots are also the shared state of the `ThreadsafeHandle`s.
//!
//! The layout is crossbeam-channel's unbounded channel
//! (`src/flavors/list.rs`): a linked list of blocks of `BLOCK_CAP` slots;
//! producers claim a slot with one compare-and-swap on the tail index, write
//! it, and set its `FULL` bit; the producer that claims a block's last slot
//! installs the next block (allocated before the claim, so others wait only
//! for two stores). Two changes make a post cost no allocation of its own:
//!
//! - A slot outlives its message. It keeps the callback's [`CallStatus`]
//!   and creation site after the loop took the message, so the slot *is*
//!   the state a `ThreadsafeHandle` points to; the callback itself stays in
//!   the slot until the loop runs it. A block is freed when every slot in
//!   it is dead and both consumer cursors have left it (see *Slot state*).
//! - The consumer has two cursors. The *head* takes messages (the drain):
//!   it hands task wakes and stops out at once, but only counts the calls,
//!   which stay in their slots. The *runner* trails it and runs (or drops)
//!   those calls when the loop gets to them. So draining a call allocates
//!   nothing on the loop's side either: the loop queues one marker per run
//!   of consecutive calls (see `batch.rs`), not one handle per call.
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
//! # Slot state
//!
//! One atomic word per slot, so that everything a post, a cancel, a run
//! and a handle's drop do to a slot stays on the slot's own cache line:
//!
//! - bits 0–1, the status (`PENDING`, `RAN`, `CANCELLED`, `DROPPED`): leaves
//!   `PENDING` once, by compare-and-swap (run, cancel, drop at close);
//! - `FULL`: set (release) by the producer once the message is written;
//!   never cleared;
//! - `FINISHED`: the loop is done with the slot (its message was taken and
//!   run or dropped); set once, by the loop (for a call, by the runner, in
//!   the same compare-and-swap that moves the status out of `PENDING`);
//! - `WAKE`, `STOP`: which message the payload holds, set with `FULL`
//!   (neither: a call);
//! - bits 6 and up: how many `ThreadsafeHandle`s point at the slot.
//!
//! A slot is *dead* once `FINISHED` is set and no handle points at it
//! (a wake or stop has no handle: it is dead once taken; a slot never
//! claimed is dead when the queue is dropped). Whoever makes it dead —
//! usually the loop, as a handle is typically dropped at once — releases
//! one of the block's `live` count, which starts at `BLOCK_CAP` plus one
//! for each consumer cursor (head, runner); the last release frees the
//! block. A cursor counts the slots it makes dead and releases them with
//! its own count when it leaves the block: one atomic per block, not per
//! slot. `live` sits on its own cache line, away from the line producers
//! claim and link on.
//!
//! # Invariants
//!
//! - A producer dereferences a block only after claiming one of its slots;
//!   the runner's count keeps every block it has not left alive, and a
//!   claimed slot is ahead of the runner.
//! - The message of a slot is written by exactly one producer, before
//!   `FULL` is set (release); it is read only by the consumer after an
//!   acquire load of `FULL`: a wake by the head, a call moved out once by
//!   the runner, which passes each index once.
//! - The runner never passes the head: it only runs up to an index a drain
//!   handed out (`Taken::Calls::end`). Calls therefore run in queue order,
//!   whichever marker reaches them.
//! - A block is freed once, by whoever releases its last `live` count, and
//!   only when every message has been moved out (a slot is dead only after
//!   its message is gone).

use std::alloc::{alloc_zeroed, handle_alloc_error, Layout};
use std::cell::{Cell, UnsafeCell};
use std::mem::{ManuallyDrop, MaybeUninit};
use std::panic::Location;
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::task_slab::TaskId;

/// Indices per block: a power of two, so `% LAP` is a mask.
const LAP: usize = 32;
/// Slots per block; the last offset of a lap marks "installing the next".
/// 31 slots of 32 bytes: a block is about 1 KiB, one allocation per 31 posts.
const BLOCK_CAP: usize = LAP - 1;
/// A new block's `live` count: its slots, the head and the runner.
const FRESH_LIVE: usize = BLOCK_CAP + 2;
/// Low bits of an index reserved for `MARK`.
const SHIFT: usize = 1;
/// Set in the tail index once the queue is closed.
const MARK: usize = 1;

/// A callback posted from another thread: runs once, and names itself for
/// the exception handler.
pub(crate) trait RemoteFn: Send {
    /// Runs it; if it panics, `site` and its name are left for
    /// [`take_unwound`] on the way out.
    fn call(self: Box<Self>, site: &'static Location<'static>);
    fn name(&self) -> &'static str;
}

impl<F: FnOnce() + Send + 'static> RemoteFn for F {
    #[inline]
    fn call(self: Box<Self>, site: &'static Location<'static>) {
        // Dropped only by an unwind: a call that returns costs nothing more.
        let unwinding = Unwound(std::any::type_name::<F>(), site);
        (*self)();
        std::mem::forget(unwinding);
    }
    fn name(&self) -> &'static str {
        std::any::type_name::<F>()
    }
}

thread_local! {
    /// The last call that panicked on this thread, for its report: the loop
    /// catches the panic further out, where the call is gone.
    static UNWOUND: Cell<Option<(&'static str, &'static Location<'static>)>> =
        const { Cell::new(None) };
}

/// Records a call as the one that panicked, when dropped by an unwind.
struct Unwound(&'static str, &'static Location<'static>);

impl Drop for Unwound {
    #[cold]
    fn drop(&mut self) {
        UNWOUND.with(|u| u.set(Some((self.0, self.1))));
    }
}

/// Name and site of the call that last panicked on this thread, once.
pub(crate) fn take_unwound() -> Option<(&'static str, &'static Location<'static>)> {
    UNWOUND.with(|u| u.take())
}

/// What a producer posts.
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
    /// Consecutive calls, the last one just before index `end`. They stay
    /// in their slots; [`Queue::consume`] up to `end` runs them.
    Calls {
        end: usize,
    },
    Wake(TaskId),
    Stop,
}

/// Status values (bits 0–1 of a slot's state).
pub(crate) const PENDING: usize = 0;
pub(crate) const RAN: usize = 1;
pub(crate) const CANCELLED: usize = 2;
pub(crate) const DROPPED: usize = 3;
const STATUS: usize = 0b11;
/// The message is written.
const FULL: usize = 1 << 2;
/// The loop is done with the slot.
const FINISHED: usize = 1 << 3;
/// The message is a task wake (else a call, or a stop).
const WAKE: usize = 1 << 4;
/// The message is a stop.
const STOP: usize = 1 << 5;
/// One `ThreadsafeHandle` (the count is `state >> HANDLES`).
const HANDLES: u32 = 6;
const HANDLE: usize = 1 << HANDLES;

struct Slot {
    /// See *Slot state*.
    state: AtomicUsize,
    /// Written by the producer with the message; read-only afterwards.
    site: UnsafeCell<MaybeUninit<&'static Location<'static>>>,
    /// The message, its kind in `state`: a union, so that a slot is 32
    /// bytes (an enum of a fat pointer and a `TaskId` would be 24).
    payload: UnsafeCell<MaybeUninit<Payload>>,
}

union Payload {
    call: ManuallyDrop<Box<dyn RemoteFn>>,
    wake: TaskId,
}

// Two slots per cache line: the footprint of a queue that grows faster than
// the loop drains it is what costs (page faults), more than line sharing.
const _: () = assert!(std::mem::size_of::<Slot>() == 32);

impl Slot {
    /// Status `PENDING` → `to`, keeping the other bits; false if the
    /// callback had already left `PENDING`.
    fn transition(&self, to: usize) -> bool {
        self.state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s & STATUS == PENDING).then_some(s & !STATUS | to)
            })
            .is_ok()
    }
}

/// Keeps a hot field on a cache line of its own.
#[repr(align(64))]
pub(crate) struct CacheLine<T>(pub(crate) T);

/// The fields are 64 bytes apart rather than aligned to cache lines: a
/// 64-byte-aligned block would go through `posix_memalign` and a separate
/// `memset` instead of `calloc`, which the profile showed dearly.
#[repr(C)]
struct Block {
    next: AtomicPtr<Block>,
    /// Where the block goes when it dies: an `Arc::into_raw` it owns.
    pool: *const Pool,
    _pad0: [u8; 48],
    /// Slots not dead yet, plus one per consumer cursor not past it.
    live: AtomicUsize,
    _pad1: [u8; 56],
    slots: [Slot; BLOCK_CAP],
}

impl Block {
    /// The slot of an offset. Consecutive offsets are two slots apart (mod
    /// 31), so the two slots of a cache line are offsets 16 apart: two
    /// producers claiming neighbouring offsets do not write the same line.
    #[inline]
    fn slot(&self, offset: usize) -> &Slot {
        &self.slots[offset * 2 % BLOCK_CAP]
    }

    fn new(pool: &Arc<Pool>) -> Box<Block> {
        let layout = Layout::new::<Block>();
        // SAFETY: `Block` is not zero-sized.
        let p = unsafe { alloc_zeroed(layout) }.cast::<Block>();
        if p.is_null() {
            handle_alloc_error(layout);
        }
        // SAFETY: allocated with `Block`'s layout, as `Box` does, and
        // all-zero bytes are a valid `Block`: null `next` and `pool`, empty
        // slots (status `PENDING`, no bit set) and `MaybeUninit` fields.
        // Zeroed memory, as crossbeam does, spares writing the block twice.
        let mut b = unsafe { Box::from_raw(p) };
        b.pool = Arc::into_raw(pool.clone());
        b.live.store(FRESH_LIVE, Ordering::Relaxed);
        b
    }

    /// Releases `n` of the block's `live` count; the last one gives the
    /// block back to its pool (or frees it, once the queue is closed).
    ///
    /// # Safety
    /// `block` is alive and the caller owns `n` of its count (`n` slots it
    /// made dead, or the head).
    unsafe fn release(block: NonNull<Block>, n: usize) {
        if n == 0 {
            return;
        }
        // SAFETY: alive, per the caller.
        let b = unsafe { block.as_ref() };
        if b.live.fetch_sub(n, Ordering::Release) != n {
            return;
        }
        // Pairs with every other release, as `Arc`'s drop does.
        fence(Ordering::Acquire);
        // That was the last count: every message was moved out before its
        // slot died, and nobody else can reach the block. Make it new again.
        for slot in &b.slots {
            slot.state.store(0, Ordering::Relaxed);
        }
        b.next.store(std::ptr::null_mut(), Ordering::Relaxed);
        b.live.store(FRESH_LIVE, Ordering::Relaxed);
        // SAFETY: the block owns a count of its pool, so the pool is alive.
        let pool = unsafe { &*b.pool };
        let mut blocks = pool.blocks.lock();
        if let Some(blocks) = blocks.as_mut() {
            blocks.push(block);
        } else {
            drop(blocks);
            // SAFETY: blocks come from `Box::into_raw`, and this is the only
            // owner left.
            drop(unsafe { Box::from_raw(block.as_ptr()) });
        }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if !self.pool.is_null() {
            // SAFETY: `pool` is an `Arc::into_raw` this block owns.
            drop(unsafe { Arc::from_raw(self.pool) });
        }
    }
}

/// Dead blocks, for producers to reuse. Blocks are freed on the loop's
/// thread but allocated on the producers': without reuse, glibc hands the
/// memory back to the producers' arenas, trims it and faults it in again
/// on the next burst (the profile of two producers posting 1M callbacks
/// showed a third of the time in page faults and malloc). So while a burst
/// lasts, the pool keeps every block the runner frees.
///
/// Not for longer: once the loop finds the queue empty (a burst is over),
/// [`Queue::trim_pool`] frees all but [`POOL_RESERVE`] blocks, and closing
/// frees them all, whoever still holds a `LoopHandle`. (Kept until the
/// loop was dropped, and then as long as any `LoopHandle` lived, a burst of
/// 10 million posts left 355 MiB resident.) A mutex is enough: it is taken
/// once per `BLOCK_CAP` posts, and once per burst to trim.
struct Pool {
    /// `None` once the queue is closed: dying blocks are freed.
    blocks: Mutex<Option<Vec<NonNull<Block>>>>,
}

/// Blocks a drained pool keeps: about 70 KiB, room for 1,984 posts, so
/// that the small bursts of an ordinary program allocate nothing.
pub(crate) const POOL_RESERVE: usize = 64;

/// The size of one block, for the pool's byte count.
pub(crate) const BLOCK_BYTES: usize = std::mem::size_of::<Block>();

impl Pool {
    /// Frees the pooled blocks beyond `keep`; with `keep == None`, all of
    /// them and the pool with them (later dead blocks are freed at once).
    fn shrink(&self, keep: Option<usize>) {
        let surplus = {
            let mut blocks = self.blocks.lock();
            match keep {
                Some(keep) => match blocks.as_mut() {
                    Some(b) if b.len() > keep => {
                        let surplus = b.split_off(keep);
                        b.shrink_to(keep);
                        surplus
                    }
                    _ => return,
                },
                None => blocks.take().unwrap_or_default(),
            }
        };
        // Freed after the lock is released: producers need not wait.
        for b in surplus {
            // SAFETY: a pooled block is owned by the pool; split off (or
            // taken), it is owned by this vector alone.
            drop(unsafe { Box::from_raw(b.as_ptr()) });
        }
    }

    fn len(&self) -> usize {
        self.blocks.lock().as_ref().map_or(0, Vec::len)
    }
}

// SAFETY: the pool only stores pointers to dead blocks, which nobody else
// reaches; whoever pops one owns it.
unsafe impl Send for Pool {}
// SAFETY: as above; the vector is behind the mutex.
unsafe impl Sync for Pool {}

/// A slot as its `ThreadsafeHandle` sees it: one of the slot's handle count.
pub(crate) struct HandleSlot {
    block: NonNull<Block>,
    /// In `block`: kept as a pointer so that a handle's drop, on the
    /// producer's hot path, does no index arithmetic.
    slot: NonNull<Slot>,
}

// SAFETY: through a `HandleSlot`, only the atomic `state`, the read-only
// `site` and the atomic `live` are touched.
unsafe impl Send for HandleSlot {}
// SAFETY: as above.
unsafe impl Sync for HandleSlot {}

impl HandleSlot {
    #[inline]
    fn slot(&self) -> &Slot {
        // SAFETY: a handle keeps its slot from dying, so the block is alive.
        unsafe { self.slot.as_ref() }
    }

    /// The status bits (`PENDING`…).
    pub(crate) fn status(&self) -> usize {
        self.slot().state.load(Ordering::Acquire) & STATUS
    }

    /// `PENDING` → `to` (a cancel); false if it had left `PENDING`.
    pub(crate) fn transition(&self, to: usize) -> bool {
        self.slot().transition(to)
    }

    pub(crate) fn site(&self) -> &'static Location<'static> {
        // SAFETY: written before the producer made this handle (the handle
        // reached other threads through a synchronizing `Send`), never after.
        unsafe { (*self.slot().site.get()).assume_init() }
    }
}

impl Clone for HandleSlot {
    fn clone(&self) -> Self {
        // Relaxed, as `Arc::clone`: the new handle is made from a live one.
        let old = self.slot().state.fetch_add(HANDLE, Ordering::Relaxed);
        if old > usize::MAX / 2 {
            // As `Arc`: billions of leaked clones; do not wrap around.
            std::process::abort();
        }
        HandleSlot {
            block: self.block,
            slot: self.slot,
        }
    }
}

impl Drop for HandleSlot {
    #[inline]
    fn drop(&mut self) {
        let old = self.slot().state.fetch_sub(HANDLE, Ordering::AcqRel);
        if old & FINISHED != 0 && old >> HANDLES == 1 {
            // The last handle of a finished slot: it is dead, and ours.
            // SAFETY: the block is alive until this release.
            unsafe { Block::release(self.block, 1) }
        }
    }
}

/// A call the runner reached: moved out of its slot, which is finished.
pub(crate) struct Call {
    f: Box<dyn RemoteFn>,
    site: &'static Location<'static>,
}

impl Call {
    /// Runs the callback (see [`RemoteFn::call`] for a panic).
    #[inline]
    pub(crate) fn run(self) {
        self.f.call(self.site)
    }

    /// Drops the callback without running it; a destructor that panics is
    /// reported under the call's name, as a panic in `run` is.
    pub(crate) fn discard(self) {
        let unwinding = Unwound(self.f.name(), self.site);
        drop(self.f);
        std::mem::forget(unwinding);
    }

    /// The callback's type name.
    pub(crate) fn name(&self) -> &'static str {
        self.f.name()
    }

    /// Where it was posted.
    pub(crate) fn site(&self) -> &'static Location<'static> {
        self.site
    }
}

/// The consumer's position; behind a mutex, taken once per drain.
struct Head {
    index: usize,
    /// The block holding `index`; the head owns one of its `live` count.
    block: NonNull<Block>,
    /// Slots of `block` taken and dead at once (wakes, stops): released
    /// together when the head leaves the block.
    dead: usize,
}

// SAFETY: `Head` is only reached through the queue's mutex.
unsafe impl Send for Head {}

/// The consumer's second position: the calls before it have run or been
/// dropped, those between it and the head wait in their slots.
struct Runner {
    index: usize,
    /// The block holding `index`; the runner owns one of its `live` count.
    block: NonNull<Block>,
    /// Slots of `block` whose calls it finished with no handle left:
    /// released together when it leaves the block.
    dead: usize,
}

// SAFETY: a `Runner` is only reached through the queue's mutex, or owned by
// the one `consume` that took it out.
unsafe impl Send for Runner {}

/// The consumer's line: touched by the loop only.
struct Consumer {
    head: Mutex<Head>,
    /// `None` while a `consume` holds it: calls run with no lock held, so
    /// that they may post or drain.
    runner: Mutex<Option<Runner>>,
    /// Calls handed out by drains, and calls consumed (run or dropped):
    /// the difference is what waits in the slots. Each has one writer (the
    /// head's holder, the runner's), so a plain load and store updates it.
    drained: AtomicUsize,
    consumed: AtomicUsize,
}

/// Puts the runner back when `consume` ends, also by a panic.
struct Running<'q> {
    consumer: &'q Consumer,
    runner: Option<Runner>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        *self.consumer.runner.lock() = self.runner.take();
    }
}

/// Adds to a counter only its owner writes (see `Consumer`).
#[inline]
fn bump(counter: &AtomicUsize, n: usize) {
    counter.store(
        counter.load(Ordering::Relaxed).wrapping_add(n),
        Ordering::Relaxed,
    );
}

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
    pool: Arc<Pool>,
    /// Producers' line: claimed by compare-and-swap on every post.
    tail: CacheLine<Tail>,
    /// The consumer's line.
    consumer: CacheLine<Consumer>,
}

struct Tail {
    index: AtomicUsize,
    block: AtomicPtr<Block>,
}

impl Queue {
    pub(crate) fn new() -> Self {
        let pool = Arc::new(Pool {
            blocks: Mutex::new(Some(Vec::new())),
        });
        let first = NonNull::from(Box::leak(Block::new(&pool)));
        Queue {
            pool,
            tail: CacheLine(Tail {
                index: AtomicUsize::new(0),
                block: AtomicPtr::new(first.as_ptr()),
            }),
            consumer: CacheLine(Consumer {
                head: Mutex::new(Head {
                    index: 0,
                    block: first,
                    dead: 0,
                }),
                runner: Mutex::new(Some(Runner {
                    index: 0,
                    block: first,
                    dead: 0,
                })),
                drained: AtomicUsize::new(0),
                consumed: AtomicUsize::new(0),
            }),
        }
    }

    /// A dead block from the pool if there is one, else a new one.
    fn new_block(&self) -> Box<Block> {
        let reused = self.pool.blocks.lock().as_mut().and_then(|b| b.pop());
        match reused {
            // SAFETY: a pooled block was reset and given up by its last
            // owner (`Block::release`); popping it made us its only owner.
            Some(b) => unsafe { Box::from_raw(b.as_ptr()) },
            None => Block::new(&self.pool),
        }
    }

    /// Appends a message from any thread. For a `Call` the caller gets the
    /// slot's handle-side reference. Hands the message back once closed.
    ///
    /// The claim is a `SeqCst` read-modify-write of the tail index: the
    /// caller's later `SeqCst` check of the wake-up flag is ordered after it
    /// (see `Remote::post`).
    #[inline]
    pub(crate) fn push(
        &self,
        site: &'static Location<'static>,
        message: Message,
    ) -> Result<Option<HandleSlot>, Message> {
        let mut spins = 0;
        let mut tail = self.tail.0.index.load(Ordering::Acquire);
        let mut block = self.tail.0.block.load(Ordering::Acquire);
        let mut next_block: Option<Box<Block>> = None;
        loop {
            if tail & MARK != 0 {
                return Err(message);
            }
            let offset = (tail >> SHIFT) % LAP;
            if offset == BLOCK_CAP {
                // Another producer is installing the next block.
                backoff(&mut spins);
                tail = self.tail.0.index.load(Ordering::Acquire);
                block = self.tail.0.block.load(Ordering::Acquire);
                continue;
            }
            if offset + 1 == BLOCK_CAP && next_block.is_none() {
                next_block = Some(self.new_block());
            }
            match self.tail.0.index.compare_exchange_weak(
                tail,
                tail + (1 << SHIFT),
                Ordering::SeqCst,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(t) => {
                    tail = t;
                    block = self.tail.0.block.load(Ordering::Acquire);
                    std::hint::spin_loop();
                }
            }
        }
        let offset = (tail >> SHIFT) % LAP;
        // SAFETY: we claimed `offset` of `block` (the tail index had not
        // moved since `block` was read with it, and the block pointer is
        // stored before the index enters its lap), and the runner, behind
        // our unwritten slot, holds a count of the block.
        let b = unsafe { &*block };
        if offset + 1 == BLOCK_CAP {
            let next = Box::into_raw(next_block.take().expect("allocated before the claim"));
            self.tail.0.block.store(next, Ordering::Release);
            self.tail.0.index.fetch_add(1 << SHIFT, Ordering::Release);
            b.next.store(next, Ordering::Release);
        }
        let slot = b.slot(offset);
        let (payload, kind) = match message {
            Message::Call(f) => (
                Some(Payload {
                    call: ManuallyDrop::new(f),
                }),
                0,
            ),
            Message::Wake(id) => (Some(Payload { wake: id }), WAKE),
            Message::Stop => (None, STOP),
        };
        let is_call = kind == 0;
        // SAFETY: the slot is ours until `FULL` is set; nobody reads it before.
        unsafe {
            (*slot.site.get()).write(site);
            if let Some(payload) = payload {
                (*slot.payload.get()).write(payload);
            }
        }
        // The slot's state is still all zero (nobody else touches an
        // unwritten slot): one store publishes the message and, for a call,
        // the handle returned below.
        let handle = is_call.then(|| HandleSlot {
            block: NonNull::from(b),
            slot: NonNull::from(slot),
        });
        let state = if is_call { FULL | HANDLE } else { FULL | kind };
        // After this store the block may be freed by others, unless `handle`
        // holds it: nothing below touches it.
        slot.state.store(state, Ordering::Release);
        Ok(handle)
    }

    /// Takes the messages posted so far, in order, at most `limit` of them,
    /// and gives them to `f` (which must not use the queue). Returns false
    /// if it stopped early — at the limit, or at a slot a producer claimed
    /// but has not finished writing: the caller must look again soon.
    ///
    /// The tail is read with `SeqCst` after the caller's `SeqCst` reset of
    /// the wake-up flag (see `Remote::drain`).
    pub(crate) fn drain(&self, limit: usize, f: impl FnMut(Taken)) -> bool {
        let mut head = self.consumer.0.head.lock();
        let tail = self.tail.0.index.load(Ordering::SeqCst) & !MARK;
        self.take_until(&mut head, tail, false, limit, f)
    }

    /// Closes the queue (later pushes fail) and takes what it holds,
    /// waiting for the writes of pushes that claimed a slot before. Returns
    /// the end of the queue: consuming up to it reaches every call.
    pub(crate) fn close(&self, f: impl FnMut(Taken)) -> usize {
        let mut spins = 0;
        let mut tail = self.tail.0.index.fetch_or(MARK, Ordering::SeqCst);
        // A block installation in progress ends by moving the index past
        // the lap's end; wait for it, so that `tail` names a real slot.
        while (tail >> SHIFT) % LAP == BLOCK_CAP {
            backoff(&mut spins);
            tail = self.tail.0.index.load(Ordering::SeqCst);
        }
        let mut head = self.consumer.0.head.lock();
        let done = self.take_until(&mut head, tail & !MARK, true, usize::MAX, f);
        debug_assert!(done);
        // No post will need a block again: give the memory back now, not
        // when the last `LoopHandle` goes.
        self.pool.shrink(None);
        head.index
    }

    /// The loop found the queue empty: a burst is over. Frees the pooled
    /// blocks beyond a small reserve (see [`Pool`]).
    pub(crate) fn trim_pool(&self) {
        self.pool.shrink(Some(POOL_RESERVE));
    }

    /// Blocks waiting in the pool for reuse.
    pub(crate) fn pooled_blocks(&self) -> usize {
        self.pool.len()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.tail.0.index.load(Ordering::SeqCst) & MARK != 0
    }

    fn take_until(
        &self,
        head: &mut Head,
        tail: usize,
        wait: bool,
        mut limit: usize,
        mut f: impl FnMut(Taken),
    ) -> bool {
        let mut spins = 0;
        // Calls taken since the last item handed out: handed out as one
        // `Taken::Calls` before the next wake or stop, and at the end.
        let mut calls = 0;
        let hand_out = |end: usize, calls: &mut usize, f: &mut dyn FnMut(Taken)| {
            if *calls > 0 {
                bump(&self.consumer.0.drained, *calls);
                f(Taken::Calls { end });
                *calls = 0;
            }
        };
        let done = loop {
            if head.index >> SHIFT == tail >> SHIFT {
                break true;
            }
            if limit == 0 {
                break false;
            }
            let offset = (head.index >> SHIFT) % LAP;
            // SAFETY: the head owns one of its block's count.
            let block = unsafe { head.block.as_ref() };
            if offset == BLOCK_CAP {
                let next = block.next.load(Ordering::Acquire);
                let Some(next) = NonNull::new(next) else {
                    // Installed as tail block, not linked yet: two stores away.
                    if !wait {
                        break false;
                    }
                    backoff(&mut spins);
                    continue;
                };
                let old = std::mem::replace(&mut head.block, next);
                let dead = std::mem::take(&mut head.dead);
                // SAFETY: the head owned one of `old`'s count, and one per
                // slot it made dead.
                unsafe { Block::release(old, 1 + dead) };
                head.index = head.index.wrapping_add(1 << SHIFT);
                continue;
            }
            let slot = block.slot(offset);
            let state = slot.state.load(Ordering::Acquire);
            if state & FULL == 0 {
                if !wait {
                    break false;
                }
                backoff(&mut spins);
                continue;
            }
            let at = head.index;
            head.index = head.index.wrapping_add(1 << SHIFT);
            limit -= 1;
            if state & (WAKE | STOP) == 0 {
                // The call stays in place for the runner.
                calls += 1;
                continue;
            }
            hand_out(at, &mut calls, &mut f);
            // A wake or a stop has no handle: dead once taken.
            head.dead += 1;
            if state & STOP != 0 {
                f(Taken::Stop)
            } else {
                // SAFETY: `FULL` (acquired) says the payload is written,
                // and `WAKE` that it is `wake` (plain data).
                f(Taken::Wake(unsafe {
                    (*slot.payload.get()).assume_init_ref().wake
                }))
            }
        };
        hand_out(head.index, &mut calls, &mut f);
        done
    }

    /// Calls drained and not yet consumed: they wait in their slots.
    pub(crate) fn waiting_calls(&self) -> usize {
        let c = &self.consumer.0;
        c.drained
            .load(Ordering::Relaxed)
            .wrapping_sub(c.consumed.load(Ordering::Relaxed))
    }

    /// Moves the runner up to index `end` (from a `Taken::Calls`), and
    /// gives `each` every call it passes, moved out of its finished slot,
    /// with whether this moved its status `PENDING` → `to` (`RAN` or
    /// `DROPPED`); false: it was cancelled first. A call before the runner
    /// was consumed already, by an earlier `end` or a later one.
    ///
    /// `each` may run user code, post and drain, and panic: the runner has
    /// stepped past the call before `each` gets it. Calls from inside
    /// `each` return at once (the outer call goes on in order).
    pub(crate) fn consume(&self, end: usize, to: usize, mut each: impl FnMut(Call, bool)) {
        let consumer = &self.consumer.0;
        let Some(runner) = consumer.runner.lock().take() else {
            return;
        };
        let mut running = Running {
            consumer,
            runner: Some(runner),
        };
        let Some(r) = running.runner.as_mut() else {
            return;
        };
        // Indices only grow (a 64-bit count of posts does not wrap).
        while r.index < end {
            let offset = (r.index >> SHIFT) % LAP;
            // SAFETY: the runner owns one of its block's count.
            let block = unsafe { r.block.as_ref() };
            if offset == BLOCK_CAP {
                // The head went past the end of this block, so `next` is set.
                let next = NonNull::new(block.next.load(Ordering::Acquire))
                    .expect("the head links a block before it leaves one");
                let old = std::mem::replace(&mut r.block, next);
                let dead = std::mem::take(&mut r.dead);
                r.index = r.index.wrapping_add(1 << SHIFT);
                // SAFETY: the runner owned one of `old`'s count, and one
                // per slot it made dead.
                unsafe { Block::release(old, 1 + dead) };
                continue;
            }
            let slot = block.slot(offset);
            r.index = r.index.wrapping_add(1 << SHIFT);
            // `FULL` is set: the head passed this slot.
            let mut state = slot.state.load(Ordering::Acquire);
            if state & (WAKE | STOP) != 0 {
                // Taken and counted dead by the head.
                continue;
            }
            // SAFETY: a call, written (`FULL` acquired above) and never
            // moved out: the runner passes each index once, and nobody
            // else reads a call's payload.
            let call = unsafe {
                Call {
                    f: ManuallyDrop::into_inner((*slot.payload.get()).assume_init_read().call),
                    site: (*slot.site.get()).assume_init(),
                }
            };
            // One compare-and-swap decides the call's fate against a
            // cancel, finishes the slot and reads its handle count.
            let won = loop {
                let pending = state & STATUS == PENDING;
                let new = if pending { state | to } else { state } | FINISHED;
                match slot.state.compare_exchange_weak(
                    state,
                    new,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => break pending,
                    Err(s) => state = s,
                }
            };
            if state >> HANDLES == 0 {
                // No handle left: the slot is dead, and ours to count.
                r.dead += 1;
            }
            bump(&consumer.consumed, 1);
            each(call, won);
        }
    }
}

impl Drop for Queue {
    /// Frees what the queue still holds. The owner closed it first, so
    /// everything posted was taken; no producer can be running (`&mut`).
    fn drop(&mut self) {
        let tail = *self.tail.0.index.get_mut() & !MARK;
        let head_index = self.consumer.0.head.get_mut().index;
        debug_assert_eq!(head_index >> SHIFT, tail >> SHIFT, "close() drains");
        // The owner consumed every call at close; what the runner still
        // passes are wakes and stops, and the blocks they hold.
        self.consume(head_index, DROPPED, |call, _| call.discard());
        let consumer = &mut self.consumer.0;
        let head = consumer.head.get_mut();
        let runner = consumer.runner.get_mut().take().expect("no consume runs");
        debug_assert_eq!(runner.block, head.block);
        let offset = (head.index >> SHIFT) % LAP;
        // Slots never claimed die with the queue.
        let unclaimed = BLOCK_CAP.saturating_sub(offset);
        // SAFETY: the head owns one of the block's count, and one per slot
        // it made dead or that was never claimed; the runner, now at the
        // head, one and one per slot it made dead.
        unsafe {
            Block::release(head.block, 1 + unclaimed + head.dead);
            Block::release(runner.block, 1 + runner.dead);
        }
        // Blocks that handles still hold are freed when they die.
        self.pool.shrink(None);
    }
}
