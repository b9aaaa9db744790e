//! asyncio's high-level awaitables, built on tasks and loop futures:
//! `sleep` (more to come: `wait_for`, `timeout`, `shield`, `gather`, `wait`,
//! `as_completed`, `TaskGroup`).

pub(crate) mod sleep;

// comb-a
pub(crate) mod shield;
pub(crate) mod timeout;
pub(crate) mod wait_for;
