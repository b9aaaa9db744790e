//! `Event`: asyncio's `asyncio.Event`, a flag that tasks can wait for.
//!
//! `set()` wakes every waiter at once; a waiter woken by `set()` returns
//! even if the flag is cleared again before it runs (asyncio resolves each
//! waiter's future, and a resolved future stays resolved).
//!
//! # Invariants
//!
//! - While the flag is set, the waiter list is empty or every waiter in it
//!   is notified.
//! - `wait()` on a set event completes at its first poll, without yielding.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};

use super::{fmt_weak, weak_handle_dropped, Waiters};
use crate::debug::NeverAwaited;
use crate::errors::CancelledError;
use crate::tasks::{set_fut_waiter, take_cancel_request, FutWaiter, WaitTarget};
use crate::waiters::{WaitKind, WaitList, WaitSite, WaiterKey};

#[derive(Default)]
struct EventInner {
    value: Cell<bool>,
    waiters: Waiters,
}

/// asyncio's `Event`: `wait()` until someone calls `set()`.
///
/// ```
/// use aioloop::sync::Event;
/// use aioloop::{create_task, EventLoop};
///
/// let lp = EventLoop::new().unwrap();
/// let ready = Event::new();
/// let got = lp.run_until_complete({
///     let ready = ready.clone();
///     async move {
///         let waiter = {
///             let ready = ready.clone();
///             create_task(async move { ready.wait().await?; Ok("woken") }).unwrap()
///         };
///         ready.set();
///         waiter.await.unwrap()
///     }
/// });
/// assert_eq!(got.unwrap(), "woken");
/// assert!(ready.is_set());
/// ```
#[derive(Clone, Default)]
pub struct Event {
    inner: Rc<EventInner>,
}

impl Event {
    /// A new event, not set.
    pub fn new() -> Event {
        Event::default()
    }

    /// True once `set()` was called and `clear()` was not since.
    pub fn is_set(&self) -> bool {
        self.inner.value.get()
    }

    /// Sets the flag and wakes every waiter (they run on the next
    /// iterations, in the order they started waiting).
    pub fn set(&self) {
        if !self.inner.value.replace(true) {
            self.inner.waiters.notify_all();
        }
    }

    /// Resets the flag: later `wait()` calls block until the next `set()`.
    pub fn clear(&self) {
        self.inner.value.set(false);
    }

    /// A [`WeakEvent`] to this event: it does not keep the event alive.
    ///
    /// ```
    /// use aioloop::sync::Event;
    ///
    /// let ev = Event::new();
    /// let weak = ev.downgrade();
    /// weak.upgrade().unwrap().set();
    /// assert!(ev.is_set(), "the same event");
    /// ```
    pub fn downgrade(&self) -> WeakEvent {
        WeakEvent {
            inner: Rc::downgrade(&self.inner),
        }
    }

    /// Waits until the flag is set (asyncio's `wait()`, which returns
    /// `True`); a cancellation point.
    #[track_caller]
    pub fn wait(&self) -> EventWait<'_> {
        EventWait {
            event: self,
            key: None,
            created: NeverAwaited::new(),
        }
    }
}

impl WaitTarget for EventInner {
    fn for_each_list(&self, f: &mut dyn FnMut(&WaitList)) {
        f(self.waiters.list())
    }
    fn unnotified(&self) -> usize {
        self.waiters.list().unnotified()
    }
    fn describe(&self) -> String {
        let state = if self.value.get() { "set" } else { "unset" };
        match self.waiters.waiters() {
            0 => format!("<Event [{state}]>"),
            n => format!("<Event [{state}, waiters:{n}]>"),
        }
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        self.inner
            .waiters
            .handle_dropped(Rc::strong_count(&self.inner));
    }
}

impl fmt::Debug for Event {
    /// asyncio's repr: `<Event [set]>`, `<Event [unset, waiters:1]>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.describe())
    }
}

/// A weak handle to an [`Event`] (`Rc`'s `Weak`): it does not keep the
/// event alive, and [`upgrade`](WeakEvent::upgrade) gives a handle to the
/// same event while a strong one is left.
///
/// For the stuck-task check a live weak handle is a way in: a task waiting
/// on the event is never reported stuck while one exists, since whoever
/// holds it could upgrade it and set the event. Dropping the last one makes
/// the check look again (see `docs/DEBUGGING.md`).
///
/// ```
/// use aioloop::sync::{Event, WeakEvent};
///
/// struct Owner {
///     ready: WeakEvent,
/// }
///
/// let ev = Event::new();
/// let owner = Owner { ready: ev.downgrade() };
/// if let Some(ev) = owner.ready.upgrade() {
///     ev.set();
/// }
/// assert!(ev.is_set());
/// drop(ev);
/// assert!(owner.ready.upgrade().is_none(), "no strong handle is left");
/// ```
#[derive(Clone)]
pub struct WeakEvent {
    inner: Weak<EventInner>,
}

impl WeakEvent {
    /// The event, if a strong handle to it is still alive.
    ///
    /// ```
    /// use aioloop::sync::Event;
    ///
    /// let ev = Event::new();
    /// let weak = ev.downgrade();
    /// assert!(!weak.upgrade().unwrap().is_set());
    /// drop(ev);
    /// assert!(weak.upgrade().is_none());
    /// ```
    pub fn upgrade(&self) -> Option<Event> {
        self.inner.upgrade().map(|inner| Event { inner })
    }
}

impl Drop for WeakEvent {
    fn drop(&mut self) {
        weak_handle_dropped(&self.inner, |i| &i.waiters);
    }
}

impl fmt::Debug for WeakEvent {
    /// `WeakEvent(<Event [unset]>)`, or `WeakEvent(dropped)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_weak(f, "WeakEvent", &self.inner)
    }
}

/// The future of [`Event::wait`].
#[must_use = "futures do nothing unless awaited"]
pub struct EventWait<'a> {
    event: &'a Event,
    key: Option<WaiterKey>,
    created: NeverAwaited,
}

impl Future for EventWait<'_> {
    type Output = Result<(), CancelledError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        this.created.polled();
        let inner = &this.event.inner;
        if let Some(c) = take_cancel_request() {
            if let Some(k) = this.key.take() {
                inner.waiters.unregister(k);
            }
            return Poll::Ready(Err(c));
        }
        let notified = this.key.and_then(|k| inner.waiters.is_notified(k));
        if notified == Some(true) || inner.value.get() {
            if let Some(k) = this.key.take() {
                inner.waiters.unregister(k);
            }
            return Poll::Ready(Ok(()));
        }
        let site = WaitSite::new(WaitKind::EventWait, this.event);
        this.key = Some(inner.waiters.register(this.key, cx, site));
        set_fut_waiter(FutWaiter::of(inner));
        Poll::Pending
    }
}

impl Drop for EventWait<'_> {
    fn drop(&mut self) {
        self.created.check("Event.wait");
        if let Some(k) = self.key.take() {
            self.event.inner.waiters.unregister(k);
        }
    }
}
