//! Worker slots that take jobs from the store, most urgent first, and run
//! them through the engine. Pause stops a job's processes where they are
//! (SIGSTOP) and resume continues them (SIGCONT), so no work is lost; cancel
//! kills them and removes the temporary file; transient failures are retried
//! a bounded number of times, corrupt input never.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::store::{JobId, JobState, Store, StoreError};
use crate::media::convert::{
    self, ConvertOptions, ConvertResult, FailureKind, JobControl, Progress,
};
use crate::media::tools::Tools;

/// How many jobs may encode at once right now, given `workers` (the most
/// ever): the box passes `hw::tuning::jobs_allowed_now`, which runs fewer
/// while the board is hot or throttled.
pub type AllowedJobs = Arc<dyn Fn(usize) -> usize + Send + Sync>;

#[derive(Clone)]
pub struct SchedulerConfig {
    /// How many conversions encode at once.
    pub workers: usize,
    /// Attempts per job for transient failures (I/O errors, crashed processes).
    pub max_attempts: u32,
    /// Asked before each job starts how many may encode at once; `None`:
    /// always `workers`.
    pub allowed_jobs: Option<AllowedJobs>,
    /// Cores the conversions may use: a job gets several decoders (lanes)
    /// only while that leaves no job waiting for a core.
    pub cores: usize,
    pub convert: ConvertOptions,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_attempts: 3,
            allowed_jobs: None,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            convert: ConvertOptions::default(),
        }
    }
}

impl std::fmt::Debug for SchedulerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let SchedulerConfig {
            workers,
            max_attempts,
            allowed_jobs,
            cores,
            convert,
        } = self;
        f.debug_struct("SchedulerConfig")
            .field("workers", workers)
            .field("max_attempts", max_attempts)
            .field(
                "allowed_jobs",
                &allowed_jobs.as_ref().map(|_| "Fn(usize) -> usize"),
            )
            .field("cores", cores)
            .field("convert", convert)
            .finish()
    }
}

/// What the scheduler tells whoever shows the queue (terminal, panel, page).
#[derive(Debug, Clone)]
pub enum Event {
    Started {
        job: JobId,
    },
    Progress {
        job: JobId,
        progress: Progress,
    },
    Finished {
        job: JobId,
        state: JobState,
        result: Option<ConvertResult>,
        error: Option<String>,
    },
    Retrying {
        job: JobId,
        attempt: u32,
        error: String,
    },
}

type Listener = Arc<dyn Fn(Event) + Send + Sync>;

struct Shared {
    paused: bool,
    stopping: bool,
    running: HashMap<JobId, Arc<JobControl>>,
    /// Jobs being stopped for a reason other than the user cancelling them.
    interrupting: HashSet<JobId>,
    /// When set, only jobs on these drives (the ones plugged in) may start.
    drives: Option<HashSet<i64>>,
}

impl Shared {
    /// The running jobs still decoding and encoding; the others are being
    /// checked and synced, which hardly needs a core. Only these count
    /// against `workers`.
    fn encoding(&self) -> usize {
        self.running.values().filter(|c| !c.is_encoded()).count()
    }
}

struct Inner {
    store: Arc<Mutex<Store>>,
    tools: Tools,
    config: SchedulerConfig,
    shared: Mutex<Shared>,
    wake: Condvar,
    listener: Listener,
}

pub struct Scheduler {
    inner: Arc<Inner>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Scheduler {
    pub fn start(
        store: Arc<Mutex<Store>>,
        tools: Tools,
        config: SchedulerConfig,
        listener: impl Fn(Event) + Send + Sync + 'static,
    ) -> Scheduler {
        // A job being checked and synced keeps its thread while the next one
        // encodes, so there are threads for every job at once plus as many
        // being finished, and one more: with a single spare thread, a slow
        // finish (a USB stick's fsync, the read-back on a slow core) that
        // outlasted the next short track's encoding left the cores idle.
        let slots = config.workers.max(1) * 2 + 1;
        let inner = Arc::new(Inner {
            store,
            tools,
            config,
            shared: Mutex::new(Shared {
                paused: false,
                stopping: false,
                running: HashMap::new(),
                interrupting: HashSet::new(),
                drives: None,
            }),
            wake: Condvar::new(),
            listener: Arc::new(listener),
        });
        let workers = (0..slots)
            .map(|i| {
                let inner = inner.clone();
                std::thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn(move || worker(inner))
                    .expect("cannot start a worker thread")
            })
            .collect();
        Scheduler {
            inner,
            workers: Mutex::new(workers),
        }
    }

    /// Lets jobs on `drive` start (plugged in) or holds them back (pulled,
    /// ejecting). Once called, jobs on drives never marked available wait.
    pub fn set_drive_available(&self, drive: i64, available: bool) {
        let mut g = self.inner.shared.lock().unwrap();
        let set = g.drives.get_or_insert_with(HashSet::new);
        if available {
            set.insert(drive);
        } else {
            set.remove(&drive);
        }
        drop(g);
        self.inner.wake.notify_all();
    }

    /// Jobs running (or paused) right now.
    pub fn running_jobs(&self) -> Vec<JobId> {
        self.inner
            .shared
            .lock()
            .unwrap()
            .running
            .keys()
            .copied()
            .collect()
    }

    pub fn pause(&self) -> Result<(), StoreError> {
        let mut g = self.inner.shared.lock().unwrap();
        g.paused = true;
        let mut store = self.inner.store.lock().unwrap();
        for (id, control) in &g.running {
            control.pause();
            store.transition(*id, &[JobState::Running], JobState::Paused, None)?;
        }
        Ok(())
    }

    pub fn resume(&self) -> Result<(), StoreError> {
        let mut g = self.inner.shared.lock().unwrap();
        g.paused = false;
        let mut store = self.inner.store.lock().unwrap();
        for (id, control) in &g.running {
            store.transition(*id, &[JobState::Paused], JobState::Running, None)?;
            control.resume();
        }
        drop(store);
        self.inner.wake.notify_all();
        Ok(())
    }

    pub fn is_paused(&self) -> bool {
        self.inner.shared.lock().unwrap().paused
    }

    /// Cancels a job: a running one is stopped and its temp file removed.
    pub fn cancel(&self, id: JobId) -> Result<(), StoreError> {
        let g = self.inner.shared.lock().unwrap();
        if let Some(control) = g.running.get(&id) {
            control.cancel();
            return Ok(());
        }
        let mut store = self.inner.store.lock().unwrap();
        store.transition(
            id,
            &[JobState::Queued, JobState::Interrupted],
            JobState::Cancelled,
            Some("cancelled before it ran"),
        )?;
        Ok(())
    }

    /// Stops a running job without blaming it: it becomes `interrupted` and
    /// can run again later (a drive pulled, the box shutting down).
    pub fn interrupt(&self, id: JobId) {
        let mut g = self.inner.shared.lock().unwrap();
        if let Some(control) = g.running.get(&id).cloned() {
            g.interrupting.insert(id);
            control.cancel();
        }
    }

    /// Puts a failed, cancelled or interrupted job back in the queue.
    pub fn retry(&self, id: JobId) -> Result<(), StoreError> {
        let mut store = self.inner.store.lock().unwrap();
        store.transition(
            id,
            &[JobState::Failed, JobState::Cancelled, JobState::Interrupted],
            JobState::Queued,
            Some("retry requested"),
        )?;
        drop(store);
        self.inner.wake.notify_all();
        Ok(())
    }

    /// Blocks until no job is queued or running.
    pub fn wait_until_idle(&self) {
        let mut g = self.inner.shared.lock().unwrap();
        loop {
            let queued = self
                .inner
                .store
                .lock()
                .unwrap()
                .count_in_state(JobState::Queued)
                .unwrap_or(0);
            if g.running.is_empty() && (queued == 0 || g.paused) {
                return;
            }
            g = self
                .inner
                .wake
                .wait_timeout(g, Duration::from_millis(500))
                .unwrap()
                .0;
        }
    }

    /// Stops every worker; running jobs become `interrupted`.
    pub fn shutdown(self) {
        self.stop();
        self.join();
    }

    /// No job starts any more; running ones are interrupted (they end as
    /// `interrupted`, their temporary files removed). Returns at once.
    pub fn stop(&self) {
        {
            let mut g = self.inner.shared.lock().unwrap();
            g.stopping = true;
            let ids: Vec<JobId> = g.running.keys().copied().collect();
            for id in ids {
                g.interrupting.insert(id);
                g.running[&id].cancel();
            }
        }
        self.inner.wake.notify_all();
    }

    /// A worker thread ended although nobody stopped the scheduler: it
    /// crashed outside a conversion (which has a guard of its own).
    pub fn lost_a_worker(&self) -> bool {
        let stopping = self.inner.shared.lock().unwrap().stopping;
        !stopping && self.workers.lock().unwrap().iter().any(|w| w.is_finished())
    }

    /// Waits for the worker threads once `stop` was called.
    pub fn join(&self) {
        let workers: Vec<JoinHandle<()>> = self.workers.lock().unwrap().drain(..).collect();
        for w in workers {
            let _ = w.join();
        }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.stop();
        self.join();
    }
}

fn next_job(inner: &Inner) -> Option<(super::store::Job, Arc<JobControl>, bool)> {
    let mut g = inner.shared.lock().unwrap();
    loop {
        if g.stopping {
            return None;
        }
        let allowed = match &inner.config.allowed_jobs {
            Some(allowed_now) => allowed_now(inner.config.workers),
            None => inner.config.workers.max(1),
        };
        if !g.paused && g.encoding() < allowed {
            let mut store = inner.store.lock().unwrap();
            match store.claim_next(g.drives.as_ref()) {
                Ok(Some(job)) => {
                    let control = Arc::new(JobControl::default());
                    g.running.insert(job.id, control.clone());
                    let lanes = inner.config.convert.decode_lanes >= 2 && {
                        let waiting = store.count_in_state(JobState::Queued).unwrap_or(0);
                        lanes_pay(g.encoding() + waiting, inner.config.cores)
                    };
                    return Some((job, control, lanes));
                }
                Ok(None) => {}
                Err(e) => eprintln!("dtsflac: job store: {e}"),
            }
        }
        g = inner
            .wake
            .wait_timeout(g, Duration::from_secs(1))
            .unwrap()
            .0;
    }
}

/// A job keeps about two cores busy (decoder | libFLAC encoder). Lanes add
/// decoders; they pay only when the cores would otherwise sit idle, not
/// when every core already has a job of its own.
fn lanes_pay(jobs: usize, cores: usize) -> bool {
    jobs * 2 <= cores.max(1)
}

fn worker(inner: Arc<Inner>) {
    while let Some((job, control, lanes)) = next_job(&inner) {
        let id = job.id;
        let waker = inner.clone();
        control.on_encoded(move || {
            // Taking the lock orders this with a worker about to wait.
            drop(waker.shared.lock().unwrap());
            waker.wake.notify_all();
        });
        let options = ConvertOptions {
            decode_lanes: if lanes {
                inner.config.convert.decode_lanes
            } else {
                1
            },
            ..inner.config.convert.clone()
        };
        (inner.listener)(Event::Started { job: id });
        let listener = inner.listener.clone();
        // A bug in one job must not take the worker (and the queue) down with it.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            convert::convert_track(
                &inner.tools,
                &job.track,
                &job.output,
                &options,
                &control,
                &mut |p| {
                    listener(Event::Progress {
                        job: id,
                        progress: p,
                    })
                },
            )
        }))
        .unwrap_or_else(|_| {
            Err(convert::ConvertError::new(
                FailureKind::Input,
                "internal error while converting (please report it)",
            ))
        });

        let mut g = inner.shared.lock().unwrap();
        g.running.remove(&id);
        let interrupted = g.interrupting.remove(&id);
        let mut store = inner.store.lock().unwrap();
        let event = match outcome {
            Ok(result) => {
                let note = result.warnings.first().map(String::as_str);
                let r = store.record_done(id, &result, note);
                finished(id, r.map(|_| JobState::Done), Some(result), None)
            }
            Err(e) if interrupted => {
                let r = store.record_failure(
                    id,
                    JobState::Interrupted,
                    e.kind,
                    "interrupted before it finished",
                );
                finished(
                    id,
                    r.map(|_| JobState::Interrupted),
                    None,
                    Some("interrupted".into()),
                )
            }
            Err(e) if e.kind == FailureKind::Cancelled => {
                let r = store.record_failure(id, JobState::Cancelled, e.kind, "cancelled");
                finished(id, r.map(|_| JobState::Cancelled), None, Some(e.message))
            }
            Err(e)
                if e.kind == FailureKind::Transient && job.attempts < inner.config.max_attempts =>
            {
                let r = store
                    .record_failure(id, JobState::Interrupted, e.kind, &e.message)
                    .and_then(|_| {
                        store.transition(
                            id,
                            &[JobState::Interrupted],
                            JobState::Queued,
                            Some("automatic retry"),
                        )
                    });
                match r {
                    Ok(_) => Event::Retrying {
                        job: id,
                        attempt: job.attempts,
                        error: e.message,
                    },
                    Err(se) => finished(id, Err(se), None, None),
                }
            }
            Err(e) => {
                let r = store.record_failure(id, JobState::Failed, e.kind, &e.message);
                finished(id, r.map(|_| JobState::Failed), None, Some(e.message))
            }
        };
        drop(store);
        drop(g);
        inner.wake.notify_all();
        (inner.listener)(event);
    }
}

fn finished(
    job: JobId,
    state: Result<JobState, StoreError>,
    result: Option<ConvertResult>,
    error: Option<String>,
) -> Event {
    match state {
        Ok(state) => Event::Finished {
            job,
            state,
            result,
            error,
        },
        Err(e) => Event::Finished {
            job,
            state: JobState::Failed,
            result: None,
            error: Some(format!("job store: {e}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::tools::Tools;
    use std::path::Path;

    #[test]
    fn lanes_only_while_cores_would_stay_idle() {
        // Two cores: one job alone may have them; two jobs fill them.
        assert!(lanes_pay(1, 2));
        assert!(!lanes_pay(2, 2));
        assert!(!lanes_pay(4, 2));
        // Four cores: two jobs fill them.
        assert!(lanes_pay(2, 4));
        assert!(!lanes_pay(3, 4));
        assert!(!lanes_pay(1, 1));
    }

    /// A store in `dir` with a job for each of `names`: `name.dts` to
    /// `name.flac`, ~15 s of DTS-HD MA each, so checking and syncing take
    /// long enough to overlap.
    fn queue(tools: &Tools, dir: &Path, names: &[&str]) -> (Arc<Mutex<Store>>, Vec<JobId>) {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/samples/dcadec/xll_71_24_48_768_0.dtshd");
        assert!(
            sample.exists(),
            "../shared/samples/dcadec is beside the project"
        );
        let mut store = Store::open(&dir.join("jobs.db")).unwrap();
        let mut ids = Vec::new();
        let frames = crate::media::dtshd::stream_frames(&std::fs::read(&sample).unwrap())
            .unwrap()
            .repeat(30);
        for name in names {
            let source = dir.join(format!("{name}.dts"));
            std::fs::write(&source, &frames).unwrap();
            let track = crate::media::probe::probe_file(tools, &source)
                .unwrap()
                .remove(0);
            ids.push(
                store
                    .add_job(&track, &source.with_extension("flac"), None, 5)
                    .unwrap(),
            );
        }
        (Arc::new(Mutex::new(store)), ids)
    }

    /// With one job at a time, the second starts while the first is still
    /// being checked and synced: the read-back and fsync need no core.
    #[test]
    fn the_next_job_starts_while_the_last_one_is_checked() {
        let tools = Tools::locate_capable().expect("ffmpeg and flac are installed");
        let dir = tempfile::tempdir().unwrap();
        let (store, ids) = queue(&tools, dir.path(), &["one", "two", "three"]);
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let scheduler = Scheduler::start(
            store.clone(),
            tools,
            SchedulerConfig {
                workers: 1,
                ..Default::default()
            },
            move |e| {
                let line = match e {
                    Event::Started { job } => Some(format!("started {job}")),
                    Event::Finished { job, state, .. } => Some(format!("{state} {job}")),
                    _ => None,
                };
                seen.lock().unwrap().extend(line);
            },
        );
        scheduler.wait_until_idle();
        scheduler.shutdown();
        let events = events.lock().unwrap().clone();
        let at = |line: String| events.iter().position(|e| *e == line).expect(&line);
        for pair in ids.windows(2) {
            assert!(
                at(format!("started {}", pair[1])) < at(format!("done {}", pair[0])),
                "{events:?}"
            );
        }
        // Never two encoding at once: each job starts after the one before
        // it, and every FLAC is there.
        assert!(at(format!("started {}", ids[2])) > at(format!("started {}", ids[1])));
        for name in ["one", "two", "three"] {
            assert!(dir.path().join(format!("{name}.flac")).exists());
        }
    }

    /// The function the scheduler is given decides how many jobs encode at
    /// once: limited to one, a second worker waits until the first job is
    /// encoded (an encoding job reports progress; a job being checked does
    /// not).
    #[test]
    fn the_given_limit_holds_jobs_back() {
        let tools = Tools::locate_capable().expect("ffmpeg and flac are installed");
        let dir = tempfile::tempdir().unwrap();
        let (store, ids) = queue(&tools, dir.path(), &["one", "two"]);
        let asked = Arc::new(Mutex::new(Vec::new()));
        let asked_by = asked.clone();
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        let scheduler = Scheduler::start(
            store,
            tools,
            SchedulerConfig {
                workers: 2,
                allowed_jobs: Some(Arc::new(move |workers| {
                    asked_by.lock().unwrap().push(workers);
                    1
                })),
                ..Default::default()
            },
            move |e| {
                let line = match e {
                    Event::Started { job } => Some(format!("started {job}")),
                    Event::Progress { job, .. } => Some(format!("progress {job}")),
                    _ => None,
                };
                seen.lock().unwrap().extend(line);
            },
        );
        scheduler.wait_until_idle();
        scheduler.shutdown();
        let asked = asked.lock().unwrap().clone();
        assert!(
            !asked.is_empty() && asked.iter().all(|w| *w == 2),
            "{asked:?}"
        );
        let events = events.lock().unwrap().clone();
        let second = format!("started {}", ids[1]);
        let second_at = events.iter().position(|e| *e == second).expect(&second);
        let first = format!("progress {}", ids[0]);
        assert!(
            !events[second_at..].contains(&first),
            "the first job still encoded when the second started: {events:?}"
        );
        for name in ["one", "two"] {
            assert!(dir.path().join(format!("{name}.flac")).exists());
        }
    }
}
