//! Controlling a job and its outcome: the options it runs with, pause,
//! resume and cancel while it runs, its progress, and how it ended (the
//! facts of a finished conversion, or what went wrong in the scheduler's
//! terms).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// FLAC compression level: 5 is FFmpeg's and libFLAC's default; higher
/// levels cost much more CPU on a small board for ~1% smaller files.
pub const DEFAULT_COMPRESSION_LEVEL: u8 = 5;

#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub compression_level: u8,
    /// Niceness of a job's processes (FFmpeg, flac, the read-back): the page
    /// and panel stay responsive.
    pub nice: i32,
    /// CPUs a job's processes may run on (the fast cluster); empty: any.
    pub cpus: Vec<usize>,
    /// FFmpeg decoders sharing one long DTS-HD MA stream while the job runs
    /// alone (see `lanes`); 0 or 1: one decoder.
    pub decode_lanes: usize,
    /// libFLAC encoder threads (`flac -j`, libFLAC 1.5 and later) for a
    /// track decoded in lanes: with its decoding split, the one encoder is
    /// the slower stage. 0 or 1: one thread. Ignored where libFLAC has none.
    pub flac_threads: usize,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            compression_level: DEFAULT_COMPRESSION_LEVEL,
            nice: 0,
            cpus: Vec::new(),
            decode_lanes: 0,
            flac_threads: 0,
        }
    }
}

/// What went wrong, in the terms the scheduler needs: retry or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The source is corrupt, truncated or unsupported: retrying cannot help.
    Input,
    /// The destination is full, read-only or occupied by someone else's file.
    Destination,
    /// An I/O hiccup or a crashed process: worth another attempt.
    Transient,
    /// The user cancelled.
    Cancelled,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ConvertError {
    pub kind: FailureKind,
    pub message: String,
}

impl ConvertError {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        ConvertError {
            kind,
            message: message.into(),
        }
    }
}

/// The facts of a finished conversion.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConvertResult {
    pub output: PathBuf,
    pub output_bytes: u64,
    pub input_bytes: u64,
    pub samples: u64,
    pub duration_seconds: f64,
    pub md5: String,
    /// True only for DTS-HD MA decoded with its lossless layer in every frame.
    pub lossless: bool,
    pub warnings: Vec<String>,
    pub elapsed_seconds: f64,
    /// Seconds of audio per second of wall time.
    pub speed: f64,
    /// FFmpeg decoders that shared the stream (1: the ordinary way).
    pub decode_lanes: usize,
    /// libFLAC encoder threads (1: the ordinary way).
    #[serde(default = "one")]
    pub flac_threads: usize,
}

fn one() -> usize {
    1
}

/// Progress while a job runs (in memory only: never written to the store).
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub seconds_done: f64,
    pub speed: f64,
}

/// Lets another thread pause, resume or cancel a running conversion. Its
/// processes are stopped with SIGSTOP so pausing costs no work.
#[derive(Default)]
pub struct JobControl {
    pids: Mutex<Vec<u32>>,
    paused: AtomicBool,
    cancelled: AtomicBool,
    /// The FLAC is encoded: what is left (read-back, tags, fsync) needs
    /// little CPU, so the scheduler may start the next job.
    encoded: AtomicBool,
    on_encoded: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl JobControl {
    /// `f` runs when the job's encoding is over (at most once, and not at
    /// all when the job fails before that), after `is_encoded` turns true.
    pub fn on_encoded(&self, f: impl FnOnce() + Send + 'static) {
        *self.on_encoded.lock().unwrap() = Some(Box::new(f));
    }

    pub fn is_encoded(&self) -> bool {
        self.encoded.load(Ordering::SeqCst)
    }

    pub(super) fn encoded(&self) {
        self.encoded.store(true, Ordering::SeqCst);
        let f = self.on_encoded.lock().unwrap().take();
        if let Some(f) = f {
            f();
        }
    }

    fn signal_all(&self, sig: libc::c_int) {
        for pid in self.pids.lock().unwrap().iter() {
            // SAFETY: kill(2) on a pid we spawned and have not yet reaped.
            unsafe {
                libc::kill(*pid as libc::pid_t, sig);
            }
        }
    }

    pub(super) fn register(&self, pid: u32) {
        self.pids.lock().unwrap().push(pid);
        // Cancelled before this process existed (a drive pulled while the
        // job was paused, before its FFmpeg started): it must not live on,
        // stopped, with nobody left to kill it. `cancel` sets the flag before
        // it signals the registered pids, so one of the two reaches it.
        if self.cancelled.load(Ordering::SeqCst) {
            // SAFETY: kill(2) on a pid we spawned and have not yet reaped.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            return;
        }
        if self.paused.load(Ordering::SeqCst) {
            // SAFETY: as above.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGSTOP);
            }
        }
    }

    pub(super) fn unregister(&self, pid: u32) {
        self.pids.lock().unwrap().retain(|p| *p != pid);
    }

    pub fn pause(&self) {
        self.paused.store(true, Ordering::SeqCst);
        self.signal_all(libc::SIGSTOP);
    }

    pub fn resume(&self) {
        self.paused.store(false, Ordering::SeqCst);
        self.signal_all(libc::SIGCONT);
    }

    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
        self.signal_all(libc::SIGKILL);
        self.signal_all(libc::SIGCONT);
    }

    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }
}

pub(super) fn destination_error(dir: &Path, e: &io::Error) -> ConvertError {
    let message = match e.raw_os_error() {
        Some(libc::EROFS) => format!("the destination {} is read-only", dir.display()),
        Some(libc::ENOSPC) => format!("the destination {} is full", dir.display()),
        Some(libc::EACCES) | Some(libc::EPERM) => {
            format!("no permission to write in {}", dir.display())
        }
        Some(libc::EIO) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
            return ConvertError::new(
                FailureKind::Transient,
                format!("I/O error on {}: {e}", dir.display()),
            )
        }
        _ => format!("cannot write in {}: {e}", dir.display()),
    };
    ConvertError::new(FailureKind::Destination, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::time::{Duration, Instant};

    #[test]
    fn a_process_started_after_a_paused_job_was_cancelled_is_killed_not_stopped() {
        let control = JobControl::default();
        control.pause();
        control.cancel();
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        control.register(child.id());
        let deadline = Instant::now() + Duration::from_secs(5);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the process lives on, stopped: the job would never end");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }
}
