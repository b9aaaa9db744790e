//! Tasks and loop futures are awaitable the way asyncio's are: Rust
//! futures themselves, accepted by every combinator, and never consumed by
//! an await.
//!
//! The scenario of each test was run on CPython 3.11.7 and 3.13.0 with loop
//! futures (`loop.create_future()` completed by `call_later`), which gave:
//! `gather(f1, f2, f1)` → `['a', 'b', 'a']` and `f1.result()` → `'a'`
//! afterwards; `wait_for(f, t)` on expiry → `TimeoutError` with `f`
//! cancelled; `wait([f])` → `f` in `done`; `as_completed([f])` → `f`'s
//! result; `shield(f)` → `f`'s result.

mod util;

use std::time::Duration;

use aioloop::{
    as_completed, create_task, gather, get_running_loop, shield, wait, wait_for, EventLoop, Future,
    ReturnWhen, Task,
};
use util::secs;

fn later<T: Clone + 'static>(f: &Future<T>, ms: u64, v: T) {
    let f = f.clone();
    get_running_loop()
        .unwrap()
        .call_later(Duration::from_millis(ms), move || f.set_result(v).unwrap())
        .unwrap();
}

#[test]
fn gather_takes_loop_futures_and_leaves_their_results() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let out = lp.run_until_complete(async {
        let lp = get_running_loop()?;
        let (f1, f2) = (lp.create_future(), lp.create_future());
        later(&f1, 10, "a");
        later(&f2, 20, "b");
        let all = gather([&f1, &f2, &f1]).await?;
        Ok((all, f1.result()?))
    });
    assert_eq!(out.unwrap(), (vec!["a", "b", "a"], "a"));
}

#[test]
fn wait_for_a_loop_future_cancels_it_on_expiry() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let f = lp.create_future::<u8>();
    let g = f.clone();
    let e = lp
        .run_until_complete(async move { wait_for(g, secs(1)).await })
        .unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
    assert!(f.cancelled(), "asyncio cancels the future it waited for");
    assert_eq!(lp.time(), 1.0);
}

#[test]
fn wait_as_completed_and_shield_take_loop_futures() {
    let lp = EventLoop::with_virtual_clock().unwrap();
    let out = lp.run_until_complete(async {
        let lp = get_running_loop()?;
        let f4 = lp.create_future();
        later(&f4, 10, 4u8);
        let (done, pending) = wait([&f4], ReturnWhen::AllCompleted, None).await?;
        assert!(pending.is_empty());
        let waited = done[0].result()?;

        let f5 = lp.create_future();
        later(&f5, 10, 5u8);
        let mut it = as_completed([f5], None);
        let completed = it.next().await.expect("one item")?;
        assert!(it.next().await.is_none());

        let f6 = lp.create_future();
        later(&f6, 10, 6u8);
        let shielded = shield(f6.clone()).await?;
        Ok((waited, completed, shielded, f6.result()?))
    });
    assert_eq!(out.unwrap(), (4, 5, 6, 6));
}

#[test]
fn a_task_and_a_future_are_rust_futures() {
    // Usable wherever a `std::future::Future` is expected: here a plain
    // generic function that knows nothing of aioloop.
    async fn twice<F: std::future::Future<Output = Result<u32, aioloop::Error>> + Clone>(
        f: F,
    ) -> Result<u32, aioloop::Error> {
        Ok(f.clone().await? + f.await?)
    }
    let lp = EventLoop::with_virtual_clock().unwrap();
    let out = lp.run_until_complete(async {
        let t: Task<u32> = create_task(async { Ok(20) })?;
        let f = get_running_loop()?.create_future::<u32>();
        f.set_result(1)?;
        Ok(twice(t).await? + twice(f).await?)
    });
    assert_eq!(out.unwrap(), 42);
}

#[test]
fn run_until_complete_of_a_task_runs_that_task_without_another() {
    // asyncio's `run_until_complete(task)` waits for that task itself; no
    // second task wraps it (the task count says so).
    let lp = EventLoop::with_virtual_clock().unwrap();
    let t = lp
        .create_task(async {
            aioloop::sleep(secs(5)).await?;
            Ok("r")
        })
        .unwrap();
    assert_eq!(lp.all_tasks().len(), 1);
    let probe = lp.loop_ref();
    lp.call_soon(move || assert_eq!(probe.all_tasks().len(), 1, "no wrapper task"))
        .unwrap();
    assert_eq!(lp.run_until_complete(t.clone()).unwrap(), "r");
    assert_eq!(t.result().unwrap(), "r", "and it is still there");
    assert_eq!(lp.run_until_complete(t).unwrap(), "r", "a done task, again");
    assert_eq!(lp.time(), 5.0);
}

#[test]
fn wait_and_as_completed_with_a_timeout_outside_a_running_loop_are_refused_not_a_panic() {
    // asyncio: `RuntimeError('no running event loop')`; nothing in the
    // public API panics on misuse.
    use std::future::Future as _;
    use std::task::{Context, Poll, Waker};
    let lp = EventLoop::with_virtual_clock().unwrap();
    let t = lp.create_task(async { Ok(1u8) }).unwrap();
    let mut cx = Context::from_waker(Waker::noop());

    let mut w = Box::pin(wait([&t], ReturnWhen::AllCompleted, Some(secs(1))));
    match w.as_mut().poll(&mut cx) {
        Poll::Ready(Err(e)) => assert_eq!(e.to_string(), "no running event loop"),
        other => panic!("{:?}", other.map(|r| r.map(|_| ()))),
    }

    let mut it = as_completed([&t], Some(secs(1)));
    let mut next = Box::pin(it.next());
    match next.as_mut().poll(&mut cx) {
        Poll::Ready(Some(Err(e))) => assert_eq!(e.to_string(), "no running event loop"),
        other => panic!("{:?}", other.map(|r| r.map(|r| r.map(|_| ())))),
    }
}
