//! asyncio's high-level awaitables, built on tasks and loop futures:
//! `sleep` (more to come: `wait_for`, `timeout`, `shield`, `gather`, `wait`,
//! `as_completed`, `TaskGroup`).

pub(crate) mod done_queue;
pub(crate) mod gather;
pub(crate) mod sleep;
pub(crate) mod task_group;
pub(crate) mod wait;
