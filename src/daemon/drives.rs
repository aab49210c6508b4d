//! The drives' state machine. It decides, from what has happened, what a
//! drive is now and which slow work to start next; it runs no work and
//! touches no device, so every race (pulled while mounting, ejected while
//! scanning, a late result after a re-plug) is a unit test.
//!
//! Each visit of a drive (and each pull or eject) gets a new generation.
//! Work carries the generation it was started for: a result from an older
//! one is stale and never applied, but what it holds (a mount) is still
//! cleaned up. A drive has at most one piece of work running at a time;
//! what must follow waits in `then`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::command::CommandError;
use crate::media::scan::ScanProgress;
use crate::usb::mount::Mounted;
use crate::usb::superblock::FsInfo;
use crate::view::{DriveState, DriveView};

/// One file system found on a device: what a visit starts from.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// The store's id for this file system (by UUID and label).
    pub drive: i64,
    /// Kernel name of the device the drive arrived on (`sda1`, or the disk
    /// whose partitions we reach through our own loop devices).
    pub devname: String,
    /// What is mounted: `/dev/sda1`, or our loop device over a partition.
    pub device: PathBuf,
    pub info: FsInfo,
    pub uuid: String,
    pub own_loop: Option<PathBuf>,
    /// Why the box cannot take this drive now (the state directory cannot
    /// record it): it is listed with the reason and read again when it can.
    pub unrecorded: Option<String>,
}

/// Work for a worker thread, or a word to the scheduler.
#[derive(Debug)]
pub enum Effect {
    /// Read the device: its superblock, or its partition table.
    Probe { devname: String, gen: u64 },
    Mount {
        drive: i64,
        gen: u64,
        volume: Volume,
    },
    Scan {
        drive: i64,
        gen: u64,
        root: PathBuf,
        cancel: Arc<AtomicBool>,
        /// Where the scan counts what it has looked at, for the page and panel.
        progress: Arc<ScanProgress>,
    },
    /// Measure the free space on the mounted drive.
    Space { drive: i64, gen: u64, root: PathBuf },
    /// Jobs of the drive may start.
    Offer { drive: i64 },
    /// Jobs of the drive stop starting; running ones are interrupted.
    Hold { drive: i64 },
    /// Pulled: wait for its jobs to stop, detach what is left.
    Release {
        drive: i64,
        gen: u64,
        mount: Option<Mounted>,
        own_loop: Option<PathBuf>,
    },
    /// Eject or shutdown: wait for its jobs to stop, sync and unmount.
    Unmount {
        drive: i64,
        gen: u64,
        mount: Option<Mounted>,
    },
    /// Our loop device over a partition is not needed any more.
    DetachLoop { device: PathBuf },
}

/// What follows the running work of a drive.
#[derive(Debug)]
enum Then {
    Release,
    Unmount,
    Mount(Volume),
}

#[derive(Debug)]
struct Slot {
    view: DriveView,
    devname: String,
    gen: u64,
    mount: Option<Mounted>,
    own_loop: Option<PathBuf>,
    /// Work of this drive is running (at most one at a time).
    busy: bool,
    then: Option<Then>,
    /// Stops the running scan early.
    cancel: Option<Arc<AtomicBool>>,
    /// The running scan's counters.
    progress: Option<Arc<ScanProgress>>,
    /// A free-space measurement is running (never more than one, so a
    /// file system that hangs cannot pile them up).
    measuring: bool,
    /// A copy of a drive in the box, listed only to say why it is not used.
    refused: bool,
    /// Refused only until the state directory can record the drive.
    refused_until_recorded: bool,
}

impl Slot {
    fn current(&self, gen: u64) -> bool {
        self.gen == gen
    }

    fn stop_scan(&mut self) {
        if let Some(c) = self.cancel.take() {
            c.store(true, Ordering::SeqCst);
        }
    }

    /// Starts `then`, or, with nothing planned, cleans up a mount that a
    /// stale result left behind.
    fn next_work(&mut self, id: i64) -> Vec<Effect> {
        let mut then = self.then.take();
        // What an earlier visit left (a mount, our loop device) goes first.
        let leftovers = self.mount.is_some() || self.own_loop.is_some();
        match then {
            Some(Then::Mount(_)) if leftovers => {
                self.then = then;
                then = Some(Then::Release);
            }
            None if leftovers && self.view.state.is_gone() => then = Some(Then::Release),
            _ => {}
        }
        let effect = match then {
            None => return Vec::new(),
            Some(Then::Release) => Effect::Release {
                drive: id,
                gen: self.gen,
                mount: self.mount.clone(),
                own_loop: self.own_loop.take(),
            },
            Some(Then::Unmount) => Effect::Unmount {
                drive: id,
                gen: self.gen,
                mount: self.mount.clone(),
            },
            Some(Then::Mount(volume)) => {
                self.own_loop = volume.own_loop.clone();
                Effect::Mount {
                    drive: id,
                    gen: self.gen,
                    volume,
                }
            }
        };
        self.busy = true;
        vec![effect]
    }

    /// Runs `then` now if the drive is free, else after its running work.
    fn schedule(&mut self, id: i64, then: Then) -> Vec<Effect> {
        self.then = Some(then);
        if self.busy {
            Vec::new()
        } else {
            self.next_work(id)
        }
    }
}

/// Every drive the box knows this run, and the devices being read.
#[derive(Debug, Default)]
pub struct Drives {
    slots: BTreeMap<i64, Slot>,
    /// Devices whose superblock or partition table is being read.
    probing: HashMap<String, u64>,
    last_gen: u64,
    /// Refused copies get ids below zero, never the store's.
    last_refused: i64,
    stopping: bool,
}

impl Drives {
    fn next_gen(&mut self) -> u64 {
        self.last_gen += 1;
        self.last_gen
    }

    pub fn views(&self) -> impl Iterator<Item = &DriveView> {
        self.slots.values().map(|s| &s.view)
    }

    pub fn view(&self, drive: i64) -> Option<&DriveView> {
        self.slots.get(&drive).map(|s| &s.view)
    }

    pub fn view_mut(&mut self, drive: i64) -> Option<&mut DriveView> {
        self.slots.get_mut(&drive).map(|s| &mut s.view)
    }

    /// The kernel name of a mounted drive's device.
    pub fn devname_of_mounted(&self, drive: i64) -> Option<&str> {
        self.slots
            .get(&drive)
            .filter(|s| s.mount.is_some())
            .map(|s| s.devname.as_str())
    }

    /// Devices of the drives in use (mounted, or on their way).
    pub fn devices_in_use(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .slots
            .values()
            .filter(|s| !s.view.state.is_gone())
            .map(|s| s.devname.clone())
            .collect();
        names.extend(self.probing.keys().cloned());
        names
    }

    /// Nothing is running any more: shutdown can end.
    pub fn settled(&self) -> bool {
        self.probing.is_empty() && self.slots.values().all(|s| !s.busy)
    }

    /// Mounts still held (for the last resort at shutdown).
    pub fn mounts(&self) -> Vec<Mounted> {
        self.slots
            .values()
            .filter_map(|s| s.mount.clone())
            .collect()
    }

    /// Copies the running scans' counters into the drives' views; whether
    /// any changed.
    pub fn refresh_scan_progress(&mut self) -> bool {
        let mut changed = false;
        for slot in self.slots.values_mut() {
            let counts = match (&slot.progress, slot.view.state) {
                (Some(p), DriveState::Scanning) => Some(p.counts()),
                _ => None,
            };
            if slot.view.scan != counts {
                slot.view.scan = counts;
                changed = true;
            }
        }
        changed
    }

    /// A device with a medium appeared (or was there at start).
    pub fn appeared(&mut self, devname: &str) -> Option<Effect> {
        if self.stopping || self.devices_in_use().iter().any(|d| d == devname) {
            return None;
        }
        let gen = self.next_gen();
        self.probing.insert(devname.to_string(), gen);
        Some(Effect::Probe {
            devname: devname.to_string(),
            gen,
        })
    }

    /// The state directory records drives again: the ones refused for it
    /// are read again.
    pub fn recorded_again(&mut self) -> Vec<Effect> {
        let waiting: Vec<(i64, String)> = self
            .slots
            .iter()
            .filter(|(_, s)| s.refused_until_recorded)
            .map(|(id, s)| (*id, s.devname.clone()))
            .collect();
        let mut effects = Vec::new();
        for (id, devname) in waiting {
            self.slots.remove(&id);
            effects.extend(self.appeared(&devname));
        }
        effects
    }

    /// A device was read: each file system on it starts a visit.
    pub fn probed(&mut self, devname: &str, gen: u64, volumes: Vec<Volume>) -> Vec<Effect> {
        let current = self.probing.get(devname) == Some(&gen);
        if current {
            self.probing.remove(devname);
        }
        let mut effects = Vec::new();
        for volume in volumes {
            let in_use = self
                .slots
                .get(&volume.drive)
                .is_some_and(|s| !s.view.state.is_gone());
            if let Some(reason) = volume.unrecorded.clone() {
                if current && !self.stopping {
                    self.refuse(&volume, reason, true);
                }
                effects.extend(volume.own_loop.map(|device| Effect::DetachLoop { device }));
                continue;
            }
            if !current || self.stopping || in_use {
                // Pulled while it was read, the box is stopping, or the same
                // file system is in use already (a copy of a drive).
                if current && !self.stopping {
                    self.refuse_copy(&volume);
                }
                effects.extend(volume.own_loop.map(|device| Effect::DetachLoop { device }));
                continue;
            }
            let gen = self.next_gen();
            let id = volume.drive;
            let view = DriveView {
                id,
                device: volume.device.display().to_string(),
                label: volume.info.label.clone(),
                fs: volume.info.fs.name().to_string(),
                uuid: volume.uuid.clone(),
                state: DriveState::Mounting,
                mount_point: None,
                error: None,
                tracks_found: 0,
                scan: None,
                free_bytes: None,
                total_bytes: None,
                can_eject: false,
            };
            let slot = self.slots.entry(id).or_insert_with(|| Slot {
                view: view.clone(),
                devname: String::new(),
                gen,
                mount: None,
                own_loop: None,
                busy: false,
                then: None,
                cancel: None,
                progress: None,
                measuring: false,
                refused: false,
                refused_until_recorded: false,
            });
            slot.view = view;
            slot.devname = volume.devname.clone();
            slot.gen = gen;
            effects.extend(slot.schedule(id, Then::Mount(volume)));
        }
        effects
    }

    /// A second drive with the file system of one in the box (a `dd` copy,
    /// same UUID and label) shares nothing with it: it is listed with the
    /// reason and left alone until it is pulled.
    fn refuse_copy(&mut self, volume: &Volume) {
        let original = self
            .slots
            .get(&volume.drive)
            .map(|s| s.view.label.clone())
            .unwrap_or_default();
        let reason = format!(
            "the same file system (UUID {}) as {original}, which is in the box: \
             a copy? Eject that one first, then plug this one in again",
            volume.uuid
        );
        self.refuse(volume, reason, false);
    }

    /// Lists the volume with the reason it is left alone.
    fn refuse(&mut self, volume: &Volume, reason: String, until_recorded: bool) {
        self.last_refused -= 1;
        let id = self.last_refused;
        let view = DriveView {
            id,
            device: volume.device.display().to_string(),
            label: volume.info.label.clone(),
            fs: volume.info.fs.name().to_string(),
            uuid: volume.uuid.clone(),
            state: DriveState::Error,
            mount_point: None,
            error: Some(reason),
            tracks_found: 0,
            scan: None,
            free_bytes: None,
            total_bytes: None,
            can_eject: false,
        };
        let slot = Slot {
            view,
            devname: volume.devname.clone(),
            gen: 0,
            mount: None,
            own_loop: None,
            busy: false,
            then: None,
            cancel: None,
            progress: None,
            measuring: false,
            refused: true,
            refused_until_recorded: until_recorded,
        };
        self.slots.insert(id, slot);
    }

    pub fn mounted(
        &mut self,
        drive: i64,
        gen: u64,
        result: Result<Mounted, String>,
    ) -> Vec<Effect> {
        let stopping = self.stopping;
        let Some(slot) = self.slots.get_mut(&drive) else {
            return Vec::new();
        };
        slot.busy = false;
        if !slot.current(gen) || slot.view.state != DriveState::Mounting {
            if let Ok(m) = result {
                slot.mount = Some(m);
            }
            return slot.next_work(drive);
        }
        match result {
            Ok(m) if stopping => {
                slot.mount = Some(m);
                slot.schedule(drive, Then::Unmount)
            }
            Ok(m) => {
                let root = m.mount_point.clone();
                slot.view.state = DriveState::Scanning;
                slot.view.mount_point = Some(root.clone());
                slot.mount = Some(m);
                let cancel = Arc::new(AtomicBool::new(false));
                slot.cancel = Some(cancel.clone());
                let progress = Arc::new(ScanProgress::default());
                slot.progress = Some(progress.clone());
                slot.busy = true;
                let mut effects = vec![Effect::Scan {
                    drive,
                    gen,
                    root,
                    cancel,
                    progress,
                }];
                effects.extend(self.measure(drive));
                effects
            }
            Err(e) => {
                slot.view.state = DriveState::Error;
                slot.view.error = Some(e);
                slot.own_loop
                    .take()
                    .map(|device| Effect::DetachLoop { device })
                    .into_iter()
                    .collect()
            }
        }
    }

    /// A scan ended. Returns whether its result applies (the supervisor then
    /// adds its jobs) and what follows.
    pub fn scanned(&mut self, drive: i64, gen: u64, tracks_found: usize) -> (bool, Vec<Effect>) {
        let Some(slot) = self.slots.get_mut(&drive) else {
            return (false, Vec::new());
        };
        slot.busy = false;
        slot.cancel = None;
        slot.progress = None;
        slot.view.scan = None;
        if !slot.current(gen) || slot.view.state != DriveState::Scanning {
            return (false, slot.next_work(drive));
        }
        slot.view.state = DriveState::Converting;
        slot.view.tracks_found = tracks_found;
        (true, vec![Effect::Offer { drive }])
    }

    /// The device went away (a remove event, or no medium any more).
    pub fn gone(&mut self, devname: &str) -> Vec<Effect> {
        self.probing.remove(devname);
        let ids: Vec<i64> = self
            .slots
            .iter()
            .filter(|(_, s)| s.devname == devname)
            .map(|(id, _)| *id)
            .collect();
        let mut effects = Vec::new();
        for id in ids {
            effects.extend(self.pulled(id));
        }
        effects
    }

    fn pulled(&mut self, drive: i64) -> Vec<Effect> {
        let gen = self.next_gen();
        let Some(slot) = self.slots.get_mut(&drive) else {
            return Vec::new();
        };
        if slot.refused {
            self.slots.remove(&drive);
            return Vec::new();
        }
        // Ejected and now pulled, as it should be: it stays `ejected`.
        if slot.view.state.is_gone() {
            return Vec::new();
        }
        slot.gen = gen;
        slot.view.state = DriveState::Removed;
        slot.view.mount_point = None;
        slot.stop_scan();
        let mut effects = vec![Effect::Hold { drive }];
        effects.extend(slot.schedule(drive, Then::Release));
        effects
    }

    /// A pulled drive's jobs have stopped and its mount is detached.
    pub fn released(&mut self, drive: i64) -> Vec<Effect> {
        let Some(slot) = self.slots.get_mut(&drive) else {
            return Vec::new();
        };
        slot.busy = false;
        slot.mount = None;
        slot.next_work(drive)
    }

    /// EJECT: stop the drive's work, then sync and unmount it.
    pub fn eject(&mut self, drive: i64) -> Result<Vec<Effect>, CommandError> {
        let gen = self.next_gen();
        let slot = self
            .slots
            .get_mut(&drive)
            .ok_or(CommandError::NoSuchDrive(drive))?;
        if slot.view.state == DriveState::Ejecting {
            return Ok(Vec::new());
        }
        if !slot.view.allows_eject() || slot.mount.is_none() {
            return Err(CommandError::NotEjectable(drive, slot.view.state));
        }
        slot.gen = gen;
        slot.view.state = DriveState::Ejecting;
        slot.stop_scan();
        let mut effects = vec![Effect::Hold { drive }];
        effects.extend(slot.schedule(drive, Then::Unmount));
        Ok(effects)
    }

    pub fn unmounted(&mut self, drive: i64, gen: u64, result: Result<(), String>) -> Vec<Effect> {
        let Some(slot) = self.slots.get_mut(&drive) else {
            return Vec::new();
        };
        slot.busy = false;
        let mut effects = Vec::new();
        match result {
            Ok(()) => {
                slot.mount = None;
                slot.view.mount_point = None;
                if slot.current(gen) && slot.view.state == DriveState::Ejecting {
                    slot.view.state = DriveState::Ejected;
                }
                effects.extend(
                    slot.own_loop
                        .take()
                        .map(|device| Effect::DetachLoop { device }),
                );
            }
            Err(e) if slot.current(gen) && slot.view.state == DriveState::Ejecting => {
                slot.view.state = DriveState::Error;
                slot.view.error = Some(format!("{e}; close anything using it and eject again"));
            }
            // Shutting down or pulled meanwhile: the supervisor detaches what is left.
            Err(_) => {}
        }
        effects.extend(slot.next_work(drive));
        effects
    }

    /// A free-space measurement, if the drive is mounted and none is running.
    pub fn measure(&mut self, drive: i64) -> Option<Effect> {
        let slot = self.slots.get_mut(&drive)?;
        let root = slot.mount.as_ref()?.mount_point.clone();
        if slot.measuring || self.stopping || slot.view.state.is_gone() {
            return None;
        }
        slot.measuring = true;
        Some(Effect::Space {
            drive,
            gen: slot.gen,
            root,
        })
    }

    pub fn measured(&mut self, drive: i64, gen: u64, space: Option<(u64, u64)>) {
        if let Some(slot) = self.slots.get_mut(&drive) {
            slot.measuring = false;
            if let (true, Some((free, total))) = (slot.current(gen), space) {
                slot.view.free_bytes = Some(free);
                slot.view.total_bytes = Some(total);
            }
        }
    }

    /// The box stops: every drive's work is cut short and every mount goes.
    pub fn shutdown(&mut self) -> Vec<Effect> {
        self.stopping = true;
        let ids: Vec<i64> = self.slots.keys().copied().collect();
        let mut effects = Vec::new();
        for id in ids {
            let gen = self.next_gen();
            let slot = self.slots.get_mut(&id).expect("listed above");
            slot.gen = gen;
            slot.stop_scan();
            effects.push(Effect::Hold { drive: id });
            let then = match slot.then.take() {
                Some(Then::Release) => Some(Then::Release),
                _ if slot.busy || slot.mount.is_some() => Some(Then::Unmount),
                _ => None,
            };
            if let Some(then) = then {
                effects.extend(slot.schedule(id, then));
            }
        }
        effects
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::usb::mount::Driver;
    use crate::usb::superblock::FsType;

    pub(crate) fn volume(drive: i64, devname: &str) -> Volume {
        Volume {
            drive,
            devname: devname.into(),
            device: PathBuf::from(format!("/dev/{devname}")),
            info: FsInfo {
                fs: FsType::Exfat,
                label: "FILMS".into(),
                uuid: "1234-ABCD".into(),
            },
            uuid: "1234-ABCD".into(),
            own_loop: None,
            unrecorded: None,
        }
    }

    pub(crate) fn mounted_at(path: &str) -> Mounted {
        Mounted {
            device: "/dev/sda1".into(),
            mount_point: path.into(),
            driver: Driver::Kernel("exfat"),
            read_only: false,
        }
    }

    fn state(d: &Drives, id: i64) -> DriveState {
        d.view(id).expect("drive known").state
    }

    /// Arrives and is read: returns the generation of the visit's mount.
    fn arrive(d: &mut Drives, id: i64, devname: &str) -> u64 {
        let Some(Effect::Probe { gen, .. }) = d.appeared(devname) else {
            panic!("a new device is read")
        };
        match d.probed(devname, gen, vec![volume(id, devname)]).as_slice() {
            [Effect::Mount { gen, .. }] => *gen,
            other => panic!("expected a mount, got {other:?}"),
        }
    }

    fn scan_gen(effects: &[Effect]) -> (u64, Arc<AtomicBool>) {
        effects
            .iter()
            .find_map(|e| match e {
                Effect::Scan { gen, cancel, .. } => Some((*gen, cancel.clone())),
                _ => None,
            })
            .expect("a scan starts")
    }

    #[test]
    fn a_drive_arrives_mounts_scans_and_converts() {
        let mut d = Drives::default();
        let gen = arrive(&mut d, 1, "sda1");
        assert_eq!(state(&d, 1), DriveState::Mounting);
        assert!(d.appeared("sda1").is_none(), "a burst of events reads once");
        let effects = d.mounted(1, gen, Ok(mounted_at("/media/FILMS")));
        assert_eq!(state(&d, 1), DriveState::Scanning);
        assert!(effects.iter().any(|e| matches!(e, Effect::Space { .. })));
        let (gen, _) = scan_gen(&effects);
        let (applied, effects) = d.scanned(1, gen, 3);
        assert!(applied);
        assert!(matches!(effects.as_slice(), [Effect::Offer { drive: 1 }]));
        assert_eq!(state(&d, 1), DriveState::Converting);
        assert_eq!(d.view(1).unwrap().tracks_found, 3);
        assert!(d.settled());
    }

    #[test]
    fn a_failed_mount_is_an_error_with_the_reason() {
        let mut d = Drives::default();
        let gen = arrive(&mut d, 1, "sda1");
        assert!(d
            .mounted(1, gen, Err("no driver for ntfs".into()))
            .is_empty());
        assert_eq!(state(&d, 1), DriveState::Error);
        assert_eq!(
            d.view(1).unwrap().error.as_deref(),
            Some("no driver for ntfs")
        );
        assert!(matches!(d.eject(1), Err(CommandError::NotEjectable(1, _))));
    }

    #[test]
    fn pulled_while_being_read_the_late_probe_is_dropped() {
        let mut d = Drives::default();
        let Some(Effect::Probe { gen, .. }) = d.appeared("sdb") else {
            panic!()
        };
        assert!(d.gone("sdb").is_empty());
        let mut v = volume(1, "sdb");
        v.own_loop = Some("/dev/loop7".into());
        let effects = d.probed("sdb", gen, vec![v]);
        assert!(
            matches!(effects.as_slice(), [Effect::DetachLoop { device }] if device == &PathBuf::from("/dev/loop7"))
        );
        assert!(d.view(1).is_none());
        assert!(d.settled());
    }

    #[test]
    fn pulled_during_mount_the_late_mount_is_released_not_scanned() {
        let mut d = Drives::default();
        let gen = arrive(&mut d, 1, "sda1");
        let effects = d.gone("sda1");
        assert!(matches!(effects.as_slice(), [Effect::Hold { drive: 1 }]));
        assert_eq!(state(&d, 1), DriveState::Removed);
        let effects = d.mounted(1, gen, Ok(mounted_at("/media/FILMS")));
        match effects.as_slice() {
            [Effect::Release { mount: Some(m), .. }] => {
                assert_eq!(m.mount_point, PathBuf::from("/media/FILMS"))
            }
            other => panic!("expected a release, got {other:?}"),
        }
        assert_eq!(
            state(&d, 1),
            DriveState::Removed,
            "the late mount is not applied"
        );
        assert!(d.released(1).is_empty());
        assert!(d.settled());
    }

    #[test]
    fn pulled_during_scan_the_scan_stops_and_its_result_is_dropped() {
        let mut d = Drives::default();
        let gen = arrive(&mut d, 1, "sda1");
        let (gen, cancel) = scan_gen(&d.mounted(1, gen, Ok(mounted_at("/media/FILMS"))));
        let effects = d.gone("sda1");
        assert!(cancel.load(Ordering::SeqCst), "the scan is told to stop");
        assert!(matches!(effects.as_slice(), [Effect::Hold { drive: 1 }]));
        let (applied, effects) = d.scanned(1, gen, 5);
        assert!(!applied, "a late scan result never overwrites the pull");
        assert_eq!(state(&d, 1), DriveState::Removed);
        assert!(matches!(
            effects.as_slice(),
            [Effect::Release { mount: Some(_), .. }]
        ));
        assert!(d.released(1).is_empty());
        assert!(d.settled());
    }

    #[test]
    fn eject_during_scan_waits_for_the_scan_then_unmounts() {
        let mut d = Drives::default();
        let gen = arrive(&mut d, 1, "sda1");
        let (gen, cancel) = scan_gen(&d.mounted(1, gen, Ok(mounted_at("/media/FILMS"))));
        let effects = d.eject(1).expect("a scanning drive can be ejected");
        assert!(cancel.load(Ordering::SeqCst));
        assert!(matches!(effects.as_slice(), [Effect::Hold { drive: 1 }]));
        assert_eq!(state(&d, 1), DriveState::Ejecting);
        assert!(
            d.eject(1).unwrap().is_empty(),
            "a second press changes nothing"
        );
        let (applied, effects) = d.scanned(1, gen, 5);
        assert!(!applied);
        let gen = match effects.as_slice() {
            [Effect::Unmount {
                gen,
                mount: Some(_),
                ..
            }] => *gen,
            other => panic!("expected an unmount, got {other:?}"),
        };
        assert!(d.unmounted(1, gen, Ok(())).is_empty());
        assert_eq!(state(&d, 1), DriveState::Ejected);
        assert_eq!(d.view(1).unwrap().mount_point, None);
        assert!(d.gone("sda1").is_empty());
        assert_eq!(
            state(&d, 1),
            DriveState::Ejected,
            "pulled after eject, as it should be"
        );
    }

    #[test]
    fn a_busy_drive_that_fails_to_unmount_says_so_and_can_be_ejected_again() {
        let mut d = Drives::default();
        let gen = arrive(&mut d, 1, "sda1");
        let (gen, _) = scan_gen(&d.mounted(1, gen, Ok(mounted_at("/media/FILMS"))));
        d.scanned(1, gen, 1);
        let effects = d.eject(1).expect("an idle drive can be ejected");
        let [Effect::Hold { .. }, Effect::Unmount { gen, .. }] = effects.as_slice() else {
            panic!("an idle drive unmounts at once: {effects:?}")
        };
        let gen = *gen;
        d.unmounted(1, gen, Err("target is busy".into()));
        assert_eq!(state(&d, 1), DriveState::Error);
        assert!(d
            .view(1)
            .unwrap()
            .error
            .as_deref()
            .unwrap()
            .contains("eject again"));
        assert!(d.eject(1).is_ok());
    }

    #[test]
    fn replugged_while_the_last_visit_is_released_mounts_after_it() {
        let mut d = Drives::default();
        let gen = arrive(&mut d, 1, "sda1");
        let (gen, _) = scan_gen(&d.mounted(1, gen, Ok(mounted_at("/media/FILMS"))));
        d.scanned(1, gen, 2);
        let effects = d.gone("sda1");
        assert!(matches!(
            effects.as_slice(),
            [Effect::Hold { .. }, Effect::Release { .. }]
        ));
        // Back before the release finished: it mounts only once that is done.
        let Some(Effect::Probe { gen, .. }) = d.appeared("sda1") else {
            panic!("a re-plugged drive is read again")
        };
        assert!(d.probed("sda1", gen, vec![volume(1, "sda1")]).is_empty());
        assert_eq!(state(&d, 1), DriveState::Mounting);
        let gen = match d.released(1).as_slice() {
            [Effect::Mount { gen, .. }] => *gen,
            other => panic!("expected the mount, got {other:?}"),
        };
        let (gen, _) = scan_gen(&d.mounted(1, gen, Ok(mounted_at("/media/FILMS"))));
        assert!(d.scanned(1, gen, 2).0);
        assert_eq!(state(&d, 1), DriveState::Converting);
    }

    #[test]
    fn a_late_result_from_before_a_replug_is_not_applied() {
        let mut d = Drives::default();
        let old = arrive(&mut d, 1, "sda1");
        d.gone("sda1");
        // The first visit's mount is still running when the drive comes back.
        let Some(Effect::Probe { gen, .. }) = d.appeared("sda1") else {
            panic!()
        };
        assert!(d.probed("sda1", gen, vec![volume(1, "sda1")]).is_empty());
        let effects = d.mounted(1, old, Ok(mounted_at("/media/FILMS")));
        assert!(
            matches!(effects.as_slice(), [Effect::Release { .. }]),
            "the stale mount is released first: {effects:?}"
        );
        assert_eq!(state(&d, 1), DriveState::Mounting);
        let new = match d.released(1).as_slice() {
            [Effect::Mount { gen, .. }] => *gen,
            other => panic!("{other:?}"),
        };
        assert_ne!(new, old);
        assert!(d
            .mounted(1, new, Ok(mounted_at("/media/FILMS")))
            .iter()
            .any(|e| matches!(e, Effect::Scan { .. })));
    }

    #[test]
    fn the_same_file_system_twice_is_mounted_once() {
        let mut d = Drives::default();
        arrive(&mut d, 1, "sda1");
        let Some(Effect::Probe { gen, .. }) = d.appeared("sdb1") else {
            panic!()
        };
        assert!(d.probed("sdb1", gen, vec![volume(1, "sdb1")]).is_empty());
        assert_eq!(d.slots[&1].devname, "sda1");
        let copy = d
            .views()
            .find(|v| v.id < 0)
            .expect("the copy is listed")
            .clone();
        assert_eq!(copy.state, DriveState::Error);
        assert!(
            copy.error.as_deref().unwrap().contains("same file system"),
            "{copy:?}"
        );
        assert!(!copy.allows_eject());
        assert!(
            d.appeared("sdb1").is_none(),
            "its events are not read again"
        );
        assert!(d.gone("sdb1").is_empty());
        assert_eq!(d.views().count(), 1, "pulled, the copy is forgotten");
        assert_eq!(
            state(&d, 1),
            DriveState::Mounting,
            "the original is untouched"
        );
    }

    #[test]
    fn shutdown_during_mount_and_scan_unmounts_everything_once_work_ends() {
        let mut d = Drives::default();
        let mounting = arrive(&mut d, 1, "sda1");
        let gen2 = arrive(&mut d, 2, "sdb1");
        let (scanning, cancel) = scan_gen(&d.mounted(2, gen2, Ok(mounted_at("/media/B"))));
        let effects = d.shutdown();
        assert!(cancel.load(Ordering::SeqCst));
        assert!(effects.iter().all(|e| matches!(e, Effect::Hold { .. })));
        assert!(d.appeared("sdc1").is_none(), "nothing new starts");
        assert!(!d.settled());
        let a = d.mounted(1, mounting, Ok(mounted_at("/media/A")));
        assert!(
            matches!(a.as_slice(), [Effect::Unmount { mount: Some(_), .. }]),
            "{a:?}"
        );
        let (applied, b) = d.scanned(2, scanning, 4);
        assert!(!applied);
        assert!(
            matches!(b.as_slice(), [Effect::Unmount { mount: Some(_), .. }]),
            "{b:?}"
        );
        for (id, effects) in [(1, a), (2, b)] {
            let [Effect::Unmount { gen, .. }] = effects.as_slice() else {
                unreachable!()
            };
            d.unmounted(id, *gen, Ok(()));
        }
        assert!(d.settled());
        assert!(d.mounts().is_empty());
    }

    #[test]
    fn free_space_is_measured_one_at_a_time_and_only_for_the_current_visit() {
        let mut d = Drives::default();
        let gen = arrive(&mut d, 1, "sda1");
        let effects = d.mounted(1, gen, Ok(mounted_at("/media/FILMS")));
        let Some(Effect::Space { gen, .. }) =
            effects.iter().find(|e| matches!(e, Effect::Space { .. }))
        else {
            panic!()
        };
        let gen = *gen;
        assert!(d.measure(1).is_none(), "one measurement at a time");
        d.measured(1, gen, Some((10, 20)));
        assert_eq!(d.view(1).unwrap().free_bytes, Some(10));
        let Some(Effect::Space { gen: again, .. }) = d.measure(1) else {
            panic!()
        };
        d.gone("sda1");
        d.measured(1, again, Some((1, 20)));
        assert_eq!(
            d.view(1).unwrap().free_bytes,
            Some(10),
            "late figures are dropped"
        );
    }
}
