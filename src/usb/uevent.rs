//! Block-device hotplug events straight from the kernel: a
//! NETLINK_KOBJECT_UEVENT socket, no libudev. This works the same on
//! Raspberry Pi OS, on Yocto images with eudev or mdev, and in CI.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Add,
    Remove,
    /// Media change on card readers, loop devices (re)attached or detached.
    Change,
}

/// One uevent for a block device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockEvent {
    pub action: Action,
    /// Kernel name, e.g. `sda1`, `loop0p1` (`/dev/` + this is the node).
    pub devname: String,
    /// `disk` or `partition`.
    pub devtype: String,
    /// Sysfs path, e.g. `/devices/pci…/usb1/…/block/sda/sda1`.
    pub devpath: String,
    /// Set by the kernel when removable media was inserted or removed.
    pub media_change: bool,
}

/// Parses one datagram: `action@devpath` followed by NUL-separated KEY=VALUE.
pub fn parse(datagram: &[u8]) -> Option<BlockEvent> {
    let mut parts = datagram.split(|b| *b == 0).filter(|p| !p.is_empty());
    let header = String::from_utf8_lossy(parts.next()?).into_owned();
    // udevd re-broadcasts in its own binary format ("libudev" magic); ignore it.
    if !header.contains('@') {
        return None;
    }
    let vars: HashMap<String, String> = parts
        .filter_map(|p| {
            let s = String::from_utf8_lossy(p);
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    if vars.get("SUBSYSTEM").map(String::as_str) != Some("block") {
        return None;
    }
    let action = match vars.get("ACTION")?.as_str() {
        "add" => Action::Add,
        "remove" => Action::Remove,
        "change" => Action::Change,
        _ => return None,
    };
    Some(BlockEvent {
        action,
        devname: vars.get("DEVNAME")?.trim_start_matches("/dev/").to_string(),
        devtype: vars.get("DEVTYPE").cloned().unwrap_or_default(),
        devpath: vars.get("DEVPATH").cloned().unwrap_or_default(),
        media_change: vars.contains_key("DISK_MEDIA_CHANGE"),
    })
}

/// A bound uevent socket.
pub struct UeventSocket {
    fd: OwnedFd,
}

impl UeventSocket {
    pub fn open() -> io::Result<UeventSocket> {
        // SAFETY: plain socket(2)/bind(2) calls with a zeroed sockaddr_nl.
        unsafe {
            let fd = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_KOBJECT_UEVENT,
            );
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(fd);
            // A burst of events (a hub with four drives) must not be lost.
            let size: libc::c_int = 4 << 20;
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                &size as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            addr.nl_groups = 1; // the kernel's broadcast group
            let r = libc::bind(
                fd.as_raw_fd(),
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            );
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(UeventSocket { fd })
        }
    }

    /// Waits up to `timeout` for the next block-device event. `Ok(None)` on
    /// timeout or for events of other subsystems.
    pub fn next(&self, timeout: std::time::Duration) -> io::Result<Option<BlockEvent>> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(None)
            } else {
                Err(e)
            };
        }
        if n == 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; 16 << 10];
        // SAFETY: buf is valid for its length.
        let len = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr() as *mut libc::c_void,
                buf.len(),
                0,
            )
        };
        if len < 0 {
            let e = io::Error::last_os_error();
            // ENOBUFS: events were dropped; the caller rescans sysfs.
            return Err(e);
        }
        Ok(parse(&buf[..len as usize]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_kernel_block_event() {
        let msg = b"add@/devices/pci0000:00/usb1/1-1/host0/block/sda/sda1\0ACTION=add\0DEVPATH=/devices/pci0000:00/usb1/1-1/host0/block/sda/sda1\0SUBSYSTEM=block\0DEVNAME=sda1\0DEVTYPE=partition\0SEQNUM=1234\0";
        let e = parse(msg).unwrap();
        assert_eq!(e.action, Action::Add);
        assert_eq!(e.devname, "sda1");
        assert_eq!(e.devtype, "partition");
        assert!(e.devpath.contains("/usb1/"));
        assert!(!e.media_change);
    }

    #[test]
    fn ignores_other_subsystems_and_udev_rebroadcasts() {
        assert!(parse(b"add@/devices/x\0ACTION=add\0SUBSYSTEM=net\0DEVNAME=eth0\0").is_none());
        assert!(parse(b"libudev\0\xfe\xed\xca\xfe").is_none());
    }
}
