//! The outcome slot of a loop future or a task: pending, then done once.
//!
//! asyncio stores `_result` / `_exception` / `_state` on the future; Python
//! hands out references, so `result()` can be called any number of times.
//! Rust moves values: awaiting *by value* moves the result out (no `Clone`
//! needed), `result()` clones it. This module is the one place that encodes
//! those rules, for [`crate::Future`] and [`crate::Task`] alike.
//!
//! # Invariants
//!
//! - `Pending → Done` happens once; a second `set` is `invalid state`.
//! - Taking moves a value or an exception out (`Taken` remembers that it
//!   is gone); a cancellation stays in place, because it is `Clone` and the
//!   state must keep saying "cancelled", as asyncio's does.
//! - The slot is a `Cell` (no borrow flag: every task pays for this slot);
//!   reading it takes the value out and puts it back, through a guard, so
//!   even a panicking `Clone` of a user type leaves it intact.

use std::cell::Cell;

use crate::errors::{InvalidStateError, TaskError};

/// What a future or task ended with.
#[derive(Default)]
pub(crate) enum Outcome<T, E> {
    #[default]
    Pending,
    Done(Result<T, TaskError<E>>),
    Taken,
}

/// The slot itself.
pub(crate) struct OutcomeCell<T, E>(Cell<Outcome<T, E>>);

/// Puts the outcome back when a read ends, however it ends.
struct PutBack<'a, T, E> {
    cell: &'a OutcomeCell<T, E>,
    value: Option<Outcome<T, E>>,
}

impl<T, E> Drop for PutBack<'_, T, E> {
    fn drop(&mut self) {
        if let Some(v) = self.value.take() {
            self.cell.0.set(v);
        }
    }
}

impl<T, E> OutcomeCell<T, E> {
    pub(crate) fn new() -> Self {
        OutcomeCell(Cell::new(Outcome::Pending))
    }

    fn with<R>(&self, f: impl FnOnce(&Outcome<T, E>) -> R) -> R {
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

    #[cfg(test)]
    fn is_cancelled(&self) -> bool {
        self.with(|o| matches!(o, Outcome::Done(Err(TaskError::Cancelled(_)))))
    }

    /// The failure's text, if the outcome is an exception or a panic that
    /// nobody took (the never-retrieved report).
    pub(crate) fn failure_text(&self) -> Option<String>
    where
        E: std::fmt::Debug,
    {
        self.with(|o| match o {
            Outcome::Done(Err(TaskError::Cancelled(_))) => None,
            Outcome::Done(Err(TaskError::Panicked(p))) => Some(p.to_string()),
            Outcome::Done(Err(TaskError::Exception(e))) => Some(format!("{e:?}")),
            Outcome::Done(Err(TaskError::InvalidState(s))) => {
                Some(format!("InvalidStateError: {s}"))
            }
            _ => None,
        })
    }

    /// asyncio's state name, for reprs.
    pub(crate) fn state_name(&self) -> &'static str {
        self.with(|o| match o {
            Outcome::Pending => "pending",
            Outcome::Done(Err(TaskError::Cancelled(_))) => "cancelled",
            Outcome::Done(Err(_)) => "finished (failed)",
            Outcome::Done(Ok(_)) | Outcome::Taken => "finished",
        })
    }

    /// Pending → done; `invalid state` if already done.
    #[inline]
    pub(crate) fn set(&self, r: Result<T, TaskError<E>>) -> Result<(), InvalidStateError> {
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

    /// Moves the outcome out (awaiting by value).
    // Always inline: returned through memory, the value was stored narrow
    // and loaded wide by the awaiting code (see `FutureWait::poll`).
    #[inline(always)]
    pub(crate) fn take(&self) -> Result<T, TaskError<E>> {
        // `Taken` goes in first: the usual case (a value) needs no second
        // write; the others put back what they found.
        match self.0.replace(Outcome::Taken) {
            Outcome::Done(Err(TaskError::Cancelled(c))) => {
                self.0
                    .set(Outcome::Done(Err(TaskError::Cancelled(c.clone()))));
                Err(TaskError::Cancelled(c))
            }
            Outcome::Done(r) => r,
            Outcome::Pending => {
                self.0.set(Outcome::Pending);
                Err(TaskError::InvalidState(InvalidStateError::ResultNotSet))
            }
            Outcome::Taken => Err(TaskError::InvalidState(InvalidStateError::ResultTaken)),
        }
    }
}

impl<T: Clone, E: Clone> OutcomeCell<T, E> {
    /// asyncio's `result()`: a clone of the value, or the failure.
    pub(crate) fn result(&self) -> Result<T, TaskError<E>> {
        self.with(|o| match o {
            Outcome::Done(r) => r.clone(),
            Outcome::Pending => Err(TaskError::InvalidState(InvalidStateError::ResultNotSet)),
            Outcome::Taken => Err(TaskError::InvalidState(InvalidStateError::ResultTaken)),
        })
    }

    /// asyncio's `exception()`: `Ok(None)` after a result, `Ok(Some(_))`
    /// after a failure, `Err` when cancelled, pending or taken.
    pub(crate) fn exception(&self) -> Result<Option<TaskError<E>>, TaskError<E>> {
        self.with(|o| match o {
            Outcome::Done(Ok(_)) => Ok(None),
            Outcome::Done(Err(TaskError::Cancelled(c))) => Err(TaskError::Cancelled(c.clone())),
            Outcome::Done(Err(e)) => Ok(Some(e.clone())),
            Outcome::Pending => Err(TaskError::InvalidState(InvalidStateError::ExceptionNotSet)),
            Outcome::Taken => Err(TaskError::InvalidState(InvalidStateError::ResultTaken)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::CancelledError;

    #[test]
    fn set_once_take_once_and_cancellation_stays() {
        let c: OutcomeCell<String, ()> = OutcomeCell::new();
        assert!(c.is_pending());
        c.set(Ok("v".into())).unwrap();
        assert_eq!(c.set(Ok("w".into())), Err(InvalidStateError::AlreadyDone));
        assert_eq!(c.result().unwrap(), "v");
        assert_eq!(c.take().unwrap(), "v");
        assert!(matches!(
            c.take(),
            Err(TaskError::InvalidState(InvalidStateError::ResultTaken))
        ));
        assert_eq!(c.state_name(), "finished");

        let k: OutcomeCell<String, ()> = OutcomeCell::new();
        k.set(Err(TaskError::Cancelled(CancelledError::new(None))))
            .unwrap();
        assert!(k.take().is_err());
        assert!(k.is_cancelled(), "still cancelled after a take");
    }

    #[test]
    fn a_panicking_clone_leaves_the_slot_intact() {
        struct Bomb;
        impl Clone for Bomb {
            fn clone(&self) -> Self {
                panic!("no clones")
            }
        }
        let c: OutcomeCell<Bomb, ()> = OutcomeCell::new();
        c.set(Ok(Bomb)).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.result()));
        assert!(r.is_err());
        assert!(!c.is_pending(), "the value was put back");
        assert!(c.take().is_ok());
    }
}
