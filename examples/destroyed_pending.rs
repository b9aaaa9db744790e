//! The seed of aioloop: a task per id, blocked on a queue that was dropped,
//! ends in asyncio's puzzling `Task was destroyed but it is pending!`.
//!
//! A producer puts `start` and `end` messages for fresh ids on a queue every
//! 200 ms. A consumer starts one handler task per id, each reading from its
//! own per-id queue, kept in a map so that the consumer can forward the
//! id's messages. On `end` the buggy handler removes its id from the map and
//! keeps looping: its next `get()` waits on a queue that nothing else
//! references. asyncio notices only when its garbage collector frees the
//! cycle; aioloop proves it the moment the handler parks, says why, and
//! frees the task.
//!
//! The fixed handler cancels itself on `end` and catches the cancellation
//! at its next `get()`: `cancelled success`, and no warning.
//!
//! Run it with `cargo run --example destroyed_pending` (the virtual clock
//! makes the 200 ms pauses instant). `RUST_LOG=asyncio=debug` shows more.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use aioloop::queue::{Queue, QueueError};
use aioloop::{create_task, current_task, sleep, Error, EventLoop};

/// One message: an id and what happens to it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Msg {
    Start(u32),
    End(u32),
}

type Routes = Rc<RefCell<HashMap<u32, Queue<Msg>>>>;

/// Puts `start` and `end` for ids `1..=ids`, one message every 200 ms.
async fn producer(main: Queue<Msg>, ids: u32) -> Result<(), Error> {
    for id in 1..=ids {
        for msg in [Msg::Start(id), Msg::End(id)] {
            sleep(Duration::from_millis(200)).await?;
            main.put(msg).await?;
        }
    }
    Ok(())
}

/// The buggy handler: on `end` it forgets its queue's route and loops on.
async fn handler(id: u32, q: Queue<Msg>, routes: Routes) -> Result<(), Error> {
    loop {
        let msg = q.get().await?;
        log::info!(target: "destroyed_pending", "handler-{id} got {msg:?}");
        if msg == Msg::End(id) {
            routes.borrow_mut().remove(&id);
            // Bug: no return. The next get() waits forever.
        }
    }
}

/// The fixed handler: on `end` it cancels itself, and its next `get()`
/// delivers the cancellation, which it catches.
async fn fixed_handler(id: u32, q: Queue<Msg>, routes: Routes) -> Result<(), Error> {
    loop {
        match q.get().await {
            Ok(msg) => {
                log::info!(target: "destroyed_pending", "handler-{id} got {msg:?}");
                if msg == Msg::End(id) {
                    routes.borrow_mut().remove(&id);
                    current_task().expect("inside a task").cancel();
                }
            }
            Err(QueueError::Cancelled(_)) => {
                log::info!(target: "destroyed_pending", "handler-{id}: cancelled success");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reads the main queue and routes each message to its id's handler.
async fn consumer(main: Queue<Msg>, ids: u32, fixed: bool) -> Result<(), Error> {
    let routes: Routes = Rc::default();
    for _ in 0..2 * ids {
        match main.get().await? {
            Msg::Start(id) => {
                let q = Queue::<Msg>::new(0);
                routes.borrow_mut().insert(id, q.clone());
                let task = if fixed {
                    create_task(fixed_handler(id, q.clone(), routes.clone()))
                } else {
                    create_task(handler(id, q.clone(), routes.clone()))
                }
                .expect("the loop is running");
                task.set_name(format!("handler-{id}"));
                // As in the original: nobody keeps the task.
                drop(task);
                q.put_nowait(Msg::Start(id)).map_err(|e| e.into_parts().0)?;
            }
            Msg::End(id) => {
                let q = routes.borrow().get(&id).cloned();
                if let Some(q) = q {
                    q.put_nowait(Msg::End(id)).map_err(|e| e.into_parts().0)?;
                }
            }
        }
    }
    // Let the handlers see their last message.
    sleep(Duration::from_millis(200)).await?;
    Ok(())
}

/// Runs the scenario for `ids` ids, buggy or fixed, on a virtual clock.
pub fn run(ids: u32, fixed: bool) {
    let lp = EventLoop::with_virtual_clock().expect("a loop");
    let main = Queue::<Msg>::new(0);
    let p = lp.create_task(producer(main.clone(), ids)).expect("a task");
    let out = lp.run_until_complete(consumer(main, ids, fixed));
    out.expect("the consumer finished");
    lp.run_until_complete(p).expect("the producer finished");
    lp.close().expect("closed");
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    println!("== buggy handlers: each one ends stuck on a queue nobody else can reach");
    run(2, false);
    println!("\n== fixed handlers: each one cancels itself on `end`");
    run(2, true);
}
