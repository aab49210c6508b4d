//! End-to-end tests of `dtsflac run`, the box itself: real disk images
//! (exFAT, NTFS, FAT32, ext4) attached as loop devices while the daemon runs,
//! real kernel uevents, real mounts (kernel ext4, FUSE for the others), the
//! real HTTP API, and the drives read back afterwards.
//!
//! These need root, loop devices and FUSE, which CI has; without them they
//! fail and say what is missing. They run one at a time: each daemon takes
//! every loop device it sees as a drive.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

static ONE_DAEMON_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_DAEMON_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

const TOKEN: &str = "Kq7-Vx2m-Lp9R";

fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

// ----- disk images -----

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fs {
    Exfat,
    Ntfs,
    Vfat,
    Ext4,
}

struct Image {
    path: PathBuf,
    fs: Fs,
    loop_dev: Option<String>,
    /// Offset and size of the file system's partition, for partitioned images.
    partition: Option<(u64, u64)>,
}

impl Image {
    /// Makes a file system image labelled `label` holding `files`
    /// (path on the drive → content) and, for ext4, `symlinks`.
    fn new(dir: &Path, fs: Fs, label: &str, size_mb: u64, files: &[(&str, &[u8])]) -> Image {
        let path = dir.join(format!("{label}.img"));
        let f = fs::File::create(&path).unwrap();
        f.set_len(size_mb << 20).unwrap();
        drop(f);
        let p = path.to_str().unwrap();
        match fs {
            Fs::Exfat => sh("mkfs.exfat", &["-L", label, p]),
            Fs::Ntfs => sh("mkntfs", &["-F", "-f", "-q", "-L", label, p]),
            Fs::Vfat => sh("mkfs.vfat", &["-F", "32", "-n", label, p]),
            Fs::Ext4 => sh("mkfs.ext4", &["-q", "-F", "-m", "0", "-L", label, p]),
        };
        let image = Image {
            path,
            fs,
            loop_dev: None,
            partition: None,
        };
        image.with_mounted(|root| {
            for (name, content) in files {
                let target = root.join(name);
                fs::create_dir_all(target.parent().unwrap()).unwrap();
                fs::write(&target, content).unwrap();
            }
        });
        image
    }

    /// An ext4 file system in the first partition of an MBR-partitioned
    /// disk image, filled from `files`.
    fn partitioned(dir: &Path, label: &str, size_mb: u64, files: &[(&str, &[u8])]) -> Image {
        let path = dir.join(format!("{label}.img"));
        let tree = write_tree(dir, label, files);
        let mut mbr = vec![0u8; 512];
        let start: u32 = 2048;
        let sectors = ((size_mb << 20) / 512) as u32 - start;
        let entry = &mut mbr[446..462];
        entry[4] = 0x83; // Linux
        entry[8..12].copy_from_slice(&start.to_le_bytes());
        entry[12..16].copy_from_slice(&sectors.to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        let f = fs::File::create(&path).unwrap();
        f.set_len(size_mb << 20).unwrap();
        std::os::unix::fs::FileExt::write_all_at(&f, &mbr, 0).unwrap();
        drop(f);
        let image = Image {
            path,
            fs: Fs::Ext4,
            loop_dev: None,
            partition: Some((u64::from(start) * 512, u64::from(sectors) * 512)),
        };
        // Reach the partition the way a computer's kernel would see it.
        let dev = image.attach_partition();
        mkfs_ext4_from(label, &tree, &dev);
        sh("losetup", &["-d", &dev]);
        image
    }

    /// An ext4 image filled from `files` by `mkfs.ext4 -d`, without a loop
    /// device or a mount: quick for many files, and safe while a daemon runs
    /// (it would take any loop device as a drive).
    fn ext4(dir: &Path, label: &str, size_mb: u64, files: &[(&str, &[u8])]) -> Image {
        let path = dir.join(format!("{label}.img"));
        let tree = write_tree(dir, label, files);
        let f = fs::File::create(&path).unwrap();
        f.set_len(size_mb << 20).unwrap();
        drop(f);
        mkfs_ext4_from(label, &tree, path.to_str().unwrap());
        Image {
            path,
            fs: Fs::Ext4,
            loop_dev: None,
            partition: None,
        }
    }

    fn attach_partition(&self) -> String {
        let (offset, size) = self.partition.expect("a partitioned image");
        sh(
            "losetup",
            &[
                "-f",
                "--show",
                "-o",
                &offset.to_string(),
                "--sizelimit",
                &size.to_string(),
                self.path.to_str().unwrap(),
            ],
        )
    }

    /// Mounts the image privately (no daemon may be running) and runs `f`.
    fn with_mounted<T>(&self, f: impl FnOnce(&Path) -> T) -> T {
        let dev = match self.partition {
            Some(_) => self.attach_partition(),
            None => sh("losetup", &["-f", "--show", self.path.to_str().unwrap()]),
        };
        let at = tempfile::tempdir().unwrap();
        let at_s = at.path().to_str().unwrap();
        match self.fs {
            Fs::Ext4 => sh("mount", &[&dev, at_s]),
            Fs::Exfat => sh("mount.exfat-fuse", &[&dev, at_s]),
            Fs::Ntfs => sh("ntfs-3g", &[&dev, at_s]),
            Fs::Vfat => {
                let status = Command::new("fusefat")
                    .args(["-o", "rw+", &dev, at_s])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .expect("cannot run fusefat: apt-get install fusefat");
                assert!(status.success(), "fusefat failed");
                String::new()
            }
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(at.path())));
        sh("sync", &[]);
        let _ = Command::new("umount").arg(at.path()).status();
        // FUSE drivers finish writing after the unmount returns.
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("losetup").args(["-d", &dev]).status();
        match result {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    }

    /// Plugs the image in as a drive (what the daemon sees as a USB stick).
    fn attach(&mut self, read_only: bool) -> String {
        // -P: a kernel with MBR support makes the partition devices itself.
        let mut args = vec!["-f", "--show", "-P"];
        if read_only {
            args.push("-r");
        }
        args.push(self.path.to_str().unwrap());
        let dev = sh("losetup", &args);
        self.loop_dev = Some(dev.clone());
        dev
    }

    fn detach(&mut self) {
        if let Some(dev) = self.loop_dev.take() {
            for _ in 0..50 {
                if Command::new("losetup")
                    .args(["-d", &dev])
                    .status()
                    .unwrap()
                    .success()
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            panic!("cannot detach {dev}");
        }
    }

    /// Writes to the device's uevent file: the kernel then announces it as
    /// removed or added, exactly as when a stick is pulled or plugged.
    fn uevent(&self, action: &str) {
        let dev = self.loop_dev.as_ref().expect("attached");
        let name = Path::new(dev).file_name().unwrap().to_str().unwrap();
        fs::write(format!("/sys/block/{name}/uevent"), action).unwrap();
    }
}

/// Writes `files` into a fresh folder `LABEL-tree` under `dir`, for `mkfs -d`.
fn write_tree(dir: &Path, label: &str, files: &[(&str, &[u8])]) -> PathBuf {
    let tree = dir.join(format!("{label}-tree"));
    for (name, content) in files {
        let target = tree.join(name);
        fs::create_dir_all(target.parent().unwrap()).unwrap();
        fs::write(&target, content).unwrap();
    }
    tree
}

impl Drop for Image {
    /// Every loop device still over this image (ours, or one the daemon made
    /// for a partition) goes, so a failed test leaves nothing attached.
    fn drop(&mut self) {
        let Ok(out) = Command::new("losetup").arg("-j").arg(&self.path).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some(dev) = line.split(':').next() {
                let _ = Command::new("losetup").args(["-d", dev]).status();
            }
        }
    }
}

// ----- the daemon -----

struct Daemon {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    log: PathBuf,
}

/// Decodes an HTTP/1.1 chunked body.
/// An ext4 file system on `target` (an image or a device), filled from `tree`.
fn mkfs_ext4_from(label: &str, tree: &Path, target: &str) {
    mkfs_ext4_with(label, tree, target, &[]);
}

/// The same, with more `mkfs.ext4` options (`-U clear`, inode counts).
fn mkfs_ext4_with(label: &str, tree: &Path, target: &str, options: &[&str]) {
    let tree = tree.to_str().unwrap();
    let mut args = vec!["-q", "-F", "-m", "0", "-L", label];
    args.extend_from_slice(options);
    args.extend(["-d", tree, target]);
    sh("mkfs.ext4", &args);
}

impl Image {
    /// An ext4 image file that is not attached.
    fn ext4_at(path: PathBuf) -> Image {
        Image {
            path,
            fs: Fs::Ext4,
            loop_dev: None,
            partition: None,
        }
    }
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Daemon {
    fn start(dir: &Path) -> Daemon {
        Daemon::start_env(dir, &[])
    }

    /// Starts the daemon with extra environment variables (a `PATH` with
    /// stand-in tools first, say).
    fn start_env(dir: &Path, env: &[(&str, &OsStr)]) -> Daemon {
        let port = free_port();
        let config = Daemon::write_config(dir, port, "");
        Daemon::launch(dir, &config, port, env)
    }

    /// The tests' config, with `web_extra` added to its `[web]` table.
    fn write_config(dir: &Path, port: u16, web_extra: &str) -> PathBuf {
        let config = dir.join("dtsflac.toml");
        fs::write(
            &config,
            format!(
                "state_dir = \"{state}\"\n[web]\nlisten = \"127.0.0.1:{port}\"\ntoken = \"{TOKEN}\"\n{web_extra}\
                 [usb]\nmount_root = \"{media}\"\nallow_loop = true\n[convert]\njobs = 2\n\
                 [panel]\ndisplay = \"virtual\"\nbuttons = \"virtual\"\n",
                state = dir.join("state").display(),
                media = dir.join("media").display(),
            ),
        )
        .unwrap();
        config
    }

    fn start_with(dir: &Path, config: &Path, port: u16) -> Daemon {
        Daemon::launch(dir, config, port, &[])
    }

    fn launch(dir: &Path, config: &Path, port: u16, env: &[(&str, &OsStr)]) -> Daemon {
        Daemon::launch_limited(dir, config, port, env, None)
    }

    /// Launches with `RLIMIT_NOFILE` set to `(soft, hard)` when given.
    fn launch_limited(
        dir: &Path,
        config: &Path,
        port: u16,
        env: &[(&str, &OsStr)],
        nofile: Option<(u64, u64)>,
    ) -> Daemon {
        use std::os::unix::process::CommandExt;
        let log = dir.join(format!("daemon-{port}.log"));
        let mut command = Command::new(env!("CARGO_BIN_EXE_dtsflac"));
        if let Some((soft, hard)) = nofile {
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            // SAFETY: setrlimit is async-signal-safe.
            unsafe {
                command.pre_exec(move || match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                });
            }
        }
        let child = command
            .args(["run", "--config"])
            .arg(config)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(fs::File::options().append(true).open(&log).unwrap())
            .spawn()
            .unwrap();
        let mut d = Daemon {
            child: Some(child),
            port,
            dir: dir.to_path_buf(),
            log,
        };
        d.wait_for("the API to answer", Duration::from_secs(20), |d| {
            d.get("/api/status")
                .map(|(code, _)| code == 200)
                .unwrap_or(false)
        });
        d
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().expect("the daemon is running").id() as i32
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> std::io::Result<(u16, String)> {
        self.request_within(method, path, token, Duration::from_secs(30))
    }

    /// A request whose connection and every read give up after `limit`.
    fn request_within(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        limit: Duration,
    ) -> std::io::Result<(u16, String)> {
        let address = std::net::SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut s = TcpStream::connect_timeout(&address, limit)?;
        s.set_read_timeout(Some(limit))?;
        s.set_write_timeout(Some(limit))?;
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        s.read_to_string(&mut response)?;
        let code = response
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let (head, raw_body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(raw_body)
        } else {
            raw_body.to_string()
        };
        Ok((code, body))
    }

    fn get(&self, path: &str) -> std::io::Result<(u16, String)> {
        self.request("GET", path, None)
    }

    fn post(&self, path: &str) -> u16 {
        self.request("POST", path, Some(TOKEN)).unwrap().0
    }

    fn status(&self) -> Value {
        let (code, body) = self.get("/api/status").expect("status");
        assert_eq!(code, 200, "{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("bad JSON ({e}): {body}"))
    }

    fn wait_for(&mut self, what: &str, limit: Duration, mut ok: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if ok(self) {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "the daemon exited ({status}) while waiting for {what}:\n{}",
                        self.log()
                    );
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = self
            .request_within("GET", "/api/status", None, Duration::from_secs(5))
            .map_or_else(|e| format!("(no answer: {e})"), |(_, b)| b);
        panic!(
            "timed out waiting for {what}\nstatus: {status}\nlog:\n{}",
            self.log()
        );
    }

    fn drive<'a>(status: &'a Value, label: &str) -> Option<&'a Value> {
        status["drives"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["label"] == label)
    }

    fn has_job_in(&self, state: &str) -> bool {
        self.status()["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["state"] == state)
    }

    /// Waits until some job is in `state`.
    fn wait_any_job(&mut self, what: &str, state: &str, limit: Duration) {
        self.wait_for(what, limit, |d| d.has_job_in(state));
    }

    fn wait_drive_state(&mut self, label: &str, state: &str, limit: Duration) -> Value {
        self.wait_for(&format!("drive {label} to be {state}"), limit, |d| {
            Daemon::drive(&d.status(), label).is_some_and(|x| x["state"] == state)
        });
        Daemon::drive(&self.status(), label).unwrap().clone()
    }

    /// Waits until the drive is listed in a state other than `states`, and
    /// returns it as it was then.
    fn wait_drive_leaves(&mut self, label: &str, states: &[&str], limit: Duration) -> Value {
        let mut seen = None;
        self.wait_for(&format!("drive {label} to leave {states:?}"), limit, |d| {
            seen = Daemon::drive(&d.status(), label)
                .filter(|x| !states.iter().any(|s| x["state"] == *s))
                .cloned();
            seen.is_some()
        });
        seen.unwrap()
    }

    /// Ejects through the API and waits until the drive is safe to pull.
    fn eject(&mut self, drive_id: &Value, label: &str) -> Value {
        assert_eq!(self.post(&format!("/api/drives/{drive_id}/eject")), 202);
        self.wait_drive_state(label, "ejected", Duration::from_secs(60))
    }

    fn jobs_of(&self, drive_id: &Value) -> Vec<Value> {
        self.status()["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["drive_id"] == *drive_id)
            .cloned()
            .collect()
    }

    /// SIGKILL: what a power cut does to the process.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait: a clean stop (a daemon that hangs is killed after a
    /// minute, so a failing test still ends).
    fn stop(&mut self) {
        self.terminate(Duration::from_secs(60));
    }

    /// SIGTERM, then waits up to `limit` for the daemon to exit. Returns its
    /// exit status and how long it took, or `None` if it had to be killed.
    fn terminate(&mut self, limit: Duration) -> Option<(std::process::ExitStatus, Duration)> {
        let mut c = self.child.take()?;
        let sent = Instant::now();
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        while sent.elapsed() < limit {
            if let Ok(Some(status)) = c.try_wait() {
                return Some((status, sent.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }

    /// The daemon's children running `program` right now.
    fn children_named(&self, program: &str) -> Vec<Proc> {
        let pid = self.pid();
        processes()
            .into_iter()
            .filter(|p| p.ppid == pid && p.name == program)
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        // Leave no process and no mount behind if a test failed half-way:
        // anything still working on the test's files (a tool, a mount helper)
        // goes first, so nothing mounts after the clean-up.
        for p in processes_mentioning(&self.dir) {
            unsafe { libc::kill(p.pid, libc::SIGKILL) };
        }
        for at in mounts_under(&self.dir.join("media")) {
            let _ = Command::new("umount").arg("-l").arg(at).status();
        }
    }
}

/// A process, as /proc shows it.
#[derive(Debug)]
struct Proc {
    pid: i32,
    ppid: i32,
    /// The kernel's short name (`comm`).
    name: String,
    args: Vec<String>,
}

impl Proc {
    fn cmdline(&self) -> String {
        self.args.join(" ")
    }
}

fn processes() -> Vec<Proc> {
    let mut all = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        // "pid (name) state ppid ...": the name may hold spaces and parentheses.
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let args = fs::read(entry.path().join("cmdline"))
            .map(|c| {
                c.split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        all.push(Proc {
            pid,
            ppid,
            name: stat[open + 1..close].to_string(),
            args,
        });
    }
    all
}

/// Processes (other than this test) whose command line names something
/// under `dir`.
fn processes_mentioning(dir: &Path) -> Vec<Proc> {
    let me = std::process::id() as i32;
    let dir = dir.display().to_string();
    processes()
        .into_iter()
        .filter(|p| p.pid != me && p.cmdline().contains(&dir))
        .collect()
}

/// Mount points at or under `root`, from /proc/self/mountinfo.
fn mounts_under(root: &Path) -> Vec<String> {
    let root = root.display().to_string();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        // The table writes spaces and tabs as octal escapes.
        .map(|at| at.replace("\\040", " ").replace("\\011", "\t"))
        .filter(|at| *at == root || at.starts_with(&format!("{root}/")))
        .collect()
}

/// A process stopped with SIGSTOP until this is dropped (SIGCONT), so a
/// failing assertion never leaves it frozen.
struct Frozen(i32);

impl Frozen {
    fn new(pid: i32) -> Frozen {
        assert_eq!(
            unsafe { libc::kill(pid, libc::SIGSTOP) },
            0,
            "SIGSTOP {pid}"
        );
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0, libc::SIGCONT) };
    }
}

fn require_root_tools() {
    assert!(
        unsafe { libc::geteuid() } == 0,
        "the daemon tests need root (loop devices, mounts); CI runs them as root"
    );
    for tool in [
        "losetup",
        "mkfs.exfat",
        "mkntfs",
        "mkfs.vfat",
        "mkfs.ext4",
        "mount.exfat-fuse",
        "ntfs-3g",
        "fusefat",
    ] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success(),
            "`{tool}` is missing: apt-get install exfatprogs exfat-fuse ntfs-3g fusefat dosfstools e2fsprogs (./scripts/install-deps.sh does it)"
        );
    }
    assert!(
        Path::new("/dev/fuse").exists(),
        "/dev/fuse is missing: the FUSE drivers need it"
    );
}

fn sample(name: &str) -> Vec<u8> {
    fs::read(samples().join(name)).unwrap()
}

fn is_mounted(path: &str) -> bool {
    fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(path))
}

/// Five minutes of DTS 5.1 (FFmpeg's encoder, 16-bit source): long enough to
/// be caught mid-conversion.
fn long_dts(dir: &Path) -> Vec<u8> {
    let segment = dir.join("segment.dts");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=500:sample_rate=48000:duration=10",
            "-af",
            "pan=5.1(side)|FL=c0|FR=c0|FC=c0|LFE=c0|SL=c0|SR=c0",
            "-c:a",
            "dca",
            "-strict",
            "-2",
            "-f",
            "dts",
        ],
        &segment,
    );
    fs::read(&segment).unwrap().repeat(30)
}

#[test]
fn drives_of_every_file_system_are_converted_exactly_and_ejected_safely() {
    let _one = serial();
    require_root_tools();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    // Something off the drive that a symlink on it points to.
    let outside = dir.join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(
        outside.join("Secret.dtshd"),
        sample("xll_51_24_48_768.dtshd"),
    )
    .unwrap();

    let master = sample("xll_71_24_48_768_0.dtshd");
    let sixteen = sample("xll_51_16_192_768_0.dtshd");
    let files: Vec<(&str, &[u8])> = vec![
        ("Concerts/Live at the Hall.dtshd", &master),
        ("Hi-Res/Studio 192k.dtshd", &sixteen),
    ];
    let mut images = vec![
        Image::new(dir, Fs::Exfat, "EXFATDRIVE", 64, &files),
        Image::new(dir, Fs::Ntfs, "NTFSDRIVE", 64, &files),
        Image::new(dir, Fs::Vfat, "FATDRIVE", 64, &files),
        Image::new(dir, Fs::Ext4, "EXTDRIVE", 64, &files),
        Image::partitioned(dir, "PARTED", 64, &files),
    ];
    images[3].with_mounted(|root| {
        std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("etc-link")).unwrap();
    });

    let mut daemon = Daemon::start(dir);
    for image in &mut images {
        image.attach(false);
    }
    let labels = ["EXFATDRIVE", "NTFSDRIVE", "FATDRIVE", "EXTDRIVE", "PARTED"];
    let expected_fs = ["exfat", "ntfs", "vfat", "ext4", "ext4"];
    for (label, fs_name) in labels.iter().zip(expected_fs) {
        let drive = daemon.wait_drive_state(label, "idle", Duration::from_secs(120));
        assert_eq!(drive["fs"], fs_name, "{drive}");
        if *label == "PARTED" {
            // The partition is the drive, not the whole disk around it
            // (a partition device, or our loop device at its offset).
            let disk = images[4].loop_dev.clone().unwrap();
            assert_ne!(drive["device"], disk.as_str(), "{drive}");
        }
        let mount_point = drive["mount_point"].as_str().unwrap().to_string();
        assert!(
            is_mounted(&mount_point),
            "{label} not mounted at {mount_point}"
        );
        let jobs = daemon.jobs_of(&drive["id"]);
        assert_eq!(jobs.len(), 2, "{label}: {jobs:?}");
        for job in &jobs {
            assert_eq!(job["state"], "done", "{label}: {job}");
            assert_eq!(job["progress"], 1.0);
            let source = job["source"].as_str().unwrap();
            assert!(
                source.starts_with(&mount_point),
                "{source} is off the drive"
            );
        }
    }
    // The status API is open; every control needs the token.
    let (code, _) = daemon.request("POST", "/api/pause", None).unwrap();
    assert_eq!(code, 401);
    let (code, _) = daemon.request("POST", "/api/pause", Some("wrong")).unwrap();
    assert_eq!(code, 401);
    let status = daemon.status();
    let exfat_id = Daemon::drive(&status, "EXFATDRIVE").unwrap()["id"].clone();
    assert_eq!(
        daemon
            .request("POST", &format!("/api/drives/{exfat_id}/eject"), None)
            .unwrap()
            .0,
        401
    );
    assert_eq!(daemon.post("/api/drives/999999/eject"), 404);

    for label in labels {
        let drive = Daemon::drive(&daemon.status(), label).unwrap().clone();
        let mount_point = drive["mount_point"].as_str().unwrap().to_string();
        let ejected = daemon.eject(&drive["id"], label);
        assert!(ejected["mount_point"].is_null());
        assert!(
            !is_mounted(&mount_point),
            "{label} still mounted after eject"
        );
    }
    for image in &mut images {
        image.detach();
    }
    daemon.stop();
    assert!(
        fs::read_dir(&outside).unwrap().count() == 1,
        "the symlink off the drive was followed: {:?}",
        fs::read_dir(&outside).unwrap().collect::<Vec<_>>()
    );

    // Read the drives back as the user would, on a computer.
    for image in &images {
        image.with_mounted(|root| {
            assert_matches_reference(
                &root.join("Concerts/Live at the Hall.flac"),
                "xll_71_24_48_768_0",
            );
            assert_matches_reference(&root.join("Hi-Res/Studio 192k.flac"), "xll_51_16_192_768_0");
            let leftovers: Vec<String> = walk(root)
                .into_iter()
                .filter(|p| p.contains(".dtsflac."))
                .collect();
            assert!(
                leftovers.is_empty(),
                "{:?}: temp files left: {leftovers:?}",
                image.fs
            );
            assert_eq!(
                fs::read(root.join("Concerts/Live at the Hall.dtshd")).unwrap(),
                master
            );
        });
    }
}

fn walk(dir: &Path) -> Vec<String> {
    let mut v = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                v.extend(walk(&p));
            } else {
                v.push(p.display().to_string());
            }
        }
    }
    v
}

/// A drive holding a five-minute DTS track at `name` (its source also kept
/// as `dir/source.dts`), plugged into a fresh daemon whose job is running.
fn converting(dir: &Path, fs_type: Fs, label: &str, name: &str) -> (Image, Daemon) {
    let long = long_dts(dir);
    fs::write(dir.join("source.dts"), &long).unwrap();
    let mut image = Image::new(dir, fs_type, label, 256, &[(name, &long)]);
    let mut daemon = Daemon::start(dir);
    image.attach(false);
    daemon.wait_any_job("the job to run", "running", Duration::from_secs(60));
    (image, daemon)
}

#[test]
fn a_drive_pulled_mid_job_resumes_when_it_comes_back() {
    let _one = serial();
    require_root_tools();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let (mut image, mut daemon) = converting(dir, Fs::Exfat, "PULLME", "Film.dts");
    // Freeze it mid-way so the pull surely lands during the job.
    assert_eq!(daemon.post("/api/pause"), 202);
    let drive = Daemon::drive(&daemon.status(), "PULLME").unwrap().clone();
    let mount_point = drive["mount_point"].as_str().unwrap().to_string();
    image.uevent("remove");
    daemon.wait_drive_state("PULLME", "removed", Duration::from_secs(30));
    daemon.wait_for("the job to be interrupted", Duration::from_secs(30), |d| {
        d.jobs_of(&drive["id"])
            .iter()
            .all(|j| j["state"] == "interrupted")
    });
    daemon.wait_for(
        "the dead mount to be detached",
        Duration::from_secs(30),
        |_| !is_mounted(&mount_point),
    );
    assert_eq!(daemon.post("/api/resume"), 202);

    image.uevent("add");
    let back = daemon.wait_drive_state("PULLME", "idle", Duration::from_secs(120));
    assert_eq!(back["id"], drive["id"], "the same drive must be recognised");
    let jobs = daemon.jobs_of(&drive["id"]);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["state"], "done");
    daemon.eject(&drive["id"], "PULLME");
    image.detach();
    daemon.stop();

    let expected = ffmpeg_md5(&dir.join("source.dts"), &["-c:a", "pcm_s16le"]);
    image.with_mounted(|root| {
        assert_eq!(
            ffmpeg_md5(&root.join("Film.flac"), &["-c:a", "pcm_s16le"]),
            expected
        );
        let names: Vec<String> = walk(root);
        assert_eq!(names.len(), 2, "{names:?}");
    });
}

#[test]
fn a_power_cut_mid_job_is_finished_after_restart_with_nothing_left_over() {
    let _one = serial();
    require_root_tools();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let (mut image, mut daemon) = converting(dir, Fs::Ext4, "POWERCUT", "Music/Album.dts");
    let mount_point = Daemon::drive(&daemon.status(), "POWERCUT").unwrap()["mount_point"]
        .as_str()
        .unwrap()
        .to_string();
    // Let FFmpeg write part of the file, then cut the power.
    daemon.wait_for("a partial temp file", Duration::from_secs(30), |_| {
        walk(Path::new(&mount_point))
            .iter()
            .any(|p| p.contains(".dtsflac.part"))
    });
    daemon.kill();
    assert!(
        walk(Path::new(&mount_point))
            .iter()
            .all(|p| !p.ends_with("Album.flac")),
        "a final name appeared before the job finished"
    );

    let mut daemon = Daemon::start(dir);
    let drive = daemon.wait_drive_state("POWERCUT", "idle", Duration::from_secs(120));
    let jobs = daemon.jobs_of(&drive["id"]);
    assert_eq!(jobs.len(), 1, "one job, not a second copy: {jobs:?}");
    assert_eq!(jobs[0]["state"], "done", "{jobs:?}");
    daemon.eject(&drive["id"], "POWERCUT");
    image.detach();
    daemon.stop();

    let expected = ffmpeg_md5(&dir.join("source.dts"), &["-c:a", "pcm_s16le"]);
    image.with_mounted(|root| {
        assert_eq!(
            ffmpeg_md5(&root.join("Music/Album.flac"), &["-c:a", "pcm_s16le"]),
            expected
        );
        let files = walk(root);
        assert!(
            files.iter().all(|p| !p.contains(".dtsflac.")),
            "temp files left behind: {files:?}"
        );
    });
}

#[test]
fn a_dead_fuse_mount_left_by_a_crash_is_replaced_and_the_job_finishes() {
    let _one = serial();
    require_root_tools();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let (mut image, mut daemon) = converting(dir, Fs::Exfat, "DEADFUSE", "Album.dts");
    let drive = Daemon::drive(&daemon.status(), "DEADFUSE").unwrap().clone();
    let mount_point = drive["mount_point"].as_str().unwrap().to_string();
    let device = drive["device"].as_str().unwrap().to_string();
    // The box crashes, and so does the FUSE driver: its mount stays behind, dead.
    daemon.kill();
    let driver = fuse_driver(&device, &mount_point);
    unsafe { libc::kill(driver.pid, libc::SIGKILL) };
    wait_process_gone(driver.pid);
    assert!(is_mounted(&mount_point), "the dead mount is still there");
    let dead = fs::read_dir(&mount_point)
        .err()
        .and_then(|e| e.raw_os_error());
    assert_eq!(dead, Some(libc::ENOTCONN), "the mount is dead");

    let mut daemon = Daemon::start(dir);
    let drive = daemon.wait_drive_state("DEADFUSE", "idle", Duration::from_secs(120));
    let jobs = daemon.jobs_of(&drive["id"]);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(
        jobs[0]["state"], "done",
        "the job resumes on a live mount: {jobs:?}"
    );
    daemon.eject(&drive["id"], "DEADFUSE");
    image.detach();
    daemon.stop();
    let expected = ffmpeg_md5(&dir.join("source.dts"), &["-c:a", "pcm_s16le"]);
    image.with_mounted(|root| {
        assert_eq!(
            ffmpeg_md5(&root.join("Album.flac"), &["-c:a", "pcm_s16le"]),
            expected
        );
    });
}

/// Waits (at most 10 s) until a process has gone.
fn wait_process_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(Instant::now() < deadline, "process {pid} did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_copy_of_a_drive_in_the_box_is_refused_with_a_reason_and_shares_nothing() {
    let _one = serial();
    require_root_tools();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let track = sample("xll_51_24_48_768.dtshd");
    let mut original = Image::new(dir, Fs::Ext4, "TWIN", 32, &[("Film.dtshd", &track)]);
    // A `dd` copy: the same UUID and label, byte for byte.
    let copy_path = dir.join("TWIN-copy.img");
    fs::copy(&original.path, &copy_path).unwrap();
    let mut copy = Image {
        path: copy_path,
        fs: Fs::Ext4,
        loop_dev: None,
        partition: None,
    };

    let mut daemon = Daemon::start(dir);
    original.attach(false);
    let drive = daemon.wait_drive_state("TWIN", "idle", Duration::from_secs(120));
    copy.attach(false);
    daemon.wait_for("the copy to be listed", Duration::from_secs(30), |d| {
        d.status()["drives"]
            .as_array()
            .is_some_and(|d| d.iter().any(|d| d["state"] == "error"))
    });
    let status = daemon.status();
    let listed = status["drives"].as_array().unwrap();
    let twin = listed.iter().find(|d| d["state"] == "error").unwrap();
    let reason = twin["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("same file system") && reason.contains("Eject that one first"),
        "the panel and page say why: {twin}"
    );
    assert_eq!(twin["can_eject"], false, "{twin}");
    assert_eq!(listed.len(), 2, "{listed:?}");
    let jobs = daemon.jobs_of(&drive["id"]);
    assert_eq!(jobs.len(), 1, "the copy added no job: {jobs:?}");
    assert_eq!(
        mounts_under(&dir.join("media")).len(),
        1,
        "the copy is not mounted"
    );
    // Pulled, the copy is gone from the list; the original stays as it was.
    copy.uevent("remove");
    copy.detach();
    daemon.wait_for("the copy to leave the list", Duration::from_secs(30), |d| {
        d.status()["drives"]
            .as_array()
            .is_some_and(|d| d.len() == 1)
    });
    assert_eq!(state_of(&daemon.status(), "TWIN"), "idle");
    daemon.eject(&drive["id"], "TWIN");
    original.detach();
    daemon.stop();
}

#[test]
fn shutdown_with_two_busy_drives_is_quick_and_leaves_nothing_mounted() {
    let _one = serial();
    require_root_tools();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let long = long_dts(dir);
    let mut ext4 = Image::new(dir, Fs::Ext4, "BUSYONE", 256, &[("One.dts", &long)]);
    let mut exfat = Image::new(dir, Fs::Exfat, "BUSYTWO", 256, &[("Two.dts", &long)]);

    let mut daemon = Daemon::start(dir);
    ext4.attach(false);
    exfat.attach(false);
    daemon.wait_for("both drives' jobs to run", Duration::from_secs(120), |d| {
        d.status()["jobs"]
            .as_array()
            .is_some_and(|j| j.iter().filter(|j| j["state"] == "running").count() == 2)
    });
    let (status, took) = daemon
        .terminate(Duration::from_secs(120))
        .expect("the daemon stops within the unit's TimeoutStopSec (120 s)");
    println!("SIGTERM with two conversions running: exited in {took:?}");
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(30), "stopping took {took:?}");
    let media = dir.join("media");
    assert_eq!(mounts_under(&media), Vec::<String>::new(), "left mounted");
    let left: Vec<String> = processes_mentioning(dir)
        .iter()
        .map(Proc::cmdline)
        .collect();
    assert!(left.is_empty(), "left running: {left:?}");
    ext4.detach();
    exfat.detach();
}

#[test]
fn a_track_the_box_keeps_dying_on_fails_instead_of_a_restart_loop() {
    let _one = serial();
    require_root_tools();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let long = long_dts(dir);
    let mut image = Image::new(dir, Fs::Ext4, "CRASHLOOP", 256, &[("Album.dts", &long)]);
    image.attach(false);
    // The default limit is 3 attempts: the box dies under the job 3 times.
    for _ in 0..3 {
        let mut daemon = Daemon::start(dir);
        daemon.wait_any_job("the job to run", "running", Duration::from_secs(60));
        daemon.kill();
    }
    let mut daemon = Daemon::start(dir);
    let drive = daemon.wait_drive_state("CRASHLOOP", "idle", Duration::from_secs(60));
    let jobs = daemon.jobs_of(&drive["id"]);
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0]["state"], "failed", "{jobs:?}");
    let reason = jobs[0]["error"].as_str().unwrap_or_default();
    assert!(reason.contains("stopped 3 times"), "{reason}");
    assert_eq!(jobs[0]["can_retry"], true);
    daemon.eject(&drive["id"], "CRASHLOOP");
    image.detach();
    daemon.stop();
}

#[test]
fn read_only_and_full_drives_give_a_clear_error_for_each_job() {
    let _one = serial();
    require_root_tools();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let master = sample("xll_71_24_96_768.dtshd");
    let mut locked = Image::new(dir, Fs::Ext4, "LOCKED", 16, &[("Track.dtshd", &master)]);
    let mut full = Image::new(dir, Fs::Ext4, "FULL", 16, &[("Track.dtshd", &master)]);
    // Fill the drive, then free a little less than the FLAC would need.
    full.with_mounted(|root| {
        let filler = root.join("filler.bin");
        let mut f = fs::File::create(&filler).unwrap();
        for size in [64 << 10, 4 << 10] {
            let block = vec![0x5au8; size];
            while f.write_all(&block).is_ok() {}
        }
        drop(f);
        let len = fs::metadata(&filler).unwrap().len();
        let f = fs::OpenOptions::new().write(true).open(&filler).unwrap();
        f.set_len(len - (24 << 10)).unwrap();
        f.sync_all().unwrap();
    });

    let mut daemon = Daemon::start(dir);
    locked.attach(true);
    full.attach(false);
    for (label, reason) in [("LOCKED", "read-only"), ("FULL", "not enough free space")] {
        let drive = daemon.wait_drive_state(label, "idle", Duration::from_secs(60));
        let jobs = daemon.jobs_of(&drive["id"]);
        assert_eq!(jobs.len(), 1, "{label}: {jobs:?}");
        assert_eq!(jobs[0]["state"], "failed", "{label}: {jobs:?}");
        let error = jobs[0]["error"].as_str().unwrap();
        assert!(error.contains(reason), "{label}: {error}");
    }
    daemon.stop();
    locked.detach();
    full.detach();
    full.with_mounted(|root| {
        assert!(!root.join("Track.flac").exists());
        assert!(walk(root).iter().all(|p| !p.contains(".dtsflac.")));
    });
}

/// The box's state directory on a card of its own: a small ext4 image
/// mounted (before any daemon starts, so it is never taken for a drive:
/// it is mounted outside the mount root) with `errors=remount-ro`, as an
/// SD card whose kernel makes it read-only when it fails.
struct StateCard {
    image: PathBuf,
    at: PathBuf,
}

impl StateCard {
    fn mount(dir: &Path, size_mb: u64) -> StateCard {
        let image = dir.join("state-card.img");
        fs::File::create(&image)
            .unwrap()
            .set_len(size_mb << 20)
            .unwrap();
        sh(
            "mkfs.ext4",
            &[
                "-q",
                "-F",
                "-m",
                "0",
                "-L",
                "STATECARD",
                image.to_str().unwrap(),
            ],
        );
        let card = StateCard {
            image,
            at: dir.join("state"),
        };
        fs::create_dir_all(&card.at).unwrap();
        card.attach();
        card
    }

    fn attach(&self) {
        let (image, at) = (self.image.to_str().unwrap(), self.at.to_str().unwrap());
        sh("mount", &["-o", "loop,errors=remount-ro", image, at]);
    }

    /// Writes a filler file until the card has no room left.
    fn fill(&self) -> PathBuf {
        let filler = self.at.join("filler.bin");
        let mut f = fs::File::create(&filler).unwrap();
        for size in [64 << 10, 4 << 10, 512] {
            let block = vec![0x5au8; size];
            while f.write_all(&block).is_ok() {}
        }
        let _ = f.sync_all();
        filler
    }

    /// What a failing card does: the kernel meets an error and, as the
    /// card is mounted `errors=remount-ro`, makes it read-only under the
    /// daemon. (`mount -o remount,ro` is refused while SQLite holds its
    /// files open for writing.)
    fn fail(&self) {
        let dev = sh("findmnt", &["-no", "SOURCE", self.at.to_str().unwrap()]);
        let name = Path::new(&dev).file_name().unwrap().to_str().unwrap();
        fs::write(
            format!("/sys/fs/ext4/{name}/trigger_fs_error"),
            "the state card failed (a test)",
        )
        .unwrap();
        assert!(
            fs::write(self.at.join("probe"), b"x").is_err(),
            "still writable"
        );
    }

    /// A new card, or the old one checked on a computer: unmounted,
    /// repaired by e2fsck, mounted again.
    fn repair(&self) {
        sh("umount", &[self.at.to_str().unwrap()]);
        let status = Command::new("e2fsck")
            .args(["-fy", self.image.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        // 0: clean, 1: errors corrected.
        assert!(status.code().is_some_and(|c| c <= 1), "e2fsck: {status}");
        self.attach();
    }

    /// Read-only or writable again, with no daemon holding it open.
    fn remount(&self, options: &str) {
        sh("mount", &["-o", options, self.at.to_str().unwrap()]);
    }
}

impl Drop for StateCard {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

/// Four tracks on a drive: the drive is offered while the box is paused,
/// so its jobs are queued (recorded) and run only after the card failed.
fn queue_paused(daemon: &mut Daemon, image: &mut Image, label: &str) -> Value {
    assert_eq!(daemon.post("/api/pause"), 202);
    image.attach(false);
    daemon.wait_for(
        &format!("{label}'s 4 jobs to be queued"),
        Duration::from_secs(60),
        |d| {
            Daemon::drive(&d.status(), label).is_some_and(|drive| {
                let jobs = d.jobs_of(&drive["id"]);
                jobs.len() == 4 && jobs.iter().all(|j| j["state"] == "queued")
            })
        },
    );
    Daemon::drive(&daemon.status(), label).unwrap().clone()
}

/// Resumes, and waits until `/healthz` says what is wrong with the card;
/// the status says the same.
fn resume_and_see_the_problem(daemon: &mut Daemon, says: &str) {
    assert_eq!(daemon.post("/api/resume"), 202);
    let mut seen = String::new();
    daemon.wait_for(
        &format!("/healthz to say {says:?}"),
        Duration::from_secs(60),
        |d| {
            let (code, body) = d.get("/healthz").unwrap();
            seen = body.clone();
            code == 503 && body.contains(says)
        },
    );
    assert!(seen.contains("the state directory"), "{seen}");
    let problem = daemon.status()["state_dir_problem"].clone();
    assert!(
        problem.as_str().is_some_and(|p| p.contains(says)),
        "{problem}"
    );
}

/// Every job of the drive ended `done` (none `failed` for the card) and
/// its FLAC is on the drive, bit-exact; returns when each was written.
fn all_done_and_exact(daemon: &mut Daemon, label: &str) -> Vec<std::time::SystemTime> {
    let drive = daemon.wait_drive_state(label, "idle", Duration::from_secs(180));
    let jobs = daemon.jobs_of(&drive["id"]);
    assert_eq!(jobs.len(), 4, "{jobs:?}");
    for job in &jobs {
        assert_eq!(job["state"], "done", "{job}");
    }
    flacs_exact(&drive)
}

fn flacs_exact(drive: &Value) -> Vec<std::time::SystemTime> {
    let root = PathBuf::from(drive["mount_point"].as_str().unwrap());
    (1..=4)
        .map(|n| {
            let flac = root.join(format!("Track {n}.flac"));
            assert_matches_reference(&flac, "xll_71_24_48_768_0");
            fs::metadata(&flac).unwrap().modified().unwrap()
        })
        .collect()
}

#[test]
fn a_full_or_read_only_state_card_fails_no_job_and_the_states_are_recorded_when_it_can() {
    let _one = serial();
    require_root_tools();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let master = sample("xll_71_24_48_768_0.dtshd");
    let names: Vec<String> = (1..=4).map(|n| format!("Track {n}.dtshd")).collect();
    let files: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &master[..])).collect();
    let mut full_case = Image::ext4(dir, "FULLCARD", 64, &files);
    let mut failing_case = Image::ext4(dir, "FAILCARD", 64, &files);
    let card = StateCard::mount(dir, 16);

    // The card fills up while the box converts.
    let mut daemon = Daemon::start(dir);
    queue_paused(&mut daemon, &mut full_case, "FULLCARD");
    let filler = card.fill();
    resume_and_see_the_problem(&mut daemon, "is full: free space on the SD card");
    let written = all_done_and_exact(&mut daemon, "FULLCARD");
    // SQLite itself was refused, not only the free space looked at.
    assert!(daemon.log().contains("held in memory"), "{}", daemon.log());
    let drives: Vec<Value> = daemon.status()["drives"].as_array().unwrap().clone();
    assert_eq!(drives.len(), 1, "the state card is no drive: {drives:?}");
    // A drive plugged in while the card is full: its jobs cannot be
    // recorded yet, so they wait for room instead of being dropped.
    let mut late = Image::ext4(dir, "LATECARD", 32, &files[..1]);
    late.attach(false);
    let refused = daemon.wait_drive_state("LATECARD", "error", Duration::from_secs(60));
    let reason = refused["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("is full") && reason.contains("read as soon as there is room"),
        "the page and panel say why: {refused}"
    );
    // Room again: the held states are written within the retry period.
    fs::remove_file(&filler).unwrap();
    daemon.wait_for("/healthz to be fine", Duration::from_secs(30), |d| {
        d.get("/healthz").is_ok_and(|(code, _)| code == 200)
    });
    assert!(daemon.status()["state_dir_problem"].is_null());
    let mut late_drive = Value::Null;
    daemon.wait_for(
        "the late drive to be read and its job done",
        Duration::from_secs(60),
        |d| {
            late_drive = Daemon::drive(&d.status(), "LATECARD")
                .cloned()
                .unwrap_or_default();
            let jobs = d.jobs_of(&late_drive["id"]);
            jobs.len() == 1 && jobs[0]["state"] == "done"
        },
    );
    daemon.eject(&late_drive["id"], "LATECARD");
    late.detach();
    daemon.stop();
    // The database says so: a new daemon finds every job done and does
    // not convert any of them again.
    let mut daemon = Daemon::start(dir);
    assert_eq!(
        all_done_and_exact(&mut daemon, "FULLCARD"),
        written,
        "converted again"
    );
    assert!(daemon.status()["state_dir_problem"].is_null());

    // The card turns read-only while the box converts.
    queue_paused(&mut daemon, &mut failing_case, "FAILCARD");
    card.fail();
    resume_and_see_the_problem(&mut daemon, "is read-only");
    let failing_written = all_done_and_exact(&mut daemon, "FAILCARD");
    let held = daemon.log().matches("held in memory").count();
    assert_eq!(held, 1, "{}", daemon.log());
    let (status, _) = daemon
        .terminate(Duration::from_secs(60))
        .expect("the daemon stops on a read-only card");
    assert!(status.success(), "{status:?}\n{}", daemon.log());
    // A card the kernel made read-only keeps nothing written after the
    // error. Checked and mounted again, it may not know those jobs; their
    // FLACs, ours and up to date, are kept and not converted again.
    card.repair();
    let mut daemon = Daemon::start(dir);
    let drive = daemon.wait_drive_state("FAILCARD", "idle", Duration::from_secs(180));
    let jobs = daemon.jobs_of(&drive["id"]);
    assert!(jobs.iter().all(|j| j["state"] == "done"), "{jobs:?}");
    assert_eq!(flacs_exact(&drive), failing_written, "converted again");
    assert_eq!(
        all_done_and_exact(&mut daemon, "FULLCARD"),
        written,
        "converted again"
    );
    daemon.stop();

    // The card is read-only when the box starts: it starts, says so, and
    // knows what it has done.
    card.remount("remount,ro");
    let mut daemon = Daemon::start(dir);
    let (code, body) = daemon.get("/healthz").unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("is read-only"), "{body}");
    assert_eq!(
        all_done_and_exact(&mut daemon, "FULLCARD"),
        written,
        "converted again"
    );
    daemon.stop();
    card.remount("remount,rw");
    full_case.detach();
    failing_case.detach();
}

#[test]
fn a_bad_config_names_the_key() {
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("bad.toml");
    fs::write(
        &config,
        "[usb]\nmount_root = \"/media/x\"\nallow_loop = \"yes\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dtsflac"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("allow_loop"), "{stderr}");
    let out = Command::new(env!("CARGO_BIN_EXE_dtsflac"))
        .args(["run", "--config"])
        .arg(work.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

/// The panel as a person sees it: `/panel.png`, decoded.
fn panel(daemon: &Daemon) -> dtsflac::panel::frame::Frame {
    panel_as(daemon, "")
}

/// `/panel.png` as a client sending `credentials` (header lines) sees it.
fn panel_as(daemon: &Daemon, credentials: &str) -> dtsflac::panel::frame::Frame {
    let mut s = TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    write!(
        s,
        "GET /panel.png HTTP/1.1\r\nHost: localhost\r\n{credentials}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..at]).to_string();
    assert!(head.contains("image/png"), "{head}");
    dtsflac::panel::frame::Frame::from_png(&raw[at..]).expect("a 128x64 PNG")
}

fn bearer() -> String {
    format!("Authorization: Bearer {TOKEN}\r\n")
}

/// Whether the token screen shows TOKEN itself.
fn shows_token(f: &dtsflac::panel::frame::Frame) -> bool {
    let mut expected = dtsflac::panel::frame::Frame::default();
    dtsflac::panel::text::draw(
        &mut expected,
        TOKEN,
        embedded_graphics::prelude::Point::new(0, 14),
        dtsflac::panel::text::Size::Body,
    );
    (0..128).all(|x| (14..24).all(|y| f.pixel(x, y) == expected.pixel(x, y)))
}

/// Whether `text` is written dark-on-lit in the panel's header at x = 1.
fn header_says(frame: &dtsflac::panel::frame::Frame, text: &str) -> bool {
    use dtsflac::panel::text;
    let mut expected = dtsflac::panel::frame::Frame::default();
    let end = text::draw(
        &mut expected,
        text,
        embedded_graphics::prelude::Point::new(1, 1),
        text::Size::Small,
    );
    (1..end as u32).all(|x| (1..9).all(|y| frame.pixel(x, y) != expected.pixel(x, y)))
}

#[test]
fn the_virtual_panel_shows_the_work_and_its_buttons_control_it() {
    let _one = serial();
    require_root_tools();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let long = long_dts(dir);
    let mut image = Image::new(
        dir,
        Fs::Ext4,
        "PANEL",
        600,
        &[("Фильм.dts", &long), ("Second.dts", &long)],
    );
    let mut daemon = Daemon::start(dir);
    daemon.wait_for("the idle screen", Duration::from_secs(10), |d| {
        header_says(&panel(d), "dtsflac")
    });
    image.attach(false);
    daemon.wait_for("the converting screen", Duration::from_secs(60), |d| {
        header_says(&panel(d), "PANEL") && d.has_job_in("running")
    });
    let first = panel(&daemon);
    assert!(
        first.lit_in(2, 25, 124, 4) < 124 * 4,
        "the progress bar is full already"
    );

    // ACTION pauses (the panel says so), ACTION again resumes.
    let press = |d: &Daemon, b: &str| d.post(&format!("/api/buttons/{b}"));
    assert_eq!(
        daemon
            .request("POST", "/api/buttons/action", None)
            .unwrap()
            .0,
        401
    );
    assert_eq!(press(&daemon, "action"), 202);
    daemon.wait_for("pause", Duration::from_secs(10), |d| {
        d.status()["paused"] == true && header_says(&panel(d), "PAUSED")
    });
    assert_eq!(press(&daemon, "action"), 202);
    daemon.wait_for("resume", Duration::from_secs(10), |d| {
        d.status()["paused"] == false
    });

    // NEXT cycles to the queue screen; the token shows only on a long press.
    assert_eq!(press(&daemon, "next"), 202);
    daemon.wait_for("the queue screen", Duration::from_secs(10), |d| {
        header_says(&panel(d), "Queue")
    });
    for _ in 0..3 {
        press(&daemon, "next");
    }
    daemon.wait_for("the token screen", Duration::from_secs(10), |d| {
        header_says(&panel(d), "Web token")
    });
    assert_eq!(daemon.post("/api/buttons/next?long=1"), 202);
    daemon.wait_for("the token", Duration::from_secs(10), |d| {
        shows_token(&panel_as(d, &bearer()))
    });

    // A long ACTION cancels the running job; a long EJECT ejects the drive.
    press(&daemon, "next");
    assert_eq!(daemon.post("/api/buttons/action?long=1"), 202);
    daemon.wait_any_job("a cancelled job", "cancelled", Duration::from_secs(20));
    assert_eq!(daemon.post("/api/buttons/eject?long=1"), 202);
    daemon.wait_drive_state("PANEL", "ejected", Duration::from_secs(60));
    daemon.wait_for("the safe-to-remove screen", Duration::from_secs(10), |d| {
        let mut expected = dtsflac::panel::frame::Frame::default();
        let text = "Safe to remove";
        let x = (128 - dtsflac::panel::text::width(text, dtsflac::panel::text::Size::Body)) / 2;
        dtsflac::panel::text::draw(
            &mut expected,
            text,
            embedded_graphics::prelude::Point::new(x, 22),
            dtsflac::panel::text::Size::Body,
        );
        let f = panel(d);
        (0..128).all(|x| (22..32).all(|y| f.pixel(x, y) == expected.pixel(x, y)))
    });
    image.detach();
}

// ----- a real browser, driven over the DevTools protocol -----

struct Browser {
    child: Child,
    ws: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start() -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
                "--window-size=412,1400",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start chromium: apt-get install chromium (./scripts/install-deps.sh does it)");
        let port_file = profile.path().join("DevToolsActivePort");
        let deadline = Instant::now() + Duration::from_secs(30);
        let port: u16 = loop {
            if let Some(p) = fs::read_to_string(&port_file)
                .ok()
                .and_then(|s| s.lines().next().and_then(|l| l.parse().ok()))
            {
                break p;
            }
            assert!(
                Instant::now() < deadline,
                "chromium did not open its DevTools port"
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        // The page target's websocket, from /json/list.
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            s,
            "GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        // Chromium keeps the connection open: read until the JSON is complete.
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut raw = String::new();
        let mut buf = [0u8; 8192];
        while !raw.trim_end().ends_with(']') {
            let n = s.read(&mut buf).expect("DevTools /json/list");
            assert!(n > 0, "DevTools closed the connection: {raw}");
            raw.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        let body = &raw[raw.find('[').unwrap()..=raw.rfind(']').unwrap()];
        let targets: Vec<Value> = serde_json::from_str(body).unwrap();
        let url = targets
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let (mut ws, _) = tungstenite::connect(url.as_str()).expect("DevTools websocket");
        if let tungstenite::stream::MaybeTlsStream::Plain(tcp) = ws.get_mut() {
            // A browser that stops answering fails the test instead of hanging it.
            tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        }
        Browser {
            child,
            ws,
            next_id: 1,
            _profile: profile,
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = serde_json::json!({"id": id, "method": method, "params": params});
        self.ws
            .send(tungstenite::Message::text(msg.to_string()))
            .unwrap();
        loop {
            let m = self.ws.read().expect("DevTools message");
            if let tungstenite::Message::Text(t) = m {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["id"] == id {
                    assert!(v.get("error").is_none(), "{method}: {v}");
                    return v["result"].clone();
                }
            }
        }
    }

    fn goto(&mut self, url: &str) {
        self.call("Page.navigate", serde_json::json!({ "url": url }));
    }

    /// Evaluates JavaScript in the page (awaiting promises) and returns its value.
    fn eval(&mut self, js: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({"expression": js, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("page script failed: {js}\n{e}");
        }
        r["result"]["value"].clone()
    }

    fn wait(&mut self, what: &str, js: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            if self.eval(js) == Value::Bool(true) {
                return;
            }
            if Instant::now() > deadline {
                let body = self.eval("document.body ? document.body.innerText : ''");
                panic!(
                    "timed out waiting in the browser for {what}\npage text:\n{}",
                    body.as_str().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let r = self.call(
            "Page.captureScreenshot",
            serde_json::json!({"format": "png"}),
        );
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap())
            .unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_page_shows_the_work_live_and_its_controls_need_the_token() {
    let _one = serial();
    require_root_tools();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let segment = long_dts(dir);
    // Twenty minutes each: long enough to watch the bars move.
    let long = segment.repeat(4);
    let html_name = "<img src=x onerror=window.pwned=1>.dts";
    let short = &segment[..segment.len() / 30];
    let mut image = Image::new(
        dir,
        Fs::Ext4,
        "BROWSER",
        1200,
        &[
            ("Concert.dts", &long),
            ("Opera.dts", &long),
            (html_name, short),
        ],
    );
    let mut daemon = Daemon::start(dir);
    let base = format!("http://127.0.0.1:{}/", daemon.port);
    let mut browser = Browser::start();
    browser.goto(&base);
    browser.wait(
        "the page",
        "document.querySelector('#connection')?.textContent === 'live'",
        Duration::from_secs(20),
    );

    image.attach(false);
    browser.wait(
        "the drive",
        "[...document.querySelectorAll('#drives li .drive-label')].some(e => e.textContent.includes('BROWSER'))",
        Duration::from_secs(60),
    );
    browser.wait(
        "a running job",
        "[...document.querySelectorAll('#queue li .job-state')].some(e => e.textContent === 'running')",
        Duration::from_secs(60),
    );
    // Progress moves while we watch.
    let progress = "Math.max(0, ...[...document.querySelectorAll('#queue li progress.job-progress')].map(p => p.value))";
    let first = browser.eval(progress).as_f64().unwrap();
    browser.wait(
        "the progress bar to move",
        &format!("{progress} > {first} + 0.01"),
        Duration::from_secs(30),
    );
    // The HTML-named file shows as text and never runs.
    browser.wait(
        "the HTML-named track",
        "document.body.textContent.includes('<img src=x onerror=window.pwned=1>.dts')",
        Duration::from_secs(30),
    );
    assert_eq!(
        browser.eval("window.pwned === undefined"),
        Value::Bool(true)
    );
    assert_eq!(
        browser.eval("document.querySelectorAll('#queue img, #history img, #drives img').length"),
        0
    );

    // Without the token, Pause does nothing but ask for it.
    browser.eval("document.querySelector('#pause-resume').click()");
    browser.wait(
        "the token form",
        "(() => { const f = document.querySelector('#login-form'); return !!f && f.offsetParent !== null; })()",
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(daemon.status()["paused"], false, "paused without the token");
    // A wrong token is refused; the right one unlocks the controls.
    browser.eval("document.querySelector('#token').value = 'wrong'; document.querySelector('#login-form').requestSubmit()");
    browser.wait(
        "the wrong-token message",
        "document.querySelector('#login-error').textContent.length > 0",
        Duration::from_secs(10),
    );
    browser.eval(&format!(
        "document.querySelector('#token').value = '{TOKEN}'; document.querySelector('#login-form').requestSubmit()"
    ));
    browser.wait(
        "the session",
        "fetch('/api/session').then(r => r.json()).then(s => s.authorized)",
        Duration::from_secs(10),
    );
    // The page carries out the Pause that was pressed before unlocking.
    daemon.wait_for(
        "the pause pressed before unlocking",
        Duration::from_secs(10),
        |d| d.status()["paused"] == true,
    );
    let press_when = |browser: &mut Browser, label: &str| {
        browser.wait(
            &format!("the {label} button"),
            &format!(
                "(() => {{ const b = document.querySelector('#pause-resume'); return b.textContent.trim() === '{label}' && !b.disabled; }})()"
            ),
            Duration::from_secs(10),
        );
        browser.eval("document.querySelector('#pause-resume').click()");
    };
    press_when(&mut browser, "Resume");
    daemon.wait_for("resume from the page", Duration::from_secs(10), |d| {
        d.status()["paused"] == false
    });
    press_when(&mut browser, "Pause");
    daemon.wait_for("pause from the page", Duration::from_secs(10), |d| {
        d.status()["paused"] == true
    });
    press_when(&mut browser, "Resume");
    daemon.wait_for("resume again", Duration::from_secs(10), |d| {
        d.status()["paused"] == false
    });

    // The page rides out a restart of the box.
    let config = dir.join("dtsflac.toml");
    let port = daemon.port;
    daemon.stop();
    browser.wait(
        "offline",
        "document.querySelector('#connection').textContent === 'offline'",
        Duration::from_secs(20),
    );
    let mut daemon = Daemon::start_with(dir, &config, port);
    browser.wait(
        "live again",
        "document.querySelector('#connection').textContent === 'live'",
        Duration::from_secs(30),
    );
    browser.wait(
        "the drive again",
        "[...document.querySelectorAll('#drives li .drive-state')].some(e => ['converting','idle'].includes(e.textContent))",
        Duration::from_secs(60),
    );
    let shot = browser.screenshot();
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs");
    if std::env::var_os("DTSFLAC_UPDATE_SCREENSHOT").is_some() {
        fs::create_dir_all(&docs).unwrap();
        fs::write(docs.join("page.png"), &shot).unwrap();
    }
    assert!(shot.starts_with(b"\x89PNG"));

    // Eject from the page.
    browser.eval("document.querySelector('#drives li button.eject').click()");
    daemon.wait_drive_state("BROWSER", "ejected", Duration::from_secs(60));
    image.detach();
}

#[test]
fn the_api_guards_its_controls_and_reports_metrics_health_and_events() {
    let _one = serial();
    require_root_tools();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let long = long_dts(dir);
    let mut image = Image::new(dir, Fs::Ext4, "APIDRIVE", 400, &[("Track.dts", &long)]);
    let daemon = Daemon::start(dir);

    // Health and metrics.
    let (code, body) = daemon.get("/healthz").unwrap();
    assert_eq!(code, 200, "{body}");
    // Events: the stream delivers status while a conversion runs.
    let mut sse = TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    sse.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(sse, "GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    image.attach(false);
    let mut seen = String::new();
    let mut buf = [0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(seen.contains("event: status") && seen.contains("\"state\":\"running\"")) {
        assert!(
            Instant::now() < deadline,
            "no running status on the event stream:\n{seen}"
        );
        let n = sse.read(&mut buf).unwrap();
        assert!(n > 0, "the event stream closed");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(seen.contains("text/event-stream"), "{seen}");

    let (_, metrics) = daemon.get("/metrics").unwrap();
    for needle in [
        "dtsflac_jobs{state=\"running\"} 1",
        "dtsflac_queue_length",
        "dtsflac_drives_present 1",
        "dtsflac_converted_audio_seconds_total",
        "dtsflac_output_bytes_total",
        "# TYPE dtsflac_jobs gauge",
    ] {
        assert!(
            metrics.contains(needle),
            "{needle} missing from /metrics:\n{metrics}"
        );
    }

    // Controls: no token, wrong token, other origin → refused.
    assert_eq!(daemon.request("POST", "/api/pause", None).unwrap().0, 401);
    assert_eq!(
        daemon
            .request("POST", "/api/pause", Some("nope"))
            .unwrap()
            .0,
        401
    );
    let mut s = TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    write!(
        s,
        "POST /api/pause HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nOrigin: http://evil.example\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        daemon.port
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 403"), "{reply}");
    assert_eq!(daemon.status()["paused"], false);
    // Logging in gives an HttpOnly, SameSite=Strict cookie that works.
    let mut s = TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    let body = format!("{{\"token\":\"{TOKEN}\"}}");
    write!(
        s,
        "POST /api/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 204"), "{reply}");
    let cookie_line = reply
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a cookie");
    assert!(
        cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"),
        "{cookie_line}"
    );
    let cookie = cookie_line
        .split_once(':')
        .unwrap()
        .1
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let mut s = TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    write!(
        s,
        "POST /api/pause HTTP/1.1\r\nHost: localhost\r\nCookie: {cookie}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 202"), "{reply}");
    assert_eq!(daemon.status()["paused"], true);
    assert_eq!(daemon.post("/api/resume"), 202);
    // Guessing is slowed down: after a few wrong tokens, even the right one waits.
    for _ in 0..5 {
        daemon.request("POST", "/api/pause", Some("guess")).unwrap();
    }
    assert_eq!(
        daemon.request("POST", "/api/pause", Some(TOKEN)).unwrap().0,
        429
    );
    image.detach();
}

// ----- drives that are slow to scan, pulled, or stuck -----

/// How many small files `slow_scan_files` puts on a drive (one in ten is DTS).
const CLIPS: usize = 120;

/// Two real tracks (path on the drive without extension, dcadec sample),
/// checked against the reference decodes when a test converts them.
const ALBUMS: [(&str, &str); 2] = [
    ("Albums/Live at the Hall", "xll_71_24_48_768_0"),
    ("Albums/Studio 192k", "xll_51_16_192_768_0"),
];

/// A drive whose scan takes several seconds: the two album tracks (scanned
/// first), then `CLIPS` tiny files, each costing the scan one ffprobe run.
/// Most are plain PCM WAVs (no job); every tenth is a copy of a small DTS
/// sample, so tracks are found all through the scan.
fn slow_scan_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    // Containers are always handed to ffprobe (a WAV or FLAC that is not
    // DTS is ruled out from its header), so these keep the scan slow.
    let clip = dir.join("clip.mka");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=8000:duration=0.1",
            "-c:a",
            "flac",
            "-f",
            "matroska",
        ],
        &clip,
    );
    let clip = fs::read(&clip).unwrap();
    let small = [
        sample("core_51_24_48_768_0.dtshd"),
        sample("xll_51_24_48_768.dtshd"),
    ];
    let mut files: Vec<(String, Vec<u8>)> = ALBUMS
        .iter()
        .map(|(name, stem)| (format!("{name}.dtshd"), sample(&format!("{stem}.dtshd"))))
        .collect();
    for i in 0..CLIPS {
        files.push(if i % 10 == 5 {
            (
                format!("Clips/clip-{i:03}.dtshd"),
                small[i / 10 % 2].clone(),
            )
        } else {
            (format!("Clips/clip-{i:03}.mka"), clip.clone())
        });
    }
    files
}

/// The DTS files among `files`: each must end as one job.
fn dts_files(files: &[(String, Vec<u8>)]) -> Vec<&str> {
    files
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|n| n.ends_with(".dtshd"))
        .collect()
}

fn borrowed(files: &[(String, Vec<u8>)]) -> Vec<(&str, &[u8])> {
    files
        .iter()
        .map(|(name, content)| (name.as_str(), content.as_slice()))
        .collect()
}

fn state_of(status: &Value, label: &str) -> String {
    Daemon::drive(status, label)
        .and_then(|d| d["state"].as_str())
        .unwrap_or("(not listed)")
        .to_string()
}

/// Jobs as "source: state (error)" lines, for failure messages.
fn describe_jobs(jobs: &[Value]) -> String {
    jobs.iter()
        .map(|j| format!("{}: {} ({})", j["source"], j["state"], j["error"]))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_drive_pulled_while_it_is_scanned_converts_everything_when_plugged_back() {
    let _one = serial();
    require_root_tools();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let media = dir.join("media");
    let files = slow_scan_files(dir);
    let tracks = dts_files(&files);
    let mut image = Image::ext4(dir, "PULLSCAN", 64, &borrowed(&files));

    let mut daemon = Daemon::start(dir);
    image.attach(false);
    let drive = daemon.wait_drive_state("PULLSCAN", "scanning", Duration::from_secs(60));
    // Let the scan find some tracks, then pull the drive in the middle of it.
    std::thread::sleep(Duration::from_secs(2));
    let before = state_of(&daemon.status(), "PULLSCAN");
    assert_eq!(
        before, "scanning",
        "the scan ended within 2 s: the drive needs more files for this test"
    );
    image.uevent("remove");
    let pulled = daemon.wait_drive_leaves("PULLSCAN", &["scanning"], Duration::from_secs(30));
    assert_eq!(
        pulled["state"], "removed",
        "the pull was not seen: {pulled}"
    );
    daemon.wait_for(
        "the dead mount to be detached",
        Duration::from_secs(30),
        |_| mounts_under(&media).is_empty(),
    );

    image.uevent("add");
    let settled = |d: &Daemon| {
        let status = d.status();
        let state = state_of(&status, "PULLSCAN");
        let busy = d
            .jobs_of(&drive["id"])
            .iter()
            .any(|j| matches!(j["state"].as_str(), Some("queued" | "running")));
        matches!(state.as_str(), "idle" | "error") && !busy
    };
    daemon.wait_for(
        "the drive to come back and finish",
        Duration::from_secs(120),
        settled,
    );
    let back = Daemon::drive(&daemon.status(), "PULLSCAN").unwrap().clone();
    assert_eq!(back["id"], drive["id"], "the same drive must be recognised");
    let jobs = daemon.jobs_of(&drive["id"]);
    let all = describe_jobs(&jobs);
    assert_eq!(back["state"], "idle", "{back}\n{all}");
    let mount_point = back["mount_point"].as_str().unwrap_or_default().to_string();
    assert!(
        !mount_point.is_empty() && is_mounted(&mount_point),
        "the drive is not mounted again: {back}\njobs:\n{all}"
    );
    assert_eq!(
        mounts_under(&media),
        vec![mount_point.clone()],
        "a mount from the first visit is still there"
    );
    assert!(
        jobs.iter().all(|j| j["state"] == "done"),
        "every DTS track must be converted:\n{all}"
    );
    assert!(!all.contains("cannot read the source"), "{all}");
    let mut sources: Vec<String> = jobs
        .iter()
        .map(|j| j["source"].as_str().unwrap().to_string())
        .collect();
    sources.sort();
    let mut expected: Vec<String> = tracks
        .iter()
        .map(|t| format!("{mount_point}/{t}"))
        .collect();
    expected.sort();
    assert_eq!(sources, expected, "one job per DTS track");

    daemon.eject(&drive["id"], "PULLSCAN");
    image.detach();
    daemon.stop();
    assert_eq!(mounts_under(&media), Vec::<String>::new());
    image.with_mounted(|root| {
        for (name, stem) in ALBUMS {
            assert_matches_reference(&root.join(format!("{name}.flac")), stem);
        }
        for track in &tracks {
            let flac = root.join(track).with_extension("flac");
            assert!(flac.exists(), "{} is missing", flac.display());
        }
        let leftovers: Vec<String> = walk(root)
            .into_iter()
            .filter(|p| p.contains(".dtsflac."))
            .collect();
        assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
    });
}

#[test]
fn eject_during_a_scan_stops_the_scan_and_unmounts() {
    let _one = serial();
    require_root_tools();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let files = slow_scan_files(dir);
    let mut timing = Image::ext4(dir, "TIMING", 64, &borrowed(&files));
    let mut image = Image::ext4(dir, "EJECTSCAN", 64, &borrowed(&files));
    let mut daemon = Daemon::start(dir);
    let mut browser = Browser::start();
    browser.goto(&format!("http://127.0.0.1:{}/", daemon.port));

    // How long the whole scan takes here and now, on a drive just like it.
    timing.attach(false);
    daemon.wait_drive_state("TIMING", "scanning", Duration::from_secs(60));
    let scan_started = Instant::now();
    let after = daemon.wait_drive_leaves("TIMING", &["scanning"], Duration::from_secs(120));
    let full_scan = scan_started.elapsed();
    assert!(
        after["state"] == "converting" || after["state"] == "idle",
        "{after}"
    );
    let drive = daemon.wait_drive_state("TIMING", "idle", Duration::from_secs(120));
    daemon.eject(&drive["id"], "TIMING");
    timing.detach();

    image.attach(false);
    let drive = daemon.wait_drive_state("EJECTSCAN", "scanning", Duration::from_secs(60));
    let mount_point = drive["mount_point"].as_str().unwrap().to_string();
    let scanning_since = Instant::now();
    // The page shows how far the scan has got, and the count moves.
    let scan_line = "(() => { const li = [...document.querySelectorAll('#drives li')].find(l => l.querySelector('.drive-label')?.textContent === 'EJECTSCAN'); const m = /^Scanning: (\\d+) files? looked at, (\\d+) DTS tracks? found, in (.+)$/.exec(li?.querySelector('.drive-scan')?.textContent || ''); return m ? [Number(m[1]), Number(m[2]), m[3]] : null; })()";
    browser.wait(
        "the scan's progress on the page",
        &format!("(s => !!s && s[0] > 0 && s[2].startsWith({mount_point:?}))({scan_line})"),
        Duration::from_secs(30),
    );
    let seen = browser.eval(scan_line);
    browser.wait(
        "the page's count of files looked at to grow",
        &format!("(s => !!s && s[0] > {})({scan_line})", seen[0]),
        Duration::from_secs(30),
    );
    std::thread::sleep((full_scan / 5).saturating_sub(scanning_since.elapsed()));
    let status = daemon.status();
    let before = state_of(&status, "EJECTSCAN");
    assert_eq!(
        before, "scanning",
        "the scan ended early (the full scan took {full_scan:?})"
    );
    // The page and panel show how far it has got.
    let scan = &Daemon::drive(&status, "EJECTSCAN").unwrap()["scan"];
    assert!(
        scan["files_looked_at"].as_u64().is_some_and(|n| n > 0)
            && scan["files_listed"].as_u64().is_some_and(|n| n > 0)
            && scan["folder"]
                .as_str()
                .is_some_and(|f| f.starts_with(&mount_point)),
        "scan progress: {scan}"
    );
    let asked = Instant::now();
    assert_eq!(
        daemon.post(&format!("/api/drives/{}/eject", drive["id"])),
        202
    );
    let ejected = daemon.wait_drive_leaves(
        "EJECTSCAN",
        &["scanning", "ejecting"],
        Duration::from_secs(60),
    );
    let took = asked.elapsed();
    println!(
        "full scan: {full_scan:?}; eject asked {:?} into the scan, done {took:?} later",
        asked - scanning_since
    );
    let jobs = describe_jobs(&daemon.jobs_of(&drive["id"]));
    assert_eq!(ejected["state"], "ejected", "{ejected}\njobs:\n{jobs}");
    // The page drops the scan's line and says the drive can be pulled.
    browser.wait(
        "the ejected drive on the page",
        &format!("{scan_line} === null && [...document.querySelectorAll('#drives li')].some(l => l.querySelector('.drive-label')?.textContent === 'EJECTSCAN' && l.querySelector('.drive-note')?.textContent === 'Safe to remove')"),
        Duration::from_secs(10),
    );
    let bound = full_scan / 3;
    assert!(
        took < bound,
        "the eject took {took:?}: the scan was not stopped (the full scan takes {full_scan:?})"
    );
    // It stays so: the scan does not come back to life or start jobs, and
    // within a second no probe of it is left running.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(3) {
        let status = daemon.status();
        let state = state_of(&status, "EJECTSCAN");
        let jobs = daemon.jobs_of(&drive["id"]);
        let probes = daemon.children_named("ffprobe");
        assert_eq!(
            state,
            "ejected",
            "{:?} after the eject the drive is {state}\njobs:\n{}",
            watch.elapsed(),
            describe_jobs(&jobs)
        );
        assert!(!is_mounted(&mount_point), "{mount_point} is still mounted");
        assert!(
            probes.is_empty() || watch.elapsed() < Duration::from_secs(1),
            "{:?} after the eject the scan is still probing: {probes:?}",
            watch.elapsed()
        );
        assert!(
            jobs.iter()
                .all(|j| !matches!(j["state"].as_str(), Some("running" | "failed" | "done"))),
            "jobs ran on the ejected drive:\n{}",
            describe_jobs(&jobs)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    image.detach();
}

/// A folder holding a stand-in `mount.exfat-fuse` that, for a drive whose
/// label is `label`, waits `hold` before running the real one: a mount that
/// takes a while, as a slow or flaky stick gives. It touches `started`
/// when it begins waiting. Put the folder first on the daemon's `PATH`.
fn slow_mount_helper(dir: &Path, label: &str, hold: Duration, started: &Path) -> PathBuf {
    let real = sh("sh", &["-c", "command -v mount.exfat-fuse"]);
    let bin = dir.join("slow-bin");
    fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("mount.exfat-fuse");
    fs::write(
        &helper,
        format!(
            "#!/bin/sh\ncase \"$*\" in *{label}*) : > '{}'; sleep {} ;; esac\nexec '{real}' \"$@\"\n",
            started.display(),
            hold.as_secs_f64()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&helper, fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

#[test]
fn sigterm_during_a_scan_exits_promptly_with_nothing_mounted_and_no_child_left() {
    let _one = serial();
    require_root_tools();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let media = dir.join("media");
    let files = slow_scan_files(dir);
    let mut scanned = Image::ext4(dir, "TERMSCAN", 64, &borrowed(&files));
    let track = sample("xll_51_24_48_768.dtshd");
    let mut slow = Image::new(dir, Fs::Exfat, "SLOWMOUNT", 16, &[("Track.dtshd", &track)]);
    let hold = Duration::from_secs(3);
    let started = dir.join("slow-mount-started");
    let bin = slow_mount_helper(dir, "SLOWMOUNT", hold, &started);
    let mut path = bin.into_os_string();
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let mut daemon = Daemon::start_env(dir, &[("PATH", &path)]);

    scanned.attach(false);
    daemon.wait_drive_state("TERMSCAN", "scanning", Duration::from_secs(60));
    slow.attach(false);
    daemon.wait_for(
        "the SLOWMOUNT mount helper to start",
        Duration::from_secs(30),
        |_| started.exists(),
    );
    // The held mount helper runs the real one at `hold` after this, at the latest.
    let helper_goes_on = Instant::now() + hold;
    let status = daemon.status();
    for (label, state) in [("SLOWMOUNT", "mounting"), ("TERMSCAN", "scanning")] {
        assert_eq!(
            state_of(&status, label),
            state,
            "too late for the test: {status}"
        );
    }
    let probes = daemon.children_named("ffprobe");
    let stopped = daemon.terminate(Duration::from_secs(30));
    let log = daemon.log();
    let Some((status, took)) = stopped else {
        panic!("the daemon did not exit within 30 s of SIGTERM (killed)\nlog:\n{log}");
    };
    println!("exited {status} {took:?} after SIGTERM (ffprobe runs at the time: {probes:?})");
    // Had anything of the daemon's been left running, give it time to act.
    let settle = helper_goes_on + Duration::from_millis(1500);
    std::thread::sleep(settle.saturating_duration_since(Instant::now()));
    let mut problems = Vec::new();
    if took > Duration::from_secs(5) {
        problems.push(format!("it took {took:?} to exit"));
    }
    if status.code() != Some(0) {
        problems.push(format!("it exited {status}"));
    }
    let mounted = mounts_under(&media);
    if !mounted.is_empty() {
        problems.push(format!("still mounted under the mount root: {mounted:?}"));
    }
    let left: Vec<String> = processes_mentioning(dir)
        .iter()
        .map(|p| format!("{} {} ({})", p.pid, p.cmdline(), p.name))
        .collect();
    if !left.is_empty() {
        problems.push(format!("processes left behind: {left:?}"));
    }
    assert!(
        problems.is_empty(),
        "after SIGTERM with TERMSCAN scanning and SLOWMOUNT mounting: {}\nlog:\n{log}",
        problems.join("; ")
    );
}

/// The FUSE driver process serving `device` at `mount_point`.
fn fuse_driver(device: &str, mount_point: &str) -> Proc {
    let all = processes();
    let found = all.iter().position(|p| {
        p.args.iter().any(|a| a == device) && p.args.iter().any(|a| a == mount_point)
    });
    match found {
        Some(i) => all.into_iter().nth(i).unwrap(),
        None => panic!(
            "no FUSE driver for {device} at {mount_point} among: {:#?}",
            all.iter().map(Proc::cmdline).collect::<Vec<_>>()
        ),
    }
}

#[test]
fn the_page_and_status_answer_within_a_second_while_a_drive_worker_is_blocked() {
    let _one = serial();
    require_root_tools();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let long = long_dts(dir);
    let mut image = Image::new(dir, Fs::Exfat, "FROZEN", 256, &[("Film.dts", &long)]);
    let mut daemon = Daemon::start(dir);
    image.attach(false);
    daemon.wait_any_job("the job to run", "running", Duration::from_secs(60));
    let drive = Daemon::drive(&daemon.status(), "FROZEN").unwrap().clone();
    let mount_point = drive["mount_point"].as_str().unwrap().to_string();
    let driver = fuse_driver(drive["device"].as_str().unwrap(), &mount_point);
    // Every call into the drive's file system hangs from now on, until the
    // guard lets the driver go on (even if an assertion below fails).
    let frozen = Frozen::new(driver.pid);
    let watch = Instant::now();
    let mut rounds = 0;
    while watch.elapsed() < Duration::from_secs(5) {
        let mut problems = Vec::new();
        for path in ["/api/status", "/", "/metrics"] {
            let asked = Instant::now();
            let answer = daemon.request_within("GET", path, None, Duration::from_secs(1));
            let took = asked.elapsed();
            match answer {
                Ok((200, body)) if took < Duration::from_secs(1) => {
                    if path == "/api/status" {
                        let status: Value = serde_json::from_str(&body).unwrap();
                        assert!(Daemon::drive(&status, "FROZEN").is_some(), "{body}");
                    }
                }
                Ok((code, body)) => problems.push(format!(
                    "GET {path} answered {code} after {took:?}: {body:.200}"
                )),
                Err(e) => problems.push(format!(
                    "GET {path} did not answer within 1 s ({e}, gave up after {took:?})"
                )),
            }
        }
        assert!(
            problems.is_empty(),
            "with the FUSE driver of FROZEN ({} {}) stopped for {:?} (round {rounds}): {}",
            driver.name,
            driver.pid,
            watch.elapsed(),
            problems.join("; ")
        );
        rounds += 1;
        std::thread::sleep(Duration::from_millis(300));
    }
    println!("{rounds} rounds of /api/status, / and /metrics, each under 1 s");
    drop(frozen);
    daemon.eject(&drive["id"], "FROZEN");
    assert!(!is_mounted(&mount_point), "{mount_point} still mounted");
    image.detach();
    daemon.stop();
    let left: Vec<String> = processes_mentioning(dir)
        .iter()
        .map(Proc::cmdline)
        .collect();
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

// ----- the LAN: the token, foreign hosts, guessing, connection floods -----

/// A TCP connection to the daemon from 127.0.0.`last`: another machine on
/// the LAN, as far as the daemon's per-address limits go.
fn connect_from(last: u8, port: u16) -> TcpStream {
    use socket2::{Domain, SockAddr, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&SockAddr::from(std::net::SocketAddr::from((
        [127, 0, 0, last],
        0,
    ))))
    .unwrap();
    let to = SockAddr::from(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    s.connect_timeout(&to, Duration::from_secs(5)).unwrap();
    s.into()
}

/// Sends `request` (a whole HTTP/1.1 request) from 127.0.0.`last` and
/// returns the whole answer, lossily decoded.
fn exchange_from(last: u8, port: u16, request: &str) -> String {
    let mut s = connect_from(last, port);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    String::from_utf8_lossy(&raw).into_owned()
}

/// The status code of a raw HTTP answer (0 if none).
fn status_code(reply: &str) -> u16 {
    reply
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn get_request(path: &str, extra_headers: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra_headers}Connection: close\r\n\r\n")
}

/// `/panel.png` with `credentials` (header lines): the answer's head and frame.
fn panel_reply(daemon: &Daemon, credentials: &str) -> (String, dtsflac::panel::frame::Frame) {
    let mut s = TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    s.write_all(get_request("/panel.png", credentials).as_bytes())
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8_lossy(&raw[..at]).to_string();
    (
        head,
        dtsflac::panel::frame::Frame::from_png(&raw[at..]).expect("a 128x64 PNG"),
    )
}

#[test]
fn a_revealed_token_is_on_panel_png_only_for_a_client_with_the_token() {
    let _one = serial();
    let work = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(work.path());
    // NEXT four times: status → queue → drives → network → token; hold NEXT.
    for _ in 0..4 {
        assert_eq!(daemon.post("/api/buttons/next"), 202);
    }
    daemon.wait_for("the token screen", Duration::from_secs(10), |d| {
        header_says(&panel(d), "Web token")
    });
    assert_eq!(daemon.post("/api/buttons/next?long=1"), 202);
    daemon.wait_for("the token on the panel", Duration::from_secs(10), |d| {
        shows_token(&panel_as(d, &bearer()))
    });
    // The OLED (and a client with the token) shows it; nobody else sees it.
    let anonymous = panel(&daemon);
    assert!(header_says(&anonymous, "Web token"));
    assert!(
        !shows_token(&anonymous),
        "an anonymous client sees the token"
    );
    // The page's mirror: a logged-in browser sends its cookie.
    let reply = exchange_from(
        1,
        daemon.port,
        &format!(
            "POST /api/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{{\"token\":\"{TOKEN}\"}}",
            TOKEN.len() + 12
        ),
    );
    assert!(reply.starts_with("HTTP/1.1 204"), "{reply}");
    let cookie = format!("Cookie: dtsflac_token={TOKEN}\r\n");
    assert!(shows_token(&panel_as(&daemon, &cookie)));
    // A stale cookie (an old token) sees the hidden screen, and is cleared.
    let (head, stale) = panel_reply(&daemon, "Cookie: dtsflac_token=OLDTOKEN12345\r\n");
    assert!(!shows_token(&stale) && header_says(&stale, "Web token"));
    assert!(head.contains("Max-Age=0"), "{head}");
    // A wrong bearer gets no panel at all.
    let reply = exchange_from(
        1,
        daemon.port,
        &get_request("/panel.png", "Authorization: Bearer WRONG-token-9\r\n"),
    );
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
}

#[test]
fn requests_for_another_host_are_refused_against_dns_rebinding() {
    let _one = serial();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let port = free_port();
    let config = Daemon::write_config(dir, port, "hosts = [\"flac.example.test\"]\n");
    let _daemon = Daemon::start_with(dir, &config, port);
    let hostname = fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string();
    let ask = |host: &str, path: &str| {
        let reply = exchange_from(
            1,
            port,
            &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        );
        (status_code(&reply), reply)
    };
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "flac.example.test".to_string(),
        format!("FLAC.example.test:{port}"),
        format!("{hostname}:{port}"),
        format!("{hostname}.local:{port}"),
    ] {
        let (code, reply) = ask(&host, "/api/status");
        assert_eq!(code, 200, "Host {host}: {reply}");
    }
    // A page on evil.example whose name now points at the box: nothing.
    for host in [
        format!("evil.example:{port}"),
        "flac.example.test.evil.example".to_string(),
        format!("localhost.evil.example:{port}"),
        format!("192.0.2.7:{port}"),
    ] {
        for path in ["/api/status", "/panel.png", "/", "/api/events", "/metrics"] {
            let (code, reply) = ask(&host, path);
            assert_eq!(code, 403, "Host {host}, {path}: {reply}");
            assert!(reply.contains("web.hosts"), "{reply}");
        }
    }
}

#[test]
fn every_presented_token_counts_as_a_guess_and_no_token_is_none() {
    let _one = serial();
    let work = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(work.path());
    let port = daemon.port;
    let code = status_code;
    // Controls without any token are refused, but are no guesses.
    for _ in 0..8 {
        assert_eq!(daemon.request("POST", "/api/pause", None).unwrap().0, 401);
    }
    assert_eq!(daemon.post("/api/pause"), 202);
    assert_eq!(daemon.post("/api/resume"), 202);
    // A wrong bearer on reading endpoints counts (from 127.0.0.2) ...
    let wrong = "Authorization: Bearer Wrong-guess-77\r\n";
    for path in [
        "/api/status",
        "/api/session",
        "/panel.png",
        "/metrics",
        "/api/session",
    ] {
        let reply = exchange_from(2, port, &get_request(path, wrong));
        assert_eq!(code(&reply), 401, "{path}: {reply}");
    }
    // ... so even the right token now waits; reading without one goes on.
    let right = format!("Authorization: Bearer {TOKEN}\r\n");
    let reply = exchange_from(2, port, &get_request("/api/session", &right));
    assert_eq!(code(&reply), 429, "{reply}");
    let reply = exchange_from(2, port, &get_request("/api/status", ""));
    assert_eq!(code(&reply), 200, "{reply}");
    // A wrong cookie on /api/session counts too (from 127.0.0.3): it is
    // answered as anonymous and cleared.
    for _ in 0..5 {
        let reply = exchange_from(
            3,
            port,
            &get_request("/api/session", "Cookie: dtsflac_token=Wrong-guess-78\r\n"),
        );
        assert_eq!(code(&reply), 200, "{reply}");
        assert!(reply.contains("\"authorized\":false"), "{reply}");
        assert!(reply.contains("Max-Age=0"), "{reply}");
    }
    let body = format!("{{\"token\":\"{TOKEN}\"}}");
    let login = format!(
        "POST /api/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let reply = exchange_from(3, port, &login);
    assert_eq!(code(&reply), 429, "{reply}");
    // Other addresses are not held up.
    assert_eq!(code(&exchange_from(4, port, &login)), 204);
    let reply = exchange_from(4, port, &get_request("/api/session", &right));
    assert!(reply.contains("\"authorized\":true"), "{reply}");
}

#[test]
fn a_weak_token_is_refused_at_start_up_with_how_to_set_a_good_one() {
    let work = tempfile::tempdir().unwrap();
    for weak in [
        "demo-token",
        "test-token-123",
        "password1234",
        "123456789012",
    ] {
        let config = work.path().join("weak.toml");
        fs::write(
            &config,
            format!(
                "state_dir = \"{}\"\n[web]\nlisten = \"127.0.0.1:{}\"\ntoken = \"{weak}\"\n[panel]\ndisplay = \"virtual\"\nbuttons = \"virtual\"\n",
                work.path().join("state").display(),
                free_port()
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_dtsflac"))
            .args(["run", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > Duration::from_secs(10) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the box started with the token {weak:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert_eq!(status.code(), Some(2), "{weak}: {stderr}");
        assert!(
            stderr.contains("web.token")
                && stderr.contains("at least 12")
                && stderr.contains("/dev/urandom")
                && stderr.contains("empty"),
            "{weak}: {stderr}"
        );
    }
}

/// Reads from an event stream until `needle` has come, or `limit` passes.
fn read_stream_until(s: &mut TcpStream, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let mut seen = String::new();
    let mut buf = [0u8; 16384];
    while !seen.contains(needle) && Instant::now() < deadline {
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    seen
}

fn open_fds(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[test]
fn a_connection_flood_neither_starves_the_api_nor_fails_a_conversion() {
    let _one = serial();
    require_root_tools();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let long = long_dts(dir);
    let mut image = Image::new(dir, Fs::Ext4, "FLOOD", 400, &[("Track.dts", &long)]);
    let port = free_port();
    let config = Daemon::write_config(dir, port, "");
    // A small descriptor limit (soft 64) that the daemon may raise to 256.
    let mut daemon = Daemon::launch_limited(dir, &config, port, &[], Some((64, 256)));
    let limits = fs::read_to_string(format!("/proc/{}/limits", daemon.pid())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .skip(3)
        .take(2)
        .collect::<Vec<_>>();
    assert_eq!(open_files, ["256", "256"], "the soft limit was not raised");
    assert!(
        daemon.log().contains("file descriptors: 256"),
        "{}",
        daemon.log()
    );

    // The page's own event stream, while a conversion runs.
    let mut page = connect_from(1, port);
    page.write_all(b"GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    image.attach(false);
    let seen = read_stream_until(&mut page, "\"state\":\"running\"", Duration::from_secs(60));
    assert!(seen.contains("\"state\":\"running\""), "{seen}");

    // Event streams: four per address, then a clear refusal ...
    let open_stream = |from: u8| {
        let mut s = connect_from(from, port);
        s.write_all(b"GET /api/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let head = read_stream_until(&mut s, "\r\n\r\n", Duration::from_secs(10));
        (s, head)
    };
    let mut streams = Vec::new();
    for _ in 0..4 {
        let (s, head) = open_stream(2);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        streams.push(s);
    }
    let (mut s, mut refused) = open_stream(2);
    if !refused.contains('}') {
        refused += &read_stream_until(&mut s, "}", Duration::from_secs(10));
    }
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
    assert!(refused.contains("per address"), "{refused}");
    // ... and sixteen on the whole box.
    let mut overall = None;
    'addresses: for from in 3..10 {
        for _ in 0..4 {
            let (mut s, head) = open_stream(from);
            if head.starts_with("HTTP/1.1 503") {
                let rest = match head.contains('}') {
                    true => String::new(),
                    false => read_stream_until(&mut s, "}", Duration::from_secs(10)),
                };
                overall = Some(head + &rest);
                break 'addresses;
            }
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            streams.push(s);
        }
    }
    assert_eq!(streams.len() + 1, 16, "event streams open on the box");
    let overall = overall.expect("no refusal overall");
    assert!(overall.contains("overall"), "{overall}");

    // The flood: 300 idle connections from ten addresses (each under the
    // per-address cap, together beyond the box's cap and its descriptors),
    // and one slowloris that trickles a header byte every 300 ms.
    let opened = Instant::now();
    let slowloris = std::thread::spawn(move || {
        let mut s = connect_from(30, port);
        let started = Instant::now();
        let _ = s.write_all(b"GET /api/status HTTP/1.1\r\nHost: localhost\r\nX-Slow: ");
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut buf = [0u8; 64];
        while started.elapsed() < Duration::from_secs(40) {
            match s.read(&mut buf) {
                Ok(_) => return Some(started.elapsed()),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if s.write_all(b"a").is_err() {
                        return Some(started.elapsed());
                    }
                }
                Err(_) => return Some(started.elapsed()),
            }
        }
        None
    });
    let mut flood = Vec::new();
    for from in 10..20 {
        for _ in 0..30 {
            flood.push(connect_from(from, port));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let mut most_fds = 0;
    for _ in 0..10 {
        let asked = Instant::now();
        let (code, body) = daemon
            .request_within("GET", "/api/status", None, Duration::from_secs(2))
            .expect("/api/status did not answer during the flood");
        assert_eq!(code, 200, "{body}");
        assert!(asked.elapsed() < Duration::from_secs(2));
        most_fds = most_fds.max(open_fds(daemon.pid()));
        std::thread::sleep(Duration::from_millis(200));
    }
    // The page's stream still delivers (the flooders gave way, not it).
    let more = read_stream_until(&mut page, "event: status", Duration::from_secs(10));
    assert!(
        more.contains("event: status"),
        "the page's stream stopped: {more}"
    );
    eprintln!(
        "flood: {} connections opened, {} descriptors open in the daemon at most (limit 256)",
        flood.len() + streams.len() + 1,
        most_fds
    );
    assert!(
        most_fds < 256 - 32,
        "the daemon holds {most_fds} descriptors"
    );

    // Idle connections are closed: displaced, or after the header timeout.
    for mut s in flood {
        let left = Duration::from_secs(20).saturating_sub(opened.elapsed());
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = [0u8; 16];
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("an idle connection stayed open: {other:?}"),
        }
    }
    let slow = slowloris
        .join()
        .unwrap()
        .expect("the slowloris was never closed");
    assert!(
        slow < Duration::from_secs(15),
        "the slowloris held on for {slow:?}"
    );

    // The conversion was never disturbed.
    daemon.wait_any_job("the job to finish", "done", Duration::from_secs(240));
    let jobs = daemon.status()["jobs"].as_array().unwrap().clone();
    assert!(
        jobs.iter().all(|j| j["state"] == "done"),
        "{}",
        describe_jobs(&jobs)
    );
    let log = daemon.log();
    assert!(
        !log.contains("Too many open files") && !log.contains("cannot accept"),
        "{log}"
    );
    drop(streams);
    image.detach();
}

#[test]
fn special_files_on_a_drive_fail_only_their_track_and_the_box_keeps_working() {
    use std::os::unix::fs::FileTypeExt;
    let _one = serial();
    require_root_tools();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let master = sample("xll_51_24_48_768.dtshd");
    let names = ["Good", "Film", "Zero", "Dev", "Sock", "Trap"];
    let sources: Vec<String> = names.iter().map(|n| format!("{n}.dtshd")).collect();
    let files: Vec<(&str, &[u8])> = sources.iter().map(|s| (s.as_str(), &master[..])).collect();
    // mkfs.ext4 -d copies FIFOs, sockets, device nodes and symlinks as they are.
    let tree = write_tree(dir, "SPECIAL", &files);
    sh("mkfifo", &[tree.join("Film.flac").to_str().unwrap()]);
    std::os::unix::fs::symlink("/dev/zero", tree.join("Zero.flac")).unwrap();
    sh(
        "mknod",
        &[tree.join("Dev.flac").to_str().unwrap(), "c", "1", "5"],
    );
    let _socket = std::os::unix::net::UnixListener::bind(tree.join("Sock.flac")).unwrap();
    sh(
        "mkfifo",
        &[tree.join(".Trap.flac.dtsflac.part").to_str().unwrap()],
    );
    sh("mkfifo", &[tree.join("Pipe.dts").to_str().unwrap()]);
    let path = dir.join("SPECIAL.img");
    fs::File::create(&path).unwrap().set_len(64 << 20).unwrap();
    mkfs_ext4_from("SPECIAL", &tree, path.to_str().unwrap());
    let mut image = Image {
        path,
        fs: Fs::Ext4,
        loop_dev: None,
        partition: None,
    };

    let mut daemon = Daemon::start(dir);
    image.attach(false);
    let drive = daemon.wait_drive_state("SPECIAL", "idle", Duration::from_secs(120));
    let jobs = daemon.jobs_of(&drive["id"]);
    assert_eq!(jobs.len(), names.len(), "{}", describe_jobs(&jobs));
    let job = |source: &str| {
        jobs.iter()
            .find(|j| {
                j["source"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("/{source}"))
            })
            .unwrap_or_else(|| panic!("no job for {source}: {}", describe_jobs(&jobs)))
    };
    assert_eq!(job("Good.dtshd")["state"], "done", "{}", job("Good.dtshd"));
    for (source, named, says) in [
        ("Film.dtshd", "Film.flac", "is a FIFO"),
        ("Zero.dtshd", "Zero.flac", "is a symbolic link"),
        ("Dev.dtshd", "Dev.flac", "is a device"),
        ("Sock.dtshd", "Sock.flac", "is a socket"),
        ("Trap.dtshd", ".Trap.flac.dtsflac.part", "is a FIFO"),
    ] {
        let j = job(source);
        assert_eq!(j["state"], "failed", "{j}");
        let error = j["error"].as_str().unwrap();
        assert!(
            error.contains(named) && error.contains(says) && !error.contains('\n'),
            "{source}: {error}"
        );
    }
    // The page, the panel and the API still answer; eject and shutdown work.
    let (code, page) = daemon.get("/").unwrap();
    assert_eq!(code, 200, "{page}");
    let _ = panel(&daemon);
    let ejected = daemon.eject(&drive["id"], "SPECIAL");
    assert!(ejected["mount_point"].is_null(), "{ejected}");
    let (status, took) = daemon
        .terminate(Duration::from_secs(20))
        .expect("the daemon did not stop");
    assert!(status.success(), "{status} after {took:?}");
    image.detach();

    image.with_mounted(|root| {
        assert_matches_reference(&root.join("Good.flac"), "xll_51_24_48_768");
        let kind = |n: &str| fs::symlink_metadata(root.join(n)).unwrap().file_type();
        assert!(kind("Film.flac").is_fifo());
        assert!(kind("Dev.flac").is_char_device());
        assert!(kind("Sock.flac").is_socket());
        assert!(kind(".Trap.flac.dtsflac.part").is_fifo());
        assert!(kind("Pipe.dts").is_fifo());
        assert_eq!(
            fs::read_link(root.join("Zero.flac")).unwrap(),
            Path::new("/dev/zero")
        );
        let leftovers: Vec<String> = walk(root)
            .into_iter()
            .filter(|p| p.contains(".dtsflac.") && !p.ends_with(".Trap.flac.dtsflac.part"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    });
}

/// Edits an ext4 image in place with `debugfs -w`: no loop device, so it is
/// safe while a daemon runs (it would take a loop device as a drive).
fn debugfs(image: &Path, commands: &[String]) {
    let script = image.with_extension("debugfs");
    fs::write(&script, commands.join("\n") + "\n").unwrap();
    sh(
        "debugfs",
        &[
            "-w",
            "-f",
            script.to_str().unwrap(),
            image.to_str().unwrap(),
        ],
    );
    let listing = sh("debugfs", &["-R", "ls -l /", image.to_str().unwrap()]);
    eprintln!("after {commands:?}:\n{listing}");
}

#[test]
fn between_visits_a_replaced_film_is_read_anew_and_a_deleted_flac_is_written_again() {
    let _one = serial();
    require_root_tools();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let (first, second) = ("xll_51_24_48_768", "xll_71_24_48_768_0");
    let mut image = Image::ext4(
        dir,
        "VISITS",
        64,
        &[
            ("Film.dtshd", &sample(&format!("{first}.dtshd"))),
            ("Extra.dtshd", &sample(&format!("{first}.dtshd"))),
        ],
    );
    let mut daemon = Daemon::start(dir);
    let visit = |daemon: &mut Daemon, image: &mut Image| -> Value {
        image.attach(false);
        daemon.wait_drive_leaves(
            "VISITS",
            &["detected", "mounting", "scanning"],
            Duration::from_secs(120),
        )
    };

    // Visit 1: both convert.
    let drive = visit(&mut daemon, &mut image);
    daemon.wait_for("both jobs to finish", Duration::from_secs(120), |d| {
        let jobs = d.jobs_of(&drive["id"]);
        jobs.len() == 2 && jobs.iter().all(|j| j["state"] == "done")
    });
    daemon.eject(&drive["id"], "VISITS");
    image.detach();

    // On a computer: the film is replaced by a different one (7.1, another
    // length) and the extra's FLAC is deleted.
    let img = image.path.clone();
    let second_path = samples().join(format!("{second}.dtshd"));
    debugfs(
        &img,
        &[
            "rm /Film.dtshd".into(),
            format!("write {} /Film.dtshd", second_path.display()),
            "rm /Extra.flac".into(),
        ],
    );

    // Visit 2, with the queue paused: both get new jobs, made from this
    // visit's probe, and wait.
    assert_eq!(daemon.post("/api/pause"), 202);
    let log_before = daemon.log().len();
    let drive2 = visit(&mut daemon, &mut image);
    assert_eq!(drive2["id"], drive["id"]);
    daemon.wait_for("two new jobs", Duration::from_secs(30), |d| {
        d.jobs_of(&drive["id"])
            .iter()
            .filter(|j| j["state"] == "queued")
            .count()
            == 2
    });
    let log = daemon.log()[log_before..].to_string();
    assert!(
        log.contains("2 DTS track(s) found, 2 new job(s)"),
        "the log says what is new: {log}"
    );
    assert!(log.contains("its FLAC was deleted"), "{log}");
    assert!(
        log.contains("the source changed since it was scanned"),
        "{log}"
    );
    daemon.eject(&drive["id"], "VISITS");
    image.detach();

    // The extra's source becomes a link to a device while its job waits.
    debugfs(
        &img,
        &[
            "rm /Extra.dtshd".into(),
            "symlink /Extra.dtshd /dev/zero".into(),
        ],
    );
    assert_eq!(daemon.post("/api/resume"), 202);
    visit(&mut daemon, &mut image);
    daemon.wait_for(
        "the film to be converted again",
        Duration::from_secs(120),
        |d| {
            let jobs = d.jobs_of(&drive["id"]);
            !jobs
                .iter()
                .any(|j| j["state"] == "queued" || j["state"] == "running")
        },
    );
    let jobs = daemon.jobs_of(&drive["id"]);
    let extra_failed: Vec<&Value> = jobs.iter().filter(|j| j["state"] == "failed").collect();
    assert_eq!(extra_failed.len(), 1, "{}", describe_jobs(&jobs));
    let reason = extra_failed[0]["error"].as_str().unwrap_or_default();
    assert!(
        reason.contains("Extra.dtshd is no longer on the drive as a regular file"),
        "{reason}"
    );
    daemon.eject(&drive["id"], "VISITS");
    image.detach();
    daemon.stop();

    image.with_mounted(|root| {
        // The new film, exactly: its own length and 7.1 layout, not the
        // first film's probe.
        assert_matches_reference(&root.join("Film.flac"), second);
        assert!(
            !root.join("Extra.flac").exists(),
            "nothing was made from the link"
        );
        let mut names: Vec<String> = walk(root);
        names.sort();
        assert_eq!(names.len(), 3, "{names:?}");
    });
}

/// An ext4 image with no UUID at all (`mkfs.ext4 -U clear`), made without a loop device.
fn ext4_without_uuid(dir: &Path, name: &str, label: &str, files: &[(&str, &[u8])]) -> Image {
    let path = dir.join(format!("{name}.img"));
    let tree = write_tree(dir, name, files);
    fs::File::create(&path).unwrap().set_len(32 << 20).unwrap();
    mkfs_ext4_with(label, &tree, path.to_str().unwrap(), &["-U", "clear"]);
    Image::ext4_at(path)
}

#[test]
fn drives_without_a_uuid_never_share_jobs_even_in_the_same_socket() {
    let _one = serial();
    require_root_tools();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let (a, b) = ("xll_51_24_48_768", "xll_71_24_48_768_0");
    let mut first = ext4_without_uuid(
        dir,
        "first",
        "NOID",
        &[("Film.dtshd", &sample(&format!("{a}.dtshd")))],
    );
    let mut second = ext4_without_uuid(
        dir,
        "second",
        "NOID",
        &[("Film.dtshd", &sample(&format!("{b}.dtshd")))],
    );
    assert_eq!(
        sh(
            "blkid",
            &["-s", "UUID", "-o", "value", first.path.to_str().unwrap()]
        ),
        ""
    );
    let mut daemon = Daemon::start(dir);
    let done_on = |d: &Daemon, id: &Value| {
        let jobs = d.jobs_of(id);
        jobs.len() == 1 && jobs[0]["state"] == "done"
    };

    // One after the other in the same socket (the same loop device).
    let dev = first.attach(false);
    let one = daemon.wait_drive_state("NOID", "idle", Duration::from_secs(120));
    daemon.wait_for("the first drive's film", Duration::from_secs(60), |d| {
        done_on(d, &one["id"])
    });
    daemon.eject(&one["id"], "NOID");
    first.uevent("remove");
    first.detach();
    assert_eq!(second.attach(false), dev, "the same socket");
    // The first one stays listed as ejected (safe to remove): the new one is
    // another entry with the same label.
    let mut two = Value::Null;
    daemon.wait_for(
        "the second drive to be idle",
        Duration::from_secs(120),
        |d| {
            let status = d.status();
            two = status["drives"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["state"] == "idle")
                .cloned()
                .unwrap_or(Value::Null);
            !two.is_null()
        },
    );
    assert_ne!(
        two["id"], one["id"],
        "a drive with no UUID is not the last one again"
    );
    daemon.wait_for(
        "the second drive's own film",
        Duration::from_secs(60),
        |d| done_on(d, &two["id"]),
    );

    // Both at once: both are served.
    first.attach(false);
    daemon.wait_for(
        "both drives to be listed idle",
        Duration::from_secs(120),
        |d| {
            let status = d.status();
            let drives = status["drives"].as_array().unwrap();
            drives.iter().filter(|x| x["state"] == "idle").count() == 2
        },
    );
    let status = daemon.status();
    let idle: Vec<Value> = status["drives"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["state"] == "idle")
        .cloned()
        .collect();
    for drive in &idle {
        assert_eq!(
            daemon.post(&format!("/api/drives/{}/eject", drive["id"])),
            202
        );
    }
    daemon.wait_for("both to be ejected", Duration::from_secs(60), |d| {
        d.status()["drives"]
            .as_array()
            .unwrap()
            .iter()
            .all(|x| x["state"] == "ejected")
    });
    first.detach();
    second.detach();
    daemon.stop();
    second.with_mounted(|root| assert_matches_reference(&root.join("Film.flac"), b));
    first.with_mounted(|root| assert_matches_reference(&root.join("Film.flac"), a));
}

/// 50,000 hard links to one DTS file and 140,000 tiny junk `.dts` files in
/// 140 folders, on ext4 with inline data. mkfs takes a minute and a half, so
/// the image is kept in /var/cache/dtsflac-tests and made again when missing.
fn hostile_many_files_image(dir: &Path) -> Image {
    const VERSION: &str = "many-files-v1";
    let cache = Path::new("/var/cache/dtsflac-tests");
    let cached = cache.join(format!("{VERSION}.img"));
    if !cached.exists() {
        fs::create_dir_all(cache).unwrap();
        let tree = dir.join("many-tree");
        fs::create_dir_all(tree.join("Links")).unwrap();
        fs::write(
            tree.join("Links/Film.dtshd"),
            sample("xll_51_24_48_768.dtshd"),
        )
        .unwrap();
        for i in 0..50_000 {
            fs::hard_link(
                tree.join("Links/Film.dtshd"),
                tree.join(format!("Links/copy{i:05}.dtshd")),
            )
            .unwrap();
        }
        for d in 0..140 {
            let folder = tree.join(format!("Junk/{d:03}"));
            fs::create_dir_all(&folder).unwrap();
            for i in 0..1000 {
                fs::write(folder.join(format!("t{i:04}.dts")), b"tiny").unwrap();
            }
        }
        let partial = cache.join(format!("{VERSION}.img.part"));
        fs::File::create(&partial)
            .unwrap()
            .set_len(400 << 20)
            .unwrap();
        let options = ["-N", "200000", "-I", "256", "-O", "inline_data"];
        mkfs_ext4_with("MANY", &tree, partial.to_str().unwrap(), &options);
        fs::rename(&partial, &cached).unwrap();
        fs::remove_dir_all(&tree).unwrap();
    }
    let path = dir.join("MANY.img");
    sh(
        "cp",
        &[
            "--sparse=always",
            cached.to_str().unwrap(),
            path.to_str().unwrap(),
        ],
    );
    Image::ext4_at(path)
}

fn proc_status_kb(pid: i32, field: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} not in /proc/{pid}/status"))
}

#[test]
fn a_drive_of_hard_links_and_junk_files_is_scanned_in_bounded_memory_while_the_box_serves() {
    let _one = serial();
    require_root_tools();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let mut many = hostile_many_files_image(dir);
    let mut film = Image::ext4(
        dir,
        "FILM",
        32,
        &[("Film.dtshd", &sample("xll_71_24_48_768_0.dtshd"))],
    );
    let mut daemon = Daemon::start(dir);
    many.attach(false);
    daemon.wait_drive_state("MANY", "scanning", Duration::from_secs(60));
    // Another drive plugged in meanwhile is served as usual.
    film.attach(false);
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    let mut film_done_while_scanning = false;
    loop {
        let asked = Instant::now();
        let status = daemon.status();
        slowest = slowest.max(asked.elapsed());
        let many_state = state_of(&status, "MANY");
        let film_drive = Daemon::drive(&status, "FILM").cloned();
        if let Some(f) = &film_drive {
            let jobs = daemon.jobs_of(&f["id"]);
            if many_state == "scanning" && jobs.iter().any(|j| j["state"] == "done") {
                film_done_while_scanning = true;
            }
        }
        if many_state != "scanning" && many_state != "mounting" {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "the scan of the many-files drive never ended"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let scan_took = started.elapsed();
    let peak_kb = proc_status_kb(daemon.pid(), "VmHWM:");
    eprintln!(
        "many-files drive: scanned in {scan_took:?}; slowest /api/status {slowest:?}; daemon peak RSS {peak_kb} kB; film converted during the scan: {film_done_while_scanning}"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "/api/status took {slowest:?} during the scan"
    );
    let many_drive = daemon.wait_drive_state("MANY", "idle", Duration::from_secs(120));
    let jobs = daemon.jobs_of(&many_drive["id"]);
    assert_eq!(
        jobs.len(),
        1,
        "one job for 50,001 names of one file: {}",
        describe_jobs(&jobs)
    );
    daemon.wait_for("the linked film to convert", Duration::from_secs(60), |d| {
        d.jobs_of(&many_drive["id"])[0]["state"] == "done"
    });
    let film_drive = daemon.wait_drive_state("FILM", "idle", Duration::from_secs(60));
    assert_eq!(daemon.jobs_of(&film_drive["id"])[0]["state"], "done");
    let log = daemon.log();
    assert!(
        log.contains("50000 hard link(s) to files listed already were skipped"),
        "{}",
        &log[log.len().saturating_sub(3000)..]
    );
    let junk_lines = log.matches("no DTS sync word").count();
    assert!(junk_lines <= 50, "{junk_lines} log lines for junk files");
    assert!(log.contains("more file(s) could not be used"));
    assert!(
        peak_kb < 150 * 1024,
        "the daemon's peak RSS was {peak_kb} kB for a drive of 190,000 files"
    );
    daemon.eject(&many_drive["id"], "MANY");
    daemon.eject(&film_drive["id"], "FILM");
    many.detach();
    film.detach();
    daemon.stop();
    many.with_mounted(|root| {
        assert_matches_reference(&root.join("Links/Film.flac"), "xll_51_24_48_768");
        assert!(!root.join("Links/copy00000.flac").exists());
    });
}

/// A process's resources, as `/proc` shows them.
#[derive(Debug, Clone)]
struct Resources {
    rss_kib: u64,
    /// VmRSS's parts: the heap and stacks, mapped files, shared memory
    /// (SQLite's WAL index).
    anon_kib: u64,
    file_kib: u64,
    shmem_kib: u64,
    threads: usize,
    fds: usize,
    /// Direct children, zombies included (an unreaped child counts).
    children: usize,
    /// Its threads' names, counted: what to look at when `threads` moves.
    thread_names: BTreeMap<String, usize>,
}

fn resources(pid: i32) -> Resources {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    let mut thread_names = BTreeMap::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten() {
        if let Ok(comm) = fs::read_to_string(task.path().join("comm")) {
            *thread_names.entry(comm.trim().to_string()).or_insert(0) += 1;
        }
    }
    Resources {
        rss_kib: field("VmRSS:"),
        anon_kib: field("RssAnon:"),
        file_kib: field("RssFile:"),
        shmem_kib: field("RssShmem:"),
        threads: field("Threads:") as usize,
        fds: open_fds(pid),
        children: processes().iter().filter(|p| p.ppid == pid).count(),
        thread_names,
    }
}

/// The track names of the soak drive: folders and names of many shapes,
/// each a file of its own (a copy, not a link) so each is a job.
fn soak_track(i: usize) -> String {
    let title = [
        "Intro",
        "Café au lait",
        "Overture (Live)",
        "Track",
        "Ünder-score_é",
    ][i % 5];
    match i % 4 {
        0 => format!("Disc {:02}/{:03} - {title}.dtshd", i / 20 + 1, i),
        1 => format!("Box Set/Disc {:02}/{:03} {title}.dtshd", i / 40 + 1, i),
        2 => format!("Artist {}/Album {}/{i:03}.{title}.dtshd", i % 3, i / 50),
        _ => format!("{i:03} {title}.dtshd"),
    }
}

/// The short samples the soak drive is made of (a few KB each, so 200 of
/// them convert in a minute or two); the lossless (`xll_`) ones decode
/// exactly to dcadec's reference.
const SOAK_SAMPLES: [&str; 5] = [
    "xll_51_24_48_768",
    "core_51_24_48_768_0",
    "xll_71_24_48_768_0",
    "xll_xch_61_24_48_768",
    "xll_71_24_48_768_1",
];

/// The job store's size on the state card (the file and its WAL), which
/// SQLite's page cache follows up to its limit.
fn store_kib(dir: &Path) -> u64 {
    ["jobs.db", "jobs.db-wal"]
        .iter()
        .filter_map(|f| fs::metadata(dir.join("state").join(f)).ok())
        .map(|m| m.len() >> 10)
        .sum()
}

#[test]
fn a_long_day_of_plugging_and_ejecting_leaves_memory_threads_and_descriptors_flat() {
    let _one = serial();
    require_root_tools();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    const LABEL: &str = "SOAK";
    const TRACKS: usize = 200;
    const CYCLES: usize = 6;
    // Each later visit: this many FLACs deleted on a computer (written
    // again) and this many new tracks added.
    const DELETED: usize = 20;
    const ADDED: usize = 5;

    let contents: Vec<Vec<u8>> = SOAK_SAMPLES
        .iter()
        .map(|s| sample(&format!("{s}.dtshd")))
        .collect();
    let names: Vec<String> = (0..TRACKS).map(soak_track).collect();
    let files: Vec<(&str, &[u8])> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), contents[i % contents.len()].as_slice()))
        .collect();
    let mut image = Image::ext4(dir, LABEL, 160, &files);
    // The daemon runs with one malloc arena (`cli::run`): with glibc's
    // arena per thread its RSS crept ~250 KiB a visit with nothing leaked.
    let mut daemon = Daemon::start(dir);
    let pid = daemon.pid();
    let started = Instant::now();
    let mut figures: Vec<Resources> = Vec::new();
    let mut tracks_on_drive = TRACKS;

    for cycle in 1..=CYCLES {
        let cycle_started = Instant::now();
        let expected_jobs = if cycle == 1 {
            TRACKS
        } else {
            // On a computer, between visits: some FLACs deleted (each
            // visit others), and a folder of new tracks.
            let mut commands: Vec<String> = (0..DELETED)
                .map(|k| {
                    let flac = names[(cycle - 2) * DELETED + k].replace(".dtshd", ".flac");
                    format!("rm \"/{flac}\"")
                })
                .collect();
            commands.push(format!("mkdir /Added-{cycle}"));
            commands.push(format!("cd /Added-{cycle}"));
            for k in 0..ADDED {
                let stem = SOAK_SAMPLES[k % SOAK_SAMPLES.len()];
                commands.push(format!(
                    "write \"{}\" \"New {k} {stem}.dtshd\"",
                    samples().join(format!("{stem}.dtshd")).display()
                ));
            }
            debugfs(&image.path, &commands);
            tracks_on_drive += ADDED;
            DELETED + ADDED
        };

        let log_before = daemon.log().len();
        image.attach(false);
        let drive = daemon.wait_drive_state(LABEL, "idle", Duration::from_secs(300));
        let log = daemon.log()[log_before..].to_string();
        assert!(
            log.contains(&format!(
                "{tracks_on_drive} DTS track(s) found, {expected_jobs} new job(s)"
            )),
            "visit {cycle}: every track found, the changed ones queued:\n{log}"
        );
        let summary = &daemon.status()["summary"]["jobs"];
        assert_eq!(
            summary["failed"].as_u64().unwrap_or(0),
            0,
            "visit {cycle}: no job fails: {summary}\n{log}"
        );
        daemon.eject(&drive["id"], LABEL);
        image.uevent("remove");
        image.detach();

        // The drive's short-lived workers end on their own; give them a
        // moment (a thread or a child that never ends shows in the figures).
        let settle = Instant::now() + Duration::from_secs(20);
        while Instant::now() < settle {
            let now = resources(pid);
            if now.children == 0 && !now.thread_names.keys().any(|n| n.starts_with("drive-")) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let now = resources(pid);
        eprintln!(
            "soak cycle {cycle}: {expected_jobs} job(s) in {:.1} s; VmRSS {} KiB (anon {}, file {}, shmem {}), store {} KiB, {} threads, {} fds, {} children; threads: {:?}",
            cycle_started.elapsed().as_secs_f64(),
            now.rss_kib,
            now.anon_kib,
            now.file_kib,
            now.shmem_kib,
            store_kib(dir),
            now.threads,
            now.fds,
            now.children,
            now.thread_names
        );
        figures.push(now);
    }
    eprintln!(
        "soak: {CYCLES} visits in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    // The first visit is the warm-up: the allocator's arenas, SQLite's page
    // cache and the web runtime reach their working size there.
    let warm = &figures[0];
    for (i, now) in figures.iter().enumerate().skip(1) {
        let cycle = i + 1;
        assert_eq!(now.children, 0, "cycle {cycle}: a child is left: {now:?}");
        // Every thread of a visit is joined or ended when it is over: the
        // long-lived ones (supervisor, scheduler workers, uevents, panel,
        // the web runtime) are the same set after every visit.
        assert_eq!(
            now.thread_names, warm.thread_names,
            "cycle {cycle}: threads differ from after the warm-up"
        );
        // Descriptors: the store's files, the sockets and the log, nothing
        // per visit or per job.
        assert_eq!(
            now.fds,
            warm.fds,
            "cycle {cycle}: open files differ from after the warm-up ({:?})",
            fs::read_dir(format!("/proc/{pid}/fd"))
                .unwrap()
                .flatten()
                .filter_map(|e| fs::read_link(e.path()).ok())
                .collect::<Vec<_>>()
        );
        // The bound: SQLite's page cache (2000 KiB by default) may still
        // fill as the job history grows, plus 512 KiB for the allocator.
        let bound = warm.rss_kib + 2000 + 512;
        assert!(
            now.rss_kib <= bound,
            "cycle {cycle}: VmRSS {} KiB over the bound of {bound} KiB (warm-up {} KiB)",
            now.rss_kib,
            warm.rss_kib
        );
    }
    daemon.stop();

    // Every track has its FLAC, the rewritten ones exact.
    image.with_mounted(|root| {
        let flacs = walk(root).iter().filter(|n| n.ends_with(".flac")).count();
        assert_eq!(flacs, tracks_on_drive);
        // The first ones were deleted before visit 2 and written again.
        for (i, name) in names.iter().enumerate().take(SOAK_SAMPLES.len()) {
            let stem = SOAK_SAMPLES[i % SOAK_SAMPLES.len()];
            if stem.starts_with("xll_") {
                assert_matches_reference(&root.join(name.replace(".dtshd", ".flac")), stem);
            }
        }
    });
}
