//! Which block devices are drives for the box: USB mass storage (and loop
//! devices when `usb.allow_loop` is set), never the system's own disks.
//! Decided from sysfs, the same on every board and in CI.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A block device that may carry a drive's file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Kernel name: `sda1`, `sdb` (no partition table), `loop3p1`.
    pub devname: String,
}

fn sys(devname: &str) -> PathBuf {
    Path::new("/sys/class/block").join(devname)
}

fn read_trimmed(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

fn is_partition(devname: &str) -> bool {
    sys(devname).join("partition").exists()
}

/// The whole disk a partition belongs to (itself for a whole disk).
fn disk_of(devname: &str) -> String {
    if !is_partition(devname) {
        return devname.to_string();
    }
    std::fs::canonicalize(sys(devname))
        .ok()
        .and_then(|p| {
            p.parent()
                .and_then(|d| d.file_name())
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| devname.to_string())
}

fn has_partitions(disk: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(sys(disk)) else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.starts_with(disk) && e.path().join("partition").exists()
    })
}

/// Whether the device has a medium (size above zero): a detached loop device
/// or an empty card reader has none.
pub fn has_media(devname: &str) -> bool {
    read_trimmed(&sys(devname).join("size"))
        .and_then(|s| s.parse::<u64>().ok())
        .is_some_and(|n| n > 0)
}

fn is_usb(devname: &str) -> bool {
    std::fs::canonicalize(sys(devname))
        .map(|p| p.to_string_lossy().contains("/usb"))
        .unwrap_or(false)
}

/// A loop device over a disk image. Loop devices at an offset into a block
/// device are the ones we make to reach partitions the kernel did not
/// split: not drives of their own.
fn is_attached_loop(devname: &str) -> bool {
    let disk = disk_of(devname);
    let info = Path::new("/sys/block").join(&disk).join("loop");
    let Some(backing) = read_trimmed(&info.join("backing_file")) else {
        return false;
    };
    let offset = read_trimmed(&info.join("offset")).unwrap_or_default();
    let over_block_device = backing.starts_with("/dev/")
        || Path::new(&backing)
            .file_name()
            .is_some_and(|n| Path::new("/sys/class/block").join(n).exists());
    disk.starts_with("loop") && !(over_block_device && offset != "0")
}

/// Used by something else (LVM, RAID, dm-crypt): not ours to mount.
fn has_holders(devname: &str) -> bool {
    std::fs::read_dir(sys(devname).join("holders"))
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

/// Mounted by someone else: the system's own disks, or a drive the user
/// mounted by hand. (Mounts under our own mount root are adopted.)
fn mounted_elsewhere(devname: &str, mount_root: &Path) -> bool {
    let dev = format!("/dev/{devname}");
    super::mount::mounts()
        .iter()
        .any(|(src, at)| *src == dev && !at.starts_with(mount_root))
}

/// Whether `devname` is a drive the box should mount.
pub fn candidate(devname: &str, allow_loop: bool, mount_root: &Path) -> Option<Candidate> {
    let disk = disk_of(devname);
    let eligible = is_usb(devname) || (allow_loop && is_attached_loop(devname));
    if !eligible
        || !has_media(devname)
        || has_holders(devname)
        || (!is_partition(devname) && has_partitions(&disk))
        || mounted_elsewhere(devname, mount_root)
    {
        return None;
    }
    Some(Candidate {
        devname: devname.to_string(),
    })
}

/// Every drive plugged in right now (at start, and after lost events).
pub fn present(allow_loop: bool, mount_root: &Path) -> Vec<Candidate> {
    let Ok(entries) = std::fs::read_dir("/sys/class/block") else {
        return Vec::new();
    };
    let mut v: Vec<Candidate> = entries
        .flatten()
        .filter_map(|e| candidate(&e.file_name().to_string_lossy(), allow_loop, mount_root))
        .collect();
    v.sort_by(|a, b| a.devname.cmp(&b.devname));
    v
}

/// The kernel announces a device before devtmpfs (or mdev) has made its node.
pub fn wait_for_node(dev: &Path, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if std::fs::File::open(dev).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
