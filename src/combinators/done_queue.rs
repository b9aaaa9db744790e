//! The plumbing shared by `gather`, `wait` and `as_completed`: learning, in
//! order, which of several tasks completed.
//!
//! asyncio's three functions each add one done callback to every child
//! (`_done_callback`, `_on_completion`) and, for a timeout, one
//! `call_later` timer; the callbacks run through the ready queue, one
//! iteration after the child completes, and wake the waiting coroutine.
//! [`DoneQueue`] does exactly that: each child's done callback and the timer
//! append an [`Event`] to one shared FIFO and wake the waiting task; the
//! combinator pops the events in the order they happened.
//!
//! `gather` has no timer, and takes the cheaper road ([`DoneQueue::inline`]):
//! instead of a closure per child (with a clone of the child's handle, two
//! boxes, and a `call_soon` handle when it runs one iteration later from
//! the ready queue), each child's completion list holds a small [`Notify`]
//! entry that appends the event at the moment the child completes — as an
//! awaiting task is woken. The children done before the first poll are
//! queued at once, in input order, and held back until the next poll (see
//! `held`). Completion order is kept (the events are appended in it),
//! and the gathering task learns of a completion one iteration sooner than
//! with a callback: the price of a callback hop per child was twice the
//! cost of awaiting the children one by one (`benches/tasks.rs`, `gather`
//! rows). `wait` and `as_completed` keep the callbacks, because their
//! timeout's place among the completions depends on the hop (a child that
//! completes in the iteration its timer fires, before the timer runs, is
//! after the timeout in asyncio).
//!
//! # Invariants
//!
//! - Events are popped in the order the callbacks ran: completion order,
//!   with the timeout at its place among the completions (`as_completed`
//!   relies on it to tell a result from a timeout).
//! - Registration is lazy (first poll), as asyncio's: the callbacks and the
//!   timer exist only while somebody awaits.
//! - The waiting task is woken once per batch of events: the first event
//!   after it parked wakes it, the others find it woken already.
//! - Dropping the queue removes every callback not yet run and cancels the
//!   timer: an abandoned `gather`/`wait` leaves nothing behind on the
//!   children, and a callback already on the ready queue finds a closed
//!   queue and wakes nobody.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Context, Waker};
use std::time::Duration;

use crate::errors::LoopError;
use crate::event_loop::{get_running_loop, TimerHandle};
use crate::tasks::Task;
use crate::waiters::{DoneCallbackId, Notify};

/// Something that happened to the watched tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// The child at this index completed.
    Done(usize),
    /// The timeout passed.
    Timeout,
}

#[derive(Default)]
struct Shared {
    events: RefCell<VecDeque<Event>>,
    waker: RefCell<Option<Waker>>,
    /// Woken since it last parked: later events need no wake of their own.
    woken: Cell<bool>,
    closed: Cell<bool>,
}

impl Shared {
    fn push(&self, ev: Event) {
        if self.closed.get() {
            return;
        }
        self.events.borrow_mut().push_back(ev);
        if self.woken.replace(true) {
            return;
        }
        // Taken out so that no borrow is held while a foreign waker runs
        // (it may poll, and park, at once); put back unless that happened.
        let waker = self.waker.take();
        if let Some(w) = waker {
            w.wake_by_ref();
            let mut slot = self.waker.borrow_mut();
            if slot.is_none() && !self.closed.get() {
                *slot = Some(w);
            }
        }
    }
}

/// The inline road of `gather`: told by a child's completion list.
impl Notify for Shared {
    fn notify(&self, index: usize) {
        self.push(Event::Done(index));
    }
}

/// The children of a combinator, their done callbacks and its timer.
pub(crate) struct DoneQueue<T: 'static> {
    tasks: Vec<Task<T>>,
    callbacks: Vec<Option<DoneCallbackId>>,
    shared: Rc<Shared>,
    timer: Option<TimerHandle>,
    started: bool,
    /// Children report through [`Notify`] entries (see the module docs).
    inline: bool,
    /// Inline queue: the events of children done before `start` are not
    /// poppable until the next poll, as asyncio's callbacks on done
    /// futures run one iteration later — so that a cancellation already
    /// requested wins over them (`await gather(*done)` in a cancelled task
    /// raises `CancelledError`). `park` releases them and wakes the waiting
    /// task for them.
    held: bool,
}

impl<T: 'static> DoneQueue<T> {
    /// Children report through done callbacks, as asyncio's `wait` and
    /// `as_completed`.
    pub(crate) fn new(tasks: Vec<Task<T>>) -> Self {
        DoneQueue {
            tasks,
            callbacks: Vec::new(),
            shared: Rc::default(),
            timer: None,
            started: false,
            inline: false,
            held: false,
        }
    }

    /// Children report inline, at completion (`gather`; no timeout).
    pub(crate) fn inline(tasks: Vec<Task<T>>) -> Self {
        let mut q = DoneQueue::new(tasks);
        q.inline = true;
        q
    }

    pub(crate) fn tasks(&self) -> &[Task<T>] {
        &self.tasks
    }

    pub(crate) fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Registers the done callbacks and, with a timeout, the timer; does
    /// nothing after the first call.
    ///
    /// A timeout needs the running loop (as `sleep` does): polled outside
    /// one, this fails with `no running event loop` and registers nothing.
    pub(crate) fn start(&mut self, timeout: Option<Duration>) -> Result<(), LoopError> {
        if self.started {
            return Ok(());
        }
        let lp = match timeout {
            Some(_) => Some(get_running_loop()?),
            None => None,
        };
        self.started = true;
        if self.inline {
            assert!(timeout.is_none(), "an inline queue has no timer");
            // One event per child at most: no regrowth on the way.
            self.shared.events.borrow_mut().reserve(self.tasks.len());
            let to: Rc<dyn Notify> = self.shared.clone();
            let mut callbacks = Vec::with_capacity(self.tasks.len());
            for (i, t) in self.tasks.iter().enumerate() {
                if t.done() {
                    // Queued now, in input order, ahead of every later
                    // completion (asyncio's callbacks on done children are
                    // scheduled at once), but held back until the next
                    // poll: see `held`.
                    self.shared.push(Event::Done(i));
                    self.held = true;
                    callbacks.push(None);
                } else {
                    callbacks.push(Some(t.notify_when_done(&to, i)));
                }
            }
            self.callbacks = callbacks;
            return Ok(());
        }
        self.callbacks = self
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let shared = self.shared.clone();
                Some(t.add_done_callback(move |_| shared.push(Event::Done(i))))
            })
            .collect();
        if let (Some(delay), Some(lp)) = (timeout, lp) {
            let shared = self.shared.clone();
            self.timer = lp
                .call_later(delay, move || shared.push(Event::Timeout))
                .ok();
        }
        Ok(())
    }

    /// The next event, if any; the done callback (or the `Notify` entry)
    /// of a `Done` child is known to have run.
    pub(crate) fn pop(&mut self) -> Option<Event> {
        if self.held {
            return None;
        }
        let ev = self.shared.events.borrow_mut().pop_front()?;
        if let Event::Done(i) = ev {
            self.callbacks[i] = None;
        }
        Some(ev)
    }

    /// Remembers the waker to wake on the next event.
    pub(crate) fn park(&mut self, cx: &Context<'_>) {
        let mut slot = self.shared.waker.borrow_mut();
        match slot.as_ref() {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => *slot = Some(cx.waker().clone()),
        }
        drop(slot);
        self.shared.woken.set(false);
        if std::mem::take(&mut self.held) {
            // The held events are there: run again next iteration.
            self.shared.woken.set(true);
            cx.waker().wake_by_ref();
        }
    }

    /// Stops watching: removes the callbacks not yet run, cancels the timer
    /// and drops the waker. Events already queued stay poppable.
    pub(crate) fn stop(&mut self) {
        self.shared.closed.set(true);
        self.shared.waker.borrow_mut().take();
        for (t, id) in self.tasks.iter().zip(self.callbacks.iter_mut()) {
            if let Some(id) = id.take() {
                t.remove_done_callback(id);
            }
        }
        if let Some(timer) = self.timer.take() {
            timer.cancel();
        }
    }

    /// Stops watching a single child (its completion no longer matters).
    pub(crate) fn forget(&mut self, i: usize) {
        if let Some(id) = self.callbacks.get_mut(i).and_then(Option::take) {
            self.tasks[i].remove_done_callback(id);
        }
    }

    /// Stops and gives the children back.
    pub(crate) fn into_tasks(mut self) -> Vec<Task<T>> {
        self.stop();
        std::mem::take(&mut self.tasks)
    }
}

impl<T: 'static> Drop for DoneQueue<T> {
    fn drop(&mut self) {
        self.stop();
    }
}
