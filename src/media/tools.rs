//! Locating the executables a conversion runs and checking they can do the
//! job: `ffmpeg` (with the `dca` decoder) and `ffprobe` decode and probe the
//! DTS; libFLAC's `flac` encodes and verifies the FLAC.
//!
//! They are sidecar processes: nothing is ever downloaded. Tests and odd
//! installs can point at other executables with `DTSFLAC_FFMPEG`,
//! `DTSFLAC_FFPROBE` and `DTSFLAC_FLAC`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub const INSTALL_HINT: &str =
    "install FFmpeg and FLAC with `sudo apt-get install ffmpeg flac` (Debian, Raspberry Pi OS, Ubuntu)";

#[derive(Debug, Clone)]
pub struct Tools {
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
    /// First line of `ffmpeg -version`, e.g. "ffmpeg version 5.1.6-0+deb12u1".
    pub ffmpeg_version: String,
    /// libFLAC's command-line encoder.
    pub flac: PathBuf,
    /// What `flac --version` says, e.g. "flac 1.4.2".
    pub flac_version: String,
    /// The `dtsflac` executable, which checks a written FLAC in a helper
    /// process (`check-flac`); `None` (a test harness, a library user):
    /// the check runs in-process.
    pub checker: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("`{0}` was not found or does not run: {INSTALL_HINT}")]
    Missing(String),
    #[error("{0} lacks {1}: {INSTALL_HINT} (a full build with the DTS decoder)")]
    Incapable(String, &'static str),
}

fn from_env(var: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or(default)
}

fn run_version(path: &PathBuf, flag: &str) -> Option<String> {
    let out = Command::new(path)
        .arg(flag)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_string)
}

fn listing(path: &PathBuf, what: &str) -> String {
    Command::new(path)
        .args(["-hide_banner", what])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

impl Tools {
    /// Finds the executables and checks that they run.
    pub fn locate() -> Result<Tools, ToolError> {
        Tools::locate_and_list(false).map(|(tools, _)| tools)
    }

    /// Finds the executables and checks the decoders we rely on.
    pub fn locate_capable() -> Result<Tools, ToolError> {
        let (tools, decoders) = Tools::locate_and_list(true)?;
        tools.check_decoders(&decoders)?;
        Ok(tools)
    }

    /// All the start-up questions at once: each start of FFmpeg costs ~0.1 s
    /// on a small board, and a conversion waits for them.
    fn locate_and_list(list_decoders: bool) -> Result<(Tools, String), ToolError> {
        let ffmpeg = from_env("DTSFLAC_FFMPEG", ffmpeg_sidecar::paths::ffmpeg_path());
        let ffprobe = from_env("DTSFLAC_FFPROBE", ffmpeg_sidecar::ffprobe::ffprobe_path());
        let flac = from_env("DTSFLAC_FLAC", PathBuf::from("flac"));
        let (ffmpeg_version, ffprobe_version, flac_version, decoders) = std::thread::scope(|s| {
            let probe = s.spawn(|| run_version(&ffprobe, "-version"));
            let flac = s.spawn(|| run_version(&flac, "--version"));
            let decoders = s.spawn(|| {
                if list_decoders {
                    listing(&ffmpeg, "-decoders")
                } else {
                    String::new()
                }
            });
            (
                run_version(&ffmpeg, "-version"),
                probe.join().ok().flatten(),
                flac.join().ok().flatten(),
                decoders.join().unwrap_or_default(),
            )
        });
        let ffmpeg_version = ffmpeg_version.ok_or_else(|| Missing(&ffmpeg))?;
        ffprobe_version.ok_or_else(|| Missing(&ffprobe))?;
        let flac_version = flac_version.ok_or_else(|| Missing(&flac))?;
        let tools = Tools {
            ffmpeg,
            ffprobe,
            ffmpeg_version,
            flac,
            flac_version,
            checker: own_executable(),
        };
        Ok((tools, decoders))
    }

    pub fn check_capabilities(&self) -> Result<(), ToolError> {
        self.check_decoders(&listing(&self.ffmpeg, "-decoders"))
    }

    fn check_decoders(&self, decoders: &str) -> Result<(), ToolError> {
        let name = self.ffmpeg.display().to_string();
        let has = |word: &str| {
            decoders
                .lines()
                .any(|l| l.split_whitespace().nth(1) == Some(word))
        };
        if !has("dca") {
            return Err(ToolError::Incapable(name, "the DTS decoder (dca)"));
        }
        // DTS-CD rips stored as FLAC are unpacked by FFmpeg's FLAC decoder.
        if !has("flac") {
            return Err(ToolError::Incapable(name, "the FLAC decoder"));
        }
        Ok(())
    }

    /// The version number alone, e.g. "5.1.6-0+deb12u1".
    pub fn short_version(&self) -> &str {
        self.ffmpeg_version
            .split_whitespace()
            .nth(2)
            .unwrap_or("unknown")
    }

    /// The libFLAC version alone, e.g. "1.4.2".
    pub fn flac_short_version(&self) -> &str {
        self.flac_version
            .split_whitespace()
            .nth(1)
            .unwrap_or("unknown")
    }
}

/// This process's executable, when it is `dtsflac` itself.
fn own_executable() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    (exe.file_name()? == "dtsflac").then_some(exe)
}

#[allow(non_snake_case)]
fn Missing(path: &PathBuf) -> ToolError {
    ToolError::Missing(path.display().to_string())
}

/// A path as the `flac` tool must see it: never as an option (`-x.flac`)
/// or as "stdin" (`-`).
pub fn flac_file_arg(path: &std::path::Path) -> OsString {
    if path.is_absolute() {
        path.as_os_str().to_owned()
    } else {
        std::path::Path::new(".").join(path).into_os_string()
    }
}

/// Prefixes a path so FFmpeg reads it as a file name, never as an option or
/// a protocol (`-y.dts`, `http:…`, names with colons).
pub fn ffmpeg_file_arg(path: &std::path::Path) -> OsString {
    let mut arg = OsString::from("file:");
    arg.push(path.as_os_str());
    arg
}
