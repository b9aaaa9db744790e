//! A pure hierarchical hashed timer wheel.
//!
//! # Concept
//!
//! The event loop needs a set of pending timers (`call_later`, `call_at`, timeouts) that supports
//! three operations cheaply: add a timer, cancel a timer, and take the timers that are due.
//! This module is only that data structure: it owns no clock, wakes nobody and does no I/O.
//! Callers hand it exact deadlines and a `now` in nanoseconds on their own monotonic clock, and it
//! hands back the expired values in `(deadline, insertion order)` order.
//!
//! # Counterparts
//!
//! * CPython's asyncio keeps `BaseEventLoop._scheduled`, a `heapq` of `TimerHandle`s: O(log n)
//!   insert, and cancellation only marks the handle, leaving it in the heap until it reaches the
//!   top or until cancelled handles exceed half the heap, when the heap is rebuilt.
//! * libuv keeps its timers in a binary min-heap: O(log n) insert and cancel.
//! * tokio keeps a hierarchical timing wheel, the design of Varghese & Lauck, "Hashed and
//!   Hierarchical Timing Wheels: Data Structures for the Efficient Implementation of a Timer
//!   Facility" (SOSP 1987): O(1) insert and cancel, and each timer moves down at most once per
//!   level before it fires. Its slots are intrusive linked lists.
//!
//! This wheel follows tokio's level/slot arithmetic, but keeps asyncio's exact semantics: a
//! timer never fires before its deadline and equal deadlines fire in insertion order. Exactness
//! does not come from the tick; it comes from the *due set*, which holds only the timers of the
//! current tick in exact order, while the wheel holds the million others.
//!
//! Unlike tokio, a slot is not a linked list but a vector of compact 24-byte *records*
//! `(deadline, seq, index)`, and the values stay put in a slab. Moving a timer down a
//! level then reads one vector sequentially and appends to another, touching neither the value
//! nor its neighbours, where a linked list costs a cache miss per timer (and one more for the
//! old head of the target list) once the timers no longer fit in cache. Cancellation borrows
//! asyncio's idea: the value leaves the slab at once, and its record stays behind as a
//! *tombstone*, recognised and dropped later; unlike asyncio, tombstones are counted per slot and
//! a slot is compacted as soon as they are more than twice its live records.
//!
//! Firing is where the time goes once the timers outgrow the cache: each fired entry's slab slot
//! and whatever its value points to were last touched when it was scheduled. Entries enter the
//! due set a tick at a time, up to 1 ms before they fire, so the wheel touches their slab slots
//! then, all together, and [`TimerWheel::advance`] shows the caller their values so that it can
//! do the same for what they point to: the cache misses of a tick overlap instead of stalling
//! one after another. It does so for two occupied ticks at a time, the one entering the due set
//! and the next, and skips the next when it enters: each such batch costs about two rounds of
//! overlapping misses, the slab slots and then what their values point to, however few entries
//! it holds, so twice the entries per batch halves the rounds (`fire_100k` random, 10 timers per
//! tick, took 10 to 15% less time per timer on the project's shared VM).
//!
//! # The constants
//!
//! * [`TICK_NS`] = 1 ms. epoll's timeout has millisecond resolution, so a finer wheel would only
//!   make more cascades without waking the loop more precisely. Sub-tick ordering is exact anyway,
//!   because the due set orders entries of the current tick on their full deadline.
//! * [`SLOTS`] = 64 per level, so one `u64` per level is an occupancy bitmap and finding the next
//!   occupied slot is a single `trailing_zeros`.
//! * [`LEVELS`] = 6, so the wheel spans 64^6 ticks = 2^36 ms, about 2.18 years. An entry farther
//!   away than that from the wheel's current time (more exactly: in a later 2^36-tick *epoch*)
//!   goes to an overflow vector, which is re-examined only when time reaches its earliest epoch,
//!   so any deadline up to `u64::MAX` works.
//! * `MAX_DEAD_PER_LIVE` = 2: a slot is compacted when its tombstones are more than twice its
//!   live records. Compacting checks every record against the slab, one likely cache miss each,
//!   so a looser bound makes it rarer (1.5 slab reads per removal, amortized, against 2 for a
//!   bound of 1), and a slot with half its timers cancelled, a common case, is never compacted
//!   at all; records stay within 3 per live timer.
//! * `KEEP_CAPACITY` = 64 records: the due set gives back buffers larger than that when it
//!   empties, and a thrifty slot keeps at least that much (see invariant 7).
//! * `POOLED_LEVEL` = 2: a slot of level 0 or 1 comes round every 64 ms or 4.1 s, so the buffer
//!   a cascade empties is worth keeping in place; a slot of level 2 or more comes round after
//!   262 s or more, so its buffer is lent to the next far slot to fill instead (invariant 7).
//! * `BUFFERED_PER_TIMER` = 3: the slot buffers may hold three records of capacity per timer of
//!   the peak before the wheel turns thrifty (invariant 7). Timers spread over a few seconds
//!   keep their records in a few level-2 buffers while the level-1 buffers they will cascade
//!   into wait from the previous round: `fire_100k` in `benches/timers.rs` settles at about 2.6
//!   (doubling slack included), and at 2 it kept freeing and regrowing level-1 buffers.
//!
//! # Invariants
//!
//! Let `elapsed` be the wheel's current tick (the tick of the largest `now` seen) and, for an
//! entry, `tick = deadline / TICK_NS`. A record is *live* if the slab slot at its index holds an
//! entry with its `seq` (sequence numbers are never reused), and a *tombstone* otherwise.
//!
//! 1. The record of an entry with `tick <= elapsed` is in the **due set**: either in the **run**,
//!    a vector sorted on `(deadline, seq)` consumed from its front, or in a small **heap**
//!    (`BinaryHeap` of `Reverse(record)`) that takes the entries inserted already due that
//!    cannot be appended to the run. Entries reach the run from the wheel one tick at a time,
//!    in increasing ticks, each tick's records sorted once; every entry already due has an
//!    earlier tick, so appending keeps the run sorted. `pop_expired` takes the smaller of the
//!    two fronts while its deadline is `<= now`, so it never fires early and orders exactly.
//! 2. The record of an entry with `tick > elapsed` in the same epoch as `elapsed` is in wheel
//!    slot `(level, (tick >> 6 * level) % 64)`, where `level` is the index of the highest 6-bit
//!    digit in which `tick` and `elapsed` differ (tokio's rule). Hence at every level an occupied
//!    slot is strictly after `elapsed`'s own digit, the slots of a lower level all start before
//!    those of a higher one, and the lowest occupied slot of the lowest occupied level holds the
//!    earliest wheel entries. No bitmap rotation is ever needed. Because the place of a record
//!    is a function of its deadline and `elapsed`, `remove` finds the slot of an entry from the
//!    entry's deadline, and records never write back to the slab when they move.
//! 3. The record of an entry in a later epoch is in the **overflow** vector.
//! 4. Every slot (and the overflow vector) keeps `min`, a lower bound on (and, until a removal
//!    from that slot, equal to) its earliest deadline, `u64::MAX` when empty, and `dead`, the
//!    exact number of tombstones among its records. After every operation
//!    `dead <= MAX_DEAD_PER_LIVE * live` for each of them: a removal that breaks this compacts
//!    the slot. A slot's occupancy bit is set exactly when it holds a record. A cascade drops
//!    the tombstones of the slot it empties, so records in the due set or in lower slots come
//!    from live entries (the due set gets tombstones only by removals of due entries).
//! 5. The fronts of the run and of the heap are live records. Tombstones in the due set are
//!    popped as soon as they reach a front, the due set is rebuilt without them whenever they
//!    outnumber its live records, and it is cleared when it holds no live record. The consumed
//!    front of the run is cut off once it is half the run. So every container is O(live).
//! 6. Every entry lives in one slab slot; free slots form a singly linked free list. A
//!    [`TimerKey`] is the slot's index and the entry's `seq`, so the key of a removed or fired
//!    entry is stale forever, however often its slot is reused.
//! 7. A buffer emptied by a compaction stays in its slot, and so does one emptied by a cascade
//!    at levels below `POOLED_LEVEL`; at `POOLED_LEVEL` and above, and for the overflow, it goes
//!    to the `spares`, and the next of those buckets to fill from no buffer at all takes the
//!    latest spare. So a wheel refilling at the same scale allocates nothing, and in particular
//!    firing does not: with glibc, a large allocation (1 KiB or more) or a large free (64 KiB or
//!    more) *consolidates* the fast bins, walking every small chunk freed since the last time
//!    (`malloc_consolidate` in glibc's `malloc/malloc.c`), and while timers fire those chunks
//!    are the handles just run, one cache miss each. That holds as long as the total capacity of
//!    the buffers and spares (`buffered`) is at most `BUFFERED_PER_TIMER` times the slab's
//!    length (the peak number of timers) plus `KEEP_CAPACITY` per slot. Beyond that the wheel
//!    is *thrifty*: a buffer emptied by a cascade is freed, and a compacted one gives back its
//!    slack.
//!
//! # Complexity
//!
//! * `insert`: amortized O(1) (slab and slot growth); O(log h) if the deadline is already due and
//!   earlier than the last entry of the run, h being the size of the heap.
//! * `remove`: amortized O(1): a compaction costs O(slot length) but follows at least as many
//!   removals from that slot; amortized O(log h) for an entry in the due set.
//! * `next_wakeup`: O(LEVELS) with the occupancy bitmaps.
//! * `pop_expired`: O(1) per fired entry from the run, O(log h) from the heap, plus the
//!   cascades, each record being moved at most once per level, and a sort of each tick's records
//!   (O(k log k) for k entries due in the same tick); crossing into a new 2.18-year epoch costs
//!   O(overflow length).
//! * Memory: one slab entry per timer (32 bytes for a two-word `T`) and one 24-byte record, plus
//!   at most two tombstones per live record in the slots (and one in the due set); the slab and
//!   the slot buffers are sized by the peak number of timers (invariant 7), plus the slot
//!   headers (40 bytes each).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;
use std::num::NonZeroU64;

/// Length of one wheel tick in nanoseconds (1 ms).
pub const TICK_NS: u64 = 1_000_000;
/// Number of slots per level; one `u64` occupancy bitmap per level.
pub const SLOTS: usize = 64;
/// Number of levels; the wheel spans `SLOTS^LEVELS` ticks (2^36 ms, about 2.18 years).
pub const LEVELS: usize = 6;

/// log2(SLOTS): the width of one level's digit in a tick.
const SLOT_BITS: u32 = 6;
/// Ticks spanned by the whole wheel, as a power of two: entries in a later epoch overflow.
const EPOCH_BITS: u32 = SLOT_BITS * LEVELS as u32;
/// End of the slab's free list.
const NONE: u32 = u32::MAX;
/// Tombstones a slot may hold per live record before it is compacted (see the module docs).
const MAX_DEAD_PER_LIVE: usize = 2;
/// Largest record buffer a slot keeps once a cascade empties it (see the module docs).
const KEEP_CAPACITY: usize = 64;
/// The first level whose emptied buffers go to the spares rather than stay in their slot (see
/// the module docs).
const POOLED_LEVEL: usize = 2;
/// Records of buffer capacity per timer (of the peak) before the wheel turns thrifty (see the
/// module docs).
const BUFFERED_PER_TIMER: usize = 3;

const _: () = assert!(SLOTS == 1 << SLOT_BITS && SLOTS <= 64);

/// Identifies one inserted timer: a slab index plus the entry's sequence number.
///
/// A key stays valid until its entry is removed, fired or drained; afterwards every operation
/// taking it treats it as absent, even if the slab slot has been reused (sequence numbers are
/// never reused).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct TimerKey {
    index: u32,
    seq: u64,
}

/// `repr(C)` puts `seq` first, where `Slot::Vacant` can fit around its niche. Aligned to 32
/// bytes so that, for a two-word `T` (the loop's handles), a slab slot is exactly 32 bytes and
/// never straddles two cache lines: the slot of each firing timer is a cache miss, one line
/// instead of one or two. (The alignment is here rather than on `Slot`, where it would cost the
/// niche.)
#[repr(C, align(32))]
struct Entry<T> {
    /// Global insertion counter, from 1: breaks deadline ties and tells a record or a key
    /// whether it is still this entry's. Non-zero so that `Slot::Vacant` fits in its niche.
    seq: NonZeroU64,
    deadline: u64,
    value: T,
}

enum Slot<T> {
    Occupied(Entry<T>),
    Vacant { next_free: u32 },
}

/// Where an entry waits, without its value. The derived order is `(deadline, seq)` (`seq` is
/// unique, so the index never decides), the firing order.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Record {
    deadline: u64,
    seq: u64,
    index: u32,
}

/// One wheel slot, or the overflow.
struct Bucket {
    records: Vec<Record>,
    /// Lower bound on the earliest deadline of a live record (invariant 4).
    min: u64,
    /// Tombstones among `records`.
    dead: usize,
}

impl Bucket {
    const EMPTY: Bucket = Bucket {
        records: Vec::new(),
        min: u64::MAX,
        dead: 0,
    };

    /// Appends `record`; `buffered` follows the growth of the buffer.
    #[inline]
    fn push(&mut self, record: Record, buffered: &mut usize) {
        self.min = self.min.min(record.deadline);
        let before = self.records.capacity();
        self.records.push(record);
        *buffered += self.records.capacity() - before;
    }

    /// Empties the bucket and returns its records and tombstone count, leaving it `spare`.
    #[inline]
    fn take(&mut self, spare: Vec<Record>) -> (Vec<Record>, usize) {
        self.min = u64::MAX;
        let dead = std::mem::take(&mut self.dead);
        (std::mem::replace(&mut self.records, spare), dead)
    }

    /// Drops the tombstones, making `min` exact; a `thrifty` bucket also gives back the slack.
    fn compact<T>(&mut self, slab: &[Slot<T>], buffered: &mut usize, thrifty: bool) {
        if self.dead == self.records.len() {
            self.records.clear();
        } else {
            self.records.retain(|r| is_live(slab, r));
        }
        self.dead = 0;
        self.min = self
            .records
            .iter()
            .map(|r| r.deadline)
            .min()
            .unwrap_or(u64::MAX);
        let len = self.records.len();
        if thrifty && self.records.capacity() > 2 * len + KEEP_CAPACITY {
            let before = self.records.capacity();
            self.records.shrink_to((2 * len).max(KEEP_CAPACITY));
            *buffered -= before - self.records.capacity();
        }
    }
}

/// A hierarchical hashed timer wheel holding values of type `T` until their deadline.
///
/// Deadlines and `now` are nanoseconds on the caller's clock. See the [module docs](self) for the
/// design.
///
/// ```
/// use aioloop::time::wheel::TimerWheel;
///
/// let mut wheel = TimerWheel::new();
/// let a = wheel.insert(5_500_000, "a"); // 5.5 ms
/// let b = wheel.insert(2_000_000, "b");
/// wheel.insert(3_600_000_000_000, "in an hour");
/// assert_eq!(wheel.remove(b), Some("b"));
///
/// assert_eq!(wheel.next_wakeup(), Some(5_500_000));
/// assert!(wheel.pop_expired(5_400_000).is_none()); // never early
/// assert_eq!(wheel.pop_expired(5_500_000), Some((a, 5_500_000, "a")));
/// assert_eq!(wheel.len(), 1);
/// ```
pub struct TimerWheel<T> {
    slab: Vec<Slot<T>>,
    free_head: u32,
    len: usize,
    /// The next entry's `seq`; starts at 1.
    next_seq: u64,
    /// Largest `now` seen, in nanoseconds.
    now: u64,
    /// `now / TICK_NS`, except transiently while advancing.
    elapsed: u64,
    /// `LEVELS * SLOTS` slots, level-major.
    slots: Box<[Bucket]>,
    occupied: [u64; LEVELS],
    overflow: Bucket,
    /// Total capacity of the buffers of `slots`, `overflow` and `spares`, in records (see
    /// `thrifty`).
    buffered: usize,
    /// Empty buffers given back by cascades of slots at `POOLED_LEVEL` and above and of the
    /// overflow, for the next such bucket that fills from nothing (invariant 7).
    spares: Vec<Vec<Record>>,
    /// Sorted due records; `run[..run_head]` are consumed.
    run: Vec<Record>,
    run_head: usize,
    /// Due records that could not be appended to `run`.
    heap: BinaryHeap<Reverse<Record>>,
    /// Live records in the due set; the rest are tombstones.
    due_live: usize,
    /// The latest tick whose entries were touched and shown (see `sort_new_due`).
    shown_through: u64,
}

/// The level at which an entry for `tick` belongs when the wheel is at `elapsed` (`tick > elapsed`);
/// `>= LEVELS` means overflow.
#[inline]
fn level_for(elapsed: u64, tick: u64) -> usize {
    let masked = (elapsed ^ tick) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros();
    (significant / SLOT_BITS) as usize
}

#[inline]
fn slot_for(tick: u64, level: usize) -> usize {
    ((tick >> (SLOT_BITS * level as u32)) & (SLOTS as u64 - 1)) as usize
}

/// First tick of `slot` at `level` when the wheel is at `elapsed`: the slot lies in the same
/// `level + 1` block as `elapsed`, so keep `elapsed`'s digits above this level and replace the
/// rest with the slot number followed by zeros. (Adding to `elapsed` instead is the classic bug:
/// it goes wrong when `elapsed` is not at the start of its block.)
#[inline]
fn slot_start(elapsed: u64, level: usize, slot: usize) -> u64 {
    let shift = SLOT_BITS * level as u32;
    let block_mask = (1u64 << (shift + SLOT_BITS)) - 1;
    (elapsed & !block_mask) | ((slot as u64) << shift)
}

#[inline]
fn epoch_start(tick: u64) -> u64 {
    tick >> EPOCH_BITS << EPOCH_BITS
}

#[inline]
fn is_live<T>(slab: &[Slot<T>], record: &Record) -> bool {
    matches!(&slab[record.index as usize], Slot::Occupied(e) if e.seq.get() == record.seq)
}

/// Where a record waits: a wheel slot (`level * SLOTS + slot`), the overflow or the due set.
enum Place {
    Slot(usize),
    Overflow,
    Due,
}

#[inline]
fn place_of(elapsed: u64, deadline: u64) -> Place {
    let tick = deadline / TICK_NS;
    if tick <= elapsed {
        return Place::Due;
    }
    let level = level_for(elapsed, tick);
    if level < LEVELS {
        Place::Slot(level * SLOTS + slot_for(tick, level))
    } else {
        Place::Overflow
    }
}

impl<T> TimerWheel<T> {
    /// Creates an empty wheel whose current time is 0.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// Creates an empty wheel with room for `n` timers before the slab reallocates.
    pub fn with_capacity(n: usize) -> Self {
        Self::starting_at(0, n)
    }

    /// Creates an empty wheel whose current time is `now`, with room for `n` timers.
    ///
    /// A caller whose clock does not start at 0 (the loop's starts in the middle of the `u64`
    /// range, so that deadlines before it keep their order) starts the wheel there: entries then
    /// land in wheel slots at once, instead of in the overflow until the first advance.
    pub fn starting_at(now: u64, n: usize) -> Self {
        TimerWheel {
            slab: Vec::with_capacity(n),
            free_head: NONE,
            len: 0,
            next_seq: 1,
            now,
            elapsed: now / TICK_NS,
            slots: (0..LEVELS * SLOTS).map(|_| Bucket::EMPTY).collect(),
            occupied: [0; LEVELS],
            overflow: Bucket::EMPTY,
            buffered: 0,
            spares: Vec::new(),
            run: Vec::new(),
            run_head: 0,
            heap: BinaryHeap::new(),
            due_live: 0,
            shown_through: 0,
        }
    }

    /// Adds `value`, due at `deadline` (nanoseconds, same clock as `now`), and returns its key.
    ///
    /// A deadline at or before the current time is allowed and is due at once. Entries with equal
    /// deadlines fire in insertion order. Amortized O(1).
    #[inline]
    pub fn insert(&mut self, deadline: u64, value: T) -> TimerKey {
        let seq = NonZeroU64::new(self.next_seq).expect("timer sequence numbers never wrap");
        self.next_seq += 1;
        let index = self.alloc(deadline, seq, value);
        self.len += 1;
        let record = Record {
            deadline,
            seq: seq.get(),
            index,
        };
        match place_of(self.elapsed, deadline) {
            Place::Slot(i) => self.push_slot(i, record),
            Place::Overflow => self.push_overflow(record),
            Place::Due => {
                self.due_live += 1;
                if self.run_head == self.run.len() {
                    self.run.clear();
                    self.run_head = 0;
                    self.run.push(record);
                } else if self.run.last().is_some_and(|last| *last < record) {
                    self.run.push(record);
                } else {
                    self.heap.push(Reverse(record));
                }
            }
        }
        TimerKey {
            index,
            seq: seq.get(),
        }
    }

    /// Cancels the entry for `key` and returns its value, or `None` if the key is stale (already
    /// removed, fired or drained). The value leaves the wheel at once; its record is a tombstone.
    ///
    /// Amortized O(1); amortized O(log h) if the entry is already in the due set (its deadline
    /// is in the current millisecond or earlier).
    #[inline]
    pub fn remove(&mut self, key: TimerKey) -> Option<T> {
        let deadline = match self.slab.get(key.index as usize) {
            Some(Slot::Occupied(e)) if e.seq.get() == key.seq => e.deadline,
            _ => return None,
        };
        let value = self.release(key.index).value;
        match place_of(self.elapsed, deadline) {
            Place::Slot(i) => {
                let bucket = &mut self.slots[i];
                bucket.dead += 1;
                if bucket.dead > MAX_DEAD_PER_LIVE * (bucket.records.len() - bucket.dead) {
                    self.compact(Some(i));
                    if self.slots[i].records.is_empty() {
                        self.occupied[i / SLOTS] &= !(1 << (i % SLOTS));
                    }
                }
            }
            Place::Overflow => {
                let bucket = &mut self.overflow;
                bucket.dead += 1;
                if bucket.dead > MAX_DEAD_PER_LIVE * (bucket.records.len() - bucket.dead) {
                    self.compact(None);
                }
            }
            Place::Due => {
                self.due_live -= 1;
                self.tidy_due();
            }
        }
        Some(value)
    }

    /// The deadline of the entry for `key`, or `None` if the key is stale.
    #[inline]
    pub fn deadline(&self, key: TimerKey) -> Option<u64> {
        match self.slab.get(key.index as usize) {
            Some(Slot::Occupied(e)) if e.seq.get() == key.seq => Some(e.deadline),
            _ => None,
        }
    }

    /// The value of the entry for `key`, to change in place (its deadline and its place in the
    /// firing order stay), or `None` if the key is stale.
    #[inline]
    pub fn get_mut(&mut self, key: TimerKey) -> Option<&mut T> {
        match self.slab.get_mut(key.index as usize) {
            Some(Slot::Occupied(e)) if e.seq.get() == key.seq => Some(&mut e.value),
            _ => None,
        }
    }

    /// Number of live entries.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no live entries.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A lower bound on the earliest live deadline, never later than it; `None` when empty.
    ///
    /// It is exact unless the earliest entry shares a wheel slot (or the overflow) with an entry
    /// removed since that slot was filled or compacted: the bound then is the removed entry's
    /// deadline. Calling [`pop_expired`](Self::pop_expired) at the returned instant cascades that
    /// slot, so the next bound is tighter. O(LEVELS).
    #[inline]
    pub fn next_wakeup(&self) -> Option<u64> {
        // Due entries are in ticks <= elapsed, all other entries in later ticks.
        if let Some(record) = self.due_front() {
            return Some(record.deadline);
        }
        // Invariant 2: the lowest occupied slot of the lowest occupied level is the earliest.
        for level in 0..LEVELS {
            let occupied = self.occupied[level];
            if occupied != 0 {
                return Some(self.slots[level * SLOTS + occupied.trailing_zeros() as usize].min);
            }
        }
        if !self.overflow.records.is_empty() {
            return Some(self.overflow.min);
        }
        None
    }

    /// Pops one live entry whose deadline is `<= now`, in `(deadline, insertion)` order, as
    /// `(key, deadline, value)`; `None` when nothing is due at `now`.
    ///
    /// First advances the wheel to `now` (see [`advance`](Self::advance)). A `now` earlier than a
    /// previous one is treated as the previous one: time never goes back.
    #[inline]
    pub fn pop_expired(&mut self, now: u64) -> Option<(TimerKey, u64, T)> {
        self.advance_inner(now, &mut None);
        let from_run = match (self.run.get(self.run_head), self.heap.peek()) {
            (Some(r), Some(Reverse(h))) => r < h,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        let record = if from_run {
            self.run[self.run_head]
        } else {
            self.heap.peek().unwrap().0
        };
        if record.deadline > self.now {
            return None;
        }
        debug_assert!(is_live(&self.slab, &record), "invariant 5");
        if from_run {
            self.run_head += 1;
        } else {
            self.heap.pop();
        }
        self.due_live -= 1;
        let entry = self.release(record.index);
        self.tidy_due();
        let key = TimerKey {
            index: record.index,
            seq: record.seq,
        };
        Some((key, record.deadline, entry.value))
    }

    /// Advances the wheel to `now`, as [`pop_expired`](Self::pop_expired) does first, and shows
    /// `on_due` the values of the entries about to fire. Nothing is popped.
    ///
    /// An entry enters the due set at the start of its tick, up to 1 ms before it fires, and then
    /// fires in order with the others due; a caller can use the glimpse to warm memory the value
    /// points to, so that it is in cache by the time the entry is popped. When this moves the
    /// entries of a tick into the due set, it shows them in firing order, followed by those of
    /// the next occupied tick (in no particular order), unless that tick was itself shown as the
    /// next one: so each entry is shown once, at most one occupied tick before it is due.
    /// Entries inserted already due, or into a tick already shown, are not shown, nor is
    /// anything when `now` does not pass a tick boundary.
    pub fn advance(&mut self, now: u64, mut on_due: impl FnMut(&T)) {
        self.advance_inner(now, &mut Some(&mut on_due));
    }

    /// Removes every entry and returns the values, in no particular order. Every outstanding key
    /// becomes stale; the wheel's current time is kept.
    pub fn drain(&mut self) -> Vec<T> {
        let mut values = Vec::with_capacity(self.len);
        self.free_head = NONE;
        // Rebuild the free list in index order so that slots are reused from the front.
        for (index, slot) in self.slab.iter_mut().enumerate().rev() {
            let old = std::mem::replace(
                slot,
                Slot::Vacant {
                    next_free: self.free_head,
                },
            );
            self.free_head = index as u32;
            if let Slot::Occupied(e) = old {
                values.push(e.value);
            }
        }
        self.len = 0;
        self.slots.iter_mut().for_each(|b| *b = Bucket::EMPTY);
        self.occupied = [0; LEVELS];
        self.overflow = Bucket::EMPTY;
        self.buffered = 0;
        self.spares = Vec::new();
        self.clear_due();
        values
    }

    /// The earliest record of the due set (live, by invariant 5).
    #[inline]
    fn due_front(&self) -> Option<&Record> {
        match (self.run.get(self.run_head), self.heap.peek()) {
            (Some(r), Some(Reverse(h))) => Some(r.min(h)),
            (r, h) => r.or(h.map(|Reverse(h)| h)),
        }
    }

    /// Stores a new entry in a free slab slot (or a new one) and returns its index.
    #[inline]
    fn alloc(&mut self, deadline: u64, seq: NonZeroU64, value: T) -> u32 {
        let entry = Slot::Occupied(Entry {
            deadline,
            seq,
            value,
        });
        let index = self.free_head;
        if index != NONE {
            let slot = &mut self.slab[index as usize];
            self.free_head = match *slot {
                Slot::Vacant { next_free } => next_free,
                Slot::Occupied(_) => unreachable!("timer wheel free list reaches a live entry"),
            };
            *slot = entry;
            index
        } else {
            let index = self.slab.len();
            // NONE is reserved as the end of the free list.
            assert!(
                index < NONE as usize,
                "TimerWheel holds at most 2^32 - 1 timers"
            );
            self.slab.push(entry);
            index as u32
        }
    }

    /// Frees the slab slot of an entry and returns the entry. Its record, wherever it is, is a
    /// tombstone from now on, and its key is stale: both carry a `seq` no entry has any more.
    #[inline]
    fn release(&mut self, index: u32) -> Entry<T> {
        let slot = &mut self.slab[index as usize];
        let old = std::mem::replace(
            slot,
            Slot::Vacant {
                next_free: self.free_head,
            },
        );
        self.free_head = index;
        self.len -= 1;
        match old {
            Slot::Occupied(e) => e,
            Slot::Vacant { .. } => unreachable!("timer wheel releases a free slab slot"),
        }
    }

    #[inline]
    fn push_slot(&mut self, i: usize, record: Record) {
        self.occupied[i / SLOTS] |= 1 << (i % SLOTS);
        let bucket = &mut self.slots[i];
        if i >= POOLED_LEVEL * SLOTS && bucket.records.capacity() == 0 {
            Self::reuse_spare(bucket, &mut self.spares);
        }
        bucket.push(record, &mut self.buffered);
    }

    #[inline]
    fn push_overflow(&mut self, record: Record) {
        if self.overflow.records.capacity() == 0 {
            Self::reuse_spare(&mut self.overflow, &mut self.spares);
        }
        self.overflow.push(record, &mut self.buffered);
    }

    /// Gives an empty far bucket without a buffer the latest spare one, if any (invariant 7).
    #[cold]
    fn reuse_spare(bucket: &mut Bucket, spares: &mut Vec<Vec<Record>>) {
        if let Some(spare) = spares.pop() {
            bucket.records = spare;
        }
    }

    /// Whether the slot buffers and spares hold more than `BUFFERED_PER_TIMER` records per
    /// timer of the peak (the slab's length) plus a small buffer per slot: then a buffer that
    /// empties or shrinks gives its capacity back. Otherwise buffers keep their capacity, as a
    /// `Vec` does when cleared, so that a wheel refilling at the same scale allocates nothing.
    #[inline]
    fn thrifty(&self) -> bool {
        self.buffered > BUFFERED_PER_TIMER * self.slab.len() + (LEVELS * SLOTS + 1) * KEEP_CAPACITY
    }

    /// Compacts slot `i` (or the overflow, for `None`).
    fn compact(&mut self, i: Option<usize>) {
        let thrifty = self.thrifty();
        let bucket = match i {
            Some(i) => &mut self.slots[i],
            None => &mut self.overflow,
        };
        bucket.compact(&self.slab, &mut self.buffered, thrifty);
    }

    fn clear_due(&mut self) {
        self.run.clear();
        self.run_head = 0;
        self.heap.clear();
        self.due_live = 0;
        // Keep the run's buffer (it is swapped with slot buffers, see `cascade`), but not a
        // burst's worth of it.
        self.run.shrink_to(KEEP_CAPACITY);
        self.heap.shrink_to(KEEP_CAPACITY);
    }

    /// Restores invariant 5 after the due set lost a live entry.
    #[inline]
    fn tidy_due(&mut self) {
        if self.due_live == 0 {
            self.clear_due();
            return;
        }
        let len = self.run.len() - self.run_head + self.heap.len();
        if len != self.due_live {
            self.drop_due_tombstones(len);
        }
        // The consumed front of the run is dead weight: cut it off, amortized O(1) per pop.
        if self.run_head > KEEP_CAPACITY && 2 * self.run_head > self.run.len() {
            self.run.drain(..self.run_head);
            self.run_head = 0;
        }
    }

    #[cold]
    fn drop_due_tombstones(&mut self, len: usize) {
        while self
            .run
            .get(self.run_head)
            .is_some_and(|r| !is_live(&self.slab, r))
        {
            self.run_head += 1;
        }
        while self
            .heap
            .peek()
            .is_some_and(|Reverse(r)| !is_live(&self.slab, r))
        {
            self.heap.pop();
        }
        // Amortized O(1) per removal: the rebuild costs O(tombstones + live) < O(2 * tombstones),
        // and each tombstone was made by one removal since the previous rebuild.
        if len - self.due_live > self.due_live {
            let slab = &self.slab;
            self.run.drain(..self.run_head);
            self.run_head = 0;
            self.run.retain(|r| is_live(slab, r));
            self.heap.retain(|Reverse(r)| is_live(slab, r));
        }
    }

    fn advance_inner(&mut self, now: u64, on_due: &mut Option<&mut dyn FnMut(&T)>) {
        if now <= self.now {
            return;
        }
        self.now = now;
        let tick = now / TICK_NS;
        if tick <= self.elapsed {
            return;
        }
        loop {
            if let Some(level) = self.occupied.iter().position(|&bits| bits != 0) {
                let slot = self.occupied[level].trailing_zeros() as usize;
                debug_assert!(
                    slot > slot_for(self.elapsed, level),
                    "invariant 2: occupied slots lie after elapsed's digit"
                );
                let start = slot_start(self.elapsed, level, slot);
                if start > tick {
                    break;
                }
                // Lower levels are empty and this slot is the earliest one, so jumping to its
                // start skips nothing; relative to the start, its records land strictly lower.
                self.elapsed = start;
                self.occupied[level] &= !(1 << slot);
                let i = level * SLOTS + slot;
                self.cascade(Some(i), on_due);
            } else if !self.overflow.records.is_empty()
                && epoch_start(self.overflow.min / TICK_NS) <= tick
            {
                // The minimum may be stale after removals; compacting makes it exact.
                self.compact(None);
                let start = epoch_start(self.overflow.min / TICK_NS);
                if self.overflow.records.is_empty() || start > tick {
                    break;
                }
                debug_assert!(start > self.elapsed);
                self.elapsed = start;
                self.cascade(None, on_due);
            } else {
                break;
            }
        }
        // Remaining slots start after `tick`, so they sit where an insertion at `tick` would put
        // them (invariant 2 still holds), and overflow records are in epochs after `tick`'s.
        self.elapsed = tick;
    }

    /// Empties slot `i` (or the overflow, for `None`) whose start `elapsed` has just reached,
    /// refiling its live records relative to `elapsed`.
    fn cascade(&mut self, i: Option<usize>, on_due: &mut Option<&mut dyn FnMut(&T)>) {
        let bucket = match i {
            Some(i) => &mut self.slots[i],
            None => &mut self.overflow,
        };
        let mark = self.run.len();
        if mark == self.run_head && bucket.dead == 0 && i.is_some_and(|i| i < SLOTS) {
            // A level-0 slot is one tick, all due now: it becomes the run, and the slot gets
            // the run's empty buffer.
            self.run.clear();
            self.run_head = 0;
            let spare = std::mem::take(&mut self.run);
            self.buffered += spare.capacity();
            self.run = bucket.take(spare).0;
            self.buffered -= self.run.capacity();
            self.due_live += self.run.len();
            self.sort_new_due(0, on_due);
            return;
        }
        let (mut records, dead) = bucket.take(Vec::new());
        for record in records.drain(..) {
            if dead > 0 && !is_live(&self.slab, &record) {
                continue;
            }
            match place_of(self.elapsed, record.deadline) {
                Place::Slot(j) => self.push_slot(j, record),
                Place::Overflow => self.push_overflow(record),
                Place::Due => {
                    self.due_live += 1;
                    self.run.push(record);
                }
            }
        }
        // Records only move to lower levels, so the slot is still empty. Unless the buffers are
        // over budget, a near slot keeps its buffer for the next time round, and a far one (or
        // the overflow), which comes round much later, lends it to the next far bucket to fill.
        if self.thrifty() || records.capacity() == 0 {
            self.buffered -= records.capacity();
        } else {
            match i {
                Some(i) if i < POOLED_LEVEL * SLOTS => self.slots[i].records = records,
                _ => self.spares.push(records),
            }
        }
        self.sort_new_due(mark, on_due);
    }

    /// Sorts the records of one tick just appended to the run (all later than what was there),
    /// and, unless they were already shown as the next tick's, touches their entries and those
    /// of the next occupied tick, showing their values to `on_due`.
    #[inline]
    fn sort_new_due(&mut self, mark: usize, on_due: &mut Option<&mut dyn FnMut(&T)>) {
        self.run[mark..].sort_unstable();
        // The new records are those of tick `elapsed`.
        if self.elapsed <= self.shown_through {
            return;
        }
        // The next occupied tick is in this level-0 block (invariant 2), if any.
        let later = self.occupied[0] & (!1u64 << slot_for(self.elapsed, 0));
        let (next, next_dead): (&[Record], bool) = if later == 0 {
            self.shown_through = self.elapsed;
            (&[], false)
        } else {
            let slot = later.trailing_zeros() as usize;
            self.shown_through = slot_start(self.elapsed, 0, slot);
            let bucket = &self.slots[slot];
            (&bucket.records, bucket.dead > 0)
        };
        // These entries are about to be popped, and after a long wait their slab slots are cold:
        // touch them all now, in a loop tight enough for their cache misses to overlap, rather
        // than one miss at a time as each is popped (or shown).
        let (new, slab) = (&self.run[mark..], &self.slab);
        let live = |r: &&Record| is_live(slab, r);
        std::hint::black_box(new.iter().filter(live).count() + next.iter().filter(live).count());
        if let Some(on_due) = on_due {
            // Records enter the due set live (invariant 4), so only the next tick's may be
            // tombstones, and only if its slot counts some: checking every record costs more
            // than it seems, as it makes each call wait for its slab slot.
            for (records, check) in [(new, false), (next, next_dead)] {
                for record in records {
                    match &slab[record.index as usize] {
                        Slot::Occupied(e) if !check || e.seq.get() == record.seq => {
                            on_due(&e.value)
                        }
                        _ => debug_assert!(check, "invariant 4: due records are live"),
                    }
                }
            }
        }
    }
}

impl<T> Default for TimerWheel<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for TimerWheel<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("len", &self.len)
            .field("now", &self.now)
            .field("next_wakeup", &self.next_wakeup())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashMap, HashSet};

    const MS: u64 = TICK_NS;
    const SEC: u64 = 1_000 * MS;
    const HOUR: u64 = 3_600 * SEC;
    const DAY: u64 = 24 * HOUR;
    const YEAR: u64 = 365 * DAY;
    const SPAN: u64 = MS << EPOCH_BITS;

    fn pop_all<T>(wheel: &mut TimerWheel<T>, now: u64) -> Vec<(u64, T)> {
        std::iter::from_fn(|| wheel.pop_expired(now))
            .map(|(_, d, v)| (d, v))
            .collect()
    }

    fn place_index<T>(wheel: &TimerWheel<T>, deadline: u64) -> usize {
        match place_of(wheel.elapsed, deadline) {
            Place::Slot(i) => i,
            _ => panic!("{deadline} is not in a slot"),
        }
    }

    fn due_len<T>(wheel: &TimerWheel<T>) -> usize {
        wheel.run.len() - wheel.run_head + wheel.heap.len()
    }

    /// Checks the due set's size bound (invariant 5): cheap enough for every step.
    fn assert_due_bounded<T>(wheel: &TimerWheel<T>) {
        assert!(
            due_len(wheel) <= 2 * wheel.due_live + 1,
            "due set {} for {} live",
            due_len(wheel),
            wheel.due_live
        );
        assert!(wheel.run_head <= KEEP_CAPACITY || 2 * wheel.run_head <= wheel.run.len());
    }

    /// Checks invariants 1 to 5 in full: O(records).
    fn assert_invariants<T>(wheel: &TimerWheel<T>) {
        assert_due_bounded(wheel);
        let live = |r: &Record| is_live(&wheel.slab, r);
        let due = &wheel.run[wheel.run_head..];
        assert!(due.windows(2).all(|w| w[0] < w[1]), "run sorted");
        if let Some(r) = due.first() {
            assert!(live(r), "run front live");
        }
        if let Some(Reverse(r)) = wheel.heap.peek() {
            assert!(live(r), "heap front live");
        }
        let due_records = due.iter().chain(wheel.heap.iter().map(|Reverse(r)| r));
        let mut due_live = 0;
        for r in due_records {
            assert!(r.deadline / TICK_NS <= wheel.elapsed, "due record not due");
            due_live += usize::from(live(r));
        }
        assert_eq!(due_live, wheel.due_live);
        let mut total_live = due_live;
        let buckets = wheel.slots.iter().enumerate().map(|(i, b)| (Some(i), b));
        for (i, bucket) in buckets.chain([(None, &wheel.overflow)]) {
            let n_live = bucket.records.iter().filter(|r| live(r)).count();
            assert_eq!(bucket.dead, bucket.records.len() - n_live, "dead count");
            assert!(
                bucket.dead <= MAX_DEAD_PER_LIVE * n_live,
                "too many tombstones"
            );
            total_live += n_live;
            for r in bucket.records.iter().filter(|r| live(r)) {
                assert!(bucket.min <= r.deadline, "min is a lower bound");
                let right = match (place_of(wheel.elapsed, r.deadline), i) {
                    (Place::Slot(a), Some(b)) => a == b,
                    (Place::Overflow, None) => true,
                    _ => false,
                };
                assert!(right, "record in the wrong slot");
            }
            if let Some(i) = i {
                let bit = wheel.occupied[i / SLOTS] >> (i % SLOTS) & 1 == 1;
                assert_eq!(bit, !bucket.records.is_empty(), "occupancy bit");
            }
        }
        assert_eq!(total_live, wheel.len, "every entry has one live record");
        assert!(wheel
            .spares
            .iter()
            .all(|s| s.is_empty() && s.capacity() > 0));
        let buffers = wheel.slots.iter().chain([&wheel.overflow]);
        let capacity: usize = buffers.map(|b| b.records.capacity()).sum::<usize>()
            + wheel.spares.iter().map(Vec::capacity).sum::<usize>();
        assert_eq!(wheel.buffered, capacity, "buffered tracks the buffers");
    }

    #[test]
    fn a_slab_slot_is_one_aligned_half_line_for_two_words() {
        assert_eq!(std::mem::size_of::<Slot<(usize, usize)>>(), 32);
        assert_eq!(std::mem::size_of::<Slot<std::rc::Rc<dyn Fn()>>>(), 32);
        assert_eq!(std::mem::align_of::<Slot<std::rc::Rc<dyn Fn()>>>(), 32);
        assert_eq!(std::mem::size_of::<Record>(), 24);
    }

    #[test]
    fn equal_deadlines_fire_in_insertion_order() {
        let mut wheel = TimerWheel::new();
        for i in 0..100 {
            wheel.insert(5 * MS, i);
            wheel.insert(70 * MS + 3, 1000 + i); // level 1, same deadline again
            wheel.insert(0, 2000 + i); // already due
        }
        let got = pop_all(&mut wheel, 100 * MS);
        let mut want: Vec<(u64, i32)> = (0..100).map(|i| (0, 2000 + i)).collect();
        want.extend((0..100).map(|i| (5 * MS, i)));
        want.extend((0..100).map(|i| (70 * MS + 3, 1000 + i)));
        assert_eq!(got, want);
        assert!(wheel.is_empty());
    }

    #[test]
    fn never_fires_early() {
        let mut wheel = TimerWheel::new();
        let key = wheel.insert(5_500_000, "x");
        assert_eq!(wheel.next_wakeup(), Some(5_500_000));
        assert!(wheel.pop_expired(5_400_000).is_none());
        assert!(wheel.pop_expired(5_499_999).is_none());
        assert_eq!(wheel.next_wakeup(), Some(5_500_000));
        assert_eq!(wheel.pop_expired(5_500_000), Some((key, 5_500_000, "x")));
        assert_eq!(wheel.next_wakeup(), None);

        // Same inside the current tick, and in a level-1 slot entered at its start.
        let a = wheel.insert(5_700_000, "a");
        let b = wheel.insert(200 * MS + 1, "b");
        assert!(wheel.pop_expired(5_699_999).is_none());
        assert_eq!(wheel.pop_expired(5_700_000), Some((a, 5_700_000, "a")));
        assert!(wheel.pop_expired(192 * MS).is_none());
        assert!(wheel.pop_expired(200 * MS).is_none());
        assert_eq!(
            wheel.pop_expired(200 * MS + 1),
            Some((b, 200 * MS + 1, "b"))
        );
    }

    #[test]
    fn past_deadlines_fire_at_once() {
        let mut wheel = TimerWheel::new();
        assert!(wheel.pop_expired(10 * SEC).is_none());
        wheel.insert(10 * SEC - 1, 3);
        wheel.insert(SEC, 2);
        wheel.insert(0, 1);
        wheel.insert(10 * SEC, 4);
        wheel.insert(10 * SEC + 1, 5);
        assert_eq!(wheel.next_wakeup(), Some(0));
        // An earlier `now` counts as the latest one.
        let got = pop_all(&mut wheel, 3 * SEC);
        assert_eq!(
            got,
            vec![(0, 1), (SEC, 2), (10 * SEC - 1, 3), (10 * SEC, 4)]
        );
        assert_eq!(wheel.next_wakeup(), Some(10 * SEC + 1));
        assert_eq!(pop_all(&mut wheel, 10 * SEC + 1), vec![(10 * SEC + 1, 5)]);
    }

    #[test]
    fn remove_makes_keys_stale() {
        let mut wheel = TimerWheel::new();
        let a = wheel.insert(10 * MS, 'a');
        assert_eq!(wheel.deadline(a), Some(10 * MS));
        assert_eq!(wheel.remove(a), Some('a'));
        assert_eq!(wheel.remove(a), None);
        assert_eq!(wheel.deadline(a), None);
        assert_eq!(wheel.get_mut(a), None);
        assert_eq!(wheel.next_wakeup(), None);

        // The freed slot is reused, but the old key must not reach the new entry.
        let b = wheel.insert(10 * MS, 'b');
        assert_eq!(b.index, a.index);
        assert_ne!(b, a);
        assert_eq!(wheel.remove(a), None);
        assert_eq!(wheel.len(), 1);

        // A fired key is stale too, even once its slot is reused.
        assert_eq!(wheel.pop_expired(10 * MS), Some((b, 10 * MS, 'b')));
        assert_eq!(wheel.remove(b), None);
        let c = wheel.insert(5 * MS, 'c');
        assert_eq!(c.index, b.index);
        assert_eq!(wheel.remove(b), None);
        assert_eq!(wheel.remove(a), None);
        assert_eq!(wheel.deadline(c), Some(5 * MS));
        *wheel.get_mut(c).unwrap() = 'C';
        assert_eq!(wheel.get_mut(b), None);

        // Keys that never existed.
        let bogus = TimerKey {
            index: 1_000,
            seq: 1,
        };
        assert_eq!(wheel.remove(bogus), None);
        assert_eq!(wheel.remove(c), Some('C'));
        assert!(wheel.is_empty());
    }

    #[test]
    fn remove_from_every_place() {
        let mut wheel = TimerWheel::new();
        wheel.pop_expired(MS);
        let due = wheel.insert(MS + 5, 0);
        let l0 = wheel.insert(3 * MS, 1);
        let l3 = wheel.insert(HOUR, 2);
        let over = wheel.insert(3 * YEAR, 3);
        let keep = wheel.insert(4 * MS, 4);
        assert_eq!(wheel.remove(due), Some(0));
        assert_eq!(wheel.remove(l0), Some(1));
        assert_eq!(wheel.remove(l3), Some(2));
        assert_eq!(wheel.remove(over), Some(3));
        assert!(wheel.next_wakeup().unwrap() <= 4 * MS);
        assert_eq!(pop_all(&mut wheel, u64::MAX), vec![(4 * MS, 4)]);
        assert_eq!(wheel.remove(keep), None);
    }

    #[test]
    fn due_tombstones_stay_bounded() {
        let mut wheel = TimerWheel::new();
        wheel.pop_expired(SEC);
        // Live due entries below and above the churned ones, so tombstones are not all at the top.
        let mut live = Vec::new();
        for i in 0..10 {
            live.push(wheel.insert(SEC - 1 - i, i));
            live.push(wheel.insert(SEC + 900_000 + i, 100 + i));
        }
        for i in 0..100_000u64 {
            let key = wheel.insert(SEC + (i % 1_000), 1_000);
            assert_eq!(wheel.remove(key), Some(1_000));
            assert_due_bounded(&wheel);
        }
        assert_eq!(wheel.len(), 20);
        assert!(due_len(&wheel) <= 2 * 20 + 1);
        assert_invariants(&wheel);
        // The rebuilt heap still orders the survivors exactly. (`live` alternates below/above.)
        for key in live.iter().step_by(2) {
            wheel.remove(*key).unwrap();
            assert_due_bounded(&wheel);
        }
        let want: Vec<(u64, u64)> = (0..10).map(|i| (SEC + 900_000 + i, 100 + i)).collect();
        assert_eq!(pop_all(&mut wheel, SEC + 900_000 + 4), want[..5]);
        assert_eq!(pop_all(&mut wheel, SEC + MS), want[5..]);
        assert_eq!(due_len(&wheel), 0);
        assert!(wheel.heap.capacity() <= KEEP_CAPACITY);
        assert!(wheel.run.capacity() <= KEEP_CAPACITY);
    }

    #[test]
    fn tombstones_are_compacted() {
        let mut wheel = TimerWheel::new();
        // All in one level-3 slot, inserted in order.
        let keys: Vec<_> = (0..3_000u64).map(|i| wheel.insert(HOUR + i, i)).collect();
        let i = place_index(&wheel, HOUR);
        // Cancelling two thirds leaves the tombstones in place.
        for (n, key) in keys.iter().enumerate().filter(|(n, _)| n % 3 != 0) {
            assert_eq!(wheel.remove(*key), Some(n as u64));
        }
        assert_eq!(wheel.slots[i].records.len(), 3_000);
        assert_eq!(wheel.slots[i].dead, 2_000);
        assert_invariants(&wheel);
        // One more tips the balance: the slot is compacted, and its minimum made exact.
        assert_eq!(wheel.remove(keys[0]), Some(0));
        assert_eq!(wheel.slots[i].records.len(), 999);
        assert_eq!(wheel.slots[i].dead, 0);
        assert_eq!(wheel.next_wakeup(), Some(HOUR + 3));
        assert_invariants(&wheel);
        // Emptying it clears its occupancy bit; the buffer is kept (not thrifty).
        for key in keys.iter().step_by(3).skip(1) {
            wheel.remove(*key).unwrap();
        }
        assert!(wheel.is_empty());
        assert!(wheel.slots[i].records.is_empty());
        assert_eq!(wheel.occupied, [0; LEVELS]);
        assert!(wheel.slots[i].records.capacity() >= 3_000);
        assert_eq!(wheel.next_wakeup(), None);
        assert_invariants(&wheel);
    }

    #[test]
    fn cascades_skip_tombstones() {
        let mut wheel = TimerWheel::new();
        let keys: Vec<_> = (0..100u64)
            .map(|i| wheel.insert(HOUR + i * MS, i))
            .collect();
        for key in keys.iter().step_by(2) {
            wheel.remove(*key).unwrap();
        }
        assert_eq!(wheel.slots[place_index(&wheel, HOUR)].dead, 50);
        // The next wakeup is the stale bound of the removed first entry; following the bounds
        // moves the survivors down without their tombstones.
        assert_eq!(wheel.next_wakeup(), Some(HOUR));
        let mut fired = Vec::new();
        while let Some(wake) = wheel.next_wakeup() {
            fired.extend(pop_all(&mut wheel, wake));
            assert_invariants(&wheel);
        }
        let want: Vec<_> = (1..100).step_by(2).map(|i| (HOUR + i * MS, i)).collect();
        assert_eq!(fired, want);
    }

    #[test]
    fn buffers_are_reused_then_given_back() {
        let mut wheel = TimerWheel::new();
        for round in 0..3 {
            let base = round * SEC;
            for i in 0..1_000 {
                wheel.insert(base + 100 * MS + i * 7_919 % 900 * MS, i);
            }
            let before = wheel.buffered;
            assert_eq!(pop_all(&mut wheel, base + SEC).len(), 1_000);
            assert_invariants(&wheel);
            // Cascades kept the buffers they emptied.
            assert!(wheel.buffered >= before.min(1_000));
        }
        // Far over budget (the slab holds 1,000 slots): emptied buffers are freed again.
        wheel.buffered += 10 * (LEVELS * SLOTS + 1) * KEEP_CAPACITY;
        assert!(wheel.thrifty());
        let fake = 10 * (LEVELS * SLOTS + 1) * KEEP_CAPACITY;
        for i in 0..1_000 {
            wheel.insert(4 * SEC + 100 * MS + i * 7_919 % 900 * MS, i);
        }
        let cap_before = wheel.buffered - fake;
        pop_all(&mut wheel, 5 * SEC);
        wheel.buffered -= fake;
        assert!(wheel.buffered < cap_before);
        assert_invariants(&wheel);
    }

    #[test]
    fn far_buffers_are_lent_to_the_next_far_slot() {
        let mut wheel = TimerWheel::new();
        let block = MS << (2 * SLOT_BITS); // one level-2 slot: 4.096 s
        for i in 0..1_000 {
            wheel.insert(2 * block + i * MS, i);
        }
        let i = place_index(&wheel, 2 * block);
        assert_eq!(i / SLOTS, 2);
        assert_eq!(pop_all(&mut wheel, 3 * block).len(), 1_000);
        // The level-2 slot gave its buffer to the spares, the level-1 slots kept theirs.
        assert_eq!(wheel.slots[i].records.capacity(), 0);
        assert_eq!(wheel.spares.len(), 1);
        assert!(wheel.spares[0].capacity() >= 1_000);
        assert_invariants(&wheel);
        // The next far slot to fill takes it: refilling allocates nothing.
        let before = wheel.buffered;
        for i in 0..1_000 {
            wheel.insert(5 * block + i * MS, i);
        }
        let j = place_index(&wheel, 5 * block);
        assert_eq!(j / SLOTS, 2);
        assert!(wheel.spares.is_empty());
        assert_eq!(wheel.buffered, before);
        assert_eq!(pop_all(&mut wheel, 6 * block).len(), 1_000);
        assert_eq!(wheel.buffered, before);
        assert_invariants(&wheel);
    }

    #[test]
    fn due_run_and_heap_merge() {
        let mut wheel = TimerWheel::new();
        wheel.pop_expired(SEC);
        // In order: appended to the run. Out of order: the heap.
        let mut want = Vec::new();
        for i in 0..50u64 {
            let d = SEC + 10_000 * i;
            wheel.insert(d, i);
            want.push((d, i));
        }
        for i in 0..50u64 {
            let d = SEC - 1 - 10_000 * i;
            wheel.insert(d, 100 + i);
            want.push((d, 100 + i));
            let d = SEC + 10_000 * i + 5;
            wheel.insert(d, 200 + i);
            want.push((d, 200 + i));
        }
        // The last one of the second kind is after the whole run.
        assert_eq!(wheel.run.len(), 51);
        assert_eq!(wheel.heap.len(), 99);
        assert_invariants(&wheel);
        want.sort_unstable();
        // Pop in three goes, so that the fronts move at different speeds.
        let mut got = pop_all(&mut wheel, SEC);
        got.extend(pop_all(&mut wheel, SEC + 250_000));
        assert_invariants(&wheel);
        got.extend(pop_all(&mut wheel, SEC + MS));
        assert_eq!(got, want);
        assert!(wheel.is_empty());
    }

    #[test]
    fn advance_shows_newly_due_values() {
        let mut wheel = TimerWheel::new();
        wheel.insert(0, 0); // due at once: not shown
        for i in 1..=5u64 {
            wheel.insert(10 * MS + 100 - i, i); // one tick, reverse order
            wheel.insert(HOUR + i, 10 + i);
        }
        let mut shown = Vec::new();
        wheel.advance(5 * MS, |&v| shown.push(v));
        assert!(shown.is_empty());
        wheel.advance(10 * MS, |&v| shown.push(v));
        assert_eq!(shown, [5, 4, 3, 2, 1]); // in firing order
                                            // Nothing is popped, and the same instant shows nothing twice.
        assert_eq!(wheel.len(), 11);
        wheel.advance(10 * MS, |&v| shown.push(v));
        assert_eq!(shown.len(), 5);
        assert_eq!(wheel.pop_expired(10 * MS).map(|(_, _, v)| v), Some(0));
        assert!(wheel.pop_expired(10 * MS).is_none()); // 10 ms + 95 ns is later
        let fired: Vec<u64> = pop_all(&mut wheel, 10 * MS + 100)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(fired, [5, 4, 3, 2, 1]);
        shown.clear();
        wheel.advance(HOUR - 1, |&v| shown.push(v));
        assert!(shown.is_empty());
        wheel.advance(HOUR, |&v| shown.push(v));
        assert_eq!(
            shown,
            [11, 12, 13, 14, 15],
            "the tick of HOUR + i starts at HOUR"
        );
        assert!(wheel.pop_expired(HOUR).is_none());
        shown.clear();
        assert_eq!(pop_all(&mut wheel, HOUR + 5).len(), 5);
        wheel.advance(HOUR + MS, |&v| shown.push(v));
        assert!(shown.is_empty());
    }

    #[test]
    fn advance_shows_the_next_occupied_tick_too_and_each_entry_once() {
        let mut wheel = TimerWheel::new();
        // Ticks 5, 6 and 9, two entries each, inserted out of order; and one in the next block.
        for (i, tick) in [9, 6, 5, 9, 6, 5, 70].into_iter().enumerate() {
            wheel.insert(tick * MS + 50 - i as u64, i);
        }
        let mut shown = Vec::new();
        wheel.advance(5 * MS, |&v| shown.push(v));
        assert_eq!(
            shown,
            [5, 2, 1, 4],
            "tick 5 in firing order, then tick 6 as inserted"
        );
        shown.clear();
        wheel.advance(6 * MS, |&v| shown.push(v));
        assert!(shown.is_empty(), "tick 6 was shown already");
        // Entries inserted into a tick already shown are not shown; a removed one never is.
        let late = wheel.insert(6 * MS + 1, 7);
        assert_eq!(wheel.remove(late), Some(7));
        let removed = wheel.insert(9 * MS + 1, 8);
        assert_eq!(wheel.remove(removed), Some(8));
        wheel.advance(9 * MS, |&v| shown.push(v));
        assert_eq!(
            shown,
            [3, 0],
            "tick 9; the next occupied tick is in the next block"
        );
        shown.clear();
        let fired: Vec<usize> = pop_all(&mut wheel, 10 * MS)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(fired, [5, 2, 4, 1, 3, 0]);
        wheel.advance(70 * MS, |&v| shown.push(v));
        assert_eq!(shown, [6]);
        assert_invariants(&wheel);
    }

    #[test]
    fn far_deadlines_fire_exactly() {
        let starts = [0, 12_345_678, 63 * MS, 64 * MS - 1, SPAN - 1, SPAN + 7 * MS];
        let offsets = [
            HOUR,
            DAY,
            30 * DAY + 17,
            YEAR,
            SPAN - MS,
            SPAN - 1,
            SPAN,
            SPAN + 1,
            3 * YEAR,
            100 * YEAR + 123,
            u64::MAX / 2,
        ];
        for &start in &starts {
            let mut deadlines: Vec<u64> = offsets.iter().map(|&o| start + o).collect();
            deadlines.extend([u64::MAX - MS, u64::MAX - 1, u64::MAX]);
            // Jump straight to just before, then to the deadline.
            for &deadline in &deadlines {
                let mut wheel = TimerWheel::new();
                wheel.pop_expired(start);
                let key = wheel.insert(deadline, deadline);
                wheel.insert(u64::MAX, 0);
                assert!(wheel.next_wakeup().unwrap() <= deadline);
                assert!(wheel.pop_expired(deadline - 1).is_none(), "{deadline}");
                assert_eq!(wheel.pop_expired(deadline), Some((key, deadline, deadline)));

                // Following next_wakeup gets there too, in a few steps.
                let mut wheel = TimerWheel::new();
                wheel.pop_expired(start);
                let key = wheel.insert(deadline, deadline);
                let mut steps = 0;
                loop {
                    let wake = wheel.next_wakeup().unwrap();
                    assert!(wake <= deadline);
                    steps += 1;
                    if let Some(fired) = wheel.pop_expired(wake) {
                        assert_eq!(fired, (key, deadline, deadline));
                        break;
                    }
                    assert!(steps <= LEVELS + 2, "{steps} steps towards {deadline}");
                }
            }
            // All at once, creeping up on each by halving the gap.
            let mut wheel = TimerWheel::new();
            wheel.pop_expired(start);
            for &deadline in &deadlines {
                wheel.insert(deadline, deadline);
            }
            let mut now = start;
            for &deadline in &deadlines {
                while deadline - now > 1 {
                    now += (deadline - now) / 2;
                    assert!(wheel.pop_expired(now).is_none(), "{deadline} at {now}");
                }
                now = deadline;
                assert_eq!(pop_all(&mut wheel, now), vec![(deadline, deadline)]);
            }
            assert!(wheel.is_empty());
        }
    }

    #[test]
    fn level_boundaries() {
        // Every start near a block boundary against every deadline near one.
        let mut points = vec![0u64];
        for level in 0..=LEVELS as u32 {
            let b = 1u64 << (SLOT_BITS * level);
            for t in [b - 1, b, b + 1, 2 * b - 1, 2 * b, 63 * b, 64 * b - 1] {
                points.push(t);
            }
        }
        for &s in &points {
            for &d in &points {
                for (start, deadline) in [(s * MS, d * MS), (s * MS + 1, (s + d) * MS + 999_999)] {
                    let mut wheel = TimerWheel::new();
                    wheel.pop_expired(start);
                    let key = wheel.insert(deadline, ());
                    let expect = deadline.max(start);
                    if expect > start {
                        assert!(wheel.pop_expired(expect - 1).is_none());
                    }
                    assert_eq!(wheel.next_wakeup(), Some(deadline));
                    assert_eq!(wheel.pop_expired(expect), Some((key, deadline, ())));
                }
            }
        }
    }

    /// Deterministic pseudo-random deadlines across all scales.
    fn scattered(n: usize, seed: u64) -> Vec<u64> {
        let mut x = seed | 1;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let scale = (i % 9) as u32;
                let range = if scale == 8 {
                    u64::MAX
                } else {
                    MS << (5 * scale)
                };
                x % range
            })
            .collect()
    }

    #[test]
    fn next_wakeup_is_a_bound_and_converges() {
        for seed in 1..6 {
            let mut wheel = TimerWheel::new();
            let mut keys = Vec::new();
            let mut model = BTreeMap::new();
            for (i, &d) in scattered(2_000, seed).iter().enumerate() {
                keys.push(wheel.insert(d, i));
                model.insert((d, i), ());
            }
            // Removals leave stale slot minima behind: the bound must stay valid, and following
            // it must still reach each entry in a few steps.
            let mut removals = keys.iter().enumerate().step_by(3).peekable();
            let mut since_fire = 0;
            while let Some(wake) = wheel.next_wakeup() {
                let &(min, _) = model.keys().next().unwrap();
                assert!(wake <= min, "{wake} > {min}");
                since_fire += 1;
                while let Some((_, d, v)) = wheel.pop_expired(wake) {
                    assert_eq!(model.pop_first().unwrap().0, (d, v));
                    assert!(
                        since_fire <= LEVELS + 2,
                        "{since_fire} wakeups for one entry"
                    );
                    since_fire = 0;
                    // Remove a few later entries between firings, not all up front.
                    for (i, key) in removals.by_ref().take(2) {
                        if let Some(d) = wheel.deadline(*key) {
                            assert_eq!(wheel.remove(*key), Some(i));
                            model.remove(&(d, i));
                        }
                    }
                }
            }
            assert!(model.is_empty());
        }
    }

    #[test]
    fn next_wakeup_is_exact_without_removals() {
        let mut wheel = TimerWheel::new();
        let mut model = BTreeMap::new();
        let deadlines = scattered(3_000, 11);
        let (first, later) = deadlines.split_at(2_000);
        for (i, &d) in first.iter().enumerate() {
            wheel.insert(d, i);
            model.insert((d, i), ());
        }
        let mut later = later.iter().enumerate();
        while let Some(wake) = wheel.next_wakeup() {
            assert_eq!(wake, model.keys().next().unwrap().0);
            let (_, d, v) = wheel.pop_expired(wake).unwrap();
            assert_eq!(model.pop_first().unwrap().0, (d, v));
            // Keep inserting relative to the advancing time.
            if let Some((i, &d)) = later.next() {
                let d = wake.saturating_add(d);
                wheel.insert(d, 2_000 + i);
                model.insert((d, 2_000 + i), ());
            }
        }
        assert!(model.is_empty());
    }

    #[test]
    fn drain_empties() {
        let mut wheel = TimerWheel::new();
        let mut keys = Vec::new();
        for (i, &d) in scattered(1_000, 7).iter().enumerate() {
            keys.push(wheel.insert(d, i));
        }
        let fired = pop_all(&mut wheel, MS).len();
        assert!(fired > 0);
        assert_eq!(wheel.remove(keys[500]), Some(500));
        let mut values = wheel.drain();
        values.sort_unstable();
        assert_eq!(values.len(), 1_000 - 1 - fired);
        assert!(!values.contains(&500));
        assert!(wheel.is_empty());
        assert_eq!(wheel.next_wakeup(), None);
        assert!(wheel.pop_expired(u64::MAX).is_none());
        for key in &keys {
            assert_eq!(wheel.remove(*key), None);
        }
        let k = wheel.insert(0, 1);
        assert!(!keys.contains(&k));
        assert_eq!(wheel.pop_expired(0), Some((k, 0, 1)));
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u8, u64),
        Remove(u64),
        RemoveStale(u64),
        Advance(u8, u64),
    }

    /// One op from a `(selector, parameter)` pair: a plain tuple keeps generation cheap, which
    /// matters with 10,000 ops per case in a debug build (a `prop_oneof!` costs ~15x as much).
    fn op_strategy() -> impl Strategy<Value = Op> {
        any::<(u8, u64)>().prop_map(|(b, r)| match b {
            0..=127 => Op::Insert(b % 14, r),
            128..=178 => Op::Remove(r),
            179..=191 => Op::RemoveStale(r),
            _ => Op::Advance(b % 16, r),
        })
    }

    /// A deadline of kind `kind` relative to `now`, spread over every scale the wheel handles.
    fn deadline_for(kind: u8, r: u64, now: u64, last: u64) -> u64 {
        let tick_start = now / MS * MS;
        match kind {
            0 => tick_start.saturating_add(r % MS), // same tick, either side of now
            1 => now.saturating_add(r % (4 * MS)),  // next few ticks
            2..=7 => {
                let level = u32::from(kind - 2);
                now.saturating_add(r % (MS << (SLOT_BITS * (level + 1))))
            }
            8 => now.saturating_add(SPAN).saturating_add(r % (MS << 40)), // beyond the span
            9 => now.saturating_sub(r % (MS << 20)),                      // in the past
            10 => {
                // Exactly on (or 1 ns around) a level boundary.
                let block = MS << (SLOT_BITS * (r % 7) as u32);
                let boundary = (now / block).saturating_add(1).saturating_mul(block);
                boundary.saturating_add((r >> 8) % 3).saturating_sub(1)
            }
            11 => u64::MAX - r % 3,
            _ => last, // equal deadlines
        }
    }

    struct Model {
        live: HashMap<TimerKey, (u64, u64)>,
        order: BTreeMap<(u64, u64), (TimerKey, u64)>,
        keys: Vec<TimerKey>,
        now: u64,
        seq: u64,
        last: u64,
        /// Deadline of every value ever inserted (a value is its `seq`).
        deadline_of: HashMap<u64, u64>,
        /// Values shown by `advance`.
        shown: HashSet<u64>,
    }

    impl Model {
        fn min(&self) -> Option<u64> {
            self.order.keys().next().map(|&(d, _)| d)
        }
    }

    fn check(wheel: &TimerWheel<u64>, model: &Model) {
        assert_eq!(wheel.len(), model.live.len());
        match (wheel.next_wakeup(), model.min()) {
            (Some(w), Some(m)) => assert!(w <= m, "next_wakeup {w} > min {m}"),
            (None, None) => {}
            other => panic!("next_wakeup/min mismatch {other:?}"),
        }
        assert_due_bounded(wheel);
    }

    fn run_ops(start: u64, ops: &[Op]) {
        let mut wheel = TimerWheel::new();
        assert!(wheel.pop_expired(start).is_none());
        let mut m = Model {
            live: HashMap::new(),
            order: BTreeMap::new(),
            keys: Vec::new(),
            now: start,
            seq: 0,
            last: 0,
            deadline_of: HashMap::new(),
            shown: HashSet::new(),
        };
        for (step, op) in ops.iter().enumerate() {
            match *op {
                Op::Insert(kind, r) => {
                    let deadline = deadline_for(kind, r, m.now, m.last);
                    m.last = deadline;
                    let value = m.seq;
                    let key = wheel.insert(deadline, value);
                    assert!(m.live.insert(key, (deadline, m.seq)).is_none());
                    m.order.insert((deadline, m.seq), (key, value));
                    m.keys.push(key);
                    m.deadline_of.insert(value, deadline);
                    m.seq += 1;
                    assert_eq!(wheel.deadline(key), Some(deadline));
                }
                Op::Remove(_) if m.keys.is_empty() => {}
                Op::Remove(r) => {
                    // Half the time a recent key, which is likely still live, often in the due
                    // set: that is what makes tombstones and heap rebuilds.
                    let n = m.keys.len() as u64;
                    let pick = if r & 1 == 0 {
                        r % n
                    } else {
                        n - 1 - (r >> 1) % n.min(16)
                    };
                    let key = m.keys[pick as usize];
                    let want = m
                        .live
                        .remove(&key)
                        .map(|(d, s)| m.order.remove(&(d, s)).unwrap().1);
                    assert_eq!(wheel.remove(key), want);
                    assert_eq!(wheel.deadline(key), None);
                }
                Op::RemoveStale(_) if m.keys.is_empty() => {}
                Op::RemoveStale(r) => {
                    // The index of a past key with a neighbouring `seq`: stale, unless the slab
                    // slot now holds the entry with that `seq` (slots are reused at once).
                    let past = m.keys[(r % m.keys.len() as u64) as usize];
                    let delta = [-2, -1, 1, 2][((r >> 32) % 4) as usize];
                    let key = TimerKey {
                        index: past.index,
                        seq: past.seq.wrapping_add_signed(delta),
                    };
                    let want = m
                        .live
                        .remove(&key)
                        .map(|(d, s)| m.order.remove(&(d, s)).unwrap().1);
                    assert_eq!(wheel.remove(key), want);
                }
                Op::Advance(kind, r) => {
                    let target = match kind {
                        0..=3 => m.now.saturating_add(r % (2 * MS)),
                        4..=6 => {
                            let shift = (r % (u64::from(EPOCH_BITS) + 2)) as u32;
                            m.now.saturating_add((r >> 8) % (MS << shift))
                        }
                        7 => m.now.saturating_add(r % (MS << EPOCH_BITS)),
                        8..=11 => wheel.next_wakeup().unwrap_or(m.now),
                        12 => m.now.saturating_sub(r % (10 * MS)),
                        13 => m.min().unwrap_or(m.now),
                        14 => m.min().unwrap_or(1).saturating_sub(1),
                        _ => m.now,
                    };
                    m.now = m.now.max(target);
                    if r >> 62 & 1 == 1 {
                        let mut shown = Vec::new();
                        wheel.advance(target, |&v| shown.push(v));
                        // At most one occupied tick early: the first live one after now's.
                        let next_tick = (m.now / MS)
                            .checked_add(1)
                            .and_then(|t| t.checked_mul(MS))
                            .and_then(|start| m.order.range((start, 0)..).next())
                            .map(|(&(d, _), _)| d / MS);
                        for v in shown {
                            let d = m.deadline_of[&v];
                            assert!(m.order.contains_key(&(d, v)), "{v} shown but not live");
                            assert!(
                                d / MS <= m.now / MS || Some(d / MS) == next_tick,
                                "{v} shown more than one occupied tick early"
                            );
                            assert!(m.shown.insert(v), "{v} shown twice");
                        }
                    }
                    while let Some((key, deadline, value)) = wheel.pop_expired(target) {
                        let (&(d, s), &(k, v)) = m.order.first_key_value().expect("model empty");
                        assert!(d <= m.now, "model's next {d} is after now {}", m.now);
                        assert_eq!((key, deadline, value), (k, d, v));
                        m.order.remove(&(d, s));
                        m.live.remove(&k);
                        assert_eq!(wheel.remove(key), None);
                    }
                    if let Some(min) = m.min() {
                        assert!(min > m.now, "{min} due at {} but not popped", m.now);
                    }
                }
            }
            check(&wheel, &m);
            if step % 61 == 0 {
                assert_invariants(&wheel);
            }
        }
        assert_invariants(&wheel);
        let left = wheel.drain().len();
        assert_eq!(left, m.live.len());
        assert!(wheel.is_empty());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn matches_reference_model(
            start in prop_oneof![
                2 => Just(0u64),
                2 => 0u64..1 << 62,
                1 => u64::MAX - (MS << 40)..=u64::MAX,
            ],
            ops in proptest::collection::vec(op_strategy(), 10_000..12_000),
        ) {
            run_ops(start, &ops);
        }
    }
}
