//! A tour of aioloop: callbacks, timers, a cancelled timer, a reader on a
//! socket pair, a panicking callback, `stop()`; then tasks, a cancellation
//! that the coroutine catches and cleans up after, a `gather`, a worker
//! thread feeding the loop, and a blocking job on the executor — each line
//! printed with the loop time at which it happened.
//!
//! Run it with `cargo run --release --example tour`.

use std::cell::Cell;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::Duration;

use aioloop::{create_task, gather, sleep, Error, EventLoop, ExceptionHandler, LoopRef};

fn say(lp: &LoopRef, what: &str) {
    println!("[{:>7.3} s] {what}", lp.time());
}

fn main() -> Result<(), Error> {
    let lp = EventLoop::new()?;
    let r = lp.loop_ref();
    say(&r, &format!("created {lp:?}"));

    // 1. Callbacks run in FIFO order, on the next iteration, never inline.
    for name in ["first", "second", "third"] {
        let l = r.clone();
        lp.call_soon(move || say(&l, &format!("call_soon: {name}")))?;
    }
    let l = r.clone();
    lp.call_soon(move || {
        let l2 = l.clone();
        l.call_soon(move || say(&l2, "call_soon from a callback: runs one iteration later"))
            .unwrap();
        say(&l, "call_soon: fourth (scheduled another callback)");
    })?;

    // 2. Timers fire by deadline, whatever order they were scheduled in;
    //    two timers with the same deadline fire in scheduling order.
    for ms in [30u64, 10, 20, 20] {
        let l = r.clone();
        let t = lp.call_later(Duration::from_millis(ms), move || {
            say(&l, &format!("call_later({ms} ms) fired"))
        })?;
        say(&r, &format!("scheduled {t:?}"));
    }

    // 3. A cancelled timer never fires, and leaves the wheel at once.
    let doomed = lp.call_later(Duration::from_millis(15), || unreachable!("cancelled"))?;
    let before = lp.scheduled_timers();
    doomed.cancel();
    say(
        &r,
        &format!(
            "cancelled {doomed:?}: timers pending {before} -> {}",
            lp.scheduled_timers()
        ),
    );

    // 4. A reader on a socket pair. A timer writes five bytes at 40 ms; the
    //    reader takes one byte per call, and (level-triggered, as asyncio's
    //    selectors) is called again on each iteration until the socket is
    //    drained, then removes itself.
    let (rx, tx) = UnixStream::pair().expect("socketpair");
    rx.set_nonblocking(true).expect("nonblocking");
    let fd = rx.as_raw_fd();
    let got = Rc::new(Cell::new(0));
    let (l, g) = (r.clone(), got.clone());
    lp.add_reader(fd, move || {
        let mut one = [0u8; 1];
        match (&rx).read(&mut one) {
            Ok(1) => {
                g.set(g.get() + 1);
                say(&l, &format!("reader: got {:?}", one[0] as char));
                if g.get() == 5 {
                    say(
                        &l,
                        &format!("reader: done, remove_reader -> {}", l.remove_reader(fd)),
                    );
                }
            }
            other => say(&l, &format!("reader: unexpected {other:?}")),
        }
    })?;
    let l = r.clone();
    lp.call_later(Duration::from_millis(40), move || {
        (&tx).write_all(b"hello").expect("write");
        say(&l, "writer: sent \"hello\"");
    })?;

    // 5. A panicking callback is caught at the loop boundary and handed to
    //    the exception handler; the loop keeps running.
    let handler: ExceptionHandler = Rc::new(|lp, ctx| {
        say(lp, &format!("exception handler: {}", ctx.message));
        if let Some(e) = &ctx.exception {
            say(lp, &format!("exception handler: {e}"));
        }
    });
    lp.set_exception_handler(Some(handler));
    std::panic::set_hook(Box::new(|_| {})); // the handler reports it instead
    lp.call_later(Duration::from_millis(50), || panic!("a bug in a callback"))?;

    // 6. stop() lets the current iteration finish, then run_forever returns.
    let l = r.clone();
    lp.call_later(Duration::from_millis(60), move || {
        say(&l, "stop()");
        l.stop();
    })?;

    lp.run_forever()?;
    say(
        &r,
        &format!("run_forever returned; is_running = {}", lp.is_running()),
    );

    // 7. Tasks: Rust async code run as asyncio tasks. A worker sleeps; the
    //    main coroutine cancels it; the worker catches the CancelledError at
    //    its `await`, cleans up (awaiting, as a `finally` block may), and
    //    lets the cancellation propagate, so it ends cancelled.
    let l = r.clone();
    let outcome = lp.run_until_complete(async move {
        let lw = l.clone();
        let worker = create_task(async move {
            say(&lw, "worker: started, sleeping for an hour");
            if let Err(c) = sleep(Duration::from_secs(3600)).await {
                say(
                    &lw,
                    &format!("worker: caught CancelledError({c}), cleaning up"),
                );
                sleep(Duration::from_millis(5)).await?;
                say(&lw, "worker: cleanup done, re-raising");
                return Err(c);
            }
            Ok("slept well")
        })?;
        worker.set_name("worker");
        sleep(Duration::from_millis(10)).await?;
        say(&l, &format!("main: cancelling {worker:?}"));
        worker.cancel_with("tour is over");
        let res = (&worker).await;
        say(
            &l,
            &format!(
                "main: worker ended {res:?}; cancelled() = {}",
                worker.cancelled()
            ),
        );

        // 8. gather: results in the order of the inputs, whatever order the
        //    children finish in.
        let mut children = Vec::new();
        for (name, ms) in [("slow", 30u64), ("fast", 10), ("medium", 20)] {
            let lc = l.clone();
            children.push(create_task(async move {
                sleep(Duration::from_millis(ms)).await?;
                say(&lc, &format!("gather child {name} done after {ms} ms"));
                Ok(name)
            })?);
        }
        let names = gather(children).await;
        say(&l, &format!("main: gather -> {names:?} (input order)"));

        // 9. The thread-safe door: a worker thread feeds the loop with
        //    call_soon_threadsafe (the only way in from another thread; the
        //    loop itself is !Send), and a blocking job runs on the executor
        //    while the loop goes on.
        let door = l.loop_handle();
        let feeder = std::thread::spawn(move || {
            for i in 1..=3 {
                door.call_soon_threadsafe(move || {
                    let lp = aioloop::get_running_loop().expect("runs on the loop");
                    say(&lp, &format!("from the worker thread: message {i}"));
                })
                .expect("the loop is open");
            }
        });
        let job = l.run_in_executor(|| {
            // Blocking work, off the loop's thread.
            let name = std::thread::current().name().unwrap_or("?").to_owned();
            (1..=10u64).product::<u64>().to_string() + " computed on " + &name
        });
        sleep(Duration::from_millis(5)).await?;
        feeder.join().expect("feeder thread");
        match job.await {
            Ok(v) => say(&l, &format!("main: executor job -> 10! = {v}")),
            Err(e) => say(&l, &format!("main: executor job failed: {e}")),
        }
        Ok(42)
    })?;
    say(&r, &format!("run_until_complete -> {outcome:?}"));
    lp.close()?;
    say(&r, &format!("closed: {lp:?}"));
    match lp.call_soon(|| {}) {
        Err(e) => say(&r, &format!("call_soon after close: {e}")),
        Ok(_) => unreachable!(),
    }
    Ok(())
}
