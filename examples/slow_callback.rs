//! "Detect slow callbacks", from asyncio's *Develop with asyncio* guide: a
//! callback that blocks holds up the whole loop. In debug mode aioloop
//! reports it twice — while it still blocks (the watchdog thread, which
//! asyncio does not have) and after it returns (asyncio's `Executing ...
//! took 0.301 seconds`). The fix moves the blocking work to the executor,
//! where it runs on a worker thread while the loop goes on.
//!
//! Run it with `cargo run --example slow_callback` (it takes about a
//! second: the blocking is real). `RUST_LOG=asyncio=debug` also shows the
//! timed polls.

use std::time::Duration;

use aioloop::{get_running_loop, EventLoop};

/// How long the blocking work takes, and the threshold it crosses.
pub const WORK: Duration = Duration::from_millis(300);
pub const THRESHOLD: Duration = Duration::from_millis(50);

/// Stands for blocking work: file I/O, a CPU-bound computation, a
/// `std::sync::Mutex` held elsewhere.
fn blocking_work() -> &'static str {
    std::thread::sleep(WORK);
    "done"
}

fn debug_loop() -> EventLoop {
    let lp = EventLoop::new().expect("a loop");
    lp.set_debug(true);
    lp.set_slow_callback_duration(THRESHOLD);
    lp
}

/// The bug: the blocking work runs in a callback, on the loop's thread.
pub fn blocking() {
    let lp = debug_loop();
    lp.call_soon(|| {
        let r = blocking_work();
        log::info!(target: "slow_callback", "callback: {r}");
        get_running_loop().expect("inside the loop").stop();
    })
    .expect("scheduled");
    lp.run_forever().expect("ran");
    lp.close().expect("closed");
}

/// The fix: the executor runs it on a worker thread; the loop only waits.
pub fn offloaded() {
    let lp = debug_loop();
    let r = lp
        .run_until_complete(async {
            let lp = get_running_loop()?;
            Ok(lp.run_in_executor(blocking_work).await?)
        })
        .expect("the job finished");
    log::info!(target: "slow_callback", "executor: {r}");
    lp.close().expect("closed");
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    println!("== a callback that blocks for {WORK:?} (threshold {THRESHOLD:?})");
    blocking();
    println!("\n== the same work in the executor");
    offloaded();
}
