//! "Chain coroutines correctly", from asyncio's old *Develop with asyncio*
//! guide: `create`, `write` and `close` scheduled as independent tasks run
//! in the order of their sleeps, not of their creation; a `stop()` after 2 s
//! leaves `create` pending, and closing the loop destroys it —
//! `Task was destroyed but it is pending!`. The fix awaits them in order.
//!
//! Run it with `cargo run --example chain_coroutines` (virtual clock: the
//! sleeps take no time).

use std::time::Duration;

use aioloop::{create_task, get_running_loop, sleep, Error, EventLoop, LoopRef};

fn say(what: &str) {
    let t = get_running_loop().map(|l| l.time()).unwrap_or_default();
    log::info!(target: "chain_coroutines", "[{t:.1} s] {what}");
}

async fn create() -> Result<(), Error> {
    sleep(Duration::from_secs(3)).await?;
    say("(1) create file");
    Ok(())
}

async fn write() -> Result<(), Error> {
    sleep(Duration::from_secs(1)).await?;
    say("(2) write into file");
    Ok(())
}

async fn close() -> Result<(), Error> {
    say("(3) close file");
    Ok(())
}

/// The guide's bug: three independent tasks, and a stop after 2 s.
pub fn buggy() {
    let lp = EventLoop::with_virtual_clock().expect("a loop");
    let l: LoopRef = lp.loop_ref();
    lp.create_task(async move {
        for t in [
            create_task(create()).expect("running"),
            create_task(write()).expect("running"),
            create_task(close()).expect("running"),
        ] {
            drop(t); // ensure_future(): nobody keeps them
        }
        sleep(Duration::from_secs(2)).await?;
        l.stop();
        Ok(())
    })
    .expect("a task");
    lp.run_forever().expect("ran");
    let pending: Vec<String> = lp.all_tasks().iter().map(|t| format!("{t:?}")).collect();
    log::info!(target: "chain_coroutines", "pending tasks at exit: {pending:?}");
    lp.close().expect("closed");
}

/// The fix: await them in order.
pub fn fixed() {
    let lp = EventLoop::with_virtual_clock().expect("a loop");
    lp.run_until_complete(async {
        create().await?;
        write().await?;
        close().await?;
        sleep(Duration::from_secs(2)).await
    })
    .expect("finished");
    let pending = lp.all_tasks().len();
    log::info!(target: "chain_coroutines", "pending tasks at exit: {pending}");
    lp.close().expect("closed");
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    println!("== independent tasks: the wrong order, and a task destroyed at exit");
    buggy();
    println!("\n== awaited in order");
    fixed();
}
