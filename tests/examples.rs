//! The seeds' scenarios (`examples/`), run with their logs captured: each
//! diagnostic appears where the example says, with asyncio's text, and the
//! fixed versions run clean.

mod util;

#[path = "../examples/chain_coroutines.rs"]
#[allow(dead_code)]
mod chain_coroutines;
#[path = "../examples/destroyed_pending.rs"]
#[allow(dead_code)]
mod destroyed_pending;
#[path = "../examples/slow_callback.rs"]
#[allow(dead_code)]
mod slow_callback;
#[path = "../examples/unretrieved_exception.rs"]
#[allow(dead_code)]
mod unretrieved_exception;

use util::{capture_logs, logs, logs_any_thread};

fn texts(target: &str) -> Vec<String> {
    logs(target).into_iter().map(|(_, t)| t).collect()
}

#[test]
fn destroyed_pending_reports_each_stuck_handler_and_the_fix_reports_none() {
    capture_logs();
    destroyed_pending::run(3, false);
    let reports = texts("asyncio");
    assert_eq!(reports.len(), 3, "{reports:#?}");
    for (i, r) in reports.iter().enumerate() {
        let id = i + 1;
        assert!(
            r.starts_with(&format!(
                "Task was destroyed but it is pending!\ntask: <Task pending name='handler-{id}' created at tests/../examples/destroyed_pending.rs:"
            )),
            "{r}"
        );
        assert!(
            r.contains(&format!(
                "'handler-{id}' waits on Queue.get of <Queue maxsize=0 qsize=0>, and nothing can ever wake it"
            )),
            "{r}"
        );
        assert!(
            r.contains("that Queue has 1 strong handle and no Weak, inside this task's own future"),
            "{r}"
        );
    }
    // Each report comes right after that handler's `end`.
    let app = texts("destroyed_pending");
    assert_eq!(app.last().unwrap(), "handler-3 got End(3)");

    capture_logs();
    destroyed_pending::run(3, true);
    assert!(texts("asyncio").is_empty(), "{:?}", texts("asyncio"));
    let app = texts("destroyed_pending");
    for id in 1..=3 {
        assert!(
            app.contains(&format!("handler-{id}: cancelled success")),
            "{app:?}"
        );
    }
}

#[test]
fn chain_coroutines_runs_in_sleep_order_and_leaves_create_destroyed_at_close() {
    capture_logs();
    chain_coroutines::buggy();
    let app = texts("chain_coroutines");
    assert_eq!(app[0], "[0.0 s] (3) close file");
    assert_eq!(app[1], "[1.0 s] (2) write into file");
    assert!(
        app[2].starts_with("pending tasks at exit: [\"<Task pending name='Task-"),
        "{app:?}"
    );
    let reports = texts("asyncio");
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(reports[0]
        .starts_with("Task was destroyed but it is pending!\ntask: <Task pending name='Task-"));
    assert!(reports[0].contains("created at tests/../examples/chain_coroutines.rs:"));
    assert!(reports[0].contains("The loop was closed while"));

    capture_logs();
    chain_coroutines::fixed();
    assert_eq!(
        texts("chain_coroutines"),
        [
            "[3.0 s] (1) create file",
            "[4.0 s] (2) write into file",
            "[4.0 s] (3) close file",
            "pending tasks at exit: 0"
        ]
    );
    assert!(texts("asyncio").is_empty());
}

#[test]
fn unretrieved_exception_is_reported_and_both_fixes_silence_it() {
    capture_logs();
    unretrieved_exception::unretrieved();
    let reports = texts("asyncio");
    assert_eq!(reports.len(), 1);
    assert!(reports[0]
        .starts_with("Task exception was never retrieved\nfuture: <Task finished name='Task-"));
    assert!(reports[0].contains("created at tests/../examples/unretrieved_exception.rs:"));
    assert!(
        reports[0].ends_with("exception=Exception('not consumed')>\nException('not consumed')"),
        "{}",
        reports[0]
    );

    capture_logs();
    unretrieved_exception::handled();
    unretrieved_exception::returned();
    assert!(texts("asyncio").is_empty(), "{:?}", texts("asyncio"));
    assert_eq!(
        texts("unretrieved_exception"),
        [
            "exception consumed: not consumed",
            "run_until_complete returned Err(Exception('not consumed'))"
        ]
    );
}

#[test]
fn slow_callback_is_caught_while_it_blocks_and_after_and_the_executor_fix_is_silent() {
    // Real time: the callback blocks 300 ms against a 50 ms threshold, and
    // the watchdog samples every 12.5 ms — a wide margin either way.
    capture_logs();
    slow_callback::blocking();
    let warnings: Vec<String> = logs("asyncio")
        .into_iter()
        .filter(|(l, _)| *l == log::Level::Warn)
        .map(|(_, t)| t)
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    let w = &warnings[0];
    assert!(
        w.starts_with("Executing <Handle examples::slow_callback::blocking::{{closure}} at tests/../examples/slow_callback.rs:"),
        "{w}"
    );
    let secs: f64 = w
        .rsplit_once(" took ")
        .and_then(|(_, t)| t.strip_suffix(" seconds"))
        .unwrap()
        .parse()
        .unwrap();
    assert!((0.25..5.0).contains(&secs), "{w}");
    let site_line = w
        .split("slow_callback.rs:")
        .nth(1)
        .unwrap()
        .split('>')
        .next()
        .unwrap()
        .to_owned();
    let blocking = logs_any_thread("asyncio", "Blocking: the callback scheduled at");
    assert_eq!(blocking.len(), 1, "reported once: {blocking:?}");
    assert!(
        blocking[0].1.starts_with(&format!(
            "Blocking: the callback scheduled at tests/../examples/slow_callback.rs:{site_line} has been running for 0."
        )),
        "{blocking:?}"
    );
    assert!(blocking[0]
        .1
        .ends_with("seconds and still runs; nothing else on the loop can run until it returns"));

    capture_logs();
    slow_callback::offloaded();
    // The 300 ms of work never ran on the loop's thread: no step took that
    // long (a short one preempted on a loaded machine may still be named).
    let slow_steps: Vec<String> = logs("asyncio")
        .into_iter()
        .filter(|(l, t)| {
            *l == log::Level::Warn
                && t.rsplit_once(" took ")
                    .and_then(|(_, s)| s.strip_suffix(" seconds"))
                    .and_then(|s| s.parse::<f64>().ok())
                    .is_some_and(|s| s >= 0.25)
        })
        .map(|(_, t)| t)
        .collect();
    assert!(slow_steps.is_empty(), "{slow_steps:?}");
    assert_eq!(texts("slow_callback"), ["executor: done"]);
}
