//! Weak handles of the sync primitives and the queues (`downgrade` /
//! `upgrade`, as `Rc` / `Weak`), and what they mean to the stuck-task
//! check: a live weak handle is a way in, and dropping the last one makes
//! the check look again.

mod util;

use std::cell::Cell;
use std::rc::Rc;

use aioloop::queue::{Fifo, Lifo, LifoQueue, Priority, PriorityQueue, Queue, Storage, WeakQueue};
use aioloop::sync::{
    Barrier, BoundedSemaphore, Condition, Event, Lock, Semaphore, WeakBarrier,
    WeakBoundedSemaphore, WeakCondition, WeakEvent, WeakLock, WeakSemaphore,
};
use aioloop::{create_task, sleep, EventLoop};
use util::{destroyed, reports, secs, Dropped};

// ---------------------------------------------------------------------------
// Round trips: `upgrade` hands back the same primitive while a strong handle
// lives, and `None` once none does.
// ---------------------------------------------------------------------------

#[test]
fn event_round_trip() {
    let ev = Event::new();
    let weak: WeakEvent = ev.downgrade();
    assert_eq!(format!("{weak:?}"), "WeakEvent(<Event [unset]>)");
    weak.upgrade().unwrap().set();
    assert!(ev.is_set(), "set through the upgraded handle");
    ev.clear();
    assert!(
        !weak.upgrade().unwrap().is_set(),
        "cleared through the original"
    );
    let clone = ev.clone();
    drop(ev);
    assert!(weak.upgrade().is_some(), "a clone is a strong handle");
    drop(clone);
    assert!(weak.upgrade().is_none());
    assert_eq!(format!("{weak:?}"), "WeakEvent(dropped)");
}

#[test]
fn lock_round_trip() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let lock = Lock::new();
    let weak: WeakLock = lock.downgrade();
    lp.run_until_complete({
        let weak = weak.clone();
        async move {
            {
                let up = weak.upgrade().unwrap();
                let held = up.acquire().await.unwrap();
                assert!(lock.locked(), "taken through the upgraded handle");
                drop(held);
            }
            assert!(!lock.locked());
            let held = lock.acquire().await.unwrap();
            assert!(weak.upgrade().unwrap().locked(), "seen through the weak");
            drop(held);
        }
    })
    .unwrap();
    assert!(weak.upgrade().is_none(), "`lock` went with the coroutine");
}

#[test]
fn condition_round_trip() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let cond = Condition::new();
    let weak: WeakCondition = cond.downgrade();
    lp.run_until_complete({
        let weak = weak.clone();
        async move {
            let up = weak.upgrade().unwrap();
            let held = up.acquire().await.unwrap();
            assert!(cond.locked(), "the same condition, over the same lock");
            // Notifying needs the lock: taken through the other handle.
            cond.notify_all().unwrap();
            drop(held);
            assert_eq!(
                cond.notify(1),
                Err(aioloop::sync::SyncError::Runtime(
                    "cannot notify on un-acquired lock"
                ))
            );
        }
    })
    .unwrap();
    assert!(weak.upgrade().is_none(), "`cond` went with the coroutine");
}

#[test]
fn semaphore_round_trip() {
    let sem = Semaphore::new(1);
    let weak: WeakSemaphore = sem.downgrade();
    weak.upgrade().unwrap().release();
    assert_eq!(sem.value(), 2, "released through the upgraded handle");
    drop(sem);
    assert!(weak.upgrade().is_none());
}

#[test]
fn bounded_semaphore_round_trip() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let sem = BoundedSemaphore::new(1);
    let weak: WeakBoundedSemaphore = sem.downgrade();
    lp.run_until_complete({
        let weak = weak.clone();
        async move {
            let up = weak.upgrade().unwrap();
            let permit = up.acquire().await.unwrap();
            assert_eq!(sem.value(), 0, "taken through the upgraded handle");
            drop(permit);
            assert!(weak.upgrade().unwrap().release().is_err(), "the same bound");
        }
    })
    .unwrap();
    assert!(weak.upgrade().is_none(), "`sem` went with the coroutine");
}

#[test]
fn barrier_round_trip() {
    let barrier = Barrier::new(2).unwrap();
    let weak: WeakBarrier = barrier.downgrade();
    assert_eq!(weak.upgrade().unwrap().parties(), 2);
    weak.upgrade().unwrap().abort();
    assert!(barrier.broken(), "aborted through the upgraded handle");
    barrier.reset();
    assert!(!weak.upgrade().unwrap().broken());
    drop(barrier);
    assert!(weak.upgrade().is_none());
}

fn queue_round_trip<S: Storage<u32> + 'static>(name: &str) {
    let q: Queue<u32, S> = Queue::new(0);
    let weak: WeakQueue<u32, S> = q.downgrade();
    weak.upgrade().unwrap().put_nowait(7).unwrap();
    assert_eq!(q.qsize(), 1, "put through the upgraded handle");
    assert_eq!(
        format!("{weak:?}"),
        format!("WeakQueue(<{name} maxsize=0 qsize=1>)")
    );
    assert_eq!(weak.upgrade().unwrap().get_nowait().unwrap(), 7);
    assert!(q.empty(), "taken through the upgraded handle");
    drop(q);
    assert!(weak.upgrade().is_none());
    assert_eq!(format!("{weak:?}"), "WeakQueue(dropped)");
}

#[test]
fn queue_round_trip_fifo() {
    queue_round_trip::<Fifo<u32>>("Queue");
}

#[test]
fn queue_round_trip_lifo() {
    queue_round_trip::<Lifo<u32>>("LifoQueue");
    let q: LifoQueue<u8> = LifoQueue::new(0);
    let weak: aioloop::queue::WeakLifoQueue<u8> = q.downgrade();
    assert!(weak.upgrade().is_some());
}

#[test]
fn queue_round_trip_priority() {
    queue_round_trip::<Priority<u32>>("PriorityQueue");
    let q: PriorityQueue<u8> = PriorityQueue::new(0);
    let weak: aioloop::queue::WeakPriorityQueue<u8> = q.downgrade();
    assert!(weak.upgrade().is_some());
}

// ---------------------------------------------------------------------------
// The stuck-task check, once per primitive: the waiter's only strong handle
// lies inside its own future, and a weak handle lies outside it.
// ---------------------------------------------------------------------------

/// One primitive kind, as the parking tests use it.
trait Prim: Sized + 'static {
    type Weak: Clone + 'static;
    /// A primitive that `park` waits on until `wake`.
    async fn make() -> Self;
    fn downgrade(&self) -> Self::Weak;
    fn upgrade(weak: &Self::Weak) -> Option<Self>;
    /// Waits (borrowing `self`, as a waiter holding its only handle does).
    async fn park(&self);
    /// Lets one `park` go on.
    async fn wake(&self);
    /// How the report names the wait: `Event.wait of <Event [...]>`.
    const WAITS_ON: &'static str;
}

impl Prim for Event {
    type Weak = WeakEvent;
    async fn make() -> Self {
        Event::new()
    }
    fn downgrade(&self) -> WeakEvent {
        Event::downgrade(self)
    }
    fn upgrade(weak: &WeakEvent) -> Option<Self> {
        weak.upgrade()
    }
    async fn park(&self) {
        self.wait().await.unwrap();
    }
    async fn wake(&self) {
        self.set();
    }
    const WAITS_ON: &'static str = "Event.wait of <Event [unset, waiters:1]>";
}

impl Prim for Lock {
    type Weak = WeakLock;
    async fn make() -> Self {
        let lock = Lock::new();
        // Held by nobody in particular: `release` lets the waiter in.
        std::mem::forget(lock.acquire().await.unwrap());
        lock
    }
    fn downgrade(&self) -> WeakLock {
        Lock::downgrade(self)
    }
    fn upgrade(weak: &WeakLock) -> Option<Self> {
        weak.upgrade()
    }
    async fn park(&self) {
        drop(self.acquire().await.unwrap());
    }
    async fn wake(&self) {
        self.release().unwrap();
    }
    const WAITS_ON: &'static str = "Lock.acquire of <Lock [locked, waiters:1]>";
}

impl Prim for Condition {
    type Weak = WeakCondition;
    async fn make() -> Self {
        Condition::new()
    }
    fn downgrade(&self) -> WeakCondition {
        Condition::downgrade(self)
    }
    fn upgrade(weak: &WeakCondition) -> Option<Self> {
        weak.upgrade()
    }
    async fn park(&self) {
        let mut held = self.acquire().await.unwrap();
        self.wait(&mut held).await.unwrap();
    }
    async fn wake(&self) {
        let _held = self.acquire().await.unwrap();
        self.notify(1).unwrap();
    }
    const WAITS_ON: &'static str = "Condition.wait of <Condition [unlocked, waiters:1]>";
}

impl Prim for Semaphore {
    type Weak = WeakSemaphore;
    async fn make() -> Self {
        Semaphore::new(0)
    }
    fn downgrade(&self) -> WeakSemaphore {
        Semaphore::downgrade(self)
    }
    fn upgrade(weak: &WeakSemaphore) -> Option<Self> {
        weak.upgrade()
    }
    async fn park(&self) {
        drop(self.acquire().await.unwrap());
    }
    async fn wake(&self) {
        self.release();
    }
    const WAITS_ON: &'static str = "Semaphore.acquire of <Semaphore [locked, waiters:1]>";
}

impl Prim for BoundedSemaphore {
    type Weak = WeakBoundedSemaphore;
    async fn make() -> Self {
        let sem = BoundedSemaphore::new(1);
        // Its one permit is taken and kept (no guard gives it back):
        // `release` gives it to the waiter.
        sem.acquire().await.unwrap().forget();
        sem
    }
    fn downgrade(&self) -> WeakBoundedSemaphore {
        BoundedSemaphore::downgrade(self)
    }
    fn upgrade(weak: &WeakBoundedSemaphore) -> Option<Self> {
        weak.upgrade()
    }
    async fn park(&self) {
        drop(self.acquire().await.unwrap());
    }
    async fn wake(&self) {
        self.release().unwrap();
    }
    const WAITS_ON: &'static str = "Semaphore.acquire of <BoundedSemaphore [locked, waiters:1]>";
}

impl Prim for Barrier {
    type Weak = WeakBarrier;
    async fn make() -> Self {
        Barrier::new(2).unwrap()
    }
    fn downgrade(&self) -> WeakBarrier {
        Barrier::downgrade(self)
    }
    fn upgrade(weak: &WeakBarrier) -> Option<Self> {
        weak.upgrade()
    }
    async fn park(&self) {
        assert_eq!(self.wait().await.unwrap(), 0, "first to arrive");
    }
    async fn wake(&self) {
        // The second party: the round ends.
        assert_eq!(self.wait().await.unwrap(), 1);
    }
    const WAITS_ON: &'static str = "Barrier.wait of <Barrier [filling, waiters:1/2]>";
}

/// The queue's `NAME`, for the report's text.
trait Named {
    const WAITS_ON: &'static str;
}
impl Named for Fifo<u32> {
    const WAITS_ON: &'static str = "Queue.get of <Queue maxsize=0 qsize=0>";
}
impl Named for Lifo<u32> {
    const WAITS_ON: &'static str = "Queue.get of <LifoQueue maxsize=0 qsize=0>";
}
impl Named for Priority<u32> {
    const WAITS_ON: &'static str = "Queue.get of <PriorityQueue maxsize=0 qsize=0>";
}

impl<S: Storage<u32> + Named + 'static> Prim for Queue<u32, S> {
    type Weak = WeakQueue<u32, S>;
    async fn make() -> Self {
        Queue::new(0)
    }
    fn downgrade(&self) -> WeakQueue<u32, S> {
        Queue::downgrade(self)
    }
    fn upgrade(weak: &WeakQueue<u32, S>) -> Option<Self> {
        weak.upgrade()
    }
    async fn park(&self) {
        assert_eq!(self.get().await.unwrap(), 42);
    }
    async fn wake(&self) {
        self.put_nowait(42).unwrap();
    }
    const WAITS_ON: &'static str = S::WAITS_ON;
}

/// The waiter's only strong handle is inside its own future; a weak handle
/// is held outside. Without the weak handle the check would free the task
/// when it parks (`a_dropped_last_weak_handle_...` shows it does once the
/// weak goes): with it, the task is alive, and upgrading the weak handle
/// wakes it.
fn weak_outside_keeps_the_waiter_alive_and_can_wake_it<P: Prim>() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    let woken = Rc::new(Cell::new(false));
    lp.run_until_complete({
        let woken = woken.clone();
        async move {
            let p = P::make().await;
            let weak = p.downgrade();
            let w = woken.clone();
            let t = create_task(async move {
                p.park().await;
                w.set(true);
            })
            .unwrap();
            t.set_name("waiter");
            drop(t);
            sleep(secs(1)).await.unwrap();
            assert!(
                destroyed(&seen).is_empty(),
                "a weak handle outside reaches the primitive: {:?}",
                destroyed(&seen)
            );
            assert!(!woken.get());
            let p = P::upgrade(&weak).expect("the waiter's handle keeps it alive");
            p.wake().await;
            drop(p);
            sleep(secs(1)).await.unwrap();
            assert!(woken.get(), "woken through the upgraded handle");
            assert!(seen.borrow().is_empty(), "{:?}", seen.borrow());
        }
    })
    .unwrap();
}

/// The same waiter, with two weak handles outside: dropping one leaves a
/// way in; dropping the last one makes the check look again, at the end of
/// that step, and report and free the task.
fn a_dropped_last_weak_handle_makes_the_waiter_reported<P: Prim>() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    let freed = Rc::new(Cell::new(false));
    lp.run_until_complete({
        let freed = freed.clone();
        async move {
            let p = P::make().await;
            let weak = p.downgrade();
            let weak2 = weak.clone();
            let t = create_task(async move {
                let _guard = Dropped(freed);
                p.park().await;
            })
            .unwrap();
            t.set_name("waiter");
            drop(t);
            sleep(secs(1)).await.unwrap();
            assert!(destroyed(&seen).is_empty());
            drop(weak);
            sleep(secs(1)).await.unwrap();
            assert!(destroyed(&seen).is_empty(), "`weak2` is still a way in");
            drop(weak2);
            assert!(
                destroyed(&seen).is_empty(),
                "checked at the end of this step, not inside it"
            );
            sleep(secs(0)).await.unwrap();
            let got = destroyed(&seen);
            assert_eq!(got.len(), 1, "{got:?}");
            assert!(got[0]
                .task
                .as_ref()
                .unwrap()
                .starts_with("<Task pending name='waiter'"));
            let detail = got[0].detail.clone().unwrap();
            let expected = format!(
                "'waiter' waits on {}, and nothing can ever wake it",
                P::WAITS_ON
            );
            assert!(detail.starts_with(&expected), "{detail}\n{expected}");
            assert!(
                detail.contains("1 strong handle and no Weak, inside this task's own future"),
                "{detail}"
            );
        }
    })
    .unwrap();
    assert!(freed.get(), "freed: its future was dropped");
    assert!(lp.all_tasks().is_empty(), "freed: it left the slab");
}

macro_rules! parking_cases {
    ($($kind:ident: $ty:ty,)*) => {$(
        mod $kind {
            use super::*;

            #[test]
            fn a_weak_handle_held_outside_keeps_the_waiter_alive_and_can_wake_it() {
                weak_outside_keeps_the_waiter_alive_and_can_wake_it::<$ty>();
            }

            #[test]
            fn dropping_the_last_weak_handle_reports_the_waiter_stuck() {
                a_dropped_last_weak_handle_makes_the_waiter_reported::<$ty>();
            }
        }
    )*};
}

parking_cases! {
    event: Event,
    lock: Lock,
    condition: Condition,
    semaphore: Semaphore,
    bounded_semaphore: BoundedSemaphore,
    barrier: Barrier,
    queue: Queue<u32, Fifo<u32>>,
    lifo_queue: Queue<u32, Lifo<u32>>,
    priority_queue: Queue<u32, Priority<u32>>,
}

// ---------------------------------------------------------------------------
// Weak handles in other places.
// ---------------------------------------------------------------------------

#[test]
fn a_weak_handle_inside_the_waiters_own_future_still_counts_as_a_way_in() {
    // The check cannot tell where a weak handle lies (nothing borrows it,
    // so it may have moved anywhere): when unsure, alive. The task is only
    // reported when the loop is closed.
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    let freed = Rc::new(Cell::new(false));
    let f = freed.clone();
    let s = seen.clone();
    lp.run_until_complete(async move {
        let ev = Event::new();
        let t = create_task(async move {
            let _guard = Dropped(f);
            let _mine = ev.downgrade();
            ev.wait().await.ok();
        })
        .unwrap();
        t.set_name("self-weak");
        drop(t);
        sleep(secs(1)).await.unwrap();
        assert!(destroyed(&s).is_empty(), "{:?}", destroyed(&s));
    })
    .unwrap();
    assert!(!freed.get());
    lp.close().unwrap();
    let got = destroyed(&seen);
    assert_eq!(got.len(), 1);
    assert!(got[0]
        .detail
        .as_ref()
        .unwrap()
        .starts_with("The loop was closed while 'self-weak' was still pending"));
    assert!(freed.get());
}

#[test]
fn a_weak_handle_in_a_callback_keeps_the_waiter_alive_until_the_callback_sets_it() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let seen = reports(&lp);
    let woken = Rc::new(Cell::new(false));
    let w = woken.clone();
    lp.run_until_complete(async move {
        let ev = Event::new();
        let weak = ev.downgrade();
        let t = create_task(async move {
            ev.wait().await.unwrap();
            w.set(true);
        })
        .unwrap();
        drop(t);
        // The only way in is the timer's callback, through its weak handle.
        aioloop::get_running_loop()
            .unwrap()
            .call_later(secs(5), move || {
                if let Some(ev) = weak.upgrade() {
                    ev.set();
                }
            })
            .unwrap();
        sleep(secs(10)).await.unwrap();
    })
    .unwrap();
    assert!(destroyed(&seen).is_empty(), "{:?}", destroyed(&seen));
    assert!(
        woken.get(),
        "the callback upgraded its weak handle and set it"
    );
}
