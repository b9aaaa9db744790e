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
//!   level before it fires.
//!
//! This wheel follows tokio's level/slot arithmetic, but keeps asyncio's exact semantics: a
//! timer never fires before its deadline and equal deadlines fire in insertion order. Exactness
//! does not come from the tick; it comes from a small heap (the *due set*) that holds only the
//! timers of the current tick, so the heap stays tiny while the wheel holds the million others.
//!
//! # The constants
//!
//! * [`TICK_NS`] = 1 ms. epoll's timeout has millisecond resolution, so a finer wheel would only
//!   make more cascades without waking the loop more precisely. Sub-tick ordering is exact anyway,
//!   because entries of the current tick are ordered by the due heap on their full deadline.
//! * [`SLOTS`] = 64 per level, so one `u64` per level is an occupancy bitmap and finding the next
//!   occupied slot is a single `trailing_zeros`.
//! * [`LEVELS`] = 6, so the wheel spans 64^6 ticks = 2^36 ms, about 2.18 years. An entry farther
//!   away than that from the wheel's current time (more exactly: in a later 2^36-tick *epoch*)
//!   goes to an overflow list, which is re-examined only when time reaches its earliest epoch, so
//!   any deadline up to `u64::MAX` works.
//!
//! # Invariants
//!
//! Let `elapsed` be the wheel's current tick (the tick of the largest `now` seen) and, for an
//! entry, `tick = deadline / TICK_NS`.
//!
//! 1. An entry with `tick <= elapsed` is in the **due set**, a `BinaryHeap` of
//!    `Reverse((deadline, seq, index, generation))`. `pop_expired` pops from it while
//!    `deadline <= now`, so it never fires early and orders exactly within a tick.
//! 2. An entry with `tick > elapsed` in the same epoch as `elapsed` is in wheel slot
//!    `(level, (tick >> 6 * level) % 64)`, where `level` is the index of the highest 6-bit digit in
//!    which `tick` and `elapsed` differ (tokio's rule). Hence at every level an occupied slot is
//!    strictly after `elapsed`'s own digit, the slots of a lower level all start before those of a
//!    higher one, and the lowest occupied slot of the lowest occupied level holds the earliest
//!    wheel entries. No bitmap rotation is ever needed.
//! 3. An entry in a later epoch is on the **overflow** list; `overflow_floor` is a lower bound on
//!    (and, until a removal, equal to) the earliest overflow deadline.
//! 4. `slot_min[level][slot]` is a lower bound on (and, until a removal from that slot, equal to)
//!    the earliest deadline in that slot; it is `u64::MAX` for an empty slot.
//! 5. The top of the due heap is always a live entry. Removing a due entry leaves a tombstone
//!    (its generation and sequence number no longer match the slab); tombstones are popped as soon
//!    as they reach the top, the heap is rebuilt without them whenever they outnumber the live
//!    entries in it, and it is cleared when it holds no live entry, so its size is O(live).
//! 6. Every entry lives in one slab slot; free slots form a singly linked free list and carry the
//!    generation the next occupant will get, so a [`TimerKey`] of a removed or fired entry is
//!    stale forever (modulo 2^32 reuses of the same slot).
//!
//! # Complexity
//!
//! * `insert`: O(1) (amortized slab growth); O(log d) if the deadline is already due, d being the
//!   size of the due set (the entries of the current millisecond).
//! * `remove`: O(1) for an entry in the wheel or the overflow list; amortized O(log d) for one in
//!   the due set.
//! * `next_wakeup`: O(LEVELS) with the occupancy bitmaps.
//! * `pop_expired`: O(log d) per fired entry plus the cascades, each entry being moved at most
//!   once per level; crossing into a new 2.18-year epoch costs O(overflow length).
//! * Memory: one slab entry and one link pair per timer (40 + 8 bytes for a two-word `T`), plus
//!   a few kilobytes of slot heads and minima, plus 24 bytes per due-set item.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt;

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
/// Null link for the intrusive lists, so links fit in a `u32`.
const NONE: u32 = u32::MAX;

const _: () = assert!(SLOTS == 1 << SLOT_BITS && SLOTS <= 64);

/// Identifies one inserted timer: a slab index plus the generation of that slab slot.
///
/// A key stays valid until its entry is removed, fired or drained; afterwards every operation
/// taking it treats it as absent, even if the slab slot has been reused.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct TimerKey {
    index: u32,
    generation: u32,
}

/// Where an entry is, so that `remove` can unlink it in O(1). The slot is not stored: it is a
/// function of the deadline and the level. A fieldless enum leaves the compiler a niche in which
/// to encode `Slot::Vacant`, which keeps a slab slot at 40 bytes for a two-word `T`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[repr(u8)]
enum Loc {
    Level0 = 0,
    Level1 = 1,
    Level2 = 2,
    Level3 = 3,
    Level4 = 4,
    Level5 = 5,
    Overflow,
    Due,
}

const LEVEL_LOCS: [Loc; LEVELS] = [
    Loc::Level0,
    Loc::Level1,
    Loc::Level2,
    Loc::Level3,
    Loc::Level4,
    Loc::Level5,
];

struct Entry<T> {
    deadline: u64,
    /// Global insertion counter: breaks deadline ties, and tells tombstones apart exactly.
    seq: u64,
    value: T,
    generation: u32,
    loc: Loc,
}

/// The list links of the entry at the same slab index. They live in their own dense array
/// because cascading a slot is a pointer chase: with 8-byte links the chase stays in cache (or at
/// least in fewer cache lines), and the loads of the entries themselves no longer depend on each
/// other, so the CPU can overlap their cache misses.
#[derive(Copy, Clone)]
struct Link {
    prev: u32,
    next: u32,
}

enum Slot<T> {
    Occupied(Entry<T>),
    Vacant { next_free: u32, generation: u32 },
}

/// `Reverse((deadline, seq, index, generation))`: a min-heap on `(deadline, seq)`; the index and
/// generation let a popped item find its entry or recognise itself as a tombstone.
type DueItem = Reverse<(u64, u64, u32, u32)>;

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
    /// Parallel to `slab`; meaningful only for entries in a wheel slot or the overflow list.
    links: Vec<Link>,
    free_head: u32,
    len: usize,
    next_seq: u64,
    /// Largest `now` seen, in nanoseconds.
    now: u64,
    /// `now / TICK_NS`, except transiently while advancing.
    elapsed: u64,
    heads: [[u32; SLOTS]; LEVELS],
    occupied: [u64; LEVELS],
    slot_min: [[u64; SLOTS]; LEVELS],
    overflow_head: u32,
    overflow_floor: u64,
    due: BinaryHeap<DueItem>,
    /// Live entries in `due`; the rest of `due.len()` are tombstones.
    due_live: usize,
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
fn is_live<T>(slab: &[Slot<T>], &Reverse((_, seq, index, generation)): &DueItem) -> bool {
    matches!(&slab[index as usize], Slot::Occupied(e) if e.generation == generation && e.seq == seq)
}

impl<T> TimerWheel<T> {
    /// Creates an empty wheel whose current time is 0.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// Creates an empty wheel with room for `n` timers before the slab reallocates.
    pub fn with_capacity(n: usize) -> Self {
        TimerWheel {
            slab: Vec::with_capacity(n),
            links: Vec::with_capacity(n),
            free_head: NONE,
            len: 0,
            next_seq: 0,
            now: 0,
            elapsed: 0,
            heads: [[NONE; SLOTS]; LEVELS],
            occupied: [0; LEVELS],
            slot_min: [[u64::MAX; SLOTS]; LEVELS],
            overflow_head: NONE,
            overflow_floor: u64::MAX,
            due: BinaryHeap::new(),
            due_live: 0,
        }
    }

    /// Adds `value`, due at `deadline` (nanoseconds, same clock as `now`), and returns its key.
    ///
    /// A deadline at or before the current time is allowed and is due at once. Entries with equal
    /// deadlines fire in insertion order. O(1).
    #[inline]
    pub fn insert(&mut self, deadline: u64, value: T) -> TimerKey {
        let seq = self.next_seq;
        self.next_seq += 1;
        let (index, generation) = self.alloc(deadline, seq, value);
        self.place(index, deadline);
        self.len += 1;
        TimerKey { index, generation }
    }

    /// Cancels the entry for `key` and returns its value, or `None` if the key is stale (already
    /// removed, fired or drained). The slab slot is freed at once.
    ///
    /// O(1); amortized O(log d) if the entry is already in the due set (its deadline is in the
    /// current millisecond or earlier), d being the size of that set.
    #[inline]
    pub fn remove(&mut self, key: TimerKey) -> Option<T> {
        let loc = match self.slab.get(key.index as usize) {
            Some(Slot::Occupied(e)) if e.generation == key.generation => e.loc,
            _ => return None,
        };
        if loc == Loc::Due {
            // The heap item stays behind as a tombstone; `release` makes it recognisable.
            self.due_live -= 1;
            let entry = self.release(key.index);
            self.tidy_due();
            Some(entry.value)
        } else {
            self.unlink(key.index);
            Some(self.release(key.index).value)
        }
    }

    /// The deadline of the entry for `key`, or `None` if the key is stale.
    #[inline]
    pub fn deadline(&self, key: TimerKey) -> Option<u64> {
        match self.slab.get(key.index as usize) {
            Some(Slot::Occupied(e)) if e.generation == key.generation => Some(e.deadline),
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
    /// It is exact unless the earliest entry shares a wheel slot (or the overflow list) with an
    /// entry removed since that slot was filled: the bound then is the removed entry's deadline.
    /// Calling [`pop_expired`](Self::pop_expired) at the returned instant cascades that slot, so
    /// the next bound is tighter. O(LEVELS).
    #[inline]
    pub fn next_wakeup(&self) -> Option<u64> {
        // Due entries are in ticks <= elapsed, all other entries in later ticks.
        if let Some(&Reverse((deadline, ..))) = self.due.peek() {
            return Some(deadline);
        }
        // Invariant 2: the lowest occupied slot of the lowest occupied level is the earliest.
        for level in 0..LEVELS {
            let occupied = self.occupied[level];
            if occupied != 0 {
                return Some(self.slot_min[level][occupied.trailing_zeros() as usize]);
            }
        }
        if self.overflow_head != NONE {
            return Some(self.overflow_floor);
        }
        None
    }

    /// Pops one live entry whose deadline is `<= now`, in `(deadline, insertion)` order, as
    /// `(key, deadline, value)`; `None` when nothing is due at `now`.
    ///
    /// First advances the wheel to `now`, cascading slots as needed. A `now` earlier than a
    /// previous one is treated as the previous one: time never goes back.
    pub fn pop_expired(&mut self, now: u64) -> Option<(TimerKey, u64, T)> {
        if now > self.now {
            self.now = now;
            let tick = now / TICK_NS;
            if tick > self.elapsed {
                self.advance(tick);
            }
        }
        let &Reverse((deadline, _, index, generation)) = self.due.peek()?;
        if deadline > self.now {
            return None;
        }
        debug_assert!(is_live(&self.slab, self.due.peek().unwrap()));
        self.due.pop();
        self.due_live -= 1;
        let entry = self.release(index);
        self.tidy_due();
        Some((TimerKey { index, generation }, deadline, entry.value))
    }

    /// Removes every entry and returns the values, in no particular order. Every outstanding key
    /// becomes stale; the wheel's current time is kept.
    pub fn drain(&mut self) -> Vec<T> {
        let mut values = Vec::with_capacity(self.len);
        self.free_head = NONE;
        // Rebuild the free list in index order so that slots are reused from the front.
        for (index, slot) in self.slab.iter_mut().enumerate().rev() {
            let generation = match slot {
                Slot::Occupied(e) => e.generation.wrapping_add(1),
                Slot::Vacant { generation, .. } => *generation,
            };
            let old = std::mem::replace(
                slot,
                Slot::Vacant {
                    next_free: self.free_head,
                    generation,
                },
            );
            self.free_head = index as u32;
            if let Slot::Occupied(e) = old {
                values.push(e.value);
            }
        }
        self.len = 0;
        self.heads = [[NONE; SLOTS]; LEVELS];
        self.occupied = [0; LEVELS];
        self.slot_min = [[u64::MAX; SLOTS]; LEVELS];
        self.overflow_head = NONE;
        self.overflow_floor = u64::MAX;
        self.due.clear();
        self.due_live = 0;
        values
    }

    #[inline]
    fn entry(&self, index: u32) -> &Entry<T> {
        match &self.slab[index as usize] {
            Slot::Occupied(e) => e,
            Slot::Vacant { .. } => unreachable!("timer wheel link to a free slab slot"),
        }
    }

    #[inline]
    fn entry_mut(&mut self, index: u32) -> &mut Entry<T> {
        match &mut self.slab[index as usize] {
            Slot::Occupied(e) => e,
            Slot::Vacant { .. } => unreachable!("timer wheel link to a free slab slot"),
        }
    }

    /// Stores a new entry in a free slab slot (or a new one) and returns its index and generation.
    /// The entry is not yet linked anywhere.
    #[inline]
    fn alloc(&mut self, deadline: u64, seq: u64, value: T) -> (u32, u32) {
        let index = self.free_head;
        if index != NONE {
            let slot = &mut self.slab[index as usize];
            let (next_free, generation) = match *slot {
                Slot::Vacant {
                    next_free,
                    generation,
                } => (next_free, generation),
                Slot::Occupied(_) => unreachable!("timer wheel free list reaches a live entry"),
            };
            *slot = Slot::Occupied(Entry {
                deadline,
                seq,
                value,
                generation,
                loc: Loc::Due,
            });
            self.free_head = next_free;
            (index, generation)
        } else {
            let index = self.slab.len();
            // NONE is reserved as the null link.
            assert!(
                index < NONE as usize,
                "TimerWheel holds at most 2^32 - 1 timers"
            );
            self.links.push(Link {
                prev: NONE,
                next: NONE,
            });
            self.slab.push(Slot::Occupied(Entry {
                deadline,
                seq,
                value,
                generation: 0,
                loc: Loc::Due,
            }));
            (index as u32, 0)
        }
    }

    /// Frees the slab slot of an entry already unlinked from its list (or tombstoned in the due
    /// heap) and returns the entry. Bumping the generation is what makes old keys and tombstones
    /// stale.
    #[inline]
    fn release(&mut self, index: u32) -> Entry<T> {
        let slot = &mut self.slab[index as usize];
        let generation = match slot {
            Slot::Occupied(e) => e.generation.wrapping_add(1),
            Slot::Vacant { .. } => unreachable!("timer wheel releases a free slab slot"),
        };
        let old = std::mem::replace(
            slot,
            Slot::Vacant {
                next_free: self.free_head,
                generation,
            },
        );
        self.free_head = index;
        self.len -= 1;
        match old {
            Slot::Occupied(e) => e,
            Slot::Vacant { .. } => unreachable!(),
        }
    }

    /// Files an allocated entry (whose deadline is `deadline`) according to the invariants,
    /// relative to the current `elapsed`. Overwrites the entry's links and location.
    #[inline]
    fn place(&mut self, index: u32, deadline: u64) {
        let elapsed = self.elapsed;
        let tick = deadline / TICK_NS;
        if tick <= elapsed {
            let entry = self.entry_mut(index);
            entry.loc = Loc::Due;
            let item = Reverse((deadline, entry.seq, index, entry.generation));
            self.due.push(item);
            self.due_live += 1;
            return;
        }
        let level = level_for(elapsed, tick);
        let (head, loc) = if level < LEVELS {
            let slot = slot_for(tick, level);
            let head = std::mem::replace(&mut self.heads[level][slot], index);
            self.occupied[level] |= 1 << slot;
            let min = &mut self.slot_min[level][slot];
            *min = (*min).min(deadline);
            (head, LEVEL_LOCS[level])
        } else {
            let head = std::mem::replace(&mut self.overflow_head, index);
            self.overflow_floor = if head == NONE {
                deadline
            } else {
                self.overflow_floor.min(deadline)
            };
            (head, Loc::Overflow)
        };
        self.entry_mut(index).loc = loc;
        self.links[index as usize] = Link {
            prev: NONE,
            next: head,
        };
        if head != NONE {
            self.links[head as usize].prev = index;
        }
    }

    /// Unlinks an entry from its wheel slot or the overflow list, keeping heads and bitmaps right.
    /// The slot minimum (or overflow floor) is left as is: still a lower bound, and recomputing it
    /// would cost a scan of the slot.
    #[inline]
    fn unlink(&mut self, index: u32) {
        let Link { prev, next } = self.links[index as usize];
        if next != NONE {
            self.links[next as usize].prev = prev;
        }
        if prev != NONE {
            self.links[prev as usize].next = next;
            return;
        }
        let entry = self.entry(index);
        let (loc, tick) = (entry.loc, entry.deadline / TICK_NS);
        match loc {
            Loc::Overflow => {
                self.overflow_head = next;
                if next == NONE {
                    self.overflow_floor = u64::MAX;
                }
            }
            Loc::Due => unreachable!("due entries are not linked"),
            level_loc => {
                let level = level_loc as usize;
                let slot = slot_for(tick, level);
                self.heads[level][slot] = next;
                if next == NONE {
                    self.occupied[level] &= !(1 << slot);
                    self.slot_min[level][slot] = u64::MAX;
                }
            }
        }
    }

    /// Restores invariant 5 after the due set lost a live entry.
    #[inline]
    fn tidy_due(&mut self) {
        if self.due_live == 0 {
            self.due.clear();
            return;
        }
        if self.due.len() == self.due_live {
            // No tombstones: skip the liveness check, a likely cache miss on every pop.
            return;
        }
        while let Some(top) = self.due.peek() {
            if is_live(&self.slab, top) {
                break;
            }
            self.due.pop();
        }
        // Amortized O(1) per removal: the rebuild costs O(tombstones + live) < O(2 * tombstones),
        // and each tombstone was made by one removal since the previous rebuild.
        if self.due.len() - self.due_live > self.due_live {
            let slab = &self.slab;
            self.due.retain(|item| is_live(slab, item));
        }
    }

    /// Moves the wheel from `elapsed` to `tick` (> `elapsed`), emptying every slot that starts at
    /// or before `tick` into lower levels or the due set, in time order.
    fn advance(&mut self, tick: u64) {
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
                // start skips nothing; relative to the start, its entries land strictly lower.
                self.elapsed = start;
                self.cascade(level, slot);
            } else if self.overflow_head != NONE
                && epoch_start(self.overflow_floor / TICK_NS) <= tick
            {
                if !self.reopen_overflow(tick) {
                    break;
                }
            } else {
                break;
            }
        }
        // Remaining slots start after `tick`, so they sit where an insertion at `tick` would put
        // them (invariant 2 still holds), and overflow entries are in epochs after `tick`'s.
        self.elapsed = tick;
    }

    fn cascade(&mut self, level: usize, slot: usize) {
        let mut index = std::mem::replace(&mut self.heads[level][slot], NONE);
        self.occupied[level] &= !(1 << slot);
        self.slot_min[level][slot] = u64::MAX;
        while index != NONE {
            let next = self.links[index as usize].next;
            self.place(index, self.entry(index).deadline);
            index = next;
        }
    }

    /// Called with the wheel levels empty. Finds the earliest overflow epoch; if it starts at or
    /// before `tick`, moves `elapsed` to its start and re-files every overflow entry (those of
    /// that epoch enter the wheel). Returns whether it did.
    fn reopen_overflow(&mut self, tick: u64) -> bool {
        // The floor may be stale after removals; the scan makes it exact.
        let mut floor = u64::MAX;
        let mut index = self.overflow_head;
        while index != NONE {
            floor = floor.min(self.entry(index).deadline);
            index = self.links[index as usize].next;
        }
        self.overflow_floor = floor;
        let start = epoch_start(floor / TICK_NS);
        if start > tick {
            return false;
        }
        debug_assert!(start > self.elapsed);
        self.elapsed = start;
        let mut index = std::mem::replace(&mut self.overflow_head, NONE);
        self.overflow_floor = u64::MAX;
        while index != NONE {
            let next = self.links[index as usize].next;
            self.place(index, self.entry(index).deadline);
            index = next;
        }
        true
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
    use std::collections::{BTreeMap, HashMap};

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

    /// Checks the due heap's size bound (invariant 5).
    fn assert_due_bounded<T>(wheel: &TimerWheel<T>) {
        assert!(
            wheel.due.len() <= 2 * wheel.due_live + 1,
            "due heap {} for {} live",
            wheel.due.len(),
            wheel.due_live
        );
    }

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn entry_is_compact() {
        // 48 bytes per timer for a two-word value: 40 in the slab, 8 of links.
        assert_eq!(std::mem::size_of::<Slot<(usize, usize)>>(), 40);
        assert_eq!(std::mem::size_of::<Link>(), 8);
        assert_eq!(std::mem::size_of::<Slot<u64>>(), 32);
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

        // Keys that never existed.
        let bogus = TimerKey {
            index: 1_000,
            generation: 0,
        };
        assert_eq!(wheel.remove(bogus), None);
        assert_eq!(wheel.remove(c), Some('c'));
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
        assert!(wheel.due.len() <= 2 * 20 + 1);
        // The rebuilt heap still orders the survivors exactly. (`live` alternates below/above.)
        for key in live.iter().step_by(2) {
            wheel.remove(*key).unwrap();
            assert_due_bounded(&wheel);
        }
        let want: Vec<(u64, u64)> = (0..10).map(|i| (SEC + 900_000 + i, 100 + i)).collect();
        assert_eq!(pop_all(&mut wheel, SEC + 900_000 + 4), want[..5]);
        assert_eq!(pop_all(&mut wheel, SEC + MS), want[5..]);
        assert_eq!(wheel.due.len(), 0);
        assert!(wheel.due.capacity() < 1_000);
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
        RemoveStale(u32, u32),
        Advance(u8, u64),
    }

    /// One op from a `(selector, parameter)` pair: a plain tuple keeps generation cheap, which
    /// matters with 10,000 ops per case in a debug build (a `prop_oneof!` costs ~15x as much).
    fn op_strategy() -> impl Strategy<Value = Op> {
        any::<(u8, u64)>().prop_map(|(b, r)| match b {
            0..=127 => Op::Insert(b % 14, r),
            128..=178 => Op::Remove(r),
            179..=191 => Op::RemoveStale((r % 64) as u32, ((r >> 32) % 4) as u32),
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
        };
        for op in ops {
            match *op {
                Op::Insert(kind, r) => {
                    let deadline = deadline_for(kind, r, m.now, m.last);
                    m.last = deadline;
                    let value = m.seq;
                    let key = wheel.insert(deadline, value);
                    assert!(m.live.insert(key, (deadline, m.seq)).is_none());
                    m.order.insert((deadline, m.seq), (key, value));
                    m.keys.push(key);
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
                Op::RemoveStale(index, generation) => {
                    let key = TimerKey { index, generation };
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
        }
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
