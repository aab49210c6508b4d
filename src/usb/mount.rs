//! Mounting untrusted USB file systems safely, and taking them down again.
//!
//! The kernel driver is tried first; when the kernel has none for the file
//! system (common for exFAT, NTFS and even FAT on small boxes, and in CI) the
//! FUSE driver is used instead. Every mount is `nosuid,nodev,noexec,noatime`,
//! and FAT/exFAT/NTFS get fixed owners because they carry none of their own.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::superblock::{FsInfo, FsType};
use crate::config::UsbConfig;

/// Which driver serves a mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Driver {
    Kernel(&'static str),
    Fuse(&'static str),
}

impl Driver {
    pub fn describe(&self) -> String {
        match self {
            Driver::Kernel(name) => format!("kernel {name}"),
            Driver::Fuse(helper) => format!("FUSE {helper}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Mounted {
    pub device: PathBuf,
    pub mount_point: PathBuf,
    pub driver: Driver,
    pub read_only: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MountError(pub String);

fn kernel_name(fs: FsType) -> &'static str {
    match fs {
        FsType::Vfat => "vfat",
        FsType::Exfat => "exfat",
        FsType::Ntfs => "ntfs3",
        // The ext4 driver serves ext2 and ext3 too.
        FsType::Ext2 | FsType::Ext3 | FsType::Ext4 => "ext4",
    }
}

fn fuse_helper(fs: FsType) -> Option<&'static str> {
    match fs {
        FsType::Vfat => Some("fusefat"),
        FsType::Exfat => Some("mount.exfat-fuse"),
        FsType::Ntfs => Some("ntfs-3g"),
        _ => None,
    }
}

fn owner_options(usb: &UsbConfig) -> String {
    format!("uid={},gid={},umask={}", usb.uid, usb.gid, usb.umask)
}

fn kernel_data(fs: FsType, usb: &UsbConfig) -> String {
    match fs {
        // flush: write out on close, so a file is on the stick when we say so.
        FsType::Vfat => format!("{},flush,utf8,shortname=mixed", owner_options(usb)),
        FsType::Exfat | FsType::Ntfs => owner_options(usb),
        FsType::Ext2 | FsType::Ext3 | FsType::Ext4 => String::new(),
    }
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("paths have no NUL bytes")
}

fn kernel_mount(
    dev: &Path,
    at: &Path,
    fstype: &str,
    data: &str,
    read_only: bool,
) -> io::Result<()> {
    let mut flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_NOATIME;
    if read_only {
        flags |= libc::MS_RDONLY;
    }
    let (src, dst) = (cstr(dev), cstr(at));
    let fstype = CString::new(fstype).unwrap();
    let data = CString::new(data).unwrap();
    // SAFETY: all pointers are valid NUL-terminated strings for the call.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            dst.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ptr() as *const libc::c_void,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn fuse_mount(
    helper: &'static str,
    fs: FsType,
    dev: &Path,
    at: &Path,
    usb: &UsbConfig,
    read_only: bool,
) -> Result<(), String> {
    let mut options = String::from("nosuid,nodev,noexec,noatime");
    match fs {
        // fusefat mounts read-only unless asked for its write support.
        FsType::Vfat => options.push_str(if read_only { ",ro" } else { ",rw+" }),
        _ => {
            options.push(',');
            options.push_str(&owner_options(usb));
            if read_only {
                options.push_str(",ro");
            }
        }
    }
    let out = Command::new(helper)
        .arg("-o")
        .arg(&options)
        .arg(dev)
        .arg(at)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| {
            format!("cannot run the FUSE driver `{helper}` ({e}); install it with `sudo apt-get install exfat-fuse ntfs-3g fusefat`")
        })?;
    // Some helpers exit 0 before the mount is visible, others report errors
    // only on stderr: trust the mount table.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if is_mount_point(at) {
            return Ok(());
        }
        if !out.status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no error message");
    Err(format!("{helper} failed: {}", last.trim()))
}

/// Mounts `dev` at `at` (created if needed), read-write when possible and
/// read-only for write-protected media.
pub fn mount(dev: &Path, info: &FsInfo, at: &Path, usb: &UsbConfig) -> Result<Mounted, MountError> {
    std::fs::create_dir_all(at).map_err(|e| {
        MountError(format!(
            "cannot create the mount point {}: {e}",
            at.display()
        ))
    })?;
    let fstype = kernel_name(info.fs);
    let data = kernel_data(info.fs, usb);
    let mut kernel_error = None;
    for read_only in [false, true] {
        match kernel_mount(dev, at, fstype, &data, read_only) {
            Ok(()) => {
                return Ok(Mounted {
                    device: dev.to_path_buf(),
                    mount_point: at.to_path_buf(),
                    driver: Driver::Kernel(fstype),
                    read_only,
                })
            }
            // Write-protected medium or read-only loop device: try read-only.
            Err(e)
                if !read_only
                    && matches!(e.raw_os_error(), Some(libc::EROFS) | Some(libc::EACCES)) =>
            {
                kernel_error = Some(e);
            }
            Err(e) => {
                kernel_error = Some(e);
                break;
            }
        }
    }
    let kernel_error = kernel_error.expect("one attempt was made");
    let no_kernel_driver = kernel_error.raw_os_error() == Some(libc::ENODEV);
    let Some(helper) = fuse_helper(info.fs).filter(|_| no_kernel_driver) else {
        return Err(MountError(format!(
            "cannot mount the {} file system ({kernel_error})",
            info.fs.name()
        )));
    };
    let mut errors = Vec::new();
    for read_only in [false, true] {
        match fuse_mount(helper, info.fs, dev, at, usb, read_only) {
            Ok(()) => {
                return Ok(Mounted {
                    device: dev.to_path_buf(),
                    mount_point: at.to_path_buf(),
                    driver: Driver::Fuse(helper),
                    read_only,
                })
            }
            Err(e) => errors.push(e),
        }
    }
    Err(MountError(format!(
        "cannot mount the {} file system: the kernel has no driver for it and {}",
        info.fs.name(),
        errors.join("; ")
    )))
}

/// Flushes a mounted file system to the device.
pub fn sync_filesystem(at: &Path) {
    if let Ok(dir) = std::fs::File::open(at) {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open descriptor.
        unsafe { libc::syncfs(dir.as_raw_fd()) };
    }
}

/// Syncs and unmounts cleanly, waiting for a FUSE driver to finish writing.
pub fn unmount(m: &Mounted) -> Result<(), MountError> {
    sync_filesystem(&m.mount_point);
    let target = cstr(&m.mount_point);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // SAFETY: a valid path string.
        let r = unsafe { libc::umount2(target.as_ptr(), 0) };
        if r == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINVAL) | Some(libc::ENOENT) if !is_mount_point(&m.mount_point) => break,
            Some(libc::EBUSY) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            _ => {
                return Err(MountError(format!(
                    "cannot unmount {}: {e}",
                    m.mount_point.display()
                )))
            }
        }
    }
    if let Driver::Fuse(helper) = m.driver {
        wait_for_helper_exit(helper, &m.device, Duration::from_secs(20));
    }
    let _ = std::fs::remove_dir(&m.mount_point);
    Ok(())
}

/// Detaches a mount whose device is gone; nothing can be written any more.
pub fn detach(at: &Path) {
    let target = cstr(at);
    // SAFETY: a valid path string.
    unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
    let _ = std::fs::remove_dir(at);
}

/// A FUSE driver may still be writing after the kernel dropped the mount:
/// wait until no process of that driver holds the device.
fn wait_for_helper_exit(helper: &str, device: &Path, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline && helper_running(helper, device) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn helper_running(helper: &str, device: &Path) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    let dev = device.as_os_str().as_bytes();
    procs.flatten().any(|p| {
        let Ok(cmdline) = std::fs::read(p.path().join("cmdline")) else {
            return false;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_helper = args.first().is_some_and(|a| {
            Path::new(std::ffi::OsStr::from_bytes(a))
                .file_name()
                .is_some_and(|n| {
                    n.as_bytes() == helper.as_bytes() || helper.ends_with(&*n.to_string_lossy())
                })
        });
        is_helper && args.contains(&dev)
    })
}

/// Mount table entries: (device or source, mount point).
pub fn mounts() -> Vec<(String, PathBuf)> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mounts") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let src = f.next()?;
            let at = f.next()?;
            Some((unescape(src), PathBuf::from(unescape(at))))
        })
        .collect()
}

/// /proc/mounts writes space, tab, newline and backslash as octal escapes.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn is_mount_point(at: &Path) -> bool {
    mounts().iter().any(|(_, m)| m == at)
}

/// Where a device is mounted already (by anyone), if anywhere.
pub fn mounted_at(dev: &Path) -> Option<PathBuf> {
    let dev_s = dev.to_string_lossy();
    mounts()
        .into_iter()
        .find(|(src, _)| *src == dev_s)
        .map(|(_, at)| at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mount_table_paths() {
        assert_eq!(unescape("/media/My\\040Drive"), "/media/My Drive");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
