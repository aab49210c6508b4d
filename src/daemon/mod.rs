//! The daemon's core: the supervisor that owns the drives and their states
//! (`supervisor`), the drives' state machine it drives (`drives`), the slow
//! work it hands to worker threads (`work`), the commands it takes
//! (`command`), the uevent reader (`hotplug`) and the shutdown signal that
//! reaches every thread (`threads`).
//!
//! `Daemon` starts and stops all of it; `Handle` is what the web side and
//! the panel hold: the latest snapshot, a way to send commands, and the few
//! store reads that are theirs (history pages, health).

pub mod command;
pub mod drives;
mod hotplug;
mod supervisor;
pub mod threads;
pub mod work;

use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{oneshot, watch};

pub use self::command::{Command, CommandError};
use self::supervisor::{Msg, Supervisor};
pub use self::threads::Lifeline;
use self::work::{OwnLoops, WorkContext};
use crate::config::Config;
use crate::logging::log;
use crate::media::convert::ConvertOptions;
use crate::media::tools::Tools;
use crate::queue::scheduler::{Scheduler, SchedulerConfig};
use crate::queue::store::{JobId, JobState, Store, StoreError};
use crate::view::{JobView, Published, Snapshot};

/// What the page, the API and the panel hold.
#[derive(Clone)]
pub struct Handle {
    inbox: Sender<Msg>,
    status: watch::Receiver<Arc<Published>>,
    store: Arc<Mutex<Store>>,
    tools: Tools,
    pub token: Arc<str>,
}

impl Handle {
    /// The latest snapshot (never waits for the supervisor).
    pub fn status(&self) -> Arc<Published> {
        self.status.borrow().clone()
    }

    pub fn snapshot(&self) -> Snapshot {
        self.status().snapshot.clone()
    }

    /// Changes as they are published.
    pub fn watch(&self) -> watch::Receiver<Arc<Published>> {
        self.status.clone()
    }

    /// Sends a command and waits for the supervisor's answer.
    pub async fn command(&self, command: Command) -> Result<(), CommandError> {
        let (tx, rx) = oneshot::channel();
        self.inbox
            .send(Msg::Command(command, tx))
            .map_err(|_| CommandError::ShuttingDown)?;
        rx.await.map_err(|_| CommandError::ShuttingDown)?
    }

    /// The same, from a plain thread (the panel).
    pub fn command_blocking(&self, command: Command) -> Result<(), CommandError> {
        let (tx, rx) = oneshot::channel();
        self.inbox
            .send(Msg::Command(command, tx))
            .map_err(|_| CommandError::ShuttingDown)?;
        rx.blocking_recv().map_err(|_| CommandError::ShuttingDown)?
    }

    /// Finished jobs older than the ones the snapshot carries, newest first.
    pub fn finished_jobs(
        &self,
        before: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<JobView>, StoreError> {
        let jobs = self.store.lock().unwrap().finished_jobs(before, limit)?;
        Ok(jobs.iter().map(|j| JobView::of(j, None)).collect())
    }

    /// Why the box cannot work right now, if it cannot.
    pub fn health_problem(&self) -> Option<String> {
        if let Some(problem) = self.status().snapshot.state_dir_problem.clone() {
            return Some(problem);
        }
        if let Err(e) = self.store.lock().unwrap().count_in_state(JobState::Queued) {
            return Some(format!("job store unusable: {e}"));
        }
        for tool in [&self.tools.ffmpeg, &self.tools.ffprobe, &self.tools.flac] {
            // A bare name is looked up on PATH, as when it is run.
            if crate::media::tools::resolve(tool).is_none() {
                return Some(format!(
                    "{} is missing: {}",
                    tool.display(),
                    crate::media::tools::INSTALL_HINT
                ));
            }
        }
        None
    }
}

/// The running core: the supervisor, the scheduler's workers and the
/// uevent reader. `shutdown` stops and joins them all.
pub struct Daemon {
    handle: Handle,
    lifeline: Arc<Lifeline>,
    scheduler: Arc<Scheduler>,
    supervisor: Option<JoinHandle<()>>,
    hotplug: Option<JoinHandle<()>>,
}

impl Daemon {
    /// Opens the store, recovers from a crash or power cut, and starts the
    /// supervisor and the scheduler. Drives are picked up once
    /// `start_hotplug` listens to the kernel.
    pub fn start(
        config: Config,
        tools: Tools,
        token: String,
        lifeline: Arc<Lifeline>,
    ) -> Result<Daemon, String> {
        let store = Arc::new(Mutex::new(open_store(&config)?));
        let board = crate::hw::board::detect();
        let plan = crate::hw::tuning::plan(&board, &config.convert.overrides());
        for reason in &plan.reasons {
            log(&format!("plan: {reason}"));
        }
        let scheduler_config = scheduler_config(&config, &plan);
        let (inbox, messages) = mpsc::channel();
        let events = inbox.clone();
        let scheduler = Arc::new(Scheduler::start(
            store.clone(),
            tools.clone(),
            scheduler_config,
            move |event| {
                let _ = events.send(Msg::Job(event));
            },
        ));
        // No drive is plugged in yet as far as the scheduler knows.
        scheduler.set_drive_available(-1, false);
        let ctx = Arc::new(WorkContext {
            config,
            tools: tools.clone(),
            store: store.clone(),
            scheduler: scheduler.clone(),
            own_loops: OwnLoops::default(),
        });
        let mut supervisor =
            Supervisor::new(ctx, messages, inbox.clone(), plan.workers, lifeline.clone());
        let status = supervisor.publish_first();
        let supervisor = lifeline
            .spawn("supervisor", move || supervisor.run())
            .map_err(|e| format!("cannot start: {e}"))?;
        Ok(Daemon {
            handle: Handle {
                inbox,
                status,
                store,
                tools,
                token: token.into(),
            },
            lifeline,
            scheduler,
            supervisor: Some(supervisor),
            hotplug: None,
        })
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Listens to the kernel's uevents; drives already plugged in are
    /// picked up first.
    pub fn start_hotplug(&mut self) -> Result<(), String> {
        let thread = hotplug::start(&self.lifeline, self.handle.inbox.clone())?;
        self.hotplug = Some(thread);
        Ok(())
    }

    /// Stops every thread of the core and waits for them: running jobs are
    /// interrupted, drives' work ends, every drive is unmounted. Returns the
    /// name of a thread that panicked, if one did.
    pub fn shutdown(mut self) -> Option<String> {
        self.lifeline.stop();
        if let Some(h) = self.hotplug.take() {
            let _ = h.join();
        }
        let _ = self.handle.inbox.send(Msg::Shutdown);
        if let Some(s) = self.supervisor.take() {
            let _ = s.join();
        }
        self.scheduler.stop();
        self.scheduler.join();
        self.lifeline.panicked()
    }
}

/// Creates the state and mount folders, opens the store and recovers from a
/// crash or power cut.
fn open_store(config: &Config) -> Result<Store, String> {
    for (dir, key, what) in [
        (&config.state_dir, "state_dir", "state"),
        (&config.usb.mount_root, "usb.mount_root", "mount"),
    ] {
        std::fs::create_dir_all(dir).map_err(|e| {
            format!(
                "cannot create the {what} folder {} (`{key}`): {e}",
                dir.display()
            )
        })?;
    }
    let mut store = Store::open(&config.state_dir.join("jobs.db")).map_err(|e| e.to_string())?;
    let recovered = store.recover_after_crash().map_err(|e| e.to_string())?;
    if !recovered.is_empty() {
        log(&format!(
            "{} job(s) were cut short by a restart; they run again when their drive is mounted",
            recovered.len()
        ));
    }
    for id in store
        .fail_crash_loops(config.convert.max_attempts)
        .map_err(|e| e.to_string())?
    {
        log(&format!(
            "job {id} failed: the box stopped {} or more times while converting it",
            config.convert.max_attempts
        ));
    }
    Ok(store)
}

fn scheduler_config(config: &Config, plan: &crate::hw::tuning::Plan) -> SchedulerConfig {
    SchedulerConfig {
        workers: plan.workers,
        max_attempts: config.convert.max_attempts,
        allowed_jobs: Some(Arc::new(crate::hw::tuning::jobs_allowed_now)),
        cores: plan.cores,
        convert: ConvertOptions {
            compression_level: config.convert.compression_level,
            nice: plan.nice,
            cpus: plan.cpus.clone(),
            decode_lanes: plan.decode_lanes,
            flac_threads: plan.flac_threads,
        },
    }
}
