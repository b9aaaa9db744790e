//! asyncio's high-level awaitables, built on tasks and loop futures.
//!
//! | asyncio | module |
//! |---|---|
//! | `asyncio.sleep` | [`sleep`] |
//! | `asyncio.wait_for` | [`wait_for`] |
//! | `asyncio.timeout`, `timeout_at` | [`timeout`] |
//! | `asyncio.shield` | [`shield`] |
//! | `asyncio.gather` | [`gather`] |
//! | `asyncio.wait`, `as_completed` | [`wait`] |
//! | `asyncio.TaskGroup` | [`task_group`] |
//!
//! Each is a cancellation point (it starts its `poll` with the current
//! task's pending cancel request, see `docs/CANCELLATION.md`), and each
//! releases its timers and registrations when dropped.

pub(crate) mod done_queue;
pub mod gather;
pub mod shield;
pub mod sleep;
pub mod task_group;
pub mod timeout;
pub mod wait;
pub mod wait_for;
