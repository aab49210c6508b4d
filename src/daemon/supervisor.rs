//! The supervisor: the one owner of the box's state. Everything that
//! happens reaches it as a `Msg` on one channel — kernel block events,
//! scheduler events, commands, and the results of slow work — and it
//! handles them one at a time, on its own thread. It never does slow work
//! itself: mounting, scanning, measuring and unmounting run on worker
//! threads that report back. After each batch of messages it publishes one
//! snapshot, which is all the page, the API and the panel ever read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use super::command::{Command, CommandError};
use super::drives::{Drives, Effect, Volume};
use super::threads::Lifeline;
use super::work::{self, Scanned, WorkContext};
use crate::logging::log;
use crate::queue::pending::StateDirFault;
use crate::queue::plan::{add_planned, fail_missing, Added};
use crate::queue::scheduler::Event;
use crate::queue::store::{Job, JobId, JobState};
use crate::usb::drives as devices;
use crate::usb::mount::{self, Mounted};
use crate::usb::uevent::{Action, BlockEvent};
use crate::view::{
    is_pending, BoxInfo, DriveState, JobView, Published, Running, Snapshot, StoreSummary,
    HISTORY_LIMIT,
};

/// Everything the supervisor hears about.
pub enum Msg {
    Block(BlockEvent),
    /// Look at the devices there are (at start, and after lost events).
    Rescan,
    Job(Event),
    Command(Command, oneshot::Sender<Result<(), CommandError>>),
    Probed {
        devname: String,
        gen: u64,
        volumes: Result<Vec<Volume>, String>,
    },
    Mounted {
        drive: i64,
        gen: u64,
        result: Result<Mounted, String>,
    },
    Scanned {
        drive: i64,
        gen: u64,
        scanned: Scanned,
    },
    Released {
        drive: i64,
    },
    Unmounted {
        drive: i64,
        gen: u64,
        result: Result<(), String>,
    },
    Measured {
        drive: i64,
        gen: u64,
        space: Option<(u64, u64)>,
    },
    Shutdown,
}

/// How long the loop sleeps when nothing happens.
const TICK: Duration = Duration::from_millis(250);
/// How often the board's readings and the drives' free space are refreshed.
const BOARD_EVERY: Duration = Duration::from_secs(10);
const SPACE_EVERY: Duration = Duration::from_secs(15);
/// How often job changes held in memory are written again, and the state
/// directory's free space is looked at.
const STATE_DIR_EVERY: Duration = Duration::from_secs(10);
/// Less free space than this in the state directory is reported as full
/// before SQLite fails on it.
const STATE_DIR_LOW_BYTES: u64 = 1 << 20;
/// Shutdown waits this long for the drives' work (the unit allows 120 s).
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(60);

pub struct Supervisor {
    ctx: Arc<WorkContext>,
    inbox: Receiver<Msg>,
    outbox: Sender<Msg>,
    lifeline: Arc<Lifeline>,
    drives: Drives,
    /// Unfinished jobs and the newest finished ones, as last read.
    jobs: Vec<Job>,
    summary: StoreSummary,
    jobs_stale: bool,
    running: HashMap<JobId, Running>,
    workers: Vec<JoinHandle<()>>,
    publish: watch::Sender<Arc<Published>>,
    slots: usize,
    board_model: String,
    box_info: BoxInfo,
    board_read: Instant,
    space_read: Instant,
    state_dir_checked: Instant,
    /// The state directory's free space was low at the last check.
    state_dir_low: Option<String>,
    /// Scans whose new jobs the state directory could not take: added when
    /// it can, if the drive is still in.
    unadded: HashMap<i64, Scanned>,
    /// What the snapshot says about the state directory.
    state_dir_problem: Option<String>,
    stopping: Option<Instant>,
    /// Something happened since the last snapshot.
    dirty: bool,
    /// Unit tests keep the effects here instead of running them.
    #[cfg(test)]
    recorded: Option<Vec<Effect>>,
}

impl Supervisor {
    pub fn new(
        ctx: Arc<WorkContext>,
        inbox: Receiver<Msg>,
        outbox: Sender<Msg>,
        slots: usize,
        lifeline: Arc<Lifeline>,
    ) -> Supervisor {
        let board_model = crate::hw::board::model();
        let box_info = board_readings(&board_model, &ctx);
        // Replaced by `publish_first` before anyone reads it.
        let (publish, _) = watch::channel(Arc::new(Published::new(Snapshot::new(
            false,
            Vec::new(),
            Vec::new(),
            StoreSummary::default(),
            slots,
            box_info.clone(),
        ))));
        Supervisor {
            ctx,
            inbox,
            outbox,
            lifeline,
            drives: Drives::default(),
            jobs: Vec::new(),
            summary: StoreSummary::default(),
            jobs_stale: true,
            running: HashMap::new(),
            workers: Vec::new(),
            publish,
            slots,
            board_model,
            box_info,
            board_read: Instant::now(),
            space_read: Instant::now(),
            state_dir_checked: Instant::now(),
            state_dir_low: None,
            unadded: HashMap::new(),
            state_dir_problem: None,
            stopping: None,
            dirty: true,
            #[cfg(test)]
            recorded: None,
        }
    }

    /// Publishes the first snapshot (the jobs in the store), so nobody
    /// ever sees an empty box, and returns where the snapshots come; call
    /// before `run`.
    pub fn publish_first(&mut self) -> watch::Receiver<Arc<Published>> {
        self.publish_if_changed();
        self.publish.subscribe()
    }

    pub fn run(mut self) {
        loop {
            match self.inbox.recv_timeout(TICK) {
                Ok(msg) => self.handle(msg),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            // Whatever else is waiting, then one snapshot for all of it.
            while let Ok(msg) = self.inbox.try_recv() {
                self.handle(msg);
            }
            self.tick();
            self.publish_if_changed();
            if let Some(deadline) = self.stopping {
                if self.drives.settled() {
                    break;
                }
                if Instant::now() > deadline {
                    log("shutdown: some drive work did not end in time");
                    break;
                }
            }
        }
        self.finish();
    }

    fn handle(&mut self, msg: Msg) {
        self.dirty = true;
        match msg {
            Msg::Block(event) => self.on_block(event),
            Msg::Rescan => self.reconcile(),
            Msg::Job(event) => self.on_job(event),
            Msg::Command(command, reply) => {
                let result = self.apply(command);
                // Published before the answer: whoever asked sees the change.
                self.publish_if_changed();
                let _ = reply.send(result);
            }
            Msg::Probed {
                devname,
                gen,
                volumes,
            } => {
                let volumes = volumes.unwrap_or_else(|e| {
                    log(&e);
                    Vec::new()
                });
                let effects = self.drives.probed(&devname, gen, volumes);
                self.run_effects(effects);
            }
            Msg::Mounted { drive, gen, result } => {
                let effects = self.drives.mounted(drive, gen, result);
                self.run_effects(effects);
            }
            Msg::Scanned {
                drive,
                gen,
                scanned,
            } => {
                let (applied, effects) = self.drives.scanned(drive, gen, scanned.tracks_found);
                if applied {
                    self.add_jobs(drive, &scanned);
                }
                self.run_effects(effects);
                if applied {
                    self.refresh_drive_states();
                }
            }
            Msg::Released { drive } => {
                self.tell_pulled(drive);
                let effects = self.drives.released(drive);
                self.run_effects(effects);
            }
            Msg::Unmounted { drive, gen, result } => {
                let effects = self.drives.unmounted(drive, gen, result);
                if let Some(d) = self.drives.view(drive) {
                    if d.state == DriveState::Ejected {
                        log(&format!("drive {} ejected: safe to remove", d.label));
                    }
                }
                self.run_effects(effects);
            }
            Msg::Measured { drive, gen, space } => self.drives.measured(drive, gen, space),
            Msg::Shutdown => self.begin_shutdown(),
        }
    }

    // ----- commands -----

    /// The one place a command is carried out.
    fn apply(&mut self, command: Command) -> Result<(), CommandError> {
        if self.stopping.is_some() {
            return Err(CommandError::ShuttingDown);
        }
        let scheduler = self.ctx.scheduler.clone();
        self.jobs_stale = true;
        match command {
            Command::Pause => scheduler.pause()?,
            Command::Resume => scheduler.resume()?,
            Command::Cancel(id) => {
                self.ctx.store.lock().unwrap().job(id)?;
                scheduler.cancel(id)?;
            }
            Command::Retry(id) => {
                scheduler.retry(id)?;
                self.refresh_drive_states();
            }
            Command::RetryFailed => {
                let failed = self
                    .ctx
                    .store
                    .lock()
                    .unwrap()
                    .ids_in_state(JobState::Failed)?;
                for id in failed {
                    scheduler.retry(id)?;
                }
                self.refresh_drive_states();
            }
            Command::Eject(id) => {
                let effects = self.drives.eject(id)?;
                self.run_effects(effects);
            }
            Command::EjectAll => {
                let ids: Vec<i64> = self
                    .drives
                    .views()
                    .filter(|d| d.allows_eject())
                    .map(|d| d.id)
                    .collect();
                for id in ids {
                    let effects = self.drives.eject(id)?;
                    self.run_effects(effects);
                }
            }
        }
        Ok(())
    }

    // ----- devices -----

    fn on_block(&mut self, event: BlockEvent) {
        if self.ctx.own_loops.contains(&event.devname) {
            return;
        }
        let in_use = self.drives.devices_in_use().contains(&event.devname);
        if event.action == Action::Remove || !devices::has_media(&event.devname) {
            self.pull(&event.devname);
        } else if !in_use {
            // Add, or a change that brought a medium (card readers, loop
            // devices attached).
            let usb = &self.ctx.config.usb;
            if devices::candidate(&event.devname, usb.allow_loop, &usb.mount_root).is_some() {
                let effects = self.drives.appeared(&event.devname);
                self.run_effects(effects.into_iter().collect());
            }
        }
    }

    /// At start and after lost events: drives whose device vanished are
    /// pulled, new devices are read.
    fn reconcile(&mut self) {
        let usb = &self.ctx.config.usb;
        let present: Vec<String> = devices::present(usb.allow_loop, &usb.mount_root)
            .into_iter()
            .map(|c| c.devname)
            .filter(|d| !self.ctx.own_loops.contains(d))
            .collect();
        let mounted: Vec<String> = self
            .drives
            .views()
            .filter_map(|d| self.drives.devname_of_mounted(d.id).map(String::from))
            .collect();
        for devname in mounted {
            if !present.contains(&devname) {
                self.pull(&devname);
            }
        }
        for devname in present {
            let effects = self.drives.appeared(&devname);
            self.run_effects(effects.into_iter().collect());
        }
    }

    fn pull(&mut self, devname: &str) {
        let before: BTreeMap<i64, DriveState> =
            self.drives.views().map(|d| (d.id, d.state)).collect();
        let effects = self.drives.gone(devname);
        for d in self.drives.views() {
            match before.get(&d.id) {
                Some(was) if *was != d.state && d.state == DriveState::Removed => log(&format!(
                    "drive {} was pulled while {was:?}; its unfinished jobs wait for it",
                    d.id
                )),
                _ => {}
            }
        }
        self.run_effects(effects);
    }

    /// A job failed: if its drive has vanished without a `remove` event
    /// (I/O errors from a yanked stick), handle it as pulled.
    fn check_drive_still_there(&mut self, job: JobId) {
        let Some(drive) = self.job(job).and_then(|j| j.drive_id) else {
            return;
        };
        let Some(devname) = self.drives.devname_of_mounted(drive).map(String::from) else {
            return;
        };
        if !devices::has_media(&devname) {
            self.pull(&devname);
        }
    }

    fn tell_pulled(&mut self, drive: i64) {
        let Some(label) = self.drives.view(drive).map(|d| d.label.clone()) else {
            return;
        };
        let waiting = self
            .jobs()
            .iter()
            .filter(|j| j.drive_id == Some(drive))
            .filter(|j| matches!(j.state, JobState::Interrupted | JobState::Queued))
            .count();
        if waiting > 0 {
            crate::notify::send(
                &self.ctx.config.notify,
                "drive_pulled",
                format!("{label} was pulled mid-job: {waiting} job(s) resume when it is back"),
                serde_json::json!({"drive": label, "waiting": waiting}),
            );
        }
    }

    // ----- jobs -----

    /// A scanned drive's jobs: new tracks queued, earlier jobs of changed
    /// sources or lost FLACs renewed, carried-over jobs whose source is gone
    /// failed, and only then the interrupted ones requeued.
    fn add_jobs(&mut self, drive: i64, scanned: &Scanned) {
        let mut store = self.ctx.store.lock().unwrap();
        let (mut added, mut renewed, mut unadded) = (0, 0, false);
        for outcome in add_planned(&mut store, &scanned.planned, Some(drive)) {
            match outcome {
                Added::Queued(_) => added += 1,
                Added::Renewed { old, new, why } => {
                    renewed += 1;
                    log(&format!("job {old}: {why}; job {new} converts it anew"));
                }
                Added::Failed(e) => {
                    log(&format!("job store: {e}"));
                    unadded = true;
                }
                Added::UpToDate | Added::Known => {}
            }
        }
        if unadded && store.state_dir_problem().is_some() {
            self.unadded.insert(drive, scanned.clone());
        }
        if scanned.complete {
            for id in fail_missing(&mut store, drive, &scanned.planned) {
                log(&format!("job {id}: its source is no longer on the drive"));
            }
        }
        if let Err(e) = store.requeue_interrupted(drive) {
            log(&format!("job store: {e}"));
        }
        drop(store);
        self.jobs_stale = true;
        let root = self
            .drives
            .view(drive)
            .and_then(|d| d.mount_point.clone())
            .unwrap_or_default();
        log(&format!(
            "{}: {} DTS track(s) found, {} new job(s)",
            root.display(),
            scanned.tracks_found,
            added + renewed
        ));
    }

    fn on_job(&mut self, event: Event) {
        match event {
            Event::Progress { job, progress } => {
                let total = self.job(job).and_then(|j| j.track.duration_seconds);
                let fraction = match total {
                    Some(t) if t > 0.0 => (progress.seconds_done / t).clamp(0.0, 1.0),
                    _ => 0.0,
                };
                self.running.insert(
                    job,
                    Running {
                        fraction,
                        speed: progress.speed,
                    },
                );
            }
            Event::Started { job } => {
                self.running.insert(job, Running::default());
                self.jobs_stale = true;
                self.refresh_drive_states();
            }
            Event::Finished {
                job, state, error, ..
            } => {
                self.running.remove(&job);
                self.jobs_stale = true;
                if let Some(e) = error {
                    log(&format!("job {job} {state}: {e}"));
                    if state == JobState::Failed {
                        let name = self
                            .job(job)
                            .map(|j| j.track.path.display().to_string())
                            .unwrap_or_default();
                        crate::notify::send(
                            &self.ctx.config.notify,
                            "job_failed",
                            format!("{name}: {e}"),
                            serde_json::json!({"job": job, "source": name, "error": e}),
                        );
                    }
                    self.check_drive_still_there(job);
                }
                if let Some(drive) = self.job(job).and_then(|j| j.drive_id) {
                    let effects = self.drives.measure(drive);
                    self.run_effects(effects.into_iter().collect());
                }
                self.refresh_drive_states();
            }
            Event::Retrying { job, error, .. } => {
                log(&format!("job {job} failed ({error}); trying again"));
                self.jobs_stale = true;
                self.check_drive_still_there(job);
            }
        }
    }

    /// The jobs as they are in the store now (read again only after a change).
    fn jobs(&mut self) -> &[Job] {
        if self.jobs_stale {
            let store = self.ctx.store.lock().unwrap();
            match (store.jobs_for_view(HISTORY_LIMIT), store.summary()) {
                (Ok(jobs), Ok(summary)) => {
                    self.jobs = jobs;
                    self.summary = summary;
                    self.jobs_stale = false;
                }
                (Err(e), _) | (_, Err(e)) => log(&format!("job store: {e}")),
            }
        }
        &self.jobs
    }

    fn job(&mut self, id: JobId) -> Option<&Job> {
        if !self.jobs().iter().any(|j| j.id == id) {
            // Added since the last read, or older than the history shown.
            self.jobs_stale = true;
        }
        self.jobs().iter().find(|j| j.id == id)
    }

    /// `converting` while a drive has work left, `idle` when all is done.
    fn refresh_drive_states(&mut self) {
        if self.stopping.is_some() {
            // Jobs end as `interrupted` now: no drive is done.
            return;
        }
        let busy: HashSet<i64> = self
            .jobs()
            .iter()
            .filter(|j| is_pending(j.state))
            .filter_map(|j| j.drive_id)
            .collect();
        let ids: Vec<(i64, DriveState)> = self.drives.views().map(|d| (d.id, d.state)).collect();
        for (id, state) in ids {
            if !matches!(state, DriveState::Converting | DriveState::Idle) {
                continue;
            }
            let next = if busy.contains(&id) {
                DriveState::Converting
            } else {
                DriveState::Idle
            };
            if state == DriveState::Converting && next == DriveState::Idle {
                self.tell_drive_done(id);
            }
            if let Some(view) = self.drives.view_mut(id) {
                view.state = next;
            }
        }
    }

    fn tell_drive_done(&mut self, id: i64) {
        let label = self
            .drives
            .view(id)
            .map(|d| d.label.clone())
            .unwrap_or_default();
        let mine = self
            .ctx
            .store
            .lock()
            .unwrap()
            .jobs_of_drive(id)
            .unwrap_or_default();
        let (done, failed) = mine.iter().fold((0, 0), |(ok, bad), j| match j.state {
            JobState::Done => (ok + 1, bad),
            JobState::Failed => (ok, bad + 1),
            _ => (ok, bad),
        });
        let message = format!(
            "{label}: {done} FLAC written{} - ready to eject",
            if failed > 0 {
                format!(", {failed} failed")
            } else {
                String::new()
            }
        );
        log(&message);
        crate::notify::send(
            &self.ctx.config.notify,
            "drive_done",
            message,
            serde_json::json!({"drive": label, "done": done, "failed": failed}),
        );
    }

    // ----- work -----

    fn run_effects(&mut self, effects: Vec<Effect>) {
        #[cfg(test)]
        if let Some(recorded) = &mut self.recorded {
            recorded.extend(effects);
            return;
        }
        for effect in effects {
            match effect {
                Effect::Probe { devname, gen } => self.work("probe", move |ctx| {
                    let volumes = work::probe(ctx, &devname);
                    Some(Msg::Probed {
                        devname,
                        gen,
                        volumes,
                    })
                }),
                Effect::Mount { drive, gen, volume } => self.work("mount", move |ctx| {
                    let result = work::mount(ctx, &volume);
                    Some(Msg::Mounted { drive, gen, result })
                }),
                Effect::Scan {
                    drive,
                    gen,
                    root,
                    cancel,
                    progress,
                } => self.work("scan", move |ctx| {
                    let scanned = work::scan_drive(ctx, &root, cancel, progress);
                    Some(Msg::Scanned {
                        drive,
                        gen,
                        scanned,
                    })
                }),
                Effect::Space { drive, gen, root } => self.work("space", move |_| {
                    let space = crate::hw::fs::space(&root);
                    Some(Msg::Measured { drive, gen, space })
                }),
                Effect::Offer { drive } => self.ctx.scheduler.set_drive_available(drive, true),
                Effect::Hold { drive } => self.ctx.scheduler.set_drive_available(drive, false),
                Effect::Release {
                    drive,
                    mount,
                    own_loop,
                    ..
                } => self.work("release", move |ctx| {
                    work::release(ctx, drive, mount.as_ref(), own_loop.as_deref());
                    Some(Msg::Released { drive })
                }),
                Effect::Unmount { drive, gen, mount } => self.work("unmount", move |ctx| {
                    let result = work::unmount(ctx, drive, mount.as_ref());
                    Some(Msg::Unmounted { drive, gen, result })
                }),
                Effect::DetachLoop { device } => self.work("detach", move |ctx| {
                    ctx.own_loops.release(&device);
                    None
                }),
            }
        }
    }

    /// Runs slow work on a thread of its own; its result comes back as a message.
    fn work(&mut self, what: &str, f: impl FnOnce(&WorkContext) -> Option<Msg> + Send + 'static) {
        self.workers.retain(|w| !w.is_finished());
        let (ctx, outbox) = (self.ctx.clone(), self.outbox.clone());
        let spawned = self.lifeline.spawn(&format!("drive-{what}"), move || {
            if let Some(msg) = f(&ctx) {
                let _ = outbox.send(msg);
            }
        });
        match spawned {
            Ok(handle) => self.workers.push(handle),
            Err(e) => log(&format!("cannot start a thread to {what} a drive: {e}")),
        }
    }

    // ----- the snapshot -----

    fn tick(&mut self) {
        if self.stopping.is_none() && self.ctx.scheduler.lost_a_worker() {
            self.lifeline.crashed("scheduler worker");
        }
        if self.lifeline.stopping() && self.stopping.is_none() {
            self.begin_shutdown();
        }
        if self.board_read.elapsed() >= BOARD_EVERY {
            self.board_read = Instant::now();
            self.box_info = board_readings(&self.board_model, &self.ctx);
            self.dirty = true;
        }
        self.check_state_dir();
        if self.drives.refresh_scan_progress() {
            self.dirty = true;
        }
        if self.space_read.elapsed() >= SPACE_EVERY {
            self.space_read = Instant::now();
            let ids: Vec<i64> = self.drives.views().map(|d| d.id).collect();
            for id in ids {
                let effects = self.drives.measure(id);
                self.run_effects(effects.into_iter().collect());
            }
        }
    }

    /// Every tick: whether the store holds job changes (a transition may
    /// have written them meanwhile); every `STATE_DIR_EVERY`: writes them
    /// again and looks at the free space.
    fn check_state_dir(&mut self) {
        let due = self.state_dir_checked.elapsed() >= STATE_DIR_EVERY;
        let held = {
            let mut store = self.ctx.store.lock().unwrap();
            if due {
                store.write_held();
            }
            store.state_dir_problem()
        };
        if due {
            self.state_dir_checked = Instant::now();
            let dir = &self.ctx.config.state_dir;
            self.state_dir_low = crate::hw::fs::free_bytes(dir)
                .is_some_and(|free| free < STATE_DIR_LOW_BYTES)
                .then(|| StateDirFault::Full.problem(dir));
        }
        let writable = held.is_none();
        let problem = held.or_else(|| self.state_dir_low.clone());
        if problem != self.state_dir_problem {
            log(problem
                .as_deref()
                .unwrap_or("the state directory takes job changes again"));
            self.state_dir_problem = problem;
            self.dirty = true;
        }
        if writable && self.state_dir_problem.is_none() {
            let effects = self.drives.recorded_again();
            self.run_effects(effects);
        }
        if writable && !self.unadded.is_empty() {
            for (drive, scanned) in std::mem::take(&mut self.unadded) {
                let mounted = self
                    .drives
                    .view(drive)
                    .is_some_and(|d| d.mount_point.is_some());
                if mounted {
                    self.add_jobs(drive, &scanned);
                    self.ctx.scheduler.set_drive_available(drive, true);
                    self.refresh_drive_states();
                }
            }
        }
    }

    fn publish_if_changed(&mut self) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        self.jobs();
        let jobs: Vec<JobView> = self
            .jobs
            .iter()
            .map(|j| JobView::of(j, self.running.get(&j.id).copied()))
            .collect();
        let mut snapshot = Snapshot::new(
            self.ctx.scheduler.is_paused(),
            self.drives.views().cloned().collect(),
            jobs,
            self.summary.clone(),
            self.slots,
            self.box_info.clone(),
        );
        snapshot.state_dir_problem = self.state_dir_problem.clone();
        if self.publish.borrow().snapshot != snapshot {
            self.publish
                .send_replace(Arc::new(Published::new(snapshot)));
        }
    }

    // ----- shutdown -----

    fn begin_shutdown(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        self.stopping = Some(Instant::now() + SHUTDOWN_LIMIT);
        self.lifeline.stop();
        // Running jobs are interrupted (their temp files removed) and no
        // new one starts; the drives' work is cut short, then they unmount.
        self.ctx.scheduler.stop();
        let effects = self.drives.shutdown();
        self.run_effects(effects);
    }

    /// Whatever is still mounted (work that never ended) is detached, and
    /// the workers that ended are joined.
    fn finish(&mut self) {
        for m in self.drives.mounts() {
            log(&format!(
                "{} did not unmount in time; detaching it",
                m.mount_point.display()
            ));
            mount::detach(&m.mount_point);
        }
        let (ended, blocked): (Vec<_>, Vec<_>) =
            self.workers.drain(..).partition(|w| w.is_finished());
        for w in ended {
            let _ = w.join();
        }
        if !blocked.is_empty() {
            log(&format!(
                "{} drive worker(s) are stuck in a file-system call; leaving them",
                blocked.len()
            ));
        }
    }
}

fn board_readings(model: &str, ctx: &WorkContext) -> BoxInfo {
    BoxInfo {
        board: model.to_string(),
        cpu_temp_c: crate::hw::board::cpu_temperature(),
        throttled: crate::hw::board::throttled(),
        load: crate::hw::board::load_average(),
        uptime_seconds: crate::hw::board::uptime_seconds(),
        ..BoxInfo::unknown(ctx.tools.short_version())
    }
}

#[cfg(test)]
mod tests {
    //! The supervisor driven through its messages, without root: effects
    //! are recorded instead of run, so each worker's result is a message
    //! the test sends. The store is a real SQLite file.
    use super::*;
    use crate::config::Config;
    use crate::daemon::drives::tests::{mounted_at, volume};
    use crate::media::convert::test_track;
    use crate::media::tools::Tools;
    use crate::queue::plan::PlannedJob;
    use crate::queue::scheduler::{Scheduler, SchedulerConfig};
    use crate::queue::store::Store;
    use crate::view::DriveView;

    const ROOT: &str = "/media/dtsflac/FILMS-1234-ABCD";

    struct Box_ {
        sup: Supervisor,
        _dir: tempfile::TempDir,
    }

    fn start() -> Box_ {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("jobs.db")).unwrap();
        // What the probe worker records when the drive is read.
        assert_eq!(
            store.upsert_drive("1234-ABCD", "FILMS", "exfat").unwrap(),
            1
        );
        let store = Arc::new(std::sync::Mutex::new(store));
        let tools = Tools {
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            ffmpeg_version: "ffmpeg version test".into(),
            flac: "flac".into(),
            flac_version: "flac test".into(),
            checker: None,
        };
        let scheduler = Arc::new(Scheduler::start(
            store.clone(),
            tools.clone(),
            SchedulerConfig {
                workers: 1,
                ..SchedulerConfig::default()
            },
            |_| {},
        ));
        // No drive is offered to it, so no job ever runs here.
        scheduler.set_drive_available(-1, false);
        let ctx = Arc::new(WorkContext {
            config: Config::default(),
            tools: tools.clone(),
            store,
            scheduler,
            own_loops: Default::default(),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let mut sup = Supervisor::new(ctx, rx, tx, 1, Lifeline::new());
        sup.recorded = Some(Vec::new());
        Box_ { sup, _dir: dir }
    }

    impl Box_ {
        fn send(&mut self, msg: Msg) -> Vec<Effect> {
            self.sup.handle(msg);
            self.sup.publish_if_changed();
            std::mem::take(self.sup.recorded.as_mut().unwrap())
        }

        /// What the page and the panel see now.
        fn seen(&self) -> Snapshot {
            self.sup.publish.borrow().snapshot.clone()
        }

        fn drive(&self) -> DriveView {
            self.seen().drives[0].clone()
        }

        fn command(&mut self, command: Command) -> Result<(), CommandError> {
            let (tx, mut rx) = oneshot::channel();
            self.send(Msg::Command(command, tx));
            rx.try_recv().expect("answered at once")
        }

        /// A USB stick with a file system arrives and is read.
        fn plug(&mut self) -> u64 {
            let Some(Effect::Probe { gen, .. }) = self.sup.drives.appeared("sdz1") else {
                panic!("the device is read")
            };
            let volume = volume(1, "sdz1");
            let effects = self.send(Msg::Probed {
                devname: "sdz1".into(),
                gen,
                volumes: Ok(vec![volume]),
            });
            match effects.as_slice() {
                [Effect::Mount { gen, .. }] => *gen,
                [] => 0,
                other => panic!("expected a mount, got {other:?}"),
            }
        }

        fn mounted(&mut self, gen: u64) -> u64 {
            let effects = self.send(Msg::Mounted {
                drive: 1,
                gen,
                result: Ok(mounted_at(ROOT)),
            });
            effects
                .iter()
                .find_map(|e| match e {
                    Effect::Scan { gen, .. } => Some(*gen),
                    _ => None,
                })
                .expect("a scan starts")
        }

        fn scanned(&mut self, gen: u64, names: &[&str]) -> Vec<Effect> {
            let planned = names
                .iter()
                .map(|n| PlannedJob {
                    track: test_track(&format!("{ROOT}/{n}"), "5.1", 6),
                    output: format!("{ROOT}/{n}.flac").into(),
                    source: (1000, 1),
                    existing: crate::media::convert::Existing::Nothing,
                })
                .collect();
            self.send(Msg::Scanned {
                drive: 1,
                gen,
                scanned: Scanned {
                    tracks_found: names.len(),
                    planned,
                    complete: true,
                },
            })
        }

        fn pull(&mut self) -> Vec<Effect> {
            self.send(Msg::Block(BlockEvent {
                action: Action::Remove,
                devname: "sdz1".into(),
                devtype: "partition".into(),
                devpath: String::new(),
                media_change: false,
            }))
        }
    }

    #[test]
    fn arrive_mount_scan_and_the_jobs_are_shown() {
        let mut b = start();
        let gen = b.plug();
        assert_eq!(b.drive().state, DriveState::Mounting);
        let gen = b.mounted(gen);
        assert_eq!(b.drive().state, DriveState::Scanning);
        assert!(b.drive().can_eject, "a scanning drive can be ejected");
        let effects = b.scanned(gen, &["Film.dts", "Concert.dts"]);
        assert!(matches!(effects.as_slice(), [Effect::Offer { drive: 1 }]));
        let seen = b.seen();
        assert_eq!(seen.drives[0].state, DriveState::Converting);
        assert_eq!(seen.drives[0].tracks_found, 2);
        let names: Vec<&str> = seen.jobs.iter().map(|j| j.name.as_str()).collect();
        assert_eq!(names, ["Film.dts", "Concert.dts"]);
        assert!(seen
            .jobs
            .iter()
            .all(|j| j.state == JobState::Queued && j.can_cancel));
        assert_eq!(seen.totals.total, 2);
    }

    #[test]
    fn pulled_during_scan_the_late_scan_adds_nothing_and_a_replug_converts_all() {
        let mut b = start();
        let gen = b.plug();
        let scan = b.mounted(gen);
        let effects = b.pull();
        assert!(matches!(effects.as_slice(), [Effect::Hold { drive: 1 }]));
        assert_eq!(b.drive().state, DriveState::Removed);
        let effects = b.scanned(scan, &["Film.dts"]);
        assert!(
            matches!(effects.as_slice(), [Effect::Release { .. }]),
            "{effects:?}"
        );
        let seen = b.seen();
        assert_eq!(seen.drives[0].state, DriveState::Removed, "the pull stands");
        assert!(seen.jobs.is_empty(), "a stale scan adds no job");
        b.send(Msg::Released { drive: 1 });
        // Plugged back: a fresh visit, and this time the scan counts.
        let gen = b.plug();
        let scan = b.mounted(gen);
        b.scanned(scan, &["Film.dts"]);
        let seen = b.seen();
        assert_eq!(seen.drives[0].state, DriveState::Converting);
        assert_eq!(seen.jobs.len(), 1);
    }

    #[test]
    fn pulled_during_mount_the_late_mount_is_released() {
        let mut b = start();
        let gen = b.plug();
        b.pull();
        let effects = b.send(Msg::Mounted {
            drive: 1,
            gen,
            result: Ok(mounted_at(ROOT)),
        });
        assert!(matches!(
            effects.as_slice(),
            [Effect::Release { mount: Some(_), .. }]
        ));
        assert_eq!(b.drive().state, DriveState::Removed);
        assert_eq!(b.drive().mount_point, None);
    }

    #[test]
    fn eject_during_scan_stops_it_and_unmounts_after_it() {
        let mut b = start();
        let gen = b.plug();
        let scan = b.mounted(gen);
        b.command(Command::Eject(1))
            .expect("ejectable while scanning");
        assert_eq!(b.drive().state, DriveState::Ejecting);
        assert!(!b.drive().can_eject);
        let effects = b.scanned(scan, &["Film.dts"]);
        let gen = match effects.as_slice() {
            [Effect::Unmount { gen, .. }] => *gen,
            other => panic!("expected the unmount, got {other:?}"),
        };
        assert!(b.seen().jobs.is_empty());
        b.send(Msg::Unmounted {
            drive: 1,
            gen,
            result: Ok(()),
        });
        assert_eq!(b.drive().state, DriveState::Ejected);
        assert!(matches!(
            b.command(Command::Eject(1)),
            Err(CommandError::NotEjectable(1, DriveState::Ejected))
        ));
        assert!(matches!(
            b.command(Command::Eject(9)),
            Err(CommandError::NoSuchDrive(9))
        ));
    }

    #[test]
    fn commands_on_jobs_answer_with_the_store_s_verdict() {
        let mut b = start();
        let gen = b.plug();
        let scan = b.mounted(gen);
        b.scanned(scan, &["Film.dts"]);
        let id = b.seen().jobs[0].id;
        assert!(matches!(
            b.command(Command::Retry(id)),
            Err(CommandError::Store(
                crate::queue::store::StoreError::BadTransition { .. }
            ))
        ));
        b.command(Command::Cancel(id)).unwrap();
        let job = b.seen().jobs[0].clone();
        assert_eq!(job.state, JobState::Cancelled);
        assert!(job.can_retry && !job.can_cancel);
        b.command(Command::Retry(id)).unwrap();
        assert_eq!(b.seen().jobs[0].state, JobState::Queued);
        b.command(Command::Pause).unwrap();
        assert!(b.seen().paused);
        b.send(Msg::Shutdown);
        assert!(matches!(
            b.command(Command::Resume),
            Err(CommandError::ShuttingDown)
        ));
    }
}
