//! Debug mode: asyncio's `set_debug`, and the diagnostics it turns on.

mod util;

use std::time::Duration;

use aioloop::queue::Queue;
use aioloop::sync::Lock;
use aioloop::{sleep, EventLoop};
use util::{capture_logs, logs, secs};

#[test]
fn debug_mode_is_off_by_default_and_can_be_switched() {
    // (Unless the environment asks for it, as asyncio's does.)
    if std::env::var_os("AIOLOOP_DEBUG").is_some()
        || std::env::var_os("PYTHONASYNCIODEBUG").is_some()
    {
        return;
    }
    let lp = EventLoop::with_virtual_clock().unwrap();
    assert!(!lp.get_debug());
    lp.set_debug(true);
    assert!(lp.get_debug());
    assert_eq!(
        format!("{lp:?}"),
        "<EventLoop running=False closed=False debug=True>"
    );
    lp.set_debug(false);
    assert!(!lp.get_debug());
    assert_eq!(lp.slow_callback_duration(), Duration::from_millis(100));
}

#[test]
fn an_awaitable_dropped_unpolled_is_reported_with_where_it_was_created() {
    capture_logs();
    let lp = EventLoop::with_virtual_clock().unwrap();
    lp.set_debug(true);
    let line = line!() + 4;
    lp.run_until_complete(async {
        let q = Queue::<u8>::new(0);
        let lock = Lock::new();
        let forgotten = sleep(secs(1));
        drop(forgotten);
        drop(q.get());
        drop(lock.acquire());
        // Awaited ones are not reported.
        sleep(secs(1)).await.unwrap();
    })
    .unwrap()
    .unwrap();
    let got: Vec<String> = logs("asyncio").into_iter().map(|(_, t)| t).collect();
    let file = "tests/debug.rs";
    assert_eq!(
        got,
        [
            format!("coroutine 'sleep' was never awaited (created at {file}:{line}): it was dropped before its first poll, so it did nothing"),
            format!("coroutine 'Queue.get' was never awaited (created at {file}:{}): it was dropped before its first poll, so it did nothing", line + 2),
            format!("coroutine 'Lock.acquire' was never awaited (created at {file}:{}): it was dropped before its first poll, so it did nothing", line + 3),
        ]
    );
}

#[test]
fn outside_debug_mode_nothing_is_reported() {
    if std::env::var_os("AIOLOOP_DEBUG").is_some()
        || std::env::var_os("PYTHONASYNCIODEBUG").is_some()
    {
        return;
    }
    capture_logs();
    let lp = EventLoop::with_virtual_clock().unwrap();
    lp.run_until_complete(async {
        drop(sleep(secs(1)));
    })
    .unwrap()
    .unwrap();
    drop(lp);
    assert!(logs("asyncio").is_empty());
}

#[test]
fn a_loop_dropped_unclosed_in_debug_mode_says_so() {
    capture_logs();
    let lp = EventLoop::with_virtual_clock().unwrap();
    lp.set_debug(true);
    drop(lp);
    assert_eq!(
        logs("asyncio"),
        [(
            log::Level::Warn,
            "unclosed event loop <EventLoop running=False closed=False debug=True>".to_owned()
        )]
    );
    // Closed first: nothing to say.
    capture_logs();
    let lp = EventLoop::with_virtual_clock().unwrap();
    lp.set_debug(true);
    lp.close().unwrap();
    drop(lp);
    assert!(logs("asyncio").is_empty());
}
