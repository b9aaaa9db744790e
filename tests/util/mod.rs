//! Shared test helpers: an event recorder and a per-thread log capture.
#![allow(dead_code)] // each test binary uses a different subset

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::{Mutex, Once};

use std::future::Future;
use std::time::Duration;

use aioloop::{get_running_loop, EventLoop, ExceptionContext, LoopRef, TaskOutput};

/// An ordered record of what happened, shared by the callbacks of a test.
#[derive(Clone, Default)]
pub struct Recorder<T>(Rc<RefCell<Vec<T>>>);

impl<T: Clone> Recorder<T> {
    pub fn new() -> Self {
        Recorder(Rc::new(RefCell::new(Vec::new())))
    }
    pub fn push(&self, v: T) {
        self.0.borrow_mut().push(v);
    }
    pub fn take(&self) -> Vec<T> {
        std::mem::take(&mut *self.0.borrow_mut())
    }
    pub fn snapshot(&self) -> Vec<T> {
        self.0.borrow().clone()
    }
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }
}

/// Every report `lp`'s exception handler receives, in order.
pub fn reports(lp: &LoopRef) -> Rc<RefCell<Vec<ExceptionContext>>> {
    let seen = Rc::new(RefCell::new(Vec::new()));
    let s = seen.clone();
    lp.set_exception_handler(Some(Rc::new(move |_: &LoopRef, c: &ExceptionContext| {
        s.borrow_mut().push(c.clone())
    })));
    seen
}

/// A callback that stops `lp`.
pub fn stopper(lp: &LoopRef) -> impl FnOnce() + 'static {
    let lp = lp.clone();
    move || lp.stop()
}

struct CaptureLogger;

static RECORDS: Mutex<Vec<(std::thread::ThreadId, log::Level, String, String)>> =
    Mutex::new(Vec::new());

impl log::Log for CaptureLogger {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        RECORDS.lock().unwrap().push((
            std::thread::current().id(),
            record.level(),
            record.target().to_owned(),
            record.args().to_string(),
        ));
    }
    fn flush(&self) {}
}

/// Installs the capturing logger (once per test binary) and forgets what this
/// thread logged so far. Tests run on parallel threads, so each one only
/// sees its own thread's records.
pub fn capture_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        log::set_boxed_logger(Box::new(CaptureLogger)).unwrap();
        log::set_max_level(log::LevelFilter::Trace);
    });
    let me = std::thread::current().id();
    RECORDS.lock().unwrap().retain(|r| r.0 != me);
}

/// What this thread logged on `target` since `capture_logs`, as (level, text).
pub fn logs(target: &str) -> Vec<(log::Level, String)> {
    let me = std::thread::current().id();
    RECORDS
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.0 == me && r.2 == target)
        .map(|r| (r.1, r.3.clone()))
        .collect()
}

/// What any thread (a watchdog, a worker) logged on `target` and whose
/// text contains `needle`, as (level, text).
#[allow(dead_code)] // not every test binary reads other threads' logs
pub fn logs_any_thread(target: &str, needle: &str) -> Vec<(log::Level, String)> {
    RECORDS
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.2 == target && r.3.contains(needle))
        .map(|r| (r.1, r.3.clone()))
        .collect()
}

/// An application's own error for the combinator tests: `?` turns it into
/// an `aioloop::Error`, `downcast_ref` finds it again.
#[derive(Clone, Debug, PartialEq)]
pub struct Bad(pub &'static str);

impl std::fmt::Display for Bad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Bad {}

/// A failure with an application error (`Err(Bad(msg))`, as an `Error`).
pub fn bad<T>(msg: &'static str) -> Result<T, aioloop::Error> {
    Err(aioloop::Error::new(Bad(msg)))
}

/// The application error inside `e`, if it is one.
pub fn bad_of(e: &aioloop::Error) -> Option<&'static str> {
    e.downcast_ref::<Bad>().map(|b| b.0)
}

/// The `Task was destroyed but it is pending!` reports among `seen`.
pub fn destroyed(seen: &RefCell<Vec<ExceptionContext>>) -> Vec<ExceptionContext> {
    seen.borrow()
        .iter()
        .filter(|c| c.message == "Task was destroyed but it is pending!")
        .cloned()
        .collect()
}

/// Sets its flag when dropped: proves a freed task's destructors ran.
pub struct Dropped(pub Rc<std::cell::Cell<bool>>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

/// `Duration::from_secs`, shorter in timelines.
pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The running loop's time (virtual clock in these tests).
pub fn now() -> f64 {
    get_running_loop().unwrap().time()
}

/// Runs `fut` to completion on `lp` and unwraps the outcome.
pub fn run<F>(lp: &EventLoop, fut: F) -> <F::Output as TaskOutput>::Ok
where
    F: Future + 'static,
    F::Output: TaskOutput,
{
    match lp.run_until_complete(fut) {
        Ok(v) => v,
        Err(e) => panic!("the test's main task failed: {e:?}"),
    }
}

/// A small deterministic generator (xorshift), so that a failing random
/// test replays with its seed.
#[allow(dead_code)] // not every test binary draws random numbers
pub struct Rng(pub u64);

#[allow(dead_code)]
impl Rng {
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
