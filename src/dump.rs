//! The task dump: every live task of a loop, what it is doing, what it
//! waits on, and whether anything can still wake it.
//!
//! asyncio has no such report; `asyncio.all_tasks()` plus each task's repr
//! is the closest. [`LoopRef::dump_tasks`] gathers, for each task not done:
//! its number and name, its state (running, scheduled, waiting), where it
//! was created, what it waits on (from the same records the stuck-task check
//! reads), its steps and running time (counted in debug mode), and the
//! stuck-task check's verdict, run on demand.
//!
//! # Invariants
//!
//! - Usable from inside a callback or a task step: it only reads the loop's
//!   state and borrows nothing across user code.
//! - It never frees a task itself; a task it finds stuck is handed to the
//!   loop's check, which reports and frees it at the next safe point.

use std::fmt;
use std::panic::Location;
use std::time::Duration;

use crate::event_loop::{Handle, LoopCore, LoopRef};
use crate::task_slab::TaskId;
use crate::tasks::{task_repr, FutWaiter, TaskState};

/// Where a task is, as the dump sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpState {
    /// Its step is running now (the dump was taken from inside it).
    Running,
    /// On the ready queue: it runs in this or the next iteration.
    Scheduled,
    /// Parked until something wakes it.
    Waiting,
}

impl DumpState {
    fn name(self) -> &'static str {
        match self {
            DumpState::Running => "running",
            DumpState::Scheduled => "scheduled",
            DumpState::Waiting => "waiting",
        }
    }
}

/// One task in a [`TaskDump`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TaskInfo {
    /// `N` of `Task-N`: unique per process (until it wraps at 2³²).
    pub number: u32,
    /// The task's name (`Task-N` unless set).
    pub name: String,
    /// Running, scheduled or waiting.
    pub state: DumpState,
    /// Where `create_task` was called.
    pub created_at: &'static Location<'static>,
    /// What it waits on, as the loop knows it: `Queue.get of <Queue
    /// maxsize=0 qsize=0>`, a task, a future. `None` while running or
    /// scheduled, or when it waits on something outside aioloop (a timer of
    /// `sleep`, a foreign future).
    pub waiting_on: Option<String>,
    /// Steps run so far and the time spent in them: counted in debug mode
    /// only (`None` outside it).
    pub steps: Option<(u32, Duration)>,
    /// True when the stuck-task check proves nothing can ever wake it.
    pub stuck: bool,
}

/// A report of every live task of a loop ([`LoopRef::dump_tasks`]).
/// `Display` prints one line per task.
#[derive(Clone, Debug)]
pub struct TaskDump {
    /// The tasks, by number (creation order).
    pub tasks: Vec<TaskInfo>,
}

impl fmt::Display for TaskDump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} live task(s)", self.tasks.len())?;
        for t in &self.tasks {
            write!(
                f,
                "  Task-{} '{}' {} created at {}:{}",
                t.number,
                t.name,
                t.state.name(),
                t.created_at.file(),
                t.created_at.line()
            )?;
            if let Some(w) = &t.waiting_on {
                write!(f, ", waiting on {w}")?;
            }
            if let Some((n, d)) = t.steps {
                write!(f, ", {n} steps in {:.3} ms", d.as_secs_f64() * 1e3)?;
            }
            if t.stuck {
                f.write_str(" — STUCK: nothing can ever wake it")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

impl LoopRef {
    /// A report of every task of this loop that is not done; see
    /// [`crate::dump`].
    ///
    /// ```
    /// use aioloop::{sleep, EventLoop};
    /// use std::time::Duration;
    ///
    /// let lp = EventLoop::with_virtual_clock().unwrap();
    /// let t = lp.create_task(sleep(Duration::from_secs(5))).unwrap();
    /// t.set_name("napper");
    /// let dump = lp
    ///     .run_until_complete(async {
    ///         sleep(Duration::from_secs(1)).await.unwrap();
    ///         Ok::<_, aioloop::Error>(aioloop::get_running_loop().unwrap().dump_tasks())
    ///     })
    ///     .unwrap();
    /// let napper = dump.tasks.iter().find(|t| t.name == "napper").unwrap();
    /// assert_eq!(napper.state, aioloop::dump::DumpState::Waiting);
    /// assert!(!napper.stuck, "its timer will wake it");
    /// println!("{dump}");
    /// ```
    pub fn dump_tasks(&self) -> TaskDump {
        let core = self.core();
        let handles: Vec<(TaskId, Handle)> = match core.tasks.try_borrow() {
            Ok(tasks) => tasks
                .values()
                .filter_map(|h| Some((h.task_header()?.id(), h.clone())))
                .collect(),
            Err(_) => Vec::new(),
        };
        let ids: Vec<TaskId> = handles.iter().map(|(id, _)| *id).collect();
        // The clones above are references the check would count: drop
        // them first.
        let mut infos: Vec<(TaskId, TaskInfo)> = handles
            .iter()
            .filter_map(|(id, h)| Some((*id, info(core, h)?)))
            .collect();
        drop(handles);
        let stuck = core.stuck_among(&ids);
        for (id, info) in &mut infos {
            info.stuck = stuck.contains(id);
        }
        for id in &stuck {
            core.suspect(*id);
        }
        let debug = core.debug.on();
        let mut tasks: Vec<TaskInfo> = infos
            .into_iter()
            .map(|(_, mut i)| {
                if !debug && i.steps == Some((0, Duration::ZERO)) {
                    i.steps = None;
                }
                i
            })
            .collect();
        tasks.sort_by_key(|t| t.number);
        TaskDump { tasks }
    }
}

/// What the dump says about one task; `None` if it is done.
fn info(core: &LoopCore, handle: &Handle) -> Option<TaskInfo> {
    let h = handle.task_header()?;
    let state = match h.state() {
        TaskState::Running => DumpState::Running,
        TaskState::Pending if h.scheduled.get() => DumpState::Scheduled,
        TaskState::Pending => DumpState::Waiting,
        _ => return None,
    };
    let waiting_on = (state == DumpState::Waiting)
        .then(|| match h.fut_waiter_clone() {
            FutWaiter::Target(w) => {
                let p = w.upgrade()?;
                let kind = p
                    .registrations()
                    .iter()
                    .find(|r| r.task == Some(h.id()))
                    .map(|r| r.site.kind.name());
                Some(match kind {
                    Some(k) => format!("{k} of {}", p.describe()),
                    None => p.describe(),
                })
            }
            FutWaiter::Task(t) => {
                let tasks = core.tasks.try_borrow().ok()?;
                Some(format!("Task of {}", task_repr(tasks.get(t)?)))
            }
        })
        .flatten();
    let (n, ns) = h.step_stats();
    Some(TaskInfo {
        number: h.number(),
        name: h.name(),
        state,
        created_at: h.site(),
        waiting_on,
        steps: Some((n, Duration::from_nanos(ns))),
        stuck: false,
    })
}
