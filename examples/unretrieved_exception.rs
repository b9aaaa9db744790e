//! "Detect exceptions never consumed", from asyncio's old *Develop with
//! asyncio* guide: a task fails and nobody looks at its failure, so asyncio
//! — and aioloop — report `Task exception was never retrieved` when the
//! task goes away. Then the guide's two fixes: await the task and handle
//! its error, or hand it to `run_until_complete`, which returns it.
//!
//! Run it with `cargo run --example unretrieved_exception`.

use std::time::Duration;

use aioloop::{create_task, sleep, Error, EventLoop};

/// The guide's `bug()`: raises at once.
async fn bug() -> Result<(), Error> {
    Err(Error::msg("not consumed"))
}

/// Nobody retrieves the failure: reported when the task handle goes.
pub fn unretrieved() {
    let lp = EventLoop::with_virtual_clock().expect("a loop");
    lp.run_until_complete(async {
        drop(create_task(bug()).expect("running")); // ensure_future(bug())
        sleep(Duration::from_secs(1)).await
    })
    .expect("finished");
    lp.close().expect("closed");
}

/// Fix 1: await the task and handle its error.
pub fn handled() {
    let lp = EventLoop::with_virtual_clock().expect("a loop");
    lp.run_until_complete(async {
        let t = create_task(bug())?;
        if let Err(e) = t.await {
            log::info!(target: "unretrieved_exception", "exception consumed: {e}");
        }
        Ok(())
    })
    .expect("the handler task finished");
    lp.close().expect("closed");
}

/// Fix 2: `run_until_complete` returns the failure to its caller.
pub fn returned() {
    let lp = EventLoop::with_virtual_clock().expect("a loop");
    let out = lp.run_until_complete(bug());
    log::info!(target: "unretrieved_exception", "run_until_complete returned {out:?}");
    lp.close().expect("closed");
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    println!("== a failure nobody retrieves");
    unretrieved();
    println!("\n== fix 1: await it and handle the error");
    handled();
    println!("\n== fix 2: run_until_complete returns it");
    returned();
}
