//! The slow work of a drive, run on worker threads: reading a device,
//! mounting, scanning, measuring, stopping a drive's jobs, unmounting. Each
//! function blocks as long as the drive makes it and returns what the
//! supervisor needs; none of them looks at or changes the drives' states.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::drives::Volume;
use crate::config::Config;
use crate::logging::log;
use crate::media::convert::remove_stale_temp_files;
use crate::media::scan::{scan, ScanLimits, ScanProgress};
use crate::media::tools::Tools;
use crate::queue::plan::{plan_jobs, PlannedJob};
use crate::queue::scheduler::Scheduler;
use crate::queue::store::{JobId, JobState, Store};
use crate::usb::drives;
use crate::usb::mount::{self, Mounted};
use crate::usb::partitions;
use crate::usb::superblock::{self, FsInfo, FsType};

/// Our loop devices over partitions, by kernel name: their uevents are not
/// drives of their own. Shared with the uevent handling, and only ever
/// locked for an insert, a remove or a lookup.
#[derive(Clone, Default)]
pub struct OwnLoops(Arc<Mutex<HashSet<String>>>);

impl OwnLoops {
    pub fn contains(&self, devname: &str) -> bool {
        self.0.lock().unwrap().contains(devname)
    }

    fn insert(&self, dev: &Path) {
        if let Some(name) = dev.file_name() {
            self.0
                .lock()
                .unwrap()
                .insert(name.to_string_lossy().into_owned());
        }
    }

    /// Detaches our loop device and forgets it.
    pub fn release(&self, dev: &Path) {
        partitions::detach(dev);
        if let Some(name) = dev.file_name() {
            self.0.lock().unwrap().remove(&*name.to_string_lossy());
        }
    }
}

/// What the workers share: read-only settings and the handles they use.
pub struct WorkContext {
    pub config: Config,
    pub tools: Tools,
    pub store: Arc<Mutex<Store>>,
    pub scheduler: Arc<Scheduler>,
    pub own_loops: OwnLoops,
}

/// Reads the device: a file system on it, or a partition table the kernel
/// did not split (it lacks MBR/GPT support), whose partitions we then
/// reach through loop devices of our own.
pub fn probe(ctx: &WorkContext, devname: &str) -> Result<Vec<Volume>, String> {
    let dev = PathBuf::from("/dev").join(devname);
    if !drives::wait_for_node(&dev, Duration::from_secs(10)) {
        return Err(format!("{}: the device node never appeared", dev.display()));
    }
    match superblock::identify(&dev) {
        Ok(Some(info)) => Ok(volume(ctx, devname, &dev, info, None).into_iter().collect()),
        Ok(None) => partitions_of(ctx, devname, &dev),
        Err(e) => Err(format!("{}: cannot read it: {e}", dev.display())),
    }
}

fn partitions_of(ctx: &WorkContext, devname: &str, disk: &Path) -> Result<Vec<Volume>, String> {
    let table = partitions::read_table(disk)
        .map_err(|e| format!("{}: cannot read it: {e}", disk.display()))?;
    let mut volumes = Vec::new();
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
        ctx.own_loops.insert(&loop_dev);
        let found = match superblock::identify(&loop_dev) {
            Ok(Some(info)) => volume(ctx, devname, &loop_dev, info, Some(loop_dev.clone())),
            _ => None,
        };
        match found {
            Some(v) => {
                log(&format!(
                    "{} partition {} is reached through {}",
                    disk.display(),
                    part.number,
                    loop_dev.display()
                ));
                volumes.push(v);
            }
            None => ctx.own_loops.release(&loop_dev),
        }
    }
    Ok(volumes)
}

/// The file system as the store knows it: the same UUID and label are the
/// same drive, whichever socket it is in.
fn volume(
    ctx: &WorkContext,
    devname: &str,
    dev: &Path,
    info: FsInfo,
    own_loop: Option<PathBuf>,
) -> Option<Volume> {
    let uuid = if info.uuid.is_empty() {
        // Nothing tells two such drives apart, so none is taken for another:
        // each plug-in is a drive of its own, and its jobs stay with it.
        log(&format!(
            "{}: the file system has no UUID, so work cut short is not resumed on a later visit (finished FLACs are still skipped)",
            dev.display()
        ));
        one_visit_identity(devname)
    } else {
        info.uuid.clone()
    };
    let (drive, state_dir_problem) = {
        let mut store = ctx.store.lock().unwrap();
        let drive = store.upsert_drive(&uuid, &info.label, info.fs.name());
        (drive, store.state_dir_problem())
    };
    let (drive, unrecorded) = match (drive, state_dir_problem) {
        (Ok(drive), _) => (drive, None),
        // A drive new to the box cannot be recorded: it is listed with the
        // reason and read again as soon as the state directory can take it.
        (Err(_), Some(problem)) => (
            0,
            Some(format!(
                "{problem}; this drive is read as soon as there is room again"
            )),
        ),
        (Err(e), None) => {
            log(&format!("job store: {e}"));
            return None;
        }
    };
    Some(Volume {
        drive,
        devname: devname.to_string(),
        device: dev.to_path_buf(),
        info,
        uuid,
        own_loop,
        unrecorded,
    })
}

/// `none-<device>-<time>`: unique to this plug-in of a drive without a UUID.
fn one_visit_identity(devname: &str) -> String {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("none-{devname}-{}", since_epoch.as_nanos())
}

/// Mounts the volume at its own folder under `usb.mount_root`.
pub fn mount(ctx: &WorkContext, v: &Volume) -> Result<Mounted, String> {
    log(&format!(
        "drive arrived: {} ({} \"{}\", UUID {})",
        v.device.display(),
        v.info.fs.name(),
        v.info.label,
        v.uuid
    ));
    let at = ctx
        .config
        .usb
        .mount_root
        .join(mount_dir_name(&v.info, &v.uuid));
    let mounted = adopt_or_mount(ctx, &v.device, &v.info, &at);
    match &mounted {
        Ok(m) => log(&format!(
            "mounted {} at {} ({}{})",
            v.device.display(),
            at.display(),
            m.driver.describe(),
            if m.read_only { ", read-only" } else { "" }
        )),
        Err(e) => log(&format!("{}: {e}", v.device.display())),
    }
    mounted
}

/// After a restart the drive may still be mounted where we left it.
fn adopt_or_mount(
    ctx: &WorkContext,
    dev: &Path,
    info: &FsInfo,
    at: &Path,
) -> Result<Mounted, String> {
    if mount::is_mount_point(at) {
        let same_device = mount::mounted_at(dev).as_deref() == Some(at);
        let fuse =
            info.fs != FsType::Ext4 && !same_device && mount::mounts().iter().any(|(_, m)| m == at);
        // A FUSE driver that died with the box leaves its mount behind, dead
        // (ENOTCONN): that one is detached and mounted afresh.
        let alive = std::fs::read_dir(at).is_ok();
        if (same_device || fuse) && alive {
            log(&format!(
                "{} is still mounted from before; using it",
                at.display()
            ));
            let driver = if same_device {
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
        // Something else sits there, or a dead mount: detach it first.
        if !alive {
            log(&format!(
                "{} is a dead mount from before; mounting the drive again",
                at.display()
            ));
        }
        mount::detach(at);
    }
    mount::mount(dev, info, at, &ctx.config.usb).map_err(|e| e.0)
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

/// Problems of one scan written to the log, one line each.
const LOGGED_PROBLEMS: usize = 50;

/// What a scan found, planned as jobs (the supervisor adds them).
#[derive(Debug, Default, Clone)]
pub struct Scanned {
    pub tracks_found: usize,
    pub planned: Vec<PlannedJob>,
    /// The scan saw the whole drive (see `ScanReport::complete`).
    pub complete: bool,
}

/// Scans the mounted drive (stopping early when `cancel` is set), removes
/// temporary files an earlier visit left, and plans the jobs.
pub fn scan_drive(
    ctx: &WorkContext,
    root: &Path,
    cancel: Arc<AtomicBool>,
    progress: Arc<ScanProgress>,
) -> Scanned {
    let limits = ScanLimits {
        stop: Some(cancel),
        progress: Some(progress),
        disc_titles: ctx.config.convert.disc_titles(),
        ..ScanLimits::default()
    };
    let report = scan(&ctx.tools, &[root.to_path_buf()], limits);
    // A hostile drive can hold a problem per file: the log (on the SD card)
    // gets the first few and a count.
    for p in report.problems.iter().take(LOGGED_PROBLEMS) {
        log(&format!("{}: {}", p.path.display(), p.reason));
    }
    if report.problems.len() > LOGGED_PROBLEMS {
        log(&format!(
            "{}: {} more file(s) could not be used; `dtsflac scan` on a computer lists them all",
            root.display(),
            report.problems.len() - LOGGED_PROBLEMS
        ));
    }
    let planned = plan_jobs(&report.found, None);
    let folders: HashSet<&Path> = planned.iter().filter_map(|p| p.output.parent()).collect();
    // Temp files of jobs cut short by a pull or a power cut.
    let removed: usize = folders.iter().map(|f| remove_stale_temp_files(f)).sum();
    if removed > 0 {
        log(&format!(
            "removed {removed} unfinished temporary file(s) from an earlier visit"
        ));
    }
    Scanned {
        tracks_found: report.found.len(),
        planned,
        complete: report.complete,
    }
}

/// Interrupts the drive's running jobs and waits until they have stopped
/// (their temporary files are removed as they stop).
fn stop_jobs_of_drive(ctx: &WorkContext, drive: i64) {
    let running: Vec<JobId> = ctx
        .store
        .lock()
        .unwrap()
        .jobs_of_drive(drive)
        .unwrap_or_default()
        .into_iter()
        .filter(|j| matches!(j.state, JobState::Running | JobState::Paused))
        .map(|j| j.id)
        .collect();
    for job in &running {
        ctx.scheduler.interrupt(*job);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let still = ctx.scheduler.running_jobs();
        if !running.iter().any(|j| still.contains(j)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A pulled drive: its jobs stop, the dead mount and our loop device go.
pub fn release(ctx: &WorkContext, drive: i64, mount: Option<&Mounted>, own_loop: Option<&Path>) {
    stop_jobs_of_drive(ctx, drive);
    if let Some(m) = mount {
        mount::detach(&m.mount_point);
    }
    if let Some(l) = own_loop {
        ctx.own_loops.release(l);
    }
}

/// Eject or shutdown: the jobs stop, the file system is synced and unmounted.
pub fn unmount(ctx: &WorkContext, drive: i64, mount: Option<&Mounted>) -> Result<(), String> {
    stop_jobs_of_drive(ctx, drive);
    match mount {
        Some(m) => mount::unmount(m).map_err(|e| e.0),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
