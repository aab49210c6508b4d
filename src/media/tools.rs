//! Locating the `ffmpeg` and `ffprobe` executables and checking they can do
//! the job (the `dca` decoder, the `flac` encoder, the `md5` muxer).
//!
//! FFmpeg is a sidecar process: nothing is ever downloaded. Tests and odd
//! installs can point at other executables with `DTSFLAC_FFMPEG` and
//! `DTSFLAC_FFPROBE`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub const INSTALL_HINT: &str =
    "install FFmpeg with `sudo apt-get install ffmpeg` (Debian, Raspberry Pi OS, Ubuntu)";

#[derive(Debug, Clone)]
pub struct Tools {
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
    /// First line of `ffmpeg -version`, e.g. "ffmpeg version 5.1.6-0+deb12u1".
    pub ffmpeg_version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("`{0}` was not found or does not run: {INSTALL_HINT}")]
    Missing(String),
    #[error("{0} lacks {1}: {INSTALL_HINT} (a full build with the DTS decoder and FLAC encoder)")]
    Incapable(String, &'static str),
}

fn from_env(var: &str, default: PathBuf) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or(default)
}

fn run_version(path: &PathBuf) -> Option<String> {
    let out = Command::new(path)
        .arg("-version")
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
    /// Finds both executables and checks that they run.
    pub fn locate() -> Result<Tools, ToolError> {
        let ffmpeg = from_env("DTSFLAC_FFMPEG", ffmpeg_sidecar::paths::ffmpeg_path());
        let ffprobe = from_env("DTSFLAC_FFPROBE", ffmpeg_sidecar::ffprobe::ffprobe_path());
        // Both at once: each start of FFmpeg costs ~0.1 s on a small board.
        let (ffmpeg_version, ffprobe_version) = std::thread::scope(|s| {
            let probe = s.spawn(|| run_version(&ffprobe));
            (run_version(&ffmpeg), probe.join().ok().flatten())
        });
        let ffmpeg_version = ffmpeg_version.ok_or_else(|| Missing(&ffmpeg))?;
        ffprobe_version.ok_or_else(|| Missing(&ffprobe))?;
        Ok(Tools {
            ffmpeg,
            ffprobe,
            ffmpeg_version,
        })
    }

    /// Finds the executables and checks the codecs and muxers we rely on.
    pub fn locate_capable() -> Result<Tools, ToolError> {
        let tools = Tools::locate()?;
        tools.check_capabilities()?;
        Ok(tools)
    }

    pub fn check_capabilities(&self) -> Result<(), ToolError> {
        let name = self.ffmpeg.display().to_string();
        let (decoders, encoders, muxers) = std::thread::scope(|s| {
            let d = s.spawn(|| listing(&self.ffmpeg, "-decoders"));
            let e = s.spawn(|| listing(&self.ffmpeg, "-encoders"));
            let m = listing(&self.ffmpeg, "-muxers");
            (
                d.join().unwrap_or_default(),
                e.join().unwrap_or_default(),
                m,
            )
        });
        let has = |list: &str, word: &str| {
            list.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(word))
        };
        if !has(&decoders, "dca") {
            return Err(ToolError::Incapable(name, "the DTS decoder (dca)"));
        }
        if !has(&encoders, "flac") {
            return Err(ToolError::Incapable(name, "the FLAC encoder"));
        }
        if !has(&muxers, "md5") {
            return Err(ToolError::Incapable(name, "the md5 muxer"));
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
}

#[allow(non_snake_case)]
fn Missing(path: &PathBuf) -> ToolError {
    ToolError::Missing(path.display().to_string())
}

/// Prefixes a path so FFmpeg reads it as a file name, never as an option or
/// a protocol (`-y.dts`, `http:…`, names with colons).
pub fn ffmpeg_file_arg(path: &std::path::Path) -> OsString {
    let mut arg = OsString::from("file:");
    arg.push(path.as_os_str());
    arg
}
