//! The outcome slot of a loop future or a task: pending, then done once.
//!
//! asyncio stores `_result` / `_exception` / `_state` on the future and hands
//! out references, so `result()` and `await` can read it any number of
//! times. aioloop does the same: awaiting and `result()` *clone* the value
//! (for `T: Clone`) and the [`Error`] (one shared pointer), and leave the
//! slot as it was. A non-`Clone` value can be *taken* once (`Task::take`,
//! `Future::take`); the slot then remembers that it was a value, and gone.
//! This module is the one place that encodes those rules, for
//! [`crate::Future`] and [`crate::Task`] alike.
//!
//! # Invariants
//!
//! - `Pending → Done` happens once; a second `set` is `invalid state`.
//! - Reading never changes the slot, except `take` of a value, which leaves
//!   `Taken`; an error is never taken (it is cloned), so `exception()`
//!   answers after any number of awaits.
//! - The slot is a `Cell` (no borrow flag: every task pays for this slot);
//!   reading it takes the value out and puts it back, through a guard, so
//!   even a panicking `Clone` of a user type leaves it intact.

use std::cell::Cell;

use crate::errors::{Error, InvalidStateError};

/// What a future or task ended with.
#[derive(Default)]
pub(crate) enum Outcome<T> {
    #[default]
    Pending,
    Done(Result<T, Error>),
    /// Done with a value, which `take` moved out.
    Taken,
}

/// The slot itself.
pub(crate) struct OutcomeCell<T>(Cell<Outcome<T>>);

/// Puts the outcome back when a read ends, however it ends.
struct PutBack<'a, T> {
    cell: &'a OutcomeCell<T>,
    value: Option<Outcome<T>>,
}

impl<T> Drop for PutBack<'_, T> {
    fn drop(&mut self) {
        if let Some(v) = self.value.take() {
            self.cell.0.set(v);
        }
    }
}

impl<T> OutcomeCell<T> {
    pub(crate) fn new() -> Self {
        OutcomeCell(Cell::new(Outcome::Pending))
    }

    fn with<R>(&self, f: impl FnOnce(&Outcome<T>) -> R) -> R {
        let guard = PutBack {
            cell: self,
            value: Some(self.0.take()),
        };
        f(guard.value.as_ref().expect("just put there"))
    }

    #[cfg(test)]
    fn is_pending(&self) -> bool {
        self.with(|o| matches!(o, Outcome::Pending))
    }

    /// The failure, if the outcome is one other than a cancellation (the
    /// never-retrieved report).
    pub(crate) fn failure(&self) -> Option<Error> {
        self.with(|o| match o {
            Outcome::Done(Err(e)) if !e.is_cancelled() => Some(e.clone()),
            _ => None,
        })
    }

    /// asyncio's state name, for reprs.
    pub(crate) fn state_name(&self) -> &'static str {
        self.with(|o| match o {
            Outcome::Pending => "pending",
            Outcome::Done(Err(e)) if e.is_cancelled() => "cancelled",
            Outcome::Done(_) | Outcome::Taken => "finished",
        })
    }

    /// Pending → done; `invalid state` if already done.
    #[inline]
    pub(crate) fn set(&self, r: Result<T, Error>) -> Result<(), InvalidStateError> {
        // Written first, undone if it was not pending: one move on the
        // usual path. The refused value is dropped here, as before.
        match self.0.replace(Outcome::Done(r)) {
            Outcome::Pending => Ok(()),
            old => {
                drop(self.0.replace(old));
                Err(InvalidStateError::AlreadyDone)
            }
        }
    }

    /// Moves a value out (`take()`); an error is cloned and stays.
    // Always inline: returned through memory, the value was stored narrow
    // and loaded wide by the awaiting code (see `FutureWait::poll`).
    #[inline(always)]
    pub(crate) fn take(&self) -> Result<T, Error> {
        // `Taken` goes in first: the usual case (a value) needs no second
        // write; the others put back what they found.
        match self.0.replace(Outcome::Taken) {
            Outcome::Done(Ok(v)) => Ok(v),
            Outcome::Done(Err(e)) => {
                self.0.set(Outcome::Done(Err(e.clone())));
                Err(e)
            }
            Outcome::Pending => {
                self.0.set(Outcome::Pending);
                Err(InvalidStateError::ResultNotSet.into())
            }
            Outcome::Taken => Err(InvalidStateError::ResultTaken.into()),
        }
    }

    /// asyncio's `exception()`: `Ok(None)` after a result, `Ok(Some(_))`
    /// after a failure, `Err` when cancelled (the `CancelledError`) or
    /// pending (`Exception is not set.`).
    pub(crate) fn exception(&self) -> Result<Option<Error>, Error> {
        self.with(|o| match o {
            Outcome::Done(Ok(_)) | Outcome::Taken => Ok(None),
            Outcome::Done(Err(e)) if e.is_cancelled() => Err(e.clone()),
            Outcome::Done(Err(e)) => Ok(Some(e.clone())),
            Outcome::Pending => Err(InvalidStateError::ExceptionNotSet.into()),
        })
    }
}

impl<T: Clone> OutcomeCell<T> {
    /// asyncio's `result()` (and what an await returns): a clone of the
    /// value, or the failure.
    #[inline]
    pub(crate) fn result(&self) -> Result<T, Error> {
        self.with(|o| match o {
            Outcome::Done(r) => r.clone(),
            Outcome::Pending => Err(InvalidStateError::ResultNotSet.into()),
            Outcome::Taken => Err(InvalidStateError::ResultTaken.into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_once_read_many_take_once() {
        let c: OutcomeCell<String> = OutcomeCell::new();
        assert!(c.is_pending());
        c.set(Ok("v".into())).unwrap();
        assert_eq!(c.set(Ok("w".into())), Err(InvalidStateError::AlreadyDone));
        assert_eq!(c.result().unwrap(), "v");
        assert_eq!(c.result().unwrap(), "v", "reading leaves it in place");
        assert_eq!(c.take().unwrap(), "v");
        assert!(c.take().unwrap_err().is_invalid_state());
        assert!(c.exception().unwrap().is_none(), "still a value, gone");
        assert_eq!(c.state_name(), "finished");

        let k: OutcomeCell<String> = OutcomeCell::new();
        k.set(Err(Error::cancelled(None))).unwrap();
        assert!(k.take().unwrap_err().is_cancelled());
        assert!(k.take().unwrap_err().is_cancelled(), "an error stays");
        assert_eq!(k.state_name(), "cancelled");
    }

    #[test]
    fn a_panicking_clone_leaves_the_slot_intact() {
        struct Bomb;
        impl Clone for Bomb {
            fn clone(&self) -> Self {
                panic!("no clones")
            }
        }
        let c: OutcomeCell<Bomb> = OutcomeCell::new();
        c.set(Ok(Bomb)).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.result()));
        assert!(r.is_err());
        assert!(!c.is_pending(), "the value was put back");
        assert!(c.take().is_ok());
    }
}
