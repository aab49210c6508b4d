//! What the file systems say about themselves (statvfs, statfs): free and
//! total space, and whether a path lies on a FUSE mount.

use std::path::Path;

/// Free bytes of the file system holding `dir` (see `space`).
pub fn free_bytes(dir: &Path) -> Option<u64> {
    space(dir).map(|(free, _)| free)
}

/// Free and total bytes of the file system holding `dir`; `None` when it
/// cannot tell (some FUSE drivers, such as fusefat, report no sizes at all).
pub fn space(dir: &Path) -> Option<(u64, u64)> {
    let c = c_path(dir)?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 || st.f_blocks == 0 {
        return None;
    }
    let unit = st.f_frsize as u64;
    Some((st.f_bavail as u64 * unit, st.f_blocks as u64 * unit))
}

/// A path for a libc call; `None` if it holds a NUL byte.
fn c_path(path: &Path) -> Option<std::ffi::CString> {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::CString::new(path.as_os_str().as_bytes()).ok()
}

/// Whether `path` lies on a FUSE file system (exfat-fuse, ntfs-3g, fusefat).
/// When it cannot tell, the answer is yes: streaming is safe everywhere.
pub(crate) fn on_fuse(path: &Path) -> bool {
    const FUSE_SUPER_MAGIC: i64 = 0x6573_5546;
    let Some(c) = c_path(path) else {
        return true;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid NUL-terminated path and st a valid out-pointer.
    if unsafe { libc::statfs(c.as_ptr(), &mut st) } != 0 {
        return true;
    }
    st.f_type as i64 == FUSE_SUPER_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_temp_folder_has_sizes_and_is_not_fuse() {
        let dir = std::env::temp_dir();
        let (free, total) = space(&dir).expect("the temp folder's file system reports sizes");
        assert!(free <= total);
        assert!(free_bytes(&dir).is_some());
        assert!(!on_fuse(Path::new("/proc")));
    }

    #[test]
    fn a_path_with_a_nul_byte_tells_nothing() {
        let bad = Path::new("a\0b");
        assert_eq!(space(bad), None);
        // Streaming is the safe answer.
        assert!(on_fuse(bad));
    }
}
