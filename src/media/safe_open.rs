//! Every open of a path that can be on a drive goes through here.
//!
//! A drive from anyone can carry a FIFO, a socket, a device node or a
//! symlink (to `/dev/zero`, `/dev/ptmx`, `/etc/…`) under any name: a
//! source's, an output's, a temporary file's. Opening one the ordinary way
//! blocks forever (a FIFO with no writer) or reads endless data. Here a path
//! is looked at with `lstat` first, then opened with `O_NOFOLLOW |
//! O_NONBLOCK | O_CLOEXEC` (a symlink in the last component is refused, a
//! FIFO cannot block the open), and `fstat` must say it is the same regular
//! file; only then is `O_NONBLOCK` cleared. New files are created with
//! `O_CREAT | O_EXCL | O_NOFOLLOW`, so nothing planted under their name is
//! followed or replaced.
//!
//! FFmpeg, ffprobe and flac open their files by name themselves: they are
//! handed a descriptor opened here instead (`pass_to_child`), as
//! `/proc/self/fd/N`, so a swap between our check and their open cannot
//! give them anything else.

use std::fs::{self, File, FileType, Metadata, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What a file that is not a regular file is, as the user reads it.
pub fn kind(t: FileType) -> Option<&'static str> {
    Some(if t.is_file() {
        return None;
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    })
}

/// What sits at `path` when it is something other than a regular file
/// (`None`: a regular file, or nothing at all).
pub fn special_kind(path: &Path) -> Option<&'static str> {
    fs::symlink_metadata(path)
        .ok()
        .and_then(|m| kind(m.file_type()))
}

fn name_of(path: &Path) -> String {
    path.file_name()
        .unwrap_or(path.as_os_str())
        .to_string_lossy()
        .into_owned()
}

/// "Film.dts is a FIFO, not a regular file".
fn not_regular(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} is {what}, not a regular file", name_of(path)),
    )
}

fn require_regular(path: &Path, meta: &Metadata) -> io::Result<()> {
    match kind(meta.file_type()) {
        None => Ok(()),
        Some(what) => Err(not_regular(path, what)),
    }
}

fn open_existing(path: &Path, write: bool) -> io::Result<File> {
    let before = fs::symlink_metadata(path)?;
    require_regular(path, &before)?;
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            // Swapped for a symlink since the lstat.
            Some(libc::ELOOP) => not_regular(path, "a symbolic link"),
            _ => e,
        })?;
    let meta = file.metadata()?;
    require_regular(path, &meta)?;
    if (meta.dev(), meta.ino()) != (before.dev(), before.ino()) {
        return Err(io::Error::other(format!(
            "{} was replaced while it was opened",
            name_of(path)
        )));
    }
    set_blocking(&file)?;
    Ok(file)
}

fn set_blocking(file: &File) -> io::Result<()> {
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens an existing regular file read-only, never following a symlink in
/// its last component and never blocking; anything else is refused with an
/// error that says what the file is.
pub fn open_regular(path: &Path) -> io::Result<File> {
    open_existing(path, false)
}

/// Opens an existing folder, never through a symlink in its last
/// component: a Blu-ray disc's root, whose descriptor FFmpeg's `bluray:`
/// input is handed (libbluray opens the disc's files below it by name).
pub fn open_folder(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is a symbolic link, not a folder", name_of(path)),
            ),
            Some(libc::ENOTDIR) => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a folder", name_of(path)),
            ),
            _ => e,
        })?;
    Ok(file)
}

/// The same, for reading and writing (our own temporary files).
pub fn open_regular_rw(path: &Path) -> io::Result<File> {
    open_existing(path, true)
}

/// Creates a new file for reading and writing: fails if anything at all
/// (a file, a symlink, a FIFO) already has the name.
pub fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .mode(0o644)
        .open(path)
        .map_err(|e| match (e.kind(), special_kind(path)) {
            (io::ErrorKind::AlreadyExists, Some(what)) => not_regular(path, what),
            _ => e,
        })
        .and_then(|f| set_blocking(&f).map(|()| f))
}

/// Creates one of our temporary files: a regular file left under its name
/// by a crash is ours and is removed first; anything else there is refused.
pub fn create_temp(path: &Path) -> io::Result<File> {
    match fs::symlink_metadata(path) {
        Ok(m) => {
            require_regular(path, &m)?;
            fs::remove_file(path)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    create_new(path)
}

/// Whether `path` still names the file `file` is open on.
pub fn still_names(path: &Path, file: &File) -> io::Result<bool> {
    let (now, ours) = (fs::symlink_metadata(path)?, file.metadata()?);
    Ok(now.file_type().is_file() && (now.dev(), now.ino()) == (ours.dev(), ours.ino()))
}

/// Renames `from` to `to` only if nothing has the name `to` (RENAME_NOREPLACE;
/// where the file system cannot do that, the check and the rename are two steps).
pub fn rename_no_replace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(io::Error::other);
    let (a, b) = (c(from)?, c(to)?);
    // SAFETY: two valid C strings.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::ENOTSUP) => {
            if fs::symlink_metadata(to).is_ok() {
                return Err(io::Error::from(io::ErrorKind::AlreadyExists));
            }
            fs::rename(from, to)
        }
        _ => Err(e),
    }
}

/// Hands an open file to a child process: the descriptor stays open across
/// its `exec` (in the child only, so no other child inherits it), and the
/// returned path opens that very file in the child: `/proc/self/fd/N`, or
/// a link to it named with `named_like`'s extension (FFmpeg's format
/// probing weighs the extension, so it decides as it would on the real
/// name). The file must stay open until the child has been spawned.
pub fn pass_to_child(command: &mut Command, file: &File, named_like: Option<&Path>) -> PathBuf {
    use std::os::unix::process::CommandExt;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl is async-signal-safe; the descriptor is open in the
    // child because it is open in the parent at the fork.
    unsafe {
        command.pre_exec(move || {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let direct = PathBuf::from(format!("/proc/self/fd/{fd}"));
    let ext = named_like
        .and_then(Path::extension)
        .and_then(|e| e.to_str())
        .filter(|e| e.len() <= 10 && e.bytes().all(|b| b.is_ascii_alphanumeric()));
    match (ext, fd_links()) {
        (Some(ext), Some(dir)) => {
            let link = dir.join(format!("{fd}.{ext}"));
            let made = std::os::unix::fs::symlink(&direct, &link);
            let ok = made.is_ok() || fs::read_link(&link).is_ok_and(|t| t == direct);
            if ok {
                link
            } else {
                direct
            }
        }
        _ => direct,
    }
}

/// A folder only this user can write, of links `N.ext` → `/proc/self/fd/N`
/// (the same for every process, so they are made once and shared).
fn fd_links() -> Option<&'static Path> {
    static DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        let base = ["RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR"]
            .iter()
            .filter_map(std::env::var_os)
            .map(PathBuf::from)
            .find(|p| p.is_absolute())
            .unwrap_or_else(std::env::temp_dir);
        // SAFETY: geteuid cannot fail.
        let uid = unsafe { libc::geteuid() };
        let dir = base.join(format!("dtsflac-fds-{uid}"));
        let _ = fs::DirBuilder::new().mode(0o700).create(&dir);
        // Someone else's folder, or a link planted in /tmp: not used.
        let m = fs::symlink_metadata(&dir).ok()?;
        (m.is_dir() && m.uid() == uid && m.permissions().mode() & 0o077 == 0).then_some(dir)
    })
    .as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    fn mkfifo(p: &Path) {
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    }

    /// Runs `f` on another thread; a call that blocks fails the test.
    fn within_seconds<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the open blocked")
    }

    fn open_error(p: PathBuf) -> String {
        within_seconds(move || open_regular(&p).map(|_| ()).unwrap_err().to_string())
    }

    #[test]
    fn only_regular_files_are_opened_and_the_error_says_what_the_file_is() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("real.dts"), b"data").unwrap();
        mkfifo(&d.join("fifo.dts"));
        let _socket = std::os::unix::net::UnixListener::bind(d.join("socket.dts")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", d.join("zero.dts")).unwrap();
        std::os::unix::fs::symlink("/dev/ptmx", d.join("ptmx.dts")).unwrap();
        std::os::unix::fs::symlink(d.join("real.dts"), d.join("alias.dts")).unwrap();
        std::os::unix::fs::symlink(d.join("fifo.dts"), d.join("to-fifo.dts")).unwrap();
        fs::create_dir(d.join("folder.dts")).unwrap();

        for (name, says) in [
            ("fifo.dts", "fifo.dts is a FIFO"),
            ("socket.dts", "socket.dts is a socket"),
            ("zero.dts", "zero.dts is a symbolic link"),
            ("ptmx.dts", "ptmx.dts is a symbolic link"),
            ("alias.dts", "alias.dts is a symbolic link"),
            ("to-fifo.dts", "to-fifo.dts is a symbolic link"),
            ("folder.dts", "folder.dts is a folder"),
        ] {
            let e = open_error(d.join(name));
            assert!(e.contains(says), "{name}: {e}");
        }
        assert!(open_error(PathBuf::from("/dev/null")).contains("null is a device"));
        assert!(open_regular_rw(&d.join("fifo.dts")).is_err());

        // A regular file opens, and reads block as usual (O_NONBLOCK cleared).
        let mut f = open_regular(&d.join("real.dts")).unwrap();
        let flags = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(flags & libc::O_NONBLOCK, 0);
        assert_eq!(
            unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GETFD) } & libc::FD_CLOEXEC,
            libc::FD_CLOEXEC
        );
        let mut s = String::new();
        f.read_to_string(&mut s).unwrap();
        assert_eq!(s, "data");
    }

    #[test]
    fn new_files_never_follow_or_replace_what_is_planted_under_their_name() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let victim = d.join("victim");
        fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, d.join(".x.part")).unwrap();
        mkfifo(&d.join(".y.part"));

        let e = create_new(&d.join(".x.part")).unwrap_err().to_string();
        assert!(e.contains("is a symbolic link"), "{e}");
        let e = create_temp(&d.join(".x.part")).unwrap_err().to_string();
        assert!(e.contains(".x.part is a symbolic link"), "{e}");
        let y = d.join(".y.part");
        let e = within_seconds(move || create_temp(&y).map(|_| ()).unwrap_err().to_string());
        assert!(e.contains(".y.part is a FIFO"), "{e}");
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert!(special_kind(&d.join(".y.part")) == Some("a FIFO"));

        // A regular leftover is ours: replaced by an empty file.
        fs::write(d.join(".z.part"), b"old").unwrap();
        let mut f = create_temp(&d.join(".z.part")).unwrap();
        f.write_all(b"new").unwrap();
        assert!(still_names(&d.join(".z.part"), &f).unwrap());
        assert_eq!(fs::read(d.join(".z.part")).unwrap(), b"new");

        // The rename into place never replaces what has the name.
        let e = rename_no_replace(&d.join(".z.part"), &d.join(".y.part")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(special_kind(&d.join(".y.part")), Some("a FIFO"));
        rename_no_replace(&d.join(".z.part"), &d.join("z")).unwrap();
        assert_eq!(fs::read(d.join("z")).unwrap(), b"new");
    }

    #[test]
    fn a_child_reads_the_file_that_was_checked_even_if_the_name_is_swapped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("Film.dts");
        fs::write(&p, b"checked").unwrap();
        let f = open_regular(&p).unwrap();
        fs::remove_file(&p).unwrap();
        mkfifo(&p);
        let mut cmd = Command::new("cat");
        let arg = pass_to_child(&mut cmd, &f, Some(&p));
        assert!(arg.to_string_lossy().ends_with(".dts"), "{arg:?}");
        let out = within_seconds(move || cmd.arg(arg).output().unwrap());
        assert!(out.status.success());
        assert_eq!(out.stdout, b"checked");
    }
}
