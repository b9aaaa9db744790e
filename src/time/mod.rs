//! Time: the loop's clock and the pure timer wheel.
//!
//! [`wheel`] is a data structure with no notion of "now" of its own: it is
//! given deadlines and the current instant, in nanoseconds, and returns what
//! expired. The clock that produces those instants lives in `clock`
//! (monotonic, or virtual for tests). Keeping them apart is what lets the
//! wheel be tested against a model with random operations, and the loop be
//! tested with hour-long timers in microseconds.

pub(crate) mod clock;
pub mod wheel;
