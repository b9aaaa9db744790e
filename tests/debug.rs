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

#[test]
fn the_task_dump_names_each_task_its_state_and_what_it_waits_on() {
    use aioloop::dump::DumpState;
    let lp = EventLoop::with_virtual_clock().unwrap();
    let dump = lp
        .run_until_complete(async {
            let q = Queue::<u8>::new(0);
            let q2 = q.clone();
            let getter = aioloop::create_task(async move { q2.get().await }).unwrap();
            getter.set_name("getter");
            let napper = aioloop::create_task(sleep(secs(60))).unwrap();
            napper.set_name("napper");
            sleep(secs(1)).await.unwrap();
            let fresh = aioloop::create_task(async {}).unwrap();
            fresh.set_name("fresh");
            let me = aioloop::current_task().unwrap();
            me.set_name("main");
            let dump = aioloop::get_running_loop().unwrap().dump_tasks();
            drop(q);
            Ok::<_, std::convert::Infallible>(dump)
        })
        .unwrap()
        .unwrap();
    let by_name = |n: &str| dump.tasks.iter().find(|t| t.name == n).unwrap().clone();
    assert_eq!(by_name("main").state, DumpState::Running);
    assert_eq!(by_name("fresh").state, DumpState::Scheduled);
    let getter = by_name("getter");
    assert_eq!(getter.state, DumpState::Waiting);
    assert_eq!(
        getter.waiting_on.as_deref(),
        Some("Queue.get of <Queue maxsize=0 qsize=0>")
    );
    assert!(!getter.stuck, "the main task still holds the queue");
    assert_eq!(getter.created_at.file(), "tests/debug.rs");
    let napper = by_name("napper");
    assert_eq!(napper.state, DumpState::Waiting);
    assert_eq!(
        napper.waiting_on, None,
        "a timer, outside aioloop's wait lists"
    );
    let text = dump.to_string();
    assert!(text.starts_with("4 live task(s)\n"), "{text}");
    assert!(
        text.contains("'getter' waiting created at tests/debug.rs:"),
        "{text}"
    );
    assert!(
        text.contains(", waiting on Queue.get of <Queue maxsize=0 qsize=0>"),
        "{text}"
    );
}
