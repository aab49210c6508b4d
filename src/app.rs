//! The supervisor of the box: it owns the drives and their states, turns
//! kernel events into mounts, scans and jobs, applies commands from the web
//! API (and later the panel), and publishes a snapshot of everything.
//!
//! Slow work (mounting, scanning, unmounting) runs on a thread per drive so
//! one slow stick never holds up another; conversions run on the scheduler's
//! worker slots.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::config::Config;
use crate::media::convert::{
    existing_output, plan_outputs, remove_stale_temp_files, ConvertOptions, Existing,
    SourceIdentity,
};
use crate::media::scan::{scan, ScanLimits};
use crate::media::tools::Tools;
use crate::queue::scheduler::{Event, Scheduler, SchedulerConfig};
use crate::queue::store::{JobId, JobState, Store, StoreError, DEFAULT_PRIORITY};
use crate::usb::drives::{self, Candidate};
use crate::usb::mount::{self, Mounted};
use crate::usb::partitions;
use crate::usb::superblock::FsInfo;
use crate::usb::uevent::{Action, BlockEvent, UeventSocket};

/// Drive states; the names are part of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriveState {
    Mounting,
    Scanning,
    Converting,
    Idle,
    Ejecting,
    Ejected,
    Removed,
    Error,
}

impl DriveState {
    /// States in which a mounted drive can be ejected (by the page, the
    /// panel or the API alike).
    pub fn can_eject(self) -> bool {
        matches!(
            self,
            DriveState::Scanning | DriveState::Converting | DriveState::Idle | DriveState::Error
        )
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DriveView {
    pub id: i64,
    pub device: String,
    pub label: String,
    pub fs: String,
    pub uuid: String,
    pub state: DriveState,
    pub mount_point: Option<PathBuf>,
    pub error: Option<String>,
    /// DTS tracks found by the last scan.
    pub tracks_found: usize,
    /// Space on the mounted drive (read when the snapshot is taken).
    pub free_bytes: Option<u64>,
    pub total_bytes: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub id: JobId,
    pub drive_id: Option<i64>,
    pub source: PathBuf,
    /// The source's file name, for display.
    pub name: String,
    pub output: PathBuf,
    pub state: JobState,
    pub progress: f64,
    pub error: Option<String>,
    /// Speed of a running job, × realtime.
    pub speed: Option<f64>,
    pub eta_seconds: Option<f64>,
    pub duration_seconds: Option<f64>,
    pub profile: String,
    /// e.g. "DTS-HD MA 7.1 24-bit 48 kHz".
    pub description: String,
    /// Results of a finished job.
    pub input_bytes: Option<u64>,
    pub output_bytes: Option<u64>,
    pub elapsed_seconds: Option<f64>,
    pub md5: Option<String>,
    pub lossless: Option<bool>,
    pub finished_at: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Totals {
    pub done: usize,
    pub total: usize,
    /// Share of the audio (by duration) converted, over unfinished and done jobs.
    pub progress: f64,
    pub eta_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BoxInfo {
    pub version: &'static str,
    pub board: String,
    pub cpu_temp_c: Option<f64>,
    pub throttled: Option<bool>,
    pub load: [f64; 3],
    pub ffmpeg: String,
    pub uptime_seconds: f64,
}

/// Everything the panel and the page show, at one moment.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    pub paused: bool,
    pub drives: Vec<DriveView>,
    pub jobs: Vec<JobView>,
    pub totals: Totals,
    #[serde(rename = "box")]
    pub box_info: BoxInfo,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("no drive {0}")]
    NoSuchDrive(i64),
    #[error("drive {0} is {1:?} and cannot be ejected now")]
    NotEjectable(i64, DriveState),
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct Drive {
    view: DriveView,
    /// Kernel name of the device (`sda1`), to match remove events.
    devname: String,
    mount: Option<Mounted>,
    /// Our loop device over a partition the kernel did not split.
    own_loop: Option<PathBuf>,
}

#[derive(Default)]
struct Live {
    drives: BTreeMap<i64, Drive>,
    /// In-memory progress of running jobs (never written to the card).
    progress: HashMap<JobId, (f64, f64)>,
    /// Devices being handled right now, so a burst of events mounts once.
    busy_devices: HashSet<String>,
}

pub struct App {
    config: Config,
    store: Arc<Mutex<Store>>,
    scheduler: Scheduler,
    live: Mutex<Live>,
    /// Bumped on every visible change; the panel and page wait on it.
    changes: tokio::sync::watch::Sender<u64>,
    pub token: String,
    pub tools: Tools,
    board_model: String,
    scheduler_workers: usize,
    /// The front panel, once started (its frame and its buttons).
    pub panel: std::sync::OnceLock<crate::panel::PanelHandle>,
    /// Loop devices we made over partitions: not drives of their own.
    own_loops: Mutex<HashSet<String>>,
    /// This app itself, for work that outlives a call (drive threads).
    me: std::sync::Weak<App>,
}

impl App {
    /// Opens the store, recovers from a crash or power cut, and starts the
    /// workers. Drives are picked up by `run_hotplug`.
    pub fn start(config: Config, tools: Tools, token: String) -> Result<Arc<App>, String> {
        std::fs::create_dir_all(&config.state_dir).map_err(|e| {
            format!(
                "cannot create the state folder {} (`state_dir`): {e}",
                config.state_dir.display()
            )
        })?;
        std::fs::create_dir_all(&config.usb.mount_root).map_err(|e| {
            format!(
                "cannot create the mount folder {} (`usb.mount_root`): {e}",
                config.usb.mount_root.display()
            )
        })?;
        let mut store =
            Store::open(&config.state_dir.join("jobs.db")).map_err(|e| e.to_string())?;
        let recovered = store.recover_after_crash().map_err(|e| e.to_string())?;
        if !recovered.is_empty() {
            log(&format!(
                "{} job(s) were cut short by a restart; they run again when their drive is mounted",
                recovered.len()
            ));
        }
        let store = Arc::new(Mutex::new(store));
        let board = crate::hw::board::detect();
        let plan = crate::hw::tuning::plan(&board, &config.convert.overrides());
        for reason in &plan.reasons {
            log(&format!("plan: {reason}"));
        }
        let workers = plan.workers;
        let scheduler_config = SchedulerConfig {
            workers,
            max_attempts: config.convert.max_attempts,
            allowed_jobs: Some(Arc::new(crate::hw::tuning::jobs_allowed_now)),
            cores: plan.cores,
            convert: ConvertOptions {
                compression_level: config.convert.compression_level,
                nice: plan.nice,
                cpus: plan.cpus.clone(),
                decode_lanes: plan.decode_lanes,
            },
        };
        let (changes, _) = tokio::sync::watch::channel(0u64);
        let app = Arc::new_cyclic(|me: &std::sync::Weak<App>| {
            let weak = me.clone();
            let scheduler = Scheduler::start(store.clone(), tools.clone(), scheduler_config, {
                move |event| {
                    if let Some(app) = weak.upgrade() {
                        app.on_job_event(event);
                    }
                }
            });
            App {
                config,
                store,
                scheduler,
                live: Mutex::new(Live::default()),
                changes,
                token,
                tools,
                me: me.clone(),
                own_loops: Mutex::new(HashSet::new()),
                panel: std::sync::OnceLock::new(),
                board_model: crate::hw::board::model(),
                scheduler_workers: workers,
            }
        });
        // No drive is plugged in yet as far as the scheduler knows.
        app.scheduler.set_drive_available(-1, false);
        Ok(app)
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|v| *v += 1);
    }

    pub fn snapshot(&self) -> Snapshot {
        let live = self.live.lock().unwrap();
        let jobs = self.store.lock().unwrap().jobs().unwrap_or_default();
        let jobs: Vec<JobView> = jobs
            .into_iter()
            .map(|j| {
                let (progress, speed) = match j.state {
                    JobState::Done => (1.0, None),
                    JobState::Running | JobState::Paused => live
                        .progress
                        .get(&j.id)
                        .map_or((0.0, None), |(p, s)| (*p, Some(*s))),
                    _ => (0.0, None),
                };
                let duration = j.track.duration_seconds;
                let eta_seconds = match (speed, duration) {
                    (Some(s), Some(d)) if s > 0.0 && j.state == JobState::Running => {
                        Some(d * (1.0 - progress) / s)
                    }
                    _ => None,
                };
                let result = j.result.as_ref();
                JobView {
                    id: j.id,
                    drive_id: j.drive_id,
                    name: j
                        .track
                        .path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    source: j.track.path.clone(),
                    output: j.output.clone(),
                    state: j.state,
                    progress,
                    error: j.error.clone(),
                    speed,
                    eta_seconds,
                    duration_seconds: result.map(|r| r.duration_seconds).or(duration),
                    profile: j.track.profile.to_string(),
                    description: j.track.describe(),
                    input_bytes: result.map(|r| r.input_bytes),
                    output_bytes: result.map(|r| r.output_bytes),
                    elapsed_seconds: result.map(|r| r.elapsed_seconds),
                    md5: result.map(|r| r.md5.clone()),
                    lossless: result.map(|r| r.lossless),
                    finished_at: j.finished_at,
                }
            })
            .collect();
        let drives = live
            .drives
            .values()
            .map(|d| {
                let mut v = d.view.clone();
                if let Some(m) = &d.mount {
                    if let Some((free, total)) = crate::hw::fs::space(&m.mount_point) {
                        v.free_bytes = Some(free);
                        v.total_bytes = Some(total);
                    }
                }
                v
            })
            .collect();
        drop(live);
        Snapshot {
            paused: self.scheduler.is_paused(),
            totals: totals(&jobs, self.scheduler_workers),
            drives,
            jobs,
            box_info: BoxInfo {
                version: env!("CARGO_PKG_VERSION"),
                board: self.board_model.clone(),
                cpu_temp_c: crate::hw::board::cpu_temperature(),
                throttled: crate::hw::board::throttled(),
                load: crate::hw::board::load_average(),
                ffmpeg: self.tools.short_version().to_string(),
                uptime_seconds: crate::hw::board::uptime_seconds(),
            },
        }
    }

    /// Why the box cannot work right now, if it cannot.
    pub fn health_problem(&self) -> Option<String> {
        if let Err(e) = self.store.lock().unwrap().count_in_state(JobState::Queued) {
            return Some(format!("job store unusable: {e}"));
        }
        for tool in [&self.tools.ffmpeg, &self.tools.ffprobe, &self.tools.flac] {
            // A bare name is looked up on PATH, as when it is run.
            let ok = crate::media::tools::resolve(tool).is_some();
            if !ok {
                return Some(format!(
                    "{} is missing: {}",
                    tool.display(),
                    crate::media::tools::INSTALL_HINT
                ));
            }
        }
        None
    }

    // ----- commands (the web API and the panel buttons call these) -----

    pub fn pause(&self) -> Result<(), CommandError> {
        self.scheduler.pause()?;
        self.changed();
        Ok(())
    }

    pub fn resume(&self) -> Result<(), CommandError> {
        self.scheduler.resume()?;
        self.changed();
        Ok(())
    }

    pub fn cancel_job(&self, id: JobId) -> Result<(), CommandError> {
        self.store.lock().unwrap().job(id)?;
        self.scheduler.cancel(id)?;
        self.changed();
        Ok(())
    }

    pub fn retry_job(&self, id: JobId) -> Result<(), CommandError> {
        self.scheduler.retry(id)?;
        self.refresh_drive_states();
        self.changed();
        Ok(())
    }

    /// Starts ejecting a drive: its work stops, the file system is synced
    /// and unmounted, and the drive becomes `ejected`. Returns at once.
    pub fn eject(self: &Arc<Self>, id: i64) -> Result<(), CommandError> {
        {
            let mut live = self.live.lock().unwrap();
            let drive = live
                .drives
                .get_mut(&id)
                .ok_or(CommandError::NoSuchDrive(id))?;
            match drive.view.state {
                s if s.can_eject() && drive.mount.is_some() => {}
                DriveState::Ejecting => return Ok(()),
                other => return Err(CommandError::NotEjectable(id, other)),
            }
            drive.view.state = DriveState::Ejecting;
        }
        self.changed();
        let app = self.clone();
        std::thread::spawn(move || app.finish_eject(id));
        Ok(())
    }

    fn finish_eject(&self, id: i64) {
        self.scheduler.set_drive_available(id, false);
        self.stop_jobs_of_drive(id);
        let mount = self
            .live
            .lock()
            .unwrap()
            .drives
            .get(&id)
            .and_then(|d| d.mount.clone());
        let result = match &mount {
            Some(m) => mount::unmount(m),
            None => Ok(()),
        };
        let mut live = self.live.lock().unwrap();
        if let Some(d) = live.drives.get_mut(&id) {
            match result {
                Ok(()) => {
                    d.view.state = DriveState::Ejected;
                    d.view.mount_point = None;
                    d.mount = None;
                    if let Some(l) = d.own_loop.take() {
                        partitions::detach(&l);
                    }
                    log(&format!("drive {} ejected: safe to remove", d.view.label));
                }
                Err(e) => {
                    d.view.state = DriveState::Error;
                    d.view.error = Some(format!("{e}; close anything using it and eject again"));
                }
            }
        }
        drop(live);
        self.changed();
    }

    /// Interrupts the drive's running jobs and waits until they have stopped
    /// (their temporary files are removed as they stop).
    fn stop_jobs_of_drive(&self, id: i64) {
        let running: Vec<JobId> = self
            .store
            .lock()
            .unwrap()
            .jobs_of_drive(id)
            .unwrap_or_default()
            .into_iter()
            .filter(|j| matches!(j.state, JobState::Running | JobState::Paused))
            .map(|j| j.id)
            .collect();
        for job in &running {
            self.scheduler.interrupt(*job);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let still: Vec<JobId> = self.scheduler.running_jobs();
            if !running.iter().any(|j| still.contains(j)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // ----- hotplug -----

    /// Listens to the kernel's uevents and handles drives as they come and
    /// go; drives already plugged in at start are picked up first.
    pub fn run_hotplug(self: &Arc<Self>) -> Result<(), String> {
        let socket = UeventSocket::open().map_err(|e| {
            format!("cannot listen to the kernel's device events (netlink): {e}; dtsflac must run as root")
        })?;
        for candidate in self.present_candidates() {
            self.clone().arrive(candidate);
        }
        let app = self.clone();
        std::thread::Builder::new()
            .name("uevents".into())
            .spawn(move || loop {
                match socket.next(Duration::from_secs(1)) {
                    Ok(Some(event)) => app.on_block_event(event),
                    Ok(None) => {}
                    Err(e) => {
                        // Events were dropped (ENOBUFS): look at what is there now.
                        log(&format!("device events lost ({e}); rescanning devices"));
                        app.reconcile();
                    }
                }
            })
            .map_err(|e| e.to_string())?;
        Ok(())
    }

    fn on_block_event(self: &Arc<Self>, event: BlockEvent) {
        if self.own_loops.lock().unwrap().contains(&event.devname) {
            return;
        }
        let known = self.drives_on_device(&event.devname);
        let gone = event.action == Action::Remove || !drives::has_media(&event.devname);
        if gone {
            for id in known {
                self.clone().removed(id);
            }
        } else if known.is_empty() {
            // Add, or a change that brought a medium (card readers, loop
            // devices attached).
            if let Some(c) = drives::candidate(
                &event.devname,
                self.config.usb.allow_loop,
                &self.config.usb.mount_root,
            ) {
                self.clone().arrive(c);
            }
        }
    }

    /// After lost events: drives whose device vanished are removed, new ones added.
    fn reconcile(self: &Arc<Self>) {
        let present = self.present_candidates();
        let names: HashSet<String> = present.iter().map(|c| c.devname.clone()).collect();
        let known: Vec<(i64, String)> = {
            let live = self.live.lock().unwrap();
            live.drives
                .values()
                .filter(|d| d.mount.is_some())
                .map(|d| (d.view.id, d.devname.clone()))
                .collect()
        };
        for (id, devname) in known {
            if !names.contains(&devname) {
                self.clone().removed(id);
            }
        }
        for c in present {
            if self.drives_on_device(&c.devname).is_empty() {
                self.clone().arrive(c);
            }
        }
    }

    fn present_candidates(&self) -> Vec<Candidate> {
        let own = self.own_loops.lock().unwrap().clone();
        drives::present(self.config.usb.allow_loop, &self.config.usb.mount_root)
            .into_iter()
            .filter(|c| !own.contains(&c.devname))
            .collect()
    }

    /// The drives currently on this device (mounted or being mounted); a
    /// disk whose partitions we reach ourselves can carry several.
    fn drives_on_device(&self, devname: &str) -> Vec<i64> {
        let live = self.live.lock().unwrap();
        live.drives
            .values()
            .filter(|d| {
                d.devname == devname
                    && !matches!(d.view.state, DriveState::Removed | DriveState::Ejected)
            })
            .map(|d| d.view.id)
            .collect()
    }

    fn arrive(self: Arc<Self>, candidate: Candidate) {
        {
            let mut live = self.live.lock().unwrap();
            if !live.busy_devices.insert(candidate.devname.clone()) {
                return;
            }
        }
        std::thread::spawn(move || {
            let devname = candidate.devname.clone();
            self.mount_and_scan(candidate);
            self.live.lock().unwrap().busy_devices.remove(&devname);
        });
    }

    fn set_drive(&self, id: i64, f: impl FnOnce(&mut Drive)) {
        if let Some(d) = self.live.lock().unwrap().drives.get_mut(&id) {
            f(d);
        }
        self.changed();
    }

    fn mount_and_scan(&self, candidate: Candidate) {
        let dev = PathBuf::from("/dev").join(&candidate.devname);
        if !drives::wait_for_node(&dev, Duration::from_secs(10)) {
            log(&format!(
                "{}: the device node never appeared",
                dev.display()
            ));
            return;
        }
        match crate::usb::superblock::identify(&dev) {
            Ok(Some(info)) => self.mount_volume(&candidate, &dev, info, None),
            Ok(None) => self.mount_partitions_ourselves(&candidate, &dev),
            Err(e) => log(&format!("{}: cannot read it: {e}", dev.display())),
        }
    }

    /// A whole disk with a partition table the kernel did not split (it
    /// lacks MBR/GPT support): reach each partition through a loop device.
    fn mount_partitions_ourselves(&self, candidate: &Candidate, disk: &Path) {
        let table = match partitions::read_table(disk) {
            Ok(t) => t,
            Err(e) => {
                log(&format!("{}: cannot read it: {e}", disk.display()));
                return;
            }
        };
        for part in table {
            let loop_dev = match partitions::attach(disk, &part) {
                Ok(l) => l,
                Err(e) => {
                    log(&format!(
                        "{} partition {}: {e}",
                        disk.display(),
                        part.number
                    ));
                    continue;
                }
            };
            if let Some(name) = loop_dev.file_name() {
                self.own_loops
                    .lock()
                    .unwrap()
                    .insert(name.to_string_lossy().into_owned());
            }
            match crate::usb::superblock::identify(&loop_dev) {
                Ok(Some(info)) => {
                    log(&format!(
                        "{} partition {} is reached through {}",
                        disk.display(),
                        part.number,
                        loop_dev.display()
                    ));
                    self.mount_volume(candidate, &loop_dev, info, Some(loop_dev.clone()));
                }
                _ => self.release_loop(&loop_dev),
            }
        }
    }

    /// Detaches the loop device we made for this drive's partition, if any.
    fn release_own_loop_of(&self, id: i64) {
        let own_loop = self
            .live
            .lock()
            .unwrap()
            .drives
            .get_mut(&id)
            .and_then(|d| d.own_loop.take());
        if let Some(l) = own_loop {
            self.release_loop(&l);
        }
    }

    fn release_loop(&self, loop_dev: &Path) {
        partitions::detach(loop_dev);
        if let Some(name) = loop_dev.file_name() {
            self.own_loops
                .lock()
                .unwrap()
                .remove(&*name.to_string_lossy());
        }
    }

    fn mount_volume(
        &self,
        candidate: &Candidate,
        dev: &Path,
        info: FsInfo,
        own_loop: Option<PathBuf>,
    ) {
        let uuid = if info.uuid.is_empty() {
            format!("dev-{}", candidate.devname)
        } else {
            info.uuid.clone()
        };
        let id = match self
            .store
            .lock()
            .unwrap()
            .upsert_drive(&uuid, &info.label, info.fs.name())
        {
            Ok(id) => id,
            Err(e) => {
                log(&format!("job store: {e}"));
                return;
            }
        };
        {
            let mut live = self.live.lock().unwrap();
            if let Some(d) = live.drives.get(&id) {
                if !matches!(d.view.state, DriveState::Removed | DriveState::Ejected) {
                    // The same file system is already in use (or being mounted).
                    drop(live);
                    if let Some(l) = &own_loop {
                        self.release_loop(l);
                    }
                    return;
                }
            }
            live.drives.insert(
                id,
                Drive {
                    view: DriveView {
                        id,
                        device: dev.display().to_string(),
                        label: info.label.clone(),
                        fs: info.fs.name().to_string(),
                        uuid: uuid.clone(),
                        state: DriveState::Mounting,
                        mount_point: None,
                        error: None,
                        tracks_found: 0,
                        free_bytes: None,
                        total_bytes: None,
                    },
                    devname: candidate.devname.clone(),
                    mount: None,
                    own_loop: own_loop.clone(),
                },
            );
        }
        self.changed();
        log(&format!(
            "drive arrived: {} ({} \"{}\", UUID {uuid})",
            dev.display(),
            info.fs.name(),
            info.label
        ));

        let at = self
            .config
            .usb
            .mount_root
            .join(mount_dir_name(&info, &uuid));
        let mounted = match self.adopt_or_mount(dev, &info, &at) {
            Ok(m) => m,
            Err(e) => {
                log(&format!("{}: {e}", dev.display()));
                self.set_drive(id, |d| {
                    d.view.state = DriveState::Error;
                    d.view.error = Some(e);
                });
                return;
            }
        };
        log(&format!(
            "mounted {} at {} ({}{})",
            dev.display(),
            at.display(),
            mounted.driver.describe(),
            if mounted.read_only { ", read-only" } else { "" }
        ));
        self.set_drive(id, |d| {
            d.view.state = DriveState::Scanning;
            d.view.mount_point = Some(at.clone());
            d.mount = Some(mounted.clone());
        });

        let report = scan(
            &self.tools,
            std::slice::from_ref(&at),
            ScanLimits::default(),
        );
        for p in &report.problems {
            log(&format!("{}: {}", p.path.display(), p.reason));
        }
        let outputs = plan_outputs(&report.found, None);
        let mut folders: HashSet<PathBuf> = HashSet::new();
        for out in &outputs {
            if let Some(parent) = out.parent() {
                folders.insert(parent.to_path_buf());
            }
        }
        // Temp files of jobs cut short by a pull or a power cut.
        let removed: usize = folders.iter().map(|f| remove_stale_temp_files(f)).sum();
        if removed > 0 {
            log(&format!(
                "removed {removed} unfinished temporary file(s) from an earlier visit"
            ));
        }
        let mut added = 0;
        {
            let mut store = self.store.lock().unwrap();
            if let Err(e) = store.requeue_interrupted(id) {
                log(&format!("job store: {e}"));
            }
            for (found, output) in report.found.iter().zip(&outputs) {
                let track = &found.track;
                match store.find_job(id, &track.path, track.stream_index) {
                    Ok(Some(_)) => continue, // known from an earlier visit
                    Ok(None) => {}
                    Err(e) => {
                        log(&format!("job store: {e}"));
                        continue;
                    }
                }
                let up_to_date = SourceIdentity::of(track)
                    .map(|i| existing_output(&i, output) == Existing::UpToDate)
                    .unwrap_or(false);
                if up_to_date {
                    continue;
                }
                match store.add_job(track, output, Some(id), DEFAULT_PRIORITY) {
                    Ok(_) => added += 1,
                    Err(e) => log(&format!("job store: {e}")),
                }
            }
        }
        log(&format!(
            "{}: {} DTS track(s) found, {added} new job(s)",
            at.display(),
            report.found.len()
        ));
        self.set_drive(id, |d| {
            d.view.tracks_found = report.found.len();
            d.view.state = DriveState::Converting;
        });
        self.scheduler.set_drive_available(id, true);
        self.refresh_drive_states();
    }

    /// After a restart the drive may still be mounted where we left it.
    fn adopt_or_mount(&self, dev: &Path, info: &FsInfo, at: &Path) -> Result<Mounted, String> {
        if mount::is_mount_point(at) {
            let same_device = mount::mounted_at(dev).as_deref() == Some(at);
            let fuse = info.fs != crate::usb::superblock::FsType::Ext4
                && !same_device
                && mount::mounts().iter().any(|(_, m)| m == at);
            if same_device || fuse {
                log(&format!(
                    "{} is still mounted from before; using it",
                    at.display()
                ));
                let driver = if same_device && mount::mounted_at(dev).is_some() {
                    mount::Driver::Kernel("(earlier mount)")
                } else {
                    mount::Driver::Fuse("(earlier mount)")
                };
                return Ok(Mounted {
                    device: dev.to_path_buf(),
                    mount_point: at.to_path_buf(),
                    driver,
                    read_only: false,
                });
            }
            // Something else sits there (a dead mount): detach it first.
            mount::detach(at);
        }
        mount::mount(dev, info, at, &self.config.usb).map_err(|e| e.0)
    }

    /// The drive was pulled without eject: its jobs stop and wait for it,
    /// the dead mount is detached, and everything else carries on.
    fn removed(self: Arc<Self>, id: i64) {
        let was = {
            let mut live = self.live.lock().unwrap();
            let Some(d) = live.drives.get_mut(&id) else {
                return;
            };
            let was = d.view.state;
            if was == DriveState::Ejected {
                // Ejected and now pulled, as it should be: forget it.
                live.drives.remove(&id);
                drop(live);
                self.changed();
                return;
            }
            d.view.state = DriveState::Removed;
            was
        };
        self.changed();
        std::thread::spawn(move || {
            self.scheduler.set_drive_available(id, false);
            self.stop_jobs_of_drive(id);
            let mount = {
                let mut live = self.live.lock().unwrap();
                live.drives.get_mut(&id).and_then(|d| {
                    d.view.mount_point = None;
                    d.mount.take()
                })
            };
            if let Some(m) = mount {
                mount::detach(&m.mount_point);
            }
            self.release_own_loop_of(id);
            log(&format!(
                "drive {id} was pulled while {was:?}; its unfinished jobs wait for it"
            ));
            let waiting = self
                .store
                .lock()
                .unwrap()
                .jobs_of_drive(id)
                .map(|jobs| {
                    jobs.iter()
                        .filter(|j| matches!(j.state, JobState::Interrupted | JobState::Queued))
                        .count()
                })
                .unwrap_or(0);
            if waiting > 0 {
                let label = self
                    .live
                    .lock()
                    .unwrap()
                    .drives
                    .get(&id)
                    .map(|d| d.view.label.clone())
                    .unwrap_or_default();
                crate::notify::send(
                    &self.config.notify,
                    "drive_pulled",
                    format!("{label} was pulled mid-job: {waiting} job(s) resume when it is back"),
                    serde_json::json!({"drive": label, "waiting": waiting}),
                );
            }
            self.changed();
        });
    }

    // ----- job events -----

    fn on_job_event(&self, event: Event) {
        match event {
            Event::Progress { job, progress } => {
                let total = self
                    .store
                    .lock()
                    .unwrap()
                    .job(job)
                    .ok()
                    .and_then(|j| j.track.duration_seconds);
                let fraction = match total {
                    Some(t) if t > 0.0 => (progress.seconds_done / t).clamp(0.0, 1.0),
                    _ => 0.0,
                };
                self.live
                    .lock()
                    .unwrap()
                    .progress
                    .insert(job, (fraction, progress.speed));
                self.changed();
            }
            Event::Started { job } => {
                self.live.lock().unwrap().progress.insert(job, (0.0, 0.0));
                self.refresh_drive_states();
            }
            Event::Finished {
                job, state, error, ..
            } => {
                self.live.lock().unwrap().progress.remove(&job);
                if let Some(e) = error {
                    log(&format!("job {job} {state}: {e}"));
                    if state == JobState::Failed {
                        let name = self
                            .store
                            .lock()
                            .unwrap()
                            .job(job)
                            .map(|j| j.track.path.display().to_string())
                            .unwrap_or_default();
                        crate::notify::send(
                            &self.config.notify,
                            "job_failed",
                            format!("{name}: {e}"),
                            serde_json::json!({"job": job, "source": name, "error": e}),
                        );
                    }
                    self.check_drive_still_there(job);
                }
                self.refresh_drive_states();
            }
            Event::Retrying { job, error, .. } => {
                log(&format!("job {job} failed ({error}); trying again"));
                self.check_drive_still_there(job);
                self.changed();
            }
        }
    }

    /// A job failed: if its drive has vanished without a `remove` event
    /// (I/O errors from a yanked stick), handle it as pulled.
    fn check_drive_still_there(&self, job: JobId) {
        let Some(drive) = self
            .store
            .lock()
            .unwrap()
            .job(job)
            .ok()
            .and_then(|j| j.drive_id)
        else {
            return;
        };
        let devname = {
            let live = self.live.lock().unwrap();
            match live.drives.get(&drive) {
                Some(d) if d.mount.is_some() => d.devname.clone(),
                _ => return,
            }
        };
        if !drives::has_media(&devname) {
            if let Some(app) = self.me.upgrade() {
                app.removed(drive);
            }
        }
    }

    /// `converting` while a drive has work left, `idle` when all is done.
    fn refresh_drive_states(&self) {
        let jobs = self.store.lock().unwrap().jobs().unwrap_or_default();
        let mut live = self.live.lock().unwrap();
        for d in live.drives.values_mut() {
            if !matches!(d.view.state, DriveState::Converting | DriveState::Idle) {
                continue;
            }
            let pending = jobs.iter().any(|j| {
                j.drive_id == Some(d.view.id)
                    && matches!(
                        j.state,
                        JobState::Queued | JobState::Running | JobState::Paused
                    )
            });
            let next = if pending {
                DriveState::Converting
            } else {
                DriveState::Idle
            };
            if d.view.state == DriveState::Converting && next == DriveState::Idle {
                let mine = jobs.iter().filter(|j| j.drive_id == Some(d.view.id));
                let (done, failed) = mine.fold((0, 0), |(ok, bad), j| match j.state {
                    JobState::Done => (ok + 1, bad),
                    JobState::Failed => (ok, bad + 1),
                    _ => (ok, bad),
                });
                let message = format!(
                    "{}: {done} FLAC written{} - ready to eject",
                    d.view.label,
                    if failed > 0 {
                        format!(", {failed} failed")
                    } else {
                        String::new()
                    }
                );
                log(&message);
                crate::notify::send(
                    &self.config.notify,
                    "drive_done",
                    message,
                    serde_json::json!({"drive": d.view.label, "done": done, "failed": failed}),
                );
            }
            d.view.state = next;
        }
        drop(live);
        self.changed();
    }

    /// Stops the workers (running jobs become `interrupted`) and unmounts
    /// every drive cleanly.
    pub fn shutdown(&self) {
        let ids: Vec<i64> = self.live.lock().unwrap().drives.keys().copied().collect();
        for id in &ids {
            self.scheduler.set_drive_available(*id, false);
        }
        for id in ids {
            self.stop_jobs_of_drive(id);
            let mount = self
                .live
                .lock()
                .unwrap()
                .drives
                .get_mut(&id)
                .and_then(|d| d.mount.take());
            if let Some(m) = mount {
                if let Err(e) = mount::unmount(&m) {
                    log(&e.0);
                }
            }
            self.release_own_loop_of(id);
        }
    }
}

/// Overall progress by audio duration, and the time left at the current
/// speeds of the running jobs (spread over the worker slots).
fn totals(jobs: &[JobView], workers: usize) -> Totals {
    let counted: Vec<&JobView> = jobs
        .iter()
        .filter(|j| !matches!(j.state, JobState::Cancelled))
        .collect();
    let done = counted.iter().filter(|j| j.state == JobState::Done).count();
    let seconds = |j: &JobView| j.duration_seconds.unwrap_or(0.0);
    let all: f64 = counted.iter().map(|j| seconds(j)).sum();
    let converted: f64 = counted.iter().map(|j| seconds(j) * j.progress).sum();
    let speeds: Vec<f64> = counted
        .iter()
        .filter_map(|j| j.speed)
        .filter(|s| *s > 0.0)
        .collect();
    let left: f64 = counted
        .iter()
        .filter(|j| {
            matches!(
                j.state,
                JobState::Queued | JobState::Running | JobState::Paused
            )
        })
        .map(|j| seconds(j) * (1.0 - j.progress))
        .sum();
    let eta_seconds = if speeds.is_empty() || left <= 0.0 {
        None
    } else {
        let per_job = speeds.iter().sum::<f64>() / speeds.len() as f64;
        Some(left / (per_job * workers.max(1) as f64))
    };
    Totals {
        done,
        total: counted.len(),
        progress: if all > 0.0 { converted / all } else { 0.0 },
        eta_seconds,
    }
}

/// `LABEL-UUID` (or the UUID alone): the same drive always mounts at the
/// same place, so its jobs' paths stay valid when it comes back.
fn mount_dir_name(info: &FsInfo, uuid: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| if c == '/' || c.is_control() { '_' } else { c })
            .collect::<String>()
            .trim()
            .trim_start_matches('.')
            .to_string()
    };
    let label = clean(&info.label);
    let uuid = clean(uuid);
    if label.is_empty() {
        uuid
    } else {
        format!("{label}-{uuid}")
    }
}

/// One log line (stderr and, for the daemon, the rotated log file).
pub fn log(line: &str) {
    crate::logging::write("info", line);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usb::superblock::FsType;

    #[test]
    fn mount_folders_are_stable_and_safe() {
        let info = FsInfo {
            fs: FsType::Exfat,
            label: "../Films/2024".into(),
            uuid: "1234-ABCD".into(),
        };
        assert_eq!(mount_dir_name(&info, "1234-ABCD"), "_Films_2024-1234-ABCD");
        let nolabel = FsInfo {
            label: String::new(),
            ..info
        };
        assert_eq!(mount_dir_name(&nolabel, "1234-ABCD"), "1234-ABCD");
    }
}
